// test_edit_ref.c: ROME and FT-M against the PyTorch reference of tests/ref/edit_ref.py on the
// tiny LLaMA and GPT-2 fixtures (tests/data/tiny-llama, tiny-gpt2: Conv1D layout, biases), with the same token ids, context templates and
// hyperparameters: k*, u, target_init, delta, v*, k0, v0, right, the weight delta, the loss of
// every v* step and the post-edit target log-probability (ROME); the weight delta, the loss of
// every step and the post-edit log-probability (FT-M). The reference runs in float64, ked in
// float32; tolerances are stated per quantity.
#include "test.h"

#include "ked.h"
#include "edit/edit.h"
#include "io/safetensors.h"
#include "fixture.h"

static st_file *ref;


// max |a - b| / max |b|
static float rel(const float *a, const float *b, size_t n) {
    float m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
        if (fabsf(b[i]) > s) s = fabsf(b[i]);
    }
    return m / (s > 1e-12f ? s : 1e-12f);
}

static const char *fam; // "llama" or "gpt2": the fixture's key prefix

static float *getfam(const char *name, int64_t *numel) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", fam, name);
    return fixture_f32(ref, key, numel);
}

static int check_vec(const char *what, const float *got, const char *ref_name, size_t n, float tol) {
    int64_t ne;
    float *want = getfam(ref_name, &ne);
    CHECK((size_t)ne == n, "%s: %zu values, reference %lld", what, n, (long long)ne);
    float e = rel(got, want, n);
    printf("  %-18s relative max diff %.3g (tolerance %.0e)\n", what, e, tol);
    CHECK(e <= tol, "%s: relative difference %g > %g", what, e, tol);
    free(want);
    return e <= tol;
}

// sum_j log p(target_j | prompt, target_<j) under the model as it is
static float target_logprob(const ked_model *m, const edit_case *c) {
    ked_error err;
    int n = c->bare.n + c->n_target - 1, V = ked_model_config(m)->vocab;
    int ids[64];
    memcpy(ids, c->bare.ids, sizeof(int) * (size_t)c->bare.n);
    memcpy(ids + c->bare.n, c->target, sizeof(int) * (size_t)(c->n_target - 1));
    ked_run *r = NULL;
    CHECK_OK(ked_run_new(m, 1, n, n, 0, &r, &err), &err);
    CHECK_OK(ked_forward(m, r, ids, 1, n, NULL, NULL, &err), &err);
    const float *lg = ked_run_logits(r, NULL);
    double s = 0;
    for (int j = 0; j < c->n_target; j++) {
        const float *z = lg + (size_t)(c->bare.n - 1 + j) * V;
        double mx = z[0], se = 0;
        for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        for (int v = 0; v < V; v++) se += exp(z[v] - mx);
        s += z[c->target[j]] - mx - log(se);
    }
    ked_run_free(r);
    return (float)s;
}

