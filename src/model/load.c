// load.c: build a ked_model from what users have: a Hugging Face directory (config.json +
// safetensors, through the family table) or a llama2.c checkpoint (converted to HF LLaMA).
// Everything is validated before it is used (design.md §4).
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"

#define TRY(x) do { ked_status st_ = (x); if (st_) return st_; } while (0)

// expected (rows, cols) of a slot in ked's layout
static void slot_shape(const ked_config *c, int layered, int s, int64_t *rows, int64_t *cols) {
    int64_t C = c->d_model, Q = (int64_t)c->n_head * c->head_dim;
    int64_t KV = (int64_t)c->n_kv_head * c->head_dim, F = c->d_ff, V = c->vocab;
    *cols = 1;
    if (!layered) {
        switch (s) {
        case G_EMBED: *rows = V; *cols = C; return;
        case G_POS_EMBED: *rows = c->max_pos; *cols = C; return;
        case G_HEAD_W: *rows = V; *cols = C; return;
        case G_HEAD_B: *rows = V; return;
        default: *rows = C; return; // final norm
        }
    }
    switch (s) {
    case P_WQ: *rows = Q; *cols = C; return;
    case P_BQ: *rows = Q; return;
    case P_WK: case P_WV: *rows = KV; *cols = C; return;
    case P_BK: case P_BV: *rows = KV; return;
    case P_WO: *rows = C; *cols = Q; return;
    case P_WGATE: case P_WUP: *rows = F; *cols = C; return;
    case P_BGATE: case P_BUP: *rows = F; return;
    case P_WDOWN: *rows = C; *cols = F; return;
    default: *rows = C; return; // norms and C-wide biases
    }
}

ked_param *model_param(const ked_model *m, int layer, int slot) {
    return &m->params[layer < 0 ? PARAM_GLOBAL(slot) : PARAM_LAYER(layer, slot)];
}

static ked_status alloc_params(ked_model *m, ked_error *err) {
    m->n_params = G_COUNT + m->cfg.n_layer * P_LAYER_COUNT;
    m->params = ked_calloc((size_t)m->n_params, sizeof(ked_param), "parameter table", err);
    return m->params ? KED_OK : KED_ERR_NOMEM;
}

static ked_status compute_inv_freq(ked_model *m, ked_error *err) {
    const ked_config *c = &m->cfg;
    if (c->pos != KED_POS_ROTARY) return KED_OK;
    int half = c->rot_dim / 2;
    m->inv_freq = ked_malloc(sizeof(float) * (size_t)half, "rotary frequencies", err);
    if (!m->inv_freq) return KED_ERR_NOMEM;
    rope_inv_freq(c, m->inv_freq); // rope_scaling.c: HF's formula, scaling applied
    return KED_OK;
}

static ked_status add_name(ked_model *m, const char *name, ked_error *err) {
    char **names = realloc(m->names, sizeof(char *) * (size_t)(m->n_names + 1));
    if (!names) return ked_fail(err, KED_ERR_NOMEM, "out of memory for tensor names");
    m->names = names;
    m->names[m->n_names] = strdup(name);
    if (!m->names[m->n_names]) return ked_fail(err, KED_ERR_NOMEM, "out of memory for tensor names");
    m->n_names++;
    return KED_OK;
}

/* ---- Hugging Face directories ------------------------------------------------------------- */

// find an HF tensor by name: as is, with a family prefix, or through a __metadata__ alias
// (TinyStories-656K stores only lm_head.weight and names model.embed_tokens.weight as its alias)
static const st_tensor *find_tensor(const ked_model *m, const char *name, const st_file **file) {
    const st_tensor *t = st_set_find(m->st, name, file);
    for (const char *const *p = m->fam->prefixes; !t && *p; p++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s%s", *p, name);
        t = st_set_find(m->st, buf, file);
    }
    if (!t) {
        const char *alias = st_set_metadata(m->st, name);
        if (alias) t = st_set_find(m->st, alias, file);
    }
    return t;
}

