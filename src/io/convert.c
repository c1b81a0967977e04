// convert.c: a copy of a Hugging Face model directory with its floating-point tensors stored in
// another dtype (ked_checkpoint_convert in ked.h; `ked convert`). Everything is read and checked
// first (config.json parsed, every shard validated by st_set_open_dir, the tokenizer files read,
// every tensor converted in memory); only then is out_dir created and written: the weights by
// st_write_dir (atomic files, sharded as transformers shards), the tokenizer and generation files
// (each atomically), config.json last, with "torch_dtype" naming the new dtype.
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "io/safetensors.h"

// the files beside the weights (ked_model_side_files, core.h) are copied when present, and any
// other tok*.bin (llama2.c-style tokenizers), found by listing the directory
typedef struct {
    char *name; // file name in the directory
    char *data;
    size_t len;
} aux_file;

typedef struct {
    aux_file *v;
    int n, cap;
} aux_list;

static void aux_free(aux_list *a) {
    for (int i = 0; i < a->n; i++) {
        free(a->v[i].name);
        free(a->v[i].data);
    }
    free(a->v);
}

static ked_status aux_add(aux_list *a, const char *dir, const char *name, ked_error *err) {
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        aux_file *v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v) return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", dir);
        a->v = v;
        a->cap = cap;
    }
    aux_file *f = &a->v[a->n];
    char *path = ked_path_join(dir, name);
    if (!path || !(f->name = strdup(name))) {
        free(path);
        return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", dir);
    }
    ked_status st = ked_read_file(path, &f->data, &f->len, err);
    free(path);
    if (st) {
        free(f->name);
        return st;
    }
    a->n++;
    return KED_OK;
}

static int is_side_file(const char *s) {
    for (int i = 0; ked_model_side_files[i]; i++)
        if (!strcmp(s, ked_model_side_files[i])) return 1;
    return 0;
}

// tok*.bin not already in ked_model_side_files
static int is_tok_bin(const char *s) {
    size_t n = strlen(s);
    return n >= 7 && !strncmp(s, "tok", 3) && !strcmp(s + n - 4, ".bin") && !is_side_file(s);
}

