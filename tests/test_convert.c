// test_convert.c: ked_checkpoint_convert (src/io/convert.c) and `ked convert`.
//  - a fresh f32 LLaMA of the first ked-facts' shape (ked_model_init_write: 4 layers, d_model 256,
//    d_ff 512, tied; random weights, neither f16- nor bf16-exact; models/ked-facts' tokenizer
//    files, a README.md and a manifest.jsonl beside them) to f16 (one file) and
//    bf16 (three shards of at most 3 MB): the same tensors in the same order and shapes, every
//    value ked_f32_to_f16 / ked_f32_to_bf16 of the source's, __metadata__ kept in every shard;
//    f16 back to f32: exactly the f16 values widened; f16 to f16: bit-identical, none converted;
//    config.json: torch_dtype changed, every other field equal and in the same order; the
//    tokenizer files byte-identical, README.md and manifest.jsonl not copied. Loaded with
//    ked_model_load: the file dtype is F16 / BF16 / F32 and the logits of a prompt are within
//    0.3% (f16) / 3% (bf16) of the f32 model's logit scale, with the same next token (measured:
//    0.059% and 0.52%); the f32 copy of the f16 copy gives the f16 copy's logits exactly.
//  - models/TinyStories-656K (a tied head through a __metadata__ alias; generation and special-
//    token files; its f32 weights are bf16-exact): an f16 copy in shards computes the same
//    logits bit for bit; config.json's numbers keep their short form (1e-6, 10000.0).
//  - a synthetic directory: F64 narrowed through f32, I64 and U8 copied verbatim, BF16 to F16,
//    "dtype" (the newer transformers key) changed too, tok512.bin copied.
//  - errors (nothing written): a missing input, out == in (other spellings of the same
//    directory: "/.", "..", a symlink), a dtype other than F32/F16/BF16, a llama2.c directory, a
//    broken model.safetensors, a broken config.json, an output path that is a file; the CLI:
//    a bad --dtype is a usage error (exit 2), a conversion prints its one line.
#include "test.h"

#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ked.h"
#include "io/safetensors.h"

#define KF kfsrc // the f32 source, written by main (models/ked-facts itself is f16)
#define KF_TOK "models/ked-facts"
#define TS "models/TinyStories-656K"

