// patch.c: patches over an immutable base (design.md §2) and the editor that keeps
// live tensor = base + the applied patches, added in list order in fp32.
//
// The rule that makes rollback bit-exact: a tensor's live buffer is only ever (re)computed as
// memcpy(base) followed by each active patch's entry added element by element in list order.
// Appending a patch adds it to the live buffer, which is the same sequence of float operations
// as recomputing; reverting or re-applying recomputes every tensor the patch touches.
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"

/* ---- patches -------------------------------------------------------------------------------- */

ked_status patch_new(const char *method, ked_patch **out, ked_error *err) {
    ked_patch *p = ked_calloc(1, sizeof *p, "patch", err);
    if (!p) return KED_ERR_NOMEM;
    snprintf(p->method, sizeof p->method, "%s", method);
    *out = p;
    return KED_OK;
}

void ked_patch_free(ked_patch *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        free(p->e[i].delta); free(p->e[i].a); free(p->e[i].b);
        free(p->names[i]);
    }
    free(p->e);
    free(p->names);
    free(p->note);
    for (int i = 0; i < p->n_state; i++) free(p->state[i].data);
    free(p);
}

const char *ked_patch_note(const ked_patch *p) { return p->note ? p->note : ""; }
ked_status ked_patch_set_note(ked_patch *p, const char *note, ked_error *err) {
    char *n = strdup(note ? note : "");
    if (!n) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    free(p->note);
    p->note = n;
    return KED_OK;
}

const char *ked_patch_method(const ked_patch *p) { return p->method; }
int ked_patch_n_entries(const ked_patch *p) { return p->n; }
const char *ked_patch_entry(const ked_patch *p, int i, int *rank) {
    if (i < 0 || i >= p->n) return NULL;
    if (rank) *rank = p->e[i].rank;
    return p->names[i];
}

// the family entry of a slot (one slot per HF tensor: not the fused GPT-2 c_attn)
static const family_tensor *slot_entry(const ked_model *m, int layer, int slot) {
    for (int i = 0; i < m->fam->n_tensors; i++) {
        const family_tensor *ft = &m->fam->tensors[i];
        int layered = strstr(ft->pattern, "%d") != NULL;
        if (layered != (layer >= 0) || ft->slot[0] != slot) continue;
        if (ft->transform == T_SPLIT3 || ft->transform == T_SPLIT3_TRANSPOSE) continue;
        if (!family_tensor_present(m->fam, ft, &m->cfg)) continue;
        return ft;
    }
    return NULL;
}

int patch_hf_name(const ked_model *m, int layer, int slot, char *buf, size_t cap) {
    const family_tensor *ft = slot_entry(m, layer, slot);
    if (!ft) return 0;
    if (layer >= 0) snprintf(buf, cap, ft->pattern, layer);
    else snprintf(buf, cap, "%s", ft->pattern);
    return 1;
}

int patch_find_slot(const ked_model *m, const char *name, int *layer, int *slot) {
    char buf[256];
    for (int i = 0; i < m->fam->n_tensors; i++) {
        const family_tensor *ft = &m->fam->tensors[i];
        if (ft->transform == T_SPLIT3 || ft->transform == T_SPLIT3_TRANSPOSE) continue;
        if (!family_tensor_present(m->fam, ft, &m->cfg)) continue;
        if (!strstr(ft->pattern, "%d")) {
            if (!strcmp(ft->pattern, name)) { *layer = -1; *slot = ft->slot[0]; return 1; }
            continue;
        }
        for (int l = 0; l < m->cfg.n_layer; l++) {
            snprintf(buf, sizeof buf, ft->pattern, l);
            if (!strcmp(buf, name)) { *layer = l; *slot = ft->slot[0]; return 1; }
        }
    }
    return 0;
}