// the file's pages of a tensor that has been converted into ked's own buffer are not needed any
// more: drop them from memory, or a converted model is held twice (GPT-2's Conv1D weights are
// transposed: 1.4x the weights' bytes resident after load without this). The map is private and
// read-only, so a later read would only fault the bytes back in from the file.
static void release_mapped(const void *data, size_t n) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)data + page - 1) & ~(page - 1), b = ((uintptr_t)data + n) & ~(page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

// fill the slot(s) of one family tensor from the file
static ked_status load_tensor(ked_model *m, const family_tensor *ft, int layer, const char *name,
                              ked_error *err) {
    const ked_config *c = &m->cfg;
    const st_file *file = NULL;
    const st_tensor *t = find_tensor(m, name, &file);
    const char *where = st_path(st_set_file(m->st, 0));
    if (!t) return ked_fail(err, KED_ERR_FORMAT, "%s: missing tensor '%s' (a %s model with this "
                            "config.json has it)", where, name, m->fam->name);
    where = st_path(file);
    int layered = layer >= 0;
    int nparts = family_tensor_parts(ft);
    int64_t rows[3], cols[3], total_rows = 0;
    for (int i = 0; i < nparts; i++) {
        slot_shape(c, layered, ft->slot[i], &rows[i], &cols[i]);
        total_rows += rows[i];
    }
    // the shape the file must have
    int64_t want[2] = {0, 0};
    int want_ndim = cols[0] == 1 ? 1 : 2;
    switch (ft->transform) {
    case T_COPY: want[0] = rows[0]; want[1] = cols[0]; break;
    case T_TRANSPOSE: want[0] = cols[0]; want[1] = rows[0]; break;
    case T_SPLIT3_TRANSPOSE: want[0] = cols[0]; want[1] = total_rows; break;
    case T_SPLIT3: want[0] = total_rows; want[1] = 1; break;
    case T_QKV_HEADS: want[0] = total_rows; want[1] = cols[0]; break;
    }
    if (ft->transform == T_TRANSPOSE && want_ndim == 1) want[0] = rows[0];
    int ok = t->ndim == want_ndim && t->shape[0] == want[0] && (want_ndim == 1 || t->shape[1] == want[1]);
    if (!ok) {
        char got[128] = "", *p = got;
        for (int i = 0; i < t->ndim && p < got + 100; i++)
            p += sprintf(p, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (want_ndim == 1)
            return ked_fail(err, KED_ERR_FORMAT, "%s: tensor '%s' has shape [%s], config.json "
                            "implies [%lld]", where, t->name, got, (long long)want[0]);
        return ked_fail(err, KED_ERR_FORMAT, "%s: tensor '%s' has shape [%s], config.json implies "
                        "[%lld, %lld]", where, t->name, got, (long long)want[0], (long long)want[1]);
    }
    if (t->dtype != KED_F32 && t->dtype != KED_F16 && t->dtype != KED_BF16 && t->dtype != KED_F64)
        return ked_fail(err, KED_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; weights must be "
                        "F32, F16, BF16 or F64", where, t->name, ked_dtype_name(t->dtype));
    m->file_dtype = t->dtype;

    // f32 in ked's layout: use it in place from the read-only map (no copy) when aligned
    ked_param *p0 = model_param(m, layer, ft->slot[0]);
    int half = t->dtype == KED_F16 || t->dtype == KED_BF16;
    int keep16 = m->keep_half && half && cols[0] > 1; // matrices only; vectors are always f32
    if (ft->transform == T_COPY && t->dtype == KED_F32 && ((uintptr_t)t->data % 4) == 0) {
        p0->w = (float *)t->data;
        p0->rows = rows[0]; p0->cols = cols[0]; p0->owned = 0;
        return KED_OK;
    }
    // f16/bf16 kept half, in ked's layout: in place from the map too
    if (keep16 && ft->transform == T_COPY && ((uintptr_t)t->data % 2) == 0) {
        p0->w16 = (const uint16_t *)t->data;
        p0->dtype = t->dtype;
        p0->rows = rows[0]; p0->cols = cols[0]; p0->owned16 = 0;
        return KED_OK;
    }
    float *tmp = ked_malloc(sizeof(float) * (size_t)t->numel, t->name, err);
    if (!tmp) return KED_ERR_NOMEM;
    ked_status st = st_to_f32(file, t, tmp, err);
    if (st) { free(tmp); return st; }
    release_mapped(t->data, t->nbytes);
    float *part[3] = {NULL, NULL, NULL};
    if (ft->transform == T_COPY || (ft->transform == T_TRANSPOSE && cols[0] == 1)) {
        part[0] = tmp;
    } else if (ft->transform == T_TRANSPOSE) { // file (in = cols, out = rows) -> (rows, cols)
        part[0] = ked_malloc(sizeof(float) * (size_t)t->numel, t->name, err);
        if (!part[0]) { free(tmp); return KED_ERR_NOMEM; }
        for (int64_t r = 0; r < rows[0]; r++)
            for (int64_t k = 0; k < cols[0]; k++) part[0][r * cols[0] + k] = tmp[k * rows[0] + r];
        free(tmp);
    } else {
        // T_SPLIT3(_TRANSPOSE): split along the file's last (out) dimension, then transpose each
        // part to (out, in). T_QKV_HEADS: file rows h*3D + j*D + d (j = q, k, v) -> part j's row
        // h*D + d (the per-head view modeling_gpt_neox.py takes of its fused projection).
        int64_t off = 0;
        for (int i = 0; i < nparts; i++) {
            float *w = ked_malloc(sizeof(float) * (size_t)(rows[i] * cols[i]), t->name, err);
            if (!w) {
                for (int k = 0; k < i; k++) free(part[k]);
                free(tmp);
                return KED_ERR_NOMEM;
            }
            if (ft->transform == T_SPLIT3) {
                memcpy(w, tmp + off, sizeof(float) * (size_t)rows[i]);
            } else if (ft->transform == T_SPLIT3_TRANSPOSE) { // file (cols, total_rows)
                for (int64_t r = 0; r < rows[i]; r++)
                    for (int64_t k = 0; k < cols[i]; k++)
                        w[r * cols[i] + k] = tmp[k * total_rows + off + r];
            } else { // T_QKV_HEADS: (total_rows, cols) with total_rows = 3 * H * D
                int64_t D = c->head_dim, H = rows[i] / D;
                for (int64_t h = 0; h < H; h++)
                    memcpy(w + h * D * cols[i], tmp + ((h * 3 + i) * D) * cols[i],
                           sizeof(float) * (size_t)(D * cols[i]));
            }
            part[i] = w;
            off += rows[i];
        }
        free(tmp);
    }
    for (int i = 0; i < nparts; i++) {
        ked_param *p = model_param(m, layer, ft->slot[i]);
        p->rows = rows[i]; p->cols = cols[i];
        if (!keep16) { p->w = part[i]; p->owned = 1; continue; }
        // narrow back to the file's dtype: exact, the values came from it
        size_t n = (size_t)(rows[i] * cols[i]);
        uint16_t *w16 = ked_malloc(sizeof(uint16_t) * n, t->name, err);
        if (!w16) {
            for (int k = i; k < nparts; k++) free(part[k]);
            return KED_ERR_NOMEM;
        }
        if (t->dtype == KED_BF16) ked_f32_to_bf16_row(part[i], w16, n);
        else ked_f32_to_f16_row(part[i], w16, n);
        free(part[i]);
        p->w16 = w16; p->dtype = t->dtype; p->owned16 = 1;
    }
    return KED_OK;
}

static ked_status for_each_tensor_name(ked_model *m, ked_error *err,
                                       ked_status (*fn)(ked_model *, const family_tensor *, int,
                                                        const char *, ked_error *)) {
    for (int i = 0; i < m->fam->n_tensors; i++) {
        const family_tensor *ft = &m->fam->tensors[i];
        if (!family_tensor_present(m->fam, ft, &m->cfg)) continue;
        int layered = strstr(ft->pattern, "%d") != NULL;
        for (int l = 0; l < (layered ? m->cfg.n_layer : 1); l++) {
            char name[256];
            snprintf(name, sizeof name, ft->pattern, l);
            TRY(fn(m, ft, layered ? l : -1, name, err));
        }
    }
    return KED_OK;
}

static ked_status load_and_name(ked_model *m, const family_tensor *ft, int layer, const char *name,
                                ked_error *err) {
    TRY(load_tensor(m, ft, layer, name, err));
    return add_name(m, name, err);
}

#define SUPPORTED "llama, mistral, qwen2, gpt2, gptj, gpt_neox"

static ked_status read_config(const char *cfg_path, ked_model *m, ked_error *err) {
    json_error_t je;
    json_t *root = json_load_file(cfg_path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (!ked_file_exists(cfg_path))
            return ked_fail(err, KED_ERR_IO, "%s: cannot open (a Hugging Face model directory "
                            "needs config.json)", cfg_path);
        return ked_fail(err, KED_ERR_FORMAT, "%s:%d:%d: %s", cfg_path, je.line, je.column, je.text);
    }
    ked_status st = KED_OK;
    if (!json_is_object(root)) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: not a JSON object", cfg_path);
        goto done;
    }
    json_t *mt = json_object_get(root, "model_type");
    json_t *archs = json_object_get(root, "architectures");
    const char *type = json_is_string(mt) ? json_string_value(mt) : NULL;
    if (mt && !json_is_null(mt) && !type) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: field 'model_type' must be a string", cfg_path);
        goto done;
    }
    if (!type && !json_is_array(archs)) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: missing field 'model_type'", cfg_path);
        goto done;
    }
    m->fam = family_find(type, archs);
    if (!m->fam) {
        json_t *a0 = json_array_get(archs, 0);
        if (type)
            st = ked_fail(err, KED_ERR_UNSUPPORTED, "%s: field 'model_type': '%s' is not a "
                          "supported architecture (supported: %s)", cfg_path, type, SUPPORTED);
        else
            st = ked_fail(err, KED_ERR_UNSUPPORTED, "%s: no field 'model_type', and field "
                          "'architectures' (%s) names no supported architecture (supported: %s)",
                          cfg_path,
                          json_is_string(a0) ? json_string_value(a0) : "not a string", SUPPORTED);
        goto done;
    }
    memset(&m->cfg, 0, sizeof m->cfg);
    snprintf(m->cfg.family, sizeof m->cfg.family, "%s", m->fam->name);
    st = m->fam->read_config(root, cfg_path, &m->cfg, err);
    if (!st) st = config_finish(&m->cfg, cfg_path, err);
