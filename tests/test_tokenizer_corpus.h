// test_tokenizer_corpus.h: reading the tokenizer test fixtures of tests/data/tokenizer/:
// corpus files (one escaped string per line, see tests/ref/tok_common.py) and id files (one
// line of space-separated ids per corpus line), written once by the scripts in tests/ref/.
#ifndef KED_TEST_TOKENIZER_CORPUS_H
#define KED_TEST_TOKENIZER_CORPUS_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char **s;
    size_t *len;
    int n;
} tc_corpus;

typedef struct {
    int **ids;
    int *n_ids;
    int n;
} tc_ids;

static inline char *tc_read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

static inline int tc_hex(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static inline int tc_load_corpus(const char *path, tc_corpus *c) {
    size_t n;
    char *b = tc_read_all(path, &n);
    if (!b) return -1;
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += b[i] == '\n';
    c->s = calloc((size_t)lines + 1, sizeof *c->s);
    c->len = calloc((size_t)lines + 1, sizeof *c->len);
    c->n = 0;
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && b[e] != '\n') e++;
        char *o = malloc(e - i + 1);
        size_t ol = 0;
        for (size_t k = i; k < e; k++) {
            if (b[k] == '\\' && k + 1 < e) {
                char x = b[k + 1];
                if (x == 'n') {
                    o[ol++] = '\n';
                    k++;
                    continue;
                }
                if (x == 'r') {
                    o[ol++] = '\r';
                    k++;
                    continue;
                }
                if (x == 't') {
                    o[ol++] = '\t';
                    k++;
                    continue;
                }
                if (x == '\\') {
                    o[ol++] = '\\';
                    k++;
                    continue;
                }
                if (x == 'x' && k + 3 < e) {
                    o[ol++] = (char)(tc_hex(b[k + 2]) * 16 + tc_hex(b[k + 3]));
                    k += 3;
                    continue;
                }
            }
            o[ol++] = b[k];
        }
        o[ol] = 0;
        c->s[c->n] = o;
        c->len[c->n] = ol;
        c->n++;
        i = e + 1;
    }
    free(b);
    return 0;
}

static inline void tc_free_corpus(tc_corpus *c) {
    for (int i = 0; i < c->n; i++) free(c->s[i]);
    free(c->s);
    free(c->len);
}

static inline int tc_load_ids(const char *path, tc_ids *r) {
    size_t n;
    char *b = tc_read_all(path, &n);
    if (!b) return -1;
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += b[i] == '\n';
    r->ids = calloc((size_t)lines + 1, sizeof *r->ids);
    r->n_ids = calloc((size_t)lines + 1, sizeof *r->n_ids);
    r->n = 0;
    char *p = b;
    while (*p) {
        char *e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        int cnt = 0;
        for (char *q = p; q < e; q++) cnt += (*q == ' ');
        int *ids = malloc(sizeof(int) * (size_t)(cnt + 2));
        int k = 0;
        char *q = p;
        while (q < e) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            ids[k++] = (int)v;
            q = end;
        }
        r->ids[r->n] = ids;
        r->n_ids[r->n] = k;
        r->n++;
        p = *e ? e + 1 : e;
    }
    free(b);
    return 0;
}

static inline void tc_free_ids(tc_ids *r) {
    for (int i = 0; i < r->n; i++) free(r->ids[i]);
    free(r->ids);
    free(r->n_ids);
}

static inline int tc_same(const int *a, int na, const int *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, sizeof(int) * (size_t)na) == 0);
}

static inline void tc_print_ids(const char *what, const int *a, int n) {
    fprintf(stderr, "    %s:", what);
    for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", a[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}
#endif
