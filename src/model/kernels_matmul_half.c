// kernels_matmul_half.c: the linear layer with weights held as f16/bf16 (a model loaded with
// keep_half), compute in f32: out = inp @ widen(w)^T + bias, and its backward.
//
// Two paths (kernels.h):
//  - N <= W16_DOT_MAX_N = 64 rows (decoding, short prompts): a fused dot product. Each output
//    feature o widens its weight row in chunks of W16_CHUNK values into a stack buffer and dots
//    it with the N input rows, four rows per pass (AVX2 + FMA where built for it). The weights
//    are read once, as 16-bit values: the memory-bound case, where half storage halves the
//    traffic.
//  - larger N: matmul_w16_rows(IC, OC) weight rows at a time (8 MiB of f32) are widened into
//    `scratch` (threads over rows), then one sgemm per block. The widening costs O(OC * IC),
//    the sgemm O(N * OC * IC).
// The backward's dinp takes the same two paths (fused: threads over column chunks of w, four
// weight rows per pass over dinp).
// Measured with bf16 weights against f32 sgemm on the same weights, 4096 x 4096 and 4096 x
// 11008, best of 7, on a 2-core machine under heavy load (so +-30%): N = 1..8: 0.3-0.6x the f32
// time (half the bytes to read); N = 32..64: 1.3-2x; N = 128..256 (widened blocks): 2-3x.
// Backward dinp (4096 x 4096): N = 1..64 1.0-1.3x the f32 time (the block path was 3-11x).
// Rules (kernels.h): never allocate, never fail; backward ACCUMULATES, NULL gradients skipped.
// Both paths give the same result for any thread count (each output is one thread's sum).
#include <cblas.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/kernels.h"

#ifdef __AVX2__
#include <immintrin.h>
#endif

#ifndef W16_DOT_MAX_N
#define W16_DOT_MAX_N 64
#endif
#define W16_CHUNK 256
#define W16_BCHUNK 128 // columns per thread task in the fused backward

// bf16 -> f32 is a 16-bit shift (exact); f16 through io's row converter (F16C when built for it)
static void widen(float *dst, const uint16_t *src, size_t n, int bf16) {
    if (!bf16) { ked_f16_to_f32_row(src, dst, n); return; }
    size_t i = 0;
#ifdef __AVX2__
    for (; i + 8 <= n; i += 8) {
        __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(x, 16)));
    }
#endif
    if (i < n) ked_bf16_to_f32_row(src + i, dst + i, n - i);
}

// acc[r] += sum_i a[r * lda + i] * b[i] for the nr <= 4 rows r: b (one widened chunk of a
// weight row) is loaded once for all rows
static void dot_rows(float *acc, const float *a, size_t lda, int nr, const float *b, int n) {
    int i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda;
    for (; i + 8 <= n; i += 8) {
        __m256 bv = _mm256_loadu_ps(b + i);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + i), bv, s0);
        if (nr > 1) s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + i), bv, s1);
        if (nr > 2) s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + i), bv, s2);
        if (nr > 3) s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + i), bv, s3);
    }
    __m256 sv[4] = {s0, s1, s2, s3};
    for (int r = 0; r < nr; r++) {
        float t[8];
        _mm256_storeu_ps(t, sv[r]);
        acc[r] += ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    }
#endif
    for (int r = 0; r < nr; r++) { // the tail (everything without AVX2+FMA), 8 partial sums
        const float *ar = a + (size_t)r * lda;
        float s8[8] = {0};
        int k = i;
        for (; k + 8 <= n; k += 8)
            for (int j = 0; j < 8; j++) s8[j] += ar[k + j] * b[k + j];
        float t = ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
        for (; k < n; k++) t += ar[k] * b[k];
        acc[r] += t;
    }
}

// widen rows [o0, o0 + ob) of w (OC, IC) into dst (ob, IC)
static void widen_rows(float *dst, const uint16_t *w, int bf16, int o0, int ob, int IC) {
#pragma omp parallel for if ((size_t)ob * IC >= ((size_t)1 << 15))
    for (int o = 0; o < ob; o++)
        widen(dst + (size_t)o * IC, w + (size_t)(o0 + o) * IC, (size_t)IC, bf16);
}

