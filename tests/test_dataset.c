// test_dataset: the editing-data loaders (src/io/dataset.c) on the copied subsets in
// tests/data/eval (and on the full files of /work/shared/data when present): formats detected,
// record and case counts, fields as EasyEdit's scripts map them, empty answers dropped and
// counted, malformed records reported with the file, the record index and the field.
#include <unistd.h>

#include "test.h"
#include "ked.h"

static ked_dataset *load(const char *path, ked_data_format fmt, ked_error *err) {
    ked_dataset *d = NULL;
    if (ked_dataset_load(path, fmt, &d, err)) return NULL;
    return d;
}

static const ked_edit_group *group(const ked_edit_group *g, int n, const char *name) {
    for (int i = 0; i < n; i++) if (!strcmp(g[i].name, name)) return &g[i];
    return NULL;
}

static int streq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) { fputs(text, f); fclose(f); }
}

// the load of `text` must fail with a message holding each of the needles
static void expect_error(const char *dir, const char *text, ked_data_format fmt, const char *n1,
                         const char *n2, const char *n3) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad.json", dir);
    write_file(path, text);
    ked_error err;
    err.msg[0] = 0;
    ked_dataset *d = load(path, fmt, &err);
    CHECK(d == NULL, "%s: loaded", text);
    ked_dataset_free(d);
    CHECK(strstr(err.msg, path) != NULL, "no path in '%s'", err.msg);
    CHECK(!n1 || strstr(err.msg, n1), "'%s' not in '%s'", n1, err.msg);
    CHECK(!n2 || strstr(err.msg, n2), "'%s' not in '%s'", n2, err.msg);
    CHECK(!n3 || strstr(err.msg, n3), "'%s' not in '%s'", n3, err.msg);
}

