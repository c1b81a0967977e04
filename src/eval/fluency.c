// fluency.c: EasyEdit's fluency (easyedit-reference.md §4.5): test_generation_quality samples one
// continuation of the prompt with generate_fast (top-k 5, temperature 1, up to 100 tokens in all,
// the prompt's included, no stop at EOS), decodes it with special tokens, NFKD-normalises it,
// replaces "\n\n" by " " and removes "<|endoftext|>"; compute_n_gram_entropy then weighs the
// entropies (bits) of its word bigram and trigram frequencies: mean(2/3 H_2, 4/3 H_3).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "eval/eval.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// entropy in bits of the n-gram frequencies of toks
static ked_status ngram_h(char **toks, int n_tok, int n, double *h, ked_error *err) {
    *h = 0;
    int m = n_tok - n + 1;
    if (m <= 0) return KED_OK;
    char **keys = calloc((size_t)m, sizeof *keys);
    if (!keys) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    ked_status st = KED_OK;
    for (int i = 0; i < m && !st; i++) {
        size_t len = 0;
        for (int j = 0; j < n; j++) len += strlen(toks[i + j]) + 1;
        keys[i] = malloc(len);
        if (!keys[i]) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); break; }
        char *p = keys[i];
        for (int j = 0; j < n; j++) {
            size_t l = strlen(toks[i + j]);
            memcpy(p, toks[i + j], l);
            p += l;
            *p++ = j + 1 < n ? '\x01' : 0; // tokens never hold \x01 after NFKD text... or do; a
                                           // collision only merges n-grams that differ there
        }
    }
    if (!st) {
        qsort(keys, (size_t)m, sizeof *keys, cmp_str);
        double H = 0;
        for (int i = 0; i < m;) {
            int j = i;
            while (j < m && !strcmp(keys[i], keys[j])) j++;
            double f = (double)(j - i) / m;
            H += -f * log(f) / log(2.0);
            i = j;
        }
        *h = H;
    }
    for (int i = 0; i < m; i++) free(keys[i]);
    free(keys);
    return st;
}

ked_status ked_ngram_entropy(const char *text, double *out, ked_error *err) {
    char **toks = NULL;
    int n = 0;
    ked_status st = ked_word_tokenize(text, &toks, &n, err);
    if (st) return st;
    double h2 = 0, h3 = 0;
    if (!(st = ngram_h(toks, n, 2, &h2, err)) && !(st = ngram_h(toks, n, 3, &h3, err)))
        *out = (2.0 / 3.0 * h2 + 4.0 / 3.0 * h3) / 2.0;
    ked_word_tokens_free(toks, n);
    return st;
}

// replace every occurrence of `from` in s (in place; `to` is not longer than `from`)
static void replace_all(char *s, const char *from, const char *to) {
    size_t lf = strlen(from), lt = strlen(to);
    char *w = s;
    for (const char *r = s; *r;) {
        if (!strncmp(r, from, lf)) { memcpy(w, to, lt); w += lt; r += lf; }
        else *w++ = *r++;
    }
    *w = 0;
}

ked_status eval_fluency_text(const ked_model *m, const ked_tokenizer *tok, const char *prompt,
                             int total, uint64_t seed, char **text, ked_error *err) {
    int *ids = NULL, n = 0, n_out = 0, *out = NULL;
    char *dec = NULL;
    size_t dlen = 0;
    ked_status st = ked_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, NULL, &n, err);
    if (st) return st;
    int cap = n > total ? n : total;
    out = malloc(sizeof(int) * (size_t)cap);
    if (!out) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    if (n < total) {
        ked_generate_opts o = ked_generate_defaults();
        o.max_new = total - n;
        o.temperature = 1.0f;
        o.top_k = 5;
        o.top_p = 1.0f;
        o.seed = seed;
        o.stop_at_eos = 0;
        if ((st = ked_generate(m, ids, n, &o, out, cap, &n_out, NULL, NULL, err))) goto done;
    } else {
        memcpy(out, ids, sizeof(int) * (size_t)n);
        n_out = n;
    }
    if ((st = ked_tokenizer_decode_len(tok, out, n_out, 0, &dec, &dlen, err))) goto done;
    // invalid UTF-8 becomes U+FFFD (Python's bytes.decode(errors="replace")), NUL bytes are
    // dropped (they would end the C string)
    char *clean = malloc(3 * dlen + 1);
    if (!clean) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    size_t w = 0;
    for (size_t i = 0; i < dlen;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)dec + i, (utf8proc_ssize_t)(dlen - i), &cp);
        if (k <= 0) { memcpy(clean + w, "\xEF\xBF\xBD", 3); w += 3; i++; continue; }
        if (cp) { memcpy(clean + w, dec + i, (size_t)k); w += (size_t)k; }
        i += (size_t)k;
    }
    clean[w] = 0;
    utf8proc_uint8_t *nf = utf8proc_NFKD((const utf8proc_uint8_t *)clean);
    free(clean);
    if (!nf) { st = ked_fail(err, KED_ERR_NOMEM, "fluency: NFKD of the generated text failed"); goto done; }
    replace_all((char *)nf, "\n\n", " ");
    replace_all((char *)nf, "<|endoftext|>", "");
    *text = (char *)nf;
done:
    free(ids);
    free(out);
    free(dec);
    return st;
}
