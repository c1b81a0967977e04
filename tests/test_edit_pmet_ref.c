// test_edit_pmet_ref.c: PMET against the PyTorch reference of tests/ref/edit_pmet_ref.py on the
// tiny LLaMA and GPT-2 fixtures (same ids, templates, statistics and hyperparameters):
//   1. compute_zs: the two deltas (mlp_out, attn_out) of two requests optimised jointly (batched in
//      one run, and each alone), EasyEdit's argmax rule (fires for tiny-llama's request 1): loss
//      per step, steps taken, target_init and delta of both points;
//   2. the update given z (layers 0-1, statistics read from EasyEdit's npz files under
//      tests/data/edit/pmet_stats/): each layer's rank-2 weight delta;
// the windowed two-point z run equals the full recomputation on GPT-J, NeoX (parallel and
// sequential) and Qwen2; then on models/stories260K: the same at layer 2, an
// attention template in rewrite_module_tmps is refused, EasyEdit's PMET YAML is read, a PMET
// batch edit (Sue, Max) through ked_edit_batch and `ked edit --method pmet --hparams
// tests/data/hparams/PMET-stories260k.yaml` change the answers.
#include "test.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include "ked.h"
#include "edit/edit.h"
#include "io/safetensors.h"

static st_file *ref;

static float *getf(const char *name, int64_t *numel) {
    const st_tensor *t = st_find(ref, name);
    if (!t) { fprintf(stderr, "fixture lacks %s\n", name); exit(1); }
    float *out = malloc(sizeof(float) * (size_t)t->numel);
    ked_error err;
    if (st_to_f32(ref, t, out, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    if (numel) *numel = t->numel;
    return out;
}
static int *geti(const char *name, int64_t *numel) {
    const st_tensor *t = st_find(ref, name);
    if (!t || t->dtype != KED_I64) { fprintf(stderr, "fixture lacks I64 %s\n", name); exit(1); }
    int *out = malloc(sizeof(int) * (size_t)t->numel);
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        out[i] = (int)v;
    }
    if (numel) *numel = t->numel;
    return out;
}

// max |a - b| / max |b|
static double rel(const float *a, const float *b, size_t n) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    return m / (s > 1e-12 ? s : 1e-12);
}

// request j of the fixture as ked's tokenised case
static void build_case(const char *fam, int j, edit_case *c) {
    char key[64];
    int64_t nctx, T, nkl, ntg;
    snprintf(key, sizeof key, "r%d.ctx.ids", j);
    int *cids = geti(key, &T);
    snprintf(key, sizeof key, "r%d.ctx.len", j);
    int *clen = geti(key, &nctx);
    snprintf(key, sizeof key, "r%d.ctx.lookup", j);
    int *clk = geti(key, NULL);
    T /= nctx;
    snprintf(key, sizeof key, "r%d.kl.ids", j);
    int *klids = geti(key, &nkl);
    snprintf(key, sizeof key, "r%d.kl.lookup", j);
    int *kllk = geti(key, NULL);
    if (j == 0) snprintf(key, sizeof key, "r0.target");
    else snprintf(key, sizeof key, "%s.r%d.target", fam, j);
    int *tg = geti(key, &ntg);
    memset(c, 0, sizeof *c);
    c->n_ctx = (int)nctx;
    c->ctx = calloc((size_t)nctx, sizeof *c->ctx);
    for (int i = 0; i < nctx; i++) {
        c->ctx[i].ids = malloc(sizeof(int) * (size_t)clen[i]);
        memcpy(c->ctx[i].ids, cids + i * T, sizeof(int) * (size_t)clen[i]);
        c->ctx[i].n = clen[i];
        c->ctx[i].lookup = clk[i];
    }
    c->bare.ids = malloc(sizeof(int) * (size_t)clen[0]);
    memcpy(c->bare.ids, c->ctx[0].ids, sizeof(int) * (size_t)clen[0]);
    c->bare.n = clen[0];
    c->bare.lookup = clk[0];
    c->kl.ids = klids;
    c->kl.n = (int)nkl;
    c->kl.lookup = kllk[0];
    c->target = tg;
    c->n_target = (int)ntg;
    free(cids); free(clen); free(clk); free(kllk);
}

static void set_hp(ked_hparams *hp) { // tests/ref/edit_pmet_ref.py HP
    hp->v_num_grad_steps = 25;
    hp->v_lr = 0.5f;
    hp->v_weight_decay = 0.5f;
    hp->clamp_norm_factor = 4.0f;
    hp->kl_factor = 0.0625f;
    hp->nll_loss_factor = 1.0f;
    hp->mom2_update_weight = 7.5f;
    hp->layers[0] = 0;
    hp->layers[1] = 1;
    hp->n_layers = 2;
}

