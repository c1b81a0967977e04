// shards.c: a Hugging Face checkpoint directory as one tensor namespace (see safetensors.h):
// model.safetensors, or model.safetensors.index.json {"metadata": {...}, "weight_map":
// {"tensor": "shard file"}} and its shards. Every shard is opened and validated up front, and the
// index is checked against what the shards really hold.
#include <jansson.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "io/safetensors.h"

typedef struct {
    const st_tensor *t;
    int file;                 // index into files
} st_entry;

struct st_set {
    st_file **files;          // (n_files) shards in file-name order
    int n_files;
    st_entry *all;            // (n) file by file, each in data order
    const st_entry **by_name; // (n) sorted by tensor name
    int n;
};

void st_set_close(st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) st_close(s->files[i]);
    free(s->files);
    free(s->all);
    free(s->by_name);
    free(s);
}

static int cmp_entry_name(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    int c = strcmp(x->t->name, y->t->name);
    return c ? c : x->file - y->file;
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// build the entry tables of s from its open files; `where` names the set in messages
static ked_status index_tensors(st_set *s, const char *where, ked_error *err) {
    int n = 0;
    for (int i = 0; i < s->n_files; i++) n += st_count(s->files[i]);
    s->all = ked_calloc((size_t)n, sizeof *s->all, "tensor table", err);
    s->by_name = ked_calloc((size_t)n, sizeof *s->by_name, "tensor table", err);
    if (!s->all || !s->by_name) return KED_ERR_NOMEM;
    for (int i = 0; i < s->n_files; i++)
        for (int j = 0; j < st_count(s->files[i]); j++) {
            s->all[s->n] = (st_entry){st_get(s->files[i], j), i};
            s->by_name[s->n] = &s->all[s->n];
            s->n++;
        }
    qsort(s->by_name, (size_t)s->n, sizeof *s->by_name, cmp_entry_name);
    for (int i = 1; i < s->n; i++)
        if (strcmp(s->by_name[i - 1]->t->name, s->by_name[i]->t->name) == 0)
            return ked_fail(err, KED_ERR_FORMAT, "%s: tensor '%s' is in two shards: %s and %s",
                            where, s->by_name[i]->t->name,
                            st_path(s->files[s->by_name[i - 1]->file]),
                            st_path(s->files[s->by_name[i]->file]));
    return KED_OK;
}

static ked_status open_single(const char *path, st_set **out, ked_error *err) {
    st_set *s = ked_calloc(1, sizeof *s, "tensor set", err);
    if (!s) return KED_ERR_NOMEM;
    ked_status st = KED_ERR_NOMEM;
    if (!(s->files = ked_calloc(1, sizeof *s->files, "tensor set", err))) goto fail;
    if ((st = st_open(path, &s->files[0], err))) goto fail;
    s->n_files = 1;
    if ((st = index_tensors(s, path, err))) goto fail;
    *out = s;
    return KED_OK;
fail:
    st_set_close(s);
    return st;
}

// a shard name must be a plain file name next to the index
static int plain_file_name(const char *s) {
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static ked_status open_index(const char *path, st_set **out, ked_error *err) {
    char *text = NULL, *dir = NULL;
    const char **shards = NULL;
    json_t *root = NULL;
    st_set *s = NULL;
    size_t len = 0;
    ked_status st = ked_read_file(path, &text, &len, err);
    if (st) return st;
    json_error_t je;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", path,
                      je.text, je.line, je.column);
        goto done;
    }
    if (!json_is_object(root)) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: index is not a JSON object (expected "
                      "{\"metadata\": {...}, \"weight_map\": {...}})", path);
        goto done;
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!wm) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: missing \"weight_map\" (expected {\"metadata\": "
                      "{...}, \"weight_map\": {\"tensor\": \"shard file\"}})", path);
        goto done;
    }
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: weight_map is %s, expected a non-empty object "
                      "{\"tensor\": \"shard file\"}", path,
                      json_is_object(wm) ? "empty" : "not an object");
        goto done;
    }
    // the distinct shard names, sorted
    size_t nw = json_object_size(wm);
    int ns = 0;
    if (!(shards = ked_calloc(nw, sizeof *shards, "shard names", err))) {
        st = KED_ERR_NOMEM;
        goto done;
    }
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) {
        if (!json_is_string(v) || !plain_file_name(json_string_value(v))) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: weight_map '%s': expected the file name of a "
                          "shard in the same folder, found %s%s%s", path, k,
                          json_is_string(v) ? "\"" : "a non-string",
                          json_is_string(v) ? json_string_value(v) : "",
                          json_is_string(v) ? "\"" : "");
            goto done;
        }
        shards[ns++] = json_string_value(v);
    }
    qsort(shards, (size_t)ns, sizeof *shards, cmp_cstr);
    int nu = 0;
    for (int i = 0; i < ns; i++)
        if (nu == 0 || strcmp(shards[nu - 1], shards[i]) != 0) shards[nu++] = shards[i];

    // open every shard (from the index's folder)
    const char *slash = strrchr(path, '/');
    dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    s = ked_calloc(1, sizeof *s, "tensor set", err);
    if (!dir || !s || !(s->files = ked_calloc((size_t)nu, sizeof *s->files, "tensor set", err))) {
        st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < nu; i++) {
        char *sp = ked_path_join(dir, shards[i]);
        if (!sp) { st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", path); goto done; }
        if (!ked_file_exists(sp)) {
            st = ked_fail(err, KED_ERR_IO, "%s: shard '%s' listed in weight_map is missing (%s)",
                          path, shards[i], sp);
            free(sp);
            goto done;
        }
        st = st_open(sp, &s->files[i], err);
        free(sp);
        if (st) goto done;
        s->n_files++;
    }
    if ((st = index_tensors(s, path, err))) goto done;

    // every listed tensor must be in the shard the index names
    json_object_foreach(wm, k, v) {
        const st_file *in = NULL;
        const char *want = json_string_value(v);
        if (!st_set_find(s, k, &in)) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: tensor '%s' is listed in weight_map for shard "
                          "'%s', which does not hold it", path, k, want);
            goto done;
        }
        const char *got = strrchr(st_path(in), '/');
        got = got ? got + 1 : st_path(in);
        if (strcmp(got, want) != 0) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: tensor '%s' is listed in weight_map for shard "
                          "'%s' but is in shard '%s'", path, k, want, got);
            goto done;
        }
    }
    *out = s;
    s = NULL;
