// tok_hash.c: the open-addressing hash maps of the tokenizers (vocabulary string -> id, merge
// pair -> rank), plus the small helpers every tokenizer file uses (growable arrays, UTF-8).
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tok_grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

int tok_utf8_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; // overlong
        if (c == 0xED && s[1] >= 0xA0) return 0; // surrogates
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

// wyhash-style mixing of 8-byte words; good enough spread for short keys, fast for long ones
static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    return x;
}

uint64_t tok_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = mix64(h ^ w) + 0x632BE59BD9B4E019ULL;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)s[i] << (8 * i);
    h = mix64(h ^ w ^ 0xA0761D6478BD642FULL);
    return h ? h : 1;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

int tok_strmap_init(tok_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 2 + 1);
    m->key = calloc(m->cap, sizeof *m->key);
    m->klen = calloc(m->cap, sizeof *m->klen);
    m->val = calloc(m->cap, sizeof *m->val);
    m->hash = calloc(m->cap, sizeof *m->hash);
    if (!m->key || !m->klen || !m->val || !m->hash) {
        tok_strmap_free(m);
        return -1;
    }
    return 0;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->key);
    free(m->klen);
    free(m->val);
    free(m->hash);
    memset(m, 0, sizeof *m);
}

static int strmap_rehash(tok_strmap *m) {
    tok_strmap big;
    if (tok_strmap_init(&big, m->cap) != 0) return -1; // doubles the capacity
    for (size_t i = 0; i < m->cap; i++)
        if (m->hash[i]) tok_strmap_put(&big, m->key[i], m->klen[i], m->val[i]);
    tok_strmap_free(m);
    *m = big;
    return 0;
}

int tok_strmap_put(tok_strmap *m, const char *key, size_t klen, int val) {
    if (m->cap == 0 && tok_strmap_init(m, 16) != 0) return -1;
    if ((m->n + 1) * 2 > m->cap && strmap_rehash(m) != 0) return -1;
    uint64_t h = tok_hash_bytes(key, klen);
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    while (m->hash[i]) {
        if (m->hash[i] == h && m->klen[i] == klen && memcmp(m->key[i], key, klen) == 0) return 0;
        i = (i + 1) & mask;
    }
    m->hash[i] = h;
    m->key[i] = key;
    m->klen[i] = (uint32_t)klen;
    m->val[i] = val;
    m->n++;
    return 0;
}

int tok_strmap_get(const tok_strmap *m, const char *key, size_t klen) {
    if (m->cap == 0) return -1;
    uint64_t h = tok_hash_bytes(key, klen);
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    while (m->hash[i]) {
        if (m->hash[i] == h && m->klen[i] == klen && memcmp(m->key[i], key, klen) == 0)
            return m->val[i];
        i = (i + 1) & mask;
    }
    return -1;
}

static inline uint64_t pair_key(int a, int b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

int tok_pairmap_init(tok_pairmap *m, size_t expected) {
    m->cap = pow2_at_least(expected * 2 + 1);
    m->n = 0;
    m->slot = malloc(m->cap * sizeof *m->slot);
    if (!m->slot) {
        m->cap = 0;
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) m->slot[i].key = UINT64_MAX;
    return 0;
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->slot);
    memset(m, 0, sizeof *m);
}

int tok_pairmap_put(tok_pairmap *m, int a, int b, int rank, int id) {
    if (m->cap == 0 && tok_pairmap_init(m, 16) != 0) return -1;
    if ((m->n + 1) * 2 > m->cap) {
        tok_pairmap big;
        if (tok_pairmap_init(&big, m->cap) != 0) return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slot[i].key != UINT64_MAX)
                tok_pairmap_put(&big, (int)(m->slot[i].key >> 32), (int)(uint32_t)m->slot[i].key,
                                m->slot[i].rank, m->slot[i].id);
        tok_pairmap_free(m);
        *m = big;
    }
    uint64_t k = pair_key(a, b);
    size_t mask = m->cap - 1, i = (size_t)mix64(k) & mask;
    while (m->slot[i].key != UINT64_MAX) {
        if (m->slot[i].key == k) return 0;
        i = (i + 1) & mask;
    }
    m->slot[i].key = k;
    m->slot[i].rank = rank;
    m->slot[i].id = id;
    m->n++;
    return 0;
}

const tok_pair *tok_pairmap_get(const tok_pairmap *m, int a, int b) {
    if (m->cap == 0) return NULL;
    uint64_t k = pair_key(a, b);
    size_t mask = m->cap - 1, i = (size_t)mix64(k) & mask;
    while (m->slot[i].key != UINT64_MAX) {
        if (m->slot[i].key == k) return &m->slot[i];
        i = (i + 1) & mask;
    }
    return NULL;
}
