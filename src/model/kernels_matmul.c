// kernels_matmul.c: the linear layer, out = inp @ w^T + bias, through BLAS (cblas_sgemm), and a
// plain-loop reference of the same contract that the tests compare against.
//
// Rules (kernels.h): outputs first, then const inputs, then sizes; never allocate, never fail;
// backward ACCUMULATES (+=) into every gradient and skips any gradient passed as NULL.
// N rows (= B*T), IC in features, OC out features; w (OC, IC) row-major (nn.Linear layout).
#include <cblas.h>

#include "model/kernels.h"

// ---- BLAS path ---------------------------------------------------------------------------------

void matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                    int N, int IC, int OC) {
    // out (N, OC), inp (N, IC), w (OC, IC), bias (OC) or NULL
    if (N <= 0 || OC <= 0) return;
    if (N >= 2 && N <= MATMUL_SMALL_FWD_MAX_N) { // a few rows: no packing (kernels_matmul_small.c)
        matmul_forward_small(out, inp, w, bias, N, IC, OC);
        return;
    }
    float beta = 0.0f;
    if (bias) {
        // seed every row with the bias, then let sgemm add inp @ w^T on top (beta = 1)
#pragma omp parallel for if ((size_t)N * OC >= (1u << 18))
        for (int n = 0; n < N; n++) {
            float *out_n = out + (size_t)n * OC;
            for (int o = 0; o < OC; o++) out_n[o] = bias[o];
        }
        beta = 1.0f;
    }
    if (IC <= 0) { // empty contraction: out = bias (or 0); sgemm would reject lda = 0
        if (!bias) for (size_t i = 0; i < (size_t)N * OC; i++) out[i] = 0.0f;
        return;
    }
    // out[n][o] = sum_i inp[n][i] * w[o][i]
    if (N == 1) { // one row (decoding): a matrix-vector product reads w once, 2-3x faster
        cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, IC, 1.0f, w, IC, inp, 1, beta, out, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, beta,
                out, OC);
}

void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int N, int IC, int OC) {
    // dinp (N, IC), dw (OC, IC), dbias (OC), dout (N, OC), inp (N, IC), w (OC, IC)
    if (N <= 0 || OC <= 0) return;
    if (IC > 0) {
        // forward: out[n][o] = sum_i inp[n][i] * w[o][i]
        // => dinp[n][i] += sum_o dout[n][o] * w[o][i]          (dinp = dout @ w)
        if (dinp && N <= MATMUL_SMALL_BWD_MAX_N) // a few rows: w read once, not packed
            matmul_backward_small(dinp, dout, w, N, IC, OC);
        else if (dinp)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w,
                        IC, 1.0f, dinp, IC);
        // => dw[o][i] += sum_n dout[n][o] * inp[n][i]          (dw = dout^T @ inp)
        if (dw)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp,
                        IC, 1.0f, dw, IC);
    }
    // forward: out[n][o] = bias[o] + ...  => dbias[o] += sum_n dout[n][o]
    // columns in parallel, rows summed in order: deterministic for any thread count
    if (dbias) {
#pragma omp parallel for if ((size_t)N * OC >= (1u << 18))
        for (int o0 = 0; o0 < OC; o0 += 64) { // 64 columns per task, rows read contiguously
            int ob = OC - o0 < 64 ? OC - o0 : 64;
            float s[64] = {0};
            for (int n = 0; n < N; n++) {
                const float *dout_n = dout + (size_t)n * OC + o0;
                for (int o = 0; o < ob; o++) s[o] += dout_n[o];
            }
            for (int o = 0; o < ob; o++) dbias[o0 + o] += s[o];
        }
    }
}

// ---- plain-loop reference (llm.c matmul_forward_naive): the algorithm, and a fallback ----------

void matmul_forward_naive(float *out, const float *inp, const float *w, const float *bias,
                          int N, int IC, int OC) {
    // out (N, OC), inp (N, IC), w (OC, IC), bias (OC) or NULL
    for (int n = 0; n < N; n++) {
        const float *inp_n = inp + (size_t)n * IC;
        float *out_n = out + (size_t)n * OC;
        for (int o = 0; o < OC; o++) {
            const float *w_o = w + (size_t)o * IC;
            float s = bias ? bias[o] : 0.0f;
            for (int i = 0; i < IC; i++) s += inp_n[i] * w_o[i];
            out_n[o] = s;
        }
    }
}

void matmul_backward_naive(float *dinp, float *dw, float *dbias, const float *dout,
                           const float *inp, const float *w, int N, int IC, int OC) {
    // dinp (N, IC), dw (OC, IC), dbias (OC), dout (N, OC), inp (N, IC), w (OC, IC)
    for (int n = 0; n < N; n++) {
        const float *dout_n = dout + (size_t)n * OC;
        const float *inp_n = inp + (size_t)n * IC;
        for (int o = 0; o < OC; o++) {
            // forward: out[n][o] = bias[o] + sum_i inp[n][i] * w[o][i]
            float d = dout_n[o];
            const float *w_o = w + (size_t)o * IC;
            if (dinp) {
                float *dinp_n = dinp + (size_t)n * IC;
                for (int i = 0; i < IC; i++) dinp_n[i] += w_o[i] * d;
            }
            if (dw) {
                float *dw_o = dw + (size_t)o * IC;
                for (int i = 0; i < IC; i++) dw_o[i] += inp_n[i] * d;
            }
            if (dbias) dbias[o] += d;
        }
    }
}