void matmul_forward_w16(float *out, const float *inp, const uint16_t *w, int bf16,
                        const float *bias, int N, int IC, int OC, float *scratch) {
    // out (N, OC), inp (N, IC), w (OC, IC) 16-bit, bias (OC) or NULL,
    // scratch (matmul_w16_scratch(IC, OC))
    if (N <= 0 || OC <= 0) return;
    if (N <= W16_DOT_MAX_N || IC <= 0) {
        // out[n][o] = bias[o] + sum_i inp[n][i] * widen(w[o][i])
#pragma omp parallel for if ((size_t)OC * IC >= ((size_t)1 << 16))
        for (int o = 0; o < OC; o++) {
            float acc[W16_DOT_MAX_N] = {0}, buf[W16_CHUNK];
            const uint16_t *w_o = w + (size_t)o * IC;
            for (int i0 = 0; i0 < IC; i0 += W16_CHUNK) {
                int ib = IC - i0 < W16_CHUNK ? IC - i0 : W16_CHUNK;
                widen(buf, w_o + i0, (size_t)ib, bf16);
                for (int n = 0; n < N && n < W16_DOT_MAX_N; n += 4)
                    dot_rows(acc + n, inp + (size_t)n * IC + i0, (size_t)IC,
                             N - n < 4 ? N - n : 4, buf, ib);
            }
            for (int n = 0; n < N && n < W16_DOT_MAX_N; n++)
                out[(size_t)n * OC + o] = (bias ? bias[o] : 0.0f) + acc[n];
        }
        if (N <= W16_DOT_MAX_N) return;
        // IC <= 0 with N > W16_DOT_MAX_N: every row is the bias (or 0)
        for (int n = W16_DOT_MAX_N; n < N; n++)
            memcpy(out + (size_t)n * OC, out, sizeof(float) * (size_t)OC);
        return;
    }
    float beta = 0.0f;
    if (bias) {
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, sizeof(float) * (size_t)OC);
        beta = 1.0f;
    }
    const int rows = matmul_w16_rows(IC, OC);
    for (int o0 = 0; o0 < OC; o0 += rows) {
        int ob = OC - o0 < rows ? OC - o0 : rows;
        widen_rows(scratch, w, bf16, o0, ob, IC);
        // out[:, o0:o0+ob] (+)= inp @ scratch^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, ob, IC, 1.0f, inp, IC, scratch,
                    IC, beta, out + o0, OC);
    }
}

void matmul_backward_w16(float *dinp, float *dw, float *dbias, const float *dout,
                         const float *inp, const uint16_t *w, int bf16, int N, int IC, int OC,
                         float *scratch) {
    // dinp (N, IC), dw (OC, IC), dbias (OC), dout (N, OC), inp (N, IC), w (OC, IC) 16-bit
    if (N <= 0 || OC <= 0) return;
    // dw and dbias do not read w
    matmul_backward(NULL, dw, dbias, dout, inp, NULL, N, IC, OC);
    if (!dinp || IC <= 0) return;
    // forward: out[n][o] = sum_i inp[n][i] * w[o][i]  =>  dinp[n][i] += sum_o dout[n][o] w[o][i]
    if (N <= W16_DOT_MAX_N) {
        // fused: threads over column chunks of w (and of dinp); each widens its chunk of every
        // weight row once and adds it, scaled by dout[n][o], into the N rows of its dinp chunk
        const int nch = (IC + W16_BCHUNK - 1) / W16_BCHUNK;
#pragma omp parallel for if ((size_t)OC * IC >= ((size_t)1 << 16))
        for (int c = 0; c < nch; c++) {
            int i0 = c * W16_BCHUNK, ib = IC - i0 < W16_BCHUNK ? IC - i0 : W16_BCHUNK;
            float buf[4][W16_BCHUNK];
            for (int o = 0; o < OC; o += 4) { // four weight rows per pass over dinp
                int no = OC - o < 4 ? OC - o : 4;
                for (int k = 0; k < 4; k++) {
                    if (k < no) widen(buf[k], w + (size_t)(o + k) * IC + i0, (size_t)ib, bf16);
                    else memset(buf[k], 0, sizeof buf[k]);
                }
                for (int n = 0; n < N; n++) {
                    const float *dn = dout + (size_t)n * OC + o;
                    float d0 = dn[0], d1 = no > 1 ? dn[1] : 0, d2 = no > 2 ? dn[2] : 0;
                    float d3 = no > 3 ? dn[3] : 0;
                    float *di = dinp + (size_t)n * IC + i0;
                    for (int i = 0; i < ib; i++)
                        di[i] += (d0 * buf[0][i] + d1 * buf[1][i]) +
                                 (d2 * buf[2][i] + d3 * buf[3][i]);
                }
            }
        }
        return;
    }
    const int rows = matmul_w16_rows(IC, OC);
    for (int o0 = 0; o0 < OC; o0 += rows) {
        int ob = OC - o0 < rows ? OC - o0 : rows;
        widen_rows(scratch, w, bf16, o0, ob, IC);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, ob, 1.0f, dout + o0, OC,
                    scratch, IC, 1.0f, dinp, IC);
    }
}
