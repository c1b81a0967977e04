// run.c: a run's memory: every activation a forward keeps for its backward, the key/value cache,
// logits, and the backward's scratch, carved out of one allocation sized up front (a forward or
// backward never allocates; docs/style.md §6.1).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/model.h"

int hook_width(const ked_config *c, ked_hook_point p) {
    return p == KED_HOOK_MLP_KEY ? c->d_ff : c->d_model;
}

static const char *hook_names[KED_HOOK_COUNT] = {"resid_in", "attn_out", "mlp_in",
                                                 "mlp_key",  "mlp_out",  "resid_out"};
const char *ked_hook_point_name(ked_hook_point p) {
    return (unsigned)p < KED_HOOK_COUNT ? hook_names[p] : "?";
}
int ked_hook_point_parse(const char *name) {
    for (int i = 0; i < KED_HOOK_COUNT; i++)
        if (!strcmp(name, hook_names[i])) return i;
    return -1;
}

// carve: hand out n floats from the block (64-byte aligned); with base == NULL only count
typedef struct { char *base; size_t off; } carver;
static float *carve(carver *cv, size_t n) {
    size_t off = (cv->off + 63) & ~(size_t)63;
    cv->off = off + n * sizeof(float);
    return cv->base ? (float *)(cv->base + off) : NULL;
}

// lay out every buffer; with cv->base == NULL this only measures
static void layout(ked_run *r, carver *cv) {
    const ked_config *c = &r->m->cfg;
    size_t B = (size_t)r->B, T = (size_t)r->T, S = (size_t)r->S, N = B * T;
    size_t C = (size_t)c->d_model, HD = (size_t)c->n_head * c->head_dim;
    size_t KVD = (size_t)c->n_kv_head * c->head_dim, F = (size_t)c->d_ff, V = (size_t)c->vocab;
    size_t H = (size_t)c->n_head;
    int gated = c->mlp == KED_MLP_GATED_SILU;
    // without a backward the layers share one set of activations (only the KV cache is per
    // layer); with one, so do the layers below backward_from
    layer_acts shared = {0};
    size_t NL = (size_t)r->max_logits;
    for (int l = 0; l < c->n_layer; l++) {
        layer_acts *a = &r->L[l];
        if ((r->backward && l >= r->backward_from) || l == 0) {
            a->resid_in = carve(cv, N * C);
            a->h1 = carve(cv, N * C); a->h1_mean = carve(cv, N); a->h1_rstd = carve(cv, N);
            a->q = carve(cv, N * HD);
            a->att = carve(cv, B * H * T * S);
            a->atty = carve(cv, N * HD);
            a->attn_out = carve(cv, N * C);
            a->mid = carve(cv, N * C);
            a->h2 = carve(cv, N * C); a->h2_mean = carve(cv, N); a->h2_rstd = carve(cv, N);
            a->pre_gate = gated ? carve(cv, N * F) : NULL;
            a->pre_up = carve(cv, N * F);
            a->key = carve(cv, N * F);
            a->mlp_out = carve(cv, N * C);
            shared = *a;
        } else {
            *a = shared;
        }
        if (r->kv_borrowed) continue; // pointed at the owner's in ked_run_new_opts
        a->k = carve(cv, B * S * KVD);
        a->v = carve(cv, B * S * KVD);
    }
    r->resid_final = carve(cv, N * C);
    r->hf = carve(cv, N * C); r->hf_mean = carve(cv, N); r->hf_rstd = carve(cv, N);
    r->sel = carve(cv, NL * C);
    r->logits = carve(cv, NL * V);
    r->cache_resid = carve(cv, N * C);
    r->kv_new = carve(cv, N * 2 * KVD);
    if (model_has_half(r->m)) { // matmul_forward_w16 / _backward_w16 widen weight rows here
        // every (in, out) shape a product of the decoder has
        const int shapes[6][2] = {{(int)C, (int)HD}, {(int)C, (int)KVD}, {(int)HD, (int)C},
                                  {(int)C, (int)F},  {(int)F, (int)C},   {(int)C, (int)V}};
        size_t need = 0;
        for (int i = 0; i < 6; i++) {
            size_t s = matmul_w16_scratch(shapes[i][0], shapes[i][1]);
            need = s > need ? s : need;
        }
        r->wscratch = carve(cv, need);
    }
    if (r->backward) {
        r->dlogits = r->dlogits_in_logits ? r->logits : carve(cv, NL * V);
        r->d_resid = carve(cv, N * C); r->d_h = carve(cv, N * C); r->d_mid = carve(cv, N * C);
        r->d_atty = carve(cv, N * HD); r->d_q = carve(cv, N * HD);
        r->d_k = carve(cv, B * S * KVD); r->d_v = carve(cv, B * S * KVD);
        r->d_key = carve(cv, N * F); r->d_up = carve(cv, N * F);
        r->d_gate = gated ? carve(cv, N * F) : NULL;
        r->d_sel = carve(cv, NL * C);
    }
}

ked_status ked_run_new(const ked_model *m, int B, int T, int S, int backward, ked_run **out,
                       ked_error *err) {
    ked_run_opts o = {B, T, S, backward, 0, 0, NULL, 0};
    return ked_run_new_opts(m, &o, out, err);
}

