// core.h: what every part of libked shares: error reporting, whole-file reading, atomic
// writes, wall-clock time, a seeded RNG. Internal; the public API is include/ked.h.
#ifndef KED_CORE_H
#define KED_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "ked.h"

// ked_fail: record a failure in err (may be NULL) with a printf-style message; returns st so
// that callers write `return ked_fail(err, KED_ERR_FORMAT, "%s: tensor %s: ...", path, name);`
ked_status ked_fail(ked_error *err, ked_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// ked_prefix_error: prepend "prefix: " to an error already in err (for context, e.g. a path).
void ked_prefix_error(ked_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// allocation that reports: on failure fills err naming `what` and returns NULL.
void *ked_malloc(size_t n, const char *what, ked_error *err);
void *ked_calloc(size_t count, size_t size, const char *what, ked_error *err);

// ked_read_file: read a whole file into a NUL-terminated malloc'd buffer (*len excludes NUL).
ked_status ked_read_file(const char *path, char **data, size_t *len, ked_error *err);

// ked_write_file_atomic: write len bytes to path via "path.tmp.PID" + fsync + rename, so an
// interrupted write never leaves a half-written file under the final name.
ked_status ked_write_file_atomic(const char *path, const void *data, size_t len, ked_error *err);

// ked_path_join: "dir/name" into a malloc'd string (NULL on allocation failure).
char *ked_path_join(const char *dir, const char *name);
int ked_is_dir(const char *path);
int ked_file_exists(const char *path);
// ked_mkdir_p: create path and its missing parents (mode 0755). 0 when path is a directory
// afterwards; -1 otherwise (errno from the mkdir that failed, or ENOTDIR).
int ked_mkdir_p(const char *path);

// ked_model_side_files: the files beside a Hugging Face model's weights that using the model
// needs (tokenizer, chat template, generation config), NULL-terminated; whoever writes a copy of
// a model directory (ked convert, edited directories) copies those present.
extern const char *const ked_model_side_files[];

// ked_time_s: monotonic wall-clock seconds.
double ked_time_s(void);

// ked_rng: xorshift64* state; one per run, passed explicitly (no hidden global state).
typedef struct { uint64_t s; } ked_rng;
void ked_rng_seed(ked_rng *r, uint64_t seed);
uint64_t ked_rng_u64(ked_rng *r);
float ked_rng_uniform(ked_rng *r); // [0, 1)
float ked_rng_normal(ked_rng *r);  // N(0, 1), Box-Muller

// KED_ASSERT: programmer errors only (violated invariants), never bad input. Aborts.
#define KED_ASSERT(x)                                                                      \
    do { if (!(x)) ked_abort_(__FILE__, __LINE__, #x); } while (0)
void ked_abort_(const char *file, int line, const char *what) __attribute__((noreturn));

#endif