done:
    json_decref(root);
    return st;
}

// does `name` match a pattern whose "%d" stands for a layer number?
static int matches_pattern(const char *pattern, const char *name, int n_layer) {
    if (!strstr(pattern, "%d")) return !strcmp(pattern, name);
    for (int l = 0; l < n_layer; l++) {
        char buf[256];
        snprintf(buf, sizeof buf, pattern, l);
        if (!strcmp(buf, name)) return 1;
    }
    return 0;
}

// every stored tensor must be used, be an alias target of a used one, or be a known buffer: a
// tensor the config does not account for (q/k/v biases with attention_bias false, say) means the
// config and the weights disagree, and computing without it would be silently wrong
static ked_status check_unused_tensors(ked_model *m, ked_error *err) {
    for (int i = 0; i < st_set_count(m->st); i++) {
        const st_file *file = NULL;
        const st_tensor *t = st_set_get(m->st, i, &file);
        const char *name = t->name;
        for (const char *const *p = m->fam->prefixes; *p; p++)
            if (!strncmp(name, *p, strlen(*p))) name += strlen(*p);
        int ok = 0;
        for (int k = 0; k < m->n_names && !ok; k++) {
            const char *alias = st_set_metadata(m->st, m->names[k]);
            ok = !strcmp(m->names[k], name) || (alias && !strcmp(alias, t->name));
        }
        for (const char *const *p = m->fam->ignored; !ok && *p; p++)
            ok = matches_pattern(*p, name, m->cfg.n_layer);
        if (!ok && m->cfg.tied_head && !strcmp(name, "lm_head.weight")) ok = 1; // a saved tie
        if (!ok)
            return ked_fail(err, KED_ERR_FORMAT, "%s: tensor '%s' is not used by a %s model with "
                            "this config.json (a field such as attention_bias, mlp_bias or "
                            "num_hidden_layers disagrees with the weights)", st_path(file), t->name,
                            m->fam->name);
    }
    return KED_OK;
}