// the shape fields of a run made with o (what layout reads)
static void run_shape(ked_run *r, const ked_model *m, const ked_run_opts *o) {
    r->m = m; r->B = o->B; r->T = o->T; r->S = o->S; r->backward = o->backward;
    r->max_logits = o->max_logits > 0 ? o->max_logits : o->B * o->T;
    r->backward_from = o->backward ? o->backward_from : 0;
    r->kv_borrowed = o->kv_from != NULL;
    r->dlogits_in_logits = o->dlogits_in_logits;
}

size_t run_bytes_for(const ked_model *m, const ked_run_opts *o) {
    ked_run r = {0};
    run_shape(&r, m, o);
    r.L = calloc((size_t)m->cfg.n_layer, sizeof(layer_acts));
    if (!r.L) return SIZE_MAX;
    carver cv = {NULL, 0};
    layout(&r, &cv);
    free(r.L);
    return cv.off + 64;
}

ked_status ked_run_new_opts(const ked_model *m, const ked_run_opts *o, ked_run **out,
                            ked_error *err) {
    int B = o->B, T = o->T, S = o->S;
    if (B <= 0 || T <= 0 || S < T)
        return ked_fail(err, KED_ERR_ARG, "run shape B=%d T=%d S=%d: need B, T > 0 and S >= T", B,
                        T, S);
    if (o->max_logits < 0 || (size_t)o->max_logits > (size_t)B * T)
        return ked_fail(err, KED_ERR_ARG, "run: max_logits %d outside 0..B*T = %d", o->max_logits,
                        B * T);
    if (o->backward_from < 0 || o->backward_from >= m->cfg.n_layer)
        return ked_fail(err, KED_ERR_ARG, "run: backward_from %d outside the model's layers 0..%d",
                        o->backward_from, m->cfg.n_layer - 1);
    const ked_run *src = o->kv_from;
    if (src && (src->m != m || src->B != B || src->S != S || src->kv_borrowed ||
                (src->backward && src->S == src->T) || (o->backward && S == T)))
        return ked_fail(err, KED_ERR_ARG, "run: kv_from must be a run of the same model, B and S "
                        "that owns an unpacked cache (S > T when made for backward)");
    if (S > m->cfg.max_pos && m->cfg.pos == KED_POS_LEARNED)
        return ked_fail(err, KED_ERR_ARG, "%d positions exceed the model's %d learned positions",
                        S, m->cfg.max_pos);
    ked_run *r = ked_calloc(1, sizeof *r, "run", err);
    if (!r) return KED_ERR_NOMEM;
    run_shape(r, m, o);
    size_t N = (size_t)B * T;
    r->L = ked_calloc((size_t)m->cfg.n_layer, sizeof(layer_acts), "run layers", err);
    r->key_len = ked_calloc((size_t)B, sizeof(int), "run", err);
    r->len = ked_calloc((size_t)B, sizeof(int), "run", err);
    r->ids = ked_calloc(N, sizeof(int), "run", err);
    r->pos = ked_calloc(N > (size_t)S ? N : (size_t)S, sizeof(int), "run", err);
    r->logit_idx = ked_calloc(N, sizeof(int), "run", err);
    r->row_pos0 = ked_calloc((size_t)B, sizeof(int), "run", err);
    r->kv_len = src ? src->kv_len : ked_calloc((size_t)B, sizeof(int), "run", err);
    r->cache_pos0 = ked_calloc((size_t)B, sizeof(int), "run", err);
    if (!r->L || !r->key_len || !r->len || !r->ids || !r->pos || !r->logit_idx || !r->row_pos0 ||
        !r->kv_len || !r->cache_pos0) {
        ked_run_free(r);
        return KED_ERR_NOMEM;
    }
    carver cv = {NULL, 0};
    layout(r, &cv);
    r->bytes = cv.off + 64;
    // mapped, not malloc'd: freeing gives the pages back (glibc keeps freed heap memory of
    // blocks below its dynamic mmap threshold, and then peak RSS would add up runs made one
    // after another)
    r->block = mmap(NULL, r->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->block == MAP_FAILED) {
        r->block = NULL;
        ked_run_free(r);
        return ked_fail(err, KED_ERR_NOMEM, "out of memory: %zu bytes of run activations", cv.off);
    }
    cv.base = (char *)(((uintptr_t)r->block + 63) & ~(uintptr_t)63);
    cv.off = 0;
    layout(r, &cv);
    for (int l = 0; src && l < m->cfg.n_layer; l++) {
        r->L[l].k = src->L[l].k;
        r->L[l].v = src->L[l].v;
    }
    r->cache_layer = -1;
    r->stopped_after = -1;
    *out = r;
    return KED_OK;
}

void ked_run_free(ked_run *r) {
    if (!r) return;
    if (r->block) munmap(r->block, r->bytes);
    if (!r->kv_borrowed) free(r->kv_len);
    free(r->L); free(r->key_len); free(r->len); free(r->ids); free(r->pos);
    free(r->logit_idx); free(r->row_pos0); free(r->cache_pos0);
    free(r);
}

size_t ked_run_bytes(const ked_run *r) { return r->bytes; }

float *ked_run_logits(ked_run *r, int *n_rows) {
    if (n_rows) *n_rows = r->n_logit;
    return r->logits;
}

float *ked_run_dlogits(ked_run *r) { return r->dlogits; }
