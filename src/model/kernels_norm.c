// kernels_norm.c: RMSNorm (HF LLaMA) and LayerNorm (PyTorch, biased variance), forward next to
// backward. N rows, C channels; every row is independent, so forward and dinp run over rows in
// parallel for large N*C, and the weight gradients run over blocks of channels (each channel sums
// its rows in order), which keeps the results deterministic for any thread count.
// Row sums are double, accumulated in `omp simd` lanes (vectorised; a fixed order per build).
// Rules (kernels.h): never allocate, never fail; backward ACCUMULATES (+=), NULL grads skipped.
#include <math.h>

#include "model/kernels.h"

// rows are worth a thread team only when there is enough work
#define NORM_PAR_MIN ((size_t)1 << 16)
#define NORM_CB 64 // channels per task in the weight gradients
// rows per dynamically scheduled task (channel blocks: one per task): every task writes its own
// outputs, so the split does not change any result, and a thread whose core is shared with
// another process does fewer tasks instead of holding its partner at the barrier
#define NORM_DYN 16

// ---- RMSNorm ---------------------------------------------------------------------------------

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                     float eps) {
    // out (N, C), rstd (N), inp (N, C), w (C)
#pragma omp parallel for schedule(dynamic, NORM_DYN) if ((size_t)N * C >= NORM_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double ss = 0.0; // sum of squares in double: the fp32 mean(x^2) of HF, rounded once
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float r = 1.0f / sqrtf((float)(ss / C) + eps); // rsqrt(mean(x^2) + eps)
#pragma omp simd
        for (int i = 0; i < C; i++) o[i] = x[i] * r * w[i]; // x * rsqrt(...) * w
        rstd[n] = r;
    }
}

void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int N, int C) {
    // dinp (N, C), dw (C), dout (N, C), inp (N, C), w (C), rstd (N)
    if (dinp) {
#pragma omp parallel for schedule(dynamic, NORM_DYN) if ((size_t)N * C >= NORM_PAR_MIN)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C;
            const float *g = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float r = rstd[n];
            // forward: o[i] = x[i] * r * w[i],  r = (sum_j x[j]^2 / C + eps)^(-1/2)
            // => dr/dx[j] = -r^3 x[j] / C, so
            //    dx[j] = r w[j] g[j] - x[j] r^3 / C * sum_i g[i] w[i] x[i]
            double dot = 0.0;
#pragma omp simd reduction(+ : dot)
            for (int i = 0; i < C; i++) dot += (double)g[i] * w[i] * x[i];
            float c = (float)(dot * r * r * r / C);
#pragma omp simd
            for (int i = 0; i < C; i++) dx[i] += r * w[i] * g[i] - x[i] * c;
        }
    }
    if (dw) {
        // forward: o[i] = x[i] * r * w[i]  => dw[i] += sum_n g[n][i] * x[n][i] * r[n]
        // (a block of NORM_CB channels per task, rows summed in order, rows read contiguously)
#pragma omp parallel for schedule(dynamic) if ((size_t)N * C >= NORM_PAR_MIN)
        for (int c0 = 0; c0 < C; c0 += NORM_CB) {
            int cb = C - c0 < NORM_CB ? C - c0 : NORM_CB;
            float acc[NORM_CB] = {0};
            for (int n = 0; n < N; n++) {
                const float *g = dout + (size_t)n * C + c0, *x = inp + (size_t)n * C + c0;
                float r = rstd[n];
                for (int i = 0; i < cb; i++) acc[i] += g[i] * x[i] * r;
            }
            for (int i = 0; i < cb; i++) dw[c0 + i] += acc[i];
        }
    }
}

// ---- LayerNorm -------------------------------------------------------------------------------

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C, float eps) {
    // out (N, C), mean (N), rstd (N), inp (N, C), w (C), b (C) or NULL
#pragma omp parallel for schedule(dynamic, NORM_DYN) if ((size_t)N * C >= NORM_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < C; i++) s += x[i];
        float m = (float)(s / C);
        double v = 0.0; // biased variance (divide by C), as torch.nn.LayerNorm
#pragma omp simd reduction(+ : v)
        for (int i = 0; i < C; i++) v += (double)(x[i] - m) * (x[i] - m);
        float r = 1.0f / sqrtf((float)(v / C) + eps);
#pragma omp simd
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * r; // (x - mean) * rstd
            o[i] = norm * w[i] + (b ? b[i] : 0.0f);
        }
        mean[n] = m;
        rstd[n] = r;
    }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C) {
    // dinp (N, C), dw (C), db (C), dout (N, C), inp (N, C), w (C), mean (N), rstd (N)
    if (dinp) {
#pragma omp parallel for schedule(dynamic, NORM_DYN) if ((size_t)N * C >= NORM_PAR_MIN)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C;
            const float *g = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float m = mean[n], r = rstd[n];
            // forward: norm[i] = (x[i] - mean) * rstd;  o[i] = norm[i] * w[i] + b[i]
            // => dnorm[i] = w[i] g[i], and through mean and rstd (llm.c layernorm_backward):
            //    dx[i] = rstd * (dnorm[i] - mean_j(dnorm[j]) - norm[i] * mean_j(dnorm[j] norm[j]))
            double dn_mean = 0.0, dnn_mean = 0.0;
#pragma omp simd reduction(+ : dn_mean, dnn_mean)
            for (int i = 0; i < C; i++) {
                float dnorm = w[i] * g[i];
                dn_mean += dnorm;
                dnn_mean += (double)dnorm * ((x[i] - m) * r);
            }
            float a = (float)(dn_mean / C), c = (float)(dnn_mean / C);
#pragma omp simd
            for (int i = 0; i < C; i++) {
                float norm = (x[i] - m) * r;
                dx[i] += r * (w[i] * g[i] - a - norm * c);
            }
        }
    }
    if (dw || db) {
        // forward: o[i] = norm[i] * w[i] + b[i]
        // => dw[i] += sum_n g[n][i] norm[n][i];  db[i] += sum_n g[n][i]
#pragma omp parallel for schedule(dynamic) if ((size_t)N * C >= NORM_PAR_MIN)
        for (int c0 = 0; c0 < C; c0 += NORM_CB) {
            int cb = C - c0 < NORM_CB ? C - c0 : NORM_CB;
            float sw[NORM_CB] = {0}, sb[NORM_CB] = {0};
            for (int n = 0; n < N; n++) {
                const float *g = dout + (size_t)n * C + c0, *x = inp + (size_t)n * C + c0;
                float m = mean[n], r = rstd[n];
                for (int i = 0; i < cb; i++) {
                    sw[i] += g[i] * ((x[i] - m) * r);
                    sb[i] += g[i];
                }
            }
            for (int i = 0; i < cb; i++) {
                if (dw) dw[c0 + i] += sw[i];
                if (db) db[c0 + i] += sb[i];
            }
        }
    }
}
