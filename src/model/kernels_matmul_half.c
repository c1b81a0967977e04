// kernels_matmul_half.c: the linear layer with weights held as f16/bf16 (a model loaded with
// keep_half), compute in f32: out = inp @ widen(w)^T + bias, and its backward.
//
// Two paths (kernels.h):
//  - N <= W16_DOT_MAX_N rows (decoding, one token per row): a fused dot product. Each output
//    feature o widens its weight row in chunks of W16_CHUNK values into a stack buffer and dots
//    it with the N input rows. The weights are read once, as 16-bit values: this is the
//    memory-bound case, where half storage halves the traffic.
//  - larger N: MATMUL_W16_BLOCK weight rows at a time are widened into `scratch` (threads over
//    rows), then one sgemm per block. The widening costs O(OC * IC), the sgemm O(N * OC * IC).
// Rules (kernels.h): never allocate, never fail; backward ACCUMULATES, NULL gradients skipped.
// Both paths give the same result for any thread count (each output is one thread's sum).
#include <cblas.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/kernels.h"

#define W16_DOT_MAX_N 8
#define W16_CHUNK 256

static void widen(float *dst, const uint16_t *src, size_t n, int bf16) {
    if (bf16) ked_bf16_to_f32_row(src, dst, n);
    else ked_f16_to_f32_row(src, dst, n);
}

// 8 partial sums, so that the compiler vectorises without reassociating a single sum
static float dot(const float *a, const float *b, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) t += a[i] * b[i];
    return t;
}

// widen rows [o0, o0 + ob) of w (OC, IC) into dst (ob, IC)
static void widen_rows(float *dst, const uint16_t *w, int bf16, int o0, int ob, int IC) {
#pragma omp parallel for if ((size_t)ob * IC >= ((size_t)1 << 15))
    for (int o = 0; o < ob; o++)
        widen(dst + (size_t)o * IC, w + (size_t)(o0 + o) * IC, (size_t)IC, bf16);
}

void matmul_forward_w16(float *out, const float *inp, const uint16_t *w, int bf16,
                        const float *bias, int N, int IC, int OC, float *scratch) {
    // out (N, OC), inp (N, IC), w (OC, IC) 16-bit, bias (OC) or NULL, scratch (BLOCK * IC)
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
                for (int n = 0; n < N && n < W16_DOT_MAX_N; n++)
                    acc[n] += dot(inp + (size_t)n * IC + i0, buf, ib);
            }
            for (int n = 0; n < N && n < W16_DOT_MAX_N; n++)
                out[(size_t)n * OC + o] = (bias ? bias[o] : 0.0f) + acc[n];
        }
        if (N <= W16_DOT_MAX_N) return;
        // IC <= 0 with N > 8: every row is the bias (or 0)
        for (int n = W16_DOT_MAX_N; n < N; n++)
            memcpy(out + (size_t)n * OC, out, sizeof(float) * (size_t)OC);
        return;
    }
    float beta = 0.0f;
    if (bias) {
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, sizeof(float) * (size_t)OC);
        beta = 1.0f;
    }
    for (int o0 = 0; o0 < OC; o0 += MATMUL_W16_BLOCK) {
        int ob = OC - o0 < MATMUL_W16_BLOCK ? OC - o0 : MATMUL_W16_BLOCK;
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
    for (int o0 = 0; o0 < OC; o0 += MATMUL_W16_BLOCK) {
        int ob = OC - o0 < MATMUL_W16_BLOCK ? OC - o0 : MATMUL_W16_BLOCK;
        widen_rows(scratch, w, bf16, o0, ob, IC);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, ob, 1.0f, dout + o0, OC,
                    scratch, IC, 1.0f, dinp, IC);
    }
}
