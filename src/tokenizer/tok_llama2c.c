// tok_llama2c.c: llama2.c's tokenizer.bin (int32 max_token_length, then per token: float score,
// int32 length, bytes) and its encoder, exactly as run.c's encode(): a dummy-prefix " " token,
// UTF-8 characters looked up whole with byte fallback to id byte+3, then the pair whose
// concatenation is in the vocabulary with the best score is merged, leftmost first, until none.
#include "tokenizer/tok_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// parse the file; with t == NULL only count the records. Returns the count, -1 if malformed.
static int parse(const char *data, size_t n, ked_tokenizer *t, int *max_len) {
    if (n < 4) return -1;
    int32_t ml;
    memcpy(&ml, data, 4);
    if (ml < 1 || ml > 65536) return -1;
    *max_len = ml;
    size_t pos = 4;
    int count = 0;
    while (pos < n) {
        if (n - pos < 8) return -1;
        float sc;
        int32_t len;
        memcpy(&sc, data + pos, 4);
        memcpy(&len, data + pos + 4, 4);
        pos += 8;
        if (!isfinite(sc) || len < 0 || len > ml || (size_t)len > n - pos) return -1;
        if (t) {
            if (tok_set_piece(t, count, data + pos, (size_t)len) != 0) return -1;
            t->score[count] = sc;
        }
        pos += (size_t)len;
        count++;
        if (count > (1 << 24)) return -1;
    }
    return count >= 3 ? count : -1;
}

int tok_is_llama2c_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fclose(f);
    if (sz < 4 || sz > (64L << 20)) return 0;
    char *data;
    size_t n;
    if (ked_read_file(path, &data, &n, NULL) != KED_OK) return 0;
    int ml;
    int ok = parse(data, n, NULL, &ml) > 0;
    free(data);
    return ok;
}

ked_status tok_load_llama2c(const char *path, ked_tokenizer **out, ked_error *err) {
    char *data;
    size_t n;
    ked_status st = ked_read_file(path, &data, &n, err);
    if (st != KED_OK) return st;
    int ml;
    int count = parse(data, n, NULL, &ml);
    if (count < 0) {
        free(data);
        return ked_fail(err, KED_ERR_FORMAT,
                        "%s: not a llama2.c tokenizer (expected int32 "
                        "max_token_length, then records of float score, int32 len, len bytes)",
                        path);
    }
    ked_tokenizer *t = tok_new(count, err);
    if (!t) {
        free(data);
        return KED_ERR_NOMEM;
    }
    t->kind = TOK_KIND_LLAMA2C;
    t->score = calloc((size_t)count, sizeof *t->score);
    if (!t->score || parse(data, n, t, &ml) != count) {
        free(data);
        ked_tokenizer_free(t);
        return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", path);
    }
    free(data);
    t->max_token_len = ml;
    t->bos = 1;
    t->eos = 2;
    t->add_bos = 1;
    t->special[1] = t->special[2] = 1;
    snprintf(t->kind_str, sizeof t->kind_str, "llama2.c tokenizer.bin (%d tokens, scores)", count);
    if ((st = tok_finish(t, path, err)) != KED_OK) {
        ked_tokenizer_free(t);
        return st;
    }
    for (int b = 0; b < 256; b++) t->byte_id[b] = b + 3 < count ? b + 3 : -1;
    *out = t;
    return KED_OK;
}

ked_status tok_encode_llama2c(const ked_tokenizer *t, const char *text, size_t len, tok_out *o,
                              tok_bpe_work *w, ked_error *err) {
    tok_sym *sym = malloc((len + 1) * sizeof *sym);
    if (!sym) return ked_fail(err, KED_ERR_NOMEM, "tokenizer: out of memory");
    int n = 0;
    if (len > 0) {
        int sp = tok_strmap_get(&t->vocab, " ", 1);
        if (sp >= 0) sym[n++] = (tok_sym){sp, 0, 0};
    }
    const unsigned char *u = (const unsigned char *)text;
    size_t start = 0, sl = 0;
    for (size_t i = 0; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            sl = 0;
            start = i;
        }
        sl++;
        if (i + 1 < len && (u[i + 1] & 0xC0) == 0x80 && sl < 4) continue;
        int id = tok_strmap_get(&t->vocab, text + start, sl);
        if (id >= 0) {
            sym[n++] = (tok_sym){id, (uint32_t)start, (uint32_t)(start + sl)};
        } else {
            for (size_t k = 0; k < sl; k++) {
                int b = t->byte_id[u[start + k]];
                if (b >= 0)
                    sym[n++] = (tok_sym){b, (uint32_t)(start + k), (uint32_t)(start + k + 1)};
            }
        }
        sl = 0;
        start = i + 1;
    }
    n = tok_bpe(t, sym, n, w);
    for (int i = 0; i < n; i++)
        if (tok_out_push(o, sym[i].id, sym[i].start, sym[i].end) != 0) n = -1;
    free(sym);
    return n < 0 ? ked_fail(err, KED_ERR_NOMEM, "tokenizer: out of memory") : KED_OK;
}