// append an entry for (layer, slot) after checking it exists and is not already in p
static ked_status add_entry(ked_patch *p, const ked_model *m, int layer, int slot,
                            patch_entry **out, ked_error *err) {
    if (layer >= m->cfg.n_layer || (layer >= 0 && (slot < 0 || slot >= P_LAYER_COUNT)) ||
        (layer < 0 && (slot < 0 || slot >= G_COUNT)))
        return ked_fail(err, KED_ERR_ARG, "patch: no parameter slot %d of layer %d", slot, layer);
    ked_param *w = model_param(m, layer, slot);
    char name[256];
    if (!param_present(w) || !patch_hf_name(m, layer, slot, name, sizeof name))
        return ked_fail(err, KED_ERR_ARG, "patch: %s has no tensor in slot %d of layer %d",
                        m->path, slot, layer);
    for (int i = 0; i < p->n; i++)
        if (p->e[i].layer == layer && p->e[i].slot == slot)
            return ked_fail(err, KED_ERR_ARG, "patch: tensor %s twice in one patch", name);
    patch_entry *e = realloc(p->e, sizeof *e * (size_t)(p->n + 1));
    if (!e) return ked_fail(err, KED_ERR_NOMEM, "patch: out of memory");
    p->e = e;
    char **names = realloc(p->names, sizeof *names * (size_t)(p->n + 1));
    if (!names) return ked_fail(err, KED_ERR_NOMEM, "patch: out of memory");
    p->names = names;
    p->names[p->n] = strdup(name);
    if (!p->names[p->n]) return ked_fail(err, KED_ERR_NOMEM, "patch: out of memory");
    memset(&p->e[p->n], 0, sizeof p->e[p->n]);
    p->e[p->n].layer = layer;
    p->e[p->n].slot = slot;
    p->e[p->n].rows = w->rows;
    p->e[p->n].cols = w->cols;
    *out = &p->e[p->n];
    p->n++;
    return KED_OK;
}

static void drop_last(ked_patch *p) {
    p->n--;
    free(p->names[p->n]);
    free(p->e[p->n].delta); free(p->e[p->n].a); free(p->e[p->n].b);
}

ked_status patch_add_dense(ked_patch *p, const ked_model *m, int layer, int slot,
                           const float *delta, ked_error *err) {
    patch_entry *e;
    ked_status st = add_entry(p, m, layer, slot, &e, err);
    if (st) return st;
    size_t n = (size_t)(e->rows * e->cols);
    e->delta = ked_malloc(sizeof(float) * n, "patch delta", err);
    if (!e->delta) { drop_last(p); return KED_ERR_NOMEM; }
    memcpy(e->delta, delta, sizeof(float) * n);
    return KED_OK;
}

ked_status patch_add_lowrank(ked_patch *p, const ked_model *m, int layer, int slot, int rank,
                             const float *a, const float *b, ked_error *err) {
    if (rank <= 0) return ked_fail(err, KED_ERR_ARG, "patch: rank %d must be positive", rank);
    patch_entry *e;
    ked_status st = add_entry(p, m, layer, slot, &e, err);
    if (st) return st;
    e->rank = rank;
    e->a = ked_malloc(sizeof(float) * (size_t)(e->rows * rank), "patch factor", err);
    e->b = ked_malloc(sizeof(float) * (size_t)(e->cols * rank), "patch factor", err);
    if (!e->a || !e->b) { drop_last(p); return KED_ERR_NOMEM; }
    memcpy(e->a, a, sizeof(float) * (size_t)(e->rows * rank));
    memcpy(e->b, b, sizeof(float) * (size_t)(e->cols * rank));
    return KED_OK;
}

void patch_entry_add(const patch_entry *e, float *w) {
    int64_t R = e->rows, Cc = e->cols;
    if (e->rank == 0) {
        #pragma omp parallel for if (R * Cc > 65536)
        for (int64_t i = 0; i < R * Cc; i++) w[i] += e->delta[i];
        return;
    }
    int K = e->rank;
    #pragma omp parallel for if (R * Cc > 65536)
    for (int64_t i = 0; i < R; i++) {
        const float *ai = e->a + i * K;
        float *wi = w + i * Cc;
        for (int64_t j = 0; j < Cc; j++) {
            const float *bj = e->b + j * K;
            float d = 0.0f;
            for (int k = 0; k < K; k++) d += ai[k] * bj[k];
            wi[j] += d;
        }
    }
}

/* ---- temporarily writable weights ------------------------------------------------------------ */

ked_status temp_weight_begin(ked_model *m, int layer, int slot, temp_weight *t, ked_error *err) {
    ked_param *p = model_param(m, layer, slot);
    size_t n = (size_t)(p->rows * p->cols);
    // a tensor held in f16/bf16 (keep_half) becomes f32 for good before it is written
    if (!model_param_materialize_f32(m, p, err)) return err ? err->status : KED_ERR_NOMEM;
    t->p = p;
    t->orig = p->w;
    t->tmp = ked_malloc(sizeof(float) * n, "temporary weight", err);
    if (!t->tmp) return KED_ERR_NOMEM;
    memcpy(t->tmp, p->w, sizeof(float) * n);
    p->w = t->tmp;
    return KED_OK;
}

void temp_weight_end(temp_weight *t) {
    if (!t->p) return;
    t->p->w = t->orig;
    free(t->tmp);
    t->p = NULL;
    t->tmp = NULL;
}

