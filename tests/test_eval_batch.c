// test_eval_batch.c: `ked eval --batch B` for the joint methods (MEMIT, EMMET, AlphaEdit) on
// TinyStories-656K over 6 CounterFact cases in batches of 3, with statistics from 300 lines of the
// tokenizer corpus (a temporary cache):
//  - a batch is ONE ked_edit_batch: the post scores of the second batch equal those of the
//    model carrying exactly the joint patch of its three requests (computed here directly);
//  - single batches are rolled back (pre identical to the unedited run's, the model unchanged);
//  - --sequential keeps the batches: AlphaEdit's second batch is solved with the first batch's
//    keys in cache_c (equal to editing by hand with the editor); post_final after the last;
//  - progress reports carry the summary table after each batch;
//  - a run interrupted after one batch and resumed writes the same bytes (the finished batch is
//    replayed as a batch, AlphaEdit's key sum with it).
#include <jansson.h>
#include <math.h>

#include "test.h"

#include "ked.h"

static const char *MODEL = "models/TinyStories-656K";
static int last_null_space; // AlphaEdit's null space of edit3's last edit
static int n_tables, n_reports, retention; // retention: ked_eval_opts.retention of the runs
static ked_stats_opts so;

static void on_progress(const ked_eval_progress *p, void *user) {
    (void)user;
    n_reports++;
    if (p->table) {
        n_tables++;
        CHECK(strstr(p->table, "Edit_Succ") != NULL || strstr(p->table, "pre") != NULL, "table: %s", p->table);
    }
}

static ked_status run(ked_model *m, ked_tokenizer *tok, ked_dataset *d, const char *method, const ked_hparams *hp,
                      int n, int seq, int batch, const char *out, ked_error *err) {
    ked_eval_opts o = ked_eval_defaults();
    o.method = method;
    o.hp = hp;
    o.n = n;
    o.sequential = seq;
    o.batch = batch;
    o.seed = 3;
    o.fluency = 0;
    o.out = out;
    o.model_name = "TinyStories-656K";
    o.data_name = "counterfact_50.json";
    o.stats = &so;
    o.on_progress = on_progress;
    o.retention = retention;
    char *table = NULL;
    n_tables = n_reports = 0;
    ked_status st = ked_eval_run(m, tok, d, &o, NULL, &table, err);
    if (!st && table) printf("%s", table);
    free(table);
    return st;
}

// the NLL of target_new after the rewrite prompt (ROME's probabilities) in a results file
static double rewrite_nll(json_t *root, int i, const char *stage) {
    json_t *a = json_object_get(json_object_get(json_array_get(json_object_get(root, "results"), (size_t)i), stage),
                                "rewrite_prompts_probs");
    return json_number_value(json_object_get(json_array_get(a, 0), "target_new"));
}

// the NLL of target_new after the rewrite prompt of cases s..s+2 on m as it is now
static void acc3(ked_model *m, ked_tokenizer *tok, ked_dataset *d, int s, double *out) {
    ked_error err;
    for (int i = 0; i < 3; i++) {
        const ked_case *c = ked_dataset_case(d, s + i);
        CHECK_OK(ked_eval_teacher_forced(m, tok, c->req.prompt, c->req.target_new, NULL, &out[i], NULL, NULL, NULL, &err),
                 &err);
    }
}

// edit cases s..s+2 jointly with the run's templates (sampled once from the unedited model,
// seed 3) and apply the patch
static char **tm;
static int ntm;
static int edit3(ked_model *m, ked_tokenizer *tok, ked_dataset *d, const ked_hparams *hp, ked_editor *ed, int s) {
    ked_error err;
    ked_request rq[3];
    for (int i = 0; i < 3; i++) rq[i] = ked_dataset_case(d, s + i)->req;
    ked_edit_opts eo = ked_edit_defaults();
    eo.seed = 3;
    eo.templates = (const char *const *)tm;
    eo.n_templates = ntm;
    eo.stats = &so;
    eo.editor = ed;
    ked_patch *p = NULL;
    int id = -1;
    ked_edit_info info;
    CHECK_OK(ked_edit_batch(m, tok, hp, rq, 3, &eo, &p, &info, &err), &err);
    if (p) CHECK_OK(ked_editor_apply(ed, p, &id, &err), &err);
    last_null_space = info.null_space_dim;
    return id;
}