int main(void) {
    ked_error err;
    ked_dataset *d;

    // ZsRE (EasyEdit's eval file with portability)
    d = load("tests/data/eval/zsre_eval_50.json", KED_DATA_AUTO, &err);
    CHECK(d != NULL, "%s", err.msg);
    if (d) {
        CHECK(ked_dataset_format(d) == KED_DATA_ZSRE, "format %d", ked_dataset_format(d));
        CHECK(ked_dataset_n(d) == 50 && ked_dataset_n_records(d) == 50, "%d", ked_dataset_n(d));
        CHECK(ked_dataset_n_skipped(d) == 0 && ked_dataset_n_dropped(d) == 0, "drops");
        const ked_case *c = ked_dataset_case(d, 0);
        CHECK(streq(c->req.prompt, "When was the inception of IAAF Combined Events Challenge?"), "%s", c->req.prompt);
        CHECK(streq(c->req.target_new, "2006") && streq(c->req.ground_truth, "1998"), "targets");
        CHECK(streq(c->req.subject, "IAAF Combined Events Challenge"), "%s", c->req.subject);
        CHECK(c->n_rephrases == 1 && streq(c->req.rephrase, "When was the IAAF Combined Events Challenge launched?"), "rephrase");
        const ked_edit_group *g = group(c->req.locality, c->req.n_locality, "neighborhood");
        CHECK(g && g->n == 1 && streq(g->prompts[0], "nq question: what is the name of the last episode of spongebob") &&
              streq(g->ground_truth[0], "The String"), "locality");
        g = group(c->req.portability, c->req.n_portability, "one_hop");
        CHECK(g && g->n == 1 && streq(g->ground_truth[0], "Athletics"), "portability");
        CHECK(c->counterfact == 0, "zsre has no CounterFact scores");
        CHECK(ked_dataset_case(d, 50) == NULL && ked_dataset_case(d, -1) == NULL, "range");
    }
    ked_dataset_free(d);

    // CounterFact, ROME schema
    d = load("tests/data/eval/counterfact_50.json", KED_DATA_AUTO, &err);
    CHECK(d != NULL, "%s", err.msg);
    if (d) {
        CHECK(ked_dataset_format(d) == KED_DATA_COUNTERFACT, "format %d", ked_dataset_format(d));
        CHECK(ked_dataset_n(d) == 50, "%d", ked_dataset_n(d));
        const ked_case *c = ked_dataset_case(d, 0);
        CHECK(streq(c->req.prompt, "Spike Hughes originates from"), "%s", c->req.prompt);
        CHECK(streq(c->req.target_new, "Philadelphia") && streq(c->req.ground_truth, "London"), "targets");
        CHECK(c->n_paraphrases == 2 && c->n_rephrases == 1 &&
              streq(c->req.rephrase, "Incumbent Mayor Jim Suttle sought a second term in office. Spike Hughes is native to"),
              "paraphrases");
        const ked_edit_group *g = group(c->req.locality, c->req.n_locality, "neighborhood");
        CHECK(g && g->n == 10 && streq(g->prompts[0], "Max Mosley originates from") && streq(g->ground_truth[9], "London"),
              "neighbourhood");
        g = group(c->req.portability, c->req.n_portability, "one_hop");
        CHECK(g && g->n == 1 && streq(g->ground_truth[0], "Cheesesteaks"), "portability");
        CHECK(c->counterfact == 1, "CounterFact scores");
    }
    ked_dataset_free(d);

    // CounterFact, EasyEdit schema (needs --format or detection by fields)
    d = load("tests/data/eval/counterfact_edit_50.json", KED_DATA_AUTO, &err);
    CHECK(d != NULL, "%s", err.msg);
    if (d) {
        CHECK(ked_dataset_format(d) == KED_DATA_COUNTERFACT_EE, "format %d", ked_dataset_format(d));
        const ked_case *c = ked_dataset_case(d, 0);
        CHECK(streq(c->req.prompt, "The mother tongue of Danielle Darrieux is") && streq(c->req.target_new, "English") &&
              streq(c->req.ground_truth, "French"), "fields");
        CHECK(streq(c->req.rephrase, "Where Danielle Darrieux is from, people speak the language of"), "rephrase");
        const ked_edit_group *g = group(c->req.locality, c->req.n_locality, "neighborhood");
        CHECK(g && g->n == 1 && streq(g->prompts[0], "Michel Rocard is a native speaker of") &&
              streq(g->ground_truth[0], "French"), "locality");
        CHECK(c->counterfact == 1 && c->n_paraphrases == 1, "CounterFact scores");
    }
    ked_dataset_free(d);

    // KnowEdit: ZsRE (ground truth lists, "Reasoning" -> "reasoning")
    d = load("tests/data/eval/knowedit_zsre_50.json", KED_DATA_AUTO, &err);
    CHECK(d != NULL, "%s", err.msg);
    if (d) {
        CHECK(ked_dataset_format(d) == KED_DATA_KNOWEDIT, "format %d", ked_dataset_format(d));
        const ked_case *c = ked_dataset_case(d, 0);
        CHECK(streq(c->req.ground_truth, "Aspidoceratidae") && streq(c->req.target_new, "Noctuidae"), "targets");
        const ked_edit_group *g = group(c->req.locality, c->req.n_locality, "Relation_Specificity");
        CHECK(g && g->n == 2 && streq(g->ground_truth[1], "genus"), "locality");
        g = group(c->req.portability, c->req.n_portability, "reasoning");
        CHECK(g && g->n == 1 && streq(g->ground_truth[0], "Owlet moths"), "portability reasoning");
        CHECK(c->counterfact == 0, "no CounterFact scores for KnowEdit");
    }
    ked_dataset_free(d);
    // KnowEdit wiki_counterfact: 2 empty answers dropped; wiki_recent: 9 (lists of lists, [[], [..]])
    d = load("tests/data/eval/knowedit_wiki_counterfact_50.json", KED_DATA_KNOWEDIT, &err);
    CHECK(d && ked_dataset_n(d) == 52 && ked_dataset_n_dropped(d) == 2, "%s", d ? "counts" : err.msg);
    ked_dataset_free(d);
    d = load("tests/data/eval/knowedit_wiki_recent_50.json", KED_DATA_AUTO, &err);
    CHECK(d && ked_dataset_n(d) == 56 && ked_dataset_n_dropped(d) == 9, "%s", d ? "counts" : err.msg);
    if (d) {
        const ked_case *c = ked_dataset_case(d, 3); // Alfhild Tamm: 8 locality prompts, the award's answer [[], [..]]
        const ked_edit_group *g = group(c->req.locality, c->req.n_locality, "Relation_Specificity");
        CHECK(c->req.ground_truth == NULL, "wiki_recent has no ground truth");
        CHECK(g && g->n == 7 && streq(g->ground_truth[0], "Klas Oscar Sebastian Tamm") &&
              streq(g->ground_truth[2], "Tveta f\xc3\xb6rsamling"), "reduced to the first string, empty dropped");
        CHECK(c->req.n_portability == 0, "empty portability");
    }
    ked_dataset_free(d);

    // the full files, when this machine has them
    struct { const char *path; int records, cases, dropped; ked_data_format f; } full[] = {
        {"/work/shared/data/easyedit/zsre_mend_eval_portability_gpt4.json", 1037, 1037, 0, KED_DATA_ZSRE},
        {"/work/shared/data/easyedit/counterfact_portability_gpt4.json", 1031, 1031, 0, KED_DATA_COUNTERFACT},
        {"/work/shared/data/easyedit/counterfact-edit.json", 10000, 10000, 0, KED_DATA_COUNTERFACT_EE},
        {"/work/shared/data/easyedit/zsre_mend_train-1k.json", 1000, 998, 0, KED_DATA_ZSRE}, // 2 with alt ""
        {"/work/shared/data/knowedit/ZsRE-test-all.json", 1301, 1301, 0, KED_DATA_KNOWEDIT},
        {"/work/shared/data/knowedit/wiki_counterfact_train_cf.json", 1428, 1428, 2, KED_DATA_KNOWEDIT},
        {"/work/shared/data/knowedit/wiki_recent_recent_train.json", 570, 570, 9, KED_DATA_KNOWEDIT},
    };
    for (size_t i = 0; i < sizeof full / sizeof full[0]; i++) {
        if (access(full[i].path, R_OK)) { printf("skip %s (absent)\n", full[i].path); continue; }
        d = load(full[i].path, KED_DATA_AUTO, &err);
        CHECK(d != NULL, "%s", err.msg);
        if (!d) continue;
        CHECK(ked_dataset_format(d) == full[i].f && ked_dataset_n_records(d) == full[i].records &&
                  ked_dataset_n(d) == full[i].cases && ked_dataset_n_dropped(d) == full[i].dropped,
              "%s: format %d, %d records, %d cases, %d dropped", full[i].path, ked_dataset_format(d),
              ked_dataset_n_records(d), ked_dataset_n(d), ked_dataset_n_dropped(d));
        ked_dataset_free(d);
    }

    // hand-made files: an empty target is skipped, empty answers dropped, malformed records named
    char dir[] = "/tmp/ked_test_dataset_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[512];
    snprintf(path, sizeof path, "%s/small.json", dir);
    write_file(path,
               "[{\"subject\": \"A\", \"src\": \"Who is A?\", \"alt\": \"B\", \"answers\": [\"C\"], \"rephrase\": \"A is?\","
               " \"loc\": \"nq question: x\", \"loc_ans\": \"\"},"
               " {\"subject\": \"D\", \"src\": \"Who is D?\", \"alt\": \"\", \"answers\": [], \"rephrase\": \"D?\","
               " \"loc\": \"nq question: y\", \"loc_ans\": \"z\"},"
               " {\"subject\": \"E\", \"src\": \"Who is E?\", \"alt\": \"F\", \"answers\": [], \"loc\": \"q\", \"loc_ans\": \"r\"}]");
    d = load(path, KED_DATA_AUTO, &err);
    CHECK(d != NULL, "%s", err.msg);
    if (d) {
        CHECK(ked_dataset_n_records(d) == 3 && ked_dataset_n(d) == 2 && ked_dataset_n_skipped(d) == 1 &&
                  ked_dataset_n_dropped(d) == 1,
              "records %d cases %d skipped %d dropped %d", ked_dataset_n_records(d), ked_dataset_n(d),
              ked_dataset_n_skipped(d), ked_dataset_n_dropped(d));
        const ked_case *c = ked_dataset_case(d, 0);
        CHECK(c->record == 0 && c->req.n_locality == 0 && streq(c->req.ground_truth, "C"), "case 0");
        c = ked_dataset_case(d, 1);
        CHECK(c->record == 2 && c->req.ground_truth == NULL && c->n_rephrases == 0 && c->req.rephrase == NULL, "case 1");
    }
    ked_dataset_free(d);
    expect_error(dir, "[{\"subject\": \"A\", \"src\": \"A?\", \"alt\": \"B\"}, {\"subject\": \"A\", \"src\": \"A?\"},"
                      " {\"subject\": \"A\", \"src\": \"A?\", \"alt\": 5}]",
                 KED_DATA_AUTO, "record 1", "\"alt\"", "missing");
    expect_error(dir, "[{\"subject\": \"A\", \"src\": \"A?\", \"alt\": \"B\"}, {\"subject\": \"A\", \"src\": \"A?\", \"alt\": 5}]",
                 KED_DATA_AUTO, "record 1", "\"alt\"", "a string");
    expect_error(dir, "[{\"subject\": \"A\", \"src\": \"A?\", \"alt\": \"B\"}, 7]", KED_DATA_AUTO, "record 1", "object", NULL);
    expect_error(dir, "[{\"subject\": \"Z\", \"src\": \"A?\", \"alt\": \"B\"}]", KED_DATA_AUTO, "record 0", "subject", "substring");
    expect_error(dir, "[{\"subject\": \"A\", \"src\": \"A?\", \"alt\": \"B\",", KED_DATA_AUTO, "line 1", NULL, NULL);
    expect_error(dir, "{\"subject\": \"A\"}", KED_DATA_AUTO, "list of records", NULL, NULL);
    expect_error(dir, "[{\"question\": \"A\"}]", KED_DATA_AUTO, "record 0", "unknown format", NULL);
    expect_error(dir, "[{\"subject\": \"A\", \"src\": \"A?\", \"alt\": \"B\", \"portability\": {\"New Question\": \"q\"}}]",
                 KED_DATA_AUTO, "record 0", "portability.New Answer", NULL);
    expect_error(dir, "[{\"case_id\": 0, \"requested_rewrite\": {\"prompt\": \"{} is\", \"subject\": \"A\", \"target_new\": \"B\"}}]",
                 KED_DATA_AUTO, "record 0", "requested_rewrite.target_new", NULL);
    expect_error(dir, "[{\"prompt\": \"A is\", \"subject\": \"A\", \"target_new\": \"B\", \"locality\": {\"RS\": [{\"prompt\": \"A\","
                      " \"ground_truth\": 3}]}}]",
                 KED_DATA_AUTO, "record 0", "locality.RS[0].ground_truth", NULL);
    // a forced format that does not fit the file
    err.msg[0] = 0;
    d = load("tests/data/eval/counterfact_50.json", KED_DATA_ZSRE, &err);
    CHECK(d == NULL && strstr(err.msg, "record 0") && strstr(err.msg, "\"src\""), "%s", err.msg);
    ked_dataset_free(d);
    d = load("tests/data/eval/no_such_file.json", KED_DATA_AUTO, &err);
    CHECK(d == NULL && err.status == KED_ERR_IO, "%s", err.msg);
    CHECK(ked_data_format_parse("counterfact-ee") == KED_DATA_COUNTERFACT_EE && ked_data_format_parse("x") == -1, "names");
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    CHECK(system(path) == 0, "cleanup");
    return test_finish("test_dataset");
}
