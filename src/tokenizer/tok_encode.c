// tok_encode.c: ked_tokenizer_encode: special tokens first, then per stretch of text between
// them normalizers -> pre-tokenizers -> BPE model, each token carrying the byte span of the
// original input it came from; BOS/EOS as the tokenizer's config says.
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tok_out_push(tok_out *o, int id, size_t start, size_t end) {
    if (o->n + 1 > o->cap) {
        size_t c = o->cap ? o->cap * 2 : 64;
        int *ids = realloc(o->id, c * sizeof *ids);
        if (!ids) return -1;
        o->id = ids;
        ked_span *sp = realloc(o->span, c * sizeof *sp);
        if (!sp) return -1;
        o->span = sp;
        o->cap = c;
    }
    o->id[o->n] = id;
    o->span[o->n] = (ked_span){start, end};
    o->n++;
    return 0;
}

typedef struct {
    tok_nstr ns;
    tok_sym *sym;
    size_t sym_cap;
    tok_bpe_work bpe;
    pcre2_match_data *md;
    char *word; // byte-level: the word in byte characters (ignore_merges)
    size_t word_cap;
} scratch;

static void scratch_free(scratch *s) {
    tok_nstr_free(&s->ns);
    free(s->sym);
    free(s->word);
    tok_bpe_work_free(&s->bpe);
    if (s->md) pcre2_match_data_free(s->md);
}

// emit symbols of the word at [a, ..) of ns with their original spans
static int emit(const tok_nstr *ns, size_t a, const tok_sym *sym, int n, tok_out *o) {
    for (int i = 0; i < n; i++) {
        size_t s = a + sym[i].start, e = a + sym[i].end;
        size_t o0 = ns->o0[s], o1 = ns->o1[e - 1];
        if (o1 < o0) o1 = o0;
        if (tok_out_push(o, sym[i].id, o0, o1) != 0) return -1;
    }
    return 0;
}

static int cache_get(const ked_tokenizer *t, const char *w, size_t len, uint64_t h, tok_sym *sym) {
    ked_tokenizer *mt = (ked_tokenizer *)t; // the cache is the one mutable part, under its lock
    tok_cache_slot *c = &mt->cache[h & (TOK_CACHE_SLOTS - 1)];
    int n = -1;
    pthread_mutex_lock(&mt->cache_lock);
    if (c->hash == h && c->klen == len && memcmp(c->key, w, len) == 0) {
        uint32_t pos = 0;
        n = c->ntok;
        for (int i = 0; i < n; i++) {
            sym[i].id = c->id[i];
            sym[i].start = pos;
            pos += c->tlen[i];
            sym[i].end = pos;
        }
    }
    pthread_mutex_unlock(&mt->cache_lock);
    return n;
}

static void cache_put(const ked_tokenizer *t, const char *w, size_t len, uint64_t h,
                      const tok_sym *sym, int n) {
    if (n > TOK_CACHE_TOK) return;
    for (int i = 0; i < n; i++)
        if (sym[i].end - sym[i].start > 255) return;
    ked_tokenizer *mt = (ked_tokenizer *)t;
    tok_cache_slot *c = &mt->cache[h & (TOK_CACHE_SLOTS - 1)];
    pthread_mutex_lock(&mt->cache_lock);
    c->hash = h;
    c->klen = (uint8_t)len;
    memcpy(c->key, w, len);
    c->ntok = (uint8_t)n;
    for (int i = 0; i < n; i++) {
        c->id[i] = sym[i].id;
        c->tlen[i] = (uint8_t)(sym[i].end - sym[i].start);
    }
    pthread_mutex_unlock(&mt->cache_lock);
}

