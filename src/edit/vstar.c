// vstar.c: the v* / z optimisation of ROME and MEMIT (EasyEdit compute_v / compute_z,
// easyedit-reference.md §2.0) for one request or a batch of them.
//
// Each request j contributes rows: one per context template (the template formatted with the
// prompt, then the target's ids but the last: teacher forcing) and a last row "{subject} is a".
// A vector delta_j (C) is added at hook point hp->v_point of `layer` at each of its rows' lookup
// token. Per request:
//     nll  = mean over template rows of  -(1/|target|) sum_t log p(target_t | row, prefix)
//     kl   = kl_factor * KL(p_now || p_init) of the next-token distribution at the KL row's
//            lookup token (p_init: the first step's, i.e. without delta)
//     wd   = v_weight_decay * ||delta|| / ||target_init||^2      (a norm, not its square)
//     loss = nll + kl + wd; the request is done when loss < 5e-2 or at the last step (no step
//     taken then); otherwise Adam(lr v_lr) on delta, then delta is scaled back into the ball of
//     radius clamp_norm_factor * ||target_init||.
// target_init is the activation at the request's first row's lookup token on the first forward.
// With vstar_opts.points (PMET's compute_zs) a delta is added at each of several points of the
// layer (mlp_out and attn_out), each with its own Adam state, target_init and clamp, and wd is
// the sum of ||delta_p|| / ||target_init_p||^2; vstar_opts.pmet_rule adds PMET's NLL weight
// (nll_loss_factor, a tenth of it once every target token is the argmax) and its stop (then
// kl_factor * KL <= 0.01).
// The requests' rows never interact (separate rows, a delta each, the gradient of the summed
// loss with respect to delta_j is that of request j's loss), so a batch computes what each
// request computes alone (EasyEdit runs them one after another), in one batch shape.
//
// Cost. Nothing below `layer` depends on delta, and nothing at positions before a row's lookup
// token does either (attention is causal). So each row is split at its lookup token:
//   - its prefix (positions 0 .. lookup-1) runs once, all layers, filling the run's key/value
//     cache, which the windows then continue (ked_forward_opts.row_pos0);
//   - its window (lookup .. end) is what every step computes: the first step through all layers
//     (keeping the residual entering `layer`: cache_layer), later steps from `layer` on
//     (start_layer), attending to the cached prefix; the backward stops at `layer` and sends
//     nothing into the cached positions (they are constants). A single delta on the MLP's
//     output or on the layer's output is a delta on the residual entering layer+1: the steps
//     start there (not with a delta on the attention's output, inside the layer).
//   - the prefixes run in one forward-only pass that shares the cache (ked_run_opts.kv_from).
// Logits are computed only where the loss reads them (logit_idx): |target| per template row + 1.
// edit_vstar_all runs many requests in batches sized to a memory budget (the run's bytes).
// vstar_opts.full recomputes every position of every row at every step from layer 0 (the
// reference path the tests compare with).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"
#include "model/kernels.h"

void vstar_result_free(vstar_result *r) {
    free(r->target_init);
    free(r->delta);
    r->target_init = r->delta = NULL;
}

void edit_info_begin(ked_edit_info *info, const char *method, int layer, const edit_case *cs,
                     int n) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    snprintf(info->method, sizeof info->method, "%s", method);
    info->layer = layer;
    info->subject_token = cs[0].bare.lookup;
    info->n_requests = n;
}

void edit_info_add_losses(ked_edit_info *info, const vstar_result *r) {
    int cap = (int)(sizeof info->loss / sizeof info->loss[0]);
    for (int s = 0; info && s < r->n_steps && info->n_steps < cap; s++)
        info->loss[info->n_steps++] = r->loss[s];
}

