// test_safetensors.c: safetensors round trips, f16/bf16 conversions, sharded sets, and one
// hand-made bad file per validation rule of docs/formats.md (status + message checked).
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "io/safetensors.h"
#include "test.h"

static char tmpdir[256];

static char *tpath(const char *name) { // a path in the test's temp dir (static rotating buffers)
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (ked_is_dir(p)) rm_tree(p); else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    if (n && fwrite(p, 1, n, f) != n) { perror(path); exit(2); }
    fclose(f);
}

// a raw safetensors file: 8-byte length (hlen_override when nonzero) + header + data_len bytes
static void write_raw(const char *path, const char *header, size_t data_len,
                      uint64_t hlen_override) {
    size_t h = strlen(header), n = 8 + h + data_len;
    unsigned char *b = calloc(n, 1);
    uint64_t hl = hlen_override ? hlen_override : h;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hl >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++) b[8 + h + i] = (unsigned char)i;
    write_bytes(path, b, n);
    free(b);
}

// the call failed with `want` and its message holds the file and each given fragment
static void expect_err_(int line, ked_status got, const ked_error *e, ked_status want,
                        const char *path, const char *a, const char *b) {
    test_checks_++;
    int ok = got == want && (!path || strstr(e->msg, path)) && (!a || strstr(e->msg, a)) &&
             (!b || strstr(e->msg, b));
    if (!ok) {
        test_failures_++;
        fprintf(stderr, "FAIL %s:%d: expected status %s with '%s' '%s' '%s', got %s: %s\n",
                __FILE__, line, ked_status_name(want), path ? path : "", a ? a : "", b ? b : "",
                ked_status_name(got), got ? e->msg : "(success)");
    }
}
#define EXPECT_ERR(got, e, want, path, a, b) expect_err_(__LINE__, got, e, want, path, a, b)

// open a raw file that must fail (and must not leave *out set)
static void bad_file(int line, const char *header, size_t data_len, uint64_t hlen, ked_status want,
                     const char *a, const char *b) {
    const char *p = tpath("bad.safetensors");
    write_raw(p, header, data_len, hlen);
    st_file *f = NULL;
    ked_error e = {0};
    ked_status st = st_open(p, &f, &e);
    expect_err_(line, st, &e, want, p, a, b);
    if (f) { CHECK(f == NULL, "st_open set *out on failure"); st_close(f); }
}
#define BAD(header, data_len, want, a, b) bad_file(__LINE__, header, data_len, 0, want, a, b)

static uint32_t f32u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float uf32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ------------------------------------------------------------------------------------------ */

