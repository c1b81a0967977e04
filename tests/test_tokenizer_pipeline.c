// test_tokenizer_pipeline.c: the parts of the tokenizer.json pipeline that the reference corpora
// do not reach: Split's five delimiter behaviours (Hugging Face's documented example), Metaspace's
// prepend schemes and split, BOS/EOS from post_processor and tokenizer_config.json, added tokens
// with lstrip/rstrip, and the streaming decoder holding back half a UTF-8 character.
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "tokenizer/tok_internal.h"

#define D "tests/data/tokenizer/"

static char dir[] = "/tmp/ked_tok_pipeXXXXXX";
static const char *g_norm = "null"; // the normalizer of the next tiny() tokenizer

// pre-tokenize text with one Split("-") of the given behaviour; pieces joined by '|'
static void split_case(int behavior, int invert, const char *text, const char *want) {
    ked_error err;
    ked_tokenizer *t = tok_new(1, &err);
    t->pre = calloc(1, sizeof *t->pre);
    t->n_pre = 1;
    t->pre[0].type = TOK_P_SPLIT;
    t->pre[0].behavior = behavior;
    t->pre[0].invert = invert;
    t->pre[0].re = tok_compile_regex("-", 1, 1, NULL, 0);
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    tok_nstr ns = {0};
    tok_nstr_from(&ns, text, strlen(text), 0, 0);
    tok_range *r = NULL;
    size_t n = 0;
    CHECK_OK(tok_pretokenize(t, &ns, &r, &n, md, &err), &err);
    char got[256] = "";
    size_t gl = 0;
    for (size_t k = 0; k < n; k++)
        gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%.*s", k ? "|" : "",
                               (int)(r[k].end - r[k].start), ns.s + r[k].start);
    CHECK(!strcmp(got, want), "behavior %d invert %d: got %s, want %s", behavior, invert, got,
          want);
    free(r);
    tok_nstr_free(&ns);
    pcre2_match_data_free(md);
    ked_tokenizer_free(t);
}

// a tiny tokenizer.json (one id per character of "abc-▁ " plus a few merges) in dir/name/
static ked_tokenizer *tiny(const char *name, const char *pre, const char *post, const char *added,
                           const char *config) {
    char sub[300], path[400];
    snprintf(sub, sizeof sub, "%s/%s", dir, name);
    mkdir(sub, 0700);
    snprintf(path, sizeof path, "%s/tokenizer.json", sub);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"added_tokens\":%s,\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":%s,"
            "\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":"
            "\"always\"},"
            "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,\"<s>\":1,"
            "\"</s>\":2,"
            "\"a\":3,\"b\":4,\"c\":5,\"\\u2581\":6,\"\\u2581a\":7,\"\\u2581b\":8,\"ab\":9,\"<mask>"
            "\":10},"
            "\"merges\":[\"\\u2581 a\",\"\\u2581 b\",\"a b\"]}}",
            added ? added : "[]", g_norm, pre ? pre : "null", post ? post : "null");
    fclose(f);
    if (config) {
        snprintf(path, sizeof path, "%s/tokenizer_config.json", sub);
        f = fopen(path, "w");
        fputs(config, f);
        fclose(f);
    }
    ked_tokenizer *t = NULL;
    ked_error err;
    CHECK_OK(ked_tokenizer_load(sub, &t, &err), &err);
    return t;
}

static void expect(ked_tokenizer *t, const char *what, const char *text, int add_special,
                   const int *want, int nw) {
    if (!t) return;
    ked_error err;
    int *ids = NULL, n = 0;
    ked_span *sp = NULL;
    CHECK_OK(ked_tokenizer_encode(t, text, strlen(text), add_special, &ids, &sp, &n, &err), &err);
    int same = n == nw;
    for (int k = 0; same && k < n; k++) same = ids[k] == want[k];
    if (!same) {
        fprintf(stderr, "  %s: \"%s\":", what, text);
        for (int k = 0; k < n; k++) fprintf(stderr, " %d", ids[k]);
        fprintf(stderr, "\n");
    }
    CHECK(same, "%s: ids differ", what);
    free(ids);
    free(sp);
}