ked_status load_hf(const char *path, ked_model *m, ked_error *err) {
    char *dir = NULL;
    if (ked_is_dir(path)) {
        dir = strdup(path);
    } else {
        char *copy = strdup(path);
        dir = copy ? strdup(dirname(copy)) : NULL;
        free(copy);
    }
    if (!dir) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    char *cfg_path = ked_path_join(dir, "config.json");
    free(dir);
    if (!cfg_path) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    ked_status st = read_config(cfg_path, m, err);
    free(cfg_path);
    TRY(st);
    TRY(st_set_open_dir(path, &m->st, err));
    m->format = "safetensors";
    // every layer has tensors: more layers than tensors is an error before the parameter table
    // (n_layer * P_LAYER_COUNT entries) is sized from an unchecked count
    if (m->cfg.n_layer > st_set_count(m->st))
        return ked_fail(err, KED_ERR_FORMAT, "%s: config.json says %d layers but the file holds "
                        "only %d tensors", st_path(st_set_file(m->st, 0)), m->cfg.n_layer,
                        st_set_count(m->st));
    TRY(alloc_params(m, err));
    TRY(for_each_tensor_name(m, err, load_and_name));
    TRY(check_unused_tensors(m, err));
    return compute_inv_freq(m, err);
}

/* ---- llama2.c checkpoints ------------------------------------------------------------------- */