double edit_norm2(const float *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

// the rows of a batch of requests: tokens of the whole row, where its window starts, its length
typedef struct {
    int B, Tw, Tp, S;          // rows, window width, longest prefix, cache positions
    int *row0;                 // (n) first row of request j
    int *lg0;                  // (n) first logit row of request j
    int *p0, *wlen;            // (B) window start (the lookup token, or 0 when full), its length
    int *site;                 // (B) the lookup token's position within the window
    const int **tok;           // (B) the row's tokens but the teacher-forced target
    int *ntok;                 // (B) how many of those
    int n_logit;
    int *lidx;                 // (n_logit) window-relative logit rows b*Tw + t
    int *ids;                  // (B, Tw) window tokens
    int *len;                  // (B) = wlen
} vrows;

static void vrows_free(vrows *v) {
    free(v->row0); free(v->lg0); free(v->p0); free(v->wlen); free(v->site); free(v->tok);
    free(v->ntok); free(v->lidx); free(v->ids); free(v->len);
}

// token t of row b: the row's own tokens, then the target's (teacher forcing)
static int row_token(const vrows *v, const edit_case *c, int b, int t) {
    return t < v->ntok[b] ? v->tok[b][t] : c->target[t - v->ntok[b]];
}

static ked_status vrows_build(const ked_config *cfg, const edit_case *cs, int n, int full,
                              vrows *v, ked_error *err) {
    memset(v, 0, sizeof *v);
    for (int j = 0; j < n; j++) {
        if (cs[j].n_ctx < 1 || cs[j].n_target < 1)
            return ked_fail(err, KED_ERR_ARG, "v*: request %d needs a template and a target token", j);
        v->B += cs[j].n_ctx + 1;
        v->n_logit += cs[j].n_ctx * cs[j].n_target + 1;
    }
    int B = v->B;
    v->row0 = ked_malloc(sizeof(int) * (size_t)n, "v* rows", err);
    v->lg0 = ked_malloc(sizeof(int) * (size_t)n, "v* rows", err);
    v->p0 = ked_malloc(sizeof(int) * (size_t)B, "v* rows", err);
    v->wlen = ked_malloc(sizeof(int) * (size_t)B, "v* rows", err);
    v->site = ked_malloc(sizeof(int) * (size_t)B, "v* rows", err);
    v->tok = ked_malloc(sizeof(int *) * (size_t)B, "v* rows", err);
    v->ntok = ked_malloc(sizeof(int) * (size_t)B, "v* rows", err);
    v->lidx = ked_malloc(sizeof(int) * (size_t)v->n_logit, "v* rows", err);
    v->len = ked_malloc(sizeof(int) * (size_t)B, "v* rows", err);
    if (!v->row0 || !v->lg0 || !v->p0 || !v->wlen || !v->site || !v->tok || !v->ntok || !v->lidx ||
        !v->len)
        return KED_ERR_NOMEM;
    int longest = 0;
    for (int j = 0, b = 0; j < n; j++) {
        const edit_case *c = &cs[j];
        v->row0[j] = b;
        for (int i = 0; i <= c->n_ctx; i++, b++) {
            const edit_seq *sq = i < c->n_ctx ? &c->ctx[i] : &c->kl;
            int whole = i < c->n_ctx ? sq->n + c->n_target - 1 : sq->n;
            if (sq->lookup < 0 || sq->lookup >= sq->n)
                return ked_fail(err, KED_ERR_ARG, "v*: request %d row %d: lookup token %d outside "
                                "its %d tokens", j, i, sq->lookup, sq->n);
            v->tok[b] = sq->ids;
            v->ntok[b] = sq->n;
            // the KL row's loss reads only its lookup token: its window ends there
            int end = full ? whole : i < c->n_ctx ? whole : sq->lookup + 1;
            v->p0[b] = full ? 0 : sq->lookup;
            v->wlen[b] = end - v->p0[b];
            v->site[b] = sq->lookup - v->p0[b];
            if (v->wlen[b] > v->Tw) v->Tw = v->wlen[b];
            if (v->p0[b] > v->Tp) v->Tp = v->p0[b];
            if (end > longest) longest = end;
        }
    }
    if (longest > cfg->max_pos && cfg->pos == KED_POS_LEARNED)
        return ked_fail(err, KED_ERR_ARG, "v*: %d tokens exceed the model's %d positions", longest,
                        cfg->max_pos);
    // a run made for backward continues rows only when S > T
    v->S = v->Tp > 0 && longest <= v->Tw ? v->Tw + 1 : longest;
    if (v->Tp > 0 && cfg->pos == KED_POS_LEARNED && v->S > cfg->max_pos) v->S = cfg->max_pos;
    v->ids = ked_malloc(sizeof(int) * (size_t)B * v->Tw, "v* rows", err);
    if (!v->ids) return KED_ERR_NOMEM;
    for (int j = 0, k = 0; j < n; j++) {
        const edit_case *c = &cs[j];
        v->lg0[j] = k;
        for (int i = 0; i <= c->n_ctx; i++) {
            int b = v->row0[j] + i;
            for (int t = 0; t < v->Tw; t++)
                v->ids[(size_t)b * v->Tw + t] =
                    t < v->wlen[b] ? row_token(v, c, b, v->p0[b] + t) : v->tok[b][0];
            v->len[b] = v->wlen[b];
            if (i < c->n_ctx)
                for (int t = 0; t < c->n_target; t++)
                    v->lidx[k++] = b * v->Tw + c->ctx[i].n - 1 + t - v->p0[b];
            else
                v->lidx[k++] = b * v->Tw + v->site[b];
        }
    }
    return KED_OK;
}

// the prefixes (positions 0 .. p0-1 of each row) through every layer in one pass of a
// forward-only run that fills the key/value cache of r (its memory is given back before the steps
// touch r's activations, so the two do not add up in the peak)
static ked_status vrows_prefill(const ked_model *m, ked_run *r, const vrows *v, ked_error *err) {
    int B = v->B, Tp = v->Tp;
    int *ids = ked_malloc(sizeof(int) * (size_t)B * Tp, "v* prefill", err);
    int *p0 = ked_calloc((size_t)B, sizeof(int), "v* prefill", err);
    ked_run *rp = NULL;
    ked_status st = KED_OK;
    if (!ids || !p0) { st = KED_ERR_NOMEM; goto done; }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tp; t++) ids[(size_t)b * Tp + t] = t < v->p0[b] ? v->tok[b][t] : v->tok[b][0];
    ked_run_opts ro = {B, Tp, v->S, 0, 1, 0, r, 0};
    if ((st = ked_run_new_opts(m, &ro, &rp, err))) goto done;
    ked_forward_opts fo = ked_forward_defaults();
    fo.row_pos0 = p0; // all 0: rows whose lookup token is their first have nothing to prefill
    fo.logit_idx = p0; // any pointer: no logit rows
    fo.n_logit = 0;
    st = ked_forward(m, rp, ids, B, Tp, v->p0, &fo, err);
done:
    ked_run_free(rp);
    free(ids); free(p0);
    return st;
}

