// keys.c: activations at the lookup token of a set of sequences, in one right-padded batch
// (right padding never changes a valid position's result): the MEMIT family's keys and layer
// outputs, and ROME's k0 and v0 when the bare prompt is not template 0 (ROME's k* comes from
// the v* run's first forward, vstar.c).
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"

ked_status edit_batch(const edit_seq *seqs, int n_seqs, const int *extra_ids, const int *extra,
                      int **ids, int **len, int *T, ked_error *err) {
    int t = 1;
    for (int i = 0; i < n_seqs; i++) {
        int n = seqs[i].n + (extra ? extra[i] : 0);
        if (n > t) t = n;
    }
    *ids = ked_malloc(sizeof(int) * (size_t)n_seqs * t, "batch", err);
    *len = ked_malloc(sizeof(int) * (size_t)n_seqs, "batch", err);
    if (!*ids || !*len) { free(*ids); free(*len); *ids = *len = NULL; return KED_ERR_NOMEM; }
    for (int i = 0; i < n_seqs; i++) {
        int *row = *ids + (size_t)i * t, n = seqs[i].n;
        memcpy(row, seqs[i].ids, sizeof(int) * (size_t)n);
        if (extra && extra[i] > 0) memcpy(row + n, extra_ids, sizeof(int) * (size_t)extra[i]);
        int used = n + (extra ? extra[i] : 0);
        for (int j = used; j < t; j++) row[j] = seqs[i].ids[0];
        (*len)[i] = used;
    }
    *T = t;
    return KED_OK;
}

ked_status edit_capture_at(const ked_model *m, const edit_seq *seqs, int n_seqs, int layer,
                           const ked_hook_point *points, float *const *outs, int n_points,
                           ked_error *err) {
    if (layer < 0 || layer >= m->cfg.n_layer)
        return ked_fail(err, KED_ERR_ARG, "edit layer %d outside the model's layers 0..%d", layer,
                        m->cfg.n_layer - 1);
    int *ids = NULL, *len = NULL, T = 0;
    ked_status st = edit_batch(seqs, n_seqs, NULL, NULL, &ids, &len, &T, err);
    if (st) return st;
    int *row = ked_malloc(sizeof(int) * (size_t)n_seqs, "hook sites", err);
    int *pos = ked_malloc(sizeof(int) * (size_t)n_seqs, "hook sites", err);
    ked_hook hooks[8];
    ked_run *r = NULL;
    if (!row || !pos || n_points > 8) { st = KED_ERR_NOMEM; goto done; }
    for (int i = 0; i < n_seqs; i++) { row[i] = i; pos[i] = seqs[i].lookup; }
    for (int k = 0; k < n_points; k++) {
        memset(&hooks[k], 0, sizeof hooks[k]);
        hooks[k].point = points[k];
        hooks[k].layer = layer;
        hooks[k].n = n_seqs;
        hooks[k].row = row;
        hooks[k].pos = pos;
        hooks[k].capture = outs[k];
    }
    if ((st = ked_run_new(m, n_seqs, T, T, 0, &r, err))) goto done;
    ked_forward_opts o = ked_forward_defaults();
    o.hooks = hooks;
    o.n_hooks = n_points;
    o.stop_after_layer = layer;
    o.n_logit = 0;
    st = ked_forward(m, r, ids, n_seqs, T, len, &o, err);
done:
    ked_run_free(r);
    free(ids); free(len); free(row); free(pos);
    return st;
}
