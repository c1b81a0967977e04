// KED-TEST: heavy
// test_eval_tinystories: `ked eval` end to end on models/TinyStories-656K over 50 ZsRE and 50
// CounterFact (ROME schema) records: ROME with EasyEdit's llama-7b YAML (layer moved to 0, the
// only other layer of this 2-layer model; tests/data/eval/README.md) and with ked's defaults,
// FT-L with EasyEdit's FT YAML, FT-M sequential, the unedited model on KnowEdit; every metric,
// the JSON layout, and resumed runs (from a file cut after k cases, as an interrupted run leaves
// it) that write the same bytes as the uninterrupted ones. The tables are the figures of
// docs/results.md.
#include <stdarg.h>
#include <unistd.h>

#include "test.h"
#include "ked.h"
#include <jansson.h>

static char ked_bin[512], dir[64];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    printf("$ %s\n", cmd);
    fflush(stdout);
    return system(cmd);
}

// run ked eval with args into DIR/name.json; check the file's layout; returns the parsed file
static json_t *eval(const char *name, const char *args, int n, int cf, int edited) {
    char out[256];
    snprintf(out, sizeof out, "%s/%s.json", dir, name);
    unlink(out);
    int rc = sh("%s eval --model models/TinyStories-656K %s --n %d --threads 1 --out %s >%s/%s.log 2>&1", ked_bin, args,
                n, out, dir, name);
    char log[256];
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    char *l = test_slurp(log); // the CLI's timing block (its progress lines left out)
    const char *t = l ? strstr(l, "-- timing") : NULL;
    if (t) printf("%s", t);
    free(l);
    CHECK(rc == 0, "%s: ked eval failed", name);
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    CHECK(j != NULL, "%s: %s", out, je.text);
    if (!j) return NULL;
    json_t *res = json_object_get(j, "results");
    CHECK((int)json_array_size(res) == n, "%s: %zu results", name, json_array_size(res));
    CHECK(json_is_true(json_object_get(json_object_get(j, "ked_eval"), "complete")), "%s: not complete", name);
    for (size_t i = 0; i < json_array_size(res); i++) {
        json_t *r = json_array_get(res, i), *pre = json_object_get(r, "pre"), *post = json_object_get(r, "post");
        CHECK(json_integer_value(json_object_get(r, "case_id")) == (json_int_t)i, "%s: case_id", name);
        CHECK(json_is_object(json_object_get(r, "requested_rewrite")), "%s: requested_rewrite", name);
        CHECK(json_array_size(json_object_get(pre, "rewrite_acc")) <= 1, "%s: rewrite_acc", name);
        CHECK(json_is_number(json_object_get(json_object_get(pre, "fluency"), "ngram_entropy")), "%s: fluency", name);
        CHECK(json_is_object(json_object_get(pre, "locality")) && json_is_object(json_object_get(pre, "portability")),
              "%s: sections", name);
        CHECK(!cf || json_array_size(json_object_get(pre, "rewrite_prompts_probs")) == 1, "%s: ROME probabilities", name);
        CHECK(!cf || json_array_size(json_object_get(pre, "neighborhood_prompts_probs")) == 10, "%s: neighbourhood", name);
        CHECK(!cf || json_array_size(json_object_get(pre, "paraphrase_prompts_probs")) == 2, "%s: paraphrases", name);
        CHECK(edited == (post != NULL), "%s: post", name);
        if (post) {
            json_t *la = json_object_get(json_object_get(post, "locality"), "neighborhood_acc");
            CHECK(json_array_size(la) == (size_t)(cf ? 10 : 1), "%s: case %zu: locality scores", name, i);
        }
    }
    char *table = NULL;
    ked_eval_summary s;
    ked_error err;
    CHECK_OK(ked_eval_summarize(out, &s, &table, &err), &err);
    if (table) printf("%s\n", table);
    free(table);
    return j;
}

// cut a finished file after k results (what an interrupted run leaves), resume it with the same
// command, compare bytes
static void resume(const char *name, const char *args, int n, int k) {
    char full[256], part[256];
    snprintf(full, sizeof full, "%s/%s.json", dir, name);
    snprintf(part, sizeof part, "%s/%s.part.json", dir, name);
    if (!test_truncate_results(full, part, k)) return;
    int rc = sh("%s eval --model models/TinyStories-656K %s --n %d --threads 1 --out %s 2>/dev/null >/dev/null", ked_bin,
                args, n, part);
    CHECK(rc == 0, "%s: resume failed", name);
    char *a = test_slurp(full), *b = test_slurp(part);
    CHECK(a && b && !strcmp(a, b), "%s: resumed after %d of %d cases: the file differs", name, k, n);
    printf("resumed %s after %d of %d cases: %s\n\n", name, k, n, a && b && !strcmp(a, b) ? "same bytes" : "DIFFERENT");
    free(a);
    free(b);
}

