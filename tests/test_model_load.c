// test_model_load.c: ked_model_load on bad input (design.md §4, issue 2). Every case is built in
// a temporary directory from a valid fixture (tests/data/tiny-llama, tests/data/tiny-gpt2,
// models/stories260K) by mutating one thing: truncated files at several cut points, header
// lengths past the end, overlapping and out-of-range data_offsets, wrong shapes, missing tensors,
// unknown and non-float dtypes, config.json files that are not JSON, miss a field, name an
// unsupported architecture or an unsupported option, inconsistent head counts, and llama2.c
// checkpoints that are truncated or whose header is out of range or implies another size. Each
// must fail with the expected status and a message naming the file and the tensor or field,
// leave *out untouched, and (under the sanitizer build) neither crash nor leak. Valid loads
// (a directory, a model.safetensors path, a llama2.c .bin and its directory, F16/BF16 and
// unaligned tensors) must work and count their parameters as the headers say.
#include "test.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ked.h"
#include "io/safetensors.h"

#define LLAMA "tests/data/tiny-llama"
#define GPT2 "tests/data/tiny-gpt2"
#define STORIES "models/stories260K"
#define STORIES_BIN "models/stories260K/stories260K.bin"

static char root[256]; // the temporary directory every case lives in

/* ---- files ----------------------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno)); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

// a fresh directory root/name; its path in dir
static void mkcase(char *dir, size_t cap, const char *name) {
    snprintf(dir, cap, "%s/%s", root, name);
    if (mkdir(dir, 0755) != 0) { fprintf(stderr, "mkdir %s: %s\n", dir, strerror(errno)); exit(1); }
}

/* ---- safetensors files as (header JSON, data section), to mutate ----------------------------- */

typedef struct {
    json_t *h;      // the header
    char *data;     // the data section
    size_t len;
} stf;

static stf stf_read(const char *path) {
    size_t n;
    char *buf = slurp(path, &n);
    uint64_t hl;
    memcpy(&hl, buf, 8);
    json_error_t je;
    stf s;
    s.h = json_loadb(buf + 8, (size_t)hl, 0, &je);
    if (!s.h) { fprintf(stderr, "%s: %s\n", path, je.text); exit(1); }
    s.len = n - 8 - (size_t)hl;
    s.data = malloc(s.len ? s.len : 1);
    memcpy(s.data, buf + 8 + hl, s.len);
    free(buf);
    return s;
}

static stf stf_copy(const stf *s) {
    stf c = {json_deep_copy(s->h), malloc(s->len ? s->len : 1), s->len};
    memcpy(c.data, s->data, s->len);
    return c;
}

static void stf_free(stf *s) { json_decref(s->h); free(s->data); }

// write header + data; header_len >= 0 replaces the stored header length (a lie); cut >= 0
// truncates the file to cut bytes
static void stf_write(const char *path, const stf *s, int64_t header_len, int64_t cut) {
    char *js = json_dumps(s->h, JSON_COMPACT);
    size_t jl = strlen(js), padded = (jl + 7) / 8 * 8;
    size_t total = 8 + padded + s->len;
    char *buf = malloc(total);
    uint64_t hl = header_len >= 0 ? (uint64_t)header_len : (uint64_t)padded;
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, js, jl);
    memset(buf + 8 + jl, ' ', padded - jl);
    memcpy(buf + 8 + padded, s->data, s->len);
    spit(path, buf, cut >= 0 && (size_t)cut < total ? (size_t)cut : total);
    free(buf);
    free(js);
}

static json_t *entry(const stf *s, const char *name) {
    json_t *e = json_object_get(s->h, name);
    if (!e) { fprintf(stderr, "fixture lacks tensor %s\n", name); exit(1); }
    return e;
}
static int64_t off_of(const stf *s, const char *name, int i) {
    return json_integer_value(
            json_array_get(json_object_get(entry(s, name), "data_offsets"), (size_t)i));
}
static void set_offsets(stf *s, const char *name, int64_t b, int64_t e) {
    json_object_set_new(entry(s, name), "data_offsets",
                        json_pack("[II]", (json_int_t)b, (json_int_t)e));
}
static void set_shape(stf *s, const char *name, json_t *shape) {
    json_object_set_new(entry(s, name), "shape", shape);
}
static void set_dtype(stf *s, const char *name, const char *dtype) {
    json_object_set_new(entry(s, name), "dtype", json_string(dtype));
}

/* ---- model directories ----------------------------------------------------------------------- */

static json_t *config_of(const char *fixture) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", fixture);
    json_error_t je;
    json_t *c = json_load_file(p, 0, &je);
    if (!c) { fprintf(stderr, "%s: %s\n", p, je.text); exit(1); }
    return c;
}