done:
    st_set_close(s);
    json_decref(root);
    free(shards);
    free(dir);
    free(text);
    return st;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

ked_status st_set_open_dir(const char *dir, st_set **out, ked_error *err) {
    if (ked_is_dir(dir)) {
        char *single = ked_path_join(dir, "model.safetensors");
        char *index = ked_path_join(dir, "model.safetensors.index.json");
        ked_status st;
        if (!single || !index) st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", dir);
        else if (ked_file_exists(single)) st = open_single(single, out, err);
        else if (ked_file_exists(index)) st = open_index(index, out, err);
        else st = ked_fail(err, KED_ERR_IO, "%s: holds neither model.safetensors nor "
                           "model.safetensors.index.json", dir);
        free(single);
        free(index);
        return st;
    }
    if (!ked_file_exists(dir))
        return ked_fail(err, KED_ERR_IO, "%s: no such file or directory", dir);
    return ends_with(dir, ".json") ? open_index(dir, out, err) : open_single(dir, out, err);
}

int st_set_count(const st_set *s) { return s ? s->n : 0; }
int st_set_file_count(const st_set *s) { return s ? s->n_files : 0; }

const st_file *st_set_file(const st_set *s, int i) {
    return s && i >= 0 && i < s->n_files ? s->files[i] : NULL;
}

const st_tensor *st_set_get(const st_set *s, int i, const st_file **file) {
    if (!s || i < 0 || i >= s->n) return NULL;
    if (file) *file = s->files[s->all[i].file];
    return s->all[i].t;
}

const st_tensor *st_set_find(const st_set *s, const char *name, const st_file **file) {
    if (!s || !name) return NULL;
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, s->by_name[mid]->t->name);
        if (c == 0) {
            if (file) *file = s->files[s->by_name[mid]->file];
            return s->by_name[mid]->t;
        }
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}