static void test_family(const char *dir) {
    ked_error err;
    ked_model *m = NULL;
    CHECK_OK(ked_model_load(dir, &m, &err), &err);
    if (!m) return;
    const ked_config *cfg = ked_model_config(m);
    int C = cfg->d_model, F = cfg->d_ff;
    // the case, from the fixture
    int64_t nctx, T;
    int *cids = fixture_int(ref, "ctx.ids", &T), *clen = fixture_int(ref, "ctx.len", &nctx), *clk = fixture_int(ref, "ctx.lookup", NULL);
    T /= nctx;
    int64_t nkl, ntg;
    int *klids = fixture_int(ref, "kl.ids", &nkl), *kllk = fixture_int(ref, "kl.lookup", NULL), *tg = fixture_int(ref, "target", &ntg);
    edit_case c = {0};
    c.n_ctx = (int)nctx;
    c.ctx = calloc((size_t)nctx, sizeof *c.ctx);
    for (int i = 0; i < nctx; i++) {
        c.ctx[i].ids = malloc(sizeof(int) * (size_t)clen[i]);
        memcpy(c.ctx[i].ids, cids + i * T, sizeof(int) * (size_t)clen[i]);
        c.ctx[i].n = clen[i];
        c.ctx[i].lookup = clk[i];
    }
    c.bare.ids = malloc(sizeof(int) * (size_t)clen[0]);
    memcpy(c.bare.ids, c.ctx[0].ids, sizeof(int) * (size_t)clen[0]);
    c.bare.n = clen[0];
    c.bare.lookup = clk[0];
    c.kl.ids = klids;
    c.kl.n = (int)nkl;
    c.kl.lookup = kllk[0];
    c.target = tg;
    c.n_target = (int)ntg;

    // ROME, with the reference's hyperparameters (tests/ref/edit_ref.py HP)
    printf("== ROME, %s layer 0\n", dir);
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(m, "rome", &hp, &err), &err);
    hp.layers[0] = 0;
    hp.v_num_grad_steps = 12;
    hp.v_lr = 0.5f;
    hp.v_weight_decay = 0.5f;
    hp.clamp_norm_factor = 4.0f;
    hp.kl_factor = 0.0625f;
    float pre = target_logprob(m, &c);
    ked_patch *p = NULL;
    rome_trace tr;
    memset(&tr, 0, sizeof tr);
    CHECK_OK(edit_rome_case(m, &hp, &c, 0, NULL, &p, &tr, NULL, &err), &err);
    if (p) {
        // the reference's v* path is iterative (12 Adam steps, a clamp): float32 vs float64
        check_vec("k*", tr.kstar, "rome.kstar", (size_t)F, 1e-5f);
        check_vec("u", tr.u, "rome.u", (size_t)F, 1e-5f);
        check_vec("k0", tr.k0, "rome.k0", (size_t)F, 1e-5f);
        check_vec("v0", tr.v0, "rome.v0", (size_t)C, 1e-5f);
        check_vec("target_init", tr.vs.target_init, "rome.target_init", (size_t)C, 1e-5f);
        check_vec("delta", tr.vs.delta, "rome.delta", (size_t)C, 2e-5f);
        check_vec("v*", tr.vstar, "rome.vstar", (size_t)C, 2e-5f);
        check_vec("right", tr.right, "rome.right", (size_t)C, 2e-5f);
        float *dW = malloc(sizeof(float) * (size_t)C * F);
        memset(dW, 0, sizeof(float) * (size_t)C * F);
        CHECK(p->n == 1 && p->e[0].layer == 0 && p->e[0].slot == P_WDOWN && p->e[0].rank == 1,
              "ROME patch shape");
        patch_entry_add(&p->e[0], dW);
        check_vec("weight delta", dW, "rome.dW", (size_t)C * F, 2e-5f);
        int64_t nl;
        float *wl = getfam("rome.losses", &nl);
        CHECK(tr.vs.n_steps == nl, "v* steps %d vs reference %lld", tr.vs.n_steps, (long long)nl);
        float worst = 0;
        for (int i = 0; i < tr.vs.n_steps && i < nl; i++) {
            float d = fabsf(tr.vs.loss[i] - wl[i]);
            if (d > worst) worst = d;
        }
        printf("  v* losses         max abs diff %.3g over %d steps (%.4f -> %.4f)\n", worst,
               tr.vs.n_steps, tr.vs.loss[0], tr.vs.loss[tr.vs.n_steps - 1]);
        CHECK(worst < 1e-4f, "v* losses differ by %g", worst);
        // post-edit target log-probability
        ked_editor *ed = NULL;
        CHECK_OK(ked_editor_new(m, &ed, &err), &err);
        CHECK_OK(ked_editor_apply(ed, p, NULL, &err), &err);
        float post = target_logprob(m, &c);
        float *wpre = getfam("rome.pre_logprob", NULL), *wpost = getfam("rome.post_logprob", NULL);
        printf("  target log-prob   %.5f -> %.5f (reference %.5f -> %.5f)\n", pre, post, wpre[0], wpost[0]);
        CHECK(fabsf(pre - wpre[0]) < 1e-4f && fabsf(post - wpost[0]) < 1e-3f, "log-probs differ");
        CHECK(post > pre, "the edit did not raise the target's probability");
        ked_editor_free(ed);
        free(dW); free(wl); free(wpre); free(wpost);
    }
    rome_trace_free(&tr);

    // R-ROME: same v*, k0 and v0 averaged over the templates
    printf("== R-ROME, %s layer 0\n", dir);
    p = NULL;
    memset(&tr, 0, sizeof tr);
    CHECK_OK(edit_rome_case(m, &hp, &c, 1, NULL, &p, &tr, NULL, &err), &err);
    if (p) {
        check_vec("k0 (mean)", tr.k0, "rome.rrome_k0", (size_t)F, 1e-5f);
        check_vec("v0 (mean)", tr.v0, "rome.rrome_v0", (size_t)C, 1e-5f);
        check_vec("right", tr.right, "rome.rrome_right", (size_t)C, 2e-5f);
        CHECK(!strcmp(p->method, "r-rome"), "method %s", p->method);
        ked_patch_free(p);
    }
    rome_trace_free(&tr);

    // FT-L with a norm constraint (tests/ref/edit_ref.py FT_L)
    printf("== FT-L, %s layer 1, norm_constraint 2e-3\n", dir);
    {
        ked_hparams hl;
        CHECK_OK(ked_hparams_defaults(m, "ft-l", &hl, &err), &err);
        hl.layers[0] = 1;
        hl.lr = 1e-2f;
        hl.num_steps = 6;
        hl.norm_constraint = 2e-3f;
        hl.ft_bias = 1;
        ked_edit_info li;
        p = NULL;
        CHECK_OK(edit_ft_case(m, &hl, &c, NULL, &p, &li, &err), &err);
        if (p) {
            int bias = !strcmp(fam, "gpt2");
            CHECK(p->n == 1 + bias && !strcmp(p->method, "ft-l"), "FT-L patch shape");
            check_vec("weight delta", p->e[0].delta, "ft_l.dW", (size_t)C * F, 5e-4f);
            if (bias && p->n == 2) check_vec("bias delta", p->e[1].delta, "ft_l.dB", (size_t)C, 5e-4f);
            int64_t nl;
            float *wl = getfam("ft_l.losses", &nl);
            float worst = 0;
            CHECK(li.n_steps == nl, "FT-L steps %d vs reference %lld", li.n_steps, (long long)nl);
            for (int i = 0; i < li.n_steps && i < nl; i++)
                if (fabsf(li.loss[i] - wl[i]) > worst) worst = fabsf(li.loss[i] - wl[i]);
            printf("  losses            max abs diff %.3g over %d steps (%.4f -> %.4f)\n", worst,
                   li.n_steps, li.loss[0], li.loss[li.n_steps - 1]);
            CHECK(worst < 1e-4f, "FT-L losses differ by %g", worst);
            free(wl);
            ked_patch_free(p);
        }
    }

    // FT-M, layer 1, Adam lr 1e-2, 8 steps (tests/ref/edit_ref.py FT)
    printf("== FT-M, %s layer 1\n", dir);
    CHECK_OK(ked_hparams_defaults(m, "ft-m", &hp, &err), &err);
    hp.layers[0] = 1;
    hp.lr = 1e-2f;
    hp.num_steps = 8;
    hp.norm_constraint = 0;
    hp.ft_bias = 1;
    ked_edit_info info;
    p = NULL;
    CHECK_OK(edit_ft_case(m, &hp, &c, NULL, &p, &info, &err), &err);
    if (p) {
        int bias = !strcmp(fam, "gpt2"); // EasyEdit's template transformer.h.{}.mlp.c_proj: + bias
        CHECK(p->n == 1 + bias && p->e[0].rank == 0 && p->e[0].layer == 1, "FT-M patch shape");
        check_vec("weight delta", p->e[0].delta, "ft_m.dW", (size_t)C * F, 5e-4f);
        if (bias && p->n == 2) check_vec("bias delta", p->e[1].delta, "ft_m.dB", (size_t)C, 5e-4f);
        int64_t nl;
        float *wl = getfam("ft_m.losses", &nl);
        float worst = 0;
        CHECK(info.n_steps == nl, "FT-M steps %d vs reference %lld", info.n_steps, (long long)nl);
        for (int i = 0; i < info.n_steps && i < nl; i++) {
            float d = fabsf(info.loss[i] - wl[i]);
            if (d > worst) worst = d;
        }
        printf("  losses            max abs diff %.3g over %d steps (%.4f -> %.4f)\n", worst,
               info.n_steps, info.loss[0], info.loss[info.n_steps - 1]);
        CHECK(worst < 1e-4f, "FT-M losses differ by %g", worst);
        ked_editor *ed = NULL;
        CHECK_OK(ked_editor_new(m, &ed, &err), &err);
        CHECK_OK(ked_editor_apply(ed, p, NULL, &err), &err);
        float post = target_logprob(m, &c);
        float *wpost = getfam("ft_m.post_logprob", NULL);
        printf("  target log-prob   %.5f -> %.5f (reference -> %.5f)\n", pre, post, wpost[0]);
        CHECK(fabsf(post - wpost[0]) < 1e-3f, "FT-M post log-prob %f vs %f", post, wpost[0]);
        ked_editor_free(ed);
        free(wl); free(wpost);
    }
    edit_case_free(&c);
    free(cids); free(clen); free(clk); free(kllk);
    ked_model_free(m);
}

int main(void) {
    ked_set_threads(1);
    ked_error err;
    if (st_open("tests/data/edit/edit_ref.safetensors", &ref, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    fam = "llama";
    test_family("tests/data/tiny-llama");
    fam = "gpt2";
    test_family("tests/data/tiny-gpt2");
    st_close(ref);
    return test_finish("test_edit_ref");
}