// root/name holding config.json (cfg, or the fixture's when NULL; cfg_text, when not NULL, is
// written verbatim instead) and model.safetensors (st, or the fixture's when NULL). The
// directory's path goes to dir.
static void make_model(char *dir, size_t cap, const char *name, const char *fixture,
                       const json_t *cfg, const char *cfg_text, const stf *st) {
    char p[600], src[600];
    mkcase(dir, cap, name);
    snprintf(p, sizeof p, "%s/config.json", dir);
    snprintf(src, sizeof src, "%s/config.json", fixture);
    if (cfg_text) spit(p, cfg_text, strlen(cfg_text));
    else if (cfg) json_dump_file(cfg, p, JSON_INDENT(2));
    else test_copy_file(src, p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    snprintf(src, sizeof src, "%s/model.safetensors", fixture);
    if (st) stf_write(p, st, -1, -1);
    else test_copy_file(src, p);
}

/* ---- the check ------------------------------------------------------------------------------- */

// load `path`: it must fail with status `want`, leave *out untouched, and the message must hold
// `file` (the full path of the file at fault) and every further string up to NULL
static void expect_fail(const char *what, const char *path, ked_status want, const char *file,
                        ...) {
    ked_error err;
    memset(&err, 0, sizeof err);
    ked_model *m = NULL;
    ked_status st = ked_model_load(path, &m, &err);
    printf("  %-34s %-11s %s\n", what, ked_status_name(st), err.msg);
    CHECK(st == want, "%s: status %s, want %s (%s)", what, ked_status_name(st),
          ked_status_name(want), err.msg);
    CHECK(m == NULL, "%s: *out was set on failure", what);
    CHECK(strstr(err.msg, file) != NULL, "%s: message does not name the file %s: %s", what, file,
          err.msg);
    va_list ap;
    va_start(ap, file);
    for (const char *s; (s = va_arg(ap, const char *));)
        CHECK(strstr(err.msg, s) != NULL, "%s: message lacks '%s': %s", what, s, err.msg);
    va_end(ap);
    if (m) ked_model_free(m);
}

// path of file `name` in dir, in a static buffer (one of four, so a call may use two)
static const char *in(const char *dir, const char *name) {
    static char bufs[4][600];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

/* ---- safetensors cases ----------------------------------------------------------------------- */

#define QPROJ "model.layers.0.self_attn.q_proj.weight"

static void safetensors_cases(void) {
    char dir[512], msg[256];
    printf("== safetensors (tiny-llama, tiny-gpt2)\n");
    stf base = stf_read(LLAMA "/model.safetensors");
    size_t hdr_padded;
    {
        char *js = json_dumps(base.h, JSON_COMPACT);
        hdr_padded = (strlen(js) + 7) / 8 * 8;
        free(js);
    }
    size_t full = 8 + hdr_padded + base.len;

    // the rewritten (unmutated) copy loads: the mutations below are what fails
    {
        stf s = stf_copy(&base);
        make_model(dir, sizeof dir, "st_rewritten", LLAMA, NULL, NULL, &s);
        ked_error err;
        ked_model *m = NULL;
        CHECK_OK(ked_model_load(dir, &m, &err), &err);
        ked_model_free(m);
        stf_free(&s);
    }

    // truncated at several cut points
    const int64_t data0 = (int64_t)(8 + hdr_padded);
    const int64_t cuts[] = {0, 5, 8, 100, data0, data0 + 1000, data0 + (int64_t)base.len / 2,
                            (int64_t)full - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "st_cut_%lld", (long long)cuts[i]);
        make_model(dir, sizeof dir, name, LLAMA, NULL, NULL, NULL);
        stf_write(in(dir, "model.safetensors"), &base, -1, cuts[i]);
        snprintf(msg, sizeof msg, "truncated at %lld of %zu", (long long)cuts[i], full);
        if (cuts[i] < 8) {
            expect_fail(msg, dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), "too short", NULL);
        } else if (cuts[i] < (int64_t)(8 + hdr_padded)) {
            expect_fail(msg, dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), "header length",
                        NULL);
        } else {
            // the error names one of the tensors whose data is cut off
            const char *any = NULL;
            const char *key;
            json_t *v;
            expect_fail(msg, dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), "data_offsets",
                        NULL);
            ked_error err;
            ked_model *m = NULL;
            ked_model_load(dir, &m, &err);
            json_object_foreach(base.h, key, v) {
                if (!strcmp(key, "__metadata__")) continue;
                int64_t end = off_of(&base, key, 1);
                char quoted[300];
                snprintf(quoted, sizeof quoted, "'%s'", key);
                if (8 + (int64_t)hdr_padded + end > cuts[i] && strstr(err.msg, quoted)) any = key;
            }
            CHECK(any != NULL, "%s: message names no tensor that was cut off: %s", msg, err.msg);
            ked_model_free(m);
        }
    }

    // header length past the end, and absurd
    mkcase(dir, sizeof dir, "st_hlen_past_end");
    test_copy_file(LLAMA "/config.json", in(dir, "config.json"));
    stf_write(in(dir, "model.safetensors"), &base, (int64_t)full, -1);
    expect_fail("header length past the end", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"),
                "header length", "past the end", NULL);
    mkcase(dir, sizeof dir, "st_hlen_absurd");
    test_copy_file(LLAMA "/config.json", in(dir, "config.json"));
    stf_write(in(dir, "model.safetensors"), &base, (int64_t)1 << 62, -1);
    expect_fail("header length 2^62", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"),
                "header length", NULL);
    mkcase(dir, sizeof dir, "st_hlen_short");
    test_copy_file(LLAMA "/config.json", in(dir, "config.json"));
    stf_write(in(dir, "model.safetensors"), &base, (int64_t)hdr_padded / 2, -1);
    expect_fail("header length cuts the JSON", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"),
                "JSON", NULL);

    // overlapping offsets: the post-attention norm of layer 0 moved 4 bytes into the input norm's
    {
        stf s = stf_copy(&base);
        const char *a = "model.layers.0.input_layernorm.weight";
        const char *b = "model.layers.0.post_attention_layernorm.weight";
        int64_t ab = off_of(&s, a, 0), bb = off_of(&s, b, 0), be = off_of(&s, b, 1);
        set_offsets(&s, b, ab + 4, ab + 4 + (be - bb));
        make_model(dir, sizeof dir, "st_overlap", LLAMA, NULL, NULL, &s);
        expect_fail("overlapping offsets", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"),
                    "overlap", a, b, NULL);
        stf_free(&s);
    }
    // two tensors on the very same bytes
    {
        stf s = stf_copy(&base);
        const char *a = "model.layers.1.self_attn.k_proj.weight";
        const char *b = "model.layers.1.self_attn.v_proj.weight";
        set_offsets(&s, b, off_of(&s, a, 0), off_of(&s, a, 1));
        make_model(dir, sizeof dir, "st_same_bytes", LLAMA, NULL, NULL, &s);
        expect_fail("two tensors on the same bytes", dir, KED_ERR_FORMAT,
                    in(dir, "model.safetensors"), "overlap", a, b, NULL);
        stf_free(&s);
    }

    // offsets out of range
    {
        const char *t = "model.norm.weight";
        struct { const char *name; int64_t b, e; } bad[] = {
            {"offsets past the data section", (int64_t)base.len, (int64_t)base.len + 128},
            {"offsets end one past", (int64_t)base.len - 124, (int64_t)base.len + 4},
            {"offsets begin after end", 128, 0},
            {"offsets negative", -128, 0},
            {"offsets near 2^63", INT64_MAX - 127, INT64_MAX},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            stf s = stf_copy(&base);
            set_offsets(&s, t, bad[i].b, bad[i].e);
            char name[64];
            snprintf(name, sizeof name, "st_offsets_%zu", i);
            make_model(dir, sizeof dir, name, LLAMA, NULL, NULL, &s);
            expect_fail(bad[i].name, dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), t,
                        "data_offsets", NULL);
            stf_free(&s);
        }
        // offsets that are not a pair of integers
        stf s = stf_copy(&base);
        json_object_set_new(entry(&s, t), "data_offsets", json_pack("[s]", "0"));
        make_model(dir, sizeof dir, "st_offsets_strings", LLAMA, NULL, NULL, &s);
        expect_fail("offsets not integers", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), t,
                    "data_offsets", NULL);
        stf_free(&s);
    }

    // wrong shapes: consistent with the file's bytes but not with config.json
    {
        stf s = stf_copy(&base);
        int64_t b = off_of(&s, QPROJ, 0);
        set_shape(&s, QPROJ, json_pack("[ii]", 16, 32));
        set_offsets(&s, QPROJ, b, b + 16 * 32 * 4);
        make_model(dir, sizeof dir, "st_qproj_rows", LLAMA, NULL, NULL, &s);
        expect_fail("q_proj with 16 rows, not 32", dir, KED_ERR_FORMAT,
                    in(dir, "model.safetensors"), QPROJ, "[16, 32]", "[32, 32]", NULL);
        stf_free(&s);
    }
    {
        stf s = stf_copy(&base);
        set_shape(&s, QPROJ, json_pack("[iii]", 32, 4, 8));
        make_model(dir, sizeof dir, "st_qproj_3d", LLAMA, NULL, NULL, &s);
        expect_fail("q_proj 3-D", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), QPROJ, NULL);
        stf_free(&s);
    }
    {
        const char *t = "model.layers.1.input_layernorm.weight";
        stf s = stf_copy(&base);
        set_shape(&s, t, json_pack("[ii]", 1, 32));
        make_model(dir, sizeof dir, "st_norm_2d", LLAMA, NULL, NULL, &s);
        expect_fail("norm weight [1, 32]", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), t,
                    NULL);
        stf_free(&s);
    }
    {
        const char *t = "model.embed_tokens.weight";
        stf s = stf_copy(&base);
        set_shape(&s, t, json_pack("[ii]", 32, 96));
        make_model(dir, sizeof dir, "st_embed_transposed", LLAMA, NULL, NULL, &s);
        expect_fail("embedding transposed", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), t,
                    "[32, 96]", NULL);
        stf_free(&s);
    }
    // a shape the bytes do not hold (the file's own inconsistency)
    {
        stf s = stf_copy(&base);
        set_shape(&s, QPROJ, json_pack("[ii]", 16, 32));
        make_model(dir, sizeof dir, "st_qproj_bytes", LLAMA, NULL, NULL, &s);
        expect_fail("shape vs bytes", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), QPROJ,
                    "bytes", NULL);
        stf_free(&s);
    }
    {
        stf s = stf_copy(&base);
        set_shape(&s, QPROJ, json_pack("[Ii]", (json_int_t)-32, 32));
        make_model(dir, sizeof dir, "st_negative_dim", LLAMA, NULL, NULL, &s);
        expect_fail("negative dim", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), QPROJ,
                    "shape", NULL);
        stf_free(&s);
    }

    // a stored tensor the config does not account for: one layer in config.json, two in the file
    {
        json_t *cfg = config_of(LLAMA);
        json_object_set_new(cfg, "num_hidden_layers", json_integer(1));
        make_model(dir, sizeof dir, "st_unused", LLAMA, cfg, NULL, NULL);
        expect_fail("unused tensor (1 layer configured)", dir, KED_ERR_FORMAT,
                    in(dir, "model.safetensors"), "model.layers.1.", "not used", NULL);
        json_decref(cfg);
    }

    // a missing tensor
    {
        const char *t = "model.layers.1.mlp.up_proj.weight";
        stf s = stf_copy(&base);
        json_object_del(s.h, t);
        make_model(dir, sizeof dir, "st_missing", LLAMA, NULL, NULL, &s);
        expect_fail("missing up_proj", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"),
                    "missing tensor", t, NULL);
        stf_free(&s);
        s = stf_copy(&base);
        json_object_del(s.h, "lm_head.weight");
        make_model(dir, sizeof dir, "st_missing_head", LLAMA, NULL, NULL, &s);
        expect_fail("missing lm_head (untied)", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"),
                    "missing tensor", "lm_head.weight", NULL);
        stf_free(&s);
    }

    // dtypes: unknown strings, spec dtypes ked does not read, integer weights
    {
        struct { const char *dtype; ked_status st; const char *why; } bad[] = {
            {"F17", KED_ERR_FORMAT, "unknown dtype"},
            {"f32", KED_ERR_FORMAT, "unknown dtype"},
            {"", KED_ERR_FORMAT, "unknown dtype"},
            {"F8_E4M3", KED_ERR_UNSUPPORTED, "F8_E4M3"},
            {"I32", KED_ERR_UNSUPPORTED, "I32"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            stf s = stf_copy(&base);
            set_dtype(&s, QPROJ, bad[i].dtype);
            char name[64];
            snprintf(name, sizeof name, "st_dtype_%zu", i);
            make_model(dir, sizeof dir, name, LLAMA, NULL, NULL, &s);
            snprintf(msg, sizeof msg, "dtype \"%s\"", bad[i].dtype);
            expect_fail(msg, dir, bad[i].st, in(dir, "model.safetensors"), QPROJ, bad[i].why, NULL);
            stf_free(&s);
        }
        // dtype not a string
        stf s = stf_copy(&base);
        json_object_set_new(entry(&s, QPROJ), "dtype", json_integer(0));
        make_model(dir, sizeof dir, "st_dtype_int", LLAMA, NULL, NULL, &s);
        expect_fail("dtype 0", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), QPROJ, "dtype",
                    NULL);
        stf_free(&s);
        // an I64 weight (size 8: half as many elements in the same bytes)
        s = stf_copy(&base);
        const char *t = "model.layers.0.mlp.down_proj.weight";
        set_dtype(&s, t, "I64");
        set_shape(&s, t, json_pack("[ii]", 32, 28));
        make_model(dir, sizeof dir, "st_dtype_i64", LLAMA, NULL, NULL, &s);
        expect_fail("down_proj I64", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), t, NULL);
        stf_free(&s);
    }

    // the header itself
    {
        stf s = stf_copy(&base);
        json_decref(s.h);
        s.h = json_pack("[i]", 1);
        make_model(dir, sizeof dir, "st_header_array", LLAMA, NULL, NULL, &s);
        expect_fail("header an array", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), "header",
                    NULL);
        stf_free(&s);
        s = stf_copy(&base);
        json_object_del(entry(&s, QPROJ), "shape");
        make_model(dir, sizeof dir, "st_no_shape", LLAMA, NULL, NULL, &s);
        expect_fail("entry without shape", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), QPROJ,
                    "shape", NULL);
        stf_free(&s);
        s = stf_copy(&base);
        json_object_set_new(s.h, "__metadata__", json_pack("{si}", "format", 1));
        make_model(dir, sizeof dir, "st_metadata_int", LLAMA, NULL, NULL, &s);
        expect_fail("__metadata__ not strings", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"),
                    "__metadata__", "format", NULL);
        stf_free(&s);
    }
    stf_free(&base);

    // GPT-2: fused c_attn with the wrong width, a missing bias, an integer weight
    stf g = stf_read(GPT2 "/model.safetensors");
    {
        const char *t = "h.0.attn.c_attn.weight";
        stf s = stf_copy(&g);
        int64_t b = off_of(&s, t, 0);
        set_shape(&s, t, json_pack("[ii]", 32, 64));
        set_offsets(&s, t, b, b + 32 * 64 * 4);
        make_model(dir, sizeof dir, "gpt2_c_attn", GPT2, NULL, NULL, &s);
        expect_fail("gpt2 c_attn [32, 64]", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), t,
                    "[32, 96]", NULL);
        stf_free(&s);
        t = "h.1.mlp.c_fc.weight";
        s = stf_copy(&g);
        set_shape(&s, t, json_pack("[ii]", 128, 32)); // nn.Linear layout where Conv1D is expected
        make_model(dir, sizeof dir, "gpt2_c_fc_linear", GPT2, NULL, NULL, &s);
        expect_fail("gpt2 c_fc as nn.Linear", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"), t,
                    "[32, 128]", NULL);
        stf_free(&s);
        t = "h.1.mlp.c_proj.bias";
        s = stf_copy(&g);
        json_object_del(s.h, t);
        make_model(dir, sizeof dir, "gpt2_missing_bias", GPT2, NULL, NULL, &s);
        expect_fail("gpt2 missing c_proj.bias", dir, KED_ERR_FORMAT, in(dir, "model.safetensors"),
                    t, NULL);
        stf_free(&s);
        t = "h.0.attn.c_attn.bias";
        s = stf_copy(&g);
        set_dtype(&s, t, "I32");
        make_model(dir, sizeof dir, "gpt2_i32", GPT2, NULL, NULL, &s);
        expect_fail("gpt2 c_attn.bias I32", dir, KED_ERR_UNSUPPORTED, in(dir, "model.safetensors"),
                    t, "I32", NULL);
        stf_free(&s);
    }
    stf_free(&g);

    // a directory with config.json and no weights; a .safetensors path with no config.json
    mkcase(dir, sizeof dir, "st_no_weights");
    test_copy_file(LLAMA "/config.json", in(dir, "config.json"));
    expect_fail("config.json but no weights", dir, KED_ERR_IO, dir, "model.safetensors", NULL);
    mkcase(dir, sizeof dir, "st_no_config");
    test_copy_file(LLAMA "/model.safetensors", in(dir, "model.safetensors"));
    expect_fail("model.safetensors, no config", in(dir, "model.safetensors"), KED_ERR_IO,
                in(dir, "config.json"), NULL);
}