// the points deltas are added at: vo->points, or hp->v_point alone; returns how many (pts holds
// at most VSTAR_MAX_POINTS of them)
static int vstar_points(const ked_hparams *hp, const vstar_opts *vo, ked_hook_point *pts) {
    int np = vo && vo->n_points > 0 ? vo->n_points : 1;
    for (int p = 0; p < np && p < VSTAR_MAX_POINTS; p++)
        pts[p] = vo && vo->n_points > 0 ? vo->points[p] : hp->v_point;
    return np;
}

// the run of the steps over rows v. One delta on the MLP's output or on the layer's output is a
// delta on the residual entering layer+1 (*shift = 1): the steps start there. A delta on the
// attention's output (PMET) is inside the layer: the steps start at the layer itself. The loss
// reads each logit row before writing its gradient there: one buffer for both.
static ked_run_opts vstar_run_opts(const ked_config *cfg, const vrows *v, int full, int np,
                                   const ked_hook_point *pts, int layer, int *shift) {
    *shift = !full && np == 1 && (pts[0] == KED_HOOK_MLP_OUT || pts[0] == KED_HOOK_RESID_OUT) &&
             layer + 1 < cfg->n_layer;
    return (ked_run_opts){v->B, v->Tw, v->S, 1, v->n_logit, layer + *shift, NULL, 1};
}

