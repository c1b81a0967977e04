// decoder.c: the one generic decoder (design.md §2): forward with hooks, and its backward
// mirrored call for call in reverse, computing only what is asked for.
//
// One layer, sequential block (GPT-2, LLaMA); parallel blocks (GPT-J, NeoX) add both branches
// to the residual they read:
//     x        = resid_in                                   [hook resid_in]
//     h1       = norm1(x)
//     q, k, v  = h1 Wq^T + bq, h1 Wk^T + bk, h1 Wv^T + bv; rotary on q, k
//     atty     = attention(q, k, v)
//     attn_out = atty Wo^T + bo                             [hook attn_out]
//     mid      = x + attn_out
//     h2       = norm2(mid)                                 [hook mlp_in]
//     key      = silu(h2 Wg^T) * (h2 Wu^T)  |  gelu(h2 Wu^T + bu)   [hook mlp_key]
//     mlp_out  = key Wd^T + bd                              [hook mlp_out]
//     out      = mid + mlp_out                              [hook resid_out]
// Dimension letters: B rows, T positions of this call, S key positions (cache stride),
// N = B*T, C d_model, H/KV heads, D head size, HD = H*D, KVD = KV*D, F d_ff, V vocab.
#include <omp.h>
#include <string.h>

#include "model/model.h"

#define TRY(x) do { ked_status st_ = (x); if (st_) return st_; } while (0)

ked_forward_opts ked_forward_defaults(void) {
    ked_forward_opts o;
    memset(&o, 0, sizeof o);
    o.stop_after_layer = -1;
    o.cache_layer = -1;
    return o;
}

// the stride, in positions, of a row of the key/value cache: a run made for backward with S == T
// keeps k, v (B, cur_T, KV, D) packed per forward; every other run keeps S slots per row, so that
// a later forward can continue a row (decoding, chunked prefill, recomputing a row's tail)
static int kv_stride(const ked_run *r) { return r->backward && r->S == r->T ? r->cur_T : r->S; }

static float *W(const ked_model *m, int l, int s) { return model_param(m, l, s)->w; }
static float *G(const ked_model *m, int l, int s) { return model_param(m, l, s)->grad; }

// out (N, OC) = inp (N, IC) @ w^T + bias, whether w is held in f32 or in f16/bf16;
// linear_forward: the weight in slot sw of layer l (-1: global), the bias in slot sb (or none)
static void linear_param_forward(const ked_run *r, float *out, const float *inp, const ked_param *w,
                                 const float *bias, int N, int IC, int OC) {
    if (w->w) matmul_forward(out, inp, w->w, bias, N, IC, OC);
    else matmul_forward_w16(out, inp, w->w16, w->dtype == KED_BF16, bias, N, IC, OC, r->wscratch);
}
static void linear_forward(const ked_model *m, const ked_run *r, float *out, const float *inp,
                           int l, int sw, int sb, int N, int IC, int OC) {
    linear_param_forward(r, out, inp, model_param(m, l, sw), W(m, l, sb), N, IC, OC);
}
// the backward of linear_param_forward: dinp += dout @ w; dw, db += ... (enabled ones only)
static void linear_param_backward(const ked_run *r, float *dinp, float *dw, float *db,
                                  const float *dout, const float *inp, const ked_param *w, int N,
                                  int IC, int OC) {
    if (w->w) matmul_backward(dinp, dw, db, dout, inp, w->w, N, IC, OC);
    else matmul_backward_w16(dinp, dw, db, dout, inp, w->w16, w->dtype == KED_BF16, N, IC, OC,
                             r->wscratch);
}
static void linear_backward(const ked_model *m, const ked_run *r, float *dinp, int l, int sw,
                            int sb, const float *dout, const float *inp, int N, int IC, int OC) {
    linear_param_backward(r, dinp, G(m, l, sw), G(m, l, sb), dout, inp, model_param(m, l, sw), N,
                          IC, OC);
}