/* ---- config.json cases ----------------------------------------------------------------------- */

static void config_cases(void) {
    char dir[512];
    json_t *c;
    printf("== config.json\n");
#define CFG_CASE(what, fixture, name, want, ...)                                             \
    do {                                                                                     \
        make_model(dir, sizeof dir, name, fixture, c, NULL, NULL);                           \
        expect_fail(what, dir, want, in(dir, "config.json"), __VA_ARGS__, NULL);             \
        json_decref(c);                                                                      \
    } while (0)

    c = config_of(LLAMA); json_object_del(c, "hidden_size");
    CFG_CASE("llama without hidden_size", LLAMA, "cfg_no_hidden_size", KED_ERR_FORMAT,
             "'hidden_size'");
    c = config_of(LLAMA); json_object_del(c, "num_hidden_layers");
    CFG_CASE("llama without num_hidden_layers", LLAMA, "cfg_no_layers", KED_ERR_FORMAT,
             "'num_hidden_layers'");
    c = config_of(LLAMA); json_object_del(c, "vocab_size");
    CFG_CASE("llama without vocab_size", LLAMA, "cfg_no_vocab", KED_ERR_FORMAT, "'vocab_size'");
    c = config_of(GPT2); json_object_del(c, "n_embd");
    CFG_CASE("gpt2 without n_embd", GPT2, "cfg_no_n_embd", KED_ERR_FORMAT, "'n_embd'");
    c = config_of(GPT2); json_object_del(c, "n_head");
    CFG_CASE("gpt2 without n_head", GPT2, "cfg_no_n_head", KED_ERR_FORMAT, "'n_head'");

    c = config_of(LLAMA); json_object_set_new(c, "hidden_size", json_string("32"));
    CFG_CASE("hidden_size a string", LLAMA, "cfg_hidden_string", KED_ERR_FORMAT, "'hidden_size'");
    c = config_of(LLAMA); json_object_set_new(c, "hidden_size", json_integer(-32));
    CFG_CASE("hidden_size negative", LLAMA, "cfg_hidden_negative", KED_ERR_FORMAT, "'hidden_size'");
    c = config_of(LLAMA); json_object_set_new(c, "hidden_size", json_real(32.5));
    CFG_CASE("hidden_size 32.5", LLAMA, "cfg_hidden_real", KED_ERR_FORMAT, "'hidden_size'");
    c = config_of(LLAMA);
    json_object_set_new(c, "intermediate_size", json_integer((json_int_t)1 << 40));
    CFG_CASE("intermediate_size 2^40", LLAMA, "cfg_ff_huge", KED_ERR_FORMAT, "'intermediate_size'");
    c = config_of(LLAMA); json_object_set_new(c, "tie_word_embeddings", json_string("yes"));
    CFG_CASE("tie_word_embeddings \"yes\"", LLAMA, "cfg_tie_string", KED_ERR_FORMAT,
             "'tie_word_embeddings'");
    c = config_of(LLAMA); json_object_set_new(c, "rope_theta", json_string("1e4"));
    CFG_CASE("rope_theta a string", LLAMA, "cfg_theta_string", KED_ERR_FORMAT, "'rope_theta'");
    c = config_of(LLAMA); json_object_set_new(c, "rope_theta", json_real(-1));
    CFG_CASE("rope_theta negative", LLAMA, "cfg_theta_negative", KED_ERR_FORMAT, "'rope_theta'");

    // not JSON, not an object, no model type
    make_model(dir, sizeof dir, "cfg_not_json", LLAMA, NULL, "{\"hidden_size\": 32,\n  oops", NULL);
    expect_fail("config.json not JSON", dir, KED_ERR_FORMAT, in(dir, "config.json"), NULL);
    make_model(dir, sizeof dir, "cfg_empty_file", LLAMA, NULL, "", NULL);
    expect_fail("config.json empty", dir, KED_ERR_FORMAT, in(dir, "config.json"), NULL);
    make_model(dir, sizeof dir, "cfg_array", LLAMA, NULL, "[1, 2, 3]", NULL);
    expect_fail("config.json an array", dir, KED_ERR_FORMAT, in(dir, "config.json"), "object",
                NULL);
    make_model(dir, sizeof dir, "cfg_duplicate_key", LLAMA, NULL,
               "{\"model_type\": \"llama\", \"model_type\": \"gpt2\"}", NULL);
    expect_fail("config.json duplicate key", dir, KED_ERR_FORMAT, in(dir, "config.json"),
                "model_type", NULL);
    c = config_of(LLAMA); json_object_del(c, "model_type"); json_object_del(c, "architectures");
    CFG_CASE("no model_type, no architectures", LLAMA, "cfg_no_type", KED_ERR_FORMAT,
             "'model_type'");

    // unsupported architectures
    c = config_of(LLAMA);
    json_object_set_new(c, "model_type", json_string("mamba"));
    json_object_set_new(c, "architectures", json_pack("[s]", "MambaForCausalLM"));
    CFG_CASE("model_type mamba", LLAMA, "cfg_mamba", KED_ERR_UNSUPPORTED, "'model_type'", "mamba");
    c = config_of(LLAMA);
    json_object_set_new(c, "model_type", json_string("mamba"));
    CFG_CASE("model_type mamba, arch llama", LLAMA, "cfg_mamba_llama_arch", KED_ERR_UNSUPPORTED,
             "'model_type'", "mamba");
    c = config_of(LLAMA);
    json_object_del(c, "model_type");
    json_object_set_new(c, "architectures", json_pack("[s]", "MambaForCausalLM"));
    CFG_CASE("architectures Mamba only", LLAMA, "cfg_mamba_arch", KED_ERR_UNSUPPORTED,
             "'architectures'", "MambaForCausalLM");
    c = config_of(LLAMA); json_object_set_new(c, "model_type", json_integer(7));
    json_object_del(c, "architectures");
    CFG_CASE("model_type 7", LLAMA, "cfg_type_int", KED_ERR_FORMAT, "'model_type'");

    // options that change the computation and that ked does not implement
    c = config_of(LLAMA);
    json_object_set_new(c, "rope_scaling", json_pack("{sssf}", "type", "linear", "factor", 2.0));
    CFG_CASE("rope_scaling set", LLAMA, "cfg_rope_scaling", KED_ERR_UNSUPPORTED, "'rope_scaling'");
    c = config_of(LLAMA); json_object_set_new(c, "hidden_act", json_string("gelu"));
    CFG_CASE("hidden_act gelu", LLAMA, "cfg_hidden_act", KED_ERR_UNSUPPORTED, "'hidden_act'");
    c = config_of(LLAMA); json_object_set_new(c, "hidden_act", json_integer(1));
    CFG_CASE("hidden_act 1", LLAMA, "cfg_hidden_act_int", KED_ERR_UNSUPPORTED, "'hidden_act'");
    c = config_of(LLAMA); json_object_set_new(c, "pretraining_tp", json_integer(2));
    CFG_CASE("pretraining_tp 2", LLAMA, "cfg_tp", KED_ERR_UNSUPPORTED, "'pretraining_tp'");
    c = config_of(GPT2); json_object_set_new(c, "activation_function", json_string("relu"));
    CFG_CASE("gpt2 activation relu", GPT2, "cfg_gpt2_relu", KED_ERR_UNSUPPORTED,
             "'activation_function'");
    c = config_of(GPT2); json_object_set_new(c, "scale_attn_weights", json_false());
    CFG_CASE("gpt2 scale_attn_weights false", GPT2, "cfg_gpt2_noscale", KED_ERR_UNSUPPORTED,
             "'scale_attn_weights'");
    c = config_of(GPT2); json_object_set_new(c, "scale_attn_by_inverse_layer_idx", json_true());
    CFG_CASE("gpt2 scale by layer", GPT2, "cfg_gpt2_bylayer", KED_ERR_UNSUPPORTED,
             "'scale_attn_by_inverse_layer_idx'");

    // inconsistent sizes
    c = config_of(LLAMA); json_object_set_new(c, "num_key_value_heads", json_integer(3));
    CFG_CASE("kv heads 3 of 4", LLAMA, "cfg_kv_3", KED_ERR_FORMAT, "num_key_value_heads");
    c = config_of(LLAMA); json_object_set_new(c, "num_key_value_heads", json_integer(8));
    CFG_CASE("kv heads 8 of 4", LLAMA, "cfg_kv_8", KED_ERR_FORMAT, "num_key_value_heads");
    c = config_of(LLAMA); json_object_set_new(c, "num_key_value_heads", json_integer(0));
    CFG_CASE("kv heads 0", LLAMA, "cfg_kv_0", KED_ERR_FORMAT, "num_key_value_heads");
    c = config_of(LLAMA); json_object_set_new(c, "num_attention_heads", json_integer(3));
    json_object_set_new(c, "num_key_value_heads", json_integer(3));
    CFG_CASE("heads 3, hidden 32", LLAMA, "cfg_heads_3", KED_ERR_FORMAT, "heads");
    c = config_of(LLAMA); json_object_set_new(c, "num_attention_heads", json_integer(0));
    CFG_CASE("heads 0", LLAMA, "cfg_heads_0", KED_ERR_FORMAT, "heads");
    c = config_of(LLAMA); json_object_set_new(c, "head_dim", json_integer(7));
    CFG_CASE("head_dim 7 (odd: no rotary pairs)", LLAMA, "cfg_head_dim_odd", KED_ERR_FORMAT,
             "head_dim");
    c = config_of(LLAMA); json_object_set_new(c, "rms_norm_eps", json_integer(0));
    CFG_CASE("rms_norm_eps 0", LLAMA, "cfg_eps_0", KED_ERR_FORMAT, "eps");
    c = config_of(LLAMA); json_object_set_new(c, "intermediate_size", json_integer(0));
    CFG_CASE("intermediate_size 0", LLAMA, "cfg_ff_0", KED_ERR_FORMAT, "d_ff");
    c = config_of(LLAMA); json_object_set_new(c, "max_position_embeddings", json_integer(0));
    CFG_CASE("max_position_embeddings 0", LLAMA, "cfg_maxpos_0", KED_ERR_FORMAT, "positions");

    // config.json and the weights disagree: the error names the weights file and the tensor
#define CFG_ST_CASE(what, fixture, name, want, ...)                                          \
    do {                                                                                     \
        make_model(dir, sizeof dir, name, fixture, c, NULL, NULL);                           \
        expect_fail(what, dir, want, in(dir, "model.safetensors"), __VA_ARGS__, NULL);       \
        json_decref(c);                                                                      \
    } while (0)
    c = config_of(LLAMA); json_object_set_new(c, "num_hidden_layers", json_integer(3));
    CFG_ST_CASE("3 layers, file has 2", LLAMA, "cfg_layers_3", KED_ERR_FORMAT, "model.layers.2.");
    c = config_of(LLAMA); json_object_set_new(c, "num_hidden_layers", json_integer(1 << 30));
    CFG_ST_CASE("2^30 layers", LLAMA, "cfg_layers_huge", KED_ERR_FORMAT, "layers");
    c = config_of(LLAMA); json_object_set_new(c, "vocab_size", json_integer(97));
    CFG_ST_CASE("vocab 97, file has 96", LLAMA, "cfg_vocab_97", KED_ERR_FORMAT,
                "model.embed_tokens.weight", "[97, 32]");
    c = config_of(LLAMA); json_object_set_new(c, "vocab_size", json_integer(1 << 30));
    json_object_set_new(c, "hidden_size", json_integer(1 << 30));
    json_object_set_new(c, "head_dim", json_integer(8));
    CFG_ST_CASE("vocab and hidden 2^30", LLAMA, "cfg_vocab_huge", KED_ERR_FORMAT,
                "model.embed_tokens.weight");
    c = config_of(LLAMA); json_object_set_new(c, "tie_word_embeddings", json_true());
    // tied: lm_head.weight is not needed, the file's extra tensor is ignored; loads
    make_model(dir, sizeof dir, "cfg_tied_extra", LLAMA, c, NULL, NULL);
    json_decref(c);
    {
        ked_error err;
        ked_model *m = NULL;
        CHECK_OK(ked_model_load(dir, &m, &err), &err);
        if (m) CHECK(ked_model_config(m)->tied_head == 1, "tie_word_embeddings not read");
        ked_model_free(m);
    }
    c = config_of(LLAMA); json_object_del(c, "model_type"); // "architectures" alone: loads
    make_model(dir, sizeof dir, "cfg_arch_only", LLAMA, c, NULL, NULL);
    json_decref(c);
    {
        ked_error err;
        ked_model *m = NULL;
        CHECK_OK(ked_model_load(dir, &m, &err), &err);
        if (m) CHECK(!strcmp(ked_model_config(m)->family, "llama"), "family %s",
                     ked_model_config(m)->family);
        ked_model_free(m);
    }
    c = config_of(LLAMA); json_object_set_new(c, "attention_bias", json_true());
    CFG_ST_CASE("attention_bias, no biases in file", LLAMA, "cfg_attn_bias", KED_ERR_FORMAT,
                "model.layers.0.self_attn.q_proj.bias");
    c = config_of(GPT2); json_object_set_new(c, "n_inner", json_integer(64));
    CFG_ST_CASE("gpt2 n_inner 64, file has 128", GPT2, "cfg_gpt2_inner", KED_ERR_FORMAT,
                "h.0.mlp.c_fc.weight");
    c = config_of(GPT2); json_object_set_new(c, "n_positions", json_integer(128));
    CFG_ST_CASE("gpt2 n_positions 128, file has 64", GPT2, "cfg_gpt2_pos", KED_ERR_FORMAT,
                "wpe.weight");
#undef CFG_CASE
#undef CFG_ST_CASE
}

