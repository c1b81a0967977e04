// kernels.h: the numeric kernels of the generic decoder, each forward next to its backward.
//
// Rules (docs/style.md §6.4-5): plain functions over float*, outputs first, then const inputs,
// then sizes. Kernels never allocate (scratch comes from the caller) and never fail.
// Backward kernels ACCUMULATE (+=) into every gradient they write, so that a tensor used twice
// (tied embeddings, a residual) sums its gradients; any gradient pointer may be NULL, in which
// case that gradient is not computed at all (backward computes only what is asked for).
// Dimension letters: N rows (= B*T flattened), C channels, OC/IC out/in features, B batch,
// T query positions, S key positions, H query heads, KV key/value heads, D head size, F d_ff.
#ifndef KED_KERNELS_H
#define KED_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

// ---- elementwise math the kernels share ------------------------------------------------------
// exp and tanh in plain branch-free C (no libm call), so that gcc and clang both vectorise the
// loops that call them (8/16 lanes with AVX2/AVX-512): softmax rows, the losses, GELU, SiLU.
// kexpf: Cephes' expf (range reduction by ln 2 split in two, degree-6 polynomial, 2^n built in
// the exponent bits); relative error below 2e-7 on [-87.3, 88.37]; below that 0, above it
// exp(88.37) = 2.4e38 (softmax arguments are <= 0; tanh and sigmoid saturate), nan stays nan.
// ktanhf = 1 - 2 / (exp(2x) + 1): absolute error below 2e-7, +-1 at +-inf.
static inline float kexpf(float x) {
    float xc = x < -87.33654f ? -87.33654f : x; // 2^-126 .. 2^127: normal scales only
    xc = xc > 88.37626f ? 88.37626f : xc;
    // n = round(x / ln 2) by the 1.5 * 2^23 trick (no float -> int conversion, nan-safe)
    float t = xc * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f; // x - n ln 2, ln 2 = 0.693359375 - 2.12194440e-4
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f; // exp(r), |r| <= ln 2 / 2
    uint32_t tb;
    memcpy(&tb, &t, 4);
    uint32_t sb = (tb - 0x4B400000u + 127u) << 23; // the bits of 2^n (t's mantissa holds n)
    sb &= x < -87.33654f ? 0u : 0xffffffffu;       // below the range: 0 (a mask, not a branch)
    float scale;
    memcpy(&scale, &sb, 4);
    return p * scale;
}
static inline float ktanhf(float x) { return 1.0f - 2.0f / (kexpf(2.0f * x) + 1.0f); }
// max of x (n) (-inf for n = 0), in 16 explicit lanes: clang does not vectorise a float max
// reduction (`omp simd reduction(max)` included) without -ffast-math
static inline float kmax_row(const float *x, int n) {
    float m[16];
    for (int j = 0; j < 16; j++) m[j] = -INFINITY;
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    float mx = m[0];
    for (int j = 1; j < 16; j++) mx = m[j] > mx ? m[j] : mx;
    return mx;
}

// ---- matmul (BLAS) -------------------------------------------------------------------------
// out (N, OC) = inp (N, IC) @ w^T + bias;  w (OC, IC) row-major (PyTorch nn.Linear layout);
// bias (OC) may be NULL.
void matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                    int N, int IC, int OC);
// dinp (N, IC) += dout @ w;  dw (OC, IC) += dout^T @ inp;  dbias (OC) += column sums of dout
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int N, int IC, int OC);
// Few rows (kernels_matmul_small.c): no packing, every weight row read once and used for all N
// input rows; deterministic for any thread count (and a row's result does not depend on N).
// matmul_forward uses it for 2 <= N <= MATMUL_SMALL_FWD_MAX_N (N = 1: sgemv), matmul_backward's
// dinp for N <= MATMUL_SMALL_BWD_MAX_N: there sgemm was 1.4-4x slower at the GPT-2-small shapes
// (`test_kernels_small --bench`; docs/performance.md), at N = 32 up to 1.2x faster.
#ifndef MATMUL_SMALL_FWD_MAX_N
#define MATMUL_SMALL_FWD_MAX_N 24
#endif
#ifndef MATMUL_SMALL_BWD_MAX_N
#define MATMUL_SMALL_BWD_MAX_N 24
#endif
// out (N, OC) = inp (N, IC) @ w^T + bias;  w (OC, IC); bias (OC) may be NULL
void matmul_forward_small(float *out, const float *inp, const float *w, const float *bias,
                          int N, int IC, int OC);
// dinp (N, IC) += dout (N, OC) @ w;  w (OC, IC); dinp NULL: nothing
void matmul_backward_small(float *dinp, const float *dout, const float *w, int N, int IC, int OC);
// the same two contracts as plain loops (no BLAS): the algorithmic reference the tests compare
// matmul_forward/_backward against
void matmul_forward_naive(float *out, const float *inp, const float *w, const float *bias,
                          int N, int IC, int OC);
void matmul_backward_naive(float *dinp, float *dw, float *dbias, const float *dout,
                           const float *inp, const float *w, int N, int IC, int OC);

