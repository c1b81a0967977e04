// locality.h: the locality check of the editing tests: the unrelated prompts of
// tests/data/edit/locality_prompts.txt (one a line, at most 64) as one right-padded batch, the
// argmax at every position of it, and the share of positions where two argmax maps agree.
// Tests only; include after test.h.
#ifndef KED_TEST_LOCALITY_H
#define KED_TEST_LOCALITY_H

#include "test.h"
#include "ked.h"

typedef struct {
    char *text[64];
    int n;          // prompts read, 0..64
    int *ids, *len; // n rows of T ids, right-padded with 0; each prompt's length in tokens
    int T;          // the longest prompt's length
} test_locality;

// read the prompts and encode them with tok (BOS added) into one batch
static inline void test_locality_read(test_locality *l, const ked_tokenizer *tok) {
    memset(l, 0, sizeof *l);
    FILE *f = fopen("tests/data/edit/locality_prompts.txt", "r");
    char line[512];
    while (f && l->n < 64 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (*line) l->text[l->n++] = strdup(line);
    }
    if (f) fclose(f);
    int *ids[64], n[64];
    ked_error err;
    for (int i = 0; i < l->n; i++) {
        CHECK_OK(ked_tokenizer_encode(tok, l->text[i], strlen(l->text[i]), 1, &ids[i], NULL, &n[i], &err), &err);
        if (n[i] > l->T) l->T = n[i];
    }
    l->ids = calloc((size_t)(l->n > 0 ? l->n : 1) * (size_t)(l->T > 0 ? l->T : 1), sizeof(int));
    l->len = calloc(64, sizeof(int));
    for (int i = 0; i < l->n; i++) {
        memcpy(l->ids + (size_t)i * l->T, ids[i], sizeof(int) * (size_t)n[i]);
        l->len[i] = n[i];
        free(ids[i]);
    }
}

// argmax of m's logits at every valid position of the batch into out (n * T, -1 in padding)
static inline void test_locality_argmax(const test_locality *l, const ked_model *m, int *out) {
    ked_error err;
    ked_run *r = NULL;
    CHECK_OK(ked_run_new(m, l->n, l->T, l->T, 0, &r, &err), &err);
    CHECK_OK(ked_forward(m, r, l->ids, l->n, l->T, l->len, NULL, &err), &err);
    const float *lg = ked_run_logits(r, NULL);
    int V = ked_model_config(m)->vocab;
    for (int b = 0; b < l->n; b++)
        for (int t = 0; t < l->T; t++) {
            int best = -1;
            if (t < l->len[b]) {
                const float *z = lg + ((size_t)b * l->T + t) * V;
                best = 0;
                for (int v = 1; v < V; v++) if (z[v] > z[best]) best = v;
            }
            out[b * l->T + t] = best;
        }
    ked_run_free(r);
}

// the share of valid positions (base >= 0) where two argmax maps agree; 0 when there are none
static inline float test_locality_agreement(const test_locality *l, const int *base, const int *now) {
    int same = 0, n = 0;
    for (int i = 0; i < l->n * l->T; i++)
        if (base[i] >= 0) { n++; same += base[i] == now[i]; }
    return n ? (float)same / n : 0;
}

static inline void test_locality_free(test_locality *l) {
    for (int i = 0; i < l->n; i++) free(l->text[i]);
    free(l->ids);
    free(l->len);
}

#endif