/* ---- the editor --------------------------------------------------------------------------------- */

typedef struct {
    int layer, slot;
    float *base;              // the tensor as loaded (a memory map or a converted buffer)
    int base_owned;           // the model's `owned` flag for base, given back at the end
    float *live;              // base + active patches; param->w points here
} ed_tensor;

struct ked_editor {
    ked_model *m;
    ed_tensor *t;
    int n_t;
    ked_patch **p;
    int *active;
    int n_p, cap_p;
};

ked_status ked_editor_new(ked_model *m, ked_editor **out, ked_error *err) {
    ked_editor *e = ked_calloc(1, sizeof *e, "editor", err);
    if (!e) return KED_ERR_NOMEM;
    e->m = m;
    *out = e;
    return KED_OK;
}

void ked_editor_free(ked_editor *e) {
    if (!e) return;
    for (int i = 0; i < e->n_t; i++) {
        ked_param *p = model_param(e->m, e->t[i].layer, e->t[i].slot);
        p->w = e->t[i].base;
        p->owned = e->t[i].base_owned;
        free(e->t[i].live);
    }
    for (int i = 0; i < e->n_p; i++) ked_patch_free(e->p[i]);
    free(e->t);
    free(e->p);
    free(e->active);
    free(e);
}

int ked_editor_n_patches(const ked_editor *e) { return e->n_p; }
ked_model *ked_editor_model(const ked_editor *e) { return e->m; }

// a 64-bit hash of the base weights (what the model was loaded as, whatever patches are applied):
// every parameter slot in order, its shape and its floats as 64-bit words, FNV-1a style
uint64_t ked_editor_base_hash(const ked_editor *e) {
    const ked_model *m = e->m;
    uint64_t h = 0xcbf29ce484222325ull;
    const uint64_t prime = 0x100000001b3ull;
    for (int i = 0; i < m->n_params; i++) {
        const ked_param *p = &m->params[i];
        if (!param_present(p)) continue;
        const float *w = p->w; // NULL: held in f16/bf16, hashed as its (exact) f32 widening
        for (int k = 0; k < e->n_t; k++)
            if (model_param(m, e->t[k].layer, e->t[k].slot) == p) w = e->t[k].base;
        h = (h ^ (uint64_t)i) * prime;
        h = (h ^ (uint64_t)p->rows) * prime;
        h = (h ^ (uint64_t)p->cols) * prime;
        size_t n = (size_t)(p->rows * p->cols);
        float buf[1024]; // an even chunk, so the 8-byte words pair the same elements
        for (size_t c0 = 0; c0 < n; c0 += 1024) {
            size_t cn = n - c0 < 1024 ? n - c0 : 1024, k = 0;
            const float *x = w ? w + c0 : buf;
            if (!w && p->dtype == KED_BF16) ked_bf16_to_f32_row(p->w16 + c0, buf, cn);
            else if (!w) ked_f16_to_f32_row(p->w16 + c0, buf, cn);
            for (; k + 2 <= cn; k += 2) {
                uint64_t word;
                memcpy(&word, x + k, 8);
                h = (h ^ word) * prime;
                h ^= h >> 29;
            }
            if (k < cn) { uint32_t y; memcpy(&y, x + k, 4); h = (h ^ y) * prime; }
        }
    }
    return h;
}
int ked_editor_is_active(const ked_editor *e, int id) {
    return id >= 0 && id < e->n_p && e->active[id];
}
const ked_patch *ked_editor_patch(const ked_editor *e, int id) {
    return id >= 0 && id < e->n_p ? e->p[id] : NULL;
}

static ed_tensor *find_tensor(ked_editor *e, int layer, int slot) {
    for (int i = 0; i < e->n_t; i++)
        if (e->t[i].layer == layer && e->t[i].slot == slot) return &e->t[i];
    return NULL;
}