// llama2.c stores wq/wk rows with rotary pairs interleaved (2i, 2i+1) per head; HF LLaMA pairs
// (i, i + D/2). Permuting the rows (as HF's convert script does) makes the checkpoint an
// ordinary HF LLaMA: row h*D + 2i + e  ->  row h*D + e*D/2 + i.
static float *permute_rotary_rows(const float *w, int heads, int D, int cols, ked_error *err) {
    float *out = ked_malloc(sizeof(float) * (size_t)heads * D * cols, "rotary permutation", err);
    if (!out) return NULL;
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < D / 2; i++)
            for (int e = 0; e < 2; e++)
                memcpy(out + ((size_t)h * D + (size_t)e * (D / 2) + i) * cols,
                       w + ((size_t)h * D + 2 * i + e) * cols, sizeof(float) * (size_t)cols);
    return out;
}

ked_status load_llama2c(const char *path, ked_model *m, ked_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ked_fail(err, KED_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 28) {
        close(fd);
        return ked_fail(err, KED_ERR_FORMAT, "%s: too short for a llama2.c header (28 bytes)", path);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return ked_fail(err, KED_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    m->map = map;
    m->map_len = (size_t)sb.st_size;
    int32_t h[7];
    memcpy(h, map, sizeof h);
    int shared = h[5] > 0;
    ked_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    snprintf(c->family, sizeof c->family, "llama");
    c->d_model = h[0]; c->d_ff = h[1]; c->n_layer = h[2]; c->n_head = h[3]; c->n_kv_head = h[4];
    c->vocab = h[5] == INT32_MIN ? 0 : abs(h[5]); c->max_pos = h[6];
    const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                            "seq_len"};
    for (int i = 0; i < 7; i++)
        if (h[i] == 0 || (i != 5 && h[i] < 0) || h[i] > (1 << 24) || h[i] == INT32_MIN)
            return ked_fail(err, KED_ERR_FORMAT, "%s: llama2.c header field '%s' = %d is out of "
                            "range", path, names[i], h[i]);
    c->norm = KED_NORM_RMSNORM; c->norm_eps = 1e-5f;
    c->pos = KED_POS_ROTARY; c->rope_theta = 10000.0f; c->rope_interleaved = 0; // after permuting
    c->block = KED_BLOCK_SEQUENTIAL; c->mlp = KED_MLP_GATED_SILU;
    c->tied_head = shared; c->bos_id = 1; c->eos_id = 2;
    // head counts, with the header's own field names (config_finish speaks config.json's)
    if (c->n_head % c->n_kv_head || c->d_model % c->n_head || (c->d_model / c->n_head) % 2)
        return ked_fail(err, KED_ERR_FORMAT, "%s: llama2.c header fields 'n_heads' = %d, "
                        "'n_kv_heads' = %d, 'dim' = %d: n_kv_heads must divide n_heads, and "
                        "n_heads must divide dim into an even head size", path, c->n_head,
                        c->n_kv_head, c->d_model);
    TRY(config_finish(c, path, err));
    m->fam = family_by_name("llama");
    m->format = "llama2.c";
    m->file_dtype = KED_F32;

    int64_t C = c->d_model, F = c->d_ff, L = c->n_layer, D = c->head_dim;
    int64_t Q = c->n_head * D, KV = c->n_kv_head * D, V = c->vocab, S = c->max_pos;
    // the pointer walk of llama2.c's memory_map_weights is the file format. Counted in double:
    // header fields up to 2^24 make the products overflow int64; exact below 2^53 bytes, and a
    // larger count can never equal the file's size.
    double dC = (double)C, dL = (double)L, dF = (double)F;
    double need = (double)V * dC + dL * dC + dL * dC * (double)Q + 2 * dL * dC * (double)KV +
                  dL * (double)Q * dC + dL * dC + 2 * dL * dF * dC + dL * dC * dF + dC +
                  (double)S * (double)(D / 2) * 2 + (shared ? 0 : (double)V * dC);
    if ((double)m->map_len != 28 + 4 * need)
        return ked_fail(err, KED_ERR_FORMAT, "%s: llama2.c checkpoint is %zu bytes; its header "
                        "(dim %lld, hidden %lld, layers %lld, heads %d/%d, vocab %lld, seq %lld) "
                        "implies %.0f", path, m->map_len, (long long)C, (long long)F,
                        (long long)L, c->n_head, c->n_kv_head, (long long)V, (long long)S,
                        28 + 4 * need);
    TRY(alloc_params(m, err));
    float *p = (float *)((char *)map + 28);
    #define TAKE(dst_layer, slot, r, k)                                                       \
        do { ked_param *pp = model_param(m, dst_layer, slot);                                 \
             pp->w = p; pp->rows = (r); pp->cols = (k); p += (r) * (k); } while (0)
    TAKE(-1, G_EMBED, V, C);
    for (int l = 0; l < L; l++) TAKE(l, P_ATTN_NORM_W, C, 1);
    for (int l = 0; l < L; l++) TAKE(l, P_WQ, Q, C);
    for (int l = 0; l < L; l++) TAKE(l, P_WK, KV, C);
    for (int l = 0; l < L; l++) TAKE(l, P_WV, KV, C);
    for (int l = 0; l < L; l++) TAKE(l, P_WO, C, Q);
    for (int l = 0; l < L; l++) TAKE(l, P_MLP_NORM_W, C, 1);
    for (int l = 0; l < L; l++) TAKE(l, P_WGATE, F, C);  // w1
    for (int l = 0; l < L; l++) TAKE(l, P_WDOWN, C, F);  // w2
    for (int l = 0; l < L; l++) TAKE(l, P_WUP, F, C);    // w3
    TAKE(-1, G_FINAL_NORM_W, C, 1);
    p += S * (D / 2) * 2; // freq_cis_real, freq_cis_imag: recomputed from theta
    if (!shared) TAKE(-1, G_HEAD_W, V, C);
    #undef TAKE
    for (int l = 0; l < L; l++) {
        ked_param *wq = model_param(m, l, P_WQ), *wk = model_param(m, l, P_WK);
        float *q = permute_rotary_rows(wq->w, c->n_head, (int)D, (int)C, err);
        if (!q) return KED_ERR_NOMEM;
        wq->w = q; wq->owned = 1;
        float *k = permute_rotary_rows(wk->w, c->n_kv_head, (int)D, (int)C, err);
        if (!k) return KED_ERR_NOMEM;
        wk->w = k; wk->owned = 1;
    }
    // the HF LLaMA names this checkpoint converts to
    for (int i = 0; i < m->fam->n_tensors; i++) {
        const family_tensor *ft = &m->fam->tensors[i];
        if (!family_tensor_present(m->fam, ft, c)) continue;
        int layered = strstr(ft->pattern, "%d") != NULL;
        for (int l = 0; l < (layered ? L : 1); l++) {
            char name[256];
            snprintf(name, sizeof name, ft->pattern, l);
            TRY(add_name(m, name, err));
        }
    }
    return compute_inv_freq(m, err);
}

/* ---- entry point ----------------------------------------------------------------------------- */

// a directory holding a llama2.c checkpoint (and no config.json): its one model .bin file
static char *find_llama2c_in_dir(const char *dir) {
    // the tokenizer (tok*.bin, tokenizer.bin) lives beside it; pick the largest .bin file
    char *best = NULL;
    off_t best_size = -1;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".bin")) continue;
        char *p = ked_path_join(dir, e->d_name);
        struct stat sb;
        if (p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > best_size) {
            free(best);
            best = p;
            best_size = sb.st_size;
        } else {
            free(p);
        }
    }
    closedir(d);
    return best;
}

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

