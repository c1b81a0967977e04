// editdir.c: an edited model as a directory (design.md §2): the merged weights as a loadable
// Hugging Face directory, plus the record that makes revert exact there too.
//
//     DIR/model.safetensors   live weights (base + active patches), HF names and layout, F32
//     DIR/config.json         the base's (written from the config for a llama2.c base)
//     DIR/<tokenizer files>   copied from beside the base
//     DIR/patches/NNN-METHOD.safetensors   every patch of the list, applied or reverted
//     DIR/edits.json          {"format": "ked-edits", "version": 1,
//                              "base": {"path": ..., "hash": "fnv1a64:<16 hex>"},
//                              "patches": [{"file", "method", "active", "note"}, ...]}
//
// Opening such a directory loads the base the record names (its hash must match), reads the
// patches and applies the active ones in order: the live weights are recomputed from the base, not
// taken from the merged file, so that a later revert is bit-exact.
#include <dirent.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "edit/edit.h"
#include "io/safetensors.h"

// the directory a model was loaded from (the path itself, or the folder of a file); malloc'd
static char *model_dir(const char *path) {
    if (ked_is_dir(path)) return strdup(path);
    char *copy = strdup(path);
    if (!copy) return NULL;
    char *d = strdup(dirname(copy));
    free(copy);
    return d;
}

static ked_status copy_file(const char *from, const char *to, ked_error *err) {
    char *data = NULL;
    size_t len = 0;
    ked_status st = ked_read_file(from, &data, &len, err);
    if (!st) st = ked_write_file_atomic(to, data, len, err);
    free(data);
    return st;
}

// config.json for a llama2.c base: the HF LLaMA config it converts to
static char *llama_config_json(const ked_config *c) {
    json_t *o = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string("LlamaForCausalLM"));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string("llama"));
    json_object_set_new(o, "hidden_size", json_integer(c->d_model));
    json_object_set_new(o, "intermediate_size", json_integer(c->d_ff));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_head));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_head));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_pos));
    json_object_set_new(o, "rms_norm_eps", json_real(c->norm_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tied_head));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "attention_bias", json_false());
    json_object_set_new(o, "mlp_bias", json_false());
    if (c->bos_id >= 0) json_object_set_new(o, "bos_token_id", json_integer(c->bos_id));
    if (c->eos_id >= 0) json_object_set_new(o, "eos_token_id", json_integer(c->eos_id));
    json_object_set_new(o, "torch_dtype", json_string("float32"));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

static ked_status write_weights(const ked_model *m, const char *path, ked_error *err) {
    int n = ked_model_n_tensors(m);
    st_write_tensor *t = ked_calloc((size_t)(n ? n : 1), sizeof *t, "export", err);
    float **bufs = ked_calloc((size_t)(n ? n : 1), sizeof *bufs, "export", err);
    ked_status st = (!t || !bufs) ? KED_ERR_NOMEM : KED_OK;
    for (int i = 0; !st && i < n; i++) {
        const char *name = ked_model_tensor_name(m, i);
        int64_t shape[2] = {0, 1};
        int nd = ked_model_tensor_shape(m, name, shape);
        size_t numel = (size_t)(shape[0] * (nd == 2 ? shape[1] : 1));
        bufs[i] = ked_malloc(sizeof(float) * (numel ? numel : 1), "export", err);
        if (!bufs[i]) { st = KED_ERR_NOMEM; break; }
        st = ked_model_tensor_read(m, name, 0, bufs[i], err);
        t[i].name = name;
        t[i].dtype = KED_F32;
        t[i].ndim = nd;
        t[i].shape[0] = shape[0];
        t[i].shape[1] = shape[1];
        t[i].data = bufs[i];
    }
    const char *k[1] = {"format"}, *v[1] = {"pt"};
    if (!st) st = st_write(path, t, n, k, v, 1, err);
    for (int i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs);
    free(t);
    return st;
}

// a llama2.c tokenizer beside the checkpoint: tokenizer.bin or tok*.bin (malloc'd path or NULL)
static char *llama2c_tokenizer(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *found = NULL;
    for (struct dirent *de; !found && (de = readdir(d));) {
        size_t n = strlen(de->d_name);
        if (n > 4 && !strncmp(de->d_name, "tok", 3) && !strcmp(de->d_name + n - 4, ".bin"))
            found = ked_path_join(dir, de->d_name);
    }
    closedir(d);
    return found;
}

