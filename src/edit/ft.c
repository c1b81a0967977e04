// ft.c: FT-L and FT-M (easyedit-reference.md §2.1): Adam on the down-projection weights (and
// bias, when the template names the module and the model has one) of hp->layers, the others
// frozen, for one request (batch_size 1):
//     FT-L (prompt_last): loss = -mean_j log p(target_j | prompt), every target token read at the
//          prompt's last position (a bag of tokens, as the ROME paper's baseline)
//     FT-M (target_new):  loss = mean over target tokens of -log p(target_j | prompt, target_<j)
// For up to num_steps steps: stop when loss < 1e-2 (no step then); Adam(lr, weight_decay) step;
// with norm_constraint eps > 0 every weight is clamped to [w0 - eps, w0 + eps]. The result is a
// dense patch (w - w0) per trained tensor; the model is unchanged afterwards.
// Cost (docs/performance.md, "Where FT-M's time goes"): a step is a forward of the prompt (+ the
// target) and a backward down to the lowest trained layer, bound by reading the weights; the
// layers below the lowest trained one run once (the first forward caches the residual entering
// it, later ones start there), the logit rows are the scored ones only.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"
#include "model/kernels.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define FT_MAX_TENSORS (2 * KED_MAX_EDIT_LAYERS)

// One Adam step on w (n) from grad (n) -- adam.c's edit_adam_step: the same float operations in
// the same order (torch 1.13's), so the same result bit for bit when the compiler contracts
// nothing (gcc with -std=c11) -- fused with the norm constraint (eps > 0: w clamped to
// [w0 - eps, w0 + eps]) and the zeroing of grad for the next backward: one pass over the five
// arrays instead of three, and vectorised (adam.c's loop is scalar: sqrtf's errno and the
// weight-decay branch keep compilers from vectorising it; it took 10x longer).
static void ft_adam_step(edit_adam *a, float *w, float *grad, const float *w0, float eps) {
    // w, grad, w0, a->m, a->v: (a->n)
    a->step++;
    double b1 = a->beta1, b2 = a->beta2;
    double bc1 = 1.0 - pow(b1, a->step), bc2 = 1.0 - pow(b2, a->step);
    const float step_size = (float)(a->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float one_b1 = (float)(1.0 - b1), one_b2 = (float)(1.0 - b2);
    const float wd = a->weight_decay, beta1 = a->beta1, beta2 = a->beta2, aeps = a->eps;
    float *m = a->m, *v = a->v;
    const int64_t n = a->n, blk = 4096;
    #pragma omp parallel for if (n > 65536)
    for (int64_t c = 0; c < (n + blk - 1) / blk; c++) {
        int64_t i = c * blk, e = n - i < blk ? n : i + blk;
#if defined(__AVX512F__)
        const __m512 vwd = _mm512_set1_ps(wd), vb1 = _mm512_set1_ps(beta1);
        const __m512 vb2 = _mm512_set1_ps(beta2), vo1 = _mm512_set1_ps(one_b1);
        const __m512 vo2 = _mm512_set1_ps(one_b2), vbc = _mm512_set1_ps(bc2_sqrt);
        const __m512 vae = _mm512_set1_ps(aeps), vss = _mm512_set1_ps(-step_size);
        const __m512 ve = _mm512_set1_ps(eps);
        for (; i + 16 <= e; i += 16) {
            __m512 g = _mm512_loadu_ps(grad + i), p = _mm512_loadu_ps(w + i);
            if (wd != 0.0f) g = _mm512_add_ps(g, _mm512_mul_ps(p, vwd));
            __m512 mi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(m + i), vb1),
                                      _mm512_mul_ps(g, vo1));
            __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), vb2),
                                      _mm512_mul_ps(_mm512_mul_ps(g, g), vo2));
            _mm512_storeu_ps(m + i, mi);
            _mm512_storeu_ps(v + i, vi);
            __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vbc), vae);
            p = _mm512_add_ps(p, _mm512_mul_ps(vss, _mm512_div_ps(mi, den)));
            if (eps > 0) { // p < lo ? lo : p > hi ? hi : p
                __m512 o = _mm512_loadu_ps(w0 + i);
                __m512 lo = _mm512_sub_ps(o, ve), hi = _mm512_add_ps(o, ve);
                p = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(p, lo, _CMP_LT_OQ), p, lo);
                p = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(p, hi, _CMP_GT_OQ), p, hi);
            }
            _mm512_storeu_ps(w + i, p);
            _mm512_storeu_ps(grad + i, _mm512_setzero_ps());
        }