static void test_family(const char *fam) {
    char dir[128], key[96];
    snprintf(dir, sizeof dir, "tests/data/tiny-%s", fam);
    printf("== PMET, %s\n", dir);
    ked_error err;
    ked_model *m = NULL;
    CHECK_OK(ked_model_load(dir, &m, &err), &err);
    if (!m) return;
    int C = ked_model_config(m)->d_model, F = ked_model_config(m)->d_ff;
    edit_case cs[2];
    for (int j = 0; j < 2; j++) build_case(fam, j, &cs[j]);
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(m, "pmet", &hp, &err), &err);
    set_hp(&hp);

    // 1. compute_zs at layer 0, both requests in one run, then each alone
    vstar_opts vo = {.n_points = 2, .points = {KED_HOOK_MLP_OUT, KED_HOOK_ATTN_OUT}, .pmet_rule = 1};
    vstar_result both[2], one;
    CHECK_OK(edit_vstar_run(m, &hp, cs, 2, 0, &vo, NULL, both, &err), &err);
    static const char *names[4] = {"init_mlp", "init_attn", "delta_mlp", "delta_attn"};
    for (int j = 0; j < 2 && both[0].delta; j++) {
        int64_t ns = 0;
        snprintf(key, sizeof key, "%s.z%d.losses", fam, j);
        float *wl = getf(key, &ns);
        double lmax = 0;
        for (int s = 0; s < ns && s < both[j].n_steps; s++) lmax = fmax(lmax, fabs(both[j].loss[s] - wl[s]));
        printf("  request %d: %d steps (reference %lld), loss %.5f -> %.5f, max |loss diff| %.2e\n", j,
               both[j].n_steps, (long long)ns, both[j].loss[0], both[j].loss[both[j].n_steps - 1], lmax);
        CHECK(both[j].n_steps == ns, "request %d: %d steps, reference %lld", j, both[j].n_steps, (long long)ns);
        CHECK(lmax < 1e-4, "request %d: loss differs by %g", j, lmax);
        free(wl);
        for (int q = 0; q < 4; q++) {
            snprintf(key, sizeof key, "%s.z%d.%s", fam, j, names[q]);
            float *want = getf(key, NULL);
            const float *got = (q < 2 ? both[j].target_init : both[j].delta) + (size_t)(q & 1) * C;
            double r = rel(got, want, (size_t)C);
            double tol = q < 2 ? 1e-5 : 1e-4;
            printf("    %-10s rel max diff %.2e (tolerance %.0e)\n", names[q], r, tol);
            CHECK(r <= tol, "request %d %s: rel diff %g", j, names[q], r);
            free(want);
        }
        CHECK_OK(edit_vstar_run(m, &hp, &cs[j], 1, 0, &vo, NULL, &one, &err), &err);
        if (one.delta) {
            float d = test_maxdiff(one.delta, both[j].delta, (size_t)2 * C, NULL);
            CHECK(one.n_steps == both[j].n_steps && d <= 1e-5f, "request %d alone: %d steps, diff %g",
                  j, one.n_steps, d);
            vstar_result_free(&one);
        }
    }
    for (int j = 0; j < 2; j++) vstar_result_free(&both[j]);

    // 2. the update given z, statistics from the npz files in EasyEdit's stats_dir layout
    float *z = getf((snprintf(key, sizeof key, "%s.z", fam), key), NULL);
    snprintf(hp.stats_dir, sizeof hp.stats_dir, "tests/data/edit/pmet_stats");
    snprintf(hp.rewrite_tmp, sizeof hp.rewrite_tmp, "%s",
             !strcmp(fam, "gpt2") ? "transformer.h.{}.mlp.c_proj" : "model.layers.{}.mlp.down_proj");
    snprintf(hp.mom2_dataset, sizeof hp.mom2_dataset, "wikipedia");
    hp.mom2_n_samples = 100000;
    ked_stats_opts so = ked_stats_defaults();
    so.cache_dir = "build/tests/pmet_ref_cache";
    ked_edit_opts eo = ked_edit_defaults();
    eo.stats = &so;
    ked_patch *p = NULL;
    CHECK_OK(edit_pmet_given(m, NULL, &hp, cs, 2, &eo, z, &p, NULL, &err), &err);
    if (p) {
        CHECK(p->n == 2 && p->e[0].rank == 2 && p->e[0].layer == 0 && p->e[1].layer == 1,
              "patch: %d entries", p->n);
        float *dW = malloc(sizeof(float) * (size_t)C * F);
        for (int e = 0; e < p->n && e < 2; e++) {
            memset(dW, 0, sizeof(float) * (size_t)C * F);
            patch_entry_add(&p->e[e], dW);
            snprintf(key, sizeof key, "%s.dW%d", fam, e);
            float *want = getf(key, NULL);
            double r = rel(dW, want, (size_t)C * F);
            printf("  layer %d weight delta (rank 2): rel max diff %.2e (tolerance 1e-4)\n", e, r);
            CHECK(r <= 1e-4, "layer %d dW rel diff %g", e, r);
            free(want);
        }
        free(dW);
        ked_patch_free(p);
    }
    free(z);
    for (int j = 0; j < 2; j++) edit_case_free(&cs[j]);
    ked_model_free(m);
}

