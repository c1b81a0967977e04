// test_kernels_small.c: the few-row matmul (kernels_matmul_small.c) against the plain-loop
// reference, its determinism, and matmul_forward/_backward's dispatch to it.
//  1. matmul_forward_small / matmul_backward_small against matmul_forward_naive /
//     matmul_backward_naive for N = 1..40 rows and odd shapes (IC, OC in 1, 15, 37, 129, 1000),
//     with and without bias. Tolerance: |got - ref| <= 2e-6 * (sum_i |inp[n][i] w[o][i]| +
//     |bias[o]| + |dinp0|) (a few f32 roundings of the magnitudes summed; the kernels use fused
//     multiply-adds and another order than the naive loop);
//  2. bit-identical results for 1, 2 and 3 threads, and a row's result independent of N (row n of
//     an N-row product equals the same row computed alone);
//  3. matmul_forward / matmul_backward (which dispatch to the small kernels for few rows) against
//     the naive reference at N = 1..40 (the same tolerance; the finite-difference checks of
//     tests/test_kernels.c cover the backward's contract).
// With --bench [REPS]: seconds per call of the small kernels against cblas_sgemm (and sgemv at
// N = 1) for the GPT-2-small shapes 768x768, 768x3072, 3072x768, 768x50257 and N = 1..64 (the
// crossover that sets MATMUL_SMALL_*_MAX_N), on the threads OpenMP gives (ked_set_threads(2)).
#include <cblas.h>
#include <omp.h>

#include "ked.h"
#include "model/kernels.h"
#include "test.h"

static uint64_t rng_s = 0x9E3779B97F4A7C15ull;
static float urand(void) { // uniform in [-1, 1)
    rng_s ^= rng_s >> 12; rng_s ^= rng_s << 25; rng_s ^= rng_s >> 27;
    return (float)((rng_s * 2685821657736338717ull) >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}
static float *rnd(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = urand();
    return p;
}

// max over entries of |a - b| / scale, where scale = 2e-6 * mag + 1e-30
static double worst(const float *a, const float *b, const double *mag, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (2e-6 * mag[i] + 1e-30);
        if (!(e <= m)) m = e; // NaN wins
    }
    return m;
}

