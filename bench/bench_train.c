// bench_train.c: training throughput of `ked train` (the full step: packed batch, forward,
// cross-entropy, backward, global-norm clipping, AdamW) on the ked-facts shape (LLaMA, 4 layers,
// d_model 256, d_ff 1792, vocab 4096, tied head; B x T = 16 x 128), from a fresh random init on a
// synthetic corpus. Reports tokens/s and model GFLOP/s (6 N FLOPs per token, N the parameters
// of the matrix products: attention scores excluded) and their share of the sgemm peak measured
// in the same process with the same threads (cblas_sgemm 1024 x 3072 x 768, best of several).
//   bench_train [THREADS [STEPS]]   (defaults: 2 threads, 12 steps; the first 2 are warm-up)
// Prints `key value` lines; the last is train_share_of_sgemm_peak.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ked.h"

typedef struct { long step; double t_warm, t_end; long warm_step; } timing;

static void on_progress(const ked_train_progress *p, void *user) {
    timing *t = user;
    if (!isnan(p->eval_loss)) return;
    if (p->step == t->warm_step) t->t_warm = omp_get_wtime();
    t->step = p->step;
    t->t_end = omp_get_wtime();
}

static double sgemm_peak(void) {
    int M = 1024, N = 3072, K = 768;
    float *A = calloc((size_t)M * K, 4), *B = calloc((size_t)N * K, 4), *C = calloc((size_t)M * N, 4);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)(i % 5) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        double t0 = omp_get_wtime();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        double dt = omp_get_wtime() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    free(A); free(B); free(C);
    return 2.0 * M * N * K / best * 1e-9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    long steps = argc > 2 ? atol(argv[2]) : 12;
    if (threads < 1 || steps < 4) { fprintf(stderr, "usage: bench_train [THREADS [STEPS >= 4]]\n"); return 2; }
    ked_set_threads(threads);
    char dir[] = "/tmp/ked_bench_train.XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char corpus[256], tok[256], init[256], out[256];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    snprintf(tok, sizeof tok, "%s/tokenizer.json", dir);
    snprintf(init, sizeof init, "%s/init", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    // a synthetic corpus: sentences of pseudo-random words
    FILE *f = fopen(corpus, "w");
    if (!f) { perror(corpus); return 1; }
    uint64_t s = 42;
    for (int line = 0; line < 4000; line++) {
        int words = 5 + line % 20;
        for (int w = 0; w < words; w++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            int len = 2 + (int)((s >> 33) % 7);
            fputc(w ? ' ' : '\n', f);
            for (int c = 0; c < len; c++) fputc('a' + (int)((s >> (3 * c + 20)) % 26), f);
        }
        fputc('.', f);
    }
    fclose(f);
    ked_error err;
    const char *files[] = {corpus};
    ked_bpe_opts bo = ked_bpe_defaults();
    if (ked_bpe_train(files, 1, &bo, tok, &err)) { fprintf(stderr, "bench_train: %s\n", err.msg); return 1; }
    ked_init_opts io = ked_init_defaults();
    io.d_ff = 1792;
    if (ked_model_init_write(init, &io, &err)) { fprintf(stderr, "bench_train: %s\n", err.msg); return 1; }
    ked_model *m = NULL;
    if (ked_model_load(init, &m, &err)) { fprintf(stderr, "bench_train: %s\n", err.msg); return 1; }
    double n_params = (double)ked_model_n_params(m);
    ked_model_free(m);
    timing t = {0, 0, 0, 2};
    ked_train_opts o = ked_train_defaults();
    o.model = init; o.tokenizer = tok; o.data = corpus; o.out_dir = out;
    o.batch = 16; o.seq = 128; o.steps = steps; o.warmup = 2; o.eval_frac = 0; o.eval_every = 0;
    o.ckpt_every = 0; o.stop_at = steps; o.progress_every = 1; o.on_progress = on_progress; o.user = &t;
    if (ked_train(&o, &err)) { fprintf(stderr, "bench_train: %s\n", err.msg); return 1; }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_train: could not remove %s\n", dir);
    // each step is reported before any checkpoint is written: t_end excludes the final one
    double tokens = (double)(t.step - t.warm_step) * o.batch * o.seq;
    double tps = tokens / (t.t_end - t.t_warm);
    double gflops = 6.0 * n_params * tps * 1e-9;
    double peak = sgemm_peak();
    printf("train_shape llama L4 d256 ff1792 V4096 tied, B16 T128\n");
    printf("train_threads %d\n", threads);
    printf("train_params %.0f\n", n_params);
    printf("train_steps_timed %ld\n", t.step - t.warm_step);
    printf("train_tokens_per_s %.0f\n", tps);
    printf("train_gflops %.2f\n", gflops);
    printf("train_sgemm_peak_gflops %.2f\n", peak);
    printf("train_share_of_sgemm_peak %.3f\n", gflops / peak);
    return 0;
}
