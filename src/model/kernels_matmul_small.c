// kernels_matmul_small.c: the linear layer for a few input rows (decoding at batch 2-24, short
// prompts, one logit row), where sgemm is bound by reading the weights and OpenBLAS still packs
// each whole weight before using it (for M = 9 rows that doubles the traffic and costs 30% of an
// FT-M step). These kernels read every weight row once, straight from memory, and use it for all
// N input rows while it is in the cache:
//     forward   out (N, OC) = inp (N, IC) @ w^T + bias   threads over output columns (rows of w)
//     backward  dinp (N, IC) += dout (N, OC) @ w          threads over column blocks of w and dinp
// Register tiles: forward 4 weight rows x 4 input rows (16 vector accumulators over IC; the rows
// of a tile are walked in chunks, each chunk used by every group of 4 input rows while in L1, the
// next chunk prefetched), backward 4 input rows x 4 vectors of dinp columns, summed over a block
// of 64 weight rows (the next block prefetched). AVX-512 or AVX2+FMA intrinsics when built for
// them (-march=native), a plain-C fallback otherwise; the IC tail through masked loads.
// Measured against sgemm with `build/tests/test_kernels_small --bench` (docs/performance.md).
//
// Determinism: every output is one thread's sum in a fixed order that depends on neither the
// thread count, nor N, nor the tiling: forward out[n][o] = bias[o] + hsum(VL lane sums over i in
// steps of VL); backward dinp[n][i] is a chain of fused multiply-adds over o = 0..OC-1 starting
// from its old value. So a row's result is the same alone and among N rows (for these kernels;
// matmul_forward sends N = 1 to sgemv), and for any thread count.
//
// Rules (kernels.h): outputs first, then const inputs, then sizes; never allocate, never fail;
// the backward ACCUMULATES (+=). N rows, IC in features, OC out features; w (OC, IC) row-major.
#include <omp.h>
#include <stddef.h>

#include "model/kernels.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#define INLINE static inline __attribute__((always_inline))

