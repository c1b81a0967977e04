// kernels_loss.c: the scalar losses, each computing its value and (optionally) its gradient in
// a pass or two over each row (max, exps written while summed, scaled): masked cross-entropy,
// KL(p || q), and one-row log-softmax.
// logits (N, V). Rows run in parallel in fixed contiguous blocks, one per thread; each thread
// sums its rows in order into its own double and the partials are added in thread order, so the
// returned loss is deterministic for a given thread count (an OpenMP reduction is not).
// The gradients are SET (=), not accumulated: they start the backward pass.
// Rules (kernels.h): never allocate, never fail. Max-subtracted softmax, double sums.
#include <math.h>
#include <omp.h>

#include "model/kernels.h"

#define LOSS_MAX_THREADS 256 // partial sums live on the stack; more threads are not used
#define LOSS_PAR_MIN ((size_t)1 << 15)

// The exps are kernels.h's kexpf in float (vectorised); the sums are double, accumulated in
// `omp simd` lanes (a fixed order for a given build, whatever the thread count).

// sum_i exp(x[i] - mx); the exps are also stored into e (V) when it is not NULL
static double row_sumexp_(float *e, const float *x, float mx, int V) {
    double s = 0.0;
    if (e) {
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < V; i++) {
            float ei = kexpf(x[i] - mx);
            e[i] = ei;
            s += ei;
        }
    } else {
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < V; i++) s += kexpf(x[i] - mx);
    }
    return s;
}

// log(sum(exp(x))) of one row, max-subtracted
static double row_logsumexp_(const float *x, int V) {
    float mx = kmax_row(x, V);
    return mx + log(row_sumexp_(NULL, x, mx, V));
}

void log_softmax_row(float *out, const float *logits, int V) {
    // out (V), logits (V); out may alias logits
    double lse = row_logsumexp_(logits, V);
    for (int i = 0; i < V; i++) out[i] = (float)(logits[i] - lse);
}

// ---- cross-entropy ---------------------------------------------------------------------------

float crossentropy_forward_backward(float *dlogits, const float *logits, const int *target,
                                    int N, int V, float scale) {
    // dlogits (N, V) or NULL, logits (N, V), target (N); target[n] < 0 (or >= V): not scored
    int count = 0;
    for (int n = 0; n < N; n++) count += target[n] >= 0 && target[n] < V;
    double part[LOSS_MAX_THREADS] = {0};
    int nth = omp_get_max_threads();
    if (nth > LOSS_MAX_THREADS) nth = LOSS_MAX_THREADS;
    if ((size_t)N * V < LOSS_PAR_MIN) nth = 1;
    // loss = mean over scored rows of -log softmax(logits[n])[target[n]]
    // => dlogits[n][i] = (softmax(logits[n])[i] - [i == target[n]]) / count * scale
    float gscale = count > 0 ? scale / (float)count : 0.0f;
#pragma omp parallel num_threads(nth)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        int n0 = (int)((long long)N * tid / nt), n1 = (int)((long long)N * (tid + 1) / nt);
        double acc = 0.0;
        for (int n = n0; n < n1; n++) {
            const float *x = logits + (size_t)n * V;
            float *dx = dlogits ? dlogits + (size_t)n * V : NULL;
            int y = target[n];
            if (y < 0 || y >= V) {
                if (dx)
                    for (int i = 0; i < V; i++) dx[i] = 0.0f;
                continue;
            }
            // one pass writes e = exp(x - max) into dx while summing, a second scales it
            // (dx may be x itself: x[y] is read first, every other x[i] before dx[i] is written)
            float mx = kmax_row(x, V), xy = x[y];
            double se = row_sumexp_(dx, x, mx, V);
            acc += mx + log(se) - xy;
            if (dx) {
                float g = (float)(gscale / se); // softmax[i] * gscale = e[i] * gscale / se
#pragma omp simd
                for (int i = 0; i < V; i++) dx[i] *= g;
                dx[y] -= gscale;
            }
        }
        part[tid] = acc;
    }
    if (count == 0) return 0.0f;
    double sum = 0.0;
    for (int t = 0; t < nth; t++) sum += part[t];
    return (float)(sum / count);
}

// ---- KL divergence ---------------------------------------------------------------------------

float kl_forward_backward(float *dlogits_q, const float *logits_p, const float *logits_q, int N,
                          int V, float scale) {
    // dlogits_q (N, V) or NULL, logits_p (N, V) fixed, logits_q (N, V)
    double part[LOSS_MAX_THREADS] = {0};
    int nth = omp_get_max_threads();
    if (nth > LOSS_MAX_THREADS) nth = LOSS_MAX_THREADS;
    if ((size_t)N * V < LOSS_PAR_MIN) nth = 1;
    // loss = 1/N sum_n sum_i p[i] (log p[i] - log q[i]),  p = softmax(lp), q = softmax(lq)
    // => dloss/dlq[i] = (q[i] - p[i]) / N       (p fixed; sum_i p[i] = 1)
    float gscale = N > 0 ? scale / (float)N : 0.0f;
#pragma omp parallel num_threads(nth)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        int n0 = (int)((long long)N * tid / nt), n1 = (int)((long long)N * (tid + 1) / nt);
        double acc = 0.0;
        for (int n = n0; n < n1; n++) {
            const float *lp = logits_p + (size_t)n * V, *lq = logits_q + (size_t)n * V;
            float lse_p = (float)row_logsumexp_(lp, V), lse_q = (float)row_logsumexp_(lq, V);
            float *dq = dlogits_q ? dlogits_q + (size_t)n * V : NULL;
            double a = 0.0;
            if (dq) {
#pragma omp simd reduction(+ : a)
                for (int i = 0; i < V; i++) {
                    float logp = lp[i] - lse_p, logq = lq[i] - lse_q; // finite even when p -> 0
                    float p = kexpf(logp);
                    a += p * (logp - logq);
                    dq[i] = (kexpf(logq) - p) * gscale;
                }
            } else {
#pragma omp simd reduction(+ : a)
                for (int i = 0; i < V; i++) {
                    float logp = lp[i] - lse_p, logq = lq[i] - lse_q;
                    a += kexpf(logp) * (logp - logq);
                }
            }
            acc += a;
        }
        part[tid] = acc;
    }
    if (N <= 0) return 0.0f;
    double sum = 0.0;
    for (int t = 0; t < nth; t++) sum += part[t];
    return (float)(sum / N);
}
