// bench_util.h: what the benchmark programs share: clocks, the load average, /proc/self/status,
// medians, per-step timestamps of an edit (bench_edit, bench_memit), and the random GPT-2-small
// checkpoint that bench_model, bench_edit and bench_memit measure (written once into a directory,
// reused when a model of that shape is there).
// Define BENCH_NAME (the program's name, for error messages) before including it.
#ifndef KED_BENCH_UTIL_H
#define KED_BENCH_UTIL_H

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ked.h"
#include "io/safetensors.h"

static inline double now(void) { return omp_get_wtime(); }

// CPU seconds of the process, every thread (getrusage: user + system)
static inline double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static inline void die(const char *what, const ked_error *err) {
    fprintf(stderr, "%s: %s: %s\n", BENCH_NAME, what, err ? err->msg : strerror(errno));
    exit(1);
}

// prints "loadavg_<when> 1m 5m 15m"
static inline void loadavg(const char *when) {
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0, b = 0, c = 0;
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3) a = b = c = 0;
        fclose(f);
    }
    printf("loadavg_%s %.2f %.2f %.2f\n", when, a, b, c);
    fflush(stdout);
}

// a field of /proc/self/status in kB ("VmHWM", "VmRSS", "RssAnon", "RssFile"); -1 if absent
static inline long status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') { v = atol(line + n + 1); break; }
    fclose(f);
    return v;
}
// runs this program again with args (args[0] its name, NULL-terminated) in a child process, so
// that each part of a benchmark has its own peak RSS; 0 when the child exits 0, else 1 (said on
// stderr with prog and what)
static inline int run_child(const char *const *args, const char *prog, const char *what) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork", NULL);
    if (pid == 0) {
        execv("/proc/self/exe", (char *const *)args);
        _exit(127);
    }
    int ws = 0;
    if (waitpid(pid, &ws, 0) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws)) {
        fprintf(stderr, "%s: the %s child failed\n", prog, what);
        return 1;
    }
    return 0;
}