const char *st_set_metadata(const st_set *s, const char *key) {
    return s && s->n_files > 0 ? st_metadata(s->files[0], key) : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* writing a checkpoint directory                                                              */

ked_status st_write_dir(const char *dir, const st_write_tensor *tensors, int n,
                        size_t max_shard_bytes, const char *const *meta_keys,
                        const char *const *meta_values, int n_meta, ked_error *err) {
    if (n < 0 || (n > 0 && !tensors))
        return ked_fail(err, KED_ERR_ARG, "%s: st_write_dir: bad tensor array", dir);
    if (n > 1) { // st_write checks each shard; a name in two shards must be caught here
        const char **names = ked_malloc((size_t)n * sizeof *names, "name check", err);
        if (!names) return KED_ERR_NOMEM;
        for (int i = 0; i < n; i++) names[i] = tensors[i].name ? tensors[i].name : "";
        qsort(names, (size_t)n, sizeof *names, cmp_cstr);
        const char *dup = NULL;
        for (int i = 1; i < n && !dup; i++)
            if (strcmp(names[i - 1], names[i]) == 0) dup = names[i];
        free(names);
        if (dup) return ked_fail(err, KED_ERR_ARG, "%s: tensor '%s' given twice", dir, dup);
    }
    // greedy split in the given order; a tensor larger than the limit gets a shard of its own
    int *first = ked_calloc((size_t)n + 2, sizeof(int), "shard plan", err);
    if (!first) return KED_ERR_NOMEM;
    int nshard = 0;
    size_t cur = 0, total = 0;
    for (int i = 0; i < n; i++) {
        size_t b = ked_dtype_size(tensors[i].dtype);
        for (int d = 0; d < tensors[i].ndim && d < ST_MAX_DIMS; d++)
            b *= tensors[i].shape[d] > 0 ? (size_t)tensors[i].shape[d] : 0; // st_write checks
        if (i == 0 || (max_shard_bytes && cur > 0 && cur + b > max_shard_bytes)) {
            first[nshard++] = i;
            cur = 0;
        }
        cur += b;
        total += b;
    }
    if (nshard == 0) first[nshard++] = 0;
    first[nshard] = n;

    ked_status st = KED_OK;
    char *single = ked_path_join(dir, "model.safetensors");
    char *index = ked_path_join(dir, "model.safetensors.index.json");
    json_t *root = NULL, *wm = NULL;
    char *text = NULL;
    if (!single || !index) {
        st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    if (nshard == 1) {
        st = st_write(single, tensors, n, meta_keys, meta_values, n_meta, err);
        goto done;
    }
    root = json_object();
    wm = json_object();
    json_t *meta = json_pack("{sI}", "total_size", (json_int_t)total);
    if (!root || !wm || !meta || json_object_set_new(root, "metadata", meta) ||
        json_object_set(root, "weight_map", wm)) {
        st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory for the index", dir);
        goto done;
    }
    for (int s = 0; s < nshard; s++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, nshard);
        char *sp = ked_path_join(dir, name);
        if (!sp) { st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", dir); goto done; }
        st = st_write(sp, tensors + first[s], first[s + 1] - first[s], meta_keys, meta_values,
                      n_meta, err);
        free(sp);
        if (st) goto done;
        for (int i = first[s]; i < first[s + 1]; i++)
            if (json_object_set_new(wm, tensors[i].name, json_string(name))) {
                st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory for the index", dir);
                goto done;
            }
    }
    if (!(text = json_dumps(root, JSON_INDENT(2)))) {
        st = ked_fail(err, KED_ERR_NOMEM, "%s: cannot serialise the index", dir);
        goto done;
    }
    if ((st = ked_write_file_atomic(index, text, strlen(text), err))) goto done;
    // a model.safetensors left from an earlier export would shadow the new index
    if (ked_file_exists(single) && unlink(single) != 0)
        st = ked_fail(err, KED_ERR_IO, "%s: cannot remove the stale model.safetensors", dir);
done:
    json_decref(wm);
    json_decref(root);
    free(text);
    free(single);
    free(index);
    free(first);
    return st;
}
