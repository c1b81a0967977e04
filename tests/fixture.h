// fixture.h: the expected tensors of a reference fixture (tests/ref/ scripts write them as
// safetensors) read into malloc'd buffers. Tests only: a missing or mistyped tensor ends the test
// program with a message naming it (a fixture that does not match its test is a broken build).
#ifndef KED_TEST_FIXTURE_H
#define KED_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

// tensor `name` of f as floats (at least one element allocated); *numel its element count
static inline float *fixture_f32(st_file *f, const char *name, int64_t *numel) {
    const st_tensor *t = st_find(f, name);
    if (!t) { fprintf(stderr, "fixture lacks %s\n", name); exit(1); }
    float *out = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    ked_error err;
    if (!out || st_to_f32(f, t, out, &err)) {
        fprintf(stderr, "%s: %s\n", name, out ? err.msg : "out of memory");
        exit(1);
    }
    if (numel) *numel = t->numel;
    return out;
}

// an I64 tensor `name` of f as int64 values
static inline int64_t *fixture_i64(st_file *f, const char *name, int64_t *numel) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != KED_I64) { fprintf(stderr, "fixture lacks I64 %s\n", name); exit(1); }
    int64_t *out = malloc(sizeof(int64_t) * (size_t)(t->numel ? t->numel : 1));
    if (!out) { fprintf(stderr, "%s: out of memory\n", name); exit(1); }
    memcpy(out, t->data, 8 * (size_t)t->numel);
    if (numel) *numel = t->numel;
    return out;
}

// the same as ints (ids, lengths, positions)
static inline int *fixture_int(st_file *f, const char *name, int64_t *numel) {
    int64_t n, *v = fixture_i64(f, name, &n);
    int *out = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!out) { fprintf(stderr, "%s: out of memory\n", name); exit(1); }
    for (int64_t i = 0; i < n; i++) out[i] = (int)v[i];
    free(v);
    if (numel) *numel = n;
    return out;
}

#endif