static void norm_forward(const ked_config *c, float *out, float *mean, float *rstd,
                         const float *x, const float *w, const float *b, int N) {
    if (c->norm == KED_NORM_RMSNORM) rmsnorm_forward(out, rstd, x, w, N, c->d_model, c->norm_eps);
    else layernorm_forward(out, mean, rstd, x, w, b, N, c->d_model, c->norm_eps);
}

static void norm_backward(const ked_config *c, float *dx, float *dw, float *db, const float *dout,
                          const float *x, const float *w, const float *mean, const float *rstd,
                          int N) {
    if (c->norm == KED_NORM_RMSNORM) rmsnorm_backward(dx, dw, dout, x, w, rstd, N, c->d_model);
    else layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, c->d_model);
}

// ---- hooks ---------------------------------------------------------------------------------------

// add and/or capture at every site of the hooks on (layer, point); buf (N, width)
static void hooks_forward(const ked_run *r, int layer, ked_hook_point p, float *buf) {
    int w = hook_width(&r->m->cfg, p);
    for (int h = 0; h < r->n_hooks; h++) {
        const ked_hook *k = &r->hooks[h];
        if (k->layer != layer || k->point != p) continue;
        for (int i = 0; i < k->n; i++) {
            float *x = buf + ((size_t)k->row[i] * r->cur_T + k->pos[i]) * w;
            if (k->add)
                for (int j = 0; j < w; j++) x[j] += k->add[(size_t)i * w + j];
            if (k->capture) memcpy(k->capture + (size_t)i * w, x, sizeof(float) * w);
        }
    }
}

// copy the gradient at every site of the hooks on (layer, point) out of dbuf (N, width)
static void hooks_backward(const ked_run *r, int layer, ked_hook_point p, const float *dbuf) {
    int w = hook_width(&r->m->cfg, p);
    for (int h = 0; h < r->n_hooks; h++) {
        const ked_hook *k = &r->hooks[h];
        if (k->layer != layer || k->point != p || !k->grad) continue;
        for (int i = 0; i < k->n; i++)
            memcpy(k->grad + (size_t)i * w, dbuf + ((size_t)k->row[i] * r->cur_T + k->pos[i]) * w,
                   sizeof(float) * w);
    }
}

static ked_status check_hooks(const ked_model *m, const ked_forward_opts *o, int B, int T,
                              int start, ked_error *err) {
    for (int h = 0; h < o->n_hooks; h++) {
        const ked_hook *k = &o->hooks[h];
        if ((unsigned)k->point >= KED_HOOK_COUNT)
            return ked_fail(err, KED_ERR_ARG, "hook %d: unknown point %d", h, (int)k->point);
        if (k->layer < 0 || k->layer >= m->cfg.n_layer)
            return ked_fail(err, KED_ERR_ARG, "hook %d (%s): layer %d outside 0..%d", h,
                            ked_hook_point_name(k->point), k->layer, m->cfg.n_layer - 1);
        if (k->layer < start && (k->add || k->capture))
            return ked_fail(err, KED_ERR_ARG, "hook %d (%s): layer %d is below start_layer %d, "
                            "whose results are reused", h, ked_hook_point_name(k->point), k->layer,
                            start);
        if (k->n < 0 || (k->n > 0 && (!k->row || !k->pos)))
            return ked_fail(err, KED_ERR_ARG, "hook %d: %d sites without row/pos arrays", h, k->n);
        for (int i = 0; i < k->n; i++)
            if (k->row[i] < 0 || k->row[i] >= B || k->pos[i] < 0 || k->pos[i] >= T)
                return ked_fail(err, KED_ERR_ARG, "hook %d site %d: (row %d, pos %d) outside the "
                                "batch (%d x %d)", h, i, k->row[i], k->pos[i], B, T);
    }
    return KED_OK;
}

// ---- one layer -------------------------------------------------------------------------------------