// the BPE model on one pre-tokenized word [a, b) of ns
static int model_word(const ked_tokenizer *t, scratch *sc, size_t a, size_t b, tok_out *o) {
    const char *w = sc->ns.s + a;
    size_t len = b - a;
    if (len == 0) return 0;
    if (tok_grow((void **)&sc->sym, &sc->sym_cap, len, sizeof *sc->sym) != 0) return -1;
    tok_sym *sym = sc->sym;
    int n = 0;
    uint64_t h = 0;
    int cacheable = t->cache && len <= TOK_CACHE_KEY;
    if (cacheable) {
        h = tok_hash_bytes(w, len);
        int hit = cache_get(t, w, len, h, sym);
        if (hit >= 0) return emit(&sc->ns, a, sym, hit, o);
    }
    if (t->byte_level) {
        const tok_bytechar *bc = tok_byte_chars();
        if (t->ignore_merges) {
            if (tok_grow((void **)&sc->word, &sc->word_cap, 2 * len + 1, 1) != 0) return -1;
            size_t wl = 0;
            for (size_t i = 0; i < len; i++) {
                const tok_bytechar *c = &bc[(unsigned char)w[i]];
                memcpy(sc->word + wl, c->s, c->len);
                wl += c->len;
            }
            int id = tok_strmap_get(&t->vocab, sc->word, wl);
            if (id >= 0) {
                sym[0] = (tok_sym){id, 0, (uint32_t)len};
                return emit(&sc->ns, a, sym, 1, o);
            }
        }
        for (size_t i = 0; i < len; i++) {
            int id = t->byte_id[(unsigned char)w[i]];
            if (id < 0) id = t->unk_id;
            if (id < 0) continue;
            sym[n++] = (tok_sym){id, (uint32_t)i, (uint32_t)i + 1};
        }
    } else {
        if (t->ignore_merges) {
            int id = tok_strmap_get(&t->vocab, w, len);
            if (id >= 0) {
                sym[0] = (tok_sym){id, 0, (uint32_t)len};
                return emit(&sc->ns, a, sym, 1, o);
            }
        }
        int unk_open = 0; // the last symbol is an unknown that may be extended (fuse_unk)
        for (size_t i = 0; i < len;) {
            int l = tok_utf8_len((const unsigned char *)w + i, len - i);
            if (l == 0) l = 1;
            int id = tok_strmap_get(&t->vocab, w + i, (size_t)l);
            if (id >= 0) {
                sym[n++] = (tok_sym){id, (uint32_t)i, (uint32_t)(i + (size_t)l)};
                unk_open = 0;
            } else {
                int all = t->byte_fallback;
                for (int k = 0; all && k < l; k++)
                    all = t->byte_id[(unsigned char)w[i + (size_t)k]] >= 0;
                if (all) {
                    for (int k = 0; k < l; k++)
                        sym[n++] =
                            (tok_sym){t->byte_id[(unsigned char)w[i + (size_t)k]],
                                      (uint32_t)(i + (size_t)k), (uint32_t)(i + (size_t)k + 1)};
                    unk_open = 0;
                } else if (t->unk_id >= 0) {
                    if (unk_open && t->fuse_unk) sym[n - 1].end = (uint32_t)(i + (size_t)l);
                    else sym[n++] = (tok_sym){t->unk_id, (uint32_t)i, (uint32_t)(i + (size_t)l)};
                    unk_open = 1;
                }
            }
            i += (size_t)l;
        }
    }
    n = tok_bpe(t, sym, n, &sc->bpe);
    if (n < 0) return -1;
    if (cacheable) cache_put(t, w, len, h, sym, n);
    return emit(&sc->ns, a, sym, n, o);
}

static ked_status encode_stretch(const ked_tokenizer *t, const char *text, size_t a, size_t b,
                                 scratch *sc, tok_out *o, ked_error *err) {
    if (b <= a) return KED_OK;
    if (tok_nstr_from(&sc->ns, text + a, b - a, a, !t->byte_level) != 0)
        return ked_fail(err, KED_ERR_NOMEM, "tokenizer: out of memory");
    ked_status st = tok_normalize(t, &sc->ns, err);
    if (st != KED_OK) return st;
    if (sc->ns.len == 0) return KED_OK;
    tok_range *r = NULL;
    size_t nr = 0;
    st = tok_pretokenize(t, &sc->ns, &r, &nr, sc->md, err);
    if (st != KED_OK) return st;
    for (size_t i = 0; i < nr; i++) {
        size_t wa = r[i].start, wb = r[i].end;
        if (t->split_meta) {
            // no token holds U+2581 after another character (see tok_finish): BPE cannot cross
            // a U+2581 that follows a different character, so the word is cut there (same ids)
            const char *s = sc->ns.s;
            for (size_t k = wa + 1; k + 3 <= wb; k++) {
                if ((unsigned char)s[k] == 0xE2 && (unsigned char)s[k + 1] == 0x96 &&
                    (unsigned char)s[k + 2] == 0x81 &&
                    !(k >= wa + 3 && (unsigned char)s[k - 3] == 0xE2 &&
                      (unsigned char)s[k - 2] == 0x96 && (unsigned char)s[k - 1] == 0x81)) {
                    if (model_word(t, sc, wa, k, o) != 0) goto nomem;
                    wa = k;
                }
            }
        }
        if (model_word(t, sc, wa, wb, o) != 0) goto nomem;
    }
    free(r);
    return KED_OK;
nomem:
    free(r);
    return ked_fail(err, KED_ERR_NOMEM, "tokenizer: out of memory");
}

