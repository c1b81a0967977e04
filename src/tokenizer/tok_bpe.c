// tok_bpe.c: the BPE merge loop shared by every model: symbols in a linked list, candidate
// pairs in a binary heap ordered by (rank, position) -- or by (-score, position) for llama2.c's
// score-driven merges -- so a word of n symbols costs O(n log n) instead of O(n^2).
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tok_heap_item {
    double prio;
    int left, right, lid, rid, new_id;
};

static int item_less(const struct tok_heap_item *a, const struct tok_heap_item *b) {
    return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

typedef struct {
    struct tok_heap_item *h;
    size_t n;
} heap;

static void heap_push(heap *hp, struct tok_heap_item it) {
    size_t i = hp->n++;
    hp->h[i] = it;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!item_less(&hp->h[i], &hp->h[p])) break;
        struct tok_heap_item x = hp->h[i]; hp->h[i] = hp->h[p]; hp->h[p] = x;
        i = p;
    }
}

static struct tok_heap_item heap_pop(heap *hp) {
    struct tok_heap_item top = hp->h[0];
    hp->h[0] = hp->h[--hp->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < hp->n && item_less(&hp->h[l], &hp->h[m])) m = l;
        if (r < hp->n && item_less(&hp->h[r], &hp->h[m])) m = r;
        if (m == i) break;
        struct tok_heap_item x = hp->h[i]; hp->h[i] = hp->h[m]; hp->h[m] = x;
        i = m;
    }
    return top;
}

// the merge of symbols a and b if there is one: priority (lower first) and merged id
static int lookup_pair(const ked_tokenizer *t, int a, int b, double *prio, int *id) {
    if (t->has_merges) {
        const tok_pair *p = tok_pairmap_get(&t->merges, a, b);
        if (!p) return 0;
        *prio = p->rank;
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
    *prio = -(double)t->score[m];
    *id = m;
    return 1;
}

void tok_bpe_work_free(tok_bpe_work *w) {
    free(w->prev); free(w->next); free(w->heap);
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
    for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
    for (int i = 0; i + 1 < n; i++) {
        double pr; int id;
        if (lookup_pair(t, sym[i].id, sym[i + 1].id, &pr, &id))
            heap_push(&hp, (struct tok_heap_item){pr, i, i + 1, sym[i].id, sym[i + 1].id, id});
    }
    while (hp.n > 0) {
        struct tok_heap_item it = heap_pop(&hp);
        int l = it.left, r = it.right;
        if (sym[l].id != it.lid || next[l] != r || sym[r].id != it.rid) continue; // stale
        sym[l].id = it.new_id;
        sym[l].end = sym[r].end;
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        sym[r].id = -2; // dead
        double pr; int id;
        if (prev[l] >= 0 && lookup_pair(t, sym[prev[l]].id, sym[l].id, &pr, &id))
            heap_push(&hp, (struct tok_heap_item){pr, prev[l], l, sym[prev[l]].id, sym[l].id, id});
        if (next[l] >= 0 && lookup_pair(t, sym[l].id, sym[next[l]].id, &pr, &id))
            heap_push(&hp, (struct tok_heap_item){pr, l, next[l], sym[l].id, sym[next[l]].id, id});
    }
    int m = 0;
    for (int i = 0; i >= 0; i = next[i]) sym[m++] = sym[i];
    return m;
}