static void test_against_naive(void) {
    printf("small matmul vs naive\n");
    const int shapes[][2] = {{37, 129}, {129, 37}, {1000, 37}, {37, 1000}, {15, 1}, {1, 15},
                             {129, 129}, {16, 48}};
    const int nsh = (int)(sizeof shapes / sizeof shapes[0]);
    double wf = 0, wb = 0, wdf = 0, wdb = 0;
    for (int s = 0; s < nsh; s++) {
        int IC = shapes[s][0], OC = shapes[s][1];
        for (int N = 1; N <= 40; N++) {
            float *inp = rnd((size_t)N * IC), *w = rnd((size_t)OC * IC), *bias = rnd(OC);
            float *dout = rnd((size_t)N * OC), *d0 = rnd((size_t)N * IC);
            float *o1 = malloc(sizeof(float) * N * OC), *o2 = malloc(sizeof(float) * N * OC);
            float *g1 = malloc(sizeof(float) * N * IC), *g2 = malloc(sizeof(float) * N * IC);
            double *mf = malloc(sizeof(double) * N * OC), *mb = malloc(sizeof(double) * N * IC);
            for (int hb = 0; hb < 2; hb++) {
                const float *b = hb ? bias : NULL;
                for (int n = 0; n < N; n++)
                    for (int o = 0; o < OC; o++) {
                        double m = b ? fabs(b[o]) : 0;
                        for (int i = 0; i < IC; i++)
                            m += fabs((double)inp[(size_t)n * IC + i] * w[(size_t)o * IC + i]);
                        mf[(size_t)n * OC + o] = m;
                    }
                matmul_forward_naive(o2, inp, w, b, N, IC, OC);
                matmul_forward_small(o1, inp, w, b, N, IC, OC);
                double e = worst(o1, o2, mf, (size_t)N * OC);
                if (e > wf) wf = e;
                CHECK(e <= 1, "forward_small N %d IC %d OC %d bias %d: error %.2f x tolerance", N,
                      IC, OC, hb, e);
                matmul_forward(o1, inp, w, b, N, IC, OC);
                e = worst(o1, o2, mf, (size_t)N * OC);
                if (e > wdf) wdf = e;
                CHECK(e <= 1, "matmul_forward N %d IC %d OC %d bias %d: error %.2f x tolerance", N,
                      IC, OC, hb, e);
            }
            for (int n = 0; n < N; n++)
                for (int i = 0; i < IC; i++) {
                    double m = fabs(d0[(size_t)n * IC + i]);
                    for (int o = 0; o < OC; o++)
                        m += fabs((double)dout[(size_t)n * OC + o] * w[(size_t)o * IC + i]);
                    mb[(size_t)n * IC + i] = m;
                }
            memcpy(g1, d0, sizeof(float) * N * IC);
            memcpy(g2, d0, sizeof(float) * N * IC);
            matmul_backward_naive(g2, NULL, NULL, dout, inp, w, N, IC, OC);
            matmul_backward_small(g1, dout, w, N, IC, OC);
            double e = worst(g1, g2, mb, (size_t)N * IC);
            if (e > wb) wb = e;
            CHECK(e <= 1, "backward_small N %d IC %d OC %d: error %.2f x tolerance", N, IC, OC, e);
            memcpy(g1, d0, sizeof(float) * N * IC);
            matmul_backward(g1, NULL, NULL, dout, inp, w, N, IC, OC);
            e = worst(g1, g2, mb, (size_t)N * IC);
            if (e > wdb) wdb = e;
            CHECK(e <= 1, "matmul_backward N %d IC %d OC %d: error %.2f x tolerance", N, IC, OC, e);
            free(inp); free(w); free(bias); free(dout); free(d0);
            free(o1); free(o2); free(g1); free(g2); free(mf); free(mb);
        }
    }
    printf("  worst error / tolerance: forward_small %.3f, backward_small %.3f, matmul_forward "
           "%.3f, matmul_backward %.3f\n", wf, wb, wdf, wdb);
    // NULL dinp and empty sizes do nothing
    float x = 1.0f;
    matmul_backward_small(NULL, &x, &x, 1, 1, 1);
    matmul_backward_small(&x, &x, &x, 0, 1, 1);
    CHECK(x == 1.0f, "empty backward wrote %g", x);
    float b2[2] = {3, 4}, o[4] = {9, 9, 9, 9};
    matmul_forward_small(o, &x, &x, b2, 2, 0, 2); // IC = 0: the bias
    CHECK(o[0] == 3 && o[1] == 4 && o[2] == 3 && o[3] == 4, "IC 0 forward %g %g %g %g", o[0],
          o[1], o[2], o[3]);
}

// bit-identical for 1, 2, 3 threads; row n of an N-row product equals row n computed alone
static void test_determinism(void) {
    printf("small matmul determinism\n");
    const int N = 13, IC = 1000, OC = 515; // big enough for the parallel regions
    float *inp = rnd((size_t)N * IC), *w = rnd((size_t)OC * IC), *bias = rnd(OC);
    float *dout = rnd((size_t)N * OC), *d0 = rnd((size_t)N * IC);
    float *o[3], *g[3], *one = malloc(sizeof(float) * (OC > IC ? OC : IC));
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t + 1);
        o[t] = malloc(sizeof(float) * N * OC);
        g[t] = malloc(sizeof(float) * N * IC);
        memcpy(g[t], d0, sizeof(float) * N * IC);
        matmul_forward_small(o[t], inp, w, bias, N, IC, OC);
        matmul_backward_small(g[t], dout, w, N, IC, OC);
    }
    for (int t = 1; t < 3; t++) {
        CHECK(!memcmp(o[0], o[t], sizeof(float) * N * OC), "forward: %d threads differ from 1",
              t + 1);
        CHECK(!memcmp(g[0], g[t], sizeof(float) * N * IC), "backward: %d threads differ from 1",
              t + 1);
    }
    omp_set_num_threads(2);
    int same_f = 1, same_b = 1;
    for (int n = 0; n < N; n++) {
        matmul_forward_small(one, inp + (size_t)n * IC, w, bias, 1, IC, OC);
        same_f &= !memcmp(one, o[0] + (size_t)n * OC, sizeof(float) * OC);
        memcpy(one, d0 + (size_t)n * IC, sizeof(float) * IC);
        matmul_backward_small(one, dout + (size_t)n * OC, w, 1, IC, OC);
        same_b &= !memcmp(one, g[0] + (size_t)n * IC, sizeof(float) * IC);
    }
    CHECK(same_f, "forward: a row computed alone differs from the same row among %d", N);
    CHECK(same_b, "backward: a row computed alone differs from the same row among %d", N);
    for (int t = 0; t < 3; t++) { free(o[t]); free(g[t]); }
    free(one); free(inp); free(w); free(bias); free(dout); free(d0);
}