// --retention with --batch 1: after edit k, k + 1 values; edit k's own is its post, and after
// the last edit every case's is its post_final
static void retention_check(json_t *j, int n) {
    json_t *R = json_object_get(j, "retention");
    CHECK((int)json_array_size(R) == n, "retention: %zu entries for %d edits", json_array_size(R), n);
    int differ = 0;
    for (int k = 0; k < (int)json_array_size(R); k++) {
        json_t *e = json_array_get(R, (size_t)k), *acc = json_object_get(e, "rewrite_acc");
        CHECK(json_integer_value(json_object_get(e, "after")) == k + 1 && (int)json_array_size(acc) == k + 1,
              "retention entry %d: after %d, %zu values", k, (int)json_integer_value(json_object_get(e, "after")),
              json_array_size(acc));
        CHECK(fabs(json_number_value(json_array_get(acc, (size_t)k)) - test_rewrite_acc(j, k, "post")) < 1e-12,
              "retention entry %d: its own edit's value is not its post", k);
        for (int i = 0; k == n - 1 && i < n; i++) {
            CHECK(fabs(json_number_value(json_array_get(acc, (size_t)i)) - test_rewrite_acc(j, i, "post_final")) < 1e-12,
                  "retention after the last edit: case %d is not its post_final", i);
            differ += test_rewrite_acc(j, i, "post") != test_rewrite_acc(j, i, "post_final");
        }
    }
    printf("retention: %d of %d cases changed between post and post_final; first case %.3f -> %.3f\n", differ, n,
           test_rewrite_acc(j, 0, "post"), test_rewrite_acc(j, 0, "post_final"));
}

static double stage_val(json_t *j, const char *stage, const char *key) {
    return json_number_value(json_object_get(json_object_get(json_object_get(j, "summary"), stage), key));
}

int main(void) {
    const char *b = getenv("BUILD");
    snprintf(ked_bin, sizeof ked_bin, "%s/ked", b && *b ? b : "build");
    snprintf(dir, sizeof dir, "/tmp/ked_test_eval_ts_XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    const char *Z = "--data tests/data/eval/zsre_eval_50.json";
    const char *C = "--data tests/data/eval/counterfact_50.json";
    char a[1024];

    snprintf(a, sizeof a, "%s --method rome --hparams tests/data/eval/ROME-llama-7b-tinystories.yaml", Z);
    json_t *zr_yaml = eval("zsre_rome_yaml", a, 50, 0, 1);
    snprintf(a, sizeof a, "%s --method rome", Z);
    json_t *zr_def = eval("zsre_rome_defaults", a, 50, 0, 1);
    resume("zsre_rome_defaults", a, 50, 20);
    snprintf(a, sizeof a, "%s --method rome --hparams tests/data/eval/ROME-llama-7b-tinystories.yaml", C);
    json_t *cr_yaml = eval("cf_rome_yaml", a, 50, 1, 1);
    snprintf(a, sizeof a, "%s --method rome", C);
    json_t *cr_def = eval("cf_rome_defaults", a, 50, 1, 1);
    snprintf(a, sizeof a, "%s --method ft --hparams tests/data/eval/FT-llama-7b-tinystories.yaml", Z);
    json_t *zf_yaml = eval("zsre_ft_yaml", a, 50, 0, 1);
    snprintf(a, sizeof a, "%s --method ft-m --sequential --retention", C);
    json_t *cf_seq = eval("cf_ftm_sequential", a, 50, 1, 1);
    resume("cf_ftm_sequential", a, 50, 30);
    snprintf(a, sizeof a, "%s --method ft-m --batch 10", C);
    json_t *cf_batch = eval("cf_ftm_batch10", a, 50, 1, 1);
    json_t *kn = eval("knowedit_recent_none", "--data tests/data/eval/knowedit_wiki_recent_50.json --method none", 56, 0, 0);

    // the edits take: ROME with ked's defaults raises the rewrite accuracy and the efficacy score
    if (zr_def) CHECK(stage_val(zr_def, "post", "Edit_Succ") > stage_val(zr_def, "pre", "Edit_Succ"), "ZsRE ROME defaults: no gain");
    if (cr_def)
        CHECK(stage_val(cr_def, "post", "efficacy_score") > stage_val(cr_def, "pre", "efficacy_score"),
              "CounterFact ROME defaults: efficacy score did not rise");
    if (cf_seq) CHECK(json_is_object(json_object_get(json_object_get(cf_seq, "summary"), "post_final")), "post_final summary");
    if (cf_seq) retention_check(cf_seq, 50);
    // batch mode measures pre on the unedited model: the same as every other mode's pre
    if (cf_batch && cr_def)
        CHECK(json_equal(json_object_get(json_object_get(cf_batch, "summary"), "pre"),
                         json_object_get(json_object_get(cr_def, "summary"), "pre")),
              "pre differs between batch and single runs");
    // the CLI's errors
    CHECK(sh("%s eval --model models/TinyStories-656K %s --method nope --out %s/x.json 2>/dev/null", ked_bin, Z, dir) != 0,
          "unknown method accepted");
    CHECK(sh("%s eval --model models/TinyStories-656K %s --method rome --retention --out %s/x.json 2>/dev/null", ked_bin, Z,
             dir) != 0, "--retention without --sequential accepted");
    snprintf(a, sizeof a, "%s --method rome", Z);
    CHECK(sh("%s eval --model models/TinyStories-656K %s --n 49 --out %s/zsre_rome_defaults.json 2>%s/x.err", ked_bin, a,
             dir, dir) != 0, "a file of other settings was overwritten");
    json_decref(zr_yaml); json_decref(zr_def); json_decref(cr_yaml); json_decref(cr_def);
    json_decref(zf_yaml); json_decref(cf_seq); json_decref(cf_batch); json_decref(kn);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    CHECK(system(rm) == 0, "cleanup");
    return test_finish("test_eval_tinystories");
}