// Half-precision weights: the same two contracts with w (OC, IC) held as f16 (bf16 = 0) or bf16
// (bf16 = 1) 16-bit values, widened to f32 inside: for N <= 64 rows (decoding, short prompts)
// chunk by chunk of each weight row into a stack buffer (a fused dot product, weights read once
// as 16-bit), otherwise matmul_w16_rows(IC, OC) rows at a time into `scratch` (from the caller:
// matmul_w16_scratch(IC, OC) floats, at most 8 MiB unless one row is larger) and through sgemm.
// Compute is f32.
#ifndef MATMUL_W16_SCRATCH
#define MATMUL_W16_SCRATCH ((size_t)1 << 21) // floats of widened weights per block
#endif
static inline int matmul_w16_rows(int IC, int OC) {
    size_t r = IC > 0 ? MATMUL_W16_SCRATCH / (size_t)IC : (size_t)OC;
    if (r < 1) r = 1;
    return r < (size_t)OC ? (int)r : OC;
}
static inline size_t matmul_w16_scratch(int IC, int OC) {
    return (size_t)matmul_w16_rows(IC, OC) * (size_t)(IC > 0 ? IC : 0);
}
void matmul_forward_w16(float *out, const float *inp, const uint16_t *w, int bf16,
                        const float *bias, int N, int IC, int OC, float *scratch);
// dw, dbias as matmul_backward (they do not read w); dinp += dout @ widen(w)
void matmul_backward_w16(float *dinp, float *dw, float *dbias, const float *dout,
                         const float *inp, const uint16_t *w, int bf16, int N, int IC, int OC,
                         float *scratch);

// ---- normalisation ---------------------------------------------------------------------------
// RMSNorm: out = x / sqrt(mean(x^2) + eps) * w.   rstd (N) is saved for backward.
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                     float eps);
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int N, int C);
// LayerNorm: out = (x - mean) * rstd * w + b.  mean, rstd (N) saved for backward; b may be NULL.
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C, float eps);
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C);

// ---- rotary position embedding ------------------------------------------------------------------
typedef enum {
    ROPE_NEOX = 0, // "rotate half": pairs (i, i + rot/2)   (HF LLaMA, GPT-NeoX, Qwen2, Mistral)
    ROPE_GPTJ = 1, // interleaved: pairs (2i, 2i + 1)        (GPT-J, llama2.c checkpoints)
} rope_pairing;
// x (N, H, D) rotated in place: the first `rot` dims of each head (rot even, <= D) by angle
// pos[n] * inv_freq[i], inv_freq (rot/2) given by the caller (theta and any scaling live there).
// Dims rot..D-1 pass through. backward: rotate by -angle (the map is orthogonal), in place on dx.
void rope_forward(float *x, const int *pos, const float *inv_freq, int N, int H, int D, int rot,
                  rope_pairing pairing);
void rope_backward(float *dx, const int *pos, const float *inv_freq, int N, int H, int D, int rot,
                   rope_pairing pairing);

// ---- causal self-attention with grouped-query heads ----------------------------------------------
// For each batch row b, query t (absolute position q_pos0 + t) attends to key s when
//   s <= q_pos0 + t,  s < key_len[b],  and (window == 0 || q_pos0 + t - s < window).
// q (B, T, H, D); k, v (B, S, KV, D) with H % KV == 0 (query head h uses kv head h / (H/KV));
// out (B, T, H, D); att (B, H, T, S) holds the softmax probabilities, kept for backward.
// key_len[b] (clamped to S; key_len NULL means S for every row) is the length of row b: query
// rows at positions q_pos0 + t >= key_len[b] are right padding and get out = 0 and an all-zero
// att row (so backward gives them no gradient); in decode key_len[b] counts the query itself
// (>= q_pos0 + 1). Scale 1/sqrt(D).
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const int *key_len, int B, int T, int S, int H, int KV, int D, int q_pos0,
                       int window);
// dq (B,T,H,D), dk, dv (B,S,KV,D) += ...; any may be NULL. The mask is read from att (its zeros:
// padding rows, masked keys), so backward needs no key_len, q_pos0 or window, and never reads
// k, v rows that no query attended to.
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int T, int S, int H,
                        int KV, int D);

// ---- activations --------------------------------------------------------------------------------
// GELU, tanh approximation (GPT-2 "gelu_new"): out (n) = gelu(inp); backward dinp += gelu'(inp)*dout
void gelu_forward(float *out, const float *inp, size_t n);
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
// GELU, exact (NeoX/Pythia "gelu"): out = 0.5 x (1 + erf(x / sqrt 2)); backward as above
void gelu_erf_forward(float *out, const float *inp, size_t n);
void gelu_erf_backward(float *dinp, const float *dout, const float *inp, size_t n);
// gated SiLU (LLaMA MLP): out (n) = silu(gate) * up;   dgate, dup (n) += ...
void swiglu_forward(float *out, const float *gate, const float *up, size_t n);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, size_t n);

// ---- losses -------------------------------------------------------------------------------------
// Masked cross-entropy. logits (N, V); target (N) with target[n] < 0 meaning "not scored".
// Returns the mean over scored rows of -log softmax(logits[n])[target[n]] (0 if none scored).
// If dlogits (N, V) is not NULL it is SET (not accumulated) to d(mean loss)/d(logits) * scale;
// it may be logits itself. Numerically stable (max-subtracted, float exps, double sums).
float crossentropy_forward_backward(float *dlogits, const float *logits, const int *target,
                                    int N, int V, float scale);
// KL(p || q) summed over V for each of N rows, averaged over rows, where p = softmax(logits_p)
// is fixed (no gradient) and q = softmax(logits_q). dlogits_q (N, V) SET to d/dlogits_q * scale
// (= (q - p) * scale / N) when not NULL; it may be logits_q itself.
float kl_forward_backward(float *dlogits_q, const float *logits_p, const float *logits_q, int N,
                          int V, float scale);
// log-softmax of one row: out (V) = logits - logsumexp(logits)
void log_softmax_row(float *out, const float *logits, int V);

#endif
