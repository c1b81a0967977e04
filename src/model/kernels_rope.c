// kernels_rope.c: rotary position embedding, in place, forward next to backward.
// x (N, H, D): the first `rot` dims of each head are rotated pairwise by angle pos[n] * inv_freq[i]
// (i < rot/2), computed in fp32 as HF does; dims rot..D-1 pass through.
//   NEOX pairs (i, i + rot/2)  ("rotate half": HF LLaMA, GPT-NeoX, Qwen2, Mistral)
//   GPTJ pairs (2i, 2i + 1)    (interleaved: GPT-J, llama2.c)
// Each pair: x1' = x1 cos - x2 sin,  x2' = x2 cos + x1 sin.
// The map is a rotation, so backward applies its transpose (angle -> -angle) to dx in place; it
// TRANSFORMS dx (dx_in = R^T dx_out) rather than accumulating, which is why it has no += rule.
// Rules (kernels.h): never allocate, never fail.
#include <math.h>

#include "model/kernels.h"

// rotate every head of every row by sign * angle; sign = +1 forward, -1 backward
static void rope_apply_(float *x, const int *pos, const float *inv_freq, int N, int H, int D,
                        int rot, rope_pairing pairing, float sign) {
    // x (N, H, D), pos (N), inv_freq (rot/2)
    if (!x) return; // rope_backward(NULL, ...): no gradient asked for
    int half = rot / 2;
    // the second element of pair i sits at i + half (NEOX) or 2i + 1 (GPTJ)
    int stride1 = pairing == ROPE_GPTJ ? 2 : 1, off2 = pairing == ROPE_GPTJ ? 1 : half;
#pragma omp parallel for if ((size_t)N * H * rot >= ((size_t)1 << 16))
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            float angle = (float)pos[n] * inv_freq[i]; // fp32, as HF's inv_freq @ position_ids
            float c = cosf(angle), s = sign * sinf(angle);
            for (int h = 0; h < H; h++) {
                float *xh = x + ((size_t)n * H + h) * D;
                int i1 = i * stride1, i2 = i * stride1 + off2;
                float x1 = xh[i1], x2 = xh[i2];
                xh[i1] = x1 * c - x2 * s;
                xh[i2] = x2 * c + x1 * s;
            }
        }
    }
}

void rope_forward(float *x, const int *pos, const float *inv_freq, int N, int H, int D, int rot,
                  rope_pairing pairing) {
    rope_apply_(x, pos, inv_freq, N, H, D, rot, pairing, 1.0f);
}

void rope_backward(float *dx, const int *pos, const float *inv_freq, int N, int H, int D, int rot,
                   rope_pairing pairing) {
    // forward: x1' = x1 c - x2 s;  x2' = x2 c + x1 s
    // => dx1 = dx1' c + dx2' s;  dx2 = dx2' c - dx1' s   (the same rotation with s -> -s)
    rope_apply_(dx, pos, inv_freq, N, H, D, rot, pairing, -1.0f);
}
