// bpe.c: a byte-level BPE trainer in the manner of Hugging Face's BpeTrainer (tokenizers/src/
// models/bpe/trainer.rs) with the ByteLevel pre-tokenizer:
//   - texts are cut by GPT-2's split regex (PCRE2, Unicode properties), no prefix space;
//   - the alphabet is all 256 bytes, as GPT-2's byte-to-unicode characters, sorted by code point;
//     special tokens come first (ids 0..n_special-1);
//   - each step merges the most frequent adjacent pair over the distinct pre-tokens weighted by
//     their counts; ties go to the smaller pair of ids (a, then b), as HF's Merge ordering does;
//     a merge whose string already exists reuses that id; training stops at vocab_size or when
//     the best pair is seen fewer than min_frequency times.
// The result is written as tokenizer.json (BPE model, ByteLevel pre-tokenizer and decoder), which
// ked's loader and transformers-style loaders read.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "train/train.h"

#define TRY(x) do { ked_status st_ = (x); if (st_) return st_; } while (0)

static const char *const gpt2_split =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

ked_bpe_opts ked_bpe_defaults(void) {
    static const char *const special[] = {"<|endoftext|>"};
    ked_bpe_opts o = {4096, 2, special, 1};
    return o;
}

/* ---- hash maps ------------------------------------------------------------------------------- */

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h;
}

// pre-token -> count (keys are copied)
typedef struct { char *s; size_t n; int64_t count; } wentry;
typedef struct { wentry *e; size_t cap, used; } wmap;

static int wmap_grow(wmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 1 << 16;
    wentry *ne = calloc(ncap, sizeof *ne);
    if (!ne) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->e[i].s) continue;
        size_t j = fnv(m->e[i].s, m->e[i].n) & (ncap - 1);
        while (ne[j].s) j = (j + 1) & (ncap - 1);
        ne[j] = m->e[i];
    }
    free(m->e);
    m->e = ne; m->cap = ncap;
    return 0;
}

static int wmap_add(wmap *m, const char *s, size_t n) {
    if (2 * (m->used + 1) > m->cap && wmap_grow(m)) return -1;
    size_t j = fnv(s, n) & (m->cap - 1);
    while (m->e[j].s) {
        if (m->e[j].n == n && !memcmp(m->e[j].s, s, n)) { m->e[j].count++; return 0; }
        j = (j + 1) & (m->cap - 1);
    }
    char *k = malloc(n + 1);
    if (!k) return -1;
    memcpy(k, s, n); k[n] = 0;
    m->e[j].s = k; m->e[j].n = n; m->e[j].count = 1;
    m->used++;
    return 0;
}

// pair (a, b) -> count
typedef struct { uint64_t key; int64_t count; } pentry; // key 0: empty (ids are stored + 1)
typedef struct { pentry *e; size_t cap, used; } pmap;

static uint64_t pkey(int a, int b) { return ((uint64_t)(a + 1) << 32) | (uint64_t)(b + 1); }
static size_t phash(uint64_t k) { k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33; return (size_t)k; }

static int pmap_grow(pmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 1 << 16;
    pentry *ne = calloc(ncap, sizeof *ne);
    if (!ne) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->e[i].key) continue;
        size_t j = phash(m->e[i].key) & (ncap - 1);
        while (ne[j].key) j = (j + 1) & (ncap - 1);
        ne[j] = m->e[i];
    }
    free(m->e);
    m->e = ne; m->cap = ncap;
    return 0;
}

static pentry *pmap_get(pmap *m, uint64_t k, int create) {
    if (create && 2 * (m->used + 1) > m->cap && pmap_grow(m)) return NULL;
    if (!m->cap) return NULL;
    size_t j = phash(k) & (m->cap - 1);
    while (m->e[j].key) {
        if (m->e[j].key == k) return &m->e[j];
        j = (j + 1) & (m->cap - 1);
    }
    if (!create) return NULL;
    m->e[j].key = k; m->e[j].count = 0;
    m->used++;
    return &m->e[j];
}

/* ---- a max-heap of (count, pair), lazily updated ----------------------------------------------- */

typedef struct { int64_t count; int a, b; } hitem;
typedef struct { hitem *h; size_t n, cap; } heap;

static int before(const hitem *x, const hitem *y) { // x has priority over y
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int heap_push(heap *q, hitem it) {
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 1 << 16;
        hitem *nh = realloc(q->h, nc * sizeof *nh);
        if (!nh) return -1;
        q->h = nh; q->cap = nc;
    }
    size_t i = q->n++;
    q->h[i] = it;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&q->h[i], &q->h[p])) break;
        hitem t = q->h[i]; q->h[i] = q->h[p]; q->h[p] = t;
        i = p;
    }
    return 0;
}

