// test_edit_memit_ref.c: second-moment statistics and the covariance-weighted updates against
// tests/ref/edit_memit_ref.py (PyTorch, float64): C of mlp_key over id documents on tiny-llama
// (several batch packings), EasyEdit's .npz files (np.savez; savez_compressed is an error), ROME's
// u = C^-1 k* (through EasyEdit's stats_dir layout), the MEMIT, EMMET and AlphaEdit weight deltas
// from the same K, R, C; then ked_stats_get on a text / blank-line / JSONL corpus (cache reuse)
// and a MEMIT, EMMET and AlphaEdit edit of stories260K.
#include "test.h"

#include <sys/stat.h>

#include "ked.h"
#include "edit/edit.h"
#include "io/safetensors.h"
#include "fixture.h"

static st_file *ref;

// max |a - b| / max |b|
static double rel(const double *a, const float *b, size_t n) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    return s > 0 ? m / s : m;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) { fputs(text, f); fclose(f); }
}

static void stats_and_solves(void) {
    ked_error err;
    ked_model *m = NULL;
    CHECK_OK(ked_model_load("tests/data/tiny-llama", &m, &err), &err);
    if (!m) return;
    int F = ked_model_config(m)->d_ff, Cd = ked_model_config(m)->d_model;
    int64_t nd = 0, nl = 0;
    int64_t *ids64 = fixture_i64(ref, "docs.ids", &nd), *len64 = fixture_i64(ref, "docs.len", &nl);
    int T = (int)(nd / nl), n_docs = (int)nl;
    int *ids = malloc(sizeof(int) * (size_t)nd), *lens = malloc(sizeof(int) * (size_t)nl);
    const int *docs[16];
    for (int64_t i = 0; i < nd; i++) ids[i] = (int)ids64[i];
    for (int i = 0; i < n_docs; i++) { lens[i] = (int)len64[i]; docs[i] = ids + (size_t)i * T; }
    float *C0 = fixture_f32(ref, "stats.C0", NULL), *C1 = fixture_f32(ref, "stats.C1", NULL);
    int64_t *cnt = fixture_i64(ref, "stats.count", NULL);
    int layers[2] = {0, 1};
    int bts[3] = {64, 100, 4096}; // one document per batch .. all of them at once (padding)
    for (int b = 0; b < 3; b++) {
        double *acc[2] = {calloc((size_t)F * F, 8), calloc((size_t)F * F, 8)};
        int64_t count = 0;
        CHECK_OK(edit_stats_ids(m, docs, lens, n_docs, layers, 2, bts[b], acc, &count, &err), &err);
        CHECK(count == cnt[0], "count %lld vs %lld", (long long)count, (long long)cnt[0]);
        for (int k = 0; k < 2; k++) {
            // the batches write the upper triangle
            double *full = malloc(8 * (size_t)F * F);
            for (int i = 0; i < F; i++)
                for (int j = 0; j < F; j++)
                    full[(size_t)i * F + j] = acc[k][(size_t)(i < j ? i : j) * F + (i < j ? j : i)] / (double)count;
            double r = rel(full, k ? C1 : C0, (size_t)F * F);
            free(full);
            printf("  stats layer %d, batch_tokens %4d: %lld tokens, rel max diff %.2e\n", k, bts[b],
                   (long long)count, r);
            CHECK(r < 2e-6, "C of layer %d (batch_tokens %d): rel diff %g", k, bts[b], r);
            free(acc[k]);
        }
    }
    // EasyEdit's .npz
    ked_stats s;
    CHECK_OK(ked_stats_read_npz("tests/data/edit/stats_easyedit.npz", &s, &err), &err);
    if (s.mom2) {
        CHECK(s.dim == F && s.count == cnt[0], "npz dim %d count %lld", s.dim, (long long)s.count);
        double r = rel(s.mom2, C1, (size_t)F * F);
        printf("  npz: dim %d, count %lld, rel diff to C %.2e\n", s.dim, (long long)s.count, r);
        CHECK(r < 1e-6, "npz C rel diff %g", r);
        ked_stats_free(&s);
    }
    ked_status st = ked_stats_read_npz("tests/data/edit/stats_easyedit_compressed.npz", &s, &err);
    CHECK(st != KED_OK && strstr(err.msg, "compressed"), "savez_compressed: %s", err.msg);
    printf("  ok: %s\n", err.msg);
    st = ked_stats_read_npz("tests/data/tiny-llama/config.json", &s, &err);
    CHECK(st != KED_OK && strstr(err.msg, "mom2.mom2"), "not a zip: %s", err.msg);

    // the updates from the same K, R, C
    const st_tensor *hpt = NULL;
    (void)hpt;
    float *Kf = fixture_f32(ref, "in.K", NULL), *Rf = fixture_f32(ref, "in.R", NULL), *ckf = fixture_f32(ref, "in.cache_keys", NULL);
    int n = 3;
    double *K = malloc(8 * (size_t)F * n), *R = malloc(8 * (size_t)Cd * n);
    double *cache = calloc((size_t)F * F, 8), *dW = malloc(8 * (size_t)Cd * F);
    for (int i = 0; i < F * n; i++) K[i] = Kf[i];
    for (int i = 0; i < Cd * n; i++) R[i] = Rf[i];
    for (int i = 0; i < F; i++)
        for (int j = 0; j < F; j++)
            for (int c = 0; c < 4; c++) cache[(size_t)i * F + j] += (double)ckf[i * 4 + c] * ckf[j * 4 + c];
    memset(&s, 0, sizeof s);
    s.dim = F;
    s.count = cnt[0];
    s.mom2 = malloc(8 * (size_t)F * F);
    snprintf(s.source, sizeof s.source, "test C1");
    for (int i = 0; i < F * F; i++) s.mom2[i] = C1[i];
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(m, "memit", &hp, &err), &err);
    hp.mom2_update_weight = 7.5f; hp.emmet_lambda = 0.1f; hp.update_norm_lambda = 0.5f;
    hp.nullspace_threshold = 0.05f; hp.L2 = 0.3f;
    ked_stats_opts so = ked_stats_defaults();
    so.cache_dir = "build/tests/memit_ref_cache";
    ked_edit_opts eo = ked_edit_defaults();
    eo.stats = &so;
    const char *names[3] = {"memit.dW", "emmet.dW", "alphaedit.dW"};
    float *fa = malloc(4 * (size_t)Cd * n), *fb = malloc(4 * (size_t)F * n);
    for (int kind = 0; kind < 3; kind++) {
        int nk = -1;
        CHECK_OK(edit_memit_solve(kind, &hp, &s, K, R, Cd, n, kind == 2 ? cache : NULL, &eo, fa, fb,
                                  &nk, &err), &err);
        for (int i = 0; i < Cd; i++)
            for (int j = 0; j < F; j++) {
                double v = 0;
                for (int r = 0; r < n; r++) v += (double)fa[i * n + r] * fb[j * n + r];
                dW[(size_t)i * F + j] = v;
            }
        float *want = fixture_f32(ref, names[kind], NULL);
        double r = rel(dW, want, (size_t)Cd * F);
        printf("  %-12s rank-%d delta: rel max diff %.2e", names[kind], n, r);
        if (kind == 2) {
            int64_t *wk = fixture_i64(ref, "alphaedit.null_dim", NULL);
            printf(", null space %d of %d (reference %lld)", nk, F, (long long)wk[0]);
            CHECK(nk == wk[0], "null space %d vs %lld", nk, (long long)wk[0]);
            free(wk);
        }
        printf("\n");
        CHECK(r < 1e-4, "%s: rel diff %g", names[kind], r);
        free(want);
    }
    // ROME's u through EasyEdit's stats_dir layout: DIR/tiny-llama/wikipedia_stats/...npz
    mkdir("build/tests/ee_stats", 0755);
    mkdir("build/tests/ee_stats/tiny-llama", 0755);
    mkdir("build/tests/ee_stats/tiny-llama/wikipedia_stats", 0755);
    {
        char *data = NULL;
        size_t len = 0;
        CHECK_OK(ked_read_file("tests/data/edit/stats_easyedit.npz", &data, &len, &err), &err);
        CHECK_OK(ked_write_file_atomic("build/tests/ee_stats/tiny-llama/wikipedia_stats/"
                                       "model.layers.1.mlp.down_proj_float32_mom2_100000.npz", data, len, &err), &err);
        free(data);
    }
    CHECK_OK(ked_hparams_defaults(m, "rome", &hp, &err), &err);
    snprintf(hp.stats_dir, sizeof hp.stats_dir, "build/tests/ee_stats");
    snprintf(hp.rewrite_tmp, sizeof hp.rewrite_tmp, "model.layers.{}.mlp.down_proj");
    float *kstar = malloc(4 * (size_t)F), *u = malloc(4 * (size_t)F);
    for (int i = 0; i < F; i++) kstar[i] = Kf[i * n];
    CHECK_OK(edit_rome_mom2(m, &hp, &eo, 1, kstar, u, &err), &err);
    float *uw = fixture_f32(ref, "rome.u", NULL);
    double ud[4096];
    for (int i = 0; i < F; i++) ud[i] = u[i];
    double r = rel(ud, uw, (size_t)F);
    printf("  rome u = C^-1 k*: rel max diff %.2e\n", r);
    CHECK(r < 1e-5, "ROME u rel diff %g", r);
    free(kstar); free(u); free(uw);
    ked_stats_free(&s);
    free(fa); free(fb); free(K); free(R); free(cache); free(dW); free(Kf); free(Rf); free(ckf);
    free(ids64); free(len64); free(ids); free(lens); free(C0); free(C1); free(cnt);
    ked_model_free(m);
}