/* ---- llama2.c checkpoints -------------------------------------------------------------------- */

static void llama2c_cases(void) {
    char dir[512], msg[128];
    printf("== llama2.c checkpoints (stories260K)\n");
    size_t n;
    char *bin = slurp(STORIES_BIN, &n);
    mkcase(dir, sizeof dir, "l2c");
    const char *p = in(dir, "stories260K.bin");

    // truncated
    const size_t cuts[] = {0, 20, 27, 28, 1000, n / 2, n - 4, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spit(p, bin, cuts[i]);
        snprintf(msg, sizeof msg, "truncated at %zu of %zu", cuts[i], n);
        if (cuts[i] < 28)
            expect_fail(msg, p, KED_ERR_FORMAT, p, "header", NULL);
        else
            expect_fail(msg, p, KED_ERR_FORMAT, p, "bytes", "implies", NULL);
    }
    // a byte too many
    {
        char *b = malloc(n + 4);
        memcpy(b, bin, n);
        memset(b + n, 0, 4);
        spit(p, b, n + 4);
        free(b);
        expect_fail("4 trailing bytes", p, KED_ERR_FORMAT, p, "implies", NULL);
    }

    // header fields
    struct { int field; int32_t value; const char *name; const char *needle; } bad[] = {
        {0, -64, "dim -64", "'dim'"},
        {0, 0, "dim 0", "'dim'"},
        {0, INT32_MIN, "dim INT32_MIN", "'dim'"},
        {0, 1 << 25, "dim 2^25", "'dim'"},
        {1, 173, "hidden_dim 173 (size differs)", "implies"},
        {1, -172, "hidden_dim -172", "'hidden_dim'"},
        {2, 6, "n_layers 6 (size differs)", "implies"},
        {2, -5, "n_layers -5", "'n_layers'"},
        {3, 0, "n_heads 0", "'n_heads'"},
        {3, 7, "n_heads 7 (64 % 7)", "'n_heads'"},
        {3, 32, "n_heads 32 (head size 2: size)", "implies"},
        {3, 64, "n_heads 64 (odd head size 1)", "'dim'"},
        {4, 3, "n_kv_heads 3 (8 % 3)", "'n_kv_heads'"},
        {4, 16, "n_kv_heads 16 > n_heads", "'n_kv_heads'"},
        {4, -4, "n_kv_heads -4", "'n_kv_heads'"},
        {5, -512, "vocab -512 (unshared: size)", "implies"},
        {5, INT32_MIN, "vocab INT32_MIN", "'vocab_size'"},
        {5, 0, "vocab 0", "'vocab_size'"},
        {5, -(1 << 30), "vocab -2^30 (size)", "implies"},
        {5, 513, "vocab 513 (size differs)", "implies"},
        {6, 0, "seq_len 0", "'seq_len'"},
        {6, 1024, "seq_len 1024 (size differs)", "implies"},
        {6, -1, "seq_len -1", "'seq_len'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *b = malloc(n);
        memcpy(b, bin, n);
        memcpy(b + 4 * bad[i].field, &bad[i].value, 4);
        spit(p, b, n);
        free(b);
        expect_fail(bad[i].name, p, KED_ERR_FORMAT, p, bad[i].needle, NULL);
    }
    // every field at the largest value the header check lets through: the size it implies does
    // not fit in 64 bits, and must still be an error (not an overflow)
    {
        int32_t h[7] = {1 << 24, 1 << 24, 1 << 24, 1 << 4, 1 << 4, 1 << 24, 1 << 24};
        char *b = malloc(n);
        memcpy(b, bin, n);
        memcpy(b, h, sizeof h);
        spit(p, b, n);
        expect_fail("all fields 2^24", p, KED_ERR_FORMAT, p, "implies", NULL);
        int32_t h2[7] = {1 << 24, 1 << 24, 1 << 24, 1 << 23, 1 << 23, -(1 << 24), 1 << 24};
        memcpy(b, h2, sizeof h2);
        spit(p, b, n);
        expect_fail("fields 2^24, 2^23 heads", p, KED_ERR_FORMAT, p, NULL);
        free(b);
    }

    // a directory holding a bad checkpoint: the error names the .bin
    {
        char d2[512];
        mkcase(d2, sizeof d2, "l2c_dir_bad");
        const char *q = in(d2, "model.bin");
        spit(q, bin, n / 3);
        expect_fail("directory with a truncated .bin", d2, KED_ERR_FORMAT, q, "implies", NULL);
    }
    // a directory with neither config.json nor a .bin, an empty .bin, a missing path
    {
        char d3[512];
        mkcase(d3, sizeof d3, "neither");
        spit(in(d3, "README.md"), "nothing here\n", 13);
        spit(in(d3, "model.safetensors"), "", 0);
        expect_fail("neither config.json nor .bin", d3, KED_ERR_FORMAT, d3, "config.json", ".bin",
                    NULL);
        mkcase(d3, sizeof d3, "empty_bin");
        spit(in(d3, "x.bin"), "", 0);
        expect_fail("an empty .bin", in(d3, "x.bin"), KED_ERR_FORMAT, in(d3, "x.bin"), NULL);
        mkcase(d3, sizeof d3, "dir_empty_bin");
        spit(in(d3, "x.bin"), "", 0);
        expect_fail("a directory with an empty .bin", d3, KED_ERR_FORMAT, in(d3, "x.bin"), NULL);
        snprintf(d3, sizeof d3, "%s/does-not-exist", root);
        expect_fail("a missing path", d3, KED_ERR_IO, d3, NULL);
        snprintf(d3, sizeof d3, "%s/does-not-exist.bin", root);
        expect_fail("a missing .bin", d3, KED_ERR_IO, d3, NULL);
        ked_error err;
        ked_model *m = NULL;
        CHECK(ked_model_load("", &m, &err) == KED_ERR_ARG && !m, "empty path: %s", err.msg);
    }
    free(bin);
}

/* ---- valid loads ----------------------------------------------------------------------------- */

static ked_model *load_ok(const char *path) {
    ked_error err;
    ked_model *m = NULL;
    ked_status st = ked_model_load(path, &m, &err);
    CHECK(st == KED_OK && m, "%s: %s", path, err.msg);
    return st == KED_OK ? m : NULL;
}

// HF names, shapes and values of two models are the same
static void same_tensors(const ked_model *a, const ked_model *b, const char *what, float tol) {
    CHECK(ked_model_n_tensors(a) == ked_model_n_tensors(b), "%s: %d vs %d tensors", what,
          ked_model_n_tensors(a), ked_model_n_tensors(b));
    float worst = 0;
    for (int i = 0; i < ked_model_n_tensors(a) && i < ked_model_n_tensors(b); i++) {
        const char *name = ked_model_tensor_name(a, i);
        int64_t sa[2], sb[2];
        int na = ked_model_tensor_shape(a, name, sa), nb = ked_model_tensor_shape(b, name, sb);
        CHECK(na == nb && na > 0 && sa[0] == sb[0] && sa[1] == sb[1], "%s: %s shapes differ", what,
              name);
        if (na != nb || na <= 0 || sa[0] != sb[0] || sa[1] != sb[1]) continue;
        size_t ne = (size_t)(sa[0] * sa[1]);
        float *x = malloc(ne * 4), *y = malloc(ne * 4);
        ked_error err;
        CHECK_OK(ked_model_tensor_read(a, name, 0, x, &err), &err);
        CHECK_OK(ked_model_tensor_read(b, name, 0, y, &err), &err);
        float d = test_maxdiff(x, y, ne, NULL);
        if (d > worst) worst = d;
        CHECK(d <= tol, "%s: %s differs by %g", what, name, d);
        free(x); free(y);
    }
    printf("  %-34s max diff %.3g over %d tensors\n", what, worst, ked_model_n_tensors(a));
}

// logits of a short sequence
static float *logits_of(const ked_model *m, int *V) {
    const int ids[5] = {1, 7, 42, 3, 11};
    ked_error err;
    ked_run *r = NULL;
    CHECK_OK(ked_run_new(m, 1, 5, 5, 0, &r, &err), &err);
    if (!r) return NULL;
    CHECK_OK(ked_forward(m, r, ids, 1, 5, NULL, NULL, &err), &err);
    *V = ked_model_config(m)->vocab;
    float *out = malloc(sizeof(float) * 5 * (size_t)*V);
    memcpy(out, ked_run_logits(r, NULL), sizeof(float) * 5 * (size_t)*V);
    ked_run_free(r);
    return out;
}

// the fixture rewritten with every tensor in `dtype` (F16, BF16), or F32 behind a 2-byte U8
// tensor so that every F32 tensor is misaligned
static void write_variant(const char *fixture, const char *dir, ked_dtype dtype, int misalign) {
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", fixture);
    ked_error err;
    st_file *f = NULL;
    if (st_open(p, &f, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    int n = st_count(f);
    st_write_tensor *w = calloc((size_t)n + 1, sizeof *w);
    void **bufs = calloc((size_t)n, sizeof *bufs);
    static const uint8_t pad[2] = {0, 0};
    int k = 0;
    if (misalign) {
        // a buffer the family ignores (GPT-2's causal-mask buffers, LLaMA's stored inv_freq)
        w[k].name = strstr(fixture, "gpt2") ? "h.0.attn.masked_bias"
                                            : "model.layers.0.self_attn.rotary_emb.inv_freq";
        w[k].dtype = KED_U8;
        w[k].ndim = 1;
        w[k].shape[0] = 2;
        w[k].data = pad;
        k++;
    }
    for (int i = 0; i < n; i++, k++) {
        const st_tensor *t = st_get(f, i);
        w[k].name = t->name; w[k].ndim = t->ndim;
        memcpy(w[k].shape, t->shape, sizeof t->shape);
        float *x = malloc(sizeof(float) * (size_t)t->numel);
        if (st_to_f32(f, t, x, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
        if (dtype == KED_F32) {
            w[k].dtype = KED_F32; w[k].data = x; bufs[i] = x;
        } else {
            void *h = malloc(2 * (size_t)t->numel);
            if (dtype == KED_F16) ked_f32_to_f16_row(x, h, (size_t)t->numel);
            else ked_f32_to_bf16_row(x, h, (size_t)t->numel);
            free(x);
            w[k].dtype = dtype; w[k].data = h; bufs[i] = h;
        }
    }
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (st_write(p, w, k, mk, mv, 1, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs); free(w);
    st_close(f);
    char src[600];
    snprintf(src, sizeof src, "%s/config.json", fixture);
    snprintf(p, sizeof p, "%s/config.json", dir);
    test_copy_file(src, p);
}

static void valid_cases(void) {
    char dir[512];
    printf("== valid loads\n");
    // tiny-llama: directory and file path
    ked_model *a = load_ok(LLAMA), *b = load_ok(LLAMA "/model.safetensors");
    if (a && b) {
        CHECK(!strcmp(ked_model_format(a), "safetensors"), "format %s", ked_model_format(a));
        CHECK(ked_model_n_params(a) == 23200, "tiny-llama: %lld params, file holds 23200",
              (long long)ked_model_n_params(a));
        CHECK(ked_model_n_tensors(a) == 21, "tiny-llama: %d tensors", ked_model_n_tensors(a));
        CHECK(!strcmp(ked_model_path(b), LLAMA "/model.safetensors"), "path %s", ked_model_path(b));
        CHECK(ked_model_file_dtype(a) == KED_F32, "file dtype %s",
              ked_dtype_name(ked_model_file_dtype(a)));
        same_tensors(a, b, "tiny-llama dir vs file", 0);
    }
    // the same model as F16, BF16, and misaligned F32: converted once at load
    if (a) {
        int V;
        float *ref = logits_of(a, &V);
        struct { const char *name; ked_dtype dt; int mis; float tol; } vs[] = {
            {"llama_f16", KED_F16, 0, 1e-3f}, {"llama_bf16", KED_BF16, 0, 1e-2f},
            {"llama_misaligned", KED_F32, 1, 0},
        };
        for (int i = 0; i < 3; i++) {
            mkcase(dir, sizeof dir, vs[i].name);
            write_variant(LLAMA, dir, vs[i].dt, vs[i].mis);
            ked_model *v = load_ok(dir);
            if (!v) continue;
            CHECK(ked_model_file_dtype(v) == vs[i].dt, "%s: file dtype %s", vs[i].name,
                  ked_dtype_name(ked_model_file_dtype(v)));
            same_tensors(a, v, vs[i].name, vs[i].tol);
            int V2;
            float *got = logits_of(v, &V2);
            float d = got && ref ? test_maxdiff(got, ref, 5 * (size_t)V, NULL) : INFINITY;
            CHECK(d <= (vs[i].mis ? 0 : 50 * vs[i].tol), "%s: logits differ by %g", vs[i].name, d);
            free(got);
            ked_model_free(v);
        }
        free(ref);
    }
    ked_model_free(a);
    ked_model_free(b);

    // GPT-2 (Conv1D transposes, fused c_attn), as F16 too
    a = load_ok(GPT2);
    if (a) {
        CHECK(ked_model_n_params(a) == 30592, "tiny-gpt2: %lld params, file holds 30592",
              (long long)ked_model_n_params(a));
        CHECK(ked_model_n_tensors(a) == 28, "tiny-gpt2: %d tensors", ked_model_n_tensors(a));
        mkcase(dir, sizeof dir, "gpt2_f16");
        write_variant(GPT2, dir, KED_F16, 0);
        b = load_ok(dir);
        if (b) same_tensors(a, b, "gpt2 f16", 1e-3f);
        ked_model_free(b);
        mkcase(dir, sizeof dir, "gpt2_misaligned");
        write_variant(GPT2, dir, KED_F32, 1);
        b = load_ok(dir);
        if (b) same_tensors(a, b, "gpt2 misaligned", 0);
        ked_model_free(b);
    }
    ked_model_free(a);

    // stories260K: the .bin and its directory. Header: dim 64, hidden 172, 5 layers, 8 heads /
    // 4 kv heads (head_dim 8), vocab 512 (positive: shared classifier), seq_len 512.
    a = load_ok(STORIES_BIN);
    b = load_ok(STORIES);
    if (a && b) {
        const int64_t C = 64, F = 172, L = 5, Q = 8 * 8, KV = 4 * 8, V = 512;
        const int64_t want = V * C                          // token embedding (= classifier)
                             + L * (C + C * Q + 2 * C * KV + Q * C + C + 3 * F * C) // layers
                             + C;                           // final norm
        printf("  stories260K                        %lld parameters (header implies %lld)\n",
               (long long)ked_model_n_params(a), (long long)want);
        CHECK(want == 260032, "arithmetic");
        CHECK(ked_model_n_params(a) == want, "stories260K: %lld params, want %lld",
              (long long)ked_model_n_params(a), (long long)want);
        CHECK(!strcmp(ked_model_format(a), "llama2.c"), "format %s", ked_model_format(a));
        CHECK(ked_model_n_tensors(a) == 1 + 9 * 5 + 1, "stories260K: %d tensors (tied: no lm_head)",
              ked_model_n_tensors(a));
        const ked_config *c = ked_model_config(a);
        CHECK(c->d_model == 64 && c->d_ff == 172 && c->n_layer == 5 && c->n_head == 8 &&
              c->n_kv_head == 4 && c->head_dim == 8 && c->vocab == 512 && c->max_pos == 512 &&
              c->tied_head && c->bos_id == 1 && c->eos_id == 2,
              "stories260K config read wrong");
        CHECK(!strcmp(ked_model_path(b), STORIES), "path %s", ked_model_path(b));
        same_tensors(a, b, "stories260K .bin vs directory", 0);
    }
    ked_model_free(a);
    ked_model_free(b);

    // TinyStories-656K: lm_head.weight only, the embedding through the __metadata__ alias
    a = load_ok("models/TinyStories-656K");
    if (a) {
        const int64_t C = 128, F = 384, L = 2, Q = 8 * 16, KV = 4 * 16, V = 2048;
        const int64_t want = V * C + L * (C + C * Q + 2 * C * KV + Q * C + C + 3 * F * C) + C;
        printf("  TinyStories-656K                   %lld parameters (config implies %lld)\n",
               (long long)ked_model_n_params(a), (long long)want);
        CHECK(want == 656000, "arithmetic");
        CHECK(ked_model_n_params(a) == want, "TinyStories-656K: %lld params, want %lld",
              (long long)ked_model_n_params(a), (long long)want);
        CHECK(ked_model_config(a)->tied_head, "TinyStories-656K is tied");
        int64_t shape[2];
        CHECK(ked_model_tensor_shape(a, "model.embed_tokens.weight", shape) == 2 &&
              shape[0] == 2048 && shape[1] == 128, "embed_tokens shape");
    }
    ked_model_free(a);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/ked_test_model_load.XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    ked_set_threads(1);
    safetensors_cases();
    config_cases();
    llama2c_cases();
    valid_cases();
    test_rm_tree(root);
    return test_finish("test_model_load");
}