static hitem heap_pop(heap *q) {
    hitem top = q->h[0];
    q->h[0] = q->h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->n && before(&q->h[l], &q->h[m])) m = l;
        if (r < q->n && before(&q->h[r], &q->h[m])) m = r;
        if (m == i) break;
        hitem t = q->h[i]; q->h[i] = q->h[m]; q->h[m] = t;
        i = m;
    }
    return top;
}

/* ---- the trainer ------------------------------------------------------------------------------ */

typedef struct { int *sym; int len; int64_t count; } word;

typedef struct {
    // vocabulary: token i is the byte string bytes[i] (special tokens: their text)
    char **bytes;
    size_t *blen;
    int n, cap;
    wmap index;   // byte string -> id + 1 (in count)
    int n_special;
} vocab;

static int vocab_add(vocab *v, const char *s, size_t n) {
    if (v->n == v->cap) {
        int nc = v->cap ? v->cap * 2 : 1024;
        char **nb = realloc(v->bytes, (size_t)nc * sizeof *nb);
        if (nb) v->bytes = nb;
        size_t *nl = realloc(v->blen, (size_t)nc * sizeof *nl);
        if (nl) v->blen = nl;
        if (!nb || !nl) return -1;
        v->cap = nc;
    }
    char *k = malloc(n + 1);
    if (!k) return -1;
    memcpy(k, s, n); k[n] = 0;
    v->bytes[v->n] = k; v->blen[v->n] = n;
    if (wmap_add(&v->index, s, n)) return -1;
    // store id + 1 in the entry's count
    size_t j = fnv(s, n) & (v->index.cap - 1);
    while (!(v->index.e[j].n == n && !memcmp(v->index.e[j].s, s, n))) j = (j + 1) & (v->index.cap - 1);
    v->index.e[j].count = v->n + 1;
    v->n++;
    return 0;
}

static int vocab_find(const vocab *v, const char *s, size_t n) { // regular tokens only
    if (!v->index.cap) return -1;
    size_t j = fnv(s, n) & (v->index.cap - 1);
    while (v->index.e[j].s) {
        if (v->index.e[j].n == n && !memcmp(v->index.e[j].s, s, n)) {
            int id = (int)v->index.e[j].count - 1;
            return id >= v->n_special ? id : -1;
        }
        j = (j + 1) & (v->index.cap - 1);
    }
    return -1;
}

// GPT-2's byte -> code point
static int byte_cp(int b) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (printable) return b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
    return 256 + n;
}

// the byte-level string of bytes s[0..n) (UTF-8 of the mapped code points) into out (>= 2n + 1)
static size_t to_bytelevel(const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int cp = byte_cp((unsigned char)s[i]);
        if (cp < 0x80) out[k++] = (char)cp;
        else { out[k++] = (char)(0xC0 | (cp >> 6)); out[k++] = (char)(0x80 | (cp & 0x3F)); }
    }
    out[k] = 0;
    return k;
}

static int add_pairs(pmap *pm, const word *w, int64_t sign) {
    for (int i = 0; i + 1 < w->len; i++) {
        pentry *e = pmap_get(pm, pkey(w->sym[i], w->sym[i + 1]), 1);
        if (!e) return -1;
        e->count += sign * w->count;
    }
    return 0;
}