// the other families (parallel residual: GPT-J, NeoX; sequential NeoX; Qwen2 biases): the
// two-point z run at layers 0 and 1, windowed (from the layer, cached prefixes) = full
static void families(void) {
    static const char *dirs[4] = {"tests/data/tiny-gptj", "tests/data/tiny-neox",
                                  "tests/data/tiny-neox-seq", "tests/data/tiny-qwen2"};
    edit_case c;
    build_case("llama", 0, &c);
    for (int k = 0; k < 4; k++) {
        ked_error err;
        ked_model *m = NULL;
        CHECK_OK(ked_model_load(dirs[k], &m, &err), &err);
        if (!m) continue;
        int C = ked_model_config(m)->d_model;
        ked_hparams hp;
        CHECK_OK(ked_hparams_defaults(m, "pmet", &hp, &err), &err);
        set_hp(&hp);
        hp.v_num_grad_steps = 8;
        vstar_opts vw = {.n_points = 2, .points = {KED_HOOK_MLP_OUT, KED_HOOK_ATTN_OUT}, .pmet_rule = 1};
        vstar_opts vf = vw;
        vf.full = 1;
        double worst = 0;
        for (int L = 0; L < 2; L++) {
            vstar_result a, b;
            CHECK_OK(edit_vstar_run(m, &hp, &c, 1, L, &vw, NULL, &a, &err), &err);
            CHECK_OK(edit_vstar_run(m, &hp, &c, 1, L, &vf, NULL, &b, &err), &err);
            if (a.delta && b.delta) {
                double md = 0, mx = 0;
                for (int x = 0; x < 2 * C; x++) {
                    md = fmax(md, fabs(a.delta[x] - b.delta[x]));
                    mx = fmax(mx, fabs(b.delta[x]));
                }
                worst = fmax(worst, md / (mx > 0 ? mx : 1));
                // (at the last layer a delta at the lookup token reaches only the KL row, whose
                // gradient is 0 at delta 0: the deltas stay 0 there)
                CHECK(a.n_steps == b.n_steps && md <= 1e-4 * mx && (mx > 0 || L == 1),
                      "%s layer %d: steps %d/%d, delta diff %g of %g", dirs[k], L, a.n_steps,
                      b.n_steps, md, mx);
            }
            vstar_result_free(&a);
            vstar_result_free(&b);
        }
        printf("  %-26s two-point z at layers 0, 1: windowed = full, delta rel %.2e\n", dirs[k], worst);
        ked_model_free(m);
    }
    edit_case_free(&c);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) { fputs(text, f); fclose(f); }
}