#endif
        for (; i < e; i++) { // adam.c's loop, then the clamp
            float g = grad[i];
            if (wd != 0.0f) g = g + w[i] * wd;
            m[i] = m[i] * beta1 + g * one_b1;
            v[i] = v[i] * beta2 + g * g * one_b2;
            float denom = sqrtf(v[i]) / bc2_sqrt + aeps;
            float p = w[i] + (-step_size) * (m[i] / denom);
            if (eps > 0) {
                float lo = w0[i] - eps, hi = w0[i] + eps;
                p = p < lo ? lo : p > hi ? hi : p;
            }
            w[i] = p;
            grad[i] = 0.0f;
        }
    }
}

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
    int low = hp->layers[0]; // the lowest trained layer: nothing below it changes between steps
    for (int i = 1; i < hp->n_layers; i++) low = hp->layers[i] < low ? hp->layers[i] : low;
    if (cfg->pos == KED_POS_LEARNED && T > cfg->max_pos)
        return ked_fail(err, KED_ERR_ARG, "FT: %d tokens exceed the model's %d positions", T, cfg->max_pos);

    // the trained tensors, made writable, with gradient buffers of our own: the gradients come
    // from two hooks per trained layer (its MLP key captured, the gradient at its MLP output), so
    // that ked_backward stops at the lowest trained layer's MLP output instead of running that
    // layer's whole backward (input gradients nothing reads), and
    //     grad W_down (C, F) = dmlp^T @ key,   grad b_down (C) = column sums of dmlp
    // are the very products the decoder's backward would compute (matmul_backward, same inputs)
    temp_weight tw[FT_MAX_TENSORS];
    float *w0[FT_MAX_TENSORS], *grad[FT_MAX_TENSORS];
    int tl[FT_MAX_TENSORS], tslot[FT_MAX_TENSORS]; // layer and slot of tensor k
    edit_adam adam[FT_MAX_TENSORS];
    int nw = 0, nh = 0;
    ked_hook hooks[FT_MAX_TENSORS];
    float *hbuf[FT_MAX_TENSORS]; // per hook: key (T, F) captured, or dmlp (T, C) received
    memset(tw, 0, sizeof tw);
    memset(w0, 0, sizeof w0);
    memset(grad, 0, sizeof grad);
    memset(adam, 0, sizeof adam);
    memset(hbuf, 0, sizeof hbuf);
    const int C = cfg->d_model, F = cfg->d_ff;
    int *ids = ked_malloc(sizeof(int) * (size_t)T, "FT", err);
    int *lidx = ked_malloc(sizeof(int) * (size_t)nt, "FT", err);
    int *tgt = ked_malloc(sizeof(int) * (size_t)nt, "FT", err);
    int *hrow = ked_calloc((size_t)T, sizeof(int), "FT", err); // the hooks' sites (row 0, t)
    int *hpos = ked_malloc(sizeof(int) * (size_t)T, "FT", err);
    ked_run *r = NULL;
    ked_patch *p = NULL;
    ked_status st = KED_OK;
    if (!ids || !lidx || !tgt || !hrow || !hpos) { st = KED_ERR_NOMEM; goto done; }
    for (int t = 0; t < T; t++) hpos[t] = t;
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
            tl[nw] = hp->layers[i];
            tslot[nw] = slots[s];
            nw++;
            w0[nw - 1] = tw[nw - 1].orig;
            grad[nw - 1] = ked_calloc(n, sizeof(float), "FT gradient", err);
            if (!grad[nw - 1]) { st = KED_ERR_NOMEM; goto done; }
            if ((st = edit_adam_init(&adam[nw - 1], (int64_t)n, hp->lr, hp->weight_decay, err))) goto done;
            if (s == 1) continue;
            for (int h = 0; h < 2; h++) { // a new layer: capture its key, receive d mlp_out
                size_t wd = h == 0 ? (size_t)F : (size_t)C;
                hbuf[nh] = ked_malloc(sizeof(float) * (size_t)T * wd, "FT hook", err);
                if (!hbuf[nh]) { st = KED_ERR_NOMEM; goto done; }
                hooks[nh] = (ked_hook){.point = h == 0 ? KED_HOOK_MLP_KEY : KED_HOOK_MLP_OUT,
                                       .layer = hp->layers[i], .n = T, .row = hrow, .pos = hpos,
                                       .capture = h == 0 ? hbuf[nh] : NULL,
                                       .grad = h == 1 ? hbuf[nh] : NULL};
                nh++;
            }
        }
    }
    memcpy(ids, c->bare.ids, sizeof(int) * (size_t)nb);
    if (target_new) memcpy(ids + nb, c->target, sizeof(int) * (size_t)(nt - 1));
    for (int j = 0; j < nt; j++) {
        lidx[j] = target_new ? nb - 1 + j : nb - 1;
        tgt[j] = c->target[j];
    }
    // logits only at the nl scored rows; no backward below the lowest trained layer
    int nl = target_new ? nt : 1;
    ked_run_opts ro = {.B = 1, .T = T, .S = T, .backward = 1, .max_logits = nl,
                       .backward_from = low};
    if ((st = ked_run_new_opts(m, &ro, &r, err))) goto done;
    edit_info_begin(info, p->method, hp->layers[0], c, 1);
    for (int it = 0; it < hp->num_steps; it++) {
        ked_forward_opts fo = ked_forward_defaults();
        fo.logit_idx = lidx;
        fo.n_logit = nl;
        fo.hooks = hooks;
        fo.n_hooks = nh;
        if (low > 0 && it == 0) fo.cache_layer = low; // the residual entering layer low, once
        else if (low > 0) fo.start_layer = low;
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
        if ((st = ked_backward(m, r, err))) goto done;
        for (int h = 0; h < nh; h += 2) { // the layer's weight (and bias) gradients
            float *gw = NULL, *gb = NULL;
            for (int k = 0; k < nw; k++)
                if (tl[k] == hooks[h].layer) *(tslot[k] == P_WDOWN ? &gw : &gb) = grad[k];
            // mlp_out (T, C) = key (T, F) @ W_down^T + b_down
            matmul_backward(NULL, gw, gb, hbuf[h + 1], hbuf[h], NULL, T, F, C);
        }
        for (int k = 0; k < nw; k++) // the step; grad[k] is zeroed for the next backward
            ft_adam_step(&adam[k], tw[k].p->w, grad[k], w0[k], hp->norm_constraint);
    }
    for (int k = 0; k < nw; k++) { // delta = w - w0, into the patch
        ked_param *q = tw[k].p;
        int64_t n = q->rows * q->cols;
        float *d = q->w; // the trained copy (freed by temp_weight_end) becomes the delta
        const float *ref = w0[k];
        #pragma omp parallel for if (n > 65536)
        for (int64_t i = 0; i < n; i++) d[i] = d[i] - ref[i];
        int layer = -1, slot = -1;
        for (int l = 0; l < cfg->n_layer && layer < 0; l++)
            for (int s = 0; s < P_LAYER_COUNT; s++)
                if (model_param(m, l, s) == q) { layer = l; slot = s; break; }
        if ((st = patch_add_dense(p, m, layer, slot, d, err))) goto done;
    }
    *out = p;
    p = NULL;
done:
    for (int k = nw - 1; k >= 0; k--) {
        free(grad[k]);
        if (tw[k].p && tw[k].p->grad) // someone's enabled gradient: the backward added to it
            memset(tw[k].p->grad, 0, sizeof(float) * (size_t)(tw[k].p->rows * tw[k].p->cols));
        temp_weight_end(&tw[k]);
        edit_adam_free(&adam[k]);
    }
    for (int h = 0; h < nh; h++) free(hbuf[h]);
    ked_run_free(r);
    ked_patch_free(p);
    free(ids); free(lidx); free(tgt); free(hrow); free(hpos);
    return st;
}
