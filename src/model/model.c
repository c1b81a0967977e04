// model.c: a loaded model's accessors: config, sizes, parameters by their HF names (in the HF
// layout, undoing the family's load transform), gradient buffers, and freeing.
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/model.h"

void ked_model_free(ked_model *m) {
    if (!m) return;
    for (int i = 0; m->params && i < m->n_params; i++) {
        if (m->params[i].owned) free(m->params[i].w);
        if (m->params[i].owned16) free((void *)m->params[i].w16);
        free(m->params[i].grad);
    }
    free(m->params);
    for (int i = 0; i < m->n_names; i++) free(m->names[i]);
    free(m->names);
    free(m->inv_freq);
    st_set_close(m->st);
    if (m->map) munmap(m->map, m->map_len);
    free(m->path);
    free(m);
}

const ked_config *ked_model_config(const ked_model *m) { return &m->cfg; }
const char *ked_model_path(const ked_model *m) { return m->path; }
const char *ked_model_format(const ked_model *m) { return m->format; }
ked_dtype ked_model_file_dtype(const ked_model *m) { return m->file_dtype; }

int64_t ked_model_n_params(const ked_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (param_present(&m->params[i])) n += m->params[i].rows * m->params[i].cols;
    return n;
}

size_t ked_model_weight_bytes_dtype(const ked_model *m, ked_dtype dtype) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++) {
        const ked_param *p = &m->params[i];
        if (param_present(p) && (p->w ? KED_F32 : p->dtype) == dtype)
            n += (size_t)(p->rows * p->cols) * ked_dtype_size(dtype);
    }
    return n;
}

size_t ked_model_weight_bytes(const ked_model *m) {
    return ked_model_weight_bytes_dtype(m, KED_F32) + ked_model_weight_bytes_dtype(m, KED_F16) +
           ked_model_weight_bytes_dtype(m, KED_BF16);
}

int model_has_half(const ked_model *m) {
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].w && m->params[i].w16) return 1;
    return 0;
}

void model_param_row_f32(const ked_param *p, int64_t r, float *dst) {
    if (p->w) memcpy(dst, p->w + r * p->cols, sizeof(float) * (size_t)p->cols);
    else if (p->dtype == KED_BF16) ked_bf16_to_f32_row(p->w16 + r * p->cols, dst, (size_t)p->cols);
    else ked_f16_to_f32_row(p->w16 + r * p->cols, dst, (size_t)p->cols);
}

float *model_param_materialize_f32(ked_model *m, ked_param *p, ked_error *err) {
    if (p->w) return p->w;
    if (!p->w16) {
        ked_fail(err, KED_ERR_ARG, "%s: parameter slot is not used by this model", m->path);
        return NULL;
    }
    size_t n = (size_t)(p->rows * p->cols);
    float *w = ked_malloc(sizeof(float) * n, "f32 copy of a half-precision tensor", err);
    if (!w) return NULL;
    for (int64_t r = 0; r < p->rows; r++) model_param_row_f32(p, r, w + r * p->cols);
    if (p->owned16) free((void *)p->w16);
    p->w16 = NULL;
    p->owned16 = 0;
    p->dtype = KED_F32;
    p->w = w;
    p->owned = 1;
    return w;
}

int ked_model_n_tensors(const ked_model *m) { return m->n_names; }

const char *ked_model_tensor_name(const ked_model *m, int i) {
    return i >= 0 && i < m->n_names ? m->names[i] : NULL;
}

// resolve an HF name to its family entry and layer (-1 for global tensors)
static const family_tensor *resolve(const ked_model *m, const char *name, int *layer) {
    for (int i = 0; i < m->fam->n_tensors; i++) {
        const family_tensor *ft = &m->fam->tensors[i];
        if (!family_tensor_present(m->fam, ft, &m->cfg)) continue;
        if (!strstr(ft->pattern, "%d")) {
            if (!strcmp(ft->pattern, name)) { *layer = -1; return ft; }
            continue;
        }
        for (int l = 0; l < m->cfg.n_layer; l++) {
            char buf[256];
            snprintf(buf, sizeof buf, ft->pattern, l);
            if (!strcmp(buf, name)) { *layer = l; return ft; }
        }
    }
    return NULL;
}

