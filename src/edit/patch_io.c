// patch_io.c: a patch as a safetensors file. Tensors: "<hf name>.delta" (dense) or "<hf name>.a"
// and "<hf name>.b" (low rank: delta = a b^T), all F32 in ked's layout (out, in) — for GPT-2's
// Conv1D tensors that is the transpose of the file layout. Metadata: format "ked-patch",
// version "1", method, base (the model's path), tensors (the HF names, comma-separated, in order),
// note (what the edit was).
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"
#include "io/safetensors.h"

ked_status ked_patch_save(const ked_patch *p, const ked_model *m, const char *path, ked_error *err) {
    int nt = p->n_state; // method state: "state.keys.L<layer>" (AlphaEdit's keys, (d_ff, n))
    for (int i = 0; i < p->n; i++) nt += p->e[i].rank ? 2 : 1;
    st_write_tensor *t = ked_calloc((size_t)(nt ? nt : 1), sizeof *t, "patch file", err);
    char **names = ked_calloc((size_t)(nt ? nt : 1), sizeof *names, "patch file", err);
    size_t list_len = 1;
    for (int i = 0; i < p->n; i++) list_len += strlen(p->names[i]) + 1;
    char *list = ked_calloc(list_len, 1, "patch file", err);
    ked_status st = KED_OK;
    if (!t || !names || !list) { st = KED_ERR_NOMEM; goto done; }
    int k = 0;
    for (int i = 0; i < p->n; i++) {
        const patch_entry *e = &p->e[i];
        if (i) strcat(list, ",");
        strcat(list, p->names[i]);
        const char *sfx[2] = {e->rank ? ".a" : ".delta", ".b"};
        for (int part = 0; part < (e->rank ? 2 : 1); part++, k++) {
            size_t len = strlen(p->names[i]) + 8;
            names[k] = malloc(len);
            if (!names[k]) { st = ked_fail(err, KED_ERR_NOMEM, "patch file: out of memory"); goto done; }
            snprintf(names[k], len, "%s%s", p->names[i], sfx[part]);
            t[k].name = names[k];
            t[k].dtype = KED_F32;
            t[k].ndim = 2;
            if (!e->rank) { t[k].shape[0] = e->rows; t[k].shape[1] = e->cols; t[k].data = e->delta; }
            else if (!part) { t[k].shape[0] = e->rows; t[k].shape[1] = e->rank; t[k].data = e->a; }
            else { t[k].shape[0] = e->cols; t[k].shape[1] = e->rank; t[k].data = e->b; }
        }
    }
    for (int i = 0; i < p->n_state; i++, k++) {
        names[k] = malloc(32);
        if (!names[k]) { st = ked_fail(err, KED_ERR_NOMEM, "patch file: out of memory"); goto done; }
        snprintf(names[k], 32, "state.keys.L%d", p->state[i].layer);
        t[k].name = names[k];
        t[k].dtype = KED_F32;
        t[k].ndim = 2;
        t[k].shape[0] = p->state[i].rows;
        t[k].shape[1] = p->state[i].cols;
        t[k].data = p->state[i].data;
    }
    const char *keys[6] = {"format", "version", "method", "base", "tensors", "note"};
    const char *vals[6] = {"ked-patch", "1", p->method, ked_model_path(m), list, ked_patch_note(p)};
    st = st_write(path, t, nt, keys, vals, 6, err);
done:
    for (int i = 0; names && i < nt; i++) free(names[i]);
    free(names);
    free(t);
    free(list);
    return st;
}

// a tensor of f as floats, shape-checked
static ked_status read_part(st_file *f, const char *name, int64_t d0, int64_t d1, float **out,
                            ked_error *err) {
    const st_tensor *t = st_find(f, name);
    if (!t) return ked_fail(err, KED_ERR_FORMAT, "%s: missing tensor '%s'", st_path(f), name);
    if (t->ndim != 2 || t->shape[0] != d0 || (d1 >= 0 && t->shape[1] != d1) || t->shape[1] <= 0) {
        char want[64];
        if (d1 >= 0) snprintf(want, sizeof want, "(%lld, %lld)", (long long)d0, (long long)d1);
        else snprintf(want, sizeof want, "(%lld, rank)", (long long)d0);
        return ked_fail(err, KED_ERR_FORMAT, "%s: tensor '%s' should be %s for this model",
                        st_path(f), name, want);
    }
    float *buf = ked_malloc(sizeof(float) * (size_t)t->numel, "patch tensor", err);
    if (!buf) return KED_ERR_NOMEM;
    ked_status st = st_to_f32(f, t, buf, err);
    if (st) { free(buf); return st; }
    *out = buf;
    return KED_OK;
}

ked_status ked_patch_load(const ked_model *m, const char *path, ked_patch **out, ked_error *err) {
    st_file *f = NULL;
    ked_status st = st_open(path, &f, err);
    if (st) return st;
    const char *fmt = st_metadata(f, "format"), *method = st_metadata(f, "method");
    const char *list = st_metadata(f, "tensors");
    ked_patch *p = NULL;
    char *copy = NULL;
    if (!fmt || strcmp(fmt, "ked-patch") || !method || !list) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: not a ked patch (metadata format \"ked-patch\", "
                      "method and tensors expected)", path);
        goto done;
    }
    if ((st = patch_new(method, &p, err))) goto done;
    copy = strdup(list);
    if (!copy) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    for (char *save = NULL, *name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        int layer, slot;
        if (!patch_find_slot(m, name, &layer, &slot)) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: tensor '%s' is not a tensor of %s", path, name,
                          ked_model_path(m));
            goto done;
        }
        const ked_param *w = model_param(m, layer, slot);
        char tn[300];
        snprintf(tn, sizeof tn, "%s.delta", name);
        float *a = NULL, *b = NULL;
        if (st_find(f, tn)) {
            if ((st = read_part(f, tn, w->rows, w->cols, &a, err))) goto done;
            st = patch_add_dense(p, m, layer, slot, a, err);
        } else {
            snprintf(tn, sizeof tn, "%s.a", name);
            if ((st = read_part(f, tn, w->rows, -1, &a, err))) goto done;
            int rank = (int)st_find(f, tn)->shape[1];
            snprintf(tn, sizeof tn, "%s.b", name);
            if (!(st = read_part(f, tn, w->cols, rank, &b, err)))
                st = patch_add_lowrank(p, m, layer, slot, rank, a, b, err);
        }
        free(a);
        free(b);
        if (st) { ked_prefix_error(err, "%s", path); goto done; }
    }
    for (int l = 0; l < ked_model_config(m)->n_layer && p->n_state < KED_MAX_EDIT_LAYERS; l++) {
        char tn[32];
        snprintf(tn, sizeof tn, "state.keys.L%d", l);
        if (!st_find(f, tn)) continue;
        float *kd = NULL;
        if ((st = read_part(f, tn, ked_model_config(m)->d_ff, -1, &kd, err))) goto done;
        p->state[p->n_state].layer = l;
        p->state[p->n_state].rows = ked_model_config(m)->d_ff;
        p->state[p->n_state].cols = st_find(f, tn)->shape[1];
        p->state[p->n_state].data = kd;
        p->n_state++;
    }
    const char *note = st_metadata(f, "note");
    if (note && *note && (st = ked_patch_set_note(p, note, err))) goto done;
    *out = p;
    p = NULL;
done:
    free(copy);
    ked_patch_free(p);
    st_close(f);
    return st;
}
