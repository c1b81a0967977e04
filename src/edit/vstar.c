// vstar.c: the v* optimisation of ROME (EasyEdit compute_v, easyedit-reference.md §2.0).
//
// One batch: a row per context template (the template formatted with the prompt, then the
// target's ids but the last: teacher forcing) and a last row "{subject} is a". A vector delta (C)
// is added at hook point hp->v_point (ROME: mlp_out) of `layer` at every row's lookup token.
//     nll  = mean over template rows of  -(1/|target|) sum_j log p(target_j | row, prefix)
//     kl   = kl_factor * KL(p_now || p_init) of the next-token distribution at the KL row's
//            lookup token (p_init: the first step's, i.e. without delta)
//     wd   = v_weight_decay * ||delta|| / ||target_init||^2      (a norm, not its square)
//     loss = nll + kl + wd; stop when loss < 5e-2 or at the last step (no step taken then);
//     otherwise Adam(lr v_lr) on delta, then delta is scaled back into the ball of radius
//     clamp_norm_factor * ||target_init||.
// target_init is the activation at row 0's lookup token on the first forward.
//
// Cost: the layers below `layer` never change, so the first forward keeps the residual
// entering `layer` (cache_layer) and every later one starts there (start_layer). Logits are
// computed only at the rows the loss reads (logit_idx): |target| per template row + 1.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"
#include "model/kernels.h"

void vstar_result_free(vstar_result *r) {
    free(r->target_init);
    free(r->delta);
    r->target_init = r->delta = NULL;
}

double edit_norm2(const float *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}