static char root[256];
static char kfsrc[300];

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int x = fgetc(fa), y = fgetc(fb);
        if (x != y) same = 0;
        if (x == EOF || y == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static int exists(const char *p) {
    struct stat s;
    return stat(p, &s) == 0;
}

static st_set *open_set(const char *dir) {
    ked_error err;
    st_set *s = NULL;
    CHECK_OK(st_set_open_dir(dir, &s, &err), &err);
    if (!s) exit(1);
    return s;
}

// every tensor of `to` is the same tensor of `from` (same position, name, shape) narrowed to dtype
// (F16, BF16) or, for F32, widened from the half source exactly; returns the tensors checked
static int check_values(const char *from, const char *to, ked_dtype dtype) {
    st_set *a = open_set(from), *b = open_set(to);
    int n = st_set_count(a), bad = 0;
    CHECK(st_set_count(b) == n, "%s: %d tensors, the source has %d", to, st_set_count(b), n);
    for (int i = 0; i < n && i < st_set_count(b); i++) {
        const st_file *fa, *fb;
        const st_tensor *x = st_set_get(a, i, &fa), *y = st_set_get(b, i, &fb);
        int same_shape = x->ndim == y->ndim;
        for (int d = 0; same_shape && d < x->ndim; d++) same_shape = x->shape[d] == y->shape[d];
        CHECK(!strcmp(x->name, y->name) && same_shape && y->dtype == dtype,
              "%s: tensor %d is '%s' %s, expected '%s' %s of the same shape", to, i, y->name,
              ked_dtype_name(y->dtype), x->name, ked_dtype_name(dtype));
        if (strcmp(x->name, y->name) || !same_shape || y->dtype != dtype) { bad++; continue; }
        size_t ne = (size_t)x->numel;
        float *v = malloc(4 * (ne ? ne : 1));
        ked_error err;
        CHECK_OK(st_to_f32(fa, x, v, &err), &err);
        size_t wrong = 0, first = 0;
        for (size_t k = 0; k < ne; k++) {
            int ok;
            if (dtype == KED_F32) {
                float w;
                memcpy(&w, (const char *)y->data + 4 * k, 4);
                ok = !memcmp(&w, &v[k], 4); // v[k]: the half value widened by st_to_f32
            } else {
                uint16_t h, e = dtype == KED_F16 ? ked_f32_to_f16(v[k]) : ked_f32_to_bf16(v[k]);
                memcpy(&h, (const char *)y->data + 2 * k, 2);
                ok = h == e;
            }
            if (!ok && wrong++ == 0) first = k;
        }
        CHECK(wrong == 0, "%s: tensor '%s': %zu of %zu values are not the %s conversion (first at "
              "%zu)", to, y->name, wrong, ne, ked_dtype_name(dtype), first);
        bad += wrong != 0;
        free(v);
    }
    // __metadata__ (the tied-embedding alias) kept, in every file
    const st_file *f0 = st_set_file(a, 0);
    for (int j = 0; j < st_set_file_count(b); j++) {
        const st_file *g = st_set_file(b, j);
        CHECK(st_metadata_count(g) == st_metadata_count(f0), "%s: %d metadata entries, expected %d",
              st_path(g), st_metadata_count(g), st_metadata_count(f0));
        for (int k = 0; k < st_metadata_count(f0); k++) {
            const char *val, *key = st_metadata_get(f0, k, &val);
            const char *got = st_metadata(g, key);
            CHECK(got && !strcmp(got, val), "%s: metadata '%s' is %s, expected %s", st_path(g), key,
                  got ? got : "absent", val);
        }
    }
    st_set_close(a);
    st_set_close(b);
    return n - bad;
}

// logits (T, V) of the prompt, malloc'd
static float *prompt_logits(const char *dir, const int *ids, int T, ked_dtype want_dtype,
                            size_t *vocab) {
    ked_error err;
    ked_model *m = NULL;
    CHECK_OK(ked_model_load(dir, &m, &err), &err);
    if (!m) exit(1);
    CHECK(ked_model_file_dtype(m) == want_dtype, "%s: file dtype %s, expected %s", dir,
          ked_dtype_name(ked_model_file_dtype(m)), ked_dtype_name(want_dtype));
    size_t V = (size_t)ked_model_config(m)->vocab;
    *vocab = V;
    ked_run *r = NULL;
    CHECK_OK(ked_run_new(m, 1, T, T, 0, &r, &err), &err);
    if (!r) exit(1);
    ked_forward_opts o = ked_forward_defaults();
    CHECK_OK(ked_forward(m, r, ids, 1, T, NULL, &o, &err), &err);
    float *out = malloc(sizeof(float) * V * (size_t)T);
    memcpy(out, ked_run_logits(r, NULL), sizeof(float) * V * (size_t)T);
    ked_run_free(r);
    ked_model_free(m);
    return out;
}

static int argmax(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return (int)b;
}

// dir/config.json against src's: torch_dtype as given, every other field equal, the same order
static void check_config(const char *src, const char *dir, const char *torch_dtype) {
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/config.json", src);
    snprintf(b, sizeof b, "%s/config.json", dir);
    json_error_t je;
    json_t *x = json_load_file(a, 0, &je), *y = json_load_file(b, JSON_REJECT_DUPLICATES, &je);
    CHECK(x && y, "%s: %s", b, je.text);
    if (!x || !y) return;
    json_t *td = json_object_get(y, "torch_dtype");
    CHECK(json_is_string(td) && !strcmp(json_string_value(td), torch_dtype),
          "%s: torch_dtype is not \"%s\"", b, torch_dtype);
    CHECK(json_object_size(x) == json_object_size(y), "%s: %zu fields, the source has %zu", b,
          json_object_size(y), json_object_size(x));
    const char *k;
    json_t *v;
    json_object_foreach(x, k, v) {
        if (!strcmp(k, "torch_dtype")) continue;
        CHECK(json_equal(v, json_object_get(y, k)), "%s: field '%s' changed", b, k);
    }
    void *ix = json_object_iter(x), *iy = json_object_iter(y);
    for (; ix && iy; ix = json_object_iter_next(x, ix), iy = json_object_iter_next(y, iy))
        CHECK(!strcmp(json_object_iter_key(ix), json_object_iter_key(iy)), "%s: field '%s' where "
              "the source has '%s'", b, json_object_iter_key(iy), json_object_iter_key(ix));
    json_decref(x);
    json_decref(y);
}

// the files of src named in `files` (NULL-terminated) are byte-identical in dir; `absent` is not
static void check_copies(const char *src, const char *dir, const char *const *files,
                         const char *absent) {
    char a[600], b[600];
    for (int i = 0; files[i]; i++) {
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        CHECK(same_file(a, b), "%s: not a byte-identical copy of %s", b, a);
    }
    snprintf(b, sizeof b, "%s/%s", dir, absent);
    CHECK(!exists(b), "%s: copied", b);
}

// a failing conversion: the status, a message naming `names`, and out_dir never created
static void check_error(const char *in, const char *out, ked_dtype dt, ked_status want,
                        const char *names) {
    ked_error err = {0};
    ked_status st = ked_checkpoint_convert(in, out, dt, 0, NULL, &err);
    CHECK(st == want && strstr(err.msg, names), "convert %s -> %s (%s): status %s, expected %s; "
          "message: %s", in, out, ked_dtype_name(dt), ked_status_name(st), ked_status_name(want),
          err.msg);
}

static void write_bytes(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(data, 1, len, f);
    fclose(f);
}

static void write_text(const char *path, const char *text) {
    write_bytes(path, text, strlen(text));
}

// F64, I64, U8 and BF16 tensors and a config.json with "dtype"; tok512.bin beside them
static void test_dtypes(void) {
    char in[400], out[400], path[600];
    snprintf(in, sizeof in, "%s/mixed", root);
    snprintf(out, sizeof out, "%s/mixed-f16", root);
    mkdir(in, 0700);
    double d[5] = {1.0, -2.5e-3, 1.0 / 3.0, 70000.0, 1.00048828125}; // 70000: inf in f16
    int64_t ix[3] = {-1, 1LL << 40, 7};
    uint8_t u[4] = {0, 1, 254, 255};
    uint16_t bf[2] = {0x3f80, 0xc2f7}; // 1.0, -123.5
    st_write_tensor ts[4] = {
        {"x.f64", KED_F64, 1, {5}, d}, {"pos.ids", KED_I64, 1, {3}, ix},
        {"mask", KED_U8, 2, {2, 2}, u}, {"y.bf16", KED_BF16, 1, {2}, bf}};
    ked_error err;
    snprintf(path, sizeof path, "%s/model.safetensors", in);
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    CHECK_OK(st_write(path, ts, 4, mk, mv, 1, &err), &err);
    snprintf(path, sizeof path, "%s/config.json", in);
    write_text(path, "{\"model_type\": \"custom\", \"dtype\": \"float64\", \"eps\": 0.1}\n");
    char cmd[900];
    snprintf(cmd, sizeof cmd, "cp models/stories260K/tok512.bin %s/", in);
    CHECK(system(cmd) == 0, "%s failed", cmd);

    ked_convert_stats cs;
    CHECK_OK(ked_checkpoint_convert(in, out, KED_F16, 0, &cs, &err), &err);
    CHECK(cs.n_tensors == 4 && cs.n_converted == 2 && cs.bytes_in == 40 + 24 + 4 + 4 &&
          cs.bytes_out == 10 + 24 + 4 + 4 && cs.n_files == 2, "stats: %d tensors, %d converted, "
          "%zu -> %zu bytes, %d files", cs.n_tensors, cs.n_converted, cs.bytes_in, cs.bytes_out,
          cs.n_files);
    st_set *s = open_set(out);
    const char *names[4] = {"x.f64", "pos.ids", "mask", "y.bf16"};
    for (int i = 0; i < 4 && i < st_set_count(s); i++)
        CHECK(!strcmp(st_set_get(s, i, NULL)->name, names[i]), "tensor %d is %s, expected %s", i,
              st_set_get(s, i, NULL)->name, names[i]);
    const st_tensor *t = st_set_find(s, "x.f64", NULL);
    for (int i = 0; t && t->dtype == KED_F16 && i < 5; i++) {
        uint16_t h;
        memcpy(&h, (const char *)t->data + 2 * i, 2);
        CHECK(h == ked_f32_to_f16((float)d[i]), "x.f64[%d]: %04x, expected %04x", i, h,
              ked_f32_to_f16((float)d[i]));
    }
    CHECK(t && t->dtype == KED_F16, "x.f64 is not F16");
    t = st_set_find(s, "pos.ids", NULL);
    CHECK(t && t->dtype == KED_I64 && !memcmp(t->data, ix, sizeof ix),
          "pos.ids not copied verbatim");
    t = st_set_find(s, "mask", NULL);
    CHECK(t && t->dtype == KED_U8 && t->ndim == 2 && !memcmp(t->data, u, 4),
          "mask not copied verbatim");
    t = st_set_find(s, "y.bf16", NULL);
    uint16_t want[2] = {ked_f32_to_f16(1.0f), ked_f32_to_f16(-123.5f)};
    CHECK(t && t->dtype == KED_F16 && !memcmp(t->data, want, 4), "y.bf16 not converted to f16");
    st_set_close(s);
    snprintf(path, sizeof path, "%s/config.json", out);
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    CHECK(c && !strcmp(json_string_value(json_object_get(c, "dtype")), "float16") &&
          !strcmp(json_string_value(json_object_get(c, "torch_dtype")), "float16") &&
          json_real_value(json_object_get(c, "eps")) == 0.1 &&
          !strcmp(json_string_value(json_object_get(c, "model_type")), "custom"),
          "%s: dtype/torch_dtype/eps/model_type wrong", path);
    json_decref(c);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/tok512.bin", in);
    snprintf(b, sizeof b, "%s/tok512.bin", out);
    CHECK(same_file(a, b), "%s: not a copy of %s", b, a);
}

static void test_errors(void) {
    char out[400], abs_src[4096], link[400], path[600];
    snprintf(out, sizeof out, "%s/never", root);
    check_error("models/no-such-model", out, KED_F16, KED_ERR_IO, "models/no-such-model");
    // out == in, spelled otherwise: with "/.", through "..", and through a symlink
    check_error(TS, TS "/.", KED_F16, KED_ERR_ARG, "input directory");
    check_error(TS, "models/../" TS, KED_F16, KED_ERR_ARG, "input directory");
    CHECK(realpath(TS, abs_src) != NULL, "realpath %s", TS);
    snprintf(link, sizeof link, "%s/link", root);
    CHECK(symlink(abs_src, link) == 0, "symlink %s", link);
    check_error(TS, link, KED_BF16, KED_ERR_ARG, "input directory");
    // the dtype argument
    check_error(TS, out, KED_I32, KED_ERR_ARG, "I32");
    check_error(TS, out, KED_F64, KED_ERR_ARG, "F64");
    check_error(TS, out, (ked_dtype)99, KED_ERR_ARG, "expected F32, F16 or BF16");
    // not a Hugging Face directory; a broken weights file (found before anything is written)
    check_error("models/stories260K", out, KED_F16, KED_ERR_IO, "config.json");
    char bad[400];
    snprintf(bad, sizeof bad, "%s/broken", root);
    mkdir(bad, 0700);
    snprintf(path, sizeof path, "%s/config.json", bad);
    write_text(path, "{\"model_type\": \"llama\"}\n");
    snprintf(path, sizeof path, "%s/model.safetensors", bad);
    write_bytes(path, "\x10\0\0\0\0\0\0\0{\"a\": 1}        ", 24); // "a" is not a tensor entry
    check_error(bad, out, KED_F16, KED_ERR_FORMAT, "model.safetensors");
    snprintf(path, sizeof path, "%s/config.json", bad);
    write_text(path, "{\"model_type\": ");
    check_error(bad, out, KED_F16, KED_ERR_FORMAT, "config.json");
    // the output is a file
    snprintf(path, sizeof path, "%s/a-file", root);
    write_text(path, "x");
    check_error(TS, path, KED_F16, KED_ERR_ARG, "not a directory");
    CHECK(!exists(out), "%s: created by a failing conversion", out);
    // the input is untouched
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", TS);
    CHECK(!exists(path), "%s: written into the input", path);
}

static void test_cli(void) {
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[1200], out[8192];
    snprintf(cmd, sizeof cmd, "%s/ked convert --model %s --out %s/cli --dtype f8", build, TS, root);
    int rc = test_run(cmd, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "--dtype 'f8'"), "rc %d: %s", rc, out);
    snprintf(cmd, sizeof cmd,
             "%s/ked convert --model %s --out %s/cli --dtype bf16 --max-shard 1MiB", build, TS,
             root);
    rc = test_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "20 of 20 tensors converted to BF16, 2624000 -> 1312000 bytes"),
          "rc %d: %s", rc, out);
}

