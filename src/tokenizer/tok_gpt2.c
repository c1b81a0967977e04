// tok_gpt2.c: the classic GPT-2 files, vocab.json (piece -> id) and merges.txt (one "a b" pair
// per line, rank = line order, a "#version" first line), as OpenAI's encoder.py reads them:
// byte-level BPE with the GPT-2 split pattern. <|endoftext|> is a special token when present.
#include "tokenizer/tok_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// fills t->merges from merges text; rank = index among the pair lines
static ked_status tok_parse_merges_txt(ked_tokenizer *t, const char *path, char *data, size_t n,
                                       ked_error *err) {
    size_t lines = 1;
    for (const char *q = data; (q = memchr(q, '\n', n - (size_t)(q - data))); q++) lines++;
    if (tok_pairmap_init(&t->merges, lines) != 0)
        return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", path);
    t->has_merges = 1;
    size_t pos = 0;
    int line = 0, rank = 0;
    char buf[1024];
    while (pos < n) {
        size_t e = pos;
        while (e < n && data[e] != '\n') e++;
        size_t le = e;
        if (le > pos && data[le - 1] == '\r') le--;
        line++;
        const char *s = data + pos;
        size_t l = le - pos;
        pos = e + 1;
        if (l == 0) continue;
        if (line == 1 && s[0] == '#') continue;
        const char *sp = memchr(s, ' ', l);
        if (!sp || sp == s || sp == s + l - 1 || memchr(sp + 1, ' ', (size_t)(s + l - sp - 1)))
            return ked_fail(err, KED_ERR_FORMAT,
                            "%s: line %d: expected two tokens separated by one space", path, line);
        size_t la = (size_t)(sp - s), lb = l - la - 1;
        if (la + lb > sizeof buf)
            return ked_fail(err, KED_ERR_FORMAT, "%s: line %d: merge too long", path, line);
        int a = tok_strmap_get(&t->vocab, s, la), b = tok_strmap_get(&t->vocab, sp + 1, lb);
        memcpy(buf, s, la);
        memcpy(buf + la, sp + 1, lb);
        int m = tok_strmap_get(&t->vocab, buf, la + lb);
        if (a < 0 || b < 0 || m < 0)
            return ked_fail(err, KED_ERR_FORMAT,
                            "%s: line %d: merge \"%.*s\" names a token that is "
                            "not in the vocabulary",
                            path, line, (int)l, s);
        if (tok_pairmap_put(&t->merges, a, b, rank++, m) != 0)
            return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", path);
    }
    return KED_OK;
}

ked_status tok_load_gpt2(const char *vocab_path, const char *merges_path, ked_tokenizer **out,
                         ked_error *err) {
    json_error_t je;
    char *text;
    size_t tlen;
    ked_status rst =
        ked_read_file(vocab_path, &text, &tlen, err); // one read: faster than json_load_file
    if (rst != KED_OK) return rst;
    json_t *root = json_loadb(text, tlen, 0, &je);
    free(text);
    if (!root)
        return ked_fail(err, KED_ERR_FORMAT, "%s: line %d: %s", vocab_path, je.line, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return ked_fail(err, KED_ERR_FORMAT, "%s: expected an object of token -> id", vocab_path);
    }
    int maxid = -1;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 24)) {
            ked_fail(err, KED_ERR_FORMAT,
                     "%s: token \"%.200s\": id must be an integer in [0, 2^24]", vocab_path, k);
            json_decref(root);
            return KED_ERR_FORMAT;
        }
        if (json_integer_value(v) > maxid) maxid = (int)json_integer_value(v);
    }
    ked_tokenizer *t = tok_new(maxid + 1, err);
    if (!t) {
        json_decref(root);
        return KED_ERR_NOMEM;
    }
    t->kind = TOK_KIND_GPT2;
    json_object_foreach(root, k, v) {
        if (tok_set_piece(t, (int)json_integer_value(v), k, strlen(k)) != 0) {
            json_decref(root);
            ked_tokenizer_free(t);
            return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", vocab_path);
        }
    }
    json_decref(root);
    ked_status st;
    char *data = NULL;
    size_t n;
    t->byte_level = 1;
    t->pre = calloc(1, sizeof *t->pre);
    t->dec = calloc(1, sizeof *t->dec);
    if (!t->pre || !t->dec) {
        st = ked_fail(err, KED_ERR_NOMEM, "out of memory");
        goto fail;
    }
    t->n_pre = 1;
    t->pre[0].type = TOK_P_BYTELEVEL;
    t->pre[0].re = tok_compile_regex(tok_gpt2_pattern, PCRE2_ZERO_TERMINATED, 0, NULL, 0);
    t->n_dec = 1;
    t->dec[0].type = TOK_D_BYTELEVEL;
    if ((st = tok_finish(t, vocab_path, err)) != KED_OK) goto fail;
    int eot = tok_strmap_get(&t->vocab, "<|endoftext|>", 13);
    if (eot >= 0) {
        t->added = calloc(1, sizeof *t->added);
        if (!t->added || !(t->added[0].s = strdup("<|endoftext|>"))) {
            st = ked_fail(err, KED_ERR_NOMEM, "out of memory");
            goto fail;
        }
        t->added[0].len = 13;
        t->added[0].id = eot;
        t->added[0].special = 1;
        t->n_added = 1;
        t->special[eot] = 1;
        t->bos = t->eos = eot;
    }
    if ((st = ked_read_file(merges_path, &data, &n, err)) != KED_OK) goto fail;
    if ((st = tok_parse_merges_txt(t, merges_path, data, n, err)) != KED_OK) goto fail;
    free(data);
    snprintf(t->kind_str, sizeof t->kind_str,
             "GPT-2 vocab.json + merges.txt (BPE, byte-level, %zu merges)", t->merges.n);
    *out = t;
    return KED_OK;
fail:
    free(data);
    ked_tokenizer_free(t);
    return st;
}
