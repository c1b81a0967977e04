// test_tokenizer_split.c: the split patterns of byte-level tokenizers through PCRE2 (Unicode
// classes, case-insensitive groups, lookahead) against Debian's python3-regex, match for match in
// bytes on the whole corpus: GPT-2's pattern (also GPT-J's and GPT-NeoX's), Qwen2's, LLaMA-3's.
// Fixtures: tests/data/tokenizer/split_*.txt from tests/ref/tok_split_ref.py.
#include "test.h"
#include "test_tokenizer_corpus.h"
#include "tokenizer/tok_internal.h"

#define D "tests/data/tokenizer/"

static void check_pattern(const char *name, const char *pattern, tc_corpus *c) {
    char path[256], why[300];
    snprintf(path, sizeof path, D "split_%s.txt", name);
    size_t len;
    char *ref = tc_read_all(path, &len);
    CHECK(ref != NULL, "%s", path);
    if (!ref) return;
    ked_error err;
    ked_tokenizer *t = tok_new(1, &err);
    t->pre = calloc(1, sizeof *t->pre);
    t->n_pre = 1;
    t->pre[0].type = TOK_P_SPLIT;
    t->pre[0].behavior = TOK_B_ISOLATED;
    t->pre[0].re = tok_compile_regex(pattern, strlen(pattern), 0, why, sizeof why);
    CHECK(t->pre[0].re != NULL, "%s: %s", name, why);
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    tok_nstr ns = {0};
    int equal = 0, shown = 0;
    char *line = ref;
    for (int i = 0; i < c->n && t->pre[0].re; i++) {
        char *e = strchr(line, '\n');
        if (!e) break;
        *e = 0;
        tok_nstr_from(&ns, c->s[i], c->len[i], 0, 0);
        tok_range *r = NULL;
        size_t nr = 0;
        CHECK_OK(tok_pretokenize(t, &ns, &r, &nr, md, &err), &err);
        char got[65536];
        size_t gl = 0;
        got[0] = 0;
        for (size_t k = 0; k < nr && gl + 40 < sizeof got; k++)
            gl += (size_t)snprintf(got + gl, sizeof got - gl, k ? " %zu:%zu" : "%zu:%zu",
                                   r[k].start, r[k].end);
        if (!strcmp(got, line)) equal++;
        else if (shown++ < 3)
            fprintf(stderr, "  %s: line %d: \"%.60s\"\n    ked: %.200s\n    ref: %.200s\n", name,
                    i + 1, c->s[i], got, line);
        free(r);
        line = e + 1;
    }
    printf("%-8s %d / %d strings split exactly as python3-regex\n", name, equal, c->n);
    CHECK(equal == c->n, "%s: %d strings split differently", name, c->n - equal);
    tok_nstr_free(&ns);
    pcre2_match_data_free(md);
    ked_tokenizer_free(t);
    free(ref);
}

int main(void) {
    tc_corpus c;
    if (tc_load_corpus(D "corpus.txt", &c) != 0) {
        CHECK(0, "corpus");
        return test_finish("test_tokenizer_split");
    }
    size_t len;
    char *pats = tc_read_all(D "split_patterns.txt", &len);
    CHECK(pats != NULL, "split_patterns.txt");
    // the built-in pattern of ByteLevel pre-tokenizers is GPT-2's
    CHECK(pats && strstr(pats, tok_gpt2_pattern) != NULL,
          "tok_gpt2_pattern differs from the reference");
    int n = 0;
    for (char *line = pats; pats && *line;) {
        char *e = strchr(line, '\n'), *tab = strchr(line, '\t');
        if (!e || !tab) break;
        *e = 0;
        *tab = 0;
        check_pattern(line, tab + 1, &c);
        n++;
        line = e + 1;
    }
    CHECK(n == 3, "%d patterns", n);
    free(pats);
    tc_free_corpus(&c);
    return test_finish("test_tokenizer_split");
}