static ked_status write_json(const vocab *v, const int (*merges)[2], int n_merges,
                             const ked_bpe_opts *o, const char *out_path, ked_error *err) {
    ked_status st = KED_OK;
    json_t *root = json_object(), *added = json_array(), *vj = json_object(), *mj = json_array();
    size_t cap = 64;
    for (int i = 0; i < v->n; i++) if (2 * v->blen[i] + 1 > cap) cap = 2 * v->blen[i] + 1;
    char *buf = malloc(2 * cap + 2), *buf2 = malloc(cap);
    if (!root || !added || !vj || !mj || !buf || !buf2) { st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", out_path); goto done; }
    for (int i = 0; i < v->n_special; i++) {
        json_t *a = json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", i, "content", o->special[i],
                              "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1);
        if (!a || json_array_append_new(added, a)) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    }
    for (int i = 0; i < v->n; i++) {
        if (i < v->n_special) json_object_set_new(vj, o->special[i], json_integer(i));
        else {
            to_bytelevel(v->bytes[i], v->blen[i], buf);
            json_object_set_new(vj, buf, json_integer(i));
        }
    }
    for (int k = 0; k < n_merges; k++) {
        int a = merges[k][0], b = merges[k][1];
        size_t la = to_bytelevel(v->bytes[a], v->blen[a], buf);
        buf[la] = ' ';
        to_bytelevel(v->bytes[b], v->blen[b], buf2);
        strcpy(buf + la + 1, buf2);
        json_array_append_new(mj, json_string(buf));
    }
    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:O, s:O}",
                              "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix",
                              "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                              "ignore_merges", 0, "vocab", vj, "merges", mj);
    json_t *pre = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                            "trim_offsets", 1, "use_regex", 1);
    json_t *dec = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                            "trim_offsets", 1, "use_regex", 1);
    if (!model || !pre || !dec) { json_decref(model); json_decref(pre); json_decref(dec); st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "truncation", json_null());
    json_object_set_new(root, "padding", json_null());
    json_object_set(root, "added_tokens", added);
    json_object_set_new(root, "normalizer", json_null());
    json_object_set_new(root, "pre_tokenizer", pre);
    json_object_set_new(root, "post_processor", json_null());
    json_object_set_new(root, "decoder", dec);
    json_object_set_new(root, "model", model);
    char *text = json_dumps(root, JSON_INDENT(1));
    if (!text) { st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", out_path); goto done; }
    st = ked_write_file_atomic(out_path, text, strlen(text), err);
    free(text);
    if (st) goto done;
    // tokenizer_config.json beside it: the first special token is BOS and EOS, not added
    if (v->n_special > 0) {
        char *dir = strdup(out_path);
        if (!dir) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        char *slash = strrchr(dir, '/');
        char *cpath = slash ? (*slash = 0, ked_path_join(dir, "tokenizer_config.json"))
                            : strdup("tokenizer_config.json");
        free(dir);
        json_t *c = json_pack("{s:b, s:b, s:s, s:s, s:s, s:s}", "add_bos_token", 0, "add_eos_token", 0,
                              "bos_token", o->special[0], "eos_token", o->special[0],
                              "unk_token", o->special[0], "tokenizer_class", "PreTrainedTokenizerFast");
        char *ct = c ? json_dumps(c, JSON_INDENT(2)) : NULL;
        json_decref(c);
        if (!cpath || !ct) st = ked_fail(err, KED_ERR_NOMEM, "out of memory");
        else st = ked_write_file_atomic(cpath, ct, strlen(ct), err);
        free(cpath); free(ct);
    }
done:
    free(buf); free(buf2);
    json_decref(root); json_decref(added); json_decref(vj); json_decref(mj);
    return st;
}