// the bytes of the steps' run for requests cs (n), or SIZE_MAX when they do not make one (the
// error is edit_vstar_run's to report)
static size_t vstar_run_bytes(const ked_model *m, const ked_hparams *hp, const edit_case *cs,
                              int n, int layer, const vstar_opts *vo) {
    const ked_config *cfg = ked_model_config(m);
    ked_hook_point pts[VSTAR_MAX_POINTS];
    int np = vstar_points(hp, vo, pts), shift, full = vo && vo->full;
    vrows v;
    memset(&v, 0, sizeof v);
    size_t bytes = SIZE_MAX;
    if (np <= VSTAR_MAX_POINTS && !vrows_build(cfg, cs, n, full, &v, NULL)) {
        ked_run_opts ro = vstar_run_opts(cfg, &v, full, np, pts, layer, &shift);
        bytes = run_bytes_for(m, &ro);
    }
    vrows_free(&v);
    return bytes;
}

// request j's loss at this step, its gradient into dlogits; returns the loss. delta (np, C) and
// ti_norm (np): the request's deltas and the norms of their target_init. nll_factor scales the
// NLL term (PMET's nll_loss_factor; 1 otherwise). *all_top: every target token is the argmax
// of its position in every template row (PMET's max_prob == prob).
static float vstar_loss(const ked_hparams *hp, const edit_case *c, const float *logits, float *dl,
                        int V, float *kl_init, int first, const float *delta, int C, int np,
                        const double *ti_norm, float nll_factor, float *lp, int *all_top,
                        vstar_result *res) {
    int nt = c->n_target, nr = c->n_ctx;
    double nll = 0;
    float gs = 1.0f / ((float)nt * (float)nr);
    if (nll_factor != 1.0f) gs *= nll_factor;
    *all_top = 1;
    for (int q = 0; q < nr * nt; q++) {
        const float *z = logits + (size_t)q * V;
        float *dz = dl + (size_t)q * V;
        int tg = c->target[q % nt];
        log_softmax_row(lp, z, V);
        nll -= lp[tg];
        for (int v = 0; v < V; v++) {
            dz[v] = expf(lp[v]) * gs;
            if (lp[v] > lp[tg]) *all_top = 0;
        }
        dz[tg] -= gs;
    }
    nll /= (double)nt * nr;
    if (nll_factor != 1.0f) nll *= nll_factor;
    // KL(p_now || p_init) at the KL row
    const float *z = logits + (size_t)nr * nt * V;
    float *dz = dl + (size_t)nr * nt * V;
    log_softmax_row(lp, z, V);
    if (first) memcpy(kl_init, lp, sizeof(float) * V);
    double kl = 0;
    for (int v = 0; v < V; v++) kl += exp((double)lp[v]) * ((double)lp[v] - kl_init[v]);
    for (int v = 0; v < V; v++)
        dz[v] = (float)(hp->kl_factor * exp((double)lp[v]) * (((double)lp[v] - kl_init[v]) - kl));
    kl *= hp->kl_factor;
    double wd = 0;
    for (int p = 0; p < np; p++) {
        double dn = edit_norm2(delta + (size_t)p * C, C);
        if (ti_norm[p] > 0) wd += hp->v_weight_decay * dn / (ti_norm[p] * ti_norm[p]);
    }
    res->nll_last = (float)nll;
    res->kl_last = (float)kl;
    return (float)(nll + kl + wd);
}

