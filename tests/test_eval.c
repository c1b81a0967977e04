// test_eval: the evaluation's metrics on hand-made cases (teacher-forced token accuracy and NLL
// against a direct forward, locality against pre-edit predictions, n-gram entropy against
// hand-computed values, the Treebank word tokenizer on tricky strings, the summary's means) and
// small runs of ked_eval_run on models/TinyStories-656K with FT (single, sequential, batch):
// "pre" never depends on the mode, and a run resumed from a partial file writes the same bytes.
#include <unistd.h>

#include "test.h"
#include "ked.h"
#include "eval/eval.h"

static const char *MODEL = "models/TinyStories-656K";

static void check_teacher_forced(const ked_model *m, const ked_tokenizer *tok, const char *prompt, const char *target) {
    ked_error err;
    double acc = -1, nll = -1;
    int *pred = NULL, *lab = NULL, k = 0;
    CHECK_OK(ked_eval_teacher_forced(m, tok, prompt, target, &acc, &nll, &pred, &lab, &k, &err), &err);
    // by hand: encode, one full forward, argmax and log-softmax at the target's positions
    char text[512];
    snprintf(text, sizeof text, "%s %s", prompt, target[0] == ' ' ? target + 1 : target);
    int *p = NULL, *ids = NULL, np = 0, n = 0;
    CHECK_OK(ked_tokenizer_encode(tok, prompt, strlen(prompt), 1, &p, NULL, &np, &err), &err);
    CHECK_OK(ked_tokenizer_encode(tok, text, strlen(text), 1, &ids, NULL, &n, &err), &err);
    int kk = n > np ? n - np : 0; // EasyEdit's count: labels = ids[|prompt ids|:], aligned or not
    CHECK(k == kk, "k %d, n %d, np %d", k, n, np);
    int prefix = n > np;
    for (int i = 0; prefix && i < np; i++) prefix = p[i] == ids[i];
    { // aligned targets: the editing core's accuracy (prompt ids + target ids), always
        double acc_a = -1, acc_u = -1;
        float acc_e = -1;
        int ka = 0;
        CHECK_OK(eval_teacher_forced(m, tok, prompt, target, 1, &acc_a, NULL, NULL, NULL, &ka, &err), &err);
        CHECK_OK(eval_teacher_forced(m, tok, prompt, target, 0, &acc_u, NULL, NULL, NULL, NULL, &err), &err);
        CHECK_OK(ked_edit_token_accuracy(m, tok, prompt, target, &acc_e, NULL, NULL, &err), &err);
        CHECK(fabs(acc_e - acc_a) < 1e-6 && ka > 0, "aligned %g vs ked_edit_token_accuracy %g", acc_a, acc_e);
        CHECK(!prefix || acc_a == acc_u || (isnan(acc_a) && isnan(acc_u)), "aligned differs on a prefix prompt");
        printf("  aligned: %d target tokens, acc %.4f\n", ka, acc_a);
    }
    if (k == 0) {
        CHECK(isnan(acc) && isnan(nll), "no target token: acc %g nll %g", acc, nll);
        printf("  \"%s\" + \"%s\": the joint text has no more tokens than the prompt: acc NaN (dropped)\n", prompt, target);
        free(p); free(ids); free(pred); free(lab);
        return;
    }
    ked_run *r = NULL;
    CHECK_OK(ked_run_new(m, 1, n, n, 0, &r, &err), &err);
    ked_forward_opts o = ked_forward_defaults();
    CHECK_OK(ked_forward(m, r, ids, 1, n, NULL, &o, &err), &err);
    const float *z = ked_run_logits(r, NULL);
    int V = ked_model_config(m)->vocab, good = 0;
    double s = 0;
    for (int j = 0; j < k && pred && lab; j++) {
        const float *row = z + (size_t)(np - 1 + j) * V;
        int best = 0;
        double lse = 0;
        for (int v = 1; v < V; v++) if (row[v] > row[best]) best = v;
        for (int v = 0; v < V; v++) lse += exp((double)row[v] - row[best]);
        lse = log(lse) + row[best];
        CHECK(pred[j] == best, "%s: position %d: pred %d, argmax %d", prompt, j, pred[j], best);
        CHECK(lab[j] == ids[np + j], "label %d", j);
        good += best == ids[np + j];
        s += lse - row[ids[np + j]];
    }
    CHECK(fabs(acc - (double)good / k) < 1e-12, "acc %g vs %g", acc, (double)good / k);
    CHECK(fabs(nll - s / k) < 1e-4 * (1 + s / k), "nll %g vs %g", nll, s / k);
    if (prefix) { // the editing core's accuracy agrees where the prompt's ids are a prefix
        float acc2 = -1;
        CHECK_OK(ked_edit_token_accuracy(m, tok, prompt, target, &acc2, NULL, NULL, &err), &err);
        CHECK(fabs(acc2 - acc) < 1e-6, "ked_edit_token_accuracy %g vs %g", acc2, acc);
    }
    printf("  \"%s\" + \"%s\": %d target tokens%s, acc %.4f, nll %.4f\n", prompt, target, k,
           prefix ? "" : " (prompt ids not a prefix: EasyEdit's count-based labels)", acc, nll);
    ked_run_free(r);
    free(p); free(ids); free(pred); free(lab);
}