static inline double mb(long kb) { return kb * 1024.0 / 1e6; }

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
// the median of t (n <= 64 of them are used)
static inline double median(const double *t, int n) {
    double s[64];
    if (n < 1) return NAN;
    if (n > 64) n = 64;
    memcpy(s, t, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

// ---- per-step timestamps of an edit ------------------------------------------------------------

// steps_log_on_step is a ked_edit_opts.on_step (user: a steps_log), called after each step's
// forward and loss: it records the time, the loss and the step of the first STEPS_LOG_MAX calls
// and, with track_hwm set, VmHWM at the last call (MEMIT: the z optimisations' peak)
enum { STEPS_LOG_MAX = 4096 };
typedef struct {
    double t[STEPS_LOG_MAX];
    float loss[STEPS_LOG_MAX];
    int step[STEPS_LOG_MAX];
    int n;
    int track_hwm; // read /proc/self/status at each call
    long hwm;      // VmHWM at the last call, when track_hwm
} steps_log;
static inline void steps_log_on_step(int step, float loss, void *user) {
    steps_log *s = user;
    if (s->n < STEPS_LOG_MAX) { s->t[s->n] = now(); s->loss[s->n] = loss; s->step[s->n] = step; s->n++; }
    if (s->track_hwm) s->hwm = status_kb("VmHWM");
}

// ---- a random GPT-2-small checkpoint ------------------------------------------------------------

// GPT-2 small
enum { L_ = 12, C_ = 768, H_ = 12, V_ = 50257, P_ = 1024, F_ = 4 * C_ };

static uint64_t bench_rng_state = 0x9E3779B97F4A7C15ull;
static inline uint32_t rng_u32(void) { // xorshift64*
    bench_rng_state ^= bench_rng_state >> 12;
    bench_rng_state ^= bench_rng_state << 25;
    bench_rng_state ^= bench_rng_state >> 27;
    return (uint32_t)((bench_rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}
// approximately N(0, std^2): the sum of 4 uniforms, rescaled (fast; the shape is what matters)
static inline void fill_normal(float *x, size_t n, float std) {
    const float k = std * sqrtf(3.0f) / 2.0f / 2147483648.0f; // var of U(-1,1) is 1/3, 4 of them
    for (size_t i = 0; i < n; i++) {
        int64_t s = (int64_t)rng_u32() + rng_u32() + rng_u32() + rng_u32() - 4 * 2147483648ll;
        x[i] = (float)s * k;
    }
}

// write dir/config.json and dir/model.safetensors unless a model of this shape is there: the
// tensors in the order GPT2LMHeadModel.save_pretrained writes them (tied head: no
// lm_head.weight; Conv1D weights (in, out)), initialised as GPT-2 is (N(0, 0.02) weights,
// N(0, 0.01) positions, LayerNorm weights 1, biases 0)
static inline void write_gpt2_small(const char *dir) {
    enum { NT = 2 + L_ * 12 + 2 };
    typedef enum { INIT_W, INIT_POS, INIT_ONE, INIT_ZERO } init_kind;
    static const struct { const char *name; int rows, cols; init_kind init; } layer_t[12] = {
        {"ln_1.weight", C_, 0, INIT_ONE},          {"ln_1.bias", C_, 0, INIT_ZERO},
        {"attn.c_attn.weight", C_, 3 * C_, INIT_W}, {"attn.c_attn.bias", 3 * C_, 0, INIT_ZERO},
        {"attn.c_proj.weight", C_, C_, INIT_W},     {"attn.c_proj.bias", C_, 0, INIT_ZERO},
        {"ln_2.weight", C_, 0, INIT_ONE},          {"ln_2.bias", C_, 0, INIT_ZERO},
        {"mlp.c_fc.weight", C_, F_, INIT_W},        {"mlp.c_fc.bias", F_, 0, INIT_ZERO},
        {"mlp.c_proj.weight", F_, C_, INIT_W},      {"mlp.c_proj.bias", C_, 0, INIT_ZERO}};
    static st_write_tensor tensors[NT];
    static init_kind inits[NT];
    static char names[NT][64];
    int n = 0;
    long long bytes = 0;
    for (int i = -2; i < L_ * 12 + 2; i++) {
        const char *name;
        int rows, cols;
        init_kind init;
        if (i == -2) { name = "wte.weight"; rows = V_; cols = C_; init = INIT_W; }
        else if (i == -1) { name = "wpe.weight"; rows = P_; cols = C_; init = INIT_POS; }
        else if (i >= L_ * 12) {
            name = i == L_ * 12 ? "ln_f.weight" : "ln_f.bias";
            rows = C_; cols = 0; init = i == L_ * 12 ? INIT_ONE : INIT_ZERO;
        } else {
            name = layer_t[i % 12].name; rows = layer_t[i % 12].rows;
            cols = layer_t[i % 12].cols; init = layer_t[i % 12].init;
        }
        if (i >= 0 && i < L_ * 12) snprintf(names[n], sizeof names[n], "transformer.h.%d.%s", i / 12, name);
        else snprintf(names[n], sizeof names[n], "transformer.%s", name);
        tensors[n].name = names[n];
        tensors[n].dtype = KED_F32;
        tensors[n].ndim = cols ? 2 : 1;
        tensors[n].shape[0] = rows;
        tensors[n].shape[1] = cols;
        inits[n++] = init;
        bytes += 4ll * rows * (cols ? cols : 1);
    }
    char cfg[1024], st[1024];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    // the file is the 8-byte length, the header (< 64 KiB here) and the data: reuse it when its
    // size says it holds this shape (a different model or a torn write has another size)
    struct stat sb;
    if (stat(cfg, &sb) == 0 && stat(st, &sb) == 0 && sb.st_size > bytes &&
        sb.st_size < bytes + 65536) {
        printf("model_dir %s (reused)\n", dir);
        return;
    }
    if (mkdir(dir, 0755) && errno != EEXIST) die(dir, NULL);
    double t0 = now();
    float *data = malloc((size_t)bytes);
    if (!data) die("allocating the random weights", NULL);
    float *p = data;
    for (int i = 0; i < n; i++) {
        size_t numel =
            (size_t)tensors[i].shape[0] * (tensors[i].ndim == 2 ? (size_t)tensors[i].shape[1] : 1);
        if (inits[i] == INIT_W || inits[i] == INIT_POS)
            fill_normal(p, numel, inits[i] == INIT_W ? 0.02f : 0.01f);
        else
            for (size_t j = 0; j < numel; j++) p[j] = inits[i] == INIT_ONE ? 1.0f : 0.0f;
        tensors[i].data = p;
        p += numel;
    }
    ked_error err;
    if (st_write(st, tensors, n, NULL, NULL, 0, &err)) die("st_write", &err);
    free(data);
    FILE *f = fopen(cfg, "w");
    if (!f) die(cfg, NULL);
    fprintf(f, "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
               "  \"activation_function\": \"gelu_new\",\n  \"n_embd\": %d,\n  \"n_layer\": %d,\n"
               "  \"n_head\": %d,\n  \"n_positions\": %d,\n  \"n_ctx\": %d,\n"
               "  \"vocab_size\": %d,\n  \"layer_norm_epsilon\": 1e-05,\n"
               "  \"bos_token_id\": 50256,\n  \"eos_token_id\": 50256,\n"
               "  \"tie_word_embeddings\": true,\n  \"torch_dtype\": \"float32\"\n}\n",
            C_, L_, H_, P_, P_, V_);
    if (fclose(f)) die(cfg, NULL);
    printf("model_dir %s (written in %.1f s, %.0f MB)\n", dir, now() - t0, bytes / 1e6);
}

#endif
