// generate.c: KV-cached incremental decoding and sampling (greedy, temperature, top-k, top-p)
// with one explicit, seeded RNG.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

ked_generate_opts ked_generate_defaults(void) {
    ked_generate_opts o = {64, 0.0f, 0, 1.0f, 0, 1};
    return o;
}

void ked_set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

typedef struct { float p; int id; } prob_id;
static int by_prob_desc(const void *a, const void *b) {
    float pa = ((const prob_id *)a)->p, pb = ((const prob_id *)b)->p;
    if (pa != pb) return pa < pb ? 1 : -1;
    return ((const prob_id *)a)->id - ((const prob_id *)b)->id;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

// sample one id from logits (V); work (V) scratch
static int sample(const float *logits, int V, const ked_generate_opts *o, ked_rng *rng,
                  prob_id *work) {
    if (o->temperature <= 0) return argmax(logits, V);
    float mx = logits[argmax(logits, V)];
    double sum = 0;
    for (int i = 0; i < V; i++) {
        work[i].id = i;
        work[i].p = expf((logits[i] - mx) / o->temperature);
        sum += work[i].p;
    }
    for (int i = 0; i < V; i++) work[i].p = (float)(work[i].p / sum);
    int n = V;
    if ((o->top_k > 0 && o->top_k < V) || o->top_p < 1.0f) {
        qsort(work, (size_t)V, sizeof *work, by_prob_desc);
        if (o->top_k > 0 && o->top_k < n) n = o->top_k;
        if (o->top_p < 1.0f) { // smallest prefix whose mass reaches top_p
            double cum = 0;
            for (int i = 0; i < n; i++) {
                cum += work[i].p;
                if (cum >= o->top_p) { n = i + 1; break; }
            }
        }
    }
    double mass = 0;
    for (int i = 0; i < n; i++) mass += work[i].p;
    double u = ked_rng_uniform(rng) * mass, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += work[i].p;
        if (u < cum) return work[i].id;
    }
    return work[n - 1].id;
}

ked_status ked_generate(const ked_model *m, const int *prompt, int n, const ked_generate_opts *o,
                        int *out, int cap, int *n_out, void (*on_token)(int id, void *user),
                        void *user, ked_error *err) {
    const ked_config *c = &m->cfg;
    ked_generate_opts opt = o ? *o : ked_generate_defaults();
    if (n <= 0) return ked_fail(err, KED_ERR_ARG, "generate: empty prompt");
    if (opt.max_new < 0) return ked_fail(err, KED_ERR_ARG, "generate: max_new %d < 0", opt.max_new);
    if (n > c->max_pos)
        return ked_fail(err, KED_ERR_ARG, "generate: prompt of %d tokens exceeds the model's "
                        "context of %d", n, c->max_pos);
    if (cap < n) return ked_fail(err, KED_ERR_ARG, "generate: output buffer (%d) holds less than "
                                 "the prompt (%d)", cap, n);
    int total = n + opt.max_new;
    if (total > c->max_pos) total = c->max_pos;
    if (total > cap) total = cap;
    ked_run *r = NULL;
    ked_status st = ked_run_new(m, 1, n, total, 0, &r, err);
    if (st) return st;
    prob_id *work = ked_malloc(sizeof(prob_id) * (size_t)c->vocab, "sampler", err);
    if (!work) { ked_run_free(r); return KED_ERR_NOMEM; }
    ked_rng rng;
    ked_rng_seed(&rng, opt.seed);
    memcpy(out, prompt, sizeof(int) * (size_t)n);
    int len = n;
    ked_forward_opts fo = ked_forward_defaults();
    int last = n - 1;
    fo.logit_idx = &last;
    fo.n_logit = 1;
    st = ked_forward(m, r, prompt, 1, n, NULL, &fo, err);
    while (!st && len < total) {
        int id = sample(ked_run_logits(r, NULL), c->vocab, &opt, &rng, work);
        if (opt.stop_at_eos && (id == c->eos_id || (id == c->bos_id && c->bos_id >= 0))) break;
        out[len++] = id;
        if (on_token) on_token(id, user);
        if (len == total) break;
        int zero = 0;
        fo.pos0 = len - 1;
        fo.logit_idx = &zero;
        st = ked_forward(m, r, &out[len - 1], 1, 1, NULL, &fo, err);
    }
    free(work);
    ked_run_free(r);
    if (st) return st;
    *n_out = len;
    return KED_OK;
}