static void test_f16_bf16(void) {
    // f16: exact values, rounding ties to even, overflow, subnormals, inf, nan
    CHECK(ked_f32_to_f16(1.0f) == 0x3c00, "1.0");
    CHECK(ked_f32_to_f16(-2.0f) == 0xc000, "-2.0");
    CHECK(ked_f32_to_f16(0.0f) == 0x0000 && ked_f32_to_f16(-0.0f) == 0x8000, "signed zeros");
    CHECK(ked_f32_to_f16(65504.0f) == 0x7bff, "max f16");
    CHECK(ked_f32_to_f16(65519.0f) == 0x7bff, "65519 rounds down to max");
    CHECK(ked_f32_to_f16(65520.0f) == 0x7c00, "65520 rounds to inf");
    CHECK(ked_f32_to_f16(1e10f) == 0x7c00 && ked_f32_to_f16(-1e10f) == 0xfc00, "overflow to inf");
    CHECK(ked_f32_to_f16(INFINITY) == 0x7c00 && ked_f32_to_f16(-INFINITY) == 0xfc00, "inf");
    uint16_t hn = ked_f32_to_f16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0, "nan -> nan: %04x", hn);
    CHECK(ked_f32_to_f16(uf32(0x7f800001u)) & 0x3ff, "signalling nan with low payload stays nan");
    CHECK(ked_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie to even (down)");
    CHECK(ked_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie to even (up)");
    CHECK(ked_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01, "above the tie rounds up");
    CHECK(ked_f32_to_f16(0x1p-24f) == 0x0001, "smallest subnormal");
    CHECK(ked_f32_to_f16(0x1p-25f) == 0x0000, "half the smallest subnormal ties to 0");
    CHECK(ked_f32_to_f16(0x1.8p-25f) == 0x0001, "0.75 ulp rounds up");
    CHECK(ked_f32_to_f16(0x1.8p-24f) == 0x0002, "1.5 ulp ties to 2");
    CHECK(ked_f32_to_f16(0x1p-14f) == 0x0400, "smallest normal");
    CHECK(ked_f32_to_f16(0x1p-14f - 0x1p-26f) == 0x0400, "rounds up into the normals");
    CHECK(ked_f32_to_f16(0x1.ff8p-15f) == 0x03ff, "largest subnormal");
    CHECK(ked_f32_to_f16(1e-30f) == 0 && ked_f32_to_f16(-1e-30f) == 0x8000, "underflow");
    CHECK(ked_f16_to_f32(0x0001) == 0x1p-24f, "subnormal widening");
    CHECK(ked_f16_to_f32(0x83ff) == -0x1.ff8p-15f, "negative subnormal widening");
    CHECK(isinf(ked_f16_to_f32(0xfc00)) && ked_f16_to_f32(0xfc00) < 0, "-inf widening");
    // every f16 survives f16 -> f32 -> f16 bit for bit (NaNs stay NaN)
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ked_f16_to_f32((uint16_t)h);
        int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan ? !isnan(f) || ked_f32_to_f16(f) != (h | 0x200) : ked_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d f16 values do not round trip", bad);
#ifdef __FLT16_MAX__
    // against the compiler's own conversion (round to nearest even) on many f32 bit patterns
    ked_rng r;
    ked_rng_seed(&r, 7);
    bad = 0;
    for (int i = 0; i < 400000; i++) {
        uint32_t u = i < 200000 ? (uint32_t)ked_rng_u64(&r)
                                 : 0x33000000u + (uint32_t)(ked_rng_u64(&r) % 0x15000000u);
        float f = uf32(u);
        if (isnan(f)) continue;
        _Float16 hw = (_Float16)f;
        uint16_t hb; memcpy(&hb, &hw, 2);
        if (ked_f32_to_f16(f) != hb && bad++ < 5)
            fprintf(stderr, "f32 %08x: ked %04x, compiler %04x\n", u, ked_f32_to_f16(f), hb);
    }
    CHECK(bad == 0, "%d f32->f16 conversions differ from the compiler's", bad);
#endif
    // bf16
    CHECK(ked_f32_to_bf16(1.0f) == 0x3f80, "bf16 1.0");
    CHECK(ked_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16 tie to even (down)");
    CHECK(ked_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "bf16 tie to even (up)");
    CHECK(ked_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "bf16 above the tie");
    CHECK(ked_f32_to_bf16(INFINITY) == 0x7f80 && ked_f32_to_bf16(-INFINITY) == 0xff80, "bf16 inf");
    CHECK(ked_f32_to_bf16(uf32(0x7f7fffffu)) == 0x7f80, "max f32 rounds to bf16 inf");
    uint16_t bn = ked_f32_to_bf16(uf32(0x7f800001u));
    CHECK((bn & 0x7f80) == 0x7f80 && (bn & 0x7f), "bf16 nan with low payload stays nan: %04x", bn);
    CHECK(ked_f32_to_bf16(uf32(0x00010000u)) == 0x0001, "bf16 subnormal");
    CHECK(ked_f32_to_bf16(uf32(0x00008000u)) == 0x0000, "bf16 subnormal tie to even");
    CHECK(f32u(ked_bf16_to_f32(0x8001)) == 0x80010000u, "bf16 widening");
    bad = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = ked_bf16_to_f32((uint16_t)b);
        if (!isnan(f) && ked_f32_to_bf16(f) != b) bad++;
        if (isnan(f) && !isnan(ked_bf16_to_f32(ked_f32_to_bf16(f)))) bad++;
    }
    CHECK(bad == 0, "%d bf16 values do not round trip", bad);
    // rows (SIMD where built with F16C) agree with the scalar functions bit for bit
    {
        enum { N = 65536 + 5 };
        uint16_t *hs = malloc(N * 2), *h2 = malloc(N * 2);
        float *fs = malloc(N * 4);
        for (uint32_t i = 0; i < N; i++) hs[i] = (uint16_t)i;
        ked_f16_to_f32_row(hs, fs, N);
        int rbad = 0;
        for (uint32_t i = 0; i < N; i++) rbad += f32u(fs[i]) != f32u(ked_f16_to_f32(hs[i]));
        CHECK(rbad == 0, "%d f16 rows differ from scalar", rbad);
        ked_rng rr;
        ked_rng_seed(&rr, 3);
        for (uint32_t i = 0; i < N; i++) {
            uint32_t u = (uint32_t)ked_rng_u64(&rr);
            if (i % 4 == 1) u = (u & 0x87ffffffu) | 0x30000000u; // around the f16 range
            if (i % 97 == 0) u |= 0x7f800000u;                   // inf / NaN
            fs[i] = uf32(u);
        }
        ked_f32_to_f16_row(fs, h2, N);
        rbad = 0;
        for (uint32_t i = 0; i < N; i++) rbad += h2[i] != ked_f32_to_f16(fs[i]);
        CHECK(rbad == 0, "%d f32->f16 rows differ from scalar", rbad);
        ked_f32_to_bf16_row(fs, h2, N);
        rbad = 0;
        for (uint32_t i = 0; i < N; i++) rbad += h2[i] != ked_f32_to_bf16(fs[i]);
        CHECK(rbad == 0, "%d f32->bf16 rows differ from scalar", rbad);
        free(hs); free(h2); free(fs);
    }
    // rows (unaligned 16-bit side)
    float src[5] = {1.0f, -2.5f, 0x1p-24f, 65504.0f, 3.140625f}, back[5];
    unsigned char buf[11];
    ked_f32_to_f16_row(src, buf + 1, 5);
    ked_f16_to_f32_row(buf + 1, back, 5);
    CHECK(memcmp(src, back, sizeof src) == 0, "f16 rows");
    ked_f32_to_bf16_row(src, buf + 1, 5);
    ked_bf16_to_f32_row(buf + 1, back, 5);
    CHECK(back[0] == 1.0f && back[1] == -2.5f && back[4] == 3.140625f, "bf16 rows");
}

/* ------------------------------------------------------------------------------------------ */

static void test_round_trip(void) {
    float a[2][3] = {{1, -2, 3.5f}, {INFINITY, -0.0f, 1e-40f}};
    uint16_t h[4], bf[4];
    float hv[4] = {1.0f, -0.5f, 0x1p-24f, 65504.0f}, bv[4] = {1.0f, -3.0f, 1e30f, 0.15625f};
    ked_f32_to_f16_row(hv, h, 4);
    ked_f32_to_bf16_row(bv, bf, 4);
    int64_t l[3] = {INT64_MIN, 0, INT64_MAX};
    double d[2] = {0.1, -1e300};
    float scalar = 42.0f;
    uint8_t u8[3] = {1, 2, 255};
    st_write_tensor ts[] = {
        {"w.f32", KED_F32, 2, {2, 3}, a},
        {"w.f16", KED_F16, 2, {2, 2}, h},
        {"w.bf16", KED_BF16, 1, {4}, bf},
        {"ids", KED_I64, 1, {3}, l},
        {"empty", KED_F32, 2, {0, 5}, NULL},
        {"scalar", KED_F32, 0, {0}, &scalar},
        {"w.f64", KED_F64, 1, {2}, d},
        {"odd.u8", KED_U8, 1, {3}, u8}, // leaves everything after it unaligned
    };
    int n = (int)(sizeof ts / sizeof ts[0]);
    const char *mk[] = {"format", "ked.note"}, *mv[] = {"pt", "caf\xc3\xa9 \"quoted\""};
    ked_error e = {0};
    const char *p = tpath("rt.safetensors");
    CHECK_OK(st_write(p, ts, n, mk, mv, 2, &e), &e);
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", p, (long)getpid());
    CHECK(!ked_file_exists(tmpname), "temporary file left behind");

    st_file *f = NULL;
    CHECK_OK(st_open(p, &f, &e), &e);
    if (!f) return;
    CHECK(st_count(f) == n, "count %d", st_count(f));
    CHECK(strcmp(st_path(f), p) == 0, "path");
    CHECK(st_metadata(f, "format") && !strcmp(st_metadata(f, "format"), "pt"), "metadata");
    CHECK(st_metadata(f, "ked.note") && !strcmp(st_metadata(f, "ked.note"), mv[1]),
          "metadata utf8");
    CHECK(st_metadata(f, "nope") == NULL && st_metadata_count(f) == 2, "metadata count");
    CHECK(st_find(f, "nope") == NULL && st_get(f, n) == NULL && st_get(f, -1) == NULL, "absent");
    // header padded to a multiple of 8; tensors in written order and packed
    const st_tensor *first = st_get(f, 0);
    CHECK(first->offset % 8 == 0, "data section starts at %zu", first->offset);
    size_t expect_off = first->offset;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_find(f, ts[i].name);
        CHECK(t != NULL, "find %s", ts[i].name);
        if (!t) continue;
        CHECK(!strcmp(t->name, ts[i].name) && t->dtype == ts[i].dtype && t->ndim == ts[i].ndim,
              "%s: meta", ts[i].name);
        int64_t numel = 1;
        for (int k = 0; k < ts[i].ndim; k++) {
            CHECK(t->shape[k] == ts[i].shape[k], "%s: shape", ts[i].name);
            numel *= ts[i].shape[k];
        }
        CHECK(t->numel == numel && t->nbytes == (size_t)numel * ked_dtype_size(t->dtype),
              "%s: numel", ts[i].name);
        CHECK(st_get(f, i) == t, "%s: order", ts[i].name);
        CHECK(t->offset == expect_off, "%s: packed at %zu, expected %zu", ts[i].name, t->offset,
              expect_off);
        expect_off += t->nbytes;
        CHECK(t->nbytes == 0 || memcmp(t->data, ts[i].data, t->nbytes) == 0, "%s: bytes",
              ts[i].name);
    }
    // to f32
    float out[6];
    CHECK_OK(st_to_f32(f, st_find(f, "w.f32"), out, &e), &e);
    CHECK(memcmp(out, a, sizeof a) == 0, "f32 -> f32 bitwise");
    CHECK_OK(st_to_f32(f, st_find(f, "w.f16"), out, &e), &e);
    CHECK(memcmp(out, hv, sizeof hv) == 0, "f16 -> f32");
    CHECK_OK(st_to_f32(f, st_find(f, "w.bf16"), out, &e), &e);
    CHECK(out[0] == 1.0f && out[1] == -3.0f && out[3] == 0.15625f &&
          fabsf(out[2] - 1e30f) < 1e28f, "bf16 -> f32");
    CHECK_OK(st_to_f32(f, st_find(f, "w.f64"), out, &e), &e);
    CHECK(out[0] == 0.1f && isinf(out[1]) && out[1] < 0, "f64 -> f32");
    CHECK_OK(st_to_f32(f, st_find(f, "scalar"), out, &e), &e);
    CHECK(out[0] == 42.0f && st_find(f, "scalar")->numel == 1, "scalar");
    CHECK_OK(st_to_f32(f, st_find(f, "empty"), NULL, &e), &e);
    EXPECT_ERR(st_to_f32(f, st_find(f, "ids"), out, &e), &e, KED_ERR_UNSUPPORTED, p, "'ids'",
               "I64");
    // rewrite the file in place from its own mapping (reversed order), then read it back
    st_write_tensor rev[8];
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_get(f, n - 1 - i);
        rev[i] = (st_write_tensor){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(rev[i].shape, t->shape, sizeof t->shape);
    }
    CHECK_OK(st_write(p, rev, n, NULL, NULL, 0, &e), &e);
    st_close(f);
    st_close(NULL);
    f = NULL;
    CHECK_OK(st_open(p, &f, &e), &e);
    for (int i = 0; f && i < n; i++) {
        const st_tensor *t = st_find(f, ts[i].name);
        CHECK(t && st_get(f, n - 1 - i) == t && (t->nbytes == 0 ||
              memcmp(t->data, ts[i].data, t->nbytes) == 0), "in-place rewrite: %s", ts[i].name);
    }
    CHECK(f && st_metadata_count(f) == 0, "in-place rewrite: no metadata");
    st_close(f);

    // no metadata, no tensors
    CHECK_OK(st_write(p, NULL, 0, NULL, NULL, 0, &e), &e);
    f = NULL;
    CHECK_OK(st_open(p, &f, &e), &e);
    CHECK(f && st_count(f) == 0 && st_metadata_count(f) == 0, "empty file");
    st_close(f);

    // every truncation of a valid file is a clean error
    CHECK_OK(st_write(p, ts, n, mk, mv, 2, &e), &e);
    char *bytes = NULL;
    size_t len = 0;
    CHECK_OK(ked_read_file(p, &bytes, &len, &e), &e);
    int crashes_avoided = 0;
    write_bytes(tpath("cut.safetensors"), bytes, len);
    for (size_t cut = len; cut-- > 0;) { // shrink one file in place (cheaper than recreating it)
        if (truncate(tpath("cut.safetensors"), (off_t)cut) != 0) { perror("truncate"); exit(2); }
        f = NULL;
        ked_status st = st_open(tpath("cut.safetensors"), &f, &e);
        if (st == KED_ERR_FORMAT && strstr(e.msg, tpath("cut.safetensors"))) crashes_avoided++;
        st_close(f);
    }
    CHECK(crashes_avoided == (int)len, "%d of %zu truncations failed cleanly", crashes_avoided,
          len);
    // flipping header bytes never crashes; whatever opens stays inside the file
    ked_rng r;
    ked_rng_seed(&r, 1);
    int opened = 0;
    for (int it = 0; it < 300; it++) {
        char *m = malloc(len);
        memcpy(m, bytes, len);
        size_t hl = (size_t)(unsigned char)bytes[0] | (size_t)(unsigned char)bytes[1] << 8;
        for (int k = 0; k < 3; k++)
            m[8 + ked_rng_u64(&r) % hl] = "0123456789[]{},:\"-9"[ked_rng_u64(&r) % 19];
        FILE *fl = fopen(tpath("flip.safetensors"), it ? "r+b" : "wb"); // rewrite in place
        if (!fl || fwrite(m, 1, len, fl) != len) { perror("flip"); exit(2); }
        fclose(fl);
        f = NULL;
        if (st_open(tpath("flip.safetensors"), &f, &e) == KED_OK) {
            opened++;
            for (int i = 0; i < st_count(f); i++) {
                const st_tensor *t = st_get(f, i);
                CHECK(t->offset + t->nbytes <= len, "tensor %s out of the file", t->name);
            }
        }
        st_close(f);
        free(m);
    }
    free(bytes);

    // writer arguments
    st_write_tensor dup[2] = {{"x", KED_F32, 1, {1}, &scalar}, {"x", KED_F32, 1, {1}, &scalar}};
    EXPECT_ERR(st_write(p, dup, 2, NULL, NULL, 0, &e), &e, KED_ERR_ARG, p, "'x'", "twice");
    st_write_tensor meta_name = {"__metadata__", KED_F32, 1, {1}, &scalar};
    EXPECT_ERR(st_write(p, &meta_name, 1, NULL, NULL, 0, &e), &e, KED_ERR_ARG, p, "__metadata__",
               NULL);
    st_write_tensor nd9 = {"t", KED_F32, 9, {1}, &scalar};
    EXPECT_ERR(st_write(p, &nd9, 1, NULL, NULL, 0, &e), &e, KED_ERR_ARG, p, "'t'", "ndim");
    st_write_tensor neg = {"t", KED_F32, 2, {2, -1}, &scalar};
    EXPECT_ERR(st_write(p, &neg, 1, NULL, NULL, 0, &e), &e, KED_ERR_ARG, p, "'t'", "shape[1]");
    st_write_tensor nul = {"t", KED_F32, 1, {4}, NULL};
    EXPECT_ERR(st_write(p, &nul, 1, NULL, NULL, 0, &e), &e, KED_ERR_ARG, p, "'t'", "NULL");
    const char *k2[] = {"a", "a"}, *v2[] = {"1", "2"};
    EXPECT_ERR(st_write(p, NULL, 0, k2, v2, 2, &e), &e, KED_ERR_ARG, p, "'a'", "twice");
    const char *nodir = "/nonexistent-ked-dir/x.safetensors";
    EXPECT_ERR(st_write(nodir, NULL, 0, NULL, NULL, 0, &e), &e, KED_ERR_IO, nodir, NULL, NULL);
}