ked_status edit_vstar_run(ked_model *m, const ked_hparams *hp, const edit_case *cs, int n,
                          int layer, const vstar_opts *vo, const ked_edit_opts *o,
                          vstar_result *res, ked_error *err) {
    const ked_config *cfg = ked_model_config(m);
    int C = cfg->d_model, V = cfg->vocab, F = cfg->d_ff;
    int full = vo && vo->full;
    ked_hook_point pts[VSTAR_MAX_POINTS];
    int np = vstar_points(hp, vo, pts);
    if (np > VSTAR_MAX_POINTS)
        return ked_fail(err, KED_ERR_ARG, "v*: %d hook points (at most %d)", np, VSTAR_MAX_POINTS);
    memset(res, 0, sizeof *res * (size_t)n);
    if (layer < 0 || layer >= cfg->n_layer)
        return ked_fail(err, KED_ERR_ARG, "edit layer %d outside the model's layers 0..%d", layer,
                        cfg->n_layer - 1);
    if (hp->v_num_grad_steps < 1)
        return ked_fail(err, KED_ERR_ARG, "%s: v_num_grad_steps %d must be at least 1", hp->source,
                        hp->v_num_grad_steps);
    for (int p = 0; p < np; p++) {
        if (hook_width(cfg, pts[p]) != C)
            return ked_fail(err, KED_ERR_ARG, "v*: hook point %s is not d_model wide",
                            ked_hook_point_name(pts[p]));
        for (int q = 0; q < p; q++)
            if (pts[q] == pts[p])
                return ked_fail(err, KED_ERR_ARG, "v*: hook point %s given twice",
                                ked_hook_point_name(pts[p]));
    }
    if (n < 1) return ked_fail(err, KED_ERR_ARG, "v*: no requests");
    int pmet = vo && vo->pmet_rule;
    vrows v;
    ked_status st = vrows_build(cfg, cs, n, full, &v, err);
    int B = v.B;
    size_t BC = (size_t)B * C;
    int *row = ked_malloc(sizeof(int) * (size_t)B, "v* batch", err);
    // per point: what is added, captured, and the gradient there, (B, C) each
    float *add = ked_calloc(BC * np, sizeof(float), "v* batch", err);
    float *cap = ked_calloc(BC * np, sizeof(float), "v* batch", err);
    float *grad = ked_calloc(BC * np, sizeof(float), "v* batch", err);
    float *keys = (vo && (vo->key_mean || vo->key_row0))
                      ? ked_calloc((size_t)B * F, sizeof(float), "v* keys", err) : NULL;
    float *g = ked_calloc((size_t)C, sizeof(float), "v* batch", err);
    float *kl_init = ked_malloc(sizeof(float) * (size_t)V * n, "v* batch", err);
    float *lp = ked_malloc(sizeof(float) * (size_t)V, "v* batch", err);
    double *ti_norm = ked_calloc((size_t)n * np, sizeof(double), "v* batch", err);
    float *nll_factor = ked_malloc(sizeof(float) * (size_t)n, "v* batch", err);
    int *done_j = ked_calloc((size_t)n, sizeof(int), "v* batch", err);
    edit_adam *adam = ked_calloc((size_t)n * np, sizeof *adam, "v* batch", err); // (n, np)
    ked_run *r = NULL;
    if (st) goto done;
    if (!row || !add || !cap || !grad || (vo && (vo->key_mean || vo->key_row0) && !keys) || !g ||
        !kl_init || !lp || !ti_norm || !nll_factor || !done_j || !adam) { st = KED_ERR_NOMEM; goto done; }
    for (int b = 0; b < B; b++) row[b] = b;
    for (int j = 0; j < n; j++) nll_factor[j] = pmet ? hp->nll_loss_factor : 1.0f;
    int shift;
    ked_run_opts ro = vstar_run_opts(cfg, &v, full, np, pts, layer, &shift);
    int from = ro.backward_from; // the layer the steps start at and the backward stops at
    if ((st = ked_run_new_opts(m, &ro, &r, err))) goto done;
    for (int j = 0; j < n; j++) {
        res[j].n_points = np;
        res[j].target_init = ked_calloc((size_t)C * np, sizeof(float), "v*", err);
        res[j].delta = ked_calloc((size_t)C * np, sizeof(float), "v*", err);
        if (!res[j].target_init || !res[j].delta) { st = KED_ERR_NOMEM; goto done; }
        for (int p = 0; p < np; p++)
            if ((st = edit_adam_init(&adam[(size_t)j * np + p], C, hp->v_lr, 0.0f, err))) goto done;
    }
    if (!full && v.Tp > 0 && (st = vrows_prefill(m, r, &v, err))) goto done;

    // a delta per point where it says; shifted, the one delta goes to the residual entering the
    // next layer (layer L itself is not recomputed) and target_init is still read at its point
    ked_hook hooks[VSTAR_MAX_POINTS + 2];
    for (int p = 0; p < np; p++)
        hooks[p] = (ked_hook){pts[p], layer, B, row, v.site, add + BC * p, cap + BC * p, grad + BC * p};
    ked_hook key_hook = {KED_HOOK_MLP_KEY, layer, B, row, v.site, NULL, keys, NULL};
    ked_hook init_hook = {pts[0], layer, B, row, v.site, NULL, cap, NULL};
    if (shift) {
        hooks[0].point = KED_HOOK_RESID_IN;
        hooks[0].layer = layer + 1;
        hooks[0].capture = NULL;
    }
    int steps = hp->v_num_grad_steps, left = n;
    for (int it = 0; it < steps && left > 0; it++) {
        for (int p = 0; p < np; p++)
            for (int j = 0; j < n; j++)
                for (int i = 0; i <= cs[j].n_ctx; i++)
                    memcpy(add + BC * p + (size_t)(v.row0[j] + i) * C, res[j].delta + (size_t)p * C,
                           sizeof(float) * C);
        // the first forward also captures: the keys, and target_init when shifted
        ked_hook first[VSTAR_MAX_POINTS + 2];
        int nh = 0;
        for (int p = 0; p < np; p++) first[nh++] = hooks[p];
        if (keys) first[nh++] = key_hook;
        if (shift) first[nh++] = init_hook;
        ked_forward_opts fo = ked_forward_defaults();
        fo.hooks = it == 0 ? first : hooks;
        fo.n_hooks = it == 0 ? nh : np;
        fo.logit_idx = v.lidx;
        fo.n_logit = v.n_logit;
        if (!full) {
            fo.row_pos0 = v.p0;
            if (from > 0) {
                if (it == 0) fo.cache_layer = from;
                else fo.start_layer = from;
            }
        }
        if ((st = ked_forward(m, r, v.ids, B, v.Tw, v.len, &fo, err))) goto done;
        float *logits = ked_run_logits(r, NULL), *dl = ked_run_dlogits(r);
        int any_step = 0;
        for (int j = 0; j < n; j++) {
            const edit_case *c = &cs[j];
            int k0 = v.lg0[j], nlj = c->n_ctx * c->n_target + 1;
            double *tn = ti_norm + (size_t)j * np;
            if (it == 0)
                for (int p = 0; p < np; p++) {
                    float *ti = res[j].target_init + (size_t)p * C;
                    memcpy(ti, cap + BC * p + (size_t)v.row0[j] * C, sizeof(float) * C);
                    tn[p] = edit_norm2(ti, C);
                }
            if (done_j[j]) {
                memset(dl + (size_t)k0 * V, 0, sizeof(float) * (size_t)nlj * V);
                continue;
            }
            int all_top = 0;
            float loss = vstar_loss(hp, c, logits + (size_t)k0 * V, dl + (size_t)k0 * V, V,
                                    kl_init + (size_t)j * V, it == 0, res[j].delta, C, np, tn,
                                    nll_factor[j], lp, &all_top, &res[j]);
            if (it < 256) res[j].loss[it] = loss;
            res[j].n_steps = it + 1;
            if (o && o->on_step && j == 0) o->on_step(it, loss, o->user);
            int stop = loss < 5e-2f;
            if (!stop && pmet) {
                // EasyEdit's PMET compute_zs: once every target token is the argmax, the NLL's
                // weight drops to a tenth (from the next step on) and the optimisation ends when
                // kl_factor * KL <= 0.01; otherwise the weight is back to nll_loss_factor
                if (all_top) {
                    nll_factor[j] = 0.1f * hp->nll_loss_factor;
                    if (res[j].kl_last <= 0.01f) stop = 1;
                } else {
                    nll_factor[j] = hp->nll_loss_factor;
                }
            }
            if (stop || it == steps - 1) {
                done_j[j] = 1;
                left--;
                // its rows must not move the others' deltas: no gradient from them
                memset(dl + (size_t)k0 * V, 0, sizeof(float) * (size_t)nlj * V);
                continue;
            }
            any_step = 1;
        }
        for (int j = 0; it == 0 && vo && vo->value_mean && j < n; j++)
            for (int x = 0; x < C; x++) {
                double s = 0;
                for (int i = 0; i < cs[j].n_ctx; i++) s += cap[(size_t)(v.row0[j] + i) * C + x];
                vo->value_mean[(size_t)j * C + x] = (float)(s / cs[j].n_ctx);
            }
        if (it == 0 && keys) { // k* (mean over template rows) and the first row's key
            for (int j = 0; j < n; j++) {
                int nr = cs[j].n_ctx;
                const float *k0 = keys + (size_t)v.row0[j] * F;
                if (vo->key_row0) memcpy(vo->key_row0 + (size_t)j * F, k0, sizeof(float) * F);
                if (vo->key_mean)
                    for (int x = 0; x < F; x++) {
                        double s = 0;
                        for (int i = 0; i < nr; i++) s += keys[(size_t)(v.row0[j] + i) * F + x];
                        vo->key_mean[(size_t)j * F + x] = (float)(s / nr);
                    }
            }
        }
        if (!any_step) break;
        if ((st = ked_backward(m, r, err))) goto done;
        for (int j = 0; j < n; j++) {
            if (done_j[j]) continue;
            for (int p = 0; p < np; p++) {
                float *d = res[j].delta + (size_t)p * C;
                double tn = ti_norm[(size_t)j * np + p];
                double dn = edit_norm2(d, C);
                for (int x = 0; x < C; x++) {
                    double s = 0;
                    const float *gp = grad + BC * p + (size_t)v.row0[j] * C + x;
                    for (int i = 0; i <= cs[j].n_ctx; i++) s += gp[(size_t)i * C];
                    g[x] = (float)s;
                    if (dn > 0 && tn > 0)
                        g[x] += (float)(hp->v_weight_decay * d[x] / (dn * tn * tn));
                }
                edit_adam_step(&adam[(size_t)j * np + p], d, g);
                double max_norm = hp->clamp_norm_factor * tn, nn = edit_norm2(d, C);
                if (nn > max_norm)
                    for (int x = 0; x < C; x++) d[x] = d[x] * (float)max_norm / (float)nn;
            }
        }
    }
done:
    for (int j = 0; adam && j < n * np; j++) edit_adam_free(&adam[j]);
    ked_run_free(r);
    vrows_free(&v);
    free(row); free(add); free(cap); free(grad); free(keys); free(g); free(kl_init); free(lp);
    free(ti_norm); free(nll_factor); free(done_j); free(adam);
    if (st) for (int j = 0; j < n; j++) vstar_result_free(&res[j]);
    return st;
}