ked_load_opts ked_load_defaults(void) {
    ked_load_opts o;
    memset(&o, 0, sizeof o);
    return o;
}

ked_status ked_model_load(const char *path, ked_model **out, ked_error *err) {
    return ked_model_load_ex(path, NULL, out, err);
}

ked_status ked_model_load_ex(const char *path, const ked_load_opts *opts, ked_model **out,
                             ked_error *err) {
    if (!path || !*path) return ked_fail(err, KED_ERR_ARG, "no model path given");
    if (!ked_is_dir(path) && !ked_file_exists(path))
        return ked_fail(err, KED_ERR_IO, "%s: no such file or directory", path);
    ked_load_opts o = opts ? *opts : ked_load_defaults();
    ked_model *m = ked_calloc(1, sizeof *m, "model", err);
    if (!m) return KED_ERR_NOMEM;
    m->keep_half = o.keep_half != 0;
    m->path = strdup(path);
    ked_status st;
    char *cfg = ked_is_dir(path) ? ked_path_join(path, "config.json") : NULL;
    if (ked_is_dir(path) && cfg && !ked_file_exists(cfg)) {
        char *bin = find_llama2c_in_dir(path);
        st = bin ? load_llama2c(bin, m, err)
                 : ked_fail(err, KED_ERR_FORMAT, "%s: neither config.json (Hugging Face) nor a "
                            "llama2.c .bin checkpoint found", path);
        free(bin);
    } else if (has_suffix(path, ".bin")) {
        st = load_llama2c(path, m, err);
    } else {
        st = load_hf(path, m, err);
    }
    free(cfg);
    if (st) { ked_model_free(m); return st; }
    *out = m;
    return KED_OK;
}
