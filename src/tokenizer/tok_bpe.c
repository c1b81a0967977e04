// tok_bpe.c: the BPE merge loop shared by every model: symbols in a linked list, candidate
// pairs in a binary heap ordered by (rank, position) -- or by (-score, position) for llama2.c's
// score-driven merges -- so a word of n symbols costs O(n log n) instead of O(n^2).
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// a candidate merge: key = priority (high 32 bits, order-preserving) | left position (low 32),
// so one integer comparison orders by (priority, position); size is the merged length in bytes,
// which tells a stale candidate (one of its symbols has grown or gone) from a live one.
struct tok_heap_item {
    uint64_t key;
    int right, new_id;
    uint32_t size;
};

typedef struct {
    struct tok_heap_item *h;
    size_t n;
} heap;

static void heap_push(heap *hp, struct tok_heap_item it) {
    size_t i = hp->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (hp->h[p].key <= it.key) break;
        hp->h[i] = hp->h[p];
        i = p;
    }
    hp->h[i] = it;
}

static struct tok_heap_item heap_pop(heap *hp) {
    struct tok_heap_item top = hp->h[0], last = hp->h[--hp->n];
    size_t i = 0, n = hp->n;
    for (;;) {
        size_t l = 2 * i + 1, m = l;
        if (l >= n) break;
        if (l + 1 < n && hp->h[l + 1].key < hp->h[l].key) m = l + 1;
        if (last.key <= hp->h[m].key) break;
        hp->h[i] = hp->h[m];
        i = m;
    }
    if (n > 0) hp->h[i] = last;
    return top;
}

// a float priority as an unsigned integer of the same order
static uint32_t order_float(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

// the merge of symbols a and b if there is one: priority (lower first) and merged id
static int lookup_pair(const ked_tokenizer *t, int a, int b, uint32_t *prio, int *id) {
    if (t->has_merges) {
        const tok_pair *p = tok_pairmap_get(&t->merges, a, b);
        if (!p) return 0;
        *prio = (uint32_t)p->rank;
        *id = p->id;
        return 1;
    }
    if (!t->score || a < 0 || b < 0) return 0;
    // llama2.c: the concatenated string must itself be in the vocabulary; best score first
    char buf[512];
    size_t la = t->piece_len[a], lb = t->piece_len[b];
    if (la + lb > sizeof buf) return 0;
    memcpy(buf, t->piece[a], la);
    memcpy(buf + la, t->piece[b], lb);
    int m = tok_strmap_get(&t->vocab, buf, la + lb);
    if (m < 0 || m >= t->n_vocab) return 0;
    *prio = order_float(-t->score[m]);
    *id = m;
    return 1;
}

void tok_bpe_work_free(tok_bpe_work *w) {
    free(w->prev);
    free(w->next);
    free(w->heap);
    memset(w, 0, sizeof *w);
}

int tok_bpe(const ked_tokenizer *t, tok_sym *sym, int n, tok_bpe_work *w) {
    if (n < 2) return n;
    if ((size_t)n > w->cap) {
        size_t c = (size_t)n * 2;
        int *p = realloc(w->prev, c * sizeof *p);
        if (!p) return -1;
        w->prev = p;
        p = realloc(w->next, c * sizeof *p);
        if (!p) return -1;
        w->next = p;
        w->cap = c;
    }
    // each merge adds at most two candidates, so 3n bounds the heap
    if ((size_t)n * 3 > w->heap_cap) {
        size_t c = (size_t)n * 3;
        struct tok_heap_item *h = realloc(w->heap, c * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->heap_cap = c;
    }
    int *prev = w->prev, *next = w->next;
    heap hp = {w->heap, 0};
    for (int i = 0; i < n; i++) {
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
    }
#define CANDIDATE(l, r)                                                                            \
    do {                                                                                           \
        uint32_t pr_;                                                                              \
        int id_;                                                                                   \
        if (lookup_pair(t, sym[l].id, sym[r].id, &pr_, &id_))                                      \
            heap_push(&hp, (struct tok_heap_item){((uint64_t)pr_ << 32) | (uint32_t)(l), (r), id_, \
                                                  sym[r].end - sym[l].start});                     \
    } while (0)
    for (int i = 0; i + 1 < n; i++) CANDIDATE(i, i + 1);
    while (hp.n > 0) {
        struct tok_heap_item it = heap_pop(&hp);
        int l = (int)(uint32_t)it.key, r = it.right;
        // stale: l is gone, r is no longer next to l, or either has grown since
        if (sym[l].id < 0 || next[l] != r || sym[r].end - sym[l].start != it.size) continue;
        sym[l].id = it.new_id;
        sym[l].end = sym[r].end;
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        sym[r].id = -2; // dead
        if (prev[l] >= 0) CANDIDATE(prev[l], l);
        if (next[l] >= 0) CANDIDATE(l, next[l]);
    }
#undef CANDIDATE
    int m = 0;
    for (int i = 0; i >= 0; i = next[i]) sym[m++] = sym[i];
    return m;
}