ked_status edit_vstar(ked_model *m, const ked_hparams *hp, const edit_case *c, int layer, int full,
                      const ked_edit_opts *o, vstar_result *res, ked_error *err) {
    vstar_opts vo = {.full = full};
    return edit_vstar_run(m, hp, c, 1, layer, &vo, o, res, err);
}

ked_status edit_vstar_all(ked_model *m, const ked_hparams *hp, const edit_case *cs, int n,
                          int layer, const vstar_opts *vo, const ked_edit_opts *o,
                          vstar_result *res, ked_error *err) {
    const ked_config *cfg = ked_model_config(m);
    size_t budget = ked_model_weight_bytes(m) / 2;
    if (budget < VSTAR_MIN_BUDGET) budget = VSTAR_MIN_BUDGET;
    if (vo && vo->budget) budget = vo->budget; // as given
    for (int j0 = 0; j0 < n;) {
        int nb = 1;
        while (nb < VSTAR_MAX_BATCH && j0 + nb < n &&
               vstar_run_bytes(m, hp, cs + j0, nb + 1, layer, vo) <= budget)
            nb++;
        // the batch's share of what vo hands back per request
        vstar_opts vb = vo ? *vo : (vstar_opts){0};
        if (vb.key_mean) vb.key_mean += (size_t)j0 * cfg->d_ff;
        if (vb.key_row0) vb.key_row0 += (size_t)j0 * cfg->d_ff;
        if (vb.value_mean) vb.value_mean += (size_t)j0 * cfg->d_model;
        ked_status st = edit_vstar_run(m, hp, cs + j0, nb, layer, &vb, o, res + j0, err);
        if (st) {
            for (int j = 0; j < j0; j++) vstar_result_free(&res[j]);
            return st;
        }
        j0 += nb;
    }
    return KED_OK;
}

ked_status edit_vstar_batch(ked_model *m, const ked_hparams *hp, const edit_case *cs, int n,
                            int layer, const ked_edit_opts *o, vstar_result *res, ked_error *err) {
    return edit_vstar_all(m, hp, cs, n, layer, NULL, o, res, err);
}
