// tok_decode.c: ids -> text. Each token is decoded on its own through the decoder chain
// (Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace; llama2.c as run.c does), with a small
// state for what depends on position (the leading space of the first token), so that the same
// code serves the whole-sequence decode and the streaming decoder for generation.
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fused_strip(const ked_tokenizer *t, int k) {
    for (int j = 0; j < k; j++)
        if (t->dec[j].type == TOK_D_FUSE) return 1;
    return 0;
}

void tok_dec_state_init(const ked_tokenizer *t, tok_dec_state *st) {
    st->n_done = 0;
    st->prev_id = -1;
    st->strip_left = 0;
    for (int k = 0; k < t->n_dec; k++)
        if (t->dec[k].type == TOK_D_STRIP && fused_strip(t, k)) st->strip_left = t->dec[k].start;
}

static int append(char **buf, size_t *len, size_t *cap, const char *p, size_t n) {
    if (tok_grow((void **)buf, cap, *len + n + 1, 1) != 0) return -1;
    if (n) memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// "<0xNN>" -> NN, else -1
static int byte_piece(const char *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    return (h < 0 || l < 0) ? -1 : h * 16 + l;
}

// replace every a by b in s[0..*n) (in place through a scratch copy)
static int replace_all(char **s, size_t *n, size_t *cap, const char *a, size_t al, const char *b,
                       size_t bl) {
    if (al == 0 || *n < al || !memmem(*s, *n, a, al)) return 0;
    char *out = NULL;
    size_t on = 0, oc = 0;
    for (size_t i = 0; i < *n;) {
        if (i + al <= *n && memcmp(*s + i, a, al) == 0) {
            if (append(&out, &on, &oc, b, bl) != 0) {
                free(out);
                return -1;
            }
            i += al;
        } else {
            if (append(&out, &on, &oc, *s + i, 1) != 0) {
                free(out);
                return -1;
            }
            i++;
        }
    }
    free(*s);
    *s = out;
    *n = on;
    *cap = oc;
    if (!out) { *cap = 0; }
    return 0;
}

int tok_decode_piece(const ked_tokenizer *t, int id, tok_dec_state *st, char **buf, size_t *len,
                     size_t *cap) {
    const char *p = t->piece[id];
    size_t pl = t->piece_len[id];
    int rc = 0;
    if (t->kind == TOK_KIND_LLAMA2C) {
        // run.c: after BOS (and at the start) the leading space of a piece goes; <0xNN> is a byte
        if ((st->prev_id == t->bos || st->n_done == 0) && pl > 0 && p[0] == ' ') {
            p++;
            pl--;
        }
        int b = byte_piece(p, pl);
        char c = (char)b;
        rc = b >= 0 ? append(buf, len, cap, &c, 1) : append(buf, len, cap, p, pl);
        st->prev_id = id;
        st->n_done++;
        return rc;
    }
    char *s = NULL;
    size_t n = 0, sc = 0;
    if (append(&s, &n, &sc, p, pl) != 0) return -1;
    int is_byte = 0;
    for (int k = 0; k < t->n_dec && rc == 0; k++) {
        const tok_dec *d = &t->dec[k];
        switch (d->type) {
        case TOK_D_REPLACE:
            if (!is_byte) rc = replace_all(&s, &n, &sc, d->a, d->alen, d->b, d->blen);
            break;
        case TOK_D_BYTEFALLBACK: {
            int b = is_byte ? -1 : byte_piece(s, n);
            if (b >= 0) {
                s[0] = (char)b;
                n = 1;
                is_byte = 1;
            }
            break;
        }
        case TOK_D_FUSE: break;
        case TOK_D_STRIP: {
            if (is_byte) break;
            size_t off = 0;
            if (fused_strip(t, k)) {
                while (st->strip_left > 0 && n - off >= d->alen &&
                       memcmp(s + off, d->a, d->alen) == 0) {
                    off += d->alen;
                    st->strip_left--;
                }
                if (n > off) st->strip_left = 0;
            } else {
                for (int j = 0;
                     j < d->start && n - off >= d->alen && memcmp(s + off, d->a, d->alen) == 0; j++)
                    off += d->alen;
                for (int j = 0; j < d->stop && n - off >= d->alen &&
                                memcmp(s + n - d->alen, d->a, d->alen) == 0;
                     j++)
                    n -= d->alen;
            }
            memmove(s, s + off, n - off);
            n -= off;
            break;
        }
        case TOK_D_BYTELEVEL: {
            if (is_byte) break;
            size_t o = 0;
            for (size_t i = 0; i < n;) {
                int l = tok_utf8_len((const unsigned char *)s + i, n - i);
                int32_t cp = -1;
                if (l == 1) cp = (unsigned char)s[i];
                else if (l == 2) cp = ((s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
                int b = tok_byte_of_codepoint(cp);
                if (l == 0) l = 1;
                if (b >= 0) s[o++] = (char)b;
                else {
                    memmove(s + o, s + i, (size_t)l);
                    o += (size_t)l;
                }
                i += (size_t)l;
            }
            n = o;
            break;
        }
        case TOK_D_METASPACE:
            if (is_byte) break;
            rc = replace_all(&s, &n, &sc, d->a, d->alen, " ", 1);
            if (rc == 0 && d->prepend && st->n_done == 0 && n > 0 && s[0] == ' ') {
                memmove(s, s + 1, n - 1);
                n--;
            }
            break;
        }
    }
    if (rc == 0) rc = append(buf, len, cap, s ? s : "", n);
    free(s);
    st->prev_id = id;
    st->n_done++;
    return rc;
}

static int id_ok(const ked_tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab && t->piece[id];
}

ked_status ked_tokenizer_decode_len(const ked_tokenizer *t, const int *ids, int n, int skip_special,
                                    char **text, size_t *len, ked_error *err) {
    if (!t || !text || (n > 0 && !ids) || n < 0)
        return ked_fail(err, KED_ERR_ARG, "ked_tokenizer_decode: bad argument");
    char *buf = NULL;
    size_t bl = 0, cap = 0;
    if (append(&buf, &bl, &cap, "", 0) != 0) goto nomem;
    tok_dec_state st;
    tok_dec_state_init(t, &st);
    for (int i = 0; i < n; i++) {
        if (!id_ok(t, ids[i])) {
            free(buf);
            return ked_fail(err, KED_ERR_ARG,
                            "ked_tokenizer_decode: ids[%d] = %d is not a token id "
                            "(vocabulary of %d)",
                            i, ids[i], t->n_vocab);
        }
        if (skip_special && t->special[ids[i]]) {
            st.prev_id = ids[i];
            continue;
        }
        if (tok_decode_piece(t, ids[i], &st, &buf, &bl, &cap) != 0) goto nomem;
    }
    *text = buf;
    if (len) *len = bl;
    return KED_OK;
nomem:
    free(buf);
    return ked_fail(err, KED_ERR_NOMEM, "ked_tokenizer_decode: out of memory");
}

ked_status ked_tokenizer_decode(const ked_tokenizer *t, const int *ids, int n, int skip_special,
                                char **text, ked_error *err) {
    return ked_tokenizer_decode_len(t, ids, n, skip_special, text, NULL, err);
}

/* ---- streaming ---------------------------------------------------------------------------- */

struct ked_detok {
    const ked_tokenizer *t;
    tok_dec_state st;
    char *pend; // decoded bytes not yet given out (an unfinished UTF-8 character)
    size_t plen, pcap;
};

ked_status ked_detok_new(const ked_tokenizer *t, ked_detok **out, ked_error *err) {
    if (!t || !out) return ked_fail(err, KED_ERR_ARG, "ked_detok_new: NULL argument");
    ked_detok *d = ked_calloc(1, sizeof *d, "streaming decoder", err);
    if (!d) return KED_ERR_NOMEM;
    d->t = t;
    tok_dec_state_init(t, &d->st);
    *out = d;
    return KED_OK;
}

void ked_detok_free(ked_detok *d) {
    if (!d) return;
    free(d->pend);
    free(d);
}

// 1 if s[0..n) is the start of a valid UTF-8 character that needs more bytes
static int incomplete(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t need = c >= 0xC2 && c < 0xE0   ? 2
                  : c >= 0xE0 && c < 0xF0 ? 3
                  : c >= 0xF0 && c < 0xF5 ? 4
                                          : 0;
    if (need == 0 || n >= need) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n >= 2) {
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] >= 0xA0) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] >= 0x90) return 0;
    }
    return 1;
}

