// rome.c: ROME and R-ROME (easyedit-reference.md §2.2, §2.3) without second-moment statistics
// (EasyEdit's shipped mom2_adjustment: false), one rank-1 update per layer of hp->layers:
//     k*    = mean over the context templates of mlp_key (the input of the down projection)
//             at the subject's last token;            u = k* / ||k*||
//     v*    = target_init + delta                      (vstar.c)
//     ROME:   k0, v0 = mlp_key, mlp_out at the subject's last token of the bare prompt
//     R-ROME: k0, v0 = their means over the context templates
//     right = (v* - v0) / (k0 . u)
//     W_down += right u^T      ked's layout (out = d_model, in = d_ff): a = right (C), b = u (F)
// so that W_down k0 moves by right (u . k0) = v* - v0. Layers are edited in increasing order,
// each seeing the ones before it (as EasyEdit does); the model is unchanged afterwards.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"

void rome_trace_free(rome_trace *t) {
    free(t->kstar); free(t->u); free(t->vstar); free(t->k0); free(t->v0); free(t->right);
    vstar_result_free(&t->vs);
    memset(t, 0, sizeof *t);
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int seq_equal(const edit_seq *a, const edit_seq *b) {
    return a->n == b->n && a->lookup == b->lookup && !memcmp(a->ids, b->ids, sizeof(int) * (size_t)a->n);
}

ked_status edit_rome_case(ked_model *m, const ked_hparams *hp, const edit_case *c, int rrome,
                          const ked_edit_opts *o, ked_patch **out, rome_trace *trace,
                          ked_edit_info *info, ked_error *err) {
    const ked_config *cfg = ked_model_config(m);
    int C = cfg->d_model, F = cfg->d_ff;
    if (hp->n_layers < 1)
        return ked_fail(err, KED_ERR_ARG, "%s: no layers to edit", hp->source);
    int layers[KED_MAX_EDIT_LAYERS];
    memcpy(layers, hp->layers, sizeof(int) * (size_t)hp->n_layers);
    qsort(layers, (size_t)hp->n_layers, sizeof(int), cmp_int);
    for (int i = 0; i < hp->n_layers; i++)
        if (layers[i] < 0 || layers[i] >= cfg->n_layer)
            return ked_fail(err, KED_ERR_ARG, "%s: layer %d outside the model's layers 0..%d",
                            hp->source, layers[i], cfg->n_layer - 1);
    ked_patch *p = NULL;
    ked_status st = patch_new(rrome ? "r-rome" : "rome", &p, err);
    if (st) return st;
    float *kstar = ked_malloc(sizeof(float) * (size_t)F, "ROME", err);
    float *u = ked_malloc(sizeof(float) * (size_t)F, "ROME", err);
    float *k0 = ked_malloc(sizeof(float) * (size_t)F, "ROME", err);
    float *v0 = ked_malloc(sizeof(float) * (size_t)C, "ROME", err);
    float *vstar = ked_malloc(sizeof(float) * (size_t)C, "ROME", err);
    float *right = ked_malloc(sizeof(float) * (size_t)C, "ROME", err);
    temp_weight tw[KED_MAX_EDIT_LAYERS];
    memset(tw, 0, sizeof tw);
    vstar_result vs = {0};
    if (!kstar || !u || !k0 || !v0 || !vstar || !right) { st = KED_ERR_NOMEM; goto done; }
    edit_info_begin(info, p->method, layers[0], c, 1);
    for (int li = 0; li < hp->n_layers; li++) {
        int L = layers[li];
        // v*; its first forward also hands back k* and, when ctx[0] is the bare prompt (the "{}"
        // template), ROME's k0 and v0 (R-ROME's are the template means, which it has too)
        vstar_result_free(&vs);
        vstar_opts vo = {.key_mean = kstar, .key_row0 = k0, .value_mean = rrome ? v0 : NULL};
        if ((st = edit_vstar_run(m, hp, c, 1, L, &vo, o, &vs, err))) goto done;
        for (int j = 0; j < C; j++) vstar[j] = vs.target_init[j] + vs.delta[j];
        double kn = 0;
        for (int j = 0; j < F; j++) kn += (double)kstar[j] * kstar[j];
        kn = sqrt(kn);
        if (!(kn > 0)) { st = ked_fail(err, KED_ERR_ARG, "ROME: the key at layer %d is zero", L); goto done; }
        if (hp->mom2_adjustment) { // u = C^-1 k* (statistics.c), then normalised
            if ((st = edit_rome_mom2(m, hp, o, L, kstar, u, err))) goto done;
        } else {
            for (int j = 0; j < F; j++) u[j] = kstar[j] / (float)kn;
        }
        if (rrome) {
            memcpy(k0, kstar, sizeof(float) * (size_t)F);
        } else if (seq_equal(&c->bare, &c->ctx[0]) && hp->v_point == KED_HOOK_MLP_OUT) {
            memcpy(v0, vs.target_init, sizeof(float) * (size_t)C); // k0: key_row0 above
        } else {
            ked_hook_point pts[2] = {KED_HOOK_MLP_KEY, KED_HOOK_MLP_OUT};
            float *outs[2] = {k0, v0};
            if ((st = edit_capture_at(m, &c->bare, 1, L, pts, outs, 2, err))) goto done;
        }
        double denom = 0;
        for (int j = 0; j < F; j++) denom += (double)k0[j] * u[j];
        if (!(fabs(denom) > 0)) { st = ked_fail(err, KED_ERR_ARG, "ROME: k0 . u is zero at layer %d", L); goto done; }
        for (int j = 0; j < C; j++) right[j] = (vstar[j] - v0[j]) / (float)denom;
        if ((st = patch_add_lowrank(p, m, L, P_WDOWN, 1, right, u, err))) goto done;
        edit_info_add_losses(info, &vs);
        // later layers see this one
        if (li + 1 < hp->n_layers) {
            if ((st = temp_weight_begin(m, L, P_WDOWN, &tw[li], err))) goto done;
            patch_entry_add(&p->e[p->n - 1], tw[li].tmp);
        }
    }
    if (trace) {
        memset(trace, 0, sizeof *trace);
        trace->kstar = kstar; trace->u = u; trace->vstar = vstar;
        trace->k0 = k0; trace->v0 = v0; trace->right = right;
        trace->vs = vs;
        kstar = u = vstar = k0 = v0 = right = NULL;
        memset(&vs, 0, sizeof vs);
    }
    *out = p;
    p = NULL;
done:
    for (int i = hp->n_layers - 1; i >= 0; i--) temp_weight_end(&tw[i]);
    vstar_result_free(&vs);
    free(kstar); free(u); free(k0); free(v0); free(vstar); free(right);
    ked_patch_free(p);
    return st;
}
