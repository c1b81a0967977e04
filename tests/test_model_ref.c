// test_model_ref.c: the generic decoder against the PyTorch references of tests/ref/
// (make_model_fixtures.py): for tiny random LLaMA (untied and tied) and GPT-2 models with their
// Hugging Face names and layouts, the logits of a right-padded batch with hooks, the masked
// cross-entropy loss, the gradient of every parameter and of hook vectors at mlp_key and
// resid_out, the KL loss's hook gradient, padding invariance, reuse of the layers below a hook
// (start_layer), and KV-cached greedy decoding. Tolerances are explicit per quantity.
#include "test.h"

#include "ked.h"
#include "io/safetensors.h"
#include "fixture.h"

static st_file *expect;


// relative max error: max|a-b| / max(1e-6, max|b|)
static float rel_err(const float *a, const float *b, size_t n, float *absmax) {
    float m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
        if (fabsf(b[i]) > s) s = fabsf(b[i]);
    }
    if (absmax) *absmax = m;
    return m / (s > 1e-6f ? s : 1e-6f);
}


// Row windows (ked_forward_opts.row_pos0): each row's prefix run in chunks into the key/value
// cache, then only its tail (from p0[b]) with a hook in it: the logits of the tail and the hook's
// gradient equal those of the full forward, with the same loss gradient on the tail's logits.
static void test_row_windows(ked_model *m, const int *ids, const int *lens, int B, int T,
                             const ked_hook *hook_full) {
    const ked_config *c = ked_model_config(m);
    int V = c->vocab, F = c->d_ff, hr = hook_full->row[0], hp = hook_full->pos[0];
    ked_error err;
    int p0[2], Tw = 0;
    for (int b = 0; b < B; b++) {
        p0[b] = b == hr ? hp : (lens[b] > 2 ? 2 : lens[b] - 1);
        if (lens[b] - p0[b] > Tw) Tw = lens[b] - p0[b];
    }
    // the full forward, loss gradient = a fixed pattern on the tails' logits only
    ked_run *rf = NULL, *rw = NULL;
    CHECK_OK(ked_run_new(m, B, T, T, 1, &rf, &err), &err);
    float gf[1024], gw[1024];
    ked_hook hf = *hook_full;
    hf.capture = NULL; hf.grad = gf;
    ked_forward_opts o = ked_forward_defaults();
    o.hooks = &hf; o.n_hooks = 1;
    CHECK_OK(ked_forward(m, rf, ids, B, T, lens, &o, &err), &err);
    float *lf = ked_run_logits(rf, NULL), *dlf = ked_run_dlogits(rf);
    memset(dlf, 0, sizeof(float) * (size_t)B * T * V);
    for (int b = 0; b < B; b++)
        for (int t = p0[b]; t < lens[b]; t++)
            for (int v = 0; v < V; v++)
                dlf[((size_t)b * T + t) * V + v] = (float)((b * 7 + t * 3 + v) % 11 - 5) * 0.01f;
    CHECK_OK(ked_backward(m, rf, &err), &err);

    // windows: prefix chunks of Tw, then the tails
    CHECK_OK(ked_run_new(m, B, Tw, T + 1, 1, &rw, &err), &err);
    int wid[64], wlen[2], wp0[2];
    for (int c0 = 0; c0 < T; c0 += Tw) {
        int any = 0;
        for (int b = 0; b < B; b++) {
            int left = p0[b] - c0;
            wlen[b] = left < 0 ? 0 : left > Tw ? Tw : left;
            wp0[b] = c0 < p0[b] ? c0 : p0[b];
            for (int t = 0; t < Tw; t++) wid[b * Tw + t] = t < wlen[b] ? ids[b * T + c0 + t] : 0;
            any |= wlen[b] > 0;
        }
        if (!any) break;
        ked_forward_opts po = ked_forward_defaults();
        po.row_pos0 = wp0; po.logit_idx = wlen; po.n_logit = 0;
        CHECK_OK(ked_forward(m, rw, wid, B, Tw, wlen, &po, &err), &err);
    }
    for (int b = 0; b < B; b++) {
        wlen[b] = lens[b] - p0[b];
        for (int t = 0; t < Tw; t++) wid[b * Tw + t] = t < wlen[b] ? ids[b * T + p0[b] + t] : 0;
    }
    int hrow = hr, hpos = 0;
    ked_hook hw = hf;
    hw.row = &hrow; hw.pos = &hpos; hw.grad = gw;
    o.row_pos0 = p0;
    o.hooks = &hw;
    o.cache_layer = hw.layer;
    CHECK_OK(ked_forward(m, rw, wid, B, Tw, wlen, &o, &err), &err);
    o.cache_layer = -1; o.start_layer = hw.layer; // again from the hook's layer: same logits
    if (hw.layer > 0) CHECK_OK(ked_forward(m, rw, wid, B, Tw, wlen, &o, &err), &err);
    float *lw = ked_run_logits(rw, NULL), *dlw = ked_run_dlogits(rw), worst = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < wlen[b]; t++) {
            const float *a = lw + ((size_t)b * Tw + t) * V, *e = lf + ((size_t)b * T + p0[b] + t) * V;
            for (int v = 0; v < V; v++) worst = fmaxf(worst, fabsf(a[v] - e[v]));
            memcpy(dlw + ((size_t)b * Tw + t) * V, dlf + ((size_t)b * T + p0[b] + t) * V, sizeof(float) * V);
        }
    CHECK_OK(ked_backward(m, rw, &err), &err);
    float gmax = 0;
    for (int x = 0; x < F; x++) gmax = fmaxf(gmax, fabsf(gf[x]));
    float gd = test_maxdiff(gf, gw, (size_t)F, NULL);
    printf("  row windows (starts %d, %d; width %d): logits max diff %.3g, hook grad max diff %.3g "
           "(of %.3g)\n", p0[0], p0[1], Tw, worst, gd, gmax);
    CHECK(worst < 2e-5f, "windowed logits differ by %g", worst);
    CHECK(gd <= 1e-4f * gmax + 1e-7f, "windowed hook gradient differs by %g", gd);
    // a row may not start beyond what its cache holds
    int bad[2] = {p0[0] + 1, p0[1] + 1};
    ked_forward_opts ob = ked_forward_defaults();
    ob.row_pos0 = bad;
    ked_run *fresh = NULL;
    CHECK_OK(ked_run_new(m, B, Tw, T + 1, 0, &fresh, &err), &err);
    CHECK(ked_forward(m, fresh, wid, B, Tw, wlen, &ob, &err) != KED_OK &&
              strstr(err.msg, "cache holds"), "a row past its cache: %s", err.msg);
    ked_run_free(fresh);
    ked_run_free(rf);
    ked_run_free(rw);
}