// give out the complete characters of the pending bytes (all of them when final)
static ked_status give_out(ked_detok *d, int final, char **text, ked_error *err) {
    char *out = NULL;
    size_t on = 0, oc = 0;
    size_t i = 0;
    if (append(&out, &on, &oc, "", 0) != 0) goto nomem;
    while (i < d->plen) {
        const unsigned char *u = (const unsigned char *)d->pend + i;
        int l = tok_utf8_len(u, d->plen - i);
        if (l > 0) {
            if (append(&out, &on, &oc, d->pend + i, (size_t)l) != 0) goto nomem;
            i += (size_t)l;
        } else if (incomplete(u, d->plen - i)) {
            if (!final) break;
            if (append(&out, &on, &oc, "\xEF\xBF\xBD", 3) != 0) goto nomem;
            i = d->plen;
        } else {
            if (append(&out, &on, &oc, "\xEF\xBF\xBD", 3) != 0) goto nomem;
            i++;
        }
    }
    if (i > 0) {
        memmove(d->pend, d->pend + i, d->plen - i);
        d->plen -= i;
    }
    *text = out;
    return KED_OK;
nomem:
    free(out);
    return ked_fail(err, KED_ERR_NOMEM, "ked_detok: out of memory");
}

ked_status ked_detok_push(ked_detok *d, int id, char **text, ked_error *err) {
    if (!d || !text) return ked_fail(err, KED_ERR_ARG, "ked_detok_push: NULL argument");
    if (!id_ok(d->t, id))
        return ked_fail(err, KED_ERR_ARG, "ked_detok_push: %d is not a token id (vocabulary of %d)",
                        id, d->t->n_vocab);
    if (!d->t->special[id] && tok_decode_piece(d->t, id, &d->st, &d->pend, &d->plen, &d->pcap) != 0)
        return ked_fail(err, KED_ERR_NOMEM, "ked_detok: out of memory");
    if (d->t->special[id]) d->st.prev_id = id;
    return give_out(d, 0, text, err);
}

ked_status ked_detok_flush(ked_detok *d, char **text, ked_error *err) {
    if (!d || !text) return ked_fail(err, KED_ERR_ARG, "ked_detok_flush: NULL argument");
    return give_out(d, 1, text, err);
}