/* ------------------------------------------------------------------------------------------ */

static void test_validation(void) {
    ked_error e = {0};
    st_file *f = NULL;
    // short files, bad lengths
    write_bytes(tpath("short.safetensors"), "abcde", 5);
    EXPECT_ERR(st_open(tpath("short.safetensors"), &f, &e), &e, KED_ERR_FORMAT,
               tpath("short.safetensors"), "5 bytes", "too short");
    write_bytes(tpath("zero.safetensors"), "", 0);
    EXPECT_ERR(st_open(tpath("zero.safetensors"), &f, &e), &e, KED_ERR_FORMAT,
               tpath("zero.safetensors"), "0 bytes", NULL);
    EXPECT_ERR(st_open(tpath("missing.safetensors"), &f, &e), &e, KED_ERR_IO,
               tpath("missing.safetensors"), "cannot open", NULL);
    EXPECT_ERR(st_open(tmpdir, &f, &e), &e, KED_ERR_IO, tmpdir, "not a regular file", NULL);
    bad_file(__LINE__, "{}", 0, 1000, KED_ERR_FORMAT, "header length 1000", "past the end");
    bad_file(__LINE__, "{}", 0, 1ull << 40, KED_ERR_FORMAT, "absurd", NULL);
    bad_file(__LINE__, "{}", 0, 1ull << 63, KED_ERR_FORMAT, "absurd", NULL);
    // JSON
    BAD("", 0, KED_ERR_FORMAT, "not valid JSON", NULL);
    BAD("{\"a\": {\"dtype\": \"F32\",", 0, KED_ERR_FORMAT, "not valid JSON", "line 1, column");
    BAD("{\n\"a\": nul}", 0, KED_ERR_FORMAT, "not valid JSON", "line 2");
    BAD("{} x", 0, KED_ERR_FORMAT, "not valid JSON", NULL);
    BAD("[1, 2]", 0, KED_ERR_FORMAT, "an array, expected a JSON object", NULL);
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
        " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
        8, KED_ERR_FORMAT, "duplicate", "\"a\"");
    // entries
    BAD("{\"w\": 5}", 0, KED_ERR_FORMAT, "'w'", "expected an object");
    BAD("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, KED_ERR_FORMAT, "'w'",
        "missing \"dtype\"");
    BAD("{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, KED_ERR_FORMAT, "'w'",
        "missing \"shape\"");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, KED_ERR_FORMAT, "'w'",
        "missing \"data_offsets\"");
    BAD("{\"w\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, KED_ERR_FORMAT,
        "'w'", "dtype is an integer, expected a string");
    BAD("{\"w\": {\"dtype\": \"F17\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
        KED_ERR_FORMAT, "'w'", "unknown dtype \"F17\"");
    BAD("{\"w\": {\"dtype\": \"F8_E4M3\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
        KED_ERR_UNSUPPORTED, "'w'", "F8_E4M3");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}", 16,
        KED_ERR_FORMAT, "'w'", "shape is an integer");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -2], \"data_offsets\": [0, 16]}}", 16,
        KED_ERR_FORMAT, "'w'", "shape[1] is -2");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 10]}}", 16,
        KED_ERR_FORMAT, "'w'", "shape[0] is a non-integer number");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", 16,
        KED_ERR_FORMAT, "'w'", "shape[0] is a string");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
        4, KED_ERR_UNSUPPORTED, "'w'", "9 dims");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
        "\"data_offsets\": [0, 4]}}",
        4, KED_ERR_FORMAT, "'w'", "overflows");
    BAD("{\"w\": {\"dtype\": \"F64\", \"shape\": [2305843009213693952], \"data_offsets\": [0, 8]}}",
        8, KED_ERR_FORMAT, "'w'", "overflows");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [99999999999999999999], "
        "\"data_offsets\": [0, 4]}}",
        4, KED_ERR_FORMAT, "not valid JSON", NULL);
    // data_offsets
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": 0}}", 4, KED_ERR_FORMAT,
        "'w'", "expected [begin, end]");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4, KED_ERR_FORMAT,
        "'w'", "wrong length");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8,
        KED_ERR_FORMAT, "'w'", "wrong length");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4.0]}}", 4,
        KED_ERR_FORMAT, "'w'", "data_offsets[1] is a non-integer");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4,
        KED_ERR_FORMAT, "'w'", "data_offsets[0] is -4");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8,
        KED_ERR_FORMAT, "'w'", "begin after end");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 12,
        KED_ERR_FORMAT, "'w'", "end past the data section (12 bytes)");
    BAD("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 9223372036854775807]}}",
        4, KED_ERR_FORMAT, "'w'", "past the data section");
    BAD("{\"h.0.attn.c_attn.weight\": {\"dtype\": \"F32\", \"shape\": [32, 96], "
        "\"data_offsets\": [0, 400]}}", 400, KED_ERR_FORMAT, "tensor 'h.0.attn.c_attn.weight': "
        "data_offsets [0, 400] hold 400 bytes but shape [32, 96] of F32 needs 12288", NULL);
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
        " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 24,
        KED_ERR_FORMAT, "'a' (data_offsets [0, 16]) and 'b' (data_offsets [8, 24]) overlap", NULL);
    BAD("{\"b\": {\"dtype\": \"I8\", \"shape\": [4], \"data_offsets\": [4, 8]},"
        " \"a\": {\"dtype\": \"I16\", \"shape\": [4], \"data_offsets\": [0, 8]}}", 8,
        KED_ERR_FORMAT, "overlap", NULL);
    BAD("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
        " \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 8]}}", 16,
        KED_ERR_FORMAT, "overlap", NULL);
    // __metadata__
    BAD("{\"__metadata__\": {\"format\": \"pt\", \"step\": 5}}", 0, KED_ERR_FORMAT,
        "__metadata__ 'step' is an integer, expected a string", NULL);
    BAD("{\"__metadata__\": [\"pt\"]}", 0, KED_ERR_FORMAT, "__metadata__ is an array", NULL);

    // valid oddities: zero-size tensors (also sharing an offset), trailing bytes, padding,
    // gaps, a null __metadata__, unknown extra fields, tensors out of header order
    const char *ok =
        "{\"__metadata__\": null, \"b\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": "
        "[8, 12], \"extra\": 1}, \"z1\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": "
        "[4, 4]}, \"z0\": {\"dtype\": \"I64\", \"shape\": [3, 0], \"data_offsets\": [4, 4]}, "
        "\"a\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}}        ";
    write_raw(tpath("ok.safetensors"), ok, 20, 0);
    f = NULL;
    CHECK_OK(st_open(tpath("ok.safetensors"), &f, &e), &e);
    if (f) {
        CHECK(st_count(f) == 4, "count");
        CHECK(!strcmp(st_get(f, 0)->name, "a") && !strcmp(st_get(f, 3)->name, "b"), "data order");
        CHECK(st_find(f, "z0")->numel == 0 && st_find(f, "z0")->nbytes == 0, "zero-size");
        CHECK(st_find(f, "a")->ndim == 0 && st_find(f, "a")->numel == 1, "scalar");
        CHECK(st_metadata_count(f) == 0, "null metadata");
        float two[2];
        CHECK_OK(st_to_f32(f, st_find(f, "b"), two, &e), &e);
        uint16_t raw[2] = {0x0908, 0x0b0a}; // write_raw fills data byte i with i
        CHECK(two[0] == ked_bf16_to_f32(raw[0]) && two[1] == ked_bf16_to_f32(raw[1]), "bf16 data");
        st_close(f);
    }
}