// read every file of ked_model_side_files and every other tok*.bin that in_dir holds
static ked_status read_aux(const char *dir, aux_list *a, ked_error *err) {
    ked_status st = KED_OK;
    for (int i = 0; !st && ked_model_side_files[i]; i++) {
        char *p = ked_path_join(dir, ked_model_side_files[i]);
        if (!p) return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", dir);
        int present = ked_file_exists(p);
        free(p);
        if (present) st = aux_add(a, dir, ked_model_side_files[i], err);
    }
    DIR *d = st ? NULL : opendir(dir);
    if (!st && !d) return ked_fail(err, KED_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    for (struct dirent *de; !st && (de = readdir(d));) {
        if (!is_tok_bin(de->d_name)) continue;
        char *p = ked_path_join(dir, de->d_name);
        if (!p) { st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", dir); break; }
        int present = ked_file_exists(p);
        free(p);
        if (present) st = aux_add(a, dir, de->d_name, err);
    }
    if (d) closedir(d);
    return st;
}

static const char *torch_dtype_name(ked_dtype d) {
    return d == KED_F16 ? "float16" : d == KED_BF16 ? "bfloat16" : "float32";
}

// config.json as JSON text, indented by 2 as transformers writes it, with the fewest significant
// digits from 6 on (the same for every number; 6 keeps 10000.0 out of exponent form) that read
// back to exactly the same values: 1e-05 comes out as 1e-5, not as jansson's default
// 1.0000000000000001e-5. Ends with a newline. NULL: out of memory.
static char *dump_config(const json_t *root) {
    for (int p = 6; p <= 17; p++) {
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(p));
        if (!s) return NULL;
        json_t *back = p < 17 ? json_loads(s, 0, NULL) : NULL;
        int same = p == 17 || (back && json_equal(root, back));
        json_decref(back);
        if (same) {
            size_t n = strlen(s);
            char *t = realloc(s, n + 2);
            if (!t) { free(s); return NULL; }
            t[n] = '\n';
            t[n + 1] = 0;
            return t;
        }
        free(s);
    }
    return NULL;
}

// in_dir/config.json with "torch_dtype" (and "dtype", the name transformers >= 4.56 writes, when
// present) set to dtype's torch name; every other field as it was. *text malloc'd.
static ked_status make_config(const char *dir, ked_dtype dtype, char **text, ked_error *err) {
    char *path = ked_path_join(dir, "config.json");
    if (!path) return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", dir);
    ked_status st = KED_OK;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (!ked_file_exists(path))
            st = ked_fail(err, KED_ERR_IO, "%s: cannot open (a Hugging Face model directory needs "
                          "config.json; llama2.c checkpoints are not converted)", path);
        else
            st = ked_fail(err, KED_ERR_FORMAT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        goto done;
    }
    if (!json_is_object(root)) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    json_t *name = json_string(torch_dtype_name(dtype));
    if (!name || json_object_set_new(root, "torch_dtype", name) ||
        (json_object_get(root, "dtype") &&
         json_object_set_new(root, "dtype", json_string(torch_dtype_name(dtype)))) ||
        !(*text = dump_config(root)))
        st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", path);
done:
    json_decref(root);
    free(path);
    return st;
}

static int is_float(ked_dtype d) {
    return d == KED_F32 || d == KED_F16 || d == KED_BF16 || d == KED_F64;
}

// t (a float dtype) narrowed to `to` (F16 or BF16) into dst, through f32 a chunk at a time
static void narrow(const st_tensor *t, ked_dtype to, uint16_t *dst, float *buf, size_t chunk) {
    size_t es = ked_dtype_size(t->dtype), n = (size_t)t->numel;
    for (size_t i = 0; i < n; i += chunk) {
        st_tensor part = *t;
        size_t k = n - i < chunk ? n - i : chunk;
        part.numel = (int64_t)k;
        part.nbytes = k * es;
        part.data = (const unsigned char *)t->data + i * es;
        ked_status st = st_to_f32(NULL, &part, buf, NULL);
        KED_ASSERT(st == KED_OK); // a float dtype: st_to_f32 cannot fail
        if (to == KED_F16) ked_f32_to_f16_row(buf, dst + i, k);
        else ked_f32_to_bf16_row(buf, dst + i, k);
    }
}

ked_status ked_checkpoint_convert(const char *in_dir, const char *out_dir, ked_dtype dtype,
                                  size_t max_shard_bytes, ked_convert_stats *stats,
                                  ked_error *err) {
    if (!in_dir || !out_dir || !*in_dir || !*out_dir)
        return ked_fail(err, KED_ERR_ARG, "ked_checkpoint_convert: input and output directories "
                        "are required");
    if (dtype != KED_F32 && dtype != KED_F16 && dtype != KED_BF16)
        return ked_fail(err, KED_ERR_ARG, "%s: cannot convert to dtype %s: expected F32, F16 or "
                        "BF16", in_dir, ked_dtype_name(dtype));
    struct stat si, so;
    if (stat(in_dir, &si) != 0)
        return ked_fail(err, KED_ERR_IO, "%s: cannot open: %s", in_dir, strerror(errno));
    if (!S_ISDIR(si.st_mode))
        return ked_fail(err, KED_ERR_ARG, "%s: not a directory (the input is a Hugging Face model "
                        "directory)", in_dir);
    if (stat(out_dir, &so) == 0) {
        if (!S_ISDIR(so.st_mode))
            return ked_fail(err, KED_ERR_ARG, "%s: exists and is not a directory", out_dir);
        if (so.st_dev == si.st_dev && so.st_ino == si.st_ino)
            return ked_fail(err, KED_ERR_ARG, "%s: is the input directory %s itself; write the "
                            "converted model elsewhere", out_dir, in_dir);
    }

    // read and check everything, and convert, before writing anything
    char *config = NULL;
    aux_list aux = {0};
    st_set *set = NULL;
    st_write_tensor *ts = NULL;
    void **bufs = NULL;
    float *chunk = NULL;
    const char **mk = NULL, **mv = NULL;
    const size_t chunk_n = (size_t)1 << 16;
    ked_convert_stats cs = {0};
    int n = 0;
    ked_status st;
    if ((st = make_config(in_dir, dtype, &config, err))) goto done;
    if ((st = st_set_open_dir(in_dir, &set, err))) goto done;
    if ((st = read_aux(in_dir, &aux, err))) goto done;
    n = st_set_count(set);
    size_t cap = (size_t)(n ? n : 1);
    ts = ked_calloc(cap, sizeof *ts, "convert: tensor table", err);
    bufs = ked_calloc(cap, sizeof *bufs, "convert: tensor table", err);
    chunk = ked_malloc(chunk_n * sizeof *chunk, "convert: buffer", err);
    if (!ts || !bufs || !chunk) { st = KED_ERR_NOMEM; goto done; }
    for (int i = 0; i < n; i++) {
        const st_file *f = NULL;
        const st_tensor *t = st_set_get(set, i, &f);
        ked_dtype to = is_float(t->dtype) ? dtype : t->dtype;
        ts[i].name = t->name;
        ts[i].dtype = to;
        ts[i].ndim = t->ndim;
        memcpy(ts[i].shape, t->shape, sizeof ts[i].shape);
        ts[i].data = t->data; // the same dtype: the stored bytes as they are
        cs.bytes_in += t->nbytes;
        cs.bytes_out += (size_t)t->numel * ked_dtype_size(to);
        if (to == t->dtype) continue;
        cs.n_converted++;
        void *b = ked_malloc((size_t)t->numel * ked_dtype_size(to) + 1, "convert: tensor", err);
        if (!b) {
            st = ked_fail(err, KED_ERR_NOMEM, "%s: tensor '%s': out of memory for its %s copy "
                          "(%lld elements)", st_path(f), t->name, ked_dtype_name(to),
                          (long long)t->numel);
            goto done;
        }
        bufs[i] = b;
        ts[i].data = b;
        if (to == KED_F32) st = st_to_f32(f, t, b, err);
        else narrow(t, to, b, chunk, chunk_n);
        if (st) goto done;
    }
    cs.n_tensors = n;
    // __metadata__ of the first file (each shard carries it, as transformers writes them)
    const st_file *f0 = st_set_file(set, 0);
    int nm = st_metadata_count(f0);
    mk = ked_calloc((size_t)(nm ? nm : 1), sizeof *mk, "convert: metadata", err);
    mv = ked_calloc((size_t)(nm ? nm : 1), sizeof *mv, "convert: metadata", err);
    if (!mk || !mv) { st = KED_ERR_NOMEM; goto done; }
    for (int i = 0; i < nm; i++) mk[i] = st_metadata_get(f0, i, &mv[i]);

    // write: the weights, the tokenizer files, config.json last
    if (ked_mkdir_p(out_dir) != 0) {
        st = ked_fail(err, KED_ERR_IO, "%s: cannot create the directory: %s", out_dir, strerror(errno));
        goto done;
    }
    if ((st = st_write_dir(out_dir, ts, n, max_shard_bytes, mk, mv, nm, err))) goto done;
    for (int i = 0; i < aux.n; i++) {
        char *p = ked_path_join(out_dir, aux.v[i].name);
        if (!p) { st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", out_dir); goto done; }
        st = ked_write_file_atomic(p, aux.v[i].data, aux.v[i].len, err);
        free(p);
        if (st) goto done;
    }
    cs.n_files = aux.n + 1;
    char *cp = ked_path_join(out_dir, "config.json");
    if (!cp) { st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", out_dir); goto done; }
    st = ked_write_file_atomic(cp, config, strlen(config), err);
    free(cp);
    if (!st && stats) *stats = cs;
done:
    for (int i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs);
    free(ts);
    free(chunk);
    free(mk);
    free(mv);
    st_set_close(set);
    aux_free(&aux);
    free(config);
    return st;
}