// ---- vectors of VL floats: load (full / first k lanes, the rest 0), store, fma, sum -------------
#if defined(__AVX512F__)
#define VL 16
typedef __m512 vf;
INLINE vf v_zero(void) { return _mm512_setzero_ps(); }
INLINE vf v_load(const float *p) { return _mm512_loadu_ps(p); }
INLINE vf v_loadk(const float *p, int k) {
    return _mm512_maskz_loadu_ps((__mmask16)((1u << k) - 1u), p);
}
INLINE void v_store(float *p, vf x) { _mm512_storeu_ps(p, x); }
INLINE void v_storek(float *p, vf x, int k) {
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << k) - 1u), x);
}
INLINE vf v_set1(float x) { return _mm512_set1_ps(x); }
INLINE vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
INLINE float v_sum(vf x) { // a fixed tree: 16 -> 8 -> 4 -> 2 -> 1
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}
#elif defined(__AVX2__) && defined(__FMA__)
#define VL 8
typedef __m256 vf;
INLINE __m256i v_mask(int k) { // lanes < k set
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
INLINE vf v_zero(void) { return _mm256_setzero_ps(); }
INLINE vf v_load(const float *p) { return _mm256_loadu_ps(p); }
INLINE vf v_loadk(const float *p, int k) { return _mm256_maskload_ps(p, v_mask(k)); }
INLINE void v_store(float *p, vf x) { _mm256_storeu_ps(p, x); }
INLINE void v_storek(float *p, vf x, int k) { _mm256_maskstore_ps(p, v_mask(k), x); }
INLINE vf v_set1(float x) { return _mm256_set1_ps(x); }
INLINE vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
INLINE float v_sum(vf x) { // 8 -> 4 -> 2 -> 1
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}
#else // plain C: 8 lanes in a struct, the same order of operations
#define VL 8
typedef struct { float x[VL]; } vf;
INLINE vf v_zero(void) { vf r = {{0}}; return r; }
INLINE vf v_loadk(const float *p, int k) {
    vf r = {{0}};
    for (int j = 0; j < k; j++) r.x[j] = p[j];
    return r;
}
INLINE vf v_load(const float *p) { return v_loadk(p, VL); }
INLINE void v_storek(float *p, vf a, int k) { for (int j = 0; j < k; j++) p[j] = a.x[j]; }
INLINE void v_store(float *p, vf a) { v_storek(p, a, VL); }
INLINE vf v_set1(float s) {
    vf r;
    for (int j = 0; j < VL; j++) r.x[j] = s;
    return r;
}
INLINE vf v_fma(vf a, vf b, vf c) {
    for (int j = 0; j < VL; j++) c.x[j] += a.x[j] * b.x[j];
    return c;
}
INLINE float v_sum(vf a) {
    float s[4];
    for (int j = 0; j < 4; j++) s[j] = a.x[j] + a.x[j + 4];
    return (s[0] + s[2]) + (s[1] + s[3]);
}
#endif

// below this many multiply-adds a call runs on the calling thread (a parallel region costs more)
#define SMALL_PAR_MIN ((size_t)1 << 16)

// ---- forward ----------------------------------------------------------------------------------

#define FWD_ROWS 32   // input rows per pass over w: their accumulators live on the stack
#ifndef FWD_CHUNK
#define FWD_CHUNK 1024 // columns of a tile's weight rows per step through the row groups
#endif

// acc[k][r] += lanes of inp[n0 + k][i] * w[o0 + r][i] over i in [i0, i1) for the RN input rows
// and RO weight rows of one tile; each weight vector is loaded once for the RN rows. pf (RO rows,
// or NULL): the lines to prefetch while streaming (the tile's next chunk, or the next tile's).
INLINE void fwd_chunk(vf acc[4][4], const float *inp, const float *w, const float *const *pf,
                      int IC, int n0, int o0, int i0, int i1, const int RN, const int RO) {
    // inp (N, IC), w (OC, IC)
    vf a[4][4];
    const float *x[4], *wr[4];
    for (int k = 0; k < RN; k++) x[k] = inp + (size_t)(n0 + k) * IC;
    for (int r = 0; r < RO; r++) wr[r] = w + (size_t)(o0 + r) * IC;
    for (int k = 0; k < RN; k++)
        for (int r = 0; r < RO; r++) a[k][r] = acc[k][r];
    int i = i0;
    for (; i + VL <= i1; i += VL) {
        vf wv[4];
        if (pf)
            for (int r = 0; r < RO; r++) __builtin_prefetch(pf[r] + (i - i0), 0, 3);
        for (int r = 0; r < RO; r++) wv[r] = v_load(wr[r] + i);
        for (int k = 0; k < RN; k++) {
            vf xv = v_load(x[k] + i);
            for (int r = 0; r < RO; r++) a[k][r] = v_fma(xv, wv[r], a[k][r]);
        }
    }
    if (i < i1) { // the tail of a row: lanes past IC load as 0
        int t = i1 - i;
        vf wv[4];
        for (int r = 0; r < RO; r++) wv[r] = v_loadk(wr[r] + i, t);
        for (int k = 0; k < RN; k++) {
            vf xv = v_loadk(x[k] + i, t);
            for (int r = 0; r < RO; r++) a[k][r] = v_fma(xv, wv[r], a[k][r]);
        }
    }
    for (int k = 0; k < RN; k++)
        for (int r = 0; r < RO; r++) acc[k][r] = a[k][r];
}

// one chunk of rn <= 4 input rows and ro <= 4 weight rows, with constant sizes for the compiler
static void fwd_chunk_any(vf acc[4][4], const float *inp, const float *w,
                          const float *const *pf, int IC, int n0, int o0, int i0, int i1, int rn,
                          int ro) {
#define FC(a, b) fwd_chunk(acc, inp, w, pf, IC, n0, o0, i0, i1, a, b)
    switch (rn * 4 + ro - 5) {
    case 0: FC(1, 1); break;  case 1: FC(1, 2); break;  case 2: FC(1, 3); break;
    case 3: FC(1, 4); break;  case 4: FC(2, 1); break;  case 5: FC(2, 2); break;
    case 6: FC(2, 3); break;  case 7: FC(2, 4); break;  case 8: FC(3, 1); break;
    case 9: FC(3, 2); break;  case 10: FC(3, 3); break; case 11: FC(3, 4); break;
    case 12: FC(4, 1); break; case 13: FC(4, 2); break; case 14: FC(4, 3); break;
    default: FC(4, 4); break;
    }
#undef FC
}

void matmul_forward_small(float *out, const float *inp, const float *w, const float *bias,
                          int N, int IC, int OC) {
    // out (N, OC), inp (N, IC), w (OC, IC), bias (OC) or NULL
    if (N <= 0 || OC <= 0) return;
    if (IC < 0) IC = 0;
    // tasks of 4 weight rows, each read from memory once per FWD_ROWS input rows: chunk by chunk,
    // the first row group streams it (prefetching the next chunk), the others find it in L1
    const int ntile = (OC + 3) / 4;
#pragma omp parallel for schedule(static) if ((size_t)N * OC * IC >= SMALL_PAR_MIN)
    for (int t = 0; t < ntile; t++) {
        int o0 = 4 * t, ro = OC - o0 < 4 ? OC - o0 : 4;
        for (int nb = 0; nb < N; nb += FWD_ROWS) {
            int nn = N - nb < FWD_ROWS ? N - nb : FWD_ROWS, ng = (nn + 3) / 4;
            vf acc[FWD_ROWS / 4][4][4]; // [row group][row][weight row]
            for (int g = 0; g < ng; g++)
                for (int k = 0; k < 4; k++)
                    for (int r = 0; r < 4; r++) acc[g][k][r] = v_zero();
            for (int i0 = 0; i0 < IC; i0 += FWD_CHUNK) {
                int i1 = IC - i0 < FWD_CHUNK ? IC : i0 + FWD_CHUNK;
                const float *pf[4] = {NULL, NULL, NULL, NULL};
                int pr = 0; // prefetch: the next chunk of these rows, else the next tile's first
                if (i1 < IC) {
                    pr = ro;
                    for (int r = 0; r < ro; r++) pf[r] = w + (size_t)(o0 + r) * IC + i1;
                } else if (o0 + 4 < OC) { // (the first i1 - i0 <= IC columns)
                    pr = OC - o0 - 4 < ro ? OC - o0 - 4 : ro;
                    for (int r = 0; r < pr; r++) pf[r] = w + (size_t)(o0 + 4 + r) * IC;
                }
                for (int g = 0; g < ng; g++) {
                    int n0 = nb + 4 * g, rn = nn - 4 * g < 4 ? nn - 4 * g : 4;
                    fwd_chunk_any(acc[g], inp, w, g == 0 && pr == ro ? pf : NULL, IC, n0, o0,
                                  i0, i1, rn, ro);
                }
            }
            for (int g = 0; g < ng; g++) {
                int n0 = nb + 4 * g, rn = nn - 4 * g < 4 ? nn - 4 * g : 4;
                for (int k = 0; k < rn; k++)
                    for (int r = 0; r < ro; r++)
                        out[(size_t)(n0 + k) * OC + o0 + r] =
                            (bias ? bias[o0 + r] : 0.0f) + v_sum(acc[g][k][r]);
            }
        }
    }
}

// ---- backward: dinp += dout @ w ---------------------------------------------------------------

// dinp[n][i0 + j] += sum_{o in [o0, o1)} dout[n][o] * w[o][i0 + j] for the RN rows n0.. and the
// NV vectors of columns from i0 (the last one `last` lanes wide), o in increasing order.
// pf > 0: prefetch the same columns pf rows further down (the next block of rows) meanwhile.
INLINE void bwd_strip(float *dinp, const float *dout, const float *w, int IC, int OC, int n0,
                      int i0, int o0, int o1, const int RN, const int NV, int last, int pf) {
    // dinp (N, IC), dout (N, OC), w (OC, IC)
    vf acc[4][4];
    for (int k = 0; k < RN; k++)
        for (int v = 0; v < NV; v++) {
            const float *p = dinp + (size_t)(n0 + k) * IC + i0 + v * VL;
            acc[k][v] = v == NV - 1 && last < VL ? v_loadk(p, last) : v_load(p);
        }
    const float *d[4];
    for (int k = 0; k < RN; k++) d[k] = dout + (size_t)(n0 + k) * OC;
    int op = pf > 0 && o1 + pf <= OC ? o1 : o0; // rows [o0, op) prefetch row o + pf
    for (int o = o0; o < o1; o++) {
        const float *wo = w + (size_t)o * IC + i0;
        if (o < op)
            for (int v = 0; v < NV; v++) __builtin_prefetch(wo + (size_t)pf * IC + v * VL, 0, 2);
        vf wv[4];
        for (int v = 0; v < NV; v++)
            wv[v] = v == NV - 1 && last < VL ? v_loadk(wo + v * VL, last) : v_load(wo + v * VL);
        for (int k = 0; k < RN; k++) {
            vf dk = v_set1(d[k][o]);
            for (int v = 0; v < NV; v++) acc[k][v] = v_fma(dk, wv[v], acc[k][v]);
        }
    }
    for (int k = 0; k < RN; k++)
        for (int v = 0; v < NV; v++) {
            float *p = dinp + (size_t)(n0 + k) * IC + i0 + v * VL;
            if (v == NV - 1 && last < VL) v_storek(p, acc[k][v], last);
            else v_store(p, acc[k][v]);
        }
}

static void bwd_strip_any(float *dinp, const float *dout, const float *w, int IC, int OC, int n0,
                          int i0, int o0, int o1, int rn, int nv, int last, int pf) {
#define BS(a, b) bwd_strip(dinp, dout, w, IC, OC, n0, i0, o0, o1, a, b, last, pf)
    if (nv == 4 && last == VL) { // full strips: the common case
        switch (rn) {
        case 1: BS(1, 4); break; case 2: BS(2, 4); break;
        case 3: BS(3, 4); break; default: BS(4, 4); break;
        }
    } else { // the last columns: one vector (possibly partial)
        switch (rn) {
        case 1: BS(1, 1); break; case 2: BS(2, 1); break;
        case 3: BS(3, 1); break; default: BS(4, 1); break;
        }
    }
#undef BS
}

#define BWD_STRIP (4 * VL) // columns per register strip
#ifndef BWD_OBLOCK
#define BWD_OBLOCK 64 // weight rows per pass over a column block: in L2 for the row groups
#endif

void matmul_backward_small(float *dinp, const float *dout, const float *w, int N, int IC, int OC) {
    // dinp (N, IC), dout (N, OC), w (OC, IC)
    if (!dinp || N <= 0 || OC <= 0 || IC <= 0) return;
    // one column block per thread (whole strips): long contiguous pieces of each weight row. The
    // result does not depend on the blocks (each dinp element is its own chain over o).
    int nth = (size_t)N * OC * IC >= SMALL_PAR_MIN ? omp_get_max_threads() : 1;
    int nstrip = (IC + BWD_STRIP - 1) / BWD_STRIP;
    int cb = (nstrip + nth - 1) / nth * BWD_STRIP;
    const int nblk = (IC + cb - 1) / cb;
#pragma omp parallel for schedule(static) if (nblk > 1)
    for (int b = 0; b < nblk; b++) {
        int c0 = b * cb, c1 = IC - c0 < cb ? IC : c0 + cb;
        for (int o0 = 0; o0 < OC; o0 += BWD_OBLOCK) {
            int o1 = OC - o0 < BWD_OBLOCK ? OC : o0 + BWD_OBLOCK;
            for (int n0 = 0; n0 < N; n0 += 4) { // the first row group prefetches the next block
                int rn = N - n0 < 4 ? N - n0 : 4, pf = n0 == 0 ? BWD_OBLOCK : 0;
                int i0 = c0;
                for (; i0 + BWD_STRIP <= c1; i0 += BWD_STRIP)
                    bwd_strip_any(dinp, dout, w, IC, OC, n0, i0, o0, o1, rn, 4, VL, pf);
                for (; i0 < c1; i0 += VL)
                    bwd_strip_any(dinp, dout, w, IC, OC, n0, i0, o0, o1, rn, 1,
                                  c1 - i0 < VL ? c1 - i0 : VL, pf);
            }
        }
    }
}
