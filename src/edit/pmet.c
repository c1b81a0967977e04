// pmet.c: PMET (easyedit-reference.md §2.7; EasyEdit models/pmet/: pmet_main.py execute_pmet,
// compute_zs.py, compute_ks.py), a batch of n requests at once:
//
//   z_j  = EasyEdit's compute_zs at zL = the last edit layer: two deltas optimised jointly (one
//          Adam), delta_mlp added at the MLP's output (mlp_module_tmp: down_proj's output, ked's
//          mlp_out) and delta_attn at the attention's output (attn_module_tmp: o_proj's output,
//          ked's attn_out) of zL at every row's lookup token (vstar.c with two points);
//          loss = nll_loss_factor NLL + kl_factor KL + v_weight_decay (|d_mlp| / |init_mlp|^2 +
//          |d_attn| / |init_attn|^2); each delta clamped to clamp_norm_factor |its init|; once
//          every target token is the argmax the NLL weight drops to a tenth and the loop ends
//          when kl_factor KL <= 0.01. z_j = init_mlp + delta_mlp (the attention delta only
//          helps the optimisation: with the default rewrite_module_tmps it is not written)
//   for each edit layer l, ascending (each seeing the ones before it):
//     K   (F, n)  mlp_key at the lookup token averaged over the templates (MEMIT's compute_ks)
//     cur (C, n)  mlp_out of zL (the MLP's output, not the residual as MEMIT) at the bare
//                 prompt's lookup token, on the model as edited so far
//     R   = (z - cur) / sqrt(number of layers left)        (MEMIT divides by the count itself)
//     dW  = R K^T (K K^T + lambda C)^-1   = MEMIT's solve with that R (memit.c, float64)
//   each dW is a rank-n pair a (C, n) = R, b (F, n) = (K K^T + lambda C)^-1 K: W_down += a b^T.
// Only the MLP's down projection is edited (EasyEdit's default rewrite_module_tmps); its
// attention rewrite (o_proj, keys at o_proj's input) is refused by hparams.c: ked has no hook at
// the input of the attention's output projection, nor statistics of it.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

ked_status edit_pmet_zs(ked_model *m, const ked_hparams *hp, const edit_case *cs, int n, int zL,
                        const ked_edit_opts *o, float *z_mlp, float *z_attn, ked_edit_info *info,
                        ked_error *err) {
    int C = ked_model_config(m)->d_model;
    vstar_opts vo = {.n_points = 2, .points = {KED_HOOK_MLP_OUT, KED_HOOK_ATTN_OUT}, .pmet_rule = 1};
    // batched as memory allows (vstar.c), each request with its own deltas and stop
    vstar_result *vb = ked_calloc((size_t)n, sizeof *vb, "PMET z", err);
    if (!vb) return KED_ERR_NOMEM;
    ked_status st = edit_vstar_all(m, hp, cs, n, zL, &vo, o, vb, err);
    for (int j = 0; !st && j < n; j++) {
        for (int c = 0; c < C; c++) {
            z_mlp[(size_t)c * n + j] = vb[j].target_init[c] + vb[j].delta[c];
            if (z_attn) z_attn[(size_t)c * n + j] = vb[j].target_init[C + c] + vb[j].delta[C + c];
        }
        edit_info_add_losses(info, &vb[j]);
        vstar_result_free(&vb[j]);
    }
    free(vb);
    return st;
}