static void stories(void) {
    printf("== PMET, models/stories260K\n");
    ked_error err;
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    CHECK_OK(ked_model_load("models/stories260K", &m, &err), &err);
    CHECK_OK(ked_tokenizer_load("models/stories260K/tok512.bin", &tok, &err), &err);
    if (!m || !tok) return;
    int C = ked_model_config(m)->d_model;
    ked_request rq[2] = {{0}, {0}};
    rq[0].prompt = "Once upon a time, there was a little girl named"; rq[0].subject = "little girl"; rq[0].target_new = " Sue";
    rq[1].prompt = "One day, a big dog called"; rq[1].subject = "big dog"; rq[1].target_new = " Max";

    // the windowed two-point run (steps from layer 2, the prefixes cached) = the full one
    {
        static const char *tm[2] = {"{}", "Yes. {}"};
        ked_hparams hp;
        CHECK_OK(ked_hparams_defaults(m, "pmet", &hp, &err), &err);
        hp.v_num_grad_steps = 10;
        edit_case c;
        CHECK_OK(edit_case_build(tok, &rq[0], tm, 2, hp.fact_token, &c, &err), &err);
        vstar_opts vw = {.n_points = 2, .points = {KED_HOOK_MLP_OUT, KED_HOOK_ATTN_OUT}, .pmet_rule = 1};
        vstar_opts vf = vw;
        vf.full = 1;
        vstar_result a, b;
        CHECK_OK(edit_vstar_run(m, &hp, &c, 1, 2, &vw, NULL, &a, &err), &err);
        CHECK_OK(edit_vstar_run(m, &hp, &c, 1, 2, &vf, NULL, &b, &err), &err);
        if (a.delta && b.delta) {
            double md = 0, mx = 0, ml = 0;
            for (int x = 0; x < 2 * C; x++) {
                md = fmax(md, fabs(a.delta[x] - b.delta[x]));
                mx = fmax(mx, fabs(b.delta[x]));
            }
            for (int s = 0; s < a.n_steps && s < b.n_steps; s++)
                ml = fmax(ml, fabs(a.loss[s] - b.loss[s]) / fabs(b.loss[s]));
            printf("  windowed vs full (layer 2, mlp_out + attn_out): %d / %d steps, loss rel %.2e, "
                   "delta rel %.2e\n", a.n_steps, b.n_steps, ml, md / mx);
            CHECK(a.n_steps == b.n_steps && ml < 1e-5 && md <= 1e-4 * mx, "windowed %d steps vs %d, "
                  "loss %g, delta %g", a.n_steps, b.n_steps, ml, md / mx);
        }
        vstar_result_free(&a);
        vstar_result_free(&b);
        edit_case_free(&c);
    }
    // EasyEdit's PMET YAML (llama-7b's, layers moved into stories260K): read; an attention
    // rewrite module is refused naming the field
    {
        char *y = NULL;
        size_t n = 0;
        CHECK_OK(ked_read_file("tests/data/hparams/PMET-llama-7b.yaml", &y, &n, &err), &err);
        if (y) {
            char *l = strstr(y, "layers: [4, 5, 6, 7, 8]");
            CHECK(l != NULL, "the YAML's layers line");
            if (l) memcpy(l, "layers: [1, 2         ]", 23);
            write_text("build/tests/pmet_hp.yaml", y);
            ked_hparams hp;
            CHECK_OK(ked_hparams_load(m, "build/tests/pmet_hp.yaml", NULL, &hp, &err), &err);
            CHECK(!strcmp(hp.method, "pmet") && hp.n_layers == 2 && hp.layers[1] == 2 &&
                  hp.clamp_norm_factor == 1.0f && hp.v_num_grad_steps == 20 &&
                  hp.mom2_update_weight == 15000.0f && hp.nll_loss_factor == 1.0f,
                  "PMET YAML: %s layers %d clamp %g steps %d lambda %g nll %g", hp.method, hp.n_layers,
                  hp.clamp_norm_factor, hp.v_num_grad_steps, hp.mom2_update_weight, hp.nll_loss_factor);
            char *r = strstr(y, "rewrite_module_tmps: [\"model.layers.{}.mlp.down_proj\"]");
            CHECK(r != NULL, "the YAML's rewrite_module_tmps line");
            if (r) {
                size_t off = (size_t)(r - y) + strlen("rewrite_module_tmps: [\"model.layers.{}.mlp.down_proj\"");
                char *y2 = malloc(n + 64);
                snprintf(y2, n + 64, "%.*s, \"model.layers.{}.self_attn.o_proj\"%s", (int)off, y, y + off);
                write_text("build/tests/pmet_hp_attn.yaml", y2);
                free(y2);
                ked_status st = ked_hparams_load(m, "build/tests/pmet_hp_attn.yaml", NULL, &hp, &err);
                CHECK(st != KED_OK && strstr(err.msg, "rewrite_module_tmps") && strstr(err.msg, "o_proj"),
                      "attention rewrite: %s", err.msg);
                printf("  ok: %s\n", err.msg);
            }
            // EasyEdit's PMETHyperParams has no default for nll_loss_factor: a file without it
            char *nl = strstr(y, "nll_loss_factor");
            CHECK(nl != NULL, "the YAML's nll_loss_factor line");
            if (nl) {
                *nl = 0;
                write_text("build/tests/pmet_hp_nonll.yaml", y);
                ked_status st = ked_hparams_load(m, "build/tests/pmet_hp_nonll.yaml", NULL, &hp, &err);
                CHECK(st == KED_ERR_FORMAT && strstr(err.msg, "missing field 'nll_loss_factor'"),
                      "no nll_loss_factor: %s", err.msg);
            }
            free(y);
        }
    }
    // a batch of two through ked_edit_batch (layers 0-1): statistics from 60 corpus lines
    {
        char *data = NULL;
        size_t len = 0;
        CHECK_OK(ked_read_file("tests/data/tokenizer/corpus.txt", &data, &len, &err), &err);
        FILE *fl = fopen("build/tests/pmet_corpus.txt", "wb");
        int nd = 0;
        for (char *q = data; q && *q && nd < 60 && fl;) {
            char *e = strchr(q, '\n');
            size_t l = e ? (size_t)(e - q) : strlen(q);
            if (l > 0) { fprintf(fl, "%.*s\n", (int)l, q); nd++; }
            q = e ? e + 1 : NULL;
        }
        if (fl) fclose(fl);
        free(data);
        ked_hparams hp;
        CHECK_OK(ked_hparams_defaults(m, "pmet", &hp, &err), &err);
        hp.layers[0] = 0; hp.layers[1] = 1; hp.n_layers = 2;
        hp.mom2_update_weight = 172; // 1 x d_ff
        ked_stats_opts so = ked_stats_defaults();
        so.cache_dir = "build/tests/pmet_cache";
        so.corpus = "build/tests/pmet_corpus.txt";
        ked_edit_opts eo = ked_edit_defaults();
        eo.stats = &so;
        ked_editor *ed = NULL;
        CHECK_OK(ked_editor_new(m, &ed, &err), &err);
        ked_patch *p = NULL;
        ked_edit_info info;
        float acc0[2], acc1[2];
        for (int j = 0; j < 2; j++)
            CHECK_OK(ked_edit_token_accuracy(m, tok, rq[j].prompt, rq[j].target_new, &acc0[j], NULL, NULL, &err), &err);
        CHECK_OK(ked_edit_batch(m, tok, &hp, rq, 2, &eo, &p, &info, &err), &err);
        if (p && ed) {
            int rank = 0;
            ked_patch_entry(p, 0, &rank);
            CHECK(rank == 2 && ked_patch_n_entries(p) == 2 && !strcmp(ked_patch_method(p), "pmet"),
                  "pmet patch: %d entries, rank %d", ked_patch_n_entries(p), rank);
            int id = -1;
            CHECK_OK(ked_editor_apply(ed, p, &id, &err), &err);
            for (int j = 0; j < 2; j++)
                CHECK_OK(ked_edit_token_accuracy(m, tok, rq[j].prompt, rq[j].target_new, &acc1[j], NULL, NULL, &err), &err);
            printf("  pmet 2 requests, layers 0-1, lambda 172: rewrite acc %.2f %.2f -> %.2f %.2f, "
                   "%d z steps, %.2f s\n", acc0[0], acc0[1], acc1[0], acc1[1], info.n_steps, info.seconds);
            CHECK(acc1[0] == 1 && acc1[1] == 1, "pmet: rewrite accuracy %.2f %.2f", acc1[0], acc1[1]);
        }
        ked_editor_free(ed);
    }
    ked_tokenizer_free(tok);
    ked_model_free(m);

    // `ked edit --method pmet` with an EasyEdit PMET file (the statistics cached above)
    char cmd[1024], out[16384];
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(cmd, sizeof cmd, "KED_CACHE=build/tests/pmet_cache %s/ked edit --model models/stories260K "
             "--method pmet --hparams tests/data/hparams/PMET-stories260k.yaml "
             "--prompt 'Once upon a time, there was a little girl named' "
             "--subject 'little girl' --target ' Sue' --stats-corpus build/tests/pmet_corpus.txt",
             build);
    int rc = test_run(cmd, out, sizeof out);
    const char *after = strstr(out, "after ");
    CHECK(rc == 0 && after && strstr(after, "named Sue") && strstr(out, "rewrite accuracy  0.667 -> 1.000"),
          "ked edit --method pmet: rc %d\n%s", rc, out);
    if (after) printf("  ked edit --method pmet: %.*s\n", (int)strcspn(after, "\n"), after);
}

int main(void) {
    ked_set_threads(1);
    ked_error err;
    mkdir("build", 0755);
    mkdir("build/tests", 0755);
    if (st_open("tests/data/edit/pmet_ref.safetensors", &ref, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    test_family("llama");
    test_family("gpt2");
    families();
    st_close(ref);
    stories();
    return test_finish("test_edit_pmet_ref");
}
