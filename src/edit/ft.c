// ft.c: FT-L and FT-M (easyedit-reference.md §2.1): Adam on the down-projection weights (and
// bias, when the template names the module and the model has one) of hp->layers, the others
// frozen, for one request (batch_size 1):
//     FT-L (prompt_last): loss = -mean_j log p(target_j | prompt), every target token read at the
//          prompt's last position (a bag of tokens, as the ROME paper's baseline)
//     FT-M (target_new):  loss = mean over target tokens of -log p(target_j | prompt, target_<j)
// For up to num_steps steps: stop when loss < 1e-2 (no step then); Adam(lr, weight_decay) step;
// with norm_constraint eps > 0 every weight is clamped to [w0 - eps, w0 + eps]. The result is a
// dense patch (w - w0) per trained tensor; the model is unchanged afterwards.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"

#define FT_MAX_TENSORS (2 * KED_MAX_EDIT_LAYERS)

ked_status edit_ft_case(ked_model *m, const ked_hparams *hp, const edit_case *c,
                        const ked_edit_opts *o, ked_patch **out, ked_edit_info *info,
                        ked_error *err) {
    const ked_config *cfg = ked_model_config(m);
    int V = cfg->vocab, nt = c->n_target, nb = c->bare.n;
    int target_new = hp->ft_target_new;
    if (hp->n_layers < 1) return ked_fail(err, KED_ERR_ARG, "%s: no layers to edit", hp->source);
    for (int i = 0; i < hp->n_layers; i++)
        if (hp->layers[i] < 0 || hp->layers[i] >= cfg->n_layer)
            return ked_fail(err, KED_ERR_ARG, "%s: layer %d outside the model's layers 0..%d",
                            hp->source, hp->layers[i], cfg->n_layer - 1);
    if (nt < 1) return ked_fail(err, KED_ERR_ARG, "FT: the target has no tokens");
    int T = target_new ? nb + nt - 1 : nb;
    if (cfg->pos == KED_POS_LEARNED && T > cfg->max_pos)
        return ked_fail(err, KED_ERR_ARG, "FT: %d tokens exceed the model's %d positions", T, cfg->max_pos);

    // the trained tensors, made writable, with gradient buffers
    temp_weight tw[FT_MAX_TENSORS];
    float *w0[FT_MAX_TENSORS], *had_grad[FT_MAX_TENSORS];
    edit_adam adam[FT_MAX_TENSORS];
    int nw = 0;
    memset(tw, 0, sizeof tw);
    memset(w0, 0, sizeof w0);
    memset(had_grad, 0, sizeof had_grad);
    memset(adam, 0, sizeof adam);
    int *ids = ked_malloc(sizeof(int) * (size_t)T, "FT", err);
    int *lidx = ked_malloc(sizeof(int) * (size_t)nt, "FT", err);
    int *tgt = ked_malloc(sizeof(int) * (size_t)nt, "FT", err);
    ked_run *r = NULL;
    ked_patch *p = NULL;
    ked_status st = KED_OK;
    if (!ids || !lidx || !tgt) { st = KED_ERR_NOMEM; goto done; }
    if ((st = patch_new(target_new ? "ft-m" : "ft-l", &p, err))) goto done;
    for (int i = 0; i < hp->n_layers; i++) {
        int slots[2] = {P_WDOWN, P_BDOWN};
        for (int s = 0; s < 2; s++) {
            if (s == 1 && (!hp->ft_bias || !param_present(model_param(m, hp->layers[i], P_BDOWN))))
                continue;
            int dup = 0;
            for (int k = 0; k < nw; k++) dup |= tw[k].p == model_param(m, hp->layers[i], slots[s]);
            if (dup) continue;
            if ((st = temp_weight_begin(m, hp->layers[i], slots[s], &tw[nw], err))) goto done;
            ked_param *q = tw[nw].p;
            size_t n = (size_t)(q->rows * q->cols);
            nw++;
            w0[nw - 1] = tw[nw - 1].orig;
            had_grad[nw - 1] = q->grad; // a buffer someone enabled stays theirs
            if (!q->grad) q->grad = ked_calloc(n, sizeof(float), "FT gradient", err);
            if (!q->grad) { st = KED_ERR_NOMEM; goto done; }
            if ((st = edit_adam_init(&adam[nw - 1], (int64_t)n, hp->lr, hp->weight_decay, err))) goto done;
        }
    }
    memcpy(ids, c->bare.ids, sizeof(int) * (size_t)nb);
    if (target_new) memcpy(ids + nb, c->target, sizeof(int) * (size_t)(nt - 1));
    for (int j = 0; j < nt; j++) {
        lidx[j] = target_new ? nb - 1 + j : nb - 1;
        tgt[j] = c->target[j];
    }
    if ((st = ked_run_new(m, 1, T, T, 1, &r, err))) goto done;
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->method, sizeof info->method, "%s", p->method);
        info->layer = hp->layers[0];
        info->subject_token = c->bare.lookup;
    }
    for (int it = 0; it < hp->num_steps; it++) {
        ked_forward_opts fo = ked_forward_defaults();
        fo.logit_idx = lidx;
        fo.n_logit = target_new ? nt : 1;
        if ((st = ked_forward(m, r, ids, 1, T, NULL, &fo, err))) goto done;
        float *logits = ked_run_logits(r, NULL), *dl = ked_run_dlogits(r);
        double loss = 0;
        float gs = 1.0f / (float)nt;
        if (target_new) {
            for (int j = 0; j < nt; j++) { // row j predicts target j
                const float *z = logits + (size_t)j * V;
                float *dz = dl + (size_t)j * V;
                float mx = -INFINITY;
                for (int v = 0; v < V; v++) mx = z[v] > mx ? z[v] : mx;
                double s = 0;
                for (int v = 0; v < V; v++) s += exp((double)z[v] - mx);
                double lse = mx + log(s);
                loss -= z[tgt[j]] - lse;
                for (int v = 0; v < V; v++) dz[v] = (float)exp(z[v] - lse) * gs;
                dz[tgt[j]] -= gs;
            }
        } else { // every target token at the last prompt position
            const float *z = logits;
            float *dz = dl;
            float mx = -INFINITY;
            for (int v = 0; v < V; v++) mx = z[v] > mx ? z[v] : mx;
            double s = 0;
            for (int v = 0; v < V; v++) s += exp((double)z[v] - mx);
            double lse = mx + log(s);
            for (int v = 0; v < V; v++) dz[v] = (float)exp(z[v] - lse); // sum_j (p - e_j) / nt
            for (int j = 0; j < nt; j++) {
                loss -= z[tgt[j]] - lse;
                dz[tgt[j]] -= gs;
            }
        }
        loss /= nt;
        if (info && it < 256) { info->loss[it] = (float)loss; info->n_steps = it + 1; }
        if (o && o->on_step) o->on_step(it, (float)loss, o->user);
        if (loss < 1e-2) break;
        for (int k = 0; k < nw; k++)
            memset(tw[k].p->grad, 0, sizeof(float) * (size_t)(tw[k].p->rows * tw[k].p->cols));
        if ((st = ked_backward(m, r, err))) goto done;
        for (int k = 0; k < nw; k++) {
            ked_param *q = tw[k].p;
            edit_adam_step(&adam[k], q->w, q->grad);
            if (hp->norm_constraint > 0) {
                float eps = hp->norm_constraint;
                for (int64_t i = 0; i < q->rows * q->cols; i++) {
                    float lo = w0[k][i] - eps, hi = w0[k][i] + eps;
                    q->w[i] = q->w[i] < lo ? lo : q->w[i] > hi ? hi : q->w[i];
                }
            }
        }
    }
    for (int k = 0; k < nw; k++) { // delta = w - w0, into the patch
        ked_param *q = tw[k].p;
        int64_t n = q->rows * q->cols;
        float *d = ked_malloc(sizeof(float) * (size_t)n, "FT delta", err);
        if (!d) { st = KED_ERR_NOMEM; goto done; }
        for (int64_t i = 0; i < n; i++) d[i] = q->w[i] - w0[k][i];
        int layer = -1, slot = -1;
        for (int l = 0; l < cfg->n_layer && layer < 0; l++)
            for (int s = 0; s < P_LAYER_COUNT; s++)
                if (model_param(m, l, s) == q) { layer = l; slot = s; break; }
        st = patch_add_dense(p, m, layer, slot, d, err);
        free(d);
        if (st) goto done;
    }
    *out = p;
    p = NULL;
done:
    for (int k = nw - 1; k >= 0; k--) {
        if (tw[k].p && !had_grad[k]) { free(tw[k].p->grad); tw[k].p->grad = NULL; }
        else if (tw[k].p) memset(tw[k].p->grad, 0, sizeof(float) * (size_t)(tw[k].p->rows * tw[k].p->cols));
        temp_weight_end(&tw[k]);
        edit_adam_free(&adam[k]);
    }
    ked_run_free(r);
    ked_patch_free(p);
    free(ids); free(lidx); free(tgt);
    return st;
}