ked_status ked_editor_save_dir(const ked_editor *e, const char *dir, ked_error *err) {
    const ked_model *m = ked_editor_model(e);
    const char *base_path = ked_model_path(m);
    char *src = model_dir(base_path), *p = NULL;
    json_t *rec = NULL;
    char *text = NULL;
    ked_status st = KED_OK;
    if (!src) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    char *rd = realpath(dir, NULL), *rs = realpath(src, NULL);
    int same_dir = rd && rs && !strcmp(rd, rs);
    free(rd);
    free(rs);
    if (same_dir) { // it would overwrite the base it records
        st = ked_fail(err, KED_ERR_ARG, "%s: is the base model's own directory; write the edited "
                      "model elsewhere", dir);
        goto done;
    }
    char pdir[4096];
    snprintf(pdir, sizeof pdir, "%s/patches", dir);
    if ((mkdir(dir, 0755) && !ked_is_dir(dir)) || (mkdir(pdir, 0755) && !ked_is_dir(pdir))) {
        st = ked_fail(err, KED_ERR_IO, "%s: cannot create the directory", dir);
        goto done;
    }
    // weights, config, tokenizer
    p = ked_path_join(dir, "model.safetensors");
    if (!p || (st = write_weights(m, p, err))) goto done;
    free(p);
    p = ked_path_join(dir, "config.json");
    if (!strcmp(ked_model_format(m), "llama2.c")) {
        char *cfg = llama_config_json(ked_model_config(m));
        if (!cfg) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        st = ked_write_file_atomic(p, cfg, strlen(cfg), err);
        free(cfg);
    } else {
        char *from = ked_path_join(src, "config.json");
        st = from ? copy_file(from, p, err) : ked_fail(err, KED_ERR_NOMEM, "out of memory");
        free(from);
    }
    if (st) goto done;
    for (int i = 0; ked_model_side_files[i]; i++) {
        char *from = ked_path_join(src, ked_model_side_files[i]), *to = ked_path_join(dir, ked_model_side_files[i]);
        if (from && to && ked_file_exists(from) && strcmp(from, to)) st = copy_file(from, to, err);
        free(from);
        free(to);
        if (st) goto done;
    }
    if (!strcmp(ked_model_format(m), "llama2.c")) { // its tokenizer: tok*.bin beside the checkpoint
        char *from = llama2c_tokenizer(src);
        if (from) {
            char *copy = strdup(from), *to = copy ? ked_path_join(dir, basename(copy)) : NULL;
            if (to && strcmp(from, to)) st = copy_file(from, to, err);
            free(to);
            free(copy);
            free(from);
            if (st) goto done;
        }
    }
    // patches and the record
    rec = json_object();
    json_t *base = json_object(), *list = json_array();
    char hex[40];
    snprintf(hex, sizeof hex, "fnv1a64:%016llx", (unsigned long long)ked_editor_base_hash(e));
    char *abs = realpath(base_path, NULL); // so the record works from any directory
    json_object_set_new(base, "path", json_string(abs ? abs : base_path));
    free(abs);
    json_object_set_new(base, "hash", json_string(hex));
    json_object_set_new(rec, "format", json_string("ked-edits"));
    json_object_set_new(rec, "version", json_integer(1));
    json_object_set_new(rec, "base", base);
    json_object_set_new(rec, "patches", list);
    for (int i = 0; i < ked_editor_n_patches(e); i++) {
        const ked_patch *q = ked_editor_patch(e, i);
        char rel[256], full[4400];
        snprintf(rel, sizeof rel, "patches/%03d-%s.safetensors", i, q->method);
        snprintf(full, sizeof full, "%s/%s", dir, rel);
        // (the copies of tokenizer.bin above are skipped by ked_model_side_files: it is listed there)
        if ((st = ked_patch_save(q, m, full, err))) goto done;
        json_t *o = json_object();
        json_object_set_new(o, "file", json_string(rel));
        json_object_set_new(o, "method", json_string(q->method));
        json_object_set_new(o, "active", json_boolean(ked_editor_is_active(e, i)));
        json_object_set_new(o, "note", json_string(q->note ? q->note : ""));
        json_array_append_new(list, o);
    }
    text = json_dumps(rec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    free(p);
    p = ked_path_join(dir, "edits.json");
    if (!text || !p) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    st = ked_write_file_atomic(p, text, strlen(text), err);
done:
    json_decref(rec);
    free(text);
    free(p);
    free(src);
    return st;
}

int ked_edit_dir_is(const char *path) {
    char *p = ked_is_dir(path) ? ked_path_join(path, "edits.json") : NULL;
    int yes = p && ked_file_exists(p);
    free(p);
    return yes;
}

ked_status ked_editor_open_dir(const char *dir, ked_model **model, ked_editor **editor,
                               ked_error *err) {
    char *path = ked_path_join(dir, "edits.json");
    if (!path) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    json_error_t je;
    json_t *rec = json_load_file(path, 0, &je);
    ked_model *m = NULL;
    ked_editor *e = NULL;
    ked_status st = KED_OK;
    if (!rec) { st = ked_fail(err, KED_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text); goto done; }
    const char *fmt = json_string_value(json_object_get(rec, "format"));
    json_t *base = json_object_get(rec, "base"), *list = json_object_get(rec, "patches");
    const char *bpath = json_string_value(json_object_get(base, "path"));
    const char *bhash = json_string_value(json_object_get(base, "hash"));
    if (!fmt || strcmp(fmt, "ked-edits") || !bpath || !bhash || !json_is_array(list)) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: not a ked edit record (format \"ked-edits\", "
                      "base.path, base.hash and patches expected)", path);
        goto done;
    }
    if ((st = ked_model_load(bpath, &m, err))) { ked_prefix_error(err, "%s: base", path); goto done; }
    if ((st = ked_editor_new(m, &e, err))) goto done;
    char hex[40];
    snprintf(hex, sizeof hex, "fnv1a64:%016llx", (unsigned long long)ked_editor_base_hash(e));
    if (strcmp(hex, bhash)) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: the base %s has hash %s, the record says %s (the "
                      "base model changed)", path, bpath, hex, bhash);
        goto done;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *o = json_array_get(list, i);
        const char *file = json_string_value(json_object_get(o, "file"));
        json_t *active = json_object_get(o, "active");
        if (!file || !json_is_boolean(active) || strstr(file, "..")) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: patches[%zu]: file and active expected", path, i);
            goto done;
        }
        char *pf = ked_path_join(dir, file);
        ked_patch *q = NULL;
        st = pf ? ked_patch_load(m, pf, &q, err) : ked_fail(err, KED_ERR_NOMEM, "out of memory");
        free(pf);
        if (st) goto done;
        int id;
        if ((st = ked_editor_apply(e, q, &id, err))) goto done;
        if (!json_is_true(active) && (st = ked_editor_revert(e, id, err))) goto done;
    }
    *model = m;
    *editor = e;
    m = NULL;
    e = NULL;
done:
    ked_editor_free(e);
    ked_model_free(m);
    json_decref(rec);
    free(path);
    return st;
}
