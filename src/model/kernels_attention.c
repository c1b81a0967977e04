// kernels_attention.c: causal self-attention with grouped-query heads, forward next to backward.
//
// B batch rows, T query positions (absolute positions q_pos0 .. q_pos0+T-1), S key positions,
// H query heads, KV key/value heads (query head h reads kv head h / (H/KV)), D head size.
//   q (B, T, H, D)   k, v (B, S, KV, D)   out (B, T, H, D)   att (B, H, T, S)
// Query (b, t) at position p = q_pos0 + t attends to key s when
//   s <= p,  s < key_len[b],  and (window == 0 || p - s < window);
// rows with p >= key_len[b] are right padding: out = 0 and an all-zero att row.
//
// How: each (b, h) works on blocks of up to ATT_TB query rows. A block's allowed keys are one
// contiguous span [s0, s1) (the masks only move right as t grows), so the scores of the block are
// one small sgemm straight into att, the softmax runs in place, and out = att @ v is a second
// sgemm. Keys outside the span are never read, so an unwritten KV cache tail (or the padding of
// a batch row) is never touched. Backward has no att to write into, so the (rows x keys) tile of
// datt lives in a fixed stack buffer (ATT_TB x ATT_SC floats, 32 KiB), chunked over keys.
//
// Decoding (T == 1), the query heads of one kv group share their position, so they are the
// rows of one block: keys and values are read once per group, not once per head.
//
// Threads: forward over (b, h) pairs ((b, kv) pairs when T == 1); backward over (b, kv) pairs,
// each doing its H/KV query heads in order, since those heads all add into the same dk, dv.
// Every sgemm is then called inside a parallel region and runs single-threaded (OpenBLAS openmp
// build), so the result is deterministic for any thread count; the units are handed out
// dynamically (each writes only its own outputs), so a thread whose core is shared with another
// process does fewer of them instead of holding its partner at the barrier. Tiny work (decoding
// a tiny model) stays on one thread: a team start costs more than it saves there.
// Rules (kernels.h): never allocate, never fail; backward ACCUMULATES (+=), NULL grads skipped.
#include <cblas.h>
#include <math.h>

#include "model/kernels.h"

#define ATT_TB 32  // query rows per block
#define ATT_SC 256 // keys per datt chunk in backward (tile = ATT_TB * ATT_SC floats on the stack)

// number of valid (non-padding) query rows of batch row b: positions q_pos0 + t < key_len[b]
static int att_valid_rows_(const int *key_len, int b, int T, int S, int q_pos0) {
    int kl = key_len ? key_len[b] : S;
    if (kl > S) kl = S;
    int tv = kl - q_pos0;
    return tv < 0 ? 0 : tv > T ? T : tv;
}

// ---- forward ---------------------------------------------------------------------------------

// m query rows against one kv head: row i sits at position p0 + i * pstep (pstep 1: consecutive
// query positions of one head; pstep 0: the heads of one kv group at a single decode position).
// Rows are valid (position < key_len). The allowed keys of the rows form one span [s0, s1).
static void att_rows_forward_(float *out, int out_rs, float *att, const float *q, int q_rs,
                              const float *k, const float *v, int ks, int m, int p0, int pstep,
                              int S, int D, float scale, int window) {
    // out (m, D) row stride out_rs, att (m, S), q (m, D) row stride q_rs,
    // k, v (S, D) row stride ks
    int p1 = p0 + (m - 1) * pstep;
    int s0 = window > 0 && p0 - window + 1 > 0 ? p0 - window + 1 : 0, s1 = p1 + 1;
    int ns = s1 - s0;
    // preatt[i][s] = scale * q[i] . k[s]   for s in [s0, s1)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, ns, D, scale, q, q_rs,
                k + (size_t)s0 * ks, ks, 0.0f, att + s0, S);
    for (int i = 0; i < m; i++) {
        float *a = att + (size_t)i * S; // (S)
        int p = p0 + i * pstep;
        // keys of this row: [lo, hi), hi = p + 1 (p < key_len <= S on valid rows)
        int lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0, hi = p + 1;
        // att[i][s] = softmax over allowed s of preatt[i][s], 0 elsewhere
        // (kexpf and `omp simd` sums: vectorised, in a fixed order for a given build)
        float mx = kmax_row(a + lo, hi - lo);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int s = lo; s < hi; s++) {
            float e = kexpf(a[s] - mx);
            a[s] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int s = 0; s < lo; s++) a[s] = 0.0f;