static int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// the longest added token that starts at text[i], -1 if none
static int added_at(const ked_tokenizer *t, const char *text, size_t len, size_t i) {
    int best = -1;
    size_t best_len = 0;
    for (int k = 0; k < t->n_added; k++) {
        const tok_added *ad = &t->added[k];
        if (ad->len > best_len && ad->len <= len - i && ad->s[0] == text[i] &&
            memcmp(ad->s, text + i, ad->len) == 0) {
            best = k;
            best_len = ad->len;
        }
    }
    return best;
}

static ked_status encode_hf(const ked_tokenizer *t, const char *text, size_t len, tok_out *o,
                            ked_error *err) {
    scratch sc = {0};
    sc.md = pcre2_match_data_create(4, NULL);
    if (!sc.md) return ked_fail(err, KED_ERR_NOMEM, "tokenizer: out of memory");
    ked_status st = KED_OK;
    size_t seg = 0, i = 0;
    uint8_t first[256] = {0};
    for (int k = 0; k < t->n_added; k++) first[(unsigned char)t->added[k].s[0]] = 1;
    while (i < len) {
        int k = first[(unsigned char)text[i]] ? added_at(t, text, len, i) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const tok_added *ad = &t->added[k];
        size_t end = i;
        if (ad->lstrip)
            while (end > seg && is_space((unsigned char)text[end - 1])) end--;
        if ((st = encode_stretch(t, text, seg, end, &sc, o, err)) != KED_OK) goto done;
        if (tok_out_push(o, ad->id, i, i + ad->len) != 0) goto nomem;
        i += ad->len;
        if (ad->rstrip)
            while (i < len && is_space((unsigned char)text[i])) i++;
        seg = i;
    }
    st = encode_stretch(t, text, seg, len, &sc, o, err);
done:
    scratch_free(&sc);
    return st;
nomem:
    scratch_free(&sc);
    return ked_fail(err, KED_ERR_NOMEM, "tokenizer: out of memory");
}

ked_status ked_tokenizer_encode(const ked_tokenizer *t, const char *text, size_t len,
                                int add_special, int **ids, ked_span **spans, int *n,
                                ked_error *err) {
    if (!t || !ids || !n || (!text && len))
        return ked_fail(err, KED_ERR_ARG, "ked_tokenizer_encode: NULL argument");
    if (len > (size_t)1 << 31)
        return ked_fail(err, KED_ERR_ARG, "ked_tokenizer_encode: text of %zu bytes is too long",
                        len);
    tok_out o = {0};
    ked_status st = KED_OK;
    if (add_special && t->add_bos && t->bos >= 0 && tok_out_push(&o, t->bos, 0, 0) != 0) goto nomem;
    if (t->kind == TOK_KIND_LLAMA2C) {
        tok_bpe_work w = {0};
        st = tok_encode_llama2c(t, text, len, &o, &w, err);
        tok_bpe_work_free(&w);
    } else {
        st = encode_hf(t, text, len, &o, err);
    }
    if (st != KED_OK) goto fail;
    if (add_special && t->add_eos && t->eos >= 0 && tok_out_push(&o, t->eos, len, len) != 0)
        goto nomem;
    if (o.n == 0 && tok_out_push(&o, 0, 0, 0) == 0) o.n = 0; // so that the arrays are not NULL
    if (o.n == 0 && !o.id) goto nomem;
    *ids = o.id;
    if (spans) *spans = o.span;
    else free(o.span);
    *n = (int)o.n;
    return KED_OK;
nomem:
    st = ked_fail(err, KED_ERR_NOMEM, "tokenizer: out of memory");
fail:
    free(o.id);
    free(o.span);
    return st;
}
