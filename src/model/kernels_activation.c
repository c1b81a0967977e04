// kernels_activation.c: elementwise MLP activations, forward next to backward.
//   GELU, tanh approximation (GPT-2 "gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//   GELU, exact (NeoX "gelu"): 0.5 x (1 + erf(x / sqrt 2))
//   SwiGLU (LLaMA MLP): silu(gate) * up, silu(g) = g * sigmoid(g)
// Elementwise, so threads over large n give bit-identical results for any thread count; GELU's
// chunks are handed out dynamically (a thread on a shared core does fewer of them).
// Rules (kernels.h): never allocate, never fail; backward ACCUMULATES (+=), NULL grads skipped.
// Built with -O3, not -ffast-math (llm.c's GELU broke under -Ofast: tanhf needs inf/nan intact).
#include <math.h>

#include "model/kernels.h"

#define ACT_PAR_MIN ((size_t)1 << 16)

// GELU's tanh and SiLU's exp are kernels.h's ktanhf/kexpf (plain C, no libm call), so the loops
// vectorise with gcc and clang alike: libm's scalar tanhf was 19% of a ROME edit's CPU time on a
// GPT-2-small-shaped model, and glibc's vectorised one (libmvec) is reachable from gcc only.
#define GELU_SCALE 0.7978845608028654f // sqrt(2 / pi)

// ---- GELU ------------------------------------------------------------------------------------

void gelu_forward(float *out, const float *inp, size_t n) {
    // out (n), inp (n)
#pragma omp parallel for schedule(dynamic, 8) if (n >= ACT_PAR_MIN)
    for (size_t c = 0; c < n; c += 4096) {
        size_t end = c + 4096 < n ? c + 4096 : n;
#pragma omp simd
        for (size_t i = c; i < end; i++) {
            float x = inp[i];
            float u = GELU_SCALE * (x + 0.044715f * x * x * x);
            out[i] = 0.5f * x * (1.0f + ktanhf(u));
        }
    }
}

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    // dinp (n), dout (n), inp (n)
    if (!dinp) return;
#pragma omp parallel for schedule(dynamic, 8) if (n >= ACT_PAR_MIN)
    for (size_t c = 0; c < n; c += 4096) {
        size_t end = c + 4096 < n ? c + 4096 : n;
#pragma omp simd
        for (size_t i = c; i < end; i++) {
            float x = inp[i];
            // forward: out = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
            // => dout/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
            float u = GELU_SCALE * (x + 0.044715f * x * x * x);
            float t = ktanhf(u);
            float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
            float grad = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
            dinp[i] += grad * dout[i];
        }
    }
}

// ---- GELU, exact (erf) -------------------------------------------------------------------------

#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f // 1 / sqrt(2 pi)

void gelu_erf_forward(float *out, const float *inp, size_t n) {
    // out (n), inp (n)
#pragma omp parallel for if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erff(x * INV_SQRT2));
    }
}

void gelu_erf_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    // dinp (n), dout (n), inp (n)
    if (!dinp) return;
#pragma omp parallel for if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        // forward: out = x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2))
        // => dout/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
        float grad = 0.5f * (1.0f + erff(x * INV_SQRT2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
        dinp[i] += grad * dout[i];
    }
}

// ---- SwiGLU ----------------------------------------------------------------------------------

void swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    // out (n), gate (n), up (n)
#pragma omp parallel for if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float sig = 1.0f / (1.0f + kexpf(-g)); // kexpf(-g) -> inf gives sig = 0, no nan
        out[i] = g * sig * up[i];             // silu(gate) * up
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, size_t n) {
    // dgate (n), dup (n), dout (n), gate (n), up (n)
    if (!dgate && !dup) return;
#pragma omp parallel for if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float sig = 1.0f / (1.0f + kexpf(-g));
        // forward: out = g * sig(g) * up
        // => dup   += dout * g sig(g)
        // => dgate += dout * up * sig(g) (1 + g (1 - sig(g)))    (d silu/dg)
        if (dup) dup[i] += dout[i] * g * sig;
        if (dgate) dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    }
}