ked_status edit_pmet_given(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                           const edit_case *cs, int n, const ked_edit_opts *o, const float *zgiven,
                           ked_patch **out, ked_edit_info *info, ked_error *err) {
    const ked_config *cfg = ked_model_config(m);
    int C = cfg->d_model, F = cfg->d_ff, NL = hp->n_layers;
    if (n < 1) return ked_fail(err, KED_ERR_ARG, "pmet: no requests");
    if (NL < 1) return ked_fail(err, KED_ERR_ARG, "%s: no layers to edit", hp->source);
    int layers[KED_MAX_EDIT_LAYERS];
    memcpy(layers, hp->layers, sizeof(int) * (size_t)NL);
    qsort(layers, (size_t)NL, sizeof(int), cmp_int);
    for (int i = 0; i < NL; i++)
        if (layers[i] < 0 || layers[i] >= cfg->n_layer)
            return ked_fail(err, KED_ERR_ARG, "%s: layer %d outside the model's layers 0..%d",
                            hp->source, layers[i], cfg->n_layer - 1);
    int zL = layers[NL - 1];
    ked_patch *p = NULL;
    ked_status st = patch_new("pmet", &p, err);
    if (st) return st;
    float *z = ked_malloc(sizeof(float) * (size_t)C * n, "z", err);
    float *cur = ked_malloc(sizeof(float) * (size_t)C * n, "cur", err);
    double *K = ked_malloc(sizeof(double) * (size_t)F * n, "keys", err);
    double *R = ked_malloc(sizeof(double) * (size_t)C * n, "residuals", err);
    float *fa = ked_malloc(sizeof(float) * (size_t)C * n, "patch", err);
    float *fb = ked_malloc(sizeof(float) * (size_t)F * n, "patch", err);
    temp_weight tw[KED_MAX_EDIT_LAYERS];
    memset(tw, 0, sizeof tw);
    ked_stats S = {0};
    if (!z || !cur || !K || !R || !fa || !fb) { st = KED_ERR_NOMEM; goto done; }
    edit_info_begin(info, "pmet", layers[0], cs, n);
    if ((st = edit_stats_ensure(m, tok, hp, o, err))) goto done;
    if (zgiven) memcpy(z, zgiven, sizeof(float) * (size_t)C * n);
    else if ((st = edit_pmet_zs(m, hp, cs, n, zL, o, z, NULL, info, err))) goto done;
    for (int li = 0; li < NL; li++) {
        int l = layers[li];
        if ((st = edit_memit_keys(m, cs, n, l, K, err))) goto done;
        if ((st = edit_bare_outputs_at(m, cs, n, zL, KED_HOOK_MLP_OUT, cur, err))) goto done;
        double scale = sqrt((double)(NL - li));
        for (int j = 0; j < n; j++)
            for (int c = 0; c < C; c++)
                R[(size_t)c * n + j] = ((double)z[(size_t)c * n + j] - cur[(size_t)j * C + c]) / scale;
        if ((st = edit_stats_layer(m, tok, hp, o, l, &S, err))) goto done;
        if (info && li == 0) snprintf(info->stats_source, sizeof info->stats_source, "%s", S.source);
        int nk = 0;
        if ((st = edit_memit_solve(0, hp, &S, K, R, C, n, NULL, o, fa, fb, &nk, err))) goto done;
        ked_stats_free(&S); // one layer's statistics at a time, and none during the keys
        if ((st = patch_add_lowrank(p, m, l, P_WDOWN, n, fa, fb, err))) goto done;
        // later layers (and cur at zL) see this one; zL's own edit is the last
        if (li + 1 < NL) {
            if ((st = temp_weight_begin(m, l, P_WDOWN, &tw[li], err))) goto done;
            patch_entry_add(&p->e[p->n - 1], tw[li].tmp);
        }
    }
    *out = p;
    p = NULL;
done:
    for (int i = NL - 1; i >= 0; i--) temp_weight_end(&tw[i]);
    ked_stats_free(&S);
    free(z); free(cur); free(K); free(R); free(fa); free(fb);
    ked_patch_free(p);
    return st;
}

ked_status edit_pmet_cases(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                           const edit_case *cs, int n, const ked_edit_opts *o, ked_patch **out,
                           ked_edit_info *info, ked_error *err) {
    return edit_pmet_given(m, tok, hp, cs, n, o, NULL, out, info, err);
}