int main(void) {
    // Hugging Face's documentation of SplitDelimiterBehavior, delimiter '-'
    const char *s = "the-final--countdown";
    split_case(TOK_B_REMOVED, 0, s, "the|final|countdown");
    split_case(TOK_B_ISOLATED, 0, s, "the|-|final|-|-|countdown");
    split_case(TOK_B_PREV, 0, s, "the-|final-|-|countdown");
    split_case(TOK_B_NEXT, 0, s, "the|-final|-|-countdown");
    split_case(TOK_B_CONTIGUOUS, 0, s, "the|-|final|--|countdown");
    split_case(TOK_B_REMOVED, 1, s, "-|-|-");
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return test_finish("test_tokenizer_pipeline");
    }

    // Metaspace: always / first / never, split on U+2581
    const char *ms_always = "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_"
                            "scheme\":\"always\",\"split\":true}";
    const char *ms_never = "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":"
                           "\"never\",\"split\":false}";
    const char *ms_first = "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":"
                           "\"first\",\"split\":true}";
    ked_tokenizer *t = tiny("always", ms_always, NULL, NULL, NULL);
    expect(t, "metaspace always", "ab b", 0, (int[]){7, 4, 8},
           3); // ▁a b ▁b (split: "▁ab" never merges to one)
    expect(t, "metaspace always", " a", 0, (int[]){7}, 1); // a leading space is the U+2581
    char *text = NULL;
    ked_error err;
    if (t) {
        CHECK_OK(ked_tokenizer_decode(t, (int[]){7, 4, 8}, 3, 1, &text, &err), &err);
        CHECK(text && !strcmp(text, "ab b"), "metaspace decode: \"%s\"", text ? text : "");
        free(text);
    }
    ked_tokenizer_free(t);
    t = tiny("never", ms_never, NULL, NULL, NULL);
    expect(t, "metaspace never", "ab b", 0, (int[]){9, 8}, 2); // ab ▁b
    ked_tokenizer_free(t);
    // first: prepended only to the stretch at the start of the text, not after an added token
    t = tiny("first", ms_first, NULL, "[{\"id\":10,\"content\":\"<mask>\",\"special\":true}]",
             NULL);
    expect(t, "metaspace first", "a<mask>a", 0, (int[]){7, 10, 3}, 3);
    ked_tokenizer_free(t);

    // BOS and EOS from TemplateProcessing; then tokenizer_config.json overrides it
    const char *tp =
        "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_"
        "id\":0}},"
        "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</"
        "s>\",\"type_id\":0}}],"
        "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]},"
        "\"</s>\":{\"id\":\"</s>\",\"ids\":[2],\"tokens\":[\"</s>\"]}}}";
    t = tiny("template", ms_always, tp, NULL, NULL);
    expect(t, "template bos+eos", "a", 1, (int[]){1, 7, 2}, 3);
    expect(t, "template, no special", "a", 0, (int[]){7}, 1);
    if (t) {
        int *ids = NULL, n = 0;
        ked_span *sp = NULL;
        CHECK_OK(ked_tokenizer_encode(t, "a", 1, 1, &ids, &sp, &n, &err), &err);
        CHECK(n == 3 && sp[0].start == 0 && sp[0].end == 0 && sp[2].start == 1 && sp[2].end == 1,
              "BOS/EOS spans are empty, at 0 and at the end");
        free(ids);
        free(sp);
    }
    ked_tokenizer_free(t);
    t = tiny("config", ms_always, tp, NULL,
             "{\"add_bos_token\": false, \"add_eos_token\": true, \"eos_token\": {\"content\": "
             "\"</s>\"}}");
    expect(t, "config eos only", "a", 1, (int[]){7, 2}, 2);
    if (t)
        CHECK(ked_tokenizer_bos(t) == 1 && ked_tokenizer_eos(t) == 2, "bos %d eos %d",
              ked_tokenizer_bos(t), ked_tokenizer_eos(t));
    ked_tokenizer_free(t);

    // added tokens with lstrip / rstrip eat the spaces beside them
    t = tiny(
        "strip", ms_never, NULL,
        "[{\"id\":10,\"content\":\"<mask>\",\"special\":true,\"lstrip\":true,\"rstrip\":true}]",
        NULL);
    expect(t, "lstrip/rstrip", "a <mask> b", 0, (int[]){3, 10, 4}, 3);
    expect(t, "no strip needed", "a<mask>b", 0, (int[]){3, 10, 4}, 3);
    ked_tokenizer_free(t);

    // normalizers: Replace with a Regex, Lowercase, Strip, then Prepend + Replace; spans still
    // point into the original text
    g_norm = "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Strip\",\"strip_left\":true,"
             "\"strip_right\":true},{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" "
             "{2,}\"},\"content\":\" \"},"
             "{\"type\":\"Lowercase\"},{\"type\":\"NFKC\"},{\"type\":\"Prepend\",\"prepend\":"
             "\"\u2581\"},"
             "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"}]}";
    t = tiny("norm", NULL, NULL, NULL, NULL);
    expect(t, "normalizers", "  A   B ", 0, (int[]){7, 8}, 2); // "▁a▁b"
    if (t) {
        int *ids = NULL, n = 0;
        ked_span *sp = NULL;
        CHECK_OK(ked_tokenizer_encode(t, "  A   B ", 8, 0, &ids, &sp, &n, &err), &err);
        CHECK(n == 2 && sp[0].start == 2 && sp[0].end == 3 && sp[1].start == 3 && sp[1].end == 7,
              "normalised spans: [%zu, %zu) [%zu, %zu)", n > 0 ? sp[0].start : 0,
              n > 0 ? sp[0].end : 0, n > 1 ? sp[1].start : 0, n > 1 ? sp[1].end : 0);
        free(ids);
        free(sp);
    }
    ked_tokenizer_free(t);
    g_norm = "null";
    // Whitespace and WhitespaceSplit pre-tokenizers, Digits
    t = tiny("ws", "{\"type\":\"WhitespaceSplit\"}", NULL, NULL, NULL);
    expect(t, "WhitespaceSplit", "ab  c", 0, (int[]){9, 5}, 2);
    ked_tokenizer_free(t);
    t = tiny("ws2",
             "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Whitespace\"},"
             "{\"type\":\"Digits\",\"individual_digits\":true}]}",
             NULL, NULL, NULL);
    expect(t, "Whitespace", "ab  c", 0, (int[]){9, 5}, 2);
    ked_tokenizer_free(t);

    // the streaming decoder holds back half a character: 😀 is four byte-fallback tokens
    t = NULL;
    CHECK_OK(ked_tokenizer_load(D "vicuna-llama", &t, &err), &err);
    if (t) {
        int *ids = NULL, n = 0;
        CHECK_OK(ked_tokenizer_encode(t, "x\xf0\x9f\x98\x80y", 6, 0, &ids, NULL, &n, &err), &err);
        ked_detok *d = NULL;
        CHECK_OK(ked_detok_new(t, &d, &err), &err);
        char out[64] = "";
        int empties = 0;
        for (int k = 0; k < n && d; k++) {
            char *p = NULL;
            CHECK_OK(ked_detok_push(d, ids[k], &p, &err), &err);
            if (p && !*p) empties++;
            if (p) strncat(out, p, sizeof out - strlen(out) - 1);
            free(p);
        }
        char *p = NULL;
        CHECK_OK(ked_detok_flush(d, &p, &err), &err);
        CHECK(p && !*p, "nothing left at flush");
        free(p);
        CHECK(!strcmp(out, "x\xf0\x9f\x98\x80y"), "streamed \"%s\"", out);
        CHECK(empties >= 3, "three pushes hold back bytes of the emoji (%d empty)", empties);
        // an unfinished character at the end comes out as U+FFFD at flush
        int b0 = ked_tokenizer_token_id(t, "<0xF0>");
        CHECK(b0 >= 0, "<0xF0> in the vocabulary");
        ked_detok_free(d);
        d = NULL;
        CHECK_OK(ked_detok_new(t, &d, &err), &err);
        CHECK_OK(ked_detok_push(d, b0, &p, &err), &err);
        CHECK(p && !*p, "held back");
        free(p);
        CHECK_OK(ked_detok_flush(d, &p, &err), &err);
        CHECK(p && !strcmp(p, "\xef\xbf\xbd"), "U+FFFD at flush");
        free(p);
        ked_detok_free(d);
        free(ids);
        ked_tokenizer_free(t);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "rm");
    return test_finish("test_tokenizer_pipeline");
}