static void check_tokens(const char *text, const char *const *want, int n_want) {
    ked_error err;
    char **t = NULL;
    int n = 0;
    CHECK_OK(ked_word_tokenize(text, &t, &n, &err), &err);
    int same = n == n_want;
    for (int i = 0; same && i < n; i++) same = !strcmp(t[i], want[i]);
    if (!same) {
        fprintf(stderr, "  tokens of \"%s\":", text);
        for (int i = 0; i < n; i++) fprintf(stderr, " [%s]", t[i]);
        fprintf(stderr, "\n  wanted:");
        for (int i = 0; i < n_want; i++) fprintf(stderr, " [%s]", want[i]);
        fprintf(stderr, "\n");
    }
    CHECK(same, "word_tokenize(\"%s\")", text);
    ked_word_tokens_free(t, n);
}
#define TOKS(text, ...) do { const char *w_[] = {__VA_ARGS__}; check_tokens(text, w_, (int)(sizeof w_ / sizeof *w_)); } while (0)

static int offset_ = 0; // --offset of the next run()

static ked_status run(ked_model *m, ked_tokenizer *tok, ked_dataset *d, const char *method, const ked_hparams *hp,
                      int n, int seq, int batch, const char *out, ked_eval_summary *sum, ked_error *err) {
    ked_eval_opts o = ked_eval_defaults();
    o.offset = offset_;
    o.method = method;
    o.hp = hp;
    o.n = n;
    o.sequential = seq;
    o.batch = batch;
    o.seed = 3;
    o.fluency_len = 40;
    o.out = out;
    o.model_name = "TinyStories-656K";
    o.data_name = "zsre_eval_50.json";
    char *table = NULL;
    ked_status st = ked_eval_run(m, tok, d, &o, sum, &table, err);
    if (!st && table) printf("%s", table);
    free(table);
    return st;
}