static void layer_forward(const ked_model *m, ked_run *r, int l, float *out) {
    const ked_config *c = &m->cfg;
    layer_acts *a = &r->L[l];
    int B = r->B, T = r->cur_T, N = B * T, C = c->d_model, F = c->d_ff;
    int H = c->n_head, KV = c->n_kv_head, D = c->head_dim, HD = H * D, KVD = KV * D;
    int S = kv_stride(r), Sa = r->att_S;
    float *x = a->resid_in;
    rope_pairing pr = c->rope_interleaved ? ROPE_GPTJ : ROPE_NEOX;
    hooks_forward(r, l, KED_HOOK_RESID_IN, x);

    // attention
    norm_forward(c, a->h1, a->h1_mean, a->h1_rstd, x, W(m, l, P_ATTN_NORM_W), W(m, l, P_ATTN_NORM_B), N);
    linear_forward(m, r, a->q, a->h1, l, P_WQ, P_BQ, N, C, HD);
    // k, v of the N tokens: straight into the cache when it is packed (B, T, KV, D); otherwise
    // computed together (kv_new) and the valid ones scattered to row b's slots row_pos0[b] + t
    float *kn = r->kv_packed ? a->k : r->kv_new, *vn = r->kv_packed ? a->v : r->kv_new + (size_t)N * KVD;
    linear_forward(m, r, kn, a->h1, l, P_WK, P_BK, N, C, KVD);
    linear_forward(m, r, vn, a->h1, l, P_WV, P_BV, N, C, KVD);
    if (c->pos == KED_POS_ROTARY) {
        rope_forward(kn, r->pos, m->inv_freq, N, KV, D, c->rot_dim, pr);
        rope_forward(a->q, r->pos, m->inv_freq, N, H, D, c->rot_dim, pr);
    }
    if (!r->kv_packed)
        for (int b = 0; b < B; b++) {
            size_t dst = ((size_t)b * S + r->row_pos0[b]) * KVD, src = (size_t)b * T * KVD;
            memcpy(a->k + dst, kn + src, sizeof(float) * (size_t)r->len[b] * KVD);
            memcpy(a->v + dst, vn + src, sizeof(float) * (size_t)r->len[b] * KVD);
        }
    for (int b = 0; b < B; b++)
        attention_forward(a->atty + (size_t)b * T * HD, a->att + (size_t)b * H * T * Sa,
                          a->q + (size_t)b * T * HD, a->k + (size_t)b * S * KVD,
                          a->v + (size_t)b * S * KVD, &r->key_len[b], 1, T, Sa, H, KV, D,
                          r->row_pos0[b], c->window);
    linear_forward(m, r, a->attn_out, a->atty, l, P_WO, P_BO, N, HD, C);
    hooks_forward(r, l, KED_HOOK_ATTN_OUT, a->attn_out);

    // MLP
    const float *mlp_src = x;
    if (c->block == KED_BLOCK_SEQUENTIAL) {
        for (size_t i = 0; i < (size_t)N * C; i++) a->mid[i] = x[i] + a->attn_out[i];
        mlp_src = a->mid;
    }
    if (c->block == KED_BLOCK_PARALLEL && c->parallel_shared_norm)
        memcpy(a->h2, a->h1, sizeof(float) * (size_t)N * C);
    else
        norm_forward(c, a->h2, a->h2_mean, a->h2_rstd, mlp_src, W(m, l, P_MLP_NORM_W),
                     W(m, l, P_MLP_NORM_B), N);
    hooks_forward(r, l, KED_HOOK_MLP_IN, a->h2);
    linear_forward(m, r, a->pre_up, a->h2, l, P_WUP, P_BUP, N, C, F);
    if (c->mlp == KED_MLP_GATED_SILU) {
        linear_forward(m, r, a->pre_gate, a->h2, l, P_WGATE, P_BGATE, N, C, F);
        swiglu_forward(a->key, a->pre_gate, a->pre_up, (size_t)N * F);
    } else {
        if (c->gelu == KED_GELU_ERF) gelu_erf_forward(a->key, a->pre_up, (size_t)N * F);
        else gelu_forward(a->key, a->pre_up, (size_t)N * F);
    }
    hooks_forward(r, l, KED_HOOK_MLP_KEY, a->key);
    linear_forward(m, r, a->mlp_out, a->key, l, P_WDOWN, P_BDOWN, N, F, C);
    hooks_forward(r, l, KED_HOOK_MLP_OUT, a->mlp_out);

    // residual (out may alias x when layers share activations; each element is read first)
    if (c->block == KED_BLOCK_SEQUENTIAL)
        for (size_t i = 0; i < (size_t)N * C; i++) out[i] = a->mid[i] + a->mlp_out[i];
    else
        for (size_t i = 0; i < (size_t)N * C; i++) out[i] = x[i] + a->attn_out[i] + a->mlp_out[i];
    hooks_forward(r, l, KED_HOOK_RESID_OUT, out);
}