#pragma omp simd
        for (int s = lo; s < hi; s++) a[s] *= inv;
        for (int s = hi; s < S; s++) a[s] = 0.0f;
    }
    // out[i] = sum_s att[i][s] v[s]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, ns, 1.0f, att + s0, S,
                v + (size_t)s0 * ks, ks, 0.0f, out, out_rs);
}

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       const int *key_len, int B, int T, int S, int H, int KV, int D, int q_pos0,
                       int window) {
    // out (B, T, H, D), att (B, H, T, S), q (B, T, H, D), k, v (B, S, KV, D), key_len (B)
    if (B <= 0 || T <= 0 || H <= 0 || D <= 0) return;
    const int group = H / KV; // query heads per kv head
    const float scale = 1.0f / sqrtf((float)D);
    const int qs = H * D, ks = KV * D; // row strides of q/out and of k/v
    // one unit of work: a (b, h) pair, in blocks of ATT_TB query rows; when decoding (T == 1) a
    // (b, kv) pair instead, whose `group` query heads are one sgemm over the keys read once
    const int units = T == 1 ? KV : H;
#pragma omp parallel for schedule(dynamic) if ((size_t)B * H * T * S * D >= ((size_t)1 << 16))
    for (int bu = 0; bu < B * units; bu++) {
        int b = bu / units, u = bu % units;
        int g = T == 1 ? u : u / group, h0 = T == 1 ? u * group : u, nh = T == 1 ? group : 1;
        int tv = att_valid_rows_(key_len, b, T, S, q_pos0);
        float *att_bh = att + ((size_t)b * H + h0) * T * S; // (nh, T, S)
        const float *q_bh = q + (size_t)b * T * qs + h0 * D;  // (T, nh, D), row stride qs
        float *out_bh = out + (size_t)b * T * qs + h0 * D;    // (T, nh, D), row stride qs
        const float *k_bg = k + (size_t)b * S * ks + g * D;   // (S, D), row stride ks
        const float *v_bg = v + (size_t)b * S * ks + g * D;   // (S, D), row stride ks
        if (T == 1) {
            if (tv == 1) // the group's heads: rows D apart in q and out, S apart in att
                att_rows_forward_(out_bh, D, att_bh, q_bh, D, k_bg, v_bg, ks, group, q_pos0, 0,
                                  S, D, scale, window);
        } else {
            for (int t0 = 0; t0 < tv; t0 += ATT_TB) {
                int tb = tv - t0 < ATT_TB ? tv - t0 : ATT_TB;
                att_rows_forward_(out_bh + (size_t)t0 * qs, qs, att_bh + (size_t)t0 * S,
                                  q_bh + (size_t)t0 * qs, qs, k_bg, v_bg, ks, tb, q_pos0 + t0, 1,
                                  S, D, scale, window);
            }
        }
        // padding rows: out = 0, att = 0
        for (int hh = 0; hh < nh; hh++)
            for (int t = tv; t < T; t++) {
                float *a = att_bh + ((size_t)hh * T + t) * S, *o = out_bh + (size_t)t * qs + hh * D;
                for (int s = 0; s < S; s++) a[s] = 0.0f;
                for (int d = 0; d < D; d++) o[d] = 0.0f;
            }
    }
}

// ---- backward --------------------------------------------------------------------------------