// ---- --bench: the crossover against sgemm -------------------------------------------------

static double best_of(int reps, void (*f)(void *), void *arg) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = omp_get_wtime();
        f(arg);
        double t = omp_get_wtime() - t0;
        if (t < best) best = t;
    }
    return best;
}
typedef struct { float *out, *inp, *w, *bias, *dout, *dinp; int N, IC, OC; } bench_args;
static void run_small_fwd(void *p) {
    bench_args *a = p;
    matmul_forward_small(a->out, a->inp, a->w, a->bias, a->N, a->IC, a->OC);
}
static void run_blas_fwd(void *p) { // what matmul_forward did before: sgemv at N = 1, else sgemm
    bench_args *a = p;
    for (int n = 0; n < a->N; n++)
        memcpy(a->out + (size_t)n * a->OC, a->bias, sizeof(float) * a->OC);
    if (a->N == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, a->OC, a->IC, 1.0f, a->w, a->IC, a->inp, 1, 1.0f,
                    a->out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->N, a->OC, a->IC, 1.0f, a->inp,
                    a->IC, a->w, a->IC, 1.0f, a->out, a->OC);
}
static void run_small_bwd(void *p) {
    bench_args *a = p;
    matmul_backward_small(a->dinp, a->dout, a->w, a->N, a->IC, a->OC);
}
static void run_blas_bwd(void *p) {
    bench_args *a = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->N, a->IC, a->OC, 1.0f, a->dout,
                a->OC, a->w, a->IC, 1.0f, a->dinp, a->IC);
}

static void bench(int reps) {
    ked_set_threads(2);
    const int shapes[][2] = {{768, 768}, {768, 3072}, {3072, 768}, {768, 50257}}; // IC, OC
    const int Ns[] = {1, 2, 4, 8, 9, 12, 16, 24, 32, 48, 64};
    printf("bench: seconds per call (best of %d), %d threads; GB/s = weight bytes / time\n", reps,
           omp_get_max_threads());
    printf("%-11s %3s | %9s %9s %6s %7s | %9s %9s %6s %7s\n", "IC x OC", "N", "fwd small",
           "fwd blas", "ratio", "GB/s", "bwd small", "bwd sgemm", "ratio", "GB/s");
    for (int s = 0; s < 4; s++) {
        int IC = shapes[s][0], OC = shapes[s][1];
        int NM = 64;
        bench_args a = {malloc(sizeof(float) * NM * OC), rnd((size_t)NM * IC), rnd((size_t)OC * IC),
                        rnd(OC), rnd((size_t)NM * OC), rnd((size_t)NM * IC), 0, IC, OC};
        double gb = 4.0 * IC * OC / 1e9;
        for (size_t k = 0; k < sizeof Ns / sizeof Ns[0]; k++) {
            a.N = Ns[k];
            double fs = best_of(reps, run_small_fwd, &a), fb = best_of(reps, run_blas_fwd, &a);
            double bs = best_of(reps, run_small_bwd, &a), bb = best_of(reps, run_blas_bwd, &a);
            printf("%4d x %-5d %3d | %9.6f %9.6f %6.2f %7.1f | %9.6f %9.6f %6.2f %7.1f\n", IC, OC,
                   a.N, fs, fb, fb / fs, gb / fs, bs, bb, bb / bs, gb / bs);
            fflush(stdout);
        }
        free(a.out); free(a.inp); free(a.w); free(a.bias); free(a.dout); free(a.dinp);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        bench(argc > 2 ? atoi(argv[2]) : 20);
        return 0;
    }
    test_against_naive();
    test_determinism();
    return test_finish("test_kernels_small");
}
