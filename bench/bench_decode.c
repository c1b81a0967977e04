// bench_decode.c: KV-cached decoding on the random GPT-2-small model of bench_model (issue 4,
// performance): tokens/s at batch 1 and batch 8, and the share of the machine's memory bandwidth,
// measured in the same run, that the weight reads use.
//
// 1. memory bandwidth, 2 threads (--threads), a 1 GB buffer (--bw-mb): "read" sums the buffer
//    (1 GB read per pass), "copy" copies one half into the other (0.5 GB read + 0.5 GB written,
//    both counted); best of 6 (read) and 4 (copy) passes with --threads threads and with 1 thread,
//    measured before and after the decoding; the best read figure is the denominator. On a
//    shared machine this is a lower bound of what the memory system can do (a descheduled pass
//    reads slower), so a share can come out above 1.
// 2. for each batch B in --batches (default 1,8): ked_run_new(m, B, P, P + N, 0); a prefill of a
//    P = 16-token random prompt per row (logits of each row's last position only), then N = 128
//    (--decode) steps of one token per row (ked_forward with T = 1 and pos0), greedy argmax per
//    row done here. Only the N steps are timed (the prefill is printed apart). One warm-up pass
//    of 4 steps first.
// 3. weight bytes read per step: every matmul weight once (f32): L * 12 * C^2 (q, k, v, o, fc,
//    proj) + V * C (the 50257 x 768 head, tied to the embedding) = 123.5 M floats = 494 MB. The
//    bytes the weights move per second while decoding = 497 MB * steps / time; its share of the
//    measured read bandwidth is printed as decode_bB_bw_share. (KV-cache reads, activations and
//    the embedding row are left out: < 2% here.)
//
//   build/bench/bench_decode [--dir DIR] [--threads N] [--decode N] [--prompt P]
//                            [--batches 1,8] [--bw-mb MB]
// The model directory is the one bench_model writes (build/bench/gpt2-small-random); run
// bench_model once first (bench/run.sh does). Run with OMP_WAIT_POLICY=passive on a shared
// machine (bench/run.sh exports it): the decode steps are hundreds of tiny parallel loops.
// Prints `key value` lines; the first generated ids of row 0 are printed (decode_bB_ids) so that
// they can be compared with bench/ref_decode_torch.py, which loads the same file.
#include <errno.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ked.h"

static double now(void) { return omp_get_wtime(); }

static void die(const char *what, const ked_error *err) {
    fprintf(stderr, "bench_decode: %s: %s\n", what, err ? err->msg : strerror(errno));
    exit(1);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_decode [--dir DIR] [--threads N] [--decode N] [--prompt P] "
                    "[--batches 1,8] [--bw-mb MB]\n");
    exit(2);
}

// ---- memory bandwidth ---------------------------------------------------------------------------

typedef struct { double read_gbs, copy_gbs; } bandwidth;

static bandwidth measure_bw1(double *buf, size_t n, int threads) {
    bandwidth r = {0, 0};
    volatile double sink = 0;
    for (int rep = 0; rep < 6; rep++) {
        double s = 0, t0 = now();
#pragma omp parallel for num_threads(threads) reduction(+ : s) schedule(static)
        for (size_t i = 0; i < n / 8; i++) { // 8 independent sums: bound by memory, not by adds
            double p[8];
            for (int j = 0; j < 8; j++) p[j] = buf[8 * i + j];
            s += ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
        }
        double dt = now() - t0;
        sink += s;
        double g = (double)n * sizeof(double) / dt * 1e-9;
        if (g > r.read_gbs) r.read_gbs = g;
    }
    size_t h = n / 2;
    for (int rep = 0; rep < 4; rep++) {
        double t0 = now();
#pragma omp parallel num_threads(threads)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            size_t a = h * (size_t)t / (size_t)nt, b = h * (size_t)(t + 1) / (size_t)nt;
            memcpy(buf + h + a, buf + a, (b - a) * sizeof(double));
        }
        double dt = now() - t0;
        double g = 2.0 * (double)h * sizeof(double) / dt * 1e-9; // read + write
        if (g > r.copy_gbs) r.copy_gbs = g;
    }
    (void)sink;
    return r;
}

// the best of `threads` threads and of 1 thread (on a shared machine one thread more often gets
// a whole core: the best figure is the closest to what the memory system can do)
static bandwidth measure_bw(double *buf, size_t n, int threads) {
    bandwidth a = measure_bw1(buf, n, threads), b = threads > 1 ? measure_bw1(buf, n, 1) : a;
    if (b.read_gbs > a.read_gbs) a.read_gbs = b.read_gbs;
    if (b.copy_gbs > a.copy_gbs) a.copy_gbs = b.copy_gbs;
    return a;
}