ked_status ked_bpe_train(const char *const *files, int n_files, const ked_bpe_opts *o,
                         const char *out_path, ked_error *err) {
    if (n_files <= 0) return ked_fail(err, KED_ERR_ARG, "tokenizer-train: no input files");
    if (o->n_special < 0 || o->vocab_size < 256 + o->n_special || o->min_frequency < 1)
        return ked_fail(err, KED_ERR_ARG, "tokenizer-train: vocab_size %d must be >= 256 + %d special "
                        "tokens, min_frequency >= 1", o->vocab_size, o->n_special);
    for (int i = 0; i < o->n_special; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(o->special[i], o->special[j]))
                return ked_fail(err, KED_ERR_ARG, "tokenizer-train: special token '%s' given twice", o->special[i]);
    ked_status st = KED_OK;
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)gpt2_split, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
    if (!re) return ked_fail(err, KED_ERR_UNSUPPORTED, "tokenizer-train: PCRE2 cannot compile the GPT-2 pattern");
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    wmap words = {0};
    vocab v = {0};
    pmap pm = {0};
    heap q = {0};
    word *w = NULL;
    int (*merges)[2] = NULL;
    size_t nw = 0;
    int n_merges = 0;
    if (!md) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    // 1. count pre-tokens
    for (int f = 0; f < n_files; f++) {
        char *data; text_ref *docs; char **owned; size_t n;
        if ((st = corpus_read_texts(files[f], &data, &docs, &owned, &n, err))) goto done;
        for (size_t d = 0; d < n && !st; d++) {
            const char *s = docs[d].p;
            size_t len = docs[d].n, off = 0;
            while (off < len) {
                int rc = pcre2_match(re, (PCRE2_SPTR)s, len, off, 0, md, NULL);
                size_t ms = len, me = len;
                if (rc >= 0) { PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md); ms = ov[0]; me = ov[1]; }
                if (ms > off && wmap_add(&words, s + off, ms - off)) st = ked_fail(err, KED_ERR_NOMEM, "out of memory");
                if (me == ms) { if (ms >= len) break; me = ms + 1; while (me < len && ((unsigned char)s[me] & 0xC0) == 0x80) me++; }
                if (!st && wmap_add(&words, s + ms, me - ms)) st = ked_fail(err, KED_ERR_NOMEM, "out of memory");
                off = me;
            }
        }
        corpus_free_texts(data, docs, owned, n);
        if (st) goto done;
    }
    // 2. the vocabulary: special tokens, then the 256 bytes by code point
    v.n_special = o->n_special;
    for (int i = 0; i < o->n_special; i++)
        if (vocab_add(&v, o->special[i], strlen(o->special[i]))) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    int byte_id[256];
    {
        int order[256];
        for (int b = 0; b < 256; b++) order[b] = b;
        for (int i = 1; i < 256; i++) // by code point
            for (int j = i; j > 0 && byte_cp(order[j - 1]) > byte_cp(order[j]); j--) {
                int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
            }
        for (int i = 0; i < 256; i++) {
            char c = (char)order[i];
            byte_id[order[i]] = v.n;
            if (vocab_add(&v, &c, 1)) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        }
    }
    // 3. words as symbol sequences, in a deterministic order (by bytes)
    w = calloc(words.used ? words.used : 1, sizeof *w);
    if (!w) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < words.cap; i++) {
        wentry *e = &words.e[i];
        if (!e->s) continue;
        w[nw].sym = malloc(e->n * sizeof(int));
        if (!w[nw].sym) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        for (size_t k = 0; k < e->n; k++) w[nw].sym[k] = byte_id[(unsigned char)e->s[k]];
        w[nw].len = (int)e->n;
        w[nw].count = e->count;
        nw++;
    }
    for (size_t i = 0; i < nw; i++)
        if (add_pairs(&pm, &w[i], 1)) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < pm.cap; i++)
        if (pm.e[i].key && pm.e[i].count > 0) {
            hitem it = {pm.e[i].count, (int)(pm.e[i].key >> 32) - 1, (int)(pm.e[i].key & 0xffffffffu) - 1};
            if (heap_push(&q, it)) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        }
    merges = malloc((size_t)(o->vocab_size > 0 ? o->vocab_size : 1) * sizeof *merges);
    if (!merges) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    // 4. merge
    char *cat = NULL;
    size_t cat_cap = 0;
    while (v.n < o->vocab_size && q.n > 0) {
        hitem top = heap_pop(&q);
        pentry *e = pmap_get(&pm, pkey(top.a, top.b), 0);
        int64_t cur = e ? e->count : 0;
        if (cur != top.count) { // stale
            if (cur > 0 && cur < top.count && heap_push(&q, (hitem){cur, top.a, top.b})) goto nomem;
            continue;
        }
        if (cur < o->min_frequency) break;
        int a = top.a, b = top.b;
        size_t nl = v.blen[a] + v.blen[b];
        if (nl + 1 > cat_cap) {
            cat_cap = 2 * (nl + 1);
            char *nc = realloc(cat, cat_cap);
            if (!nc) goto nomem;
            cat = nc;
        }
        memcpy(cat, v.bytes[a], v.blen[a]);
        memcpy(cat + v.blen[a], v.bytes[b], v.blen[b]);
        int z = vocab_find(&v, cat, nl);
        if (z < 0) {
            z = v.n;
            if (vocab_add(&v, cat, nl)) goto nomem;
        }
        merges[n_merges][0] = a; merges[n_merges][1] = b; n_merges++;
        for (size_t i = 0; i < nw; i++) {
            word *x = &w[i];
            int has = 0;
            for (int k = 0; k + 1 < x->len; k++)
                if (x->sym[k] == a && x->sym[k + 1] == b) { has = 1; break; }
            if (!has) continue;
            if (add_pairs(&pm, x, -1)) goto nomem;
            int o2 = 0;
            for (int k = 0; k < x->len;) {
                if (k + 1 < x->len && x->sym[k] == a && x->sym[k + 1] == b) { x->sym[o2++] = z; k += 2; }
                else x->sym[o2++] = x->sym[k++];
            }
            x->len = o2;
            if (add_pairs(&pm, x, 1)) goto nomem;
            for (int k = 0; k + 1 < x->len; k++) { // pairs with z may have grown: offer them again
                if (x->sym[k] != z && x->sym[k + 1] != z) continue;
                pentry *pe = pmap_get(&pm, pkey(x->sym[k], x->sym[k + 1]), 0);
                if (pe && pe->count > 0 && heap_push(&q, (hitem){pe->count, x->sym[k], x->sym[k + 1]})) goto nomem;
            }
        }
    }
    free(cat);
    cat = NULL;
    st = write_json(&v, (const int (*)[2])merges, n_merges, o, out_path, err);
    goto done;
nomem:
    free(cat);
    st = ked_fail(err, KED_ERR_NOMEM, "tokenizer-train: out of memory");
done:
    for (size_t i = 0; i < nw; i++) free(w[i].sym);
    free(w);
    for (size_t i = 0; i < words.cap; i++) free(words.e[i].s);
    free(words.e);
    for (int i = 0; i < v.n; i++) free(v.bytes[i]);
    free(v.bytes); free(v.blen);
    for (size_t i = 0; i < v.index.cap; i++) free(v.index.e[i].s);
    free(v.index.e);
    free(pm.e); free(q.h); free(merges);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return st;
}