// ked_stats_get on a corpus in three layouts, the cache, and edits of stories260K with them
static void corpus_and_edits(void) {
    ked_error err;
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    CHECK_OK(ked_model_load("models/stories260K", &m, &err), &err);
    CHECK_OK(ked_tokenizer_load("models/stories260K/tok512.bin", &tok, &err), &err);
    if (!m || !tok) return;
    // 60 documents of the tokenizer corpus, as lines, blank-line blocks (with \r\n) and JSONL
    char *data = NULL;
    size_t len = 0;
    CHECK_OK(ked_read_file("tests/data/tokenizer/corpus.txt", &data, &len, &err), &err);
    FILE *fl = fopen("build/tests/stats_lines.txt", "wb"), *fb = fopen("build/tests/stats_blank.txt", "wb");
    FILE *fj = fopen("build/tests/stats.jsonl", "wb");
    int nd = 0;
    for (char *p = data; p && *p && nd < 60;) {
        char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 0) {
            fprintf(fl, "%.*s\n\n", (int)l, p); // an empty line between: skipped
            fprintf(fb, "%.*s\r\n\r\n", (int)l, p);
            fputs("{\"text\": \"", fj);
            for (size_t i = 0; i < l; i++) {
                unsigned char c = (unsigned char)p[i];
                if (c == '"' || c == '\\') fprintf(fj, "\\%c", c);
                else if (c < 0x20) fprintf(fj, "\\u%04x", c);
                else fputc(c, fj);
            }
            fputs("\"}\n", fj);
            nd++;
        }
        p = e ? e + 1 : NULL;
    }
    fclose(fl); fclose(fb); fclose(fj);
    free(data);
    const char *dir = "build/tests/stats_cache";
    int removed = 0;
    CHECK_OK(ked_stats_cache_clear(dir, &removed, &err), &err);
    int layers[2] = {1, 2};
    ked_stats a[2], b[2], c[2], d[2];
    ked_stats_opts so = ked_stats_defaults();
    so.cache_dir = dir;
    so.corpus = "build/tests/stats_lines.txt";
    double t0 = ked_time_s();
    CHECK_OK(ked_stats_get(m, tok, layers, 2, &so, a, &err), &err);
    double t1 = ked_time_s();
    CHECK(a[0].docs == 60 && a[0].count > 500, "docs %lld tokens %lld", (long long)a[0].docs, (long long)a[0].count);
    CHECK(strstr(a[0].source, "computed"), "%s", a[0].source);
    CHECK_OK(ked_stats_get(m, tok, layers, 2, &so, b, &err), &err); // from the cache
    CHECK(strstr(b[0].source, ".kstats") && b[1].count == a[1].count, "second call: %s", b[0].source);
    printf("  corpus: 60 docs, %lld tokens, layers 1-2 in %.2f s; cached: %s\n", (long long)a[0].count,
           t1 - t0, b[0].source);
    so.corpus = "build/tests/stats_blank.txt";
    so.doc_split = KED_DOC_BLANK;
    so.no_cache = 1;
    CHECK_OK(ked_stats_get(m, tok, layers, 2, &so, c, &err), &err);
    so.corpus = "build/tests/stats.jsonl";
    so.doc_split = KED_DOC_JSONL;
    CHECK_OK(ked_stats_get(m, tok, layers, 2, &so, d, &err), &err);
    int F = ked_model_config(m)->d_ff;
    for (int k = 0; k < 2 && a[k].mom2 && b[k].mom2 && c[k].mom2 && d[k].mom2; k++) {
        double mb = 0, mc = 0, md = 0;
        for (int i = 0; i < F * F; i++) {
            mb = fmax(mb, fabs(a[k].mom2[i] - b[k].mom2[i]));
            mc = fmax(mc, fabs(a[k].mom2[i] - c[k].mom2[i]));
            md = fmax(md, fabs(a[k].mom2[i] - d[k].mom2[i]));
        }
        CHECK(mb == 0 && mc < 1e-6 && md < 1e-6 && c[k].count == a[k].count && d[k].count == a[k].count,
              "layer %d: cache %g, blank %g, jsonl %g; counts %lld %lld %lld", layers[k], mb, mc, md,
              (long long)a[k].count, (long long)c[k].count, (long long)d[k].count);
    }
    // a token budget
    so.max_tokens = 500;
    ked_stats e[1];
    CHECK_OK(ked_stats_get(m, tok, layers, 1, &so, e, &err), &err);
    CHECK(e[0].count == 500, "token budget: %lld", (long long)e[0].count);
    ked_stats_free(e);
    for (int k = 0; k < 2; k++) { ked_stats_free(&a[k]); ked_stats_free(&b[k]); ked_stats_free(&c[k]); ked_stats_free(&d[k]); }
    // a bad JSONL line names the file and line
    write_text("build/tests/stats_bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": 1}\n");
    so.corpus = "build/tests/stats_bad.jsonl";
    so.max_tokens = 0;
    ked_status st = ked_stats_get(m, tok, layers, 1, &so, e, &err);
    CHECK(st != KED_OK && strstr(err.msg, "stats_bad.jsonl: line 2"), "%s", err.msg);

    // the batched z optimisation equals one request at a time
    {
        static const char *tm[2] = {"{}", "Yes. {}"};
        ked_request rq[2] = {{0}, {0}};
        rq[0].prompt = "Once upon a time, there was a little girl named"; rq[0].subject = "little girl"; rq[0].target_new = " Sue";
        rq[1].prompt = "One day, a big dog called"; rq[1].subject = "big dog"; rq[1].target_new = " Maximilian";
        edit_case cs[2];
        ked_hparams hp;
        CHECK_OK(ked_hparams_defaults(m, "memit", &hp, &err), &err);
        hp.v_num_grad_steps = 15;
        for (int j = 0; j < 2; j++) CHECK_OK(edit_case_build(tok, &rq[j], tm, 2, hp.fact_token, &cs[j], &err), &err);
        vstar_result one[2], both[2];
        double t0b = ked_time_s();
        for (int j = 0; j < 2; j++) CHECK_OK(edit_vstar(m, &hp, &cs[j], 2, 0, NULL, &one[j], &err), &err);
        double t1b = ked_time_s();
        CHECK_OK(edit_vstar_batch(m, &hp, cs, 2, 2, NULL, both, &err), &err);
        double t2b = ked_time_s();
        for (int j = 0; j < 2; j++) {
            double md = 0, mx = 0;
            for (int x = 0; x < ked_model_config(m)->d_model; x++) {
                md = fmax(md, fabs(one[j].delta[x] - both[j].delta[x]));
                mx = fmax(mx, fabs(one[j].delta[x]));
                md = fmax(md, fabs(one[j].target_init[x] - both[j].target_init[x]));
            }
            printf("  z of request %d: %d steps alone, %d batched, loss %.4f / %.4f, max diff %.2e (rel %.2e)\n", j,
                   one[j].n_steps, both[j].n_steps, one[j].loss[one[j].n_steps - 1],
                   both[j].loss[both[j].n_steps - 1], md, md / (mx > 0 ? mx : 1));
            CHECK(one[j].n_steps == both[j].n_steps && md <= 1e-4 * (mx > 0 ? mx : 1),
                  "batched z %d: steps %d vs %d, diff %g", j, one[j].n_steps, both[j].n_steps, md);
            vstar_result_free(&one[j]);
            vstar_result_free(&both[j]);
            edit_case_free(&cs[j]);
        }
        printf("  z of 2 requests: %.2f s one by one, %.2f s batched\n", t1b - t0b, t2b - t1b);
    }
    // edits: the statistics of layers 1-2 are cached (lines corpus); MEMIT/EMMET/AlphaEdit
    const char *methods[3] = {"memit", "emmet", "alphaedit"};
    ked_editor *ed = NULL;
    CHECK_OK(ked_editor_new(m, &ed, &err), &err);
    so = ked_stats_defaults();
    so.cache_dir = dir;
    for (int k = 0; k < 3 && ed; k++) {
        ked_hparams hp;
        CHECK_OK(ked_hparams_defaults(m, methods[k], &hp, &err), &err);
        hp.layers[0] = 1; hp.layers[1] = 2; hp.n_layers = 2;
        hp.mom2_update_weight = 200;
        ked_request req[2] = {{0}, {0}};
        req[0].prompt = "Once upon a time, there was a little girl named";
        req[0].subject = "little girl";
        req[0].target_new = " Sue";
        req[1].prompt = "One day, a big dog called";
        req[1].subject = "big dog";
        req[1].target_new = " Max";
        ked_edit_opts eo = ked_edit_defaults();
        eo.stats = &so;
        eo.editor = ed;
        ked_patch *p = NULL;
        ked_edit_info info;
        float acc0[2], acc1[2];
        for (int j = 0; j < 2; j++)
            CHECK_OK(ked_edit_token_accuracy(m, tok, req[j].prompt, req[j].target_new, &acc0[j], NULL, NULL, &err), &err);
        CHECK_OK(ked_edit_batch(m, tok, &hp, req, 2, &eo, &p, &info, &err), &err);
        if (!p) continue;
        int rank = 0;
        const char *nm = ked_patch_entry(p, 0, &rank);
        CHECK(rank == 2 && ked_patch_n_entries(p) == 2, "%s: %s rank %d", methods[k], nm, rank);
        int id = -1;
        CHECK_OK(ked_editor_apply(ed, p, &id, &err), &err);
        for (int j = 0; j < 2; j++)
            CHECK_OK(ked_edit_token_accuracy(m, tok, req[j].prompt, req[j].target_new, &acc1[j], NULL, NULL, &err), &err);
        printf("  %-9s 2 requests, layers 1-2: rewrite acc %.2f %.2f -> %.2f %.2f, %.2f s%s", methods[k],
               acc0[0], acc0[1], acc1[0], acc1[1], info.seconds, k == 2 ? "" : "\n");
        if (k == 2) printf(", null space %d of %d\n", info.null_space_dim, F);
        if (k < 2) CHECK(acc1[0] == 1 && acc1[1] == 1, "%s: rewrite accuracy %.2f %.2f", methods[k], acc1[0], acc1[1]);
        CHECK_OK(ked_editor_revert(ed, id, &err), &err);
    }
    // AlphaEdit's running key sum is carried by the patches: an edit after reverting the earlier
    // one equals the same edit with no earlier edits, bit for bit; with the earlier one active
    // it differs (cache_c), and the earlier batch keeps its answers
    if (ed) {
        ked_hparams hp;
        CHECK_OK(ked_hparams_defaults(m, "alphaedit", &hp, &err), &err);
        hp.layers[0] = 1; hp.layers[1] = 2; hp.n_layers = 2;
        ked_request r1[2] = {{0}, {0}}, r2[2] = {{0}, {0}};
        r1[0].prompt = "Once upon a time, there was a little girl named"; r1[0].subject = "little girl"; r1[0].target_new = " Sue";
        r1[1].prompt = "One day, a big dog called"; r1[1].subject = "big dog"; r1[1].target_new = " Max";
        r2[0].prompt = "The little boy's name was"; r2[0].subject = "little boy"; r2[0].target_new = " Tom";
        r2[1].prompt = "Her cat was called"; r2[1].subject = "cat"; r2[1].target_new = " Kitty";
        ked_edit_opts eo = ked_edit_defaults();
        eo.stats = &so;
        eo.editor = ed;
        ked_patch *pa = NULL, *pb = NULL, *pc = NULL, *pd = NULL;
        int ida = -1;
        CHECK_OK(ked_edit_batch(m, tok, &hp, r1, 2, &eo, &pa, NULL, &err), &err);
        CHECK(pa && pa->n_state == 2 && pa->state[0].rows == F && pa->state[0].cols == 2,
              "AlphaEdit patch carries its keys per layer");
        if (pa) { // the keys travel in patch files too
            ked_patch *pl = NULL;
            CHECK_OK(ked_patch_save(pa, m, "build/tests/alphaedit_patch.safetensors", &err), &err);
            CHECK_OK(ked_patch_load(m, "build/tests/alphaedit_patch.safetensors", &pl, &err), &err);
            CHECK(pl && pl->n_state == 2 && pl->state[1].layer == 2 && pl->state[1].cols == 2 &&
                  !memcmp(pl->state[1].data, pa->state[1].data, sizeof(float) * (size_t)F * 2),
                  "AlphaEdit keys saved and loaded with the patch");
            ked_patch_free(pl);
        }
        CHECK_OK(ked_editor_apply(ed, pa, &ida, &err), &err);
        float a0 = 0, a1 = 0, b0 = 0;
        CHECK_OK(ked_edit_token_accuracy(m, tok, r1[1].prompt, r1[1].target_new, &a0, NULL, NULL, &err), &err);
        CHECK_OK(ked_edit_batch(m, tok, &hp, r2, 2, &eo, &pb, NULL, &err), &err);
        int idb = -1;
        CHECK_OK(ked_editor_apply(ed, pb, &idb, &err), &err);
        CHECK_OK(ked_edit_token_accuracy(m, tok, r1[1].prompt, r1[1].target_new, &a1, NULL, NULL, &err), &err);
        CHECK_OK(ked_edit_token_accuracy(m, tok, r2[0].prompt, r2[0].target_new, &b0, NULL, NULL, &err), &err);
        printf("  alphaedit sequential: batch 1 'Max' acc %.2f after it, %.2f after batch 2; batch 2 'Tom' %.2f\n",
               a0, a1, b0);
        CHECK_OK(ked_editor_revert(ed, idb, &err), &err);
        CHECK_OK(ked_editor_revert(ed, ida, &err), &err);
        CHECK_OK(ked_edit_batch(m, tok, &hp, r2, 2, &eo, &pc, NULL, &err), &err);
        eo.editor = NULL;
        CHECK_OK(ked_edit_batch(m, tok, &hp, r2, 2, &eo, &pd, NULL, &err), &err);
        const ked_patch *pbb = ked_editor_patch(ed, idb);
        if (pc && pd && pbb) {
            size_t nb = sizeof(float) * (size_t)F * 2;
            CHECK(!memcmp(pc->e[0].b, pd->e[0].b, nb) && !memcmp(pc->e[1].b, pd->e[1].b, nb),
                  "after the revert the earlier keys are out of the sum");
            CHECK(memcmp(pbb->e[0].b, pc->e[0].b, nb), "with the earlier edit active its keys count");
        }
        ked_patch_free(pc);
        ked_patch_free(pd);
    }
    ked_editor_free(ed);
    ked_tokenizer_free(tok);
    ked_model_free(m);
}

int main(void) {
    ked_set_threads(1);
    ked_error err;
    mkdir("build", 0755);
    mkdir("build/tests", 0755);
    if (st_open("tests/data/edit/memit_ref.safetensors", &ref, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    stats_and_solves();
    st_close(ref);
    corpus_and_edits();
    return test_finish("test_edit_memit_ref");
}