// ---- decoding ---------------------------------------------------------------------------------

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rng_u32(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

// prefill P tokens per row, then `steps` greedy steps; returns the steps' seconds, *prefill_s the
// prefill's; first ids of row 0 into ids0 (up to n_ids0)
static double decode(const ked_model *m, int B, int P, int steps, double *prefill_s, int *ids0,
                     int n_ids0) {
    const ked_config *c = ked_model_config(m);
    ked_error err;
    ked_run *r = NULL;
    if (ked_run_new(m, B, P, P + steps, 0, &r, &err)) die("ked_run_new", &err);
    int *prompt = malloc(sizeof(int) * (size_t)B * P), *last = malloc(sizeof(int) * (size_t)B);
    int *cur = malloc(sizeof(int) * (size_t)B), *idx = malloc(sizeof(int) * (size_t)B);
    if (!prompt || !last || !cur || !idx) die("decode buffers", NULL);
    rng_state = 0x2545F4914F6CDD1Dull; // the same prompts on every call
    for (int i = 0; i < B * P; i++) prompt[i] = (int)(rng_u32() % (uint32_t)c->vocab);
    for (int b = 0; b < B; b++) last[b] = b * P + P - 1;
    ked_forward_opts fo = ked_forward_defaults();
    fo.logit_idx = last;
    fo.n_logit = B;
    double t0 = now();
    if (ked_forward(m, r, prompt, B, P, NULL, &fo, &err)) die("ked_forward (prefill)", &err);
    *prefill_s = now() - t0;
    for (int b = 0; b < B; b++) idx[b] = b; // with T = 1 the flattened index of row b is b
    fo.logit_idx = idx;
    t0 = now();
    for (int s = 0; s < steps; s++) {
        float *lg = ked_run_logits(r, NULL);
        for (int b = 0; b < B; b++) cur[b] = argmax(lg + (size_t)b * c->vocab, c->vocab);
        if (s < n_ids0) ids0[s] = cur[0];
        fo.pos0 = P + s;
        if (ked_forward(m, r, cur, B, 1, NULL, &fo, &err)) die("ked_forward (step)", &err);
    }
    double dt = now() - t0;
    free(prompt); free(last); free(cur); free(idx);
    ked_run_free(r);
    return dt;
}

int main(int argc, char **argv) {
    const char *dir = "build/bench/gpt2-small-random", *batches = "1,8";
    int threads = 2, steps = 128, P = 16, bw_mb = 1024;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--decode")) steps = atoi(v);
        else if (!strcmp(a, "--prompt")) P = atoi(v);
        else if (!strcmp(a, "--batches")) batches = v;
        else if (!strcmp(a, "--bw-mb")) bw_mb = atoi(v);
        else usage();
    }
    if (threads < 1 || steps < 1 || P < 1 || bw_mb < 16) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    struct stat sb;
    if (stat(cfg, &sb)) {
        fprintf(stderr, "bench_decode: %s missing: run build/bench/bench_model --dir %s first "
                        "(it writes the random GPT-2-small model)\n", cfg, dir);
        return 1;
    }
    const char *wp = getenv("OMP_WAIT_POLICY");
    printf("threads %d\nomp_wait_policy %s\n", threads, wp ? wp : "unset");

    size_t n = (size_t)bw_mb * 1000000 / sizeof(double) / 16 * 16;
    double *buf = malloc(n * sizeof(double));
    if (!buf) die("bandwidth buffer", NULL);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = (double)(i & 1023); // first touch by the same threads
    bandwidth bw0 = measure_bw(buf, n, threads);
    printf("bw_before_read_gbs %.2f\nbw_before_copy_gbs %.2f\n", bw0.read_gbs, bw0.copy_gbs);

    ked_error err;
    ked_model *m = NULL;
    if (ked_model_load(dir, &m, &err)) die("ked_model_load", &err);
    ked_set_threads(threads);
    const ked_config *c = ked_model_config(m);
    double Cd = c->d_model;
    double w_bytes = 4.0 * ((double)c->n_layer * 12 * Cd * Cd + (double)c->vocab * Cd);
    printf("weight_bytes_per_step_mb %.1f\n", w_bytes / 1e6);
    printf("prompt %d\ndecode_steps %d\n", P, steps);

    int bs[16], nb = 0;
    for (const char *p = batches; *p && nb < 16;) {
        bs[nb] = atoi(p);
        if (bs[nb] < 1) usage();
        nb++;
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    double tok_s[16], steps_s[16];
    for (int i = 0; i < nb; i++) {
        int B = bs[i], ids0[8] = {0};
        double pf = 0;
        decode(m, B, P, 4, &pf, ids0, 0); // warm-up
        double dt = decode(m, B, P, steps, &pf, ids0, 8);
        tok_s[i] = (double)B * steps / dt;
        steps_s[i] = steps / dt;
        printf("decode_b%d_prefill_s %.3f\n", B, pf);
        printf("decode_b%d_s %.3f\ndecode_b%d_steps_s %.2f\ndecode_b%d_tok_s %.1f\n", B, dt, B,
               steps_s[i], B, tok_s[i]);
        printf("decode_b%d_ids", B);
        for (int k = 0; k < 8 && k < steps; k++) printf("%c%d", k ? ',' : ' ', ids0[k]);
        printf("\n");
    }
    bandwidth bw1 = measure_bw(buf, n, threads);
    printf("bw_after_read_gbs %.2f\nbw_after_copy_gbs %.2f\n", bw1.read_gbs, bw1.copy_gbs);
    double bw = bw0.read_gbs > bw1.read_gbs ? bw0.read_gbs : bw1.read_gbs;
    printf("bw_read_gbs %.2f\n", bw);
    for (int i = 0; i < nb; i++) {
        double gbs = w_bytes * steps_s[i] * 1e-9;
        printf("decode_b%d_weight_gbs %.2f\ndecode_b%d_bw_share %.3f\n", bs[i], gbs, bs[i],
               gbs / bw);
    }
    free(buf);
    ked_model_free(m);
    return 0;
}