int main(void) {
    ked_error err;
    // ---- locality against the pre-edit predictions (KnowEdit's README example: 66.67)
    int a[3] = {29, 234, 334}, b[3] = {29, 234, 333};
    CHECK(fabs(ked_eval_locality(a, b, 3) - 2.0 / 3.0) < 1e-15, "locality %g", ked_eval_locality(a, b, 3));
    CHECK(ked_eval_locality(a, a, 3) == 1.0 && isnan(ked_eval_locality(a, b, 0)), "locality edge cases");
    json_error_t je;
    json_t *pre = json_loads("{\"locality\": {\"nb_output\": [[29, 234, 334], [1, 2]]}}", 0, &je);
    json_t *post = json_loads("{\"locality\": {\"nb_output\": [[29, 234, 333], [1, 2]]}}", 0, &je);
    CHECK_OK(eval_finalize_locality(pre, post, &err), &err);
    json_t *la = json_object_get(json_object_get(post, "locality"), "nb_acc");
    CHECK(json_array_size(la) == 2 && fabs(json_real_value(json_array_get(la, 0)) - 2.0 / 3.0) < 1e-15 &&
              json_real_value(json_array_get(la, 1)) == 1.0,
          "finalize_locality");
    json_decref(pre);
    json_decref(post);

    // ---- n-gram entropy, by hand: 6 distinct words: H2 = log2 5, H3 = 2
    double h = 0;
    CHECK_OK(ked_ngram_entropy("the cat sat on the mat", &h, &err), &err);
    double want = (2.0 / 3.0 * log2(5.0) + 4.0 / 3.0 * 2.0) / 2.0;
    CHECK(fabs(h - want) < 1e-12, "entropy %.15f vs %.15f", h, want);
    // "a b a b a b": bigrams ab x3, ba x2; trigrams aba x2, bab x2
    CHECK_OK(ked_ngram_entropy("a b a b a b", &h, &err), &err);
    want = (2.0 / 3.0 * -(0.6 * log2(0.6) + 0.4 * log2(0.4)) + 4.0 / 3.0 * 1.0) / 2.0;
    CHECK(fabs(h - want) < 1e-12, "entropy %.15f vs %.15f", h, want);
    CHECK_OK(ked_ngram_entropy("one", &h, &err), &err);
    CHECK(h == 0, "one word: %g", h);
    // punctuation is a word: "Hi. Hi." -> [Hi . Hi .]: bigrams (Hi .) x2, (. Hi): H2 = h(2/3,1/3); trigrams 2 distinct
    CHECK_OK(ked_ngram_entropy("Hi. Hi.", &h, &err), &err);
    want = (2.0 / 3.0 * -(2.0 / 3 * log2(2.0 / 3) + 1.0 / 3 * log2(1.0 / 3)) + 4.0 / 3.0 * 1.0) / 2.0;
    CHECK(fabs(h - want) < 1e-12, "entropy %.15f vs %.15f", h, want);

    // ---- the Treebank tokenizer (nltk.word_tokenize's documented outputs)
    TOKS("Good muffins cost $3.88\nin New York.  Please buy me\ntwo of them.\nThanks.",
         "Good", "muffins", "cost", "$", "3.88", "in", "New", "York", ".", "Please", "buy", "me", "two", "of", "them",
         ".", "Thanks", ".");
    TOKS("They'll save and invest more.", "They", "'ll", "save", "and", "invest", "more", ".");
    TOKS("hi, my name can't hello,", "hi", ",", "my", "name", "ca", "n't", "hello", ",");
    TOKS("I cannot go, gonna wanna stay", "I", "can", "not", "go", ",", "gon", "na", "wan", "na", "stay");
    TOKS("She said \"hello\" (twice).", "She", "said", "``", "hello", "''", "(", "twice", ")", ".");
    TOKS("What?! No... 1,000 people: yes; 50% off & more", "What", "?", "!", "No", "...", "1,000", "people", ":", "yes",
         ";", "50", "%", "off", "&", "more");
    TOKS("The children's toys -- red [mostly] -- weren't there.", "The", "children", "'s", "toys", "--", "red", "[",
         "mostly", "]", "--", "were", "n't", "there", ".");
    TOKS("\xe2\x80\x9cQuoted\xe2\x80\x9d text\xe2\x80\x99s end", "\xe2\x80\x9c", "Quoted", "\xe2\x80\x9d", "text",
         "\xe2\x80\x99", "s", "end");
    TOKS("", );

    // ---- the summary's means over a hand-made results list
    const char *res_txt =
        "[{\"pre\": {\"rewrite_acc\": [0.5], \"rephrase_acc\": [0.0, 1.0], \"portability\": {\"a_acc\": [0.0, 1.0]},"
        "  \"locality\": {\"n_output\": [[1]]}, \"fluency\": {\"ngram_entropy\": 5.0},"
        "  \"rewrite_prompts_probs\": [{\"target_new\": 1.0, \"target_true\": 2.0}],"
        "  \"paraphrase_prompts_probs\": [{\"target_new\": 1.0, \"target_true\": 2.0}, {\"target_new\": 3.0, \"target_true\": 2.0}],"
        "  \"neighborhood_prompts_probs\": [{\"target_new\": 3.0, \"target_true\": 1.0}]},"
        "  \"post\": {\"rewrite_acc\": [1.0], \"portability\": {\"a_acc\": [1.0], \"b_acc\": [0.0]},"
        "  \"locality\": {\"n_acc\": [0.5, 1.0]}, \"fluency\": {\"ngram_entropy\": 4.0}}},"
        " {\"pre\": {\"rewrite_acc\": [0.0], \"portability\": {}, \"locality\": {}},"
        "  \"post\": {\"rewrite_acc\": [0.5], \"portability\": {}, \"locality\": {\"n_acc\": [0.0]}, \"fluency\": {\"ngram_entropy\": 6.0}}}]";
    json_t *res = json_loads(res_txt, 0, &je);
    CHECK(res != NULL, "%s", je.text);
    ked_eval_summary s;
    json_t *sj = eval_summary_json(res, &s);
    CHECK(s.n_cases == 2 && s.has_post && !s.has_post_final, "stages");
    CHECK(fabs(s.pre.rewrite.mean - 25) < 1e-12 && fabs(s.post.rewrite.mean - 75) < 1e-12, "Edit_Succ");
    CHECK(fabs(s.pre.rephrase.mean - 50) < 1e-12 && s.pre.rephrase.n == 2, "Rephrase (flattened)");
    CHECK(fabs(s.pre.portability.mean - 50) < 1e-12 && s.pre.portability.n == 1, "Portability pre %g", s.pre.portability.mean);
    CHECK(fabs(s.post.portability.mean - 50) < 1e-12, "Portability post (mean of key means) %g", s.post.portability.mean);
    CHECK(s.pre.locality.n == 0 && fabs(s.post.locality.mean - 37.5) < 1e-12, "Locality %g", s.post.locality.mean);
    CHECK(fabs(s.post.fluency.mean - 500) < 1e-12 && fabs(s.pre.fluency.mean - 500) < 1e-12, "Fluency");
    CHECK(s.pre.es.n == 1 && s.pre.es.mean == 100 && fabs(s.pre.em.mean - 100 * (exp(-1.0) - exp(-2.0))) < 1e-12, "ES/EM");
    CHECK(s.pre.ps.mean == 50 && fabs(s.pre.pm.mean - 100 * ((exp(-1.0) - exp(-2.0)) + (exp(-3.0) - exp(-2.0))) / 2) < 1e-12,
          "PS/PM");
    CHECK(s.pre.ns.mean == 100 && fabs(s.pre.nm.mean - 100 * (exp(-1.0) - exp(-3.0))) < 1e-12, "NS/NM");
    CHECK(s.post.es.n == 0 && isnan(s.post.es.mean), "no probabilities after");
    json_t *pk = json_object_get(json_object_get(json_object_get(sj, "post"), "portability"), "b_acc");
    CHECK(json_is_number(pk) && json_number_value(pk) == 0, "per-key mean");
    json_decref(sj);
    json_decref(res);

    // ---- the model: teacher forcing against a direct forward
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    CHECK_OK(ked_model_load(MODEL, &m, &err), &err);
    CHECK_OK(ked_tokenizer_load(MODEL, &tok, &err), &err);
    if (!m || !tok) return test_finish("test_eval");
    ked_set_threads(1);
    check_teacher_forced(m, tok, "Once upon a time, there was a little girl named", "Lily");
    check_teacher_forced(m, tok, "What university did Watts Humphrey attend?", " University of Michigan");
    check_teacher_forced(m, tok, "nq question: who played desmond doss father in hacksaw ridge", "Hugo Weaving");
    // the model's own greedy continuation as target: accuracy 1 (stories260K, whose tokenizer
    // does not merge across words)
    ked_model *m2 = NULL;
    ked_tokenizer *tok2 = NULL;
    CHECK_OK(ked_model_load("models/stories260K", &m2, &err), &err);
    CHECK_OK(ked_tokenizer_load("models/stories260K", &tok2, &err), &err);
    if (m2 && tok2) {
        check_teacher_forced(m2, tok2, "Once upon a time, there was a little girl named", "Lily");
        const char *prompt = "Once upon a time,";
        int *ids = NULL, n = 0, out[64], n_out = 0;
        CHECK_OK(ked_tokenizer_encode(tok2, prompt, strlen(prompt), 1, &ids, NULL, &n, &err), &err);
        ked_generate_opts go = ked_generate_defaults();
        go.max_new = 6;
        CHECK_OK(ked_generate(m2, ids, n, &go, out, 64, &n_out, NULL, NULL, &err), &err);
        char *cont = NULL, *all = NULL;
        CHECK_OK(ked_tokenizer_decode(tok2, out, n_out, 1, &all, &err), &err);
        if (all && !strncmp(all, prompt, strlen(prompt))) cont = strdup(all + strlen(prompt));
        free(all);
        char text[256];
        snprintf(text, sizeof text, "%s%s", prompt, cont ? cont : "");
        int *j = NULL, nj = 0;
        CHECK_OK(ked_tokenizer_encode(tok2, text, strlen(text), 1, &j, NULL, &nj, &err), &err);
        int same = nj == n_out && cont && cont[0] == ' ';
        for (int i = 0; same && i < nj; i++) same = j[i] == out[i];
        double acc = 0;
        if (same) {
            CHECK_OK(ked_eval_teacher_forced(m2, tok2, prompt, cont, &acc, NULL, NULL, NULL, NULL, &err), &err);
            CHECK(acc == 1.0, "greedy continuation \"%s\": acc %g", cont, acc);
            printf("  greedy continuation \"%s\": acc %g\n", cont, acc);
        }
        CHECK(same, "greedy continuation \"%s\" re-tokenises the same", cont ? cont : "");
        free(ids); free(j); free(cont);
    }
    ked_tokenizer_free(tok2);
    ked_model_free(m2);

    // ---- fluency: a sampled text, deterministic for a seed
    char *t1 = NULL, *t2 = NULL;
    CHECK_OK(eval_fluency_text(m, tok, "Once upon a time", 40, 7, &t1, &err), &err);
    CHECK_OK(eval_fluency_text(m, tok, "Once upon a time", 40, 7, &t2, &err), &err);
    CHECK(t1 && t2 && !strcmp(t1, t2), "fluency text deterministic");
    CHECK(t1 && strstr(t1, "Once upon a time") != NULL, "the prompt is part of the scored text: %s", t1 ? t1 : "");
    printf("  fluency text: %s\n", t1 ? t1 : "");
    free(t1); free(t2);

    // ---- small runs with FT-L (ked's defaults): modes, pre invariance, resume
    ked_dataset *d = NULL;
    CHECK_OK(ked_dataset_load("tests/data/eval/zsre_eval_50.json", KED_DATA_AUTO, &d, &err), &err);
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(m, "ft-l", &hp, &err), &err);
    hp.num_steps = 10;
    char dir[] = "/tmp/ked_test_eval_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char p_none[256], p_single[256], p_seq[256], p_batch[256], p_part[256];
    snprintf(p_none, sizeof p_none, "%s/none.json", dir);
    snprintf(p_single, sizeof p_single, "%s/single.json", dir);
    snprintf(p_seq, sizeof p_seq, "%s/seq.json", dir);
    snprintf(p_batch, sizeof p_batch, "%s/batch.json", dir);
    snprintf(p_part, sizeof p_part, "%s/part.json", dir);
    ked_eval_summary sn, ss, sq, sb;
    CHECK_OK(run(m, tok, d, "none", NULL, 6, 0, 1, p_none, &sn, &err), &err);
    CHECK_OK(run(m, tok, d, "ft-l", &hp, 6, 0, 1, p_single, &ss, &err), &err);
    CHECK_OK(run(m, tok, d, "ft-l", &hp, 6, 1, 1, p_seq, &sq, &err), &err);
    CHECK_OK(run(m, tok, d, "ft-l", &hp, 6, 0, 3, p_batch, &sb, &err), &err);
    CHECK(!sn.has_post && ss.has_post && !ss.has_post_final && sq.has_post_final && sb.has_post, "stages");
    CHECK(ss.post.locality.n == 6 && sq.post_final.locality.n == 6, "locality scored");
    json_t *J[4];
    const char *paths[4] = {p_none, p_single, p_seq, p_batch};
    for (int i = 0; i < 4; i++) {
        J[i] = json_load_file(paths[i], 0, &je);
        CHECK(J[i] != NULL, "%s: %s", paths[i], je.text);
    }
    if (J[0] && J[1] && J[2] && J[3]) {
        for (int c = 0; c < 6; c++) {
            json_t *p0 = json_object_get(json_array_get(json_object_get(J[0], "results"), (size_t)c), "pre");
            for (int i = 1; i < 4; i++)
                CHECK(json_equal(p0, json_object_get(json_array_get(json_object_get(J[i], "results"), (size_t)c), "pre")),
                      "case %d: pre of %s differs from the unedited run's", c, paths[i]);
        }
        json_t *r0 = json_array_get(json_object_get(J[1], "results"), 0);
        const char *keys[] = {"pre", "case_id", "requested_rewrite", "post"};
        for (int i = 0; i < 4; i++) CHECK(json_object_get(r0, keys[i]) != NULL, "results[0] has no %s", keys[i]);
        json_t *po = json_object_get(r0, "post");
        CHECK(json_is_array(json_object_get(po, "rewrite_acc")) && json_is_array(json_object_get(po, "rephrase_acc")) &&
                  json_is_array(json_object_get(json_object_get(po, "locality"), "neighborhood_acc")) &&
                  json_is_array(json_object_get(json_object_get(po, "locality"), "neighborhood_output")) &&
                  json_is_array(json_object_get(json_object_get(po, "portability"), "one_hop_acc")) &&
                  json_is_number(json_object_get(json_object_get(po, "fluency"), "ngram_entropy")),
              "EasyEdit's post layout");
        CHECK(json_object_get(json_array_get(json_object_get(J[2], "results"), 5), "post_final") != NULL, "post_final");
        // the last case's post in sequential mode is taken after the last edit, as post_final
        json_t *l5 = json_array_get(json_object_get(J[2], "results"), 5);
        CHECK(json_equal(json_object_get(l5, "post"), json_object_get(l5, "post_final")), "last post == post_final");
    }
    for (int i = 0; i < 4; i++) json_decref(J[i]);
    // resume: an interrupted file (k results) finished by a new run gives the same bytes
    struct { const char *full; int seq, batch, k; } rs[] = {{p_single, 0, 1, 2}, {p_seq, 1, 1, 4}, {p_seq, 1, 1, 6}, {p_batch, 0, 3, 3}};
    for (int i = 0; i < 4; i++) {
        test_truncate_results(rs[i].full, p_part, rs[i].k);
        ked_eval_summary sr;
        CHECK_OK(run(m, tok, d, "ft-l", &hp, 6, rs[i].seq, rs[i].batch, p_part, &sr, &err), &err);
        char *x = test_slurp(rs[i].full), *y = test_slurp(p_part);
        CHECK(x && y && !strcmp(x, y), "resumed %s after %d cases differs from the uninterrupted run", rs[i].full, rs[i].k);
        free(x); free(y);
    }
    // --offset: cases 2 and 3 alone are cases 2 and 3 of the whole run
    {
        char p_off[256];
        snprintf(p_off, sizeof p_off, "%s/offset.json", dir);
        ked_eval_summary so;
        offset_ = 2;
        CHECK_OK(run(m, tok, d, "none", NULL, 2, 0, 1, p_off, &so, &err), &err);
        offset_ = 0;
        json_t *x = json_load_file(p_off, 0, &je), *y = json_load_file(p_none, 0, &je);
        json_t *rx = json_object_get(x, "results"), *ry = json_object_get(y, "results");
        CHECK(json_array_size(rx) == 2, "offset: %zu results", json_array_size(rx));
        for (size_t i = 0; i < json_array_size(rx); i++) {
            json_t *a1 = json_array_get(rx, i), *b1 = json_array_get(ry, i + 2);
            CHECK(json_integer_value(json_object_get(a1, "ked_record")) == (json_int_t)(i + 2), "offset: record");
            CHECK(json_equal(json_object_get(a1, "pre"), json_object_get(b1, "pre")), "offset: pre of case %zu", i + 2);
        }
        json_decref(x);
        json_decref(y);
    }
    // a file of other settings is not resumed
    ked_eval_summary sx;
    ked_status st = run(m, tok, d, "ft-l", &hp, 5, 0, 1, p_single, &sx, &err);
    CHECK(st == KED_ERR_ARG && strstr(err.msg, "other settings") && strstr(err.msg, "\"n\"") == NULL && strstr(err.msg, "n:"),
          "%s", err.msg);
    ked_dataset_free(d);
    snprintf(p_part, sizeof p_part, "rm -rf '%s'", dir);
    CHECK(system(p_part) == 0, "cleanup");
    ked_tokenizer_free(tok);
    ked_model_free(m);
    return test_finish("test_eval");
}
