// test.h: the few macros every ked test uses. A test is one program; it prints one line
// per check that fails (and a summary), and exits non-zero when any check failed, so that
// tests/run.sh can count it. Tests run from the repository root (paths like tests/data/...).
#ifndef KED_TEST_H
#define KED_TEST_H
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

static int test_checks_, test_failures_;

// CHECK(cond, fmt, ...): count a check; on failure print where and why.
#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        test_checks_++;                                                             \
        if (!(cond)) {                                                              \
            test_failures_++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, "\n");                                                  \
        }                                                                           \
    } while (0)

// CHECK_OK(status_expr, err): a ked call that must succeed; prints the library's message.
#define CHECK_OK(expr, err)                                                         \
    do {                                                                            \
        int st_ = (int)(expr);                                                      \
        CHECK(st_ == 0, "%s", (err)->msg);                                          \
    } while (0)

// test_run: run a shell command with its stdout and stderr captured into out (cap bytes,
// NUL-terminated; the rest is dropped); returns its exit status, -1 when it did not run or exit
static inline int test_run(const char *cmd, char *out, size_t cap) {
    char full[4096];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// test_copy_file: copy a file byte for byte; a test cannot go on without it, so failing exits
static inline void test_copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    if (!a || !b) { fprintf(stderr, "copy %s -> %s: %s\n", from, to, strerror(errno)); exit(1); }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    if (fclose(b) != 0) { fprintf(stderr, "copy %s -> %s: %s\n", from, to, strerror(errno)); exit(1); }
}

static inline int test_rm_entry_(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}
// test_rm_tree: remove a test's temporary directory and everything in it
static inline void test_rm_tree(const char *path) { nftw(path, test_rm_entry_, 16, FTW_DEPTH | FTW_PHYS); }

// a whole file as a NUL-terminated malloc'd string; NULL when it cannot be read
static inline char *test_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

// max |a-b| over n floats, and where it is
static inline float test_maxdiff(const float *a, const float *b, size_t n, size_t *where) {
    float m = 0; size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (d > m || d != d) { m = d; w = i; if (d != d) { m = INFINITY; break; } }
    }
    if (where) *where = w;
    return m;
}

// rewrite_acc[0] of case i at a stage ("pre", "post", "post_final") of a `ked eval` results file
static inline double test_rewrite_acc(json_t *root, int i, const char *stage) {
    json_t *r = json_array_get(json_object_get(root, "results"), (size_t)i);
    return json_number_value(json_array_get(json_object_get(json_object_get(r, stage), "rewrite_acc"), 0));
}

// keep the first k results of a finished `ked eval` results file `from`, mark it unfinished and
// write it to `to`: what an interrupted run leaves (--retention's list cut to match). 0 (a
// failed check) when `from` cannot be read
static inline int test_truncate_results(const char *from, const char *to, int k) {
    json_error_t je;
    json_t *root = json_load_file(from, 0, &je);
    CHECK(root != NULL, "%s: %s", from, je.text);
    if (!root) return 0;
    json_t *res = json_object_get(root, "results");
    while ((int)json_array_size(res) > k) json_array_remove(res, json_array_size(res) - 1);
    for (size_t i = 0; i < json_array_size(res); i++) json_object_del(json_array_get(res, i), "post_final");
    json_t *ret = json_object_get(root, "retention"); // --retention: the entries up to case k
    while (json_array_size(ret) &&
           json_integer_value(json_object_get(json_array_get(ret, json_array_size(ret) - 1), "after")) > k)
        json_array_remove(ret, json_array_size(ret) - 1);
    json_object_set_new(json_object_get(root, "ked_eval"), "complete", json_false());
    json_dump_file(root, to, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(root);
    return 1;
}

// finish: print the summary of this program and return its exit code
static inline int test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, test_checks_, test_failures_);
    return test_failures_ ? 1 : 0;
}
#endif