static int n_parts(const family_tensor *ft) { return family_tensor_parts(ft); }

int ked_model_tensor_shape(const ked_model *m, const char *name, int64_t shape[2]) {
    int layer;
    const family_tensor *ft = resolve(m, name, &layer);
    if (!ft) return -1;
    int64_t rows = 0, cols = 0;
    for (int i = 0; i < n_parts(ft); i++) {
        ked_param *p = model_param(m, layer, ft->slot[i]);
        rows += p->rows;
        cols = p->cols;
    }
    if (cols == 1) { shape[0] = rows; shape[1] = 1; return 1; }
    if (ft->transform == T_COPY || ft->transform == T_QKV_HEADS) {
        shape[0] = rows;
        shape[1] = cols;
    }
    else { shape[0] = cols; shape[1] = rows; }
    return 2;
}

ked_status ked_model_tensor_read(const ked_model *m, const char *name, int grad, float *out,
                                 ked_error *err) {
    int layer;
    const family_tensor *ft = resolve(m, name, &layer);
    if (!ft) return ked_fail(err, KED_ERR_ARG, "%s: no tensor named '%s'", m->path, name);
    int64_t total = 0;
    for (int i = 0; i < n_parts(ft); i++) total += model_param(m, layer, ft->slot[i])->rows;
    int64_t off = 0;
    float *row = NULL; // one row in f32 for half-held tensors
    for (int i = 0; i < n_parts(ft); i++) {
        ked_param *p = model_param(m, layer, ft->slot[i]);
        const float *src = grad ? p->grad : p->w;
        if (grad && !src) {
            free(row);
            return ked_fail(err, KED_ERR_ARG, "%s: tensor '%s' has no gradient (enable it with "
                            "ked_model_grad_enable before the backward)", m->path, name);
        }
        if (!src && !row) {
            row = ked_malloc(sizeof(float) * (size_t)p->cols, name, err);
            if (!row) return KED_ERR_NOMEM;
        }
        int transposed = ft->transform == T_TRANSPOSE || ft->transform == T_SPLIT3_TRANSPOSE;
        int64_t D = m->cfg.head_dim;
        for (int64_t r = 0; r < p->rows; r++) {
            const float *x = src ? src + r * p->cols : row;
            if (!src) model_param_row_f32(p, r, row);
            if (ft->transform == T_QKV_HEADS) { // slot row h*D + d -> file row (h*3 + i)*D + d
                int64_t h = r / D, d = r % D;
                memcpy(out + ((h * 3 + i) * D + d) * p->cols, x, sizeof(float) * (size_t)p->cols);
            } else if (!transposed || p->cols == 1) {
                memcpy(out + off + r * p->cols, x, sizeof(float) * (size_t)p->cols);
            } else { // slot (rows, cols=in) -> file (in, total) at column offset off
                for (int64_t k = 0; k < p->cols; k++) out[k * total + off + r] = x[k];
            }
        }
        off += transposed && p->cols != 1 ? p->rows : p->rows * p->cols;
    }
    free(row);
    return KED_OK;
}

static ked_status enable_one(ked_model *m, int layer, const family_tensor *ft, ked_error *err) {
    for (int i = 0; i < n_parts(ft); i++) {
        ked_param *p = model_param(m, layer, ft->slot[i]);
        if (p->grad || !param_present(p)) continue;
        p->grad = ked_calloc((size_t)(p->rows * p->cols), sizeof(float), "gradient", err);
        if (!p->grad) return KED_ERR_NOMEM;
    }
    return KED_OK;
}

ked_status ked_model_grad_enable(ked_model *m, const char *name, ked_error *err) {
    if (!strcmp(name, "*")) {
        for (int i = 0; i < m->n_names; i++) {
            ked_status st = ked_model_grad_enable(m, m->names[i], err);
            if (st) return st;
        }
        return KED_OK;
    }
    int layer;
    const family_tensor *ft = resolve(m, name, &layer);
    if (!ft) return ked_fail(err, KED_ERR_ARG, "%s: no tensor named '%s'", m->path, name);
    return enable_one(m, layer, ft, err);
}

void ked_model_grad_zero(ked_model *m) {
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].grad)
            memset(m->params[i].grad, 0, sizeof(float) * (size_t)(m->params[i].rows * m->params[i].cols));
}