// the nonzero span [*lo, *hi) of one att row; *lo == *hi when the row is all zero (padding).
// Entries of a softmax that underflowed to 0 carry no gradient, so trimming them is exact.
static void att_row_span_(const float *a, int S, int *lo, int *hi) {
    int l = 0, h = S;
    while (l < S && a[l] == 0.0f) l++;
    while (h > l && a[h - 1] == 0.0f) h--;
    *lo = l;
    *hi = h;
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int T, int S, int H,
                        int KV, int D) {
    // dq (B, T, H, D), dk, dv (B, S, KV, D), dout (B, T, H, D), att (B, H, T, S),
    // q (B, T, H, D), k, v (B, S, KV, D)
    if (B <= 0 || T <= 0 || H <= 0 || D <= 0 || (!dq && !dk && !dv)) return;
    const int group = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
    const int qs = H * D, ks = KV * D;
#pragma omp parallel for schedule(dynamic) if ((size_t)B * KV * T * S * D >= ((size_t)1 << 16))
    for (int bg = 0; bg < B * KV; bg++) {
        int b = bg / KV, g = bg % KV;
        float tile[ATT_TB * ATT_SC]; // datt / dpreatt of (rows of a block) x (a chunk of keys)
        float Drow[ATT_TB];          // sum_s att[t][s] datt[t][s] per row of the block
        const float *k_bg = k + (size_t)b * S * ks + g * D; // (S, D), row stride ks
        const float *v_bg = v + (size_t)b * S * ks + g * D;
        float *dk_bg = dk ? dk + (size_t)b * S * ks + g * D : NULL;
        float *dv_bg = dv ? dv + (size_t)b * S * ks + g * D : NULL;
        for (int h = g * group; h < (g + 1) * group; h++) {
            const float *att_bh = att + ((size_t)b * H + h) * T * S; // (T, S)
            const float *q_bh = q + (size_t)b * T * qs + h * D;      // (T, D), row stride qs
            const float *do_bh = dout + (size_t)b * T * qs + h * D;
            float *dq_bh = dq ? dq + (size_t)b * T * qs + h * D : NULL;
            int t = 0;
            while (t < T) {
                // a block: up to ATT_TB consecutive non-padding rows; keys = union of their spans
                int lo, hi;
                att_row_span_(att_bh + (size_t)t * S, S, &lo, &hi);
                if (lo == hi) { t++; continue; } // padding row: no gradient at all
                int t0 = t, s0 = lo, s1 = hi;
                for (t++; t < T && t - t0 < ATT_TB; t++) {
                    att_row_span_(att_bh + (size_t)t * S, S, &lo, &hi);
                    if (lo == hi) break;
                    s0 = lo < s0 ? lo : s0;
                    s1 = hi > s1 ? hi : s1;
                }
                int tb = t - t0;
                const float *a_blk = att_bh + (size_t)t0 * S; // (tb, S)
                const float *q_blk = q_bh + (size_t)t0 * qs;  // (tb, D)
                const float *do_blk = do_bh + (size_t)t0 * qs;
                // forward: out[t] = sum_s att[t][s] v[s]
                // => dv[s] += sum_t att[t][s] dout[t]                 (dv = att^T @ dout)
                if (dv_bg)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s1 - s0, D, tb, 1.0f,
                                a_blk + s0, S, do_blk, qs, 1.0f, dv_bg + (size_t)s0 * ks, ks);
                if (!dq_bh && !dk_bg) continue;
                // => datt[t][s] = dout[t] . v[s]
                // forward: att[t] = softmax(preatt[t])
                // => dpreatt[t][s] = att[t][s] (datt[t][s] - sum_r att[t][r] datt[t][r])
                int nchunk = (s1 - s0 + ATT_SC - 1) / ATT_SC;
                for (int i = 0; i < tb; i++) Drow[i] = 0.0f;
                for (int c0 = s0; c0 < s1; c0 += ATT_SC) {
                    int nc = s1 - c0 < ATT_SC ? s1 - c0 : ATT_SC;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, nc, D, 1.0f, do_blk,
                                qs, v_bg + (size_t)c0 * ks, ks, 0.0f, tile, nc);
                    for (int i = 0; i < tb; i++) {
                        const float *a = a_blk + (size_t)i * S + c0, *da = tile + (size_t)i * nc;
                        float s = 0.0f;
                        for (int j = 0; j < nc; j++) s += a[j] * da[j];
                        Drow[i] += s;
                    }
                }
                for (int c0 = s0; c0 < s1; c0 += ATT_SC) {
                    int nc = s1 - c0 < ATT_SC ? s1 - c0 : ATT_SC;
                    if (nchunk > 1) // the tile holds the last chunk only: recompute datt
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tb, nc, D, 1.0f,
                                    do_blk, qs, v_bg + (size_t)c0 * ks, ks, 0.0f, tile, nc);
                    for (int i = 0; i < tb; i++) {
                        const float *a = a_blk + (size_t)i * S + c0;
                        float *da = tile + (size_t)i * nc;
                        for (int j = 0; j < nc; j++) da[j] = a[j] * (da[j] - Drow[i]);
                    }
                    // forward: preatt[t][s] = scale * q[t] . k[s]
                    // => dq[t] += scale * sum_s dpreatt[t][s] k[s]      (dq = scale dpreatt @ k)
                    if (dq_bh)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tb, D, nc, scale,
                                    tile, nc, k_bg + (size_t)c0 * ks, ks, 1.0f,
                                    dq_bh + (size_t)t0 * qs, qs);
                    // => dk[s] += scale * sum_t dpreatt[t][s] q[t]      (dk = scale dpreatt^T @ q)
                    if (dk_bg)
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nc, D, tb, scale,
                                    tile, nc, q_blk, qs, 1.0f, dk_bg + (size_t)c0 * ks, ks);
                }
            }
        }
    }
}
