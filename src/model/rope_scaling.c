// rope_scaling.c: the rotary inverse frequencies of a config, computed once at load, with the
// config's rope scaling applied (Hugging Face modeling_rope_utils.py):
//   default  inv_freq[i] = 1 / theta^(2i / rot)                  (_compute_default_rope_parameters)
//   llama3   per wavelength w = 2 pi / inv_freq[i], with L = original_max_position_embeddings:
//            w < L / high_freq_factor: unchanged;  w > L / low_freq_factor: / factor;  between:
//            (1 - s) inv / factor + s inv,  s = (L / w - low_freq_factor) /
//            (high_freq_factor - low_freq_factor)                  (_compute_llama3_parameters)
// Computed in double, stored as float. llama3 does not change the attention scale (HF's
// attention_factor is 1 for it).
#include <math.h>

#include "model/model.h"

void rope_inv_freq(const ked_config *c, float *inv_freq) {
    int half = c->rot_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow((double)c->rope_theta, (double)(2 * i) / c->rot_dim);
        if (c->rope_scaling == KED_ROPE_SCALING_LLAMA3) {
            double L = c->rope_orig_max_pos, lo = c->rope_low_freq_factor;
            double hi = c->rope_high_freq_factor, factor = c->rope_factor;
            double wavelen = 2.0 * M_PI / f;
            if (wavelen < L / hi) {
                // high frequency: unchanged
            } else if (wavelen > L / lo) {
                f /= factor;
            } else {
                double s = (L / wavelen - lo) / (hi - lo);
                f = (1.0 - s) * f / factor + s * f;
            }
        }
        inv_freq[i] = (float)f;
    }
}
