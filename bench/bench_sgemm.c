// bench_sgemm.c: the machine's sgemm peak, the baseline that `make bench` divides by.
// cblas_sgemm (row-major, C = A @ B^T as in matmul_forward) on two square-ish shapes, for one
// thread and for OpenBLAS's default thread count; each is warmed up once, then timed until
// ~0.25 s has passed, keeping the best repetition. Prints one line per (shape, threads), then
// `sgemm_1thread_gflops N` (best over shapes, one thread) and last `sgemm_peak_gflops N` (best
// over everything measured: the machine's peak). Takes a few seconds.
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static double best_gflops(int M, int N, int K, const float *A, const float *B, float *C) {
    // C (M, N) = A (M, K) @ B (N, K)^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    double best = 1e30, spent = 0;
    for (int rep = 0; rep < 50 && (rep < 3 || spent < 0.25); rep++) {
        double t0 = omp_get_wtime();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C,
                    N);
        double dt = omp_get_wtime() - t0;
        spent += dt;
        best = dt < best ? dt : best;
    }
    return 2.0 * M * N * K / best * 1e-9;
}

int main(void) {
    static const int shapes[][3] = {{1024, 3072, 768}, {2048, 2048, 2048}}; // M, N, K
    int nshape = sizeof shapes / sizeof *shapes;
    size_t maxa = 0, maxb = 0, maxc = 0;
    for (int s = 0; s < nshape; s++) {
        size_t a = (size_t)shapes[s][0] * shapes[s][2], b = (size_t)shapes[s][1] * shapes[s][2];
        size_t c = (size_t)shapes[s][0] * shapes[s][1];
        maxa = a > maxa ? a : maxa; maxb = b > maxb ? b : maxb; maxc = c > maxc ? c : maxc;
    }
    float *A = malloc(maxa * sizeof *A), *B = malloc(maxb * sizeof *B);
    float *C = malloc(maxc * sizeof *C);
    if (!A || !B || !C) { fprintf(stderr, "bench_sgemm: out of memory\n"); return 1; }
    for (size_t i = 0; i < maxa; i++) A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < maxb; i++) B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;

    int nthreads = openblas_get_num_threads();
    double peak = 0, peak1 = 0;
    int counts[2] = {1, nthreads};
    for (int ti = 0; ti < (nthreads > 1 ? 2 : 1); ti++) {
        openblas_set_num_threads(counts[ti]);
        for (int s = 0; s < nshape; s++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            double g = best_gflops(M, N, K, A, B, C);
            printf("sgemm M=%d N=%d K=%d threads=%d gflops=%.1f\n", M, N, K, counts[ti], g);
            if (counts[ti] == 1 && g > peak1) peak1 = g;
            if (g > peak) peak = g;
        }
    }
    openblas_set_num_threads(nthreads);
    printf("sgemm_1thread_gflops %.1f\n", peak1);
    printf("sgemm_peak_gflops %.1f\n", peak);
    free(A); free(B); free(C);
    return 0;
}
