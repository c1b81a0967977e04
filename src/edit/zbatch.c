// zbatch.c: the z optimisations of a batch of requests (MEMIT's compute_z, easyedit-reference.md
// §2.0) run together: one forward and one backward per step over every request's rows (its
// template rows + its KL row), each request with its own delta, Adam state, loss, early stop and
// clamp. The requests' rows never interact (separate rows of the batch, a delta per request, the
// gradient of the summed loss with respect to delta_j is that of request j's loss), so this
// computes what edit_vstar computes for each request alone, with one batch shape instead of n.
// A request whose loss fell below 5e-2 (or that ran its budget) keeps its delta; its rows are
// still computed until every request is done.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"
#include "model/kernels.h"


ked_status edit_vstar_batch(ked_model *m, const ked_hparams *hp, const edit_case *cs, int n,
                            int layer, const ked_edit_opts *o, vstar_result *res, ked_error *err) {
    const ked_config *cfg = ked_model_config(m);
    int C = cfg->d_model, V = cfg->vocab;
    memset(res, 0, sizeof *res * (size_t)n);
    if (layer < 0 || layer >= cfg->n_layer)
        return ked_fail(err, KED_ERR_ARG, "edit layer %d outside the model's layers 0..%d", layer,
                        cfg->n_layer - 1);
    if (hp->v_num_grad_steps < 1)
        return ked_fail(err, KED_ERR_ARG, "%s: v_num_grad_steps %d must be at least 1", hp->source,
                        hp->v_num_grad_steps);
    if (hook_width(cfg, hp->v_point) != C)
        return ked_fail(err, KED_ERR_ARG, "z: hook point %s is not d_model wide",
                        ked_hook_point_name(hp->v_point));
    // rows: request j's templates (+ its target but the last), then its KL row
    int B = 0, n_logit = 0;
    for (int j = 0; j < n; j++) {
        if (cs[j].n_ctx < 1 || cs[j].n_target < 1)
            return ked_fail(err, KED_ERR_ARG, "z: request %d needs a template and a target token", j);
        B += cs[j].n_ctx + 1;
        n_logit += cs[j].n_ctx * cs[j].n_target + 1;
    }
    edit_seq *seqs = ked_malloc(sizeof *seqs * (size_t)B, "z batch", err);
    int *row0 = ked_malloc(sizeof(int) * (size_t)n, "z batch", err), *lg0 = ked_malloc(sizeof(int) * (size_t)n, "z batch", err);
    int *ids = NULL, *len = NULL, T = 0, maxn = 0;
    int *row = ked_malloc(sizeof(int) * (size_t)B, "z batch", err);
    int *pos = ked_malloc(sizeof(int) * (size_t)B, "z batch", err);
    int *lidx = ked_malloc(sizeof(int) * (size_t)n_logit, "z batch", err);
    float *add = ked_calloc((size_t)B * C, sizeof(float), "z batch", err);
    float *cap = ked_calloc((size_t)B * C, sizeof(float), "z batch", err);
    float *grad = ked_calloc((size_t)B * C, sizeof(float), "z batch", err);
    float *g = ked_calloc((size_t)C, sizeof(float), "z batch", err);
    float *kl_init = ked_malloc(sizeof(float) * (size_t)V * n, "z batch", err);
    float *lp = ked_malloc(sizeof(float) * (size_t)V, "z batch", err);
    double *ti_norm = ked_calloc((size_t)n, sizeof(double), "z batch", err);
    int *done_j = ked_calloc((size_t)n, sizeof(int), "z batch", err);
    edit_adam *adam = ked_calloc((size_t)n, sizeof *adam, "z batch", err);
    ked_run *r = NULL;
    ked_status st = KED_OK;
    if (!seqs || !row0 || !lg0 || !row || !pos || !lidx || !add || !cap || !grad || !g || !kl_init ||
        !lp || !ti_norm || !done_j || !adam) { st = KED_ERR_NOMEM; goto done; }
    // the rows and the extra (teacher-forced target) ids: edit_batch appends one shared list, so
    // build the padded batch here
    for (int j = 0, b = 0; j < n; j++) {
        row0[j] = b;
        for (int i = 0; i < cs[j].n_ctx; i++, b++) {
            seqs[b] = cs[j].ctx[i];
            int l = cs[j].ctx[i].n + cs[j].n_target - 1;
            if (l > maxn) maxn = l;
        }
        seqs[b++] = cs[j].kl;
        if (cs[j].kl.n > maxn) maxn = cs[j].kl.n;
    }
    T = maxn;
    if (T > cfg->max_pos && cfg->pos == KED_POS_LEARNED) {
        st = ked_fail(err, KED_ERR_ARG, "z: %d tokens exceed the model's %d positions", T, cfg->max_pos);
        goto done;
    }
    ids = ked_malloc(sizeof(int) * (size_t)B * T, "z batch", err);
    len = ked_malloc(sizeof(int) * (size_t)B, "z batch", err);
    if (!ids || !len) { st = KED_ERR_NOMEM; goto done; }
    for (int j = 0, b = 0, k = 0; j < n; j++) {
        const edit_case *c = &cs[j];
        lg0[j] = k;
        for (int i = 0; i <= c->n_ctx; i++, b++) {
            int *rw = ids + (size_t)b * T, nn = seqs[b].n, used = nn;
            memcpy(rw, seqs[b].ids, sizeof(int) * (size_t)nn);
            if (i < c->n_ctx) {
                memcpy(rw + nn, c->target, sizeof(int) * (size_t)(c->n_target - 1));
                used += c->n_target - 1;
                for (int t = 0; t < c->n_target; t++) lidx[k++] = b * T + nn - 1 + t;
            } else {
                lidx[k++] = b * T + c->kl.lookup;
            }
            for (int t = used; t < T; t++) rw[t] = seqs[b].ids[0];
            len[b] = used;
            row[b] = b;
            pos[b] = seqs[b].lookup;
        }
    }
    if ((st = ked_run_new(m, B, T, T, 1, &r, err))) goto done;
    for (int j = 0; j < n; j++) {
        res[j].target_init = ked_calloc((size_t)C, sizeof(float), "z", err);
        res[j].delta = ked_calloc((size_t)C, sizeof(float), "z", err);
        if (!res[j].target_init || !res[j].delta) { st = KED_ERR_NOMEM; goto done; }
        if ((st = edit_adam_init(&adam[j], C, hp->v_lr, 0.0f, err))) goto done;
    }
    ked_hook hook = {hp->v_point, layer, B, row, pos, add, cap, grad};
    int steps = hp->v_num_grad_steps, left = n;
    for (int it = 0; it < steps && left > 0; it++) {
        for (int j = 0; j < n; j++)
            for (int i = 0; i <= cs[j].n_ctx; i++)
                memcpy(add + (size_t)(row0[j] + i) * C, res[j].delta, sizeof(float) * C);
        ked_forward_opts fo = ked_forward_defaults();
        fo.hooks = &hook;
        fo.n_hooks = 1;
        fo.logit_idx = lidx;
        fo.n_logit = n_logit;
        if (layer > 0) {
            if (it == 0) fo.cache_layer = layer;
            else fo.start_layer = layer;
        }
        if ((st = ked_forward(m, r, ids, B, T, len, &fo, err))) goto done;
        float *logits = ked_run_logits(r, NULL), *dl = ked_run_dlogits(r);
        memset(dl, 0, sizeof(float) * (size_t)n_logit * V);
        int any_step = 0;
        for (int j = 0; j < n; j++) {
            const edit_case *c = &cs[j];
            int nt = c->n_target, nr = c->n_ctx, k0 = lg0[j];
            if (it == 0) {
                memcpy(res[j].target_init, cap + (size_t)row0[j] * C, sizeof(float) * C);
                ti_norm[j] = edit_norm2(res[j].target_init, C);
            }
            if (done_j[j]) continue;
            double nll = 0;
            float gs = 1.0f / ((float)nt * (float)nr);
            for (int q = 0; q < nr * nt; q++) {
                float *z = logits + (size_t)(k0 + q) * V, *dz = dl + (size_t)(k0 + q) * V;
                int tg = c->target[q % nt];
                log_softmax_row(lp, z, V);
                nll -= lp[tg];
                for (int v = 0; v < V; v++) dz[v] = expf(lp[v]) * gs;
                dz[tg] -= gs;
            }
            nll /= (double)nt * nr;
            float *z = logits + (size_t)(k0 + nr * nt) * V, *dz = dl + (size_t)(k0 + nr * nt) * V;
            float *kli = kl_init + (size_t)j * V;
            log_softmax_row(lp, z, V);
            if (it == 0) memcpy(kli, lp, sizeof(float) * V);
            double kl = 0;
            for (int v = 0; v < V; v++) kl += exp((double)lp[v]) * ((double)lp[v] - kli[v]);
            for (int v = 0; v < V; v++)
                dz[v] = (float)(hp->kl_factor * exp((double)lp[v]) * (((double)lp[v] - kli[v]) - kl));
            kl *= hp->kl_factor;
            double dn = edit_norm2(res[j].delta, C);
            double wd = ti_norm[j] > 0 ? hp->v_weight_decay * dn / (ti_norm[j] * ti_norm[j]) : 0;
            float loss = (float)(nll + kl + wd);
            if (it < 256) res[j].loss[it] = loss;
            res[j].n_steps = it + 1;
            res[j].nll_last = (float)nll;
            res[j].kl_last = (float)kl;
            if (o && o->on_step && j == 0) o->on_step(it, loss, o->user);
            if (loss < 5e-2f || it == steps - 1) {
                done_j[j] = 1;
                left--;
                // its rows must not move the others' deltas: no gradient from them
                for (int q = 0; q <= nr * nt; q++) memset(dl + (size_t)(k0 + q) * V, 0, sizeof(float) * V);
                continue;
            }
            any_step = 1;
        }
        if (!any_step) break;
        if ((st = ked_backward(m, r, err))) goto done;
        for (int j = 0; j < n; j++) {
            if (done_j[j]) continue;
            double dn = edit_norm2(res[j].delta, C);
            for (int x = 0; x < C; x++) {
                double s = 0;
                for (int i = 0; i <= cs[j].n_ctx; i++) s += grad[(size_t)(row0[j] + i) * C + x];
                g[x] = (float)s;
                if (dn > 0 && ti_norm[j] > 0)
                    g[x] += (float)(hp->v_weight_decay * res[j].delta[x] / (dn * ti_norm[j] * ti_norm[j]));
            }
            edit_adam_step(&adam[j], res[j].delta, g);
            double max_norm = hp->clamp_norm_factor * ti_norm[j], nn = edit_norm2(res[j].delta, C);
            if (nn > max_norm)
                for (int x = 0; x < C; x++) res[j].delta[x] = res[j].delta[x] * (float)max_norm / (float)nn;
        }
    }
done:
    for (int j = 0; adam && j < n; j++) edit_adam_free(&adam[j]);
    ked_run_free(r);
    free(seqs); free(row0); free(lg0); free(ids); free(len); free(row); free(pos); free(lidx);
    free(add); free(cap); free(grad); free(g); free(kl_init); free(lp); free(ti_norm); free(done_j);
    free(adam);
    if (st) for (int j = 0; j < n; j++) vstar_result_free(&res[j]);
    return st;
}