// the editor's tensor for (layer, slot), giving it its own fp32 buffer on first use
static ked_status own_tensor(ked_editor *e, int layer, int slot, ed_tensor **out, ked_error *err) {
    ed_tensor *t = find_tensor(e, layer, slot);
    if (t) { *out = t; return KED_OK; }
    ked_param *p = model_param(e->m, layer, slot);
    size_t n = (size_t)(p->rows * p->cols);
    // a base held in f16/bf16 (keep_half) is widened to f32 once: an edited tensor is held in
    // fp32 (design.md section 2); the widening is exact, so the base is unchanged
    if (!model_param_materialize_f32(e->m, p, err)) return err ? err->status : KED_ERR_NOMEM;
    ed_tensor *nt = realloc(e->t, sizeof *nt * (size_t)(e->n_t + 1));
    if (!nt) return ked_fail(err, KED_ERR_NOMEM, "editor: out of memory");
    e->t = nt;
    t = &e->t[e->n_t];
    t->live = ked_malloc(sizeof(float) * n, "live weights", err);
    if (!t->live) return KED_ERR_NOMEM;
    t->layer = layer;
    t->slot = slot;
    t->base = p->w;
    t->base_owned = p->owned;
    memcpy(t->live, p->w, sizeof(float) * n);
    p->w = t->live;
    p->owned = 0; // the editor frees live and hands base back
    e->n_t++;
    *out = t;
    return KED_OK;
}

// live = base, then every active patch's entry for this tensor in list order
static void recompute(ked_editor *e, ed_tensor *t) {
    ked_param *p = model_param(e->m, t->layer, t->slot);
    memcpy(t->live, t->base, sizeof(float) * (size_t)(p->rows * p->cols));
    for (int i = 0; i < e->n_p; i++) {
        if (!e->active[i]) continue;
        const ked_patch *q = e->p[i];
        for (int j = 0; j < q->n; j++)
            if (q->e[j].layer == t->layer && q->e[j].slot == t->slot) patch_entry_add(&q->e[j], t->live);
    }
}

static ked_status check_patch(const ked_editor *e, const ked_patch *p, ked_error *err) {
    for (int i = 0; i < p->n; i++) {
        const patch_entry *pe = &p->e[i];
        ked_param *w = model_param(e->m, pe->layer, pe->slot);
        if (pe->layer >= e->m->cfg.n_layer || !param_present(w) || w->rows != pe->rows ||
            w->cols != pe->cols)
            return ked_fail(err, KED_ERR_ARG, "patch %s: tensor %s does not match the model "
                            "(%lld x %lld)", p->method, p->names[i], (long long)pe->rows,
                            (long long)pe->cols);
    }
    return KED_OK;
}

ked_status ked_editor_apply(ked_editor *e, ked_patch *p, int *id, ked_error *err) {
    ked_status st = check_patch(e, p, err);
    if (st) { ked_patch_free(p); return st; }
    if (e->n_p == e->cap_p) {
        int cap = e->cap_p ? 2 * e->cap_p : 8;
        ked_patch **np = realloc(e->p, sizeof *np * (size_t)cap);
        if (np) e->p = np;
        int *na = np ? realloc(e->active, sizeof *na * (size_t)cap) : NULL;
        if (na) e->active = na;
        if (!np || !na) { ked_patch_free(p); return ked_fail(err, KED_ERR_NOMEM, "editor: out of memory"); }
        e->cap_p = cap;
    }
    ed_tensor **ts = ked_calloc((size_t)(p->n ? p->n : 1), sizeof *ts, "editor", err);
    if (!ts) { ked_patch_free(p); return KED_ERR_NOMEM; }
    for (int i = 0; i < p->n; i++) {
        // pointers into e->t move when it grows: look them up again after all are owned
        st = own_tensor(e, p->e[i].layer, p->e[i].slot, &ts[i], err);
        if (st) { free(ts); ked_patch_free(p); return st; }
    }
    for (int i = 0; i < p->n; i++) {
        ed_tensor *t = find_tensor(e, p->e[i].layer, p->e[i].slot);
        patch_entry_add(&p->e[i], t->live); // the last in the list: same as recomputing
    }
    free(ts);
    e->p[e->n_p] = p;
    e->active[e->n_p] = 1;
    if (id) *id = e->n_p;
    e->n_p++;
    return KED_OK;
}

static ked_status set_active(ked_editor *e, int id, int on, ked_error *err) {
    if (id < 0 || id >= e->n_p)
        return ked_fail(err, KED_ERR_ARG, "editor: no patch %d (%d in the list)", id, e->n_p);
    if (e->active[id] == on)
        return ked_fail(err, KED_ERR_ARG, "editor: patch %d is already %s", id,
                        on ? "applied" : "reverted");
    e->active[id] = on;
    const ked_patch *p = e->p[id];
    for (int i = 0; i < p->n; i++) recompute(e, find_tensor(e, p->e[i].layer, p->e[i].slot));
    return KED_OK;
}

ked_status ked_editor_revert(ked_editor *e, int id, ked_error *err) { return set_active(e, id, 0, err); }
ked_status ked_editor_reapply(ked_editor *e, int id, ked_error *err) { return set_active(e, id, 1, err); }