ked_status edit_vstar(ked_model *m, const ked_hparams *hp, const edit_case *c, int layer,
                      int no_cache, const ked_edit_opts *o, vstar_result *res, ked_error *err) {
    const ked_config *cfg = ked_model_config(m);
    int C = cfg->d_model, V = cfg->vocab, n_rw = c->n_ctx, B = n_rw + 1, nt = c->n_target;
    memset(res, 0, sizeof *res);
    if (layer < 0 || layer >= cfg->n_layer)
        return ked_fail(err, KED_ERR_ARG, "edit layer %d outside the model's layers 0..%d", layer,
                        cfg->n_layer - 1);
    if (hp->v_num_grad_steps < 1)
        return ked_fail(err, KED_ERR_ARG, "%s: v_num_grad_steps %d must be at least 1", hp->source,
                        hp->v_num_grad_steps);
    if (n_rw < 1 || nt < 1)
        return ked_fail(err, KED_ERR_ARG, "v*: needs at least one template and one target token");
    if (hook_width(cfg, hp->v_point) != C)
        return ked_fail(err, KED_ERR_ARG, "v*: hook point %s is not d_model wide",
                        ked_hook_point_name(hp->v_point));

    // the batch: template rows + target[:-1], then the KL row
    edit_seq *seqs = ked_malloc(sizeof *seqs * (size_t)B, "v* batch", err);
    int *extra = ked_calloc((size_t)B, sizeof(int), "v* batch", err);
    int *ids = NULL, *len = NULL, T = 0, n_logit = n_rw * nt + 1;
    int *row = ked_malloc(sizeof(int) * (size_t)B, "v* batch", err);
    int *pos = ked_malloc(sizeof(int) * (size_t)B, "v* batch", err);
    int *lidx = ked_malloc(sizeof(int) * (size_t)n_logit, "v* batch", err);
    int *tgt = ked_malloc(sizeof(int) * (size_t)n_logit, "v* batch", err);
    float *add = ked_calloc((size_t)B * C, sizeof(float), "v* batch", err);
    float *cap = ked_calloc((size_t)B * C, sizeof(float), "v* batch", err);
    float *grad = ked_calloc((size_t)B * C, sizeof(float), "v* batch", err);
    float *g = ked_calloc((size_t)C, sizeof(float), "v* batch", err);
    float *kl_init = ked_malloc(sizeof(float) * (size_t)V, "v* batch", err);
    float *lp = ked_malloc(sizeof(float) * (size_t)V, "v* batch", err);
    res->target_init = ked_calloc((size_t)C, sizeof(float), "v*", err);
    res->delta = ked_calloc((size_t)C, sizeof(float), "v*", err);
    ked_run *r = NULL;
    edit_adam adam = {0};
    ked_status st = KED_OK;
    if (!seqs || !extra || !row || !pos || !lidx || !tgt || !add || !cap || !grad || !g ||
        !kl_init || !lp || !res->target_init || !res->delta) {
        st = KED_ERR_NOMEM;
        goto done;
    }
    for (int i = 0; i < n_rw; i++) { seqs[i] = c->ctx[i]; extra[i] = nt - 1; }
    seqs[n_rw] = c->kl;
    if ((st = edit_batch(seqs, B, c->target, extra, &ids, &len, &T, err))) goto done;
    if (T > cfg->max_pos && cfg->pos == KED_POS_LEARNED) {
        st = ked_fail(err, KED_ERR_ARG, "v*: %d tokens exceed the model's %d positions", T, cfg->max_pos);
        goto done;
    }
    for (int i = 0; i < B; i++) { row[i] = i; pos[i] = seqs[i].lookup; }
    for (int i = 0; i < n_rw; i++)
        for (int j = 0; j < nt; j++) {
            lidx[i * nt + j] = i * T + c->ctx[i].n - 1 + j;
            tgt[i * nt + j] = c->target[j];
        }
    lidx[n_rw * nt] = n_rw * T + c->kl.lookup;
    tgt[n_rw * nt] = -1;
    if ((st = ked_run_new(m, B, T, T, 1, &r, err))) goto done;
    if ((st = edit_adam_init(&adam, C, hp->v_lr, 0.0f, err))) goto done;

    ked_hook hook = {hp->v_point, layer, B, row, pos, add, cap, grad};
    double ti_norm = 0;
    int steps = hp->v_num_grad_steps;
    for (int it = 0; it < steps; it++) {
        for (int i = 0; i < B; i++) memcpy(add + (size_t)i * C, res->delta, sizeof(float) * C);
        ked_forward_opts fo = ked_forward_defaults();
        fo.hooks = &hook;
        fo.n_hooks = 1;
        fo.logit_idx = lidx;
        fo.n_logit = n_logit;
        if (!no_cache && layer > 0) {
            if (it == 0) fo.cache_layer = layer;
            else fo.start_layer = layer;
        }
        if ((st = ked_forward(m, r, ids, B, T, len, &fo, err))) goto done;
        if (it == 0) {
            memcpy(res->target_init, cap, sizeof(float) * C); // row 0, delta = 0
            ti_norm = edit_norm2(res->target_init, C);
        }
        float *logits = ked_run_logits(r, NULL), *dl = ked_run_dlogits(r);
        // nll over the template rows
        double nll = 0;
        float gs = 1.0f / ((float)nt * (float)n_rw);
        for (int k = 0; k < n_rw * nt; k++) {
            float *z = logits + (size_t)k * V, *dz = dl + (size_t)k * V;
            log_softmax_row(lp, z, V);
            nll -= lp[tgt[k]];
            for (int v = 0; v < V; v++) dz[v] = expf(lp[v]) * gs;
            dz[tgt[k]] -= gs;
        }
        nll /= (double)nt * n_rw;
        // KL(p_now || p_init) at the KL row
        float *z = logits + (size_t)n_rw * nt * V, *dz = dl + (size_t)n_rw * nt * V;
        log_softmax_row(lp, z, V);
        if (it == 0) memcpy(kl_init, lp, sizeof(float) * V);
        double kl = 0;
        for (int v = 0; v < V; v++) kl += exp((double)lp[v]) * ((double)lp[v] - kl_init[v]);
        for (int v = 0; v < V; v++)
            dz[v] = (float)(hp->kl_factor * exp((double)lp[v]) * (((double)lp[v] - kl_init[v]) - kl));
        kl *= hp->kl_factor;
        double dn = edit_norm2(res->delta, C);
        double wd = ti_norm > 0 ? hp->v_weight_decay * dn / (ti_norm * ti_norm) : 0;
        float loss = (float)(nll + kl + wd);
        if (it < 256) res->loss[it] = loss;
        res->n_steps = it + 1;
        res->nll_last = (float)nll;
        res->kl_last = (float)kl;
        if (o && o->on_step) o->on_step(it, loss, o->user);
        if (loss < 5e-2f || it == steps - 1) break;

        if ((st = ked_backward(m, r, err))) goto done;
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int i = 0; i < B; i++) s += grad[(size_t)i * C + j];
            g[j] = (float)s;
            if (dn > 0 && ti_norm > 0)
                g[j] += (float)(hp->v_weight_decay * res->delta[j] / (dn * ti_norm * ti_norm));
        }
        edit_adam_step(&adam, res->delta, g);
        double max_norm = hp->clamp_norm_factor * ti_norm, nn = edit_norm2(res->delta, C);
        if (nn > max_norm) {
            for (int j = 0; j < C; j++) res->delta[j] = res->delta[j] * (float)max_norm / (float)nn;
        }
    }
done:
    edit_adam_free(&adam);
    ked_run_free(r);
    free(seqs); free(extra); free(ids); free(len); free(row); free(pos); free(lidx); free(tgt);
    free(add); free(cap); free(grad); free(g); free(kl_init); free(lp);
    if (st) vstar_result_free(res);
    return st;
}