static void test_model(const char *dir) {
    char path[512];
    ked_error err;
    ked_model *m = NULL;
    printf("== %s\n", dir);
    CHECK_OK(ked_model_load(dir, &m, &err), &err);
    if (!m) return;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK_OK(st_open(path, &expect, &err), &err);
    if (!expect) { ked_model_free(m); return; }
    const ked_config *c = ked_model_config(m);
    int64_t n;
    int *ids = fixture_int(expect, "input_ids", &n);
    int *lens = fixture_int(expect, "lengths", NULL);
    int *tg = fixture_int(expect, "targets", NULL);
    int B = 2, T = (int)(n / 2), V = c->vocab, F = c->d_ff, C = c->d_model;
    for (int i = 0; i < B * T; i++) if (tg[i] < 0) tg[i] = -1;
    // row 1 is padded with id 0 after lengths[1]; ked must not care what the padding holds
    float *h_key = fixture_f32(expect, "hook.mlp_key.1", NULL), *h_res = fixture_f32(expect, "hook.resid_out.0", NULL);
    int *at_key = fixture_int(expect, "hook.mlp_key.1.at", NULL), *at_res = fixture_int(expect, "hook.resid_out.0.at", NULL);
    float g_key[1024], g_res[1024], cap_key[1024];
    ked_hook hooks[2] = {
        {KED_HOOK_MLP_KEY, 1, 1, &at_key[0], &at_key[1], h_key, cap_key, g_key},
        {KED_HOOK_RESID_OUT, 0, 1, &at_res[0], &at_res[1], h_res, NULL, g_res},
    };
    ked_run *r = NULL;
    CHECK_OK(ked_run_new(m, B, T, T, 1, &r, &err), &err);
    ked_forward_opts o = ked_forward_defaults();
    o.hooks = hooks; o.n_hooks = 2;
    CHECK_OK(ked_model_grad_enable(m, "*", &err), &err);
    CHECK_OK(ked_forward(m, r, ids, B, T, lens, &o, &err), &err);

    // logits at valid positions
    float *want = fixture_f32(expect, "logits", NULL);
    float *got = ked_run_logits(r, NULL);
    float worst = 0, absm;
    for (int b = 0; b < B; b++) {
        rel_err(got + (size_t)b * T * V, want + (size_t)b * T * V, (size_t)lens[b] * V, &absm);
        if (absm > worst) worst = absm;
    }
    printf("  logits      max abs diff %.3g\n", worst);
    CHECK(worst < 2e-4f, "logits differ by %g", worst);

    // loss and gradients
    float loss = ked_loss_crossentropy(r, tg, 1);
    float *want_loss = fixture_f32(expect, "loss", NULL);
    printf("  loss        %.6f vs %.6f\n", loss, want_loss[0]);
    CHECK(fabsf(loss - want_loss[0]) < 1e-4f, "loss %f vs %f", loss, want_loss[0]);
    CHECK_OK(ked_backward(m, r, &err), &err);
    float worst_rel = 0;
    for (int i = 0; i < ked_model_n_tensors(m); i++) {
        const char *name = ked_model_tensor_name(m, i);
        char gname[300];
        snprintf(gname, sizeof gname, "grad.%s", name);
        int64_t ne, shape[2];
        float *gw = fixture_f32(expect, gname, &ne);
        int nd = ked_model_tensor_shape(m, name, shape);
        CHECK(nd > 0 && shape[0] * (nd == 2 ? shape[1] : 1) == ne, "%s: shape mismatch", name);
        float *gg = malloc(sizeof(float) * (size_t)ne);
        CHECK_OK(ked_model_tensor_read(m, name, 1, gg, &err), &err);
        float e = rel_err(gg, gw, (size_t)ne, &absm);
        if (e > worst_rel) worst_rel = e;
        CHECK(e < 2e-3f, "%s: relative gradient error %g (abs %g)", gname, e, absm);
        free(gw); free(gg);
    }
    printf("  param grads worst relative diff %.3g over %d tensors\n", worst_rel, ked_model_n_tensors(m));
    float *wg_key = fixture_f32(expect, "grad.hook.mlp_key.1", NULL), *wg_res = fixture_f32(expect, "grad.hook.resid_out.0", NULL);
    float e1 = rel_err(g_key, wg_key, (size_t)F, NULL), e2 = rel_err(g_res, wg_res, (size_t)C, NULL);
    printf("  hook grads  mlp_key.1 %.3g, resid_out.0 %.3g (relative)\n", e1, e2);
    CHECK(e1 < 2e-3f && e2 < 2e-3f, "hook gradients differ: %g %g", e1, e2);

    // only hook gradients (no parameters): must equal the above, visiting fewer layers
    ked_model_grad_zero(m);
    ked_model_free(m); m = NULL;
    CHECK_OK(ked_model_load(dir, &m, &err), &err);
    ked_run_free(r); r = NULL;
    CHECK_OK(ked_run_new(m, B, T, T, 1, &r, &err), &err);
    float g_key2[1024];
    hooks[0].grad = g_key2;
    hooks[1].grad = NULL;
    o.cache_layer = 1;
    CHECK_OK(ked_forward(m, r, ids, B, T, lens, &o, &err), &err);
    ked_loss_crossentropy(r, tg, 1);
    CHECK_OK(ked_backward(m, r, &err), &err);
    CHECK(test_maxdiff(g_key, g_key2, (size_t)F, NULL) < 1e-6f, "hook-only backward differs");

    // start_layer: rerun only layer 1 (the mlp_key hook's layer) with the resid_out.0 hook baked
    // into the cached residual; same logits
    ked_hook only_key = hooks[0];
    o.hooks = &only_key; o.n_hooks = 1; o.start_layer = 1; o.cache_layer = -1;
    CHECK_OK(ked_forward(m, r, ids, B, T, lens, &o, &err), &err);
    got = ked_run_logits(r, NULL);
    worst = 0;
    for (int b = 0; b < B; b++) {
        rel_err(got + (size_t)b * T * V, want + (size_t)b * T * V, (size_t)lens[b] * V, &absm);
        if (absm > worst) worst = absm;
    }
    CHECK(worst < 2e-4f, "start_layer logits differ by %g", worst);

    // KL(p || q) at kl.at, p from logits without hooks, q with the mlp_key hook
    float *lp_all = fixture_f32(expect, "logits_nohook", NULL), *want_kl = fixture_f32(expect, "kl", NULL);
    float *want_gkl = fixture_f32(expect, "grad_kl.hook.mlp_key.1", NULL);
    int *kl_at = fixture_int(expect, "kl.at", NULL);
    int idx = kl_at[0] * T + kl_at[1];
    ked_forward_opts ok = ked_forward_defaults();
    float g_kl[1024];
    ked_hook kh = hooks[0];
    kh.grad = g_kl; kh.capture = NULL;
    ok.hooks = &kh; ok.n_hooks = 1; ok.logit_idx = &idx; ok.n_logit = 1;
    CHECK_OK(ked_forward(m, r, ids, B, T, lens, &ok, &err), &err);
    float kl = ked_loss_kl(r, lp_all + (size_t)idx * V, 1);
    CHECK_OK(ked_backward(m, r, &err), &err);
    float e3 = rel_err(g_kl, want_gkl, (size_t)F, NULL);
    printf("  kl          %.6g vs %.6g, hook grad relative diff %.3g\n", kl, want_kl[0], e3);
    CHECK(fabsf(kl - want_kl[0]) < 1e-5f + 1e-3f * want_kl[0], "kl %g vs %g", kl, want_kl[0]);
    CHECK(e3 < 5e-3f, "KL hook gradient differs: %g", e3);

    test_row_windows(m, ids, lens, B, T, &hooks[0]);

    // no hooks: logits_nohook; and row 1 alone (no padding) equals row 1 of the padded batch
    CHECK_OK(ked_forward(m, r, ids, B, T, lens, NULL, &err), &err);
    got = ked_run_logits(r, NULL);
    rel_err(got, lp_all, (size_t)lens[0] * V, &absm);
    CHECK(absm < 2e-4f, "no-hook logits differ by %g", absm);
    float *alone = fixture_f32(expect, "logits_row1_alone", NULL);
    float *batch_row1 = malloc(sizeof(float) * (size_t)lens[1] * V);
    memcpy(batch_row1, got + (size_t)T * V, sizeof(float) * (size_t)lens[1] * V);
    ked_run *r1 = NULL;
    CHECK_OK(ked_run_new(m, 1, lens[1], lens[1], 0, &r1, &err), &err);
    CHECK_OK(ked_forward(m, r1, ids + T, 1, lens[1], NULL, NULL, &err), &err);
    float pad_diff = test_maxdiff(ked_run_logits(r1, NULL), batch_row1, (size_t)lens[1] * V, NULL);
    printf("  padding     row alone vs padded batch max diff %.3g\n", pad_diff);
    CHECK(pad_diff < 1e-5f, "padding changes row 1 by %g", pad_diff);
    CHECK(rel_err(batch_row1, alone, (size_t)lens[1] * V, &absm) < 1e-3f && absm < 2e-4f,
          "row 1 alone vs reference %g", absm);

    // KV-cached greedy decoding
    int64_t np, ng;
    int *prompt = fixture_int(expect, "greedy_prompt", &np), *gout = fixture_int(expect, "greedy_out", &ng);
    ked_generate_opts go = ked_generate_defaults();
    go.max_new = (int)ng;
    go.stop_at_eos = 0;
    int outids[128], n_out = 0;
    CHECK_OK(ked_generate(m, prompt, (int)np, &go, outids, 128, &n_out, NULL, NULL, &err), &err);
    CHECK(n_out == np + ng, "generated %d ids, want %lld", n_out, (long long)(np + ng));
    int same = 1;
    for (int i = 0; i < ng && i + np < n_out; i++) same &= outids[np + i] == gout[i];
    CHECK(same, "greedy continuation differs from the reference");

    free(ids); free(lens); free(tg); free(h_key); free(h_res); free(at_key); free(at_res);
    free(want); free(want_loss); free(wg_key); free(wg_res); free(lp_all); free(want_kl);
    free(want_gkl); free(kl_at); free(alone); free(batch_row1); free(prompt); free(gout);
    ked_run_free(r); ked_run_free(r1);
    ked_model_free(m);
    st_close(expect);
}

int main(void) {
    test_model("tests/data/tiny-llama");
    test_model("tests/data/tiny-llama-tied");
    test_model("tests/data/tiny-gpt2");
    test_model("tests/data/tiny-llama3");   // rope_scaling llama3
    test_model("tests/data/tiny-mistral");  // sliding_window 4
    test_model("tests/data/tiny-qwen2");    // q/k/v biases, tied, use_sliding_window false
    test_model("tests/data/tiny-gptj");     // partial GPT-J rotary, shared ln_1, lm_head bias
    test_model("tests/data/tiny-neox");     // fused qkv per head, partial rotary, erf GELU
    test_model("tests/data/tiny-neox-seq"); // use_parallel_residual false
    return test_finish("test_model_ref");
}
