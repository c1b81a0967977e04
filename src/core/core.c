// core.c: error reporting, files, time and the RNG shared by all of libked (see core.h).
#include "core/core.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *ked_status_name(ked_status st) {
    switch (st) {
    case KED_OK: return "ok";
    case KED_ERR_IO: return "io";
    case KED_ERR_FORMAT: return "format";
    case KED_ERR_UNSUPPORTED: return "unsupported";
    case KED_ERR_ARG: return "argument";
    case KED_ERR_NOMEM: return "out of memory";
    }
    return "unknown";
}

ked_status ked_fail(ked_error *err, ked_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = st;
    }
    return st;
}

void ked_prefix_error(ked_error *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
}

void *ked_malloc(size_t n, const char *what, ked_error *err) {
    void *p = malloc(n ? n : 1);
    if (!p) ked_fail(err, KED_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *ked_calloc(size_t count, size_t size, const char *what, ked_error *err) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) ked_fail(err, KED_ERR_NOMEM, "out of memory allocating %zu x %zu bytes for %s",
                     count, size, what);
    return p;
}

ked_status ked_read_file(const char *path, char **data, size_t *len, ked_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ked_fail(err, KED_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return ked_fail(err, KED_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    }
    long n = ftell(f);
    if (n < 0) {
        fclose(f);
        return ked_fail(err, KED_ERR_IO, "%s: not a regular file", path);
    }
    rewind(f);
    char *buf = ked_malloc((size_t)n + 1, path, err);
    if (!buf) { fclose(f); return KED_ERR_NOMEM; }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf); fclose(f);
        return ked_fail(err, KED_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    if (len) *len = (size_t)n;
    return KED_OK;
}

ked_status ked_write_file_atomic(const char *path, const void *data, size_t len, ked_error *err) {
    size_t plen = strlen(path) + 32;
    char *tmp = ked_malloc(plen, "temporary path", err);
    if (!tmp) return KED_ERR_NOMEM;
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        ked_fail(err, KED_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return KED_ERR_IO;
    }
    int ok = fwrite(data, 1, len, f) == len;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        ked_fail(err, KED_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return KED_ERR_IO;
    }
    free(tmp);
    return KED_OK;
}

char *ked_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int ked_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ked_mkdir_p(const char *path) {
    char *p = strdup(path);
    if (!p) return -1;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s && *s != '/') continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) { rc = -1; break; }
        *s = c;
        if (!c) break;
    }
    free(p);
    if (!rc && !ked_is_dir(path)) { errno = ENOTDIR; rc = -1; }
    return rc;
}

const char *const ked_model_side_files[] = {
    "tokenizer.json",    "tokenizer_config.json", "tokenizer.model",        "tokenizer.bin",
    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "generation_config.json",
    "vocab.json",        "merges.txt",            NULL};

int ked_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

double ked_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ked_rng_seed(ked_rng *r, uint64_t seed) {
    // splitmix64 of the seed, so that seeds 0, 1, 2 give unrelated streams (and never 0)
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    r->s = z ? z : 0x2545F4914F6CDD1Dull;
}

uint64_t ked_rng_u64(ked_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

float ked_rng_uniform(ked_rng *r) { return (float)(ked_rng_u64(r) >> 40) / 16777216.0f; }

float ked_rng_normal(ked_rng *r) {
    float u1 = ked_rng_uniform(r), u2 = ked_rng_uniform(r);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

void ked_abort_(const char *file, int line, const char *what) {
    fprintf(stderr, "ked: internal error at %s:%d: assertion '%s' failed\n", file, line, what);
    abort();
}

const char *ked_dtype_name(ked_dtype t) {
    static const char *names[KED_DTYPE_COUNT] = {"F32", "F16", "BF16", "F64", "I8",
                                                 "U8",  "I16", "I32",  "I64", "BOOL"};
    return (unsigned)t < KED_DTYPE_COUNT ? names[t] : "?";
}

size_t ked_dtype_size(ked_dtype t) {
    static const size_t sizes[KED_DTYPE_COUNT] = {4, 2, 2, 8, 1, 1, 2, 4, 8, 1};
    return (unsigned)t < KED_DTYPE_COUNT ? sizes[t] : 0;
}
