// adam.c: torch.optim.Adam for the editing methods (v*, FT), in the float32 operation order of
// torch 1.13's single-tensor path, so that a reference run and ked take the same steps:
//     g = grad + wd * p                                  (L2 weight decay, when wd != 0)
//     m = m * b1 + g * (1 - b1)
//     v = v * b2 + g * g * (1 - b2)
//     p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// (bias corrections and the step size in double, as Python computes them).
#include <math.h>
#include <stdlib.h>

#include "edit/edit.h"

ked_status edit_adam_init(edit_adam *a, int64_t n, float lr, float weight_decay, ked_error *err) {
    a->lr = lr;
    a->beta1 = 0.9f;
    a->beta2 = 0.999f;
    a->eps = 1e-8f;
    a->weight_decay = weight_decay;
    a->n = n;
    a->step = 0;
    a->m = ked_calloc((size_t)n, sizeof(float), "Adam state", err);
    a->v = ked_calloc((size_t)n, sizeof(float), "Adam state", err);
    if (!a->m || !a->v) { edit_adam_free(a); return KED_ERR_NOMEM; }
    return KED_OK;
}

void edit_adam_step(edit_adam *a, float *param, const float *grad) {
    a->step++;
    double b1 = a->beta1, b2 = a->beta2;
    double bc1 = 1.0 - pow(b1, a->step), bc2 = 1.0 - pow(b2, a->step);
    float step_size = (float)(a->lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float one_b1 = (float)(1.0 - b1), one_b2 = (float)(1.0 - b2);
    float wd = a->weight_decay;
    #pragma omp parallel for if (a->n > 65536)
    for (int64_t i = 0; i < a->n; i++) {
        float g = grad[i];
        if (wd != 0.0f) g = g + param[i] * wd;
        a->m[i] = a->m[i] * a->beta1 + g * one_b1;
        a->v[i] = a->v[i] * a->beta2 + g * g * one_b2;
        float denom = sqrtf(a->v[i]) / bc2_sqrt + a->eps;
        param[i] = param[i] + (-step_size) * (a->m[i] / denom);
    }
}

void edit_adam_free(edit_adam *a) {
    free(a->m);
    free(a->v);
    a->m = a->v = NULL;
}