// dk, dv (B, S, KVD) -> (N, KVD) in place: row (b, t) from slot row_pos0[b] + t, zero for
// padding. Each destination lies at or before its source and before every later source.
static void kv_gather_rows(const ked_run *r, float *dk, float *dv) {
    int T = r->cur_T, S = kv_stride(r), KVD = r->m->cfg.n_kv_head * r->m->cfg.head_dim;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < T; t++) {
            size_t dst = ((size_t)b * T + t) * KVD, src = ((size_t)b * S + r->row_pos0[b] + t) * KVD;
            if (t < r->len[b]) {
                memmove(dk + dst, dk + src, sizeof(float) * KVD);
                memmove(dv + dst, dv + src, sizeof(float) * KVD);
            } else {
                memset(dk + dst, 0, sizeof(float) * KVD);
                memset(dv + dst, 0, sizeof(float) * KVD);
            }
        }
}

// which points of the lowest visited layer are needed: the backward stops there once it has
// what was asked (hook gradients at or above `lowest_point`) when the layer has no enabled params
static int layer_has_grads(const ked_model *m, int l) {
    for (int s = 0; s < P_LAYER_COUNT; s++)
        if (G(m, l, s)) return 1;
    return 0;
}

// d (N, C): in, the gradient of the layer's output; out, the gradient of its input
// returns the (possibly swapped) buffer holding the input gradient
static float *layer_backward(ked_model *m, ked_run *r, int l, float *d, int stop_point) {
    const ked_config *c = &m->cfg;
    layer_acts *a = &r->L[l];
    int B = r->B, T = r->cur_T, N = B * T, C = c->d_model, F = c->d_ff;
    int H = c->n_head, KV = c->n_kv_head, D = c->head_dim, HD = H * D, KVD = KV * D;
    size_t NC = (size_t)N * C, NF = (size_t)N * F;
    float *dx = (d == r->d_resid) ? r->d_mid : r->d_resid; // the other residual buffer
    hooks_backward(r, l, KED_HOOK_RESID_OUT, d);
    if (stop_point > KED_HOOK_MLP_OUT) return d;

    // out = mid + mlp_out: d mlp_out = d
    hooks_backward(r, l, KED_HOOK_MLP_OUT, d);
    if (stop_point > KED_HOOK_MLP_KEY) return d;
    // mlp_out = key Wd^T + bd
    memset(r->d_key, 0, sizeof(float) * NF);
    linear_backward(m, r, r->d_key, l, P_WDOWN, P_BDOWN, d, a->key, N, F, C);
    hooks_backward(r, l, KED_HOOK_MLP_KEY, r->d_key);
    if (stop_point > KED_HOOK_MLP_IN) return d;
    // key = silu(gate) * up  |  gelu(up)
    memset(r->d_up, 0, sizeof(float) * NF);
    memset(r->d_h, 0, sizeof(float) * NC);
    if (c->mlp == KED_MLP_GATED_SILU) {
        memset(r->d_gate, 0, sizeof(float) * NF);
        swiglu_backward(r->d_gate, r->d_up, r->d_key, a->pre_gate, a->pre_up, NF);
        linear_backward(m, r, r->d_h, l, P_WGATE, P_BGATE, r->d_gate, a->h2, N, C, F);
    } else {
        if (c->gelu == KED_GELU_ERF) gelu_erf_backward(r->d_up, r->d_key, a->pre_up, NF);
        else gelu_backward(r->d_up, r->d_key, a->pre_up, NF);
    }
    linear_backward(m, r, r->d_h, l, P_WUP, P_BUP, r->d_up, a->h2, N, C, F);
    hooks_backward(r, l, KED_HOOK_MLP_IN, r->d_h);
    if (stop_point > KED_HOOK_ATTN_OUT) return d;

    // h2 = norm2(mid) (sequential) or norm2(x) (parallel); the residual passes d through
    memcpy(dx, d, sizeof(float) * NC);
    int shared_norm = c->block == KED_BLOCK_PARALLEL && c->parallel_shared_norm;
    const float *mlp_src = c->block == KED_BLOCK_SEQUENTIAL ? a->mid : a->resid_in;
    if (!shared_norm)
        norm_backward(c, dx, G(m, l, P_MLP_NORM_W), G(m, l, P_MLP_NORM_B), r->d_h, mlp_src,
                      W(m, l, P_MLP_NORM_W), a->h2_mean, a->h2_rstd, N);
    // sequential: d attn_out = d mid = dx; parallel: d attn_out = d (the output's gradient)
    const float *d_attn_out = c->block == KED_BLOCK_SEQUENTIAL ? dx : d;
    hooks_backward(r, l, KED_HOOK_ATTN_OUT, d_attn_out);
    if (stop_point > KED_HOOK_RESID_IN) return dx;

    // attn_out = atty Wo^T + bo
    memset(r->d_atty, 0, sizeof(float) * (size_t)N * HD);
    linear_backward(m, r, r->d_atty, l, P_WO, P_BO, d_attn_out, a->atty, N, HD, C);
    // atty = attention(q, k, v); dk, dv (B, S, KV, D) like the cache, then the rows of this
    // forward's tokens gathered into (N, KVD) (the cached positions before row_pos0 are constants)
    int S = kv_stride(r), Sa = r->att_S;
    memset(r->d_q, 0, sizeof(float) * (size_t)N * HD);
    memset(r->d_k, 0, sizeof(float) * (size_t)B * S * KVD);
    memset(r->d_v, 0, sizeof(float) * (size_t)B * S * KVD);
    for (int b = 0; b < B; b++)
        attention_backward(r->d_q + (size_t)b * T * HD, r->d_k + (size_t)b * S * KVD,
                           r->d_v + (size_t)b * S * KVD, r->d_atty + (size_t)b * T * HD,
                           a->att + (size_t)b * H * T * Sa, a->q + (size_t)b * T * HD,
                           a->k + (size_t)b * S * KVD, a->v + (size_t)b * S * KVD, 1, T, Sa, H, KV, D);
    if (!r->kv_packed) kv_gather_rows(r, r->d_k, r->d_v);
    if (c->pos == KED_POS_ROTARY) {
        rope_pairing pr = c->rope_interleaved ? ROPE_GPTJ : ROPE_NEOX;
        rope_backward(r->d_q, r->pos, m->inv_freq, N, H, D, c->rot_dim, pr);
        rope_backward(r->d_k, r->pos, m->inv_freq, N, KV, D, c->rot_dim, pr);
    }
    // q, k, v = h1 W^T + b  (a shared-norm parallel block adds the MLP's d h2 = d h1 already there)
    if (!shared_norm) memset(r->d_h, 0, sizeof(float) * NC);
    linear_backward(m, r, r->d_h, l, P_WQ, P_BQ, r->d_q, a->h1, N, C, HD);
    linear_backward(m, r, r->d_h, l, P_WK, P_BK, r->d_k, a->h1, N, C, KVD);
    linear_backward(m, r, r->d_h, l, P_WV, P_BV, r->d_v, a->h1, N, C, KVD);
    // h1 = norm1(x); x also reaches mid (sequential) or out (parallel) directly: dx holds that
    norm_backward(c, dx, G(m, l, P_ATTN_NORM_W), G(m, l, P_ATTN_NORM_B), r->d_h, a->resid_in,
                  W(m, l, P_ATTN_NORM_W), a->h1_mean, a->h1_rstd, N);
    hooks_backward(r, l, KED_HOOK_RESID_IN, dx);
    return dx;
}