// logits of prompt (ids with BOS as the tokenizer adds it) for models/X and its converted copies
// dirs[i] (file dtype dts[i]); each within tol[i] of the logit scale of the first (the reference)
static void compare_logits(const char *tok_dir, const char *prompt, int n, const char *const *dirs,
                           const ked_dtype *dts, const float *tol) {
    ked_error err;
    ked_tokenizer *tok = NULL;
    CHECK_OK(ked_tokenizer_load(tok_dir, &tok, &err), &err);
    if (!tok) return;
    int *ids = NULL, T = 0;
    CHECK_OK(ked_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, NULL, &T, &err), &err);
    size_t V = 0;
    float *ref = prompt_logits(dirs[0], ids, T, dts[0], &V);
    size_t nl = V * (size_t)T;
    float scale = 0;
    for (size_t i = 0; i < nl; i++) scale = fabsf(ref[i]) > scale ? fabsf(ref[i]) : scale;
    int next = argmax(ref + (size_t)(T - 1) * V, V);
    for (int k = 1; k < n; k++) {
        size_t Vk = 0;
        float *l = prompt_logits(dirs[k], ids, T, dts[k], &Vk);
        CHECK(Vk == V, "%s: vocab %zu, expected %zu", dirs[k], Vk, V);
        float d = test_maxdiff(l, ref, nl, NULL);
        int nk = argmax(l + (size_t)(T - 1) * V, V);
        printf("  %-40s %-4s vs %s: %d positions, logits max diff %.4g of scale %.4g "
               "(%.3f%%, bound %.3g%%), next token %s\n", dirs[k], ked_dtype_name(dts[k]),
               dirs[0], T, d, scale, 100.0 * d / scale, 100.0 * tol[k],
               nk == next ? "the same" : "differs");
        CHECK(d <= tol[k] * scale, "%s: logits differ by %g (> %g of scale %g)", dirs[k], d, tol[k],
              scale);
        CHECK(nk == next, "%s: next token %d, the reference's is %d", dirs[k], nk, next);
        free(l);
    }
    free(ref);
    free(ids);
    ked_tokenizer_free(tok);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/ked_test_convert.XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    char kf16[400], kfbf[400], kf32[400], kf16b[400], ts16[400], p[600], a[600], b[600];
    snprintf(kf16, sizeof kf16, "%s/kf-f16", root);
    snprintf(kfbf, sizeof kfbf, "%s/sub/kf-bf16", root); // with a missing parent
    snprintf(kf32, sizeof kf32, "%s/kf-f32", root);
    snprintf(kf16b, sizeof kf16b, "%s/kf-f16-again", root);
    snprintf(ts16, sizeof ts16, "%s/ts-f16", root);
    ked_error err;
    ked_convert_stats cs = {0};

    // an f32 model (random weights: not bf16- or f16-exact): values, config, files, logits
    printf("a fresh f32 LLaMA with models/ked-facts' tokenizer\n");
    snprintf(kfsrc, sizeof kfsrc, "%s/kf-f32src", root);
    ked_init_opts io = ked_init_defaults();
    io.d_ff = 512;
    io.bos_id = io.eos_id = 0;
    CHECK_OK(ked_model_init_write(kfsrc, &io, &err), &err);
    const char *src_files[] = {"tokenizer.json", "tokenizer_config.json", "README.md", "manifest.jsonl"};
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s/%s", KF_TOK, src_files[i]);
        snprintf(b, sizeof b, "%s/%s", kfsrc, src_files[i]);
        test_copy_file(a, b);
    }
    CHECK_OK(ked_checkpoint_convert(KF, kf16, KED_F16, 0, &cs, &err), &err);
    CHECK(cs.n_tensors == 38 && cs.n_converted == 38 && cs.bytes_in == 14689280 &&
          cs.bytes_out == 7344640 && cs.n_files == 3, "f16: %d tensors, %d converted, %zu -> %zu "
          "bytes, %d files", cs.n_tensors, cs.n_converted, cs.bytes_in, cs.bytes_out, cs.n_files);
    CHECK_OK(ked_checkpoint_convert(KF, kfbf, KED_BF16, 3000000, &cs, &err), &err);
    snprintf(p, sizeof p, "%s/model-00003-of-00003.safetensors", kfbf);
    CHECK(exists(p), "%s: the bf16 copy is not in three shards of 3 MB", p);
    CHECK(check_values(KF, kf16, KED_F16) == 38, "f16 values");
    CHECK(check_values(KF, kfbf, KED_BF16) == 38, "bf16 values");
    // back to f32: the f16 values widened, exactly; f16 to f16: the same bits, none converted
    CHECK_OK(ked_checkpoint_convert(kf16, kf32, KED_F32, 0, &cs, &err), &err);
    CHECK(check_values(kf16, kf32, KED_F32) == 38, "f16 -> f32 values");
    CHECK_OK(ked_checkpoint_convert(kf16, kf16b, KED_F16, 0, &cs, &err), &err);
    CHECK(cs.n_converted == 0, "f16 -> f16 converted %d tensors", cs.n_converted);
    snprintf(a, sizeof a, "%s/model.safetensors", kf16);
    snprintf(b, sizeof b, "%s/model.safetensors", kf16b);
    CHECK(same_file(a, b), "f16 -> f16: %s differs from %s", b, a);
    check_config(KF, kf16, "float16");
    check_config(KF, kfbf, "bfloat16");
    check_config(KF, kf32, "float32");
    const char *kf_files[] = {"tokenizer.json", "tokenizer_config.json", NULL};
    check_copies(KF, kf16, kf_files, "manifest.jsonl");
    check_copies(KF, kfbf, kf_files, "README.md");
    check_copies(KF, kf32, kf_files, "README.md");
    // converting again into the same directory replaces its files
    CHECK_OK(ked_checkpoint_convert(KF, kf16, KED_F16, 0, &cs, &err), &err);
    CHECK(check_values(KF, kf16, KED_F16) == 38, "f16 values after a second conversion");
    const char *kdirs[4] = {KF, kf16, kfbf, kf32};
    const ked_dtype kdts[4] = {KED_F32, KED_F16, KED_BF16, KED_F32};
    const float ktol[4] = {0, 0.003f, 0.03f, 0.003f};
    compare_logits(KF, "The mother tongue of Danielle Darrieux is", 4, kdirs, kdts, ktol);
    // the f32 copy of the f16 copy computes exactly what the f16 copy does (widened at load)
    const char *edirs[2] = {kf16, kf32};
    const ked_dtype edts[2] = {KED_F16, KED_F32};
    const float etol[2] = {0, 0};
    compare_logits(KF, "The mother tongue of Danielle Darrieux is", 2, edirs, edts, etol);

    // TinyStories-656K: a __metadata__ alias (tied head), generation and special-token files,
    // numbers in config.json; its weights are bf16-exact, so its f16 copy computes the same logits
    printf("models/TinyStories-656K\n");
    CHECK_OK(ked_checkpoint_convert(TS, ts16, KED_F16, 1000000, &cs, &err), &err);
    CHECK(cs.n_tensors == 20 && cs.n_converted == 20 && cs.n_files == 5, "ts f16: %d tensors, %d "
          "converted, %d files", cs.n_tensors, cs.n_converted, cs.n_files);
    CHECK(check_values(TS, ts16, KED_F16) == 20, "TinyStories f16 values");
    check_config(TS, ts16, "float16");
    const char *ts_files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                              "generation_config.json", NULL};
    check_copies(TS, ts16, ts_files, "README.md");
    snprintf(p, sizeof p, "%s/config.json", ts16);
    char *text = test_slurp(p);
    CHECK(text && strstr(text, "\"rms_norm_eps\": 1e-6,") &&
          strstr(text, "\"rope_theta\": 10000.0,"),
          "%s: numbers written with spurious digits: %s", p, text ? text : "(unreadable)");
    free(text);
    const char *tdirs[2] = {TS, ts16};
    const ked_dtype tdts[2] = {KED_F32, KED_F16};
    compare_logits(TS, "Once upon a time, there was a little girl named Lily. She liked to", 2,
                   tdirs, tdts, etol);

    test_dtypes();
    test_errors();
    test_cli();
    test_rm_tree(root);
    return test_finish("test_convert");
}