/* ------------------------------------------------------------------------------------------ */

static void write_index(const char *path, const char *weight_map_json) {
    char buf[4096];
    snprintf(buf, sizeof buf, "{\"metadata\": {\"total_size\": 1234}, \"weight_map\": %s}",
             weight_map_json);
    write_bytes(path, buf, strlen(buf));
}

static void test_shards(void) {
    ked_error e = {0};
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    mkdir(dir, 0700);
    char p1[600], p2[600], p3[600], pi[600], pall[600];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00003.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00003.safetensors", dir);
    snprintf(p3, sizeof p3, "%s/model-00003-of-00003.safetensors", dir);
    snprintf(pi, sizeof pi, "%s/model.safetensors.index.json", dir);
    snprintf(pall, sizeof pall, "%s/all.safetensors", tmpdir);

    float w[6][8];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 8; j++) w[i][j] = (float)(i * 100 + j);
    uint16_t hb[8];
    ked_f32_to_bf16_row(w[0], hb, 8);
    st_write_tensor t[7] = {
        {"wte", KED_F32, 2, {2, 4}, w[0]}, {"h.0.w", KED_F32, 1, {8}, w[1]},
        {"h.0.b", KED_BF16, 1, {8}, hb},   {"h.1.w", KED_F32, 2, {4, 2}, w[2]},
        {"h.1.b", KED_F32, 1, {8}, w[3]},  {"ln_f", KED_F32, 1, {8}, w[4]},
        {"lm_head", KED_F32, 2, {8, 1}, w[5]},
    };
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    CHECK_OK(st_write(pall, t, 7, mk, mv, 1, &e), &e);
    CHECK_OK(st_write(p1, t, 2, mk, mv, 1, &e), &e);
    CHECK_OK(st_write(p2, t + 2, 3, NULL, NULL, 0, &e), &e);
    CHECK_OK(st_write(p3, t + 5, 2, NULL, NULL, 0, &e), &e);
    const char *wm =
        "{\"wte\": \"model-00001-of-00003.safetensors\","
        " \"h.0.w\": \"model-00001-of-00003.safetensors\","
        " \"h.0.b\": \"model-00002-of-00003.safetensors\","
        " \"h.1.w\": \"model-00002-of-00003.safetensors\","
        " \"h.1.b\": \"model-00002-of-00003.safetensors\","
        " \"ln_f\": \"model-00003-of-00003.safetensors\","
        " \"lm_head\": \"model-00003-of-00003.safetensors\"}";
    write_index(pi, wm);

    st_file *all = NULL;
    CHECK_OK(st_open(pall, &all, &e), &e);
    const char *opens[3] = {dir, pi, pall};
    for (int o = 0; o < 3 && all; o++) {
        st_set *s = NULL;
        CHECK_OK(st_set_open_dir(opens[o], &s, &e), &e);
        if (!s) continue;
        CHECK(st_set_count(s) == 7, "%s: count %d", opens[o], st_set_count(s));
        CHECK(st_set_file_count(s) == (o == 2 ? 1 : 3), "%s: files", opens[o]);
        CHECK(st_set_metadata(s, "format") && !strcmp(st_set_metadata(s, "format"), "pt"),
              "%s: metadata", opens[o]);
        for (int i = 0; i < 7; i++) {
            const st_file *fi = NULL;
            const st_tensor *a = st_find(all, t[i].name), *b = st_set_find(s, t[i].name, &fi);
            CHECK(b && fi && st_find(fi, t[i].name) == b, "%s: %s", opens[o], t[i].name);
            if (!a || !b) continue;
            CHECK(a->dtype == b->dtype && a->ndim == b->ndim && a->nbytes == b->nbytes &&
                  memcmp(a->shape, b->shape, sizeof a->shape) == 0 &&
                  memcmp(a->data, b->data, a->nbytes) == 0,
              "%s: %s identical", opens[o], t[i].name);
        }
        for (int i = 0; i < st_set_count(s); i++) {
            const st_file *fi = NULL;
            const st_tensor *x = st_set_get(s, i, &fi);
            CHECK(x && st_set_find(s, x->name, NULL) == x, "get/find %d", i);
        }
        CHECK(st_set_get(s, 7, NULL) == NULL && st_set_find(s, "nope", NULL) == NULL, "absent");
        if (o == 0) CHECK(!strcmp(st_path(st_set_file(s, 0)), p1), "shards sorted by name");
        st_set_close(s);
    }
    st_close(all);
    st_set_close(NULL);

    // st_write_dir: sharded (small limit) and single, read back through st_set_open_dir
    char wd[512];
    snprintf(wd, sizeof wd, "%s/written", tmpdir);
    mkdir(wd, 0700);
    const size_t limits[3] = {70, 0, 1};
    const int want_files[3] = {4, 1, 7};
    for (int k = 0; k < 3; k++) {
        CHECK_OK(st_write_dir(wd, t, 7, limits[k], mk, mv, 1, &e), &e);
        st_set *ws = NULL;
        CHECK_OK(st_set_open_dir(wd, &ws, &e), &e);
        if (!ws) continue;
        CHECK(st_set_file_count(ws) == want_files[k], "limit %zu: %d files", limits[k],
              st_set_file_count(ws));
        CHECK(st_set_count(ws) == 7, "limit %zu: count", limits[k]);
        for (int i = 0; i < 7; i++) {
            const st_tensor *x = st_set_find(ws, t[i].name, NULL);
            CHECK(x && x->nbytes && memcmp(x->data, t[i].data, x->nbytes) == 0 &&
                  st_set_get(ws, i, NULL) == x, "limit %zu: %s", limits[k], t[i].name);
        }
        CHECK(st_set_metadata(ws, "format") && !strcmp(st_set_metadata(ws, "format"), "pt"),
              "limit %zu: metadata", limits[k]);
        st_set_close(ws);
    }
    char wsingle[600];
    snprintf(wsingle, sizeof wsingle, "%s/model.safetensors", wd);
    CHECK(!ked_file_exists(wsingle), "stale model.safetensors removed after a sharded write");
    st_write_tensor twice[2] = {t[0], t[0]};
    EXPECT_ERR(st_write_dir(wd, twice, 2, 1, NULL, NULL, 0, &e), &e, KED_ERR_ARG, wd, "'wte'",
               "twice");

    // a dir with model.safetensors is read as one file (preferred over an index)
    char d1[512], m1[600];
    snprintf(d1, sizeof d1, "%s/single", tmpdir);
    mkdir(d1, 0700);
    snprintf(m1, sizeof m1, "%s/model.safetensors", d1);
    CHECK_OK(st_write(m1, t, 7, NULL, NULL, 0, &e), &e);
    st_set *s = NULL;
    CHECK_OK(st_set_open_dir(d1, &s, &e), &e);
    CHECK(s && st_set_count(s) == 7 && st_set_metadata(s, "format") == NULL, "single dir");
    st_set_close(s);
    unlink(m1);
    s = NULL;
    EXPECT_ERR(st_set_open_dir(d1, &s, &e), &e, KED_ERR_IO, d1, "neither", NULL);
    EXPECT_ERR(st_set_open_dir(tpath("nope"), &s, &e), &e, KED_ERR_IO, tpath("nope"), NULL, NULL);

    // index errors
    write_bytes(pi, "{\"metadata\": {}}", 16);
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_FORMAT, pi, "missing \"weight_map\"",
               NULL);
    write_bytes(pi, "{\"weight_map\": {\"a\": ", 21);
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_FORMAT, pi, "not valid JSON", "line 1");
    write_bytes(pi, "[1]", 3);
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_FORMAT, pi, "not a JSON object", NULL);
    write_index(pi, "[]");
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_FORMAT, pi, "weight_map", "not an object");
    write_index(pi, "{\"wte\": 3}");
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_FORMAT, pi, "weight_map 'wte'",
               "non-string");
    write_index(pi, "{\"wte\": \"../all.safetensors\"}");
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_FORMAT, pi, "weight_map 'wte'", "../all");
    write_index(pi, "{\"wte\": \"model-00001-of-00003.safetensors\", \"x\": \"gone.safetensors\"}");
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_IO, pi, "'gone.safetensors'", "missing");
    write_index(pi, "{\"wte\": \"model-00001-of-00003.safetensors\", "
                    "\"ghost\": \"model-00001-of-00003.safetensors\"}");
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_FORMAT, pi, "'ghost'",
               "shard 'model-00001-of-00003.safetensors', which does not hold it");
    write_index(pi, "{\"wte\": \"model-00002-of-00003.safetensors\", "
                    "\"h.0.w\": \"model-00001-of-00003.safetensors\", "
                    "\"h.0.b\": \"model-00002-of-00003.safetensors\"}");
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_FORMAT, pi, "'wte'",
               "but is in shard 'model-00001-of-00003.safetensors'");
    // a shard that holds a tensor the index does not list: allowed and visible
    write_index(pi, "{\"wte\": \"model-00001-of-00003.safetensors\", "
                    "\"h.0.b\": \"model-00002-of-00003.safetensors\"}");
    s = NULL;
    CHECK_OK(st_set_open_dir(pi, &s, &e), &e);
    CHECK(s && st_set_count(s) == 5 && st_set_find(s, "h.0.w", NULL), "unlisted tensors visible");
    st_set_close(s);
    // a tensor in two shards
    CHECK_OK(st_write(p3, t + 4, 3, NULL, NULL, 0, &e), &e); // h.1.b also in shard 2
    write_index(pi, wm);
    s = NULL;
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_FORMAT, pi, "'h.1.b' is in two shards",
               "model-00003-of-00003.safetensors");
    // a bad shard: its own message
    write_raw(p3, "{\"ln_f\": 1}", 0, 0);
    EXPECT_ERR(st_set_open_dir(dir, &s, &e), &e, KED_ERR_FORMAT, p3, "'ln_f'", NULL);
    CHECK(s == NULL, "st_set_open_dir set *out on failure");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ked_test_safetensors.XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
    double t0 = ked_time_s();
    test_f16_bf16();
    test_round_trip();
    test_validation();
    test_shards();
    rm_tree(tmpdir);
    printf("(%.2fs)\n", ked_time_s() - t0);
    return test_finish("test_safetensors");
}