// ---- the whole model -----------------------------------------------------------------------------

ked_status ked_forward(const ked_model *m, ked_run *r, const int *ids, int B, int T,
                       const int *len, const ked_forward_opts *opts, ked_error *err) {
    const ked_config *c = &m->cfg;
    ked_forward_opts o = opts ? *opts : ked_forward_defaults();
    if (r->m != m) return ked_fail(err, KED_ERR_ARG, "run was made for another model");
    if (B != r->B || T <= 0 || T > r->T)
        return ked_fail(err, KED_ERR_ARG, "batch %d x %d does not fit the run (%d x up to %d)", B,
                        T, r->B, r->T);
    int L = c->n_layer, N = B * T, C = c->d_model;
    int last = o.stop_after_layer >= 0 && o.stop_after_layer < L ? o.stop_after_layer : L - 1;
    int start = o.start_layer > 0 ? o.start_layer : 0;
    int packed_run = r->backward && r->S == r->T, any_p0 = 0;
    for (int b = 0; b < B; b++) {
        int p0 = o.row_pos0 ? o.row_pos0[b] : o.pos0, n = len ? len[b] : T;
        if (len && (n < (o.row_pos0 ? 0 : 1) || n > T))
            return ked_fail(err, KED_ERR_ARG, "row %d: length %d outside %d..%d", b, n,
                            o.row_pos0 ? 0 : 1, T);
        if (p0 < 0 || p0 + n > r->S)
            return ked_fail(err, KED_ERR_ARG, "row %d: positions %d..%d exceed the run's cache of "
                            "%d", b, p0, p0 + n - 1, r->S);
        if (c->pos == KED_POS_LEARNED && p0 + n > c->max_pos)
            return ked_fail(err, KED_ERR_ARG, "row %d: position %d exceeds the model's %d "
                            "positions", b, p0 + n - 1, c->max_pos);
        if (p0 > 0 && packed_run)
            return ked_fail(err, KED_ERR_ARG, "row %d starts at position %d: a run made for "
                            "backward continues rows only when made with S > T", b, p0);
        if (p0 > r->kv_len[b])
            return ked_fail(err, KED_ERR_ARG, "row %d starts at position %d but the run's cache "
                            "holds only its first %d", b, p0, r->kv_len[b]);
        if (start > 0 && (T != r->cache_T || p0 != r->cache_pos0[b]))
            start = -1;
        any_p0 |= p0 > 0;
    }
    if (start < 0 || (start > 0 && start != r->cache_layer))
        return ked_fail(err, KED_ERR_ARG, "start_layer %d: the run has no cached residual for it "
                        "(run a forward with cache_layer = %d on the same batch first)",
                        o.start_layer, o.start_layer);
    if (start > last) return ked_fail(err, KED_ERR_ARG, "start_layer %d is after the last layer %d", start, last);
    for (int i = 0; i < B * T; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return ked_fail(err, KED_ERR_ARG, "token id %d at (row %d, pos %d) outside the "
                            "vocabulary (%d)", ids[i], i / T, i % T, c->vocab);
    TRY(check_hooks(m, &o, B, T, start, err));
    int n_logit = o.logit_idx ? o.n_logit : B * T;
    for (int i = 0; o.logit_idx && i < o.n_logit; i++)
        if (o.logit_idx[i] < 0 || o.logit_idx[i] >= B * T)
            return ked_fail(err, KED_ERR_ARG, "logit index %d outside 0..%d", o.logit_idx[i], B * T - 1);
    if (n_logit < 0 || n_logit > r->max_logits)
        return ked_fail(err, KED_ERR_ARG, "%d logit rows for a run made for at most %d", n_logit,
                        r->max_logits);

    r->cur_T = T;
    r->hooks = o.hooks;
    r->n_hooks = o.n_hooks;
    r->n_logit = n_logit;
    for (int i = 0; i < n_logit; i++) r->logit_idx[i] = o.logit_idx ? o.logit_idx[i] : i;
    memcpy(r->ids, ids, sizeof(int) * (size_t)N);
    r->kv_packed = kv_stride(r) == T && !any_p0;
    r->att_S = 0;
    for (int b = 0; b < B; b++) {
        int p0 = o.row_pos0 ? o.row_pos0[b] : o.pos0;
        r->row_pos0[b] = p0;
        r->len[b] = len ? len[b] : T;
        r->key_len[b] = p0 + r->len[b];
        r->kv_len[b] = r->key_len[b];
        if (p0 + T > r->att_S) r->att_S = p0 + T;
        for (int t = 0; t < T; t++) { // padding rows past the learned positions take the last
            int p = p0 + t;
            r->pos[b * T + t] = c->pos == KED_POS_LEARNED && p >= c->max_pos ? c->max_pos - 1 : p;
        }
    }
    if (r->att_S > kv_stride(r)) r->att_S = kv_stride(r);

    if (start == 0) { // embeddings
        // rows of E (and P) in f32 whatever they are held in; r->hf is free scratch here
        const ked_param *E = model_param(m, -1, G_EMBED), *P = model_param(m, -1, G_POS_EMBED);
        float *x = r->L[0].resid_in;
        #pragma omp parallel for if (N > 64)
        for (int n = 0; n < N; n++) {
            model_param_row_f32(E, ids[n], x + (size_t)n * C);
            if (c->pos == KED_POS_LEARNED) {
                float *pr = r->hf + (size_t)n * C;
                model_param_row_f32(P, r->pos[n], pr);
                for (int j = 0; j < C; j++) x[(size_t)n * C + j] += pr[j];
            }
        }
    } else {
        memcpy(r->L[start].resid_in, r->cache_resid, sizeof(float) * (size_t)N * C);
    }
    for (int l = start; l <= last; l++) {
        if (l == o.cache_layer && l > 0) {
            memcpy(r->cache_resid, r->L[l].resid_in, sizeof(float) * (size_t)N * C);
            r->cache_layer = l;
            r->cache_T = T;
            memcpy(r->cache_pos0, r->row_pos0, sizeof(int) * (size_t)B);
        }
        float *out = l + 1 < L ? r->L[l + 1].resid_in : r->resid_final;
        layer_forward(m, r, l, out);
    }
    r->stopped_after = last;
    if (last < L - 1) { r->n_logit = 0; return KED_OK; }

    // final norm, then logits at the selected rows only
    norm_forward(c, r->hf, r->hf_mean, r->hf_rstd, r->resid_final, W(m, -1, G_FINAL_NORM_W),
                 W(m, -1, G_FINAL_NORM_B), N);
    for (int i = 0; i < n_logit; i++)
        memcpy(r->sel + (size_t)i * C, r->hf + (size_t)r->logit_idx[i] * C, sizeof(float) * C);
    const ked_param *head = model_param(m, -1, c->tied_head ? G_EMBED : G_HEAD_W);
    if (n_logit > 0)
        linear_param_forward(r, r->logits, r->sel, head, W(m, -1, G_HEAD_B), n_logit, C, c->vocab);
    return KED_OK;
}

ked_status ked_backward(ked_model *m, ked_run *r, ked_error *err) {
    const ked_config *c = &m->cfg;
    if (!r->backward) return ked_fail(err, KED_ERR_ARG, "ked_backward: the run was made without backward");
    if (r->stopped_after != c->n_layer - 1)
        return ked_fail(err, KED_ERR_ARG, "ked_backward: the last forward stopped after layer %d "
                        "and has no logits", r->stopped_after);
    int L = c->n_layer, N = r->B * r->cur_T, C = c->d_model;
    // the lowest layer (and point in it) that anything asked for lives in
    int lo = L, lo_point = KED_HOOK_COUNT;
    int embed_grads = G(m, -1, G_EMBED) || G(m, -1, G_POS_EMBED);
    if (embed_grads) { lo = 0; lo_point = -1; }
    for (int l = 0; l < L && l < lo; l++)
        if (layer_has_grads(m, l)) { lo = l; lo_point = -1; }
    for (int h = 0; h < r->n_hooks; h++) {
        const ked_hook *k = &r->hooks[h];
        if (!k->grad) continue;
        if (k->layer < lo) { lo = k->layer; lo_point = k->point; }
        else if (k->layer == lo && lo_point >= 0 && (int)k->point < lo_point) lo_point = k->point;
    }
    int head_grads = G(m, -1, G_FINAL_NORM_W) || G(m, -1, G_HEAD_W) || (c->tied_head && G(m, -1, G_EMBED));
    if (lo == L && !head_grads) return KED_OK; // nothing asked for
    if (lo < r->backward_from)
        return ked_fail(err, KED_ERR_ARG, "ked_backward: gradients asked for at layer %d, but the "
                        "run keeps activations only from layer %d (backward_from)", lo,
                        r->backward_from);

    // logits = sel head^T + head_b
    float *d_head = c->tied_head ? G(m, -1, G_EMBED) : G(m, -1, G_HEAD_W);
    const ked_param *head = model_param(m, -1, c->tied_head ? G_EMBED : G_HEAD_W);
    memset(r->d_sel, 0, sizeof(float) * (size_t)r->n_logit * C);
    linear_param_backward(r, r->d_sel, d_head, G(m, -1, G_HEAD_B), r->dlogits, r->sel, head,
                          r->n_logit, C, c->vocab);
    // sel = hf[logit_idx]
    memset(r->d_h, 0, sizeof(float) * (size_t)N * C);
    for (int i = 0; i < r->n_logit; i++) {
        float *dst = r->d_h + (size_t)r->logit_idx[i] * C;
        const float *src = r->d_sel + (size_t)i * C;
        for (int j = 0; j < C; j++) dst[j] += src[j];
    }
    // hf = norm_f(resid_final)
    float *d = r->d_resid;
    memset(d, 0, sizeof(float) * (size_t)N * C);
    norm_backward(c, d, G(m, -1, G_FINAL_NORM_W), G(m, -1, G_FINAL_NORM_B), r->d_h, r->resid_final,
                  W(m, -1, G_FINAL_NORM_W), r->hf_mean, r->hf_rstd, N);
    for (int l = L - 1; l >= lo && l >= 0; l--) {
        int stop = (l == lo && lo_point >= 0) ? lo_point : -1;
        d = layer_backward(m, r, l, d, stop);
    }
    if (lo == 0 && embed_grads) { // x = E[id] (+ P[pos])
        float *dE = G(m, -1, G_EMBED), *dP = G(m, -1, G_POS_EMBED);
        for (int n = 0; n < N; n++) {
            const float *dn = d + (size_t)n * C;
            if (dE) for (int j = 0; j < C; j++) dE[(size_t)r->ids[n] * C + j] += dn[j];
            if (dP) for (int j = 0; j < C; j++) dP[(size_t)r->pos[n] * C + j] += dn[j];
        }
    }
    return KED_OK;
}

// ---- losses ------------------------------------------------------------------------------------------

float ked_loss_crossentropy(ked_run *r, const int *targets, int want_grad) {
    return crossentropy_forward_backward(want_grad ? r->dlogits : NULL, r->logits, targets,
                                         r->n_logit, r->m->cfg.vocab, 1.0f);
}

float ked_loss_kl(ked_run *r, const float *logits_p, int want_grad) {
    return kl_forward_backward(want_grad ? r->dlogits : NULL, logits_p, r->logits, r->n_logit,
                               r->m->cfg.vocab, 1.0f);
}