int main(void) {
    ked_error err;
    ked_set_threads(1);
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    CHECK_OK(ked_model_load(MODEL, &m, &err), &err);
    CHECK_OK(ked_tokenizer_load(MODEL, &tok, &err), &err);
    if (!m || !tok) return test_finish("test_eval_batch");
    char dir[] = "/tmp/ked_test_eval_batch_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char corpus[256], cache[256], p_none[256], p_mb[256], p_ab[256], p_part[256], cmd[512];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(p_none, sizeof p_none, "%s/none.json", dir);
    snprintf(p_mb, sizeof p_mb, "%s/memit_b3.json", dir);
    snprintf(p_ab, sizeof p_ab, "%s/alpha_seq_b3.json", dir);
    snprintf(p_part, sizeof p_part, "%s/part.json", dir);
    FILE *in = fopen("tests/data/tokenizer/corpus.txt", "rb"), *co = fopen(corpus, "wb");
    char line[8192];
    for (int i = 0; in && co && i < 300 && fgets(line, sizeof line, in); i++) fputs(line, co);
    if (in) fclose(in);
    if (co) fclose(co);
    so = ked_stats_defaults();
    so.corpus = corpus;
    so.cache_dir = cache;

    ked_dataset *d = NULL;
    CHECK_OK(ked_dataset_load("tests/data/eval/counterfact_50.json", KED_DATA_AUTO, &d, &err), &err);
    if (!d) return test_finish("test_eval_batch");
    CHECK_OK(run(m, tok, d, "none", NULL, 6, 0, 1, p_none, &err), &err);

    // ---- MEMIT, batches of 3, rolled back after each
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(m, "memit", &hp, &err), &err);
    hp.v_num_grad_steps = 6;
    CHECK_OK(ked_edit_templates(m, tok, &hp, 3, &tm, &ntm, &err), &err); // MEMIT's and AlphaEdit's
    CHECK_OK(run(m, tok, d, "memit", &hp, 6, 0, 3, p_mb, &err), &err);
    CHECK(n_tables == 2, "memit: %d summary tables in the progress reports (2 batches)", n_tables);
    json_error_t je;
    json_t *N = json_load_file(p_none, 0, &je), *M = json_load_file(p_mb, 0, &je);
    CHECK(N && M, "results: %s", je.text);
    if (N && M) {
        for (int c = 0; c < 6; c++)
            CHECK(json_equal(json_object_get(json_array_get(json_object_get(N, "results"), (size_t)c), "pre"),
                             json_object_get(json_array_get(json_object_get(M, "results"), (size_t)c), "pre")),
                  "memit batch: pre of case %d differs from the unedited run's", c);
        // the second batch: one joint patch of cases 3..5 on the unedited model
        ked_editor *ed = NULL;
        CHECK_OK(ked_editor_new(m, &ed, &err), &err);
        double want[3], pre[3];
        acc3(m, tok, d, 3, pre);
        int id = edit3(m, tok, d, &hp, ed, 3);
        acc3(m, tok, d, 3, want);
        int changed = 0;
        for (int i = 0; i < 3; i++) {
            double got = rewrite_nll(M, 3 + i, "post");
            CHECK(fabs(got - want[i]) < 1e-12, "memit batch: case %d post NLL %g, the joint edit gives %g", 3 + i,
                  got, want[i]);
            changed += want[i] != pre[i];
            printf("  memit batch 2, case %d: NLL(target_new) %.4f -> %.4f (joint edit by hand %.4f)\n", 3 + i, pre[i], got,
                   want[i]);
        }
        CHECK(changed == 3, "memit: the edit changed %d of 3 NLLs", changed);
        if (id >= 0) CHECK_OK(ked_editor_revert(ed, id, &err), &err);
        ked_editor_free(ed);
    }
    // resume after one batch
    test_truncate_results(p_mb, p_part, 3);
    CHECK_OK(run(m, tok, d, "memit", &hp, 6, 0, 3, p_part, &err), &err);
    char *x = test_slurp(p_mb), *y = test_slurp(p_part);
    CHECK(x && y && !strcmp(x, y), "memit batch: the resumed run differs from the uninterrupted one");
    free(x); free(y);
    remove(p_part);

    // ---- AlphaEdit, sequential batches of 3: cache_c carries the first batch's keys
    CHECK_OK(ked_hparams_defaults(m, "alphaedit", &hp, &err), &err);
    hp.v_num_grad_steps = 6;
    hp.nullspace_threshold = -0.1f; // a null space in this small statistics
    retention = 1; // the sequential runs below also re-score every earlier batch after each batch
    CHECK(run(m, tok, d, "memit", &hp, 6, 0, 3, p_part, &err) == KED_ERR_ARG && strstr(err.msg, "retention"),
          "retention without --sequential: %s", err.msg);
    CHECK_OK(run(m, tok, d, "alphaedit", &hp, 6, 1, 3, p_ab, &err), &err);
    CHECK(n_tables == 2, "alphaedit: %d summary tables in the progress reports (2 batches)", n_tables);
    json_t *A = json_load_file(p_ab, 0, &je);
    CHECK(A != NULL, "%s", je.text);
    if (A) {
        CHECK(json_object_get(json_array_get(json_object_get(A, "results"), 5), "post_final") != NULL, "post_final");
        ked_editor *ed = NULL;
        CHECK_OK(ked_editor_new(m, &ed, &err), &err);
        double want1[3], want2[3], fin[3];
        edit3(m, tok, d, &hp, ed, 0);
        acc3(m, tok, d, 0, want1);
        edit3(m, tok, d, &hp, ed, 3); // with the editor: cache_c holds batch 1's keys
        acc3(m, tok, d, 3, want2);
        acc3(m, tok, d, 0, fin);
        for (int i = 0; i < 3; i++) {
            CHECK(fabs(rewrite_nll(A, i, "post") - want1[i]) < 1e-12, "alphaedit: case %d post %g vs %g", i,
                  rewrite_nll(A, i, "post"), want1[i]);
            CHECK(fabs(rewrite_nll(A, 3 + i, "post") - want2[i]) < 1e-12, "alphaedit: case %d post %g vs %g", 3 + i,
                  rewrite_nll(A, 3 + i, "post"), want2[i]);
            CHECK(fabs(rewrite_nll(A, i, "post_final") - fin[i]) < 1e-12, "alphaedit: case %d post_final %g vs %g", i,
                  rewrite_nll(A, i, "post_final"), fin[i]);
            printf("  alphaedit seq: case %d NLL post %.4f post_final %.4f; case %d post %.4f\n", i, want1[i], fin[i], 3 + i,
                   want2[i]);
        }
        ked_editor_free(ed);
        json_t *ns = json_object_get(json_object_get(A, "edit_info"), "null_space"); // [kept, of, layer]
        CHECK(json_array_size(ns) == 3 && json_integer_value(json_array_get(ns, 0)) == last_null_space &&
                  json_integer_value(json_array_get(ns, 1)) == ked_model_config(m)->d_ff &&
                  json_integer_value(json_array_get(ns, 2)) == hp.layers[0],
              "edit_info.null_space: [%d, %d, %d], the edit by hand keeps %d of %d at layer %d",
              (int)json_integer_value(json_array_get(ns, 0)), (int)json_integer_value(json_array_get(ns, 1)),
              (int)json_integer_value(json_array_get(ns, 2)), last_null_space, ked_model_config(m)->d_ff, hp.layers[0]);
        CHECK(!json_object_get(M, "edit_info"), "memit: an edit_info in the results");
        // retention: after batch 1, batch 1's means (= its post); after batch 2, both batches'
        // (= post_final of batch 1 and post of batch 2, which is also its post_final); the
        // accuracies (0 here: 6 v* steps do not land these edits) and the NLLs (ROME's probabilities)
        json_t *R = json_object_get(A, "retention");
        CHECK(json_array_size(R) == 2, "retention: %zu entries, want 2 (one per batch)", json_array_size(R));
        for (int q = 0; q < 2; q++) {
            const char *key = q ? "rewrite_nll" : "rewrite_acc";
            double want[3] = {0, 0, 0}; // batch 1 post, batch 1 post_final, batch 2 post
            for (int i = 0; i < 3; i++) {
                want[0] += (q ? rewrite_nll(A, i, "post") : test_rewrite_acc(A, i, "post")) / 3;
                want[1] += (q ? rewrite_nll(A, i, "post_final") : test_rewrite_acc(A, i, "post_final")) / 3;
                want[2] += (q ? rewrite_nll(A, 3 + i, "post") : test_rewrite_acc(A, 3 + i, "post")) / 3;
            }
            for (int k = 0; k < 3; k++) {
                json_t *e = json_array_get(R, k ? 1 : 0);
                double got = json_number_value(json_array_get(json_object_get(e, key), (size_t)(k ? k - 1 : 0)));
                CHECK(json_integer_value(json_object_get(e, "after")) == (k ? 6 : 3), "retention entry %d: after", k ? 1 : 0);
                CHECK(fabs(got - want[k]) < 1e-9, "retention %s %d: %g, the results give %g", key, k, got, want[k]);
            }
            CHECK(json_array_size(json_object_get(json_array_get(R, 1), key)) == 2, "retention %s: 2 batches after the 2nd", key);
            printf("  alphaedit seq retention %s: batch 1 %.4f -> %.4f, batch 2 %.4f\n", key, want[0], want[1], want[2]);
        }
    }
    test_truncate_results(p_ab, p_part, 3);
    CHECK_OK(run(m, tok, d, "alphaedit", &hp, 6, 1, 3, p_part, &err), &err);
    x = test_slurp(p_ab);
    y = test_slurp(p_part);
    CHECK(x && y && !strcmp(x, y), "alphaedit sequential batch: the resumed run differs from the uninterrupted one");
    free(x); free(y);
    json_decref(N); json_decref(M); json_decref(A);
    ked_edit_templates_free(tm, ntm);
    ked_dataset_free(d);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
    ked_tokenizer_free(tok);
    ked_model_free(m);
    return test_finish("test_eval_batch");
}
