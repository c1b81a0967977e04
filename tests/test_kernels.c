// test_kernels.c: every kernel of src/model/kernels.h.
//
//  1. finite differences for EVERY backward (ggml test-backend-ops style, docs/style.md §6.11):
//     a random scalar L = sum(out * R) with random R, accumulated in double from the float
//     outputs; each input element moved by +-eps, numeric = (L+ - L-) / 2eps, compared with the
//     analytic gradient by err = max|analytic - numeric| / max(max|numeric|, 1e-3) (normalised
//     max error: stable where single elements are near zero) against an explicit tolerance;
//  2. the gradient contract: calling backward twice doubles every gradient (+=), and NULL
//     gradient pointers are accepted (the other gradients come out the same);
//  3. BLAS matmul against the plain-loop reference; attention forward and backward against a
//     naive per-element reference in double (blocks of rows and chunks of keys included); a right-
//     padded batch row against the same row computed alone; determinism across runs;
//  4. a timing line for attention at B*T = 8*128, H = 12, D = 64 (printed, not checked).
// Prints the largest differences; exits non-zero on any failure. Runs in about a second.
#include <omp.h>
#include <stdint.h>

#include "io/safetensors.h"
#include "model/kernels.h"
#include "test.h"

// ---- helpers ---------------------------------------------------------------------------------

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { // uniform in [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static float *rnd(size_t n, float scale) { // test code may allocate; kernels may not
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = frand() * scale;
    return x;
}
static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static float *copy(const float *x, size_t n) {
    float *y = malloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}
static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}
static double now_s(void) { return omp_get_wtime(); }

// normalised max error: max|a - b| / max(max|b|, floor)
static double rel_err(const float *a, const float *b, size_t n, double floor_) {
    double m = 0, s = floor_;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d != d) return INFINITY;
        if (d > m) m = d;
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    return m / s;
}
// like rel_err, for a double reference
static double rel_err_d(const float *a, const double *b, size_t n) {
    double m = 0, s = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d != d) return INFINITY;
        if (d > m) m = d;
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    return m / s;
}

static double worst_fd = 0; // over all FD checks, for the summary line

// the loss under test: recomputes the forward from the current inputs and returns L
typedef double (*loss_fn)(void *ctx);

// central differences of L over the n elements of x, compared with the analytic gradient
static void fd_check(const char *name, loss_fn L, void *ctx, float *x, const float *analytic,
                     size_t n, float eps, double tol) {
    float *num = calloc(n ? n : 1, sizeof *num);
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + eps;
        double lp = L(ctx);
        x[i] = x0 - eps;
        double lm = L(ctx);
        x[i] = x0;
        num[i] = (float)((lp - lm) / ((double)(x0 + eps) - (double)(x0 - eps))); // the real step
    }
    size_t where;
    float maxabs = test_maxdiff(analytic, num, n, &where);
    double err = rel_err(analytic, num, n, 1e-3);
    if (err > worst_fd) worst_fd = err;
    printf("  fd %-28s n=%-4zu max|a-n| %.2e  err %.2e  (tol %.0e)  [%zu: %+.5f vs %+.5f]\n", name,
           n, maxabs, err, tol, where, analytic[where], num[where]);
    CHECK(err <= tol, "%s: finite-difference error %.3e > %.0e", name, err, tol);
    free(num);
}

// the += rule: twice from zero is exactly (up to rounding) double once
static void check_doubles(const char *name, const float *once, const float *twice, size_t n) {
    double m = 0, s = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(2.0 * once[i] - twice[i]);
        m = d > m ? d : m;
        s = fabs(once[i]) > s ? fabs(once[i]) : s;
    }
    CHECK(m / s <= 1e-6, "%s: backward twice != 2 * once (rel %.3e)", name, m / s);
}
static void check_same(const char *name, const float *a, const float *b, size_t n, double tol) {
    double e = rel_err(a, b, n, 1e-6);
    CHECK(e <= tol, "%s: differs (rel %.3e > %.0e)", name, e, tol);
}

// ---- matmul ----------------------------------------------------------------------------------

typedef struct {
    float *out, *inp, *w, *bias, *R;
    int N, IC, OC;
} matmul_ctx;
static double matmul_loss(void *p) {
    matmul_ctx *c = p;
    matmul_forward(c->out, c->inp, c->w, c->bias, c->N, c->IC, c->OC);
    return dot_d(c->out, c->R, (size_t)c->N * c->OC);
}

static void test_matmul(void) {
    printf("matmul\n");
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
        int N = 3, IC = 5, OC = 4;
        matmul_ctx c = {zeros(N * OC), rnd(N * IC, 1), rnd(OC * IC, 1),
                        with_bias ? rnd(OC, 1) : NULL, rnd(N * OC, 1), N, IC, OC};
        float *dinp = zeros(N * IC), *dw = zeros(OC * IC), *db = zeros(OC);
        matmul_backward(dinp, dw, with_bias ? db : NULL, c.R, c.inp, c.w, N, IC, OC);
        fd_check(with_bias ? "matmul+bias dinp" : "matmul dinp", matmul_loss, &c, c.inp, dinp,
                 N * IC, 1e-2f, 1e-3);
        fd_check(with_bias ? "matmul+bias dw" : "matmul dw", matmul_loss, &c, c.w, dw, OC * IC,
                 1e-2f, 1e-3);
        if (with_bias) fd_check("matmul+bias dbias", matmul_loss, &c, c.bias, db, OC, 1e-2f, 1e-3);
        free(c.out); free(c.inp); free(c.w); free(c.bias); free(c.R);
        free(dinp); free(dw); free(db);
    }

    // BLAS against the plain loops, on odd shapes; the += rule; NULL gradients
    int N = 37, IC = 129, OC = 65;
    float *inp = rnd(N * IC, 1), *w = rnd(OC * IC, 1), *bias = rnd(OC, 1), *dout = rnd(N * OC, 1);
    float *o1 = zeros(N * OC), *o2 = zeros(N * OC);
    double e_fwd = 0, e_bwd = 0;
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
        const float *bb = with_bias ? bias : NULL;
        matmul_forward(o1, inp, w, bb, N, IC, OC);
        matmul_forward_naive(o2, inp, w, bb, N, IC, OC);
        double e = rel_err(o1, o2, N * OC, 1e-6);
        e_fwd = e > e_fwd ? e : e_fwd;
    }
    float *gi1 = zeros(N * IC), *gw1 = zeros(OC * IC), *gb1 = zeros(OC);
    float *gi2 = zeros(N * IC), *gw2 = zeros(OC * IC), *gb2 = zeros(OC);
    matmul_backward(gi1, gw1, gb1, dout, inp, w, N, IC, OC);
    matmul_backward_naive(gi2, gw2, gb2, dout, inp, w, N, IC, OC);
    double e;
    e = rel_err(gi1, gi2, N * IC, 1e-6); e_bwd = e > e_bwd ? e : e_bwd;
    e = rel_err(gw1, gw2, OC * IC, 1e-6); e_bwd = e > e_bwd ? e : e_bwd;
    e = rel_err(gb1, gb2, OC, 1e-6); e_bwd = e > e_bwd ? e : e_bwd;
    printf("  blas vs naive (%dx%dx%d): forward rel %.2e, backward rel %.2e\n", N, IC, OC, e_fwd,
           e_bwd);
    CHECK(e_fwd <= 1e-5, "matmul forward BLAS vs naive rel %.3e", e_fwd);
    CHECK(e_bwd <= 1e-5, "matmul backward BLAS vs naive rel %.3e", e_bwd);
    // += : a second call doubles (both paths)
    float *gi3 = copy(gi1, N * IC), *gw3 = copy(gw1, OC * IC), *gb3 = copy(gb1, OC);
    matmul_backward(gi3, gw3, gb3, dout, inp, w, N, IC, OC);
    check_doubles("matmul dinp", gi1, gi3, N * IC);
    check_doubles("matmul dw", gw1, gw3, OC * IC);
    check_doubles("matmul dbias", gb1, gb3, OC);
    memcpy(gi3, gi2, N * IC * sizeof(float));
    matmul_backward_naive(gi3, NULL, NULL, dout, inp, w, N, IC, OC);
    check_doubles("matmul_naive dinp", gi2, gi3, N * IC);
    // NULL gradients: each one alone, and none at all
    memset(gi3, 0, N * IC * sizeof(float)); memset(gw3, 0, OC * IC * sizeof(float));
    memset(gb3, 0, OC * sizeof(float));
    matmul_backward(gi3, NULL, NULL, dout, inp, w, N, IC, OC);
    matmul_backward(NULL, gw3, NULL, dout, inp, w, N, IC, OC);
    matmul_backward(NULL, NULL, gb3, dout, inp, w, N, IC, OC);
    matmul_backward(NULL, NULL, NULL, dout, inp, w, N, IC, OC);
    check_same("matmul dinp alone", gi3, gi1, N * IC, 0);
    check_same("matmul dw alone", gw3, gw1, OC * IC, 0);
    check_same("matmul dbias alone", gb3, gb1, OC, 0);
    free(inp); free(w); free(bias); free(dout); free(o1); free(o2);
    free(gi1); free(gw1); free(gb1); free(gi2); free(gw2); free(gb2);
    free(gi3); free(gw3); free(gb3);
}

// ---- normalisation ---------------------------------------------------------------------------

typedef struct {
    float *out, *mean, *rstd, *inp, *w, *b, *R;
    int N, C, layer; // layer: LayerNorm, else RMSNorm
} norm_ctx;
static double norm_loss(void *p) {
    norm_ctx *c = p;
    if (c->layer)
        layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5f);
    else
        rmsnorm_forward(c->out, c->rstd, c->inp, c->w, c->N, c->C, 1e-5f);
    return dot_d(c->out, c->R, (size_t)c->N * c->C);
}

static void test_norms(void) {
    printf("rmsnorm / layernorm\n");
    int N = 3, C = 70; // C > 64: the weight gradients run in blocks of 64 channels
    for (int layer = 0; layer <= 1; layer++) {
        norm_ctx c = {zeros(N * C), zeros(N), zeros(N), rnd(N * C, 2), rnd(C, 1.5f),
                      layer ? rnd(C, 1) : NULL, rnd(N * C, 1), N, C, layer};
        for (int i = 0; i < N * C; i++) c.inp[i] += 0.5f; // a non-zero mean
        norm_loss(&c); // forward: fills mean, rstd
        float *dx = zeros(N * C), *dw = zeros(C), *db = zeros(C);
        if (layer)
            layernorm_backward(dx, dw, db, c.R, c.inp, c.w, c.mean, c.rstd, N, C);
        else
            rmsnorm_backward(dx, dw, c.R, c.inp, c.w, c.rstd, N, C);
        const char *nm = layer ? "layernorm" : "rmsnorm";
        char buf[64];
        snprintf(buf, sizeof buf, "%s dinp", nm);
        fd_check(buf, norm_loss, &c, c.inp, dx, N * C, 1e-2f, 2e-3);
        snprintf(buf, sizeof buf, "%s dw", nm);
        fd_check(buf, norm_loss, &c, c.w, dw, C, 1e-2f, 2e-3);
        if (layer) fd_check("layernorm db", norm_loss, &c, c.b, db, C, 1e-2f, 2e-3);
        // += and NULL
        float *dx2 = copy(dx, N * C), *dw2 = copy(dw, C), *db2 = copy(db, C);
        float *dx3 = zeros(N * C), *dw3 = zeros(C), *db3 = zeros(C);
        if (layer) {
            layernorm_backward(dx2, dw2, db2, c.R, c.inp, c.w, c.mean, c.rstd, N, C);
            layernorm_backward(dx3, NULL, NULL, c.R, c.inp, c.w, c.mean, c.rstd, N, C);
            layernorm_backward(NULL, dw3, NULL, c.R, c.inp, c.w, c.mean, c.rstd, N, C);
            layernorm_backward(NULL, NULL, db3, c.R, c.inp, c.w, c.mean, c.rstd, N, C);
            check_doubles("layernorm db", db, db2, C);
            check_same("layernorm db alone", db3, db, C, 0);
        } else {
            rmsnorm_backward(dx2, dw2, c.R, c.inp, c.w, c.rstd, N, C);
            rmsnorm_backward(dx3, NULL, c.R, c.inp, c.w, c.rstd, N, C);
            rmsnorm_backward(NULL, dw3, c.R, c.inp, c.w, c.rstd, N, C);
        }
        check_doubles(nm, dx, dx2, N * C);
        check_doubles(nm, dw, dw2, C);
        check_same("norm dinp alone", dx3, dx, N * C, 0);
        check_same("norm dw alone", dw3, dw, C, 0);
        free(c.out); free(c.mean); free(c.rstd); free(c.inp); free(c.w); free(c.b); free(c.R);
        free(dx); free(dw); free(db); free(dx2); free(dw2); free(db2); free(dx3); free(dw3);
        free(db3);
    }
    // forward formulas against double references: RMSNorm as HF LLaMA, LayerNorm biased variance,
    // on a size that takes the threaded path (N*C >= 65536)
    int Nb = 96, Cb = 768;
    float *x = rnd((size_t)Nb * Cb, 3), *w = rnd(Cb, 1), *b = rnd(Cb, 1);
    float *o = zeros((size_t)Nb * Cb);
    float *mean = zeros(Nb), *rstd = zeros(Nb);
    double *ref = malloc((size_t)Nb * Cb * sizeof *ref);
    rmsnorm_forward(o, rstd, x, w, Nb, Cb, 1e-6f);
    for (int n = 0; n < Nb; n++) {
        double ss = 0;
        for (int i = 0; i < Cb; i++) ss += (double)x[n * Cb + i] * x[n * Cb + i];
        double r = 1.0 / sqrt(ss / Cb + 1e-6);
        for (int i = 0; i < Cb; i++) ref[n * Cb + i] = x[n * Cb + i] * r * w[i];
    }
    double e1 = rel_err_d(o, ref, (size_t)Nb * Cb);
    layernorm_forward(o, mean, rstd, x, w, b, Nb, Cb, 1e-5f);
    for (int n = 0; n < Nb; n++) {
        double m = 0, v = 0;
        for (int i = 0; i < Cb; i++) m += x[n * Cb + i];
        m /= Cb;
        for (int i = 0; i < Cb; i++) v += (x[n * Cb + i] - m) * (x[n * Cb + i] - m);
        double r = 1.0 / sqrt(v / Cb + 1e-5);
        for (int i = 0; i < Cb; i++) ref[n * Cb + i] = (x[n * Cb + i] - m) * r * w[i] + b[i];
    }
    double e2 = rel_err_d(o, ref, (size_t)Nb * Cb);
    printf("  forward vs double reference (%dx%d): rmsnorm %.2e, layernorm %.2e\n", Nb, Cb, e1, e2);
    CHECK(e1 <= 1e-6, "rmsnorm forward vs reference %.3e", e1);
    CHECK(e2 <= 1e-6, "layernorm forward vs reference %.3e", e2);
    free(x); free(w); free(b); free(o); free(mean); free(rstd); free(ref);
}

// ---- rope ------------------------------------------------------------------------------------

typedef struct {
    float *x, *xr, *R, *inv_freq;
    int *pos;
    int N, H, D, rot;
    rope_pairing pairing;
} rope_ctx;
static double rope_loss(void *p) {
    rope_ctx *c = p;
    size_t n = (size_t)c->N * c->H * c->D;
    memcpy(c->xr, c->x, n * sizeof(float));
    rope_forward(c->xr, c->pos, c->inv_freq, c->N, c->H, c->D, c->rot, c->pairing);
    return dot_d(c->xr, c->R, n);
}

static void test_rope(void) {
    printf("rope\n");
    int N = 3, H = 2, D = 10;
    int pos[3] = {0, 5, 17};
    for (int pairing = 0; pairing <= 1; pairing++) {
        for (int rot = D; rot >= 6; rot -= 4) { // full, and partial rot < D
            size_t n = (size_t)N * H * D;
            float inv_freq[5];
            for (int i = 0; i < rot / 2; i++) inv_freq[i] = powf(10000.0f, -2.0f * i / rot);
            rope_ctx c = {rnd(n, 1), zeros(n), rnd(n, 1), inv_freq, pos, N, H, D, rot,
                          (rope_pairing)pairing};
            float *dx = copy(c.R, n);
            rope_backward(dx, pos, inv_freq, N, H, D, rot, c.pairing);
            char buf[64];
            snprintf(buf, sizeof buf, "rope %s rot=%d/%d dx", pairing ? "gptj" : "neox", rot, D);
            fd_check(buf, rope_loss, &c, c.x, dx, n, 1e-2f, 1e-3);
            // forward against the formula, element by element
            rope_loss(&c);
            double m = 0;
            for (int r = 0; r < N; r++)
                for (int h = 0; h < H; h++) {
                    const float *xi = c.x + ((size_t)r * H + h) * D;
                    const float *xo = c.xr + ((size_t)r * H + h) * D;
                    for (int i = 0; i < rot / 2; i++) {
                        int i1 = pairing ? 2 * i : i, i2 = pairing ? 2 * i + 1 : i + rot / 2;
                        double a = (double)pos[r] * inv_freq[i];
                        double y1 = xi[i1] * cos(a) - xi[i2] * sin(a);
                        double y2 = xi[i2] * cos(a) + xi[i1] * sin(a);
                        m = fmax(m, fmax(fabs(y1 - xo[i1]), fabs(y2 - xo[i2])));
                    }
                    for (int i = rot; i < D; i++) m = fmax(m, fabs(xi[i] - xo[i]));
                }
            CHECK(m <= 1e-5, "rope forward vs formula %.3e", m);
            free(c.x); free(c.xr); free(c.R); free(dx);
        }
    }
}

// ---- attention -------------------------------------------------------------------------------

typedef struct {
    float *out, *att, *q, *k, *v, *R;
    const int *key_len;
    int B, T, S, H, KV, D, q_pos0, window;
} att_ctx;
static double att_loss(void *p) {
    att_ctx *c = p;
    attention_forward(c->out, c->att, c->q, c->k, c->v, c->key_len, c->B, c->T, c->S, c->H, c->KV,
                      c->D, c->q_pos0, c->window);
    return dot_d(c->out, c->R, (size_t)c->B * c->T * c->H * c->D);
}

// naive reference in double, one element at a time, straight from the contract in kernels.h
static void ref_attention(double *out, double *att, double *dq, double *dk, double *dv,
                          const float *dout, const float *q, const float *k, const float *v,
                          const int *key_len, int B, int T, int S, int H, int KV, int D,
                          int q_pos0, int window) {
    double scale = 1.0 / sqrt(D);
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * S * KV * D;
    memset(dq, 0, nq * sizeof *dq); memset(dk, 0, nk * sizeof *dk); memset(dv, 0, nk * sizeof *dv);
    double *datt = malloc(S * sizeof *datt);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / KV);
            for (int t = 0; t < T; t++) {
                int p = q_pos0 + t;
                double *a = att + (((size_t)b * H + h) * T + t) * S;
                double *o = out + (((size_t)b * T + t) * H + h) * D;
                const float *qt = q + (((size_t)b * T + t) * H + h) * D;
                const float *dot = dout + (((size_t)b * T + t) * H + h) * D;
                double *dqt = dq + (((size_t)b * T + t) * H + h) * D;
                for (int s = 0; s < S; s++) a[s] = 0;
                for (int d = 0; d < D; d++) o[d] = 0;
                if (p >= key_len[b]) continue; // right padding
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s < S; s++) {
                    if (!(s <= p && s < key_len[b] && (window == 0 || p - s < window))) continue;
                    const float *ks = k + (((size_t)b * S + s) * KV + g) * D;
                    double x = 0;
                    for (int d = 0; d < D; d++) x += (double)qt[d] * ks[d];
                    a[s] = x * scale;
                    mx = a[s] > mx ? a[s] : mx;
                }
                for (int s = 0; s < S; s++)
                    if (s <= p && s < key_len[b] && (window == 0 || p - s < window)) {
                        a[s] = exp(a[s] - mx);
                        sum += a[s];
                    }
                for (int s = 0; s < S; s++) a[s] /= sum;
                for (int s = 0; s < S; s++) {
                    if (a[s] == 0) continue; // masked keys are never read (they may be NaN)
                    const float *vs = v + (((size_t)b * S + s) * KV + g) * D;
                    for (int d = 0; d < D; d++) o[d] += a[s] * vs[d];
                }
                // backward of the same row
                double Dsum = 0;
                for (int s = 0; s < S; s++) {
                    const float *vs = v + (((size_t)b * S + s) * KV + g) * D;
                    datt[s] = 0;
                    if (a[s] == 0) continue;
                    for (int d = 0; d < D; d++) datt[s] += (double)dot[d] * vs[d];
                    Dsum += a[s] * datt[s];
                }
                for (int s = 0; s < S; s++) {
                    if (a[s] == 0) continue;
                    double dpre = a[s] * (datt[s] - Dsum) * scale;
                    const float *ks = k + (((size_t)b * S + s) * KV + g) * D;
                    double *dks = dk + (((size_t)b * S + s) * KV + g) * D;
                    double *dvs = dv + (((size_t)b * S + s) * KV + g) * D;
                    for (int d = 0; d < D; d++) {
                        dqt[d] += dpre * ks[d];
                        dks[d] += dpre * qt[d];
                        dvs[d] += a[s] * dot[d];
                    }
                }
            }
        }
    free(datt);
}

static void test_attention_fd(const char *name, int B, int T, int S, int H, int KV, int D,
                              const int *key_len, int q_pos0, int window) {
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * S * KV * D;
    att_ctx c = {zeros(nq), zeros((size_t)B * H * T * S), rnd(nq, 1.5f), rnd(nk, 1.5f),
                 rnd(nk, 1), rnd(nq, 1), key_len, B, T, S, H, KV, D, q_pos0, window};
    att_loss(&c);
    float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    attention_backward(dq, dk, dv, c.R, c.att, c.q, c.k, c.v, B, T, S, H, KV, D);
    char buf[80];
    snprintf(buf, sizeof buf, "attn %s dq", name);
    fd_check(buf, att_loss, &c, c.q, dq, nq, 1e-2f, 2e-3);
    snprintf(buf, sizeof buf, "attn %s dk", name);
    fd_check(buf, att_loss, &c, c.k, dk, nk, 1e-2f, 2e-3);
    snprintf(buf, sizeof buf, "attn %s dv", name);
    fd_check(buf, att_loss, &c, c.v, dv, nk, 1e-2f, 2e-3);
    // += and NULL
    float *dq2 = copy(dq, nq), *dk2 = copy(dk, nk), *dv2 = copy(dv, nk);
    attention_backward(dq2, dk2, dv2, c.R, c.att, c.q, c.k, c.v, B, T, S, H, KV, D);
    check_doubles("attention dq", dq, dq2, nq);
    check_doubles("attention dk", dk, dk2, nk);
    check_doubles("attention dv", dv, dv2, nk);
    memset(dq2, 0, nq * sizeof(float)); memset(dk2, 0, nk * sizeof(float));
    memset(dv2, 0, nk * sizeof(float));
    attention_backward(dq2, NULL, NULL, c.R, c.att, c.q, c.k, c.v, B, T, S, H, KV, D);
    attention_backward(NULL, dk2, NULL, c.R, c.att, c.q, c.k, c.v, B, T, S, H, KV, D);
    attention_backward(NULL, NULL, dv2, c.R, c.att, c.q, c.k, c.v, B, T, S, H, KV, D);
    attention_backward(NULL, NULL, NULL, c.R, c.att, c.q, c.k, c.v, B, T, S, H, KV, D);
    check_same("attention dq alone", dq2, dq, nq, 0);
    check_same("attention dk alone", dk2, dk, nk, 0);
    check_same("attention dv alone", dv2, dv, nk, 0);
    free(c.out); free(c.att); free(c.q); free(c.k); free(c.v); free(c.R);
    free(dq); free(dk); free(dv); free(dq2); free(dk2); free(dv2);
}

// forward and backward against the double reference; returns the worst relative error
static double test_attention_ref(const char *name, int B, int T, int S, int H, int KV, int D,
                                 const int *key_len, int q_pos0, int window) {
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * S * KV * D, na = (size_t)B * H * T * S;
    float *q = rnd(nq, 2), *k = rnd(nk, 2), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    float *out = rnd(nq, 1), *att = rnd(na, 1); // garbage in: every element must be written
    float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    double *rout = malloc(nq * sizeof(double)), *ratt = malloc(na * sizeof(double));
    double *rdq = malloc(nq * sizeof(double)), *rdk = malloc(nk * sizeof(double));
    double *rdv = malloc(nk * sizeof(double));
    // poison the keys no query may read (beyond every row's allowed span): NaN must not leak
    for (int b = 0; b < B; b++)
        for (int s = key_len[b] < q_pos0 + T ? key_len[b] : q_pos0 + T; s < S; s++)
            for (int i = 0; i < KV * D; i++) {
                k[((size_t)b * S + s) * KV * D + i] = NAN;
                v[((size_t)b * S + s) * KV * D + i] = NAN;
            }
    attention_forward(out, att, q, k, v, key_len, B, T, S, H, KV, D, q_pos0, window);
    attention_backward(dq, dk, dv, dout, att, q, k, v, B, T, S, H, KV, D);
    ref_attention(rout, ratt, rdq, rdk, rdv, dout, q, k, v, key_len, B, T, S, H, KV, D, q_pos0,
                  window);
    double e[5] = {rel_err_d(out, rout, nq), rel_err_d(att, ratt, na), rel_err_d(dq, rdq, nq),
                   rel_err_d(dk, rdk, nk), rel_err_d(dv, rdv, nk)};
    double m = 0;
    for (int i = 0; i < 5; i++) m = e[i] > m ? e[i] : m;
    printf("  ref %-34s out %.1e att %.1e dq %.1e dk %.1e dv %.1e\n", name, e[0], e[1], e[2],
           e[3], e[4]);
    CHECK(m <= 1e-5, "attention %s vs naive reference: %.3e", name, m);
    free(q); free(k); free(v); free(dout); free(out); free(att); free(dq); free(dk); free(dv);
    free(rout); free(ratt); free(rdq); free(rdk); free(rdv);
    return m;
}

// a right-padded batch row gives, on its valid positions, what the same row gives alone
static void test_attention_padding(void) {
    int B = 3, T = 40, H = 4, KV = 2, D = 8, S = T;
    int key_len[3] = {40, 23, 37}; // rows 1, 2 right-padded; 37 > ATT_TB: two blocks
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * S * KV * D;
    float *q = rnd(nq, 2), *k = rnd(nk, 2), *v = rnd(nk, 1), *dout = rnd(nq, 1);
    float *out = zeros(nq), *att = zeros((size_t)B * H * T * S);
    float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    attention_forward(out, att, q, k, v, key_len, B, T, S, H, KV, D, 0, 0);
    attention_backward(dq, dk, dv, dout, att, q, k, v, B, T, S, H, KV, D);
    double worst = 0;
    int pad_ok = 1;
    for (int b = 1; b < B; b++) {
        int L = key_len[b];
        size_t rq = (size_t)L * H * D, rk = (size_t)L * KV * D; // the row alone: T = S = L
        const float *qb = q + (size_t)b * T * H * D, *kb = k + (size_t)b * S * KV * D;
        const float *vb = v + (size_t)b * S * KV * D, *dob = dout + (size_t)b * T * H * D;
        float *o1 = zeros(rq), *a1 = zeros((size_t)H * L * L), *dq1 = zeros(rq);
        float *dk1 = zeros(rk), *dv1 = zeros(rk);
        attention_forward(o1, a1, qb, kb, vb, &L, 1, L, L, H, KV, D, 0, 0);
        attention_backward(dq1, dk1, dv1, dob, a1, qb, kb, vb, 1, L, L, H, KV, D);
        double e[4] = {rel_err(out + (size_t)b * T * H * D, o1, rq, 1e-6),
                       rel_err(dq + (size_t)b * T * H * D, dq1, rq, 1e-6),
                       rel_err(dk + (size_t)b * S * KV * D, dk1, rk, 1e-6),
                       rel_err(dv + (size_t)b * S * KV * D, dv1, rk, 1e-6)};
        for (int i = 0; i < 4; i++) worst = e[i] > worst ? e[i] : worst;
        // the padding: out, dq rows t >= L and dk, dv rows s >= L are exactly zero
        for (size_t i = rq; i < (size_t)T * H * D; i++)
            pad_ok &= out[(size_t)b * T * H * D + i] == 0 && dq[(size_t)b * T * H * D + i] == 0;
        for (size_t i = rk; i < (size_t)S * KV * D; i++)
            pad_ok &= dk[(size_t)b * S * KV * D + i] == 0 && dv[(size_t)b * S * KV * D + i] == 0;
        free(o1); free(a1); free(dq1); free(dk1); free(dv1);
    }
    printf("  padded row vs the row alone (B=1): max rel %.2e, padding all zero: %s\n", worst,
           pad_ok ? "yes" : "NO");
    CHECK(worst <= 1e-5, "padded batch row differs from the row alone: %.3e", worst);
    CHECK(pad_ok, "padding positions got non-zero out or gradient");
    free(q); free(k); free(v); free(dout); free(out); free(att); free(dq); free(dk); free(dv);
}

// determinism and a timing line at the GPT-2-small shape
static void test_attention_perf(void) {
    int B = 8, T = 128, S = 128, H = 12, D = 64;
    int key_len[8];
    for (int b = 0; b < B; b++) key_len[b] = S;
    for (int gqa = 0; gqa <= 1; gqa++) {
        int KV = gqa ? 4 : H;
        size_t nq = (size_t)B * T * H * D, nk = (size_t)B * S * KV * D, na = (size_t)B * H * T * S;
        float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dout = rnd(nq, 1);
        float *out = zeros(nq), *att = zeros(na), *out2 = zeros(nq), *att2 = zeros(na);
        float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
        float *dq2 = zeros(nq), *dk2 = zeros(nk), *dv2 = zeros(nk);
        attention_forward(out, att, q, k, v, key_len, B, T, S, H, KV, D, 0, 0); // warm-up
        double t0 = now_s();
        int reps = 5;
        for (int r = 0; r < reps; r++)
            attention_forward(out2, att2, q, k, v, key_len, B, T, S, H, KV, D, 0, 0);
        double t1 = now_s();
        attention_backward(dq, dk, dv, dout, att, q, k, v, B, T, S, H, KV, D);
        double t2 = now_s();
        for (int r = 0; r < reps - 1; r++)
            attention_backward(dq2, dk2, dv2, dout, att, q, k, v, B, T, S, H, KV, D);
        memset(dq2, 0, nq * 4); memset(dk2, 0, nk * 4); memset(dv2, 0, nk * 4);
        attention_backward(dq2, dk2, dv2, dout, att, q, k, v, B, T, S, H, KV, D);
        double t3 = now_s();
        // useful (causal) flops: forward 2 matmuls, backward 4, each 2 * B*H * T(T+1)/2 * D
        double f = 2.0 * B * H * (T * (T + 1) / 2.0) * D;
        double fwd_ms = (t1 - t0) / reps * 1e3, bwd_ms = (t3 - t2) / reps * 1e3;
        printf("  perf B=%d T=%d H=%d KV=%d D=%d, %d threads: forward %.2f ms (%.1f GFLOP/s), "
               "backward %.2f ms (%.1f GFLOP/s)\n", B, T, H, KV, D, omp_get_max_threads(), fwd_ms,
               2 * f / (fwd_ms * 1e6), bwd_ms, 4 * f / (bwd_ms * 1e6));
        int same = !memcmp(out, out2, nq * 4) && !memcmp(att, att2, na * 4) &&
                   !memcmp(dq, dq2, nq * 4) && !memcmp(dk, dk2, nk * 4) && !memcmp(dv, dv2, nk * 4);
        CHECK(same, "attention is not deterministic across runs (KV=%d)", KV);
        // and the same bits on one thread: every task is single-threaded whatever the team size
        int nth = omp_get_max_threads();
        omp_set_num_threads(1);
        attention_forward(out2, att2, q, k, v, key_len, B, T, S, H, KV, D, 0, 0);
        memset(dq2, 0, nq * 4); memset(dk2, 0, nk * 4); memset(dv2, 0, nk * 4);
        attention_backward(dq2, dk2, dv2, dout, att, q, k, v, B, T, S, H, KV, D);
        omp_set_num_threads(nth);
        same = !memcmp(out, out2, nq * 4) && !memcmp(att, att2, na * 4) &&
               !memcmp(dq, dq2, nq * 4) && !memcmp(dk, dk2, nk * 4) && !memcmp(dv, dv2, nk * 4);
        CHECK(same, "attention on 1 thread differs from %d threads (KV=%d)", nth, KV);
        // a decode step over the same cache: T = 1 at position S - 1 equals the last prefill row
        float *o1 = zeros((size_t)B * H * D), *a1 = zeros((size_t)B * H * S);
        float *q1 = zeros((size_t)B * H * D);
        for (int b = 0; b < B; b++)
            memcpy(q1 + (size_t)b * H * D, q + ((size_t)b * T + T - 1) * H * D, H * D * 4);
        attention_forward(o1, a1, q1, k, v, key_len, B, 1, S, H, KV, D, S - 1, 0);
        double e = 0;
        for (int b = 0; b < B; b++) {
            double eb = rel_err(o1 + (size_t)b * H * D, out + ((size_t)b * T + T - 1) * H * D,
                                H * D, 1e-6);
            e = eb > e ? eb : e;
        }
        CHECK(e <= 1e-5, "decode step differs from the last prefill row: %.3e", e);
        free(q); free(k); free(v); free(dout); free(out); free(att); free(out2); free(att2);
        free(dq); free(dk); free(dv); free(dq2); free(dk2); free(dv2); free(o1); free(a1); free(q1);
    }
}

static void test_attention(void) {
    printf("attention\n");
    int kl_full[2] = {6, 6}, kl_pad[2] = {6, 4};
    // GQA H=4, KV=2, with a padded batch row
    test_attention_fd("gqa pad", 2, 6, 6, 4, 2, 4, kl_pad, 0, 0);
    test_attention_fd("gqa pad window=3", 2, 6, 6, 4, 2, 4, kl_pad, 0, 3);
    // q_pos0 > 0 and T < S: rows at positions 3, 4 over a 6-key cache (row 1: position 4 is
    // padding, since key_len 4)
    test_attention_fd("q_pos0=3 T=2 S=6", 2, 2, 6, 4, 2, 4, kl_pad, 3, 0);
    // decode: T = 1 at the last position, with a window
    test_attention_fd("decode T=1 window=4", 2, 1, 6, 4, 2, 4, kl_full, 5, 4);
    // multi-query (KV = 1)
    test_attention_fd("mqa KV=1", 1, 5, 5, 2, 1, 4, kl_full, 0, 0);

    // the naive reference, on shapes with several row blocks (T > 32) and key chunks (S > 256)
    int kl_a[2] = {70, 51}, kl_b[2] = {300, 280}, kl_c[3] = {300, 297, 270};
    test_attention_ref("B=2 T=70 GQA pad", 2, 70, 70, 4, 2, 8, kl_a, 0, 0);
    test_attention_ref("B=2 T=70 GQA pad window=20", 2, 70, 70, 4, 2, 8, kl_a, 0, 20);
    test_attention_ref("T=40 S=300 q_pos0=260 pad", 2, 40, 300, 4, 2, 8, kl_b, 260, 0);
    test_attention_ref("T=300 S=300 window=100", 2, 300, 300, 2, 1, 8, kl_b, 0, 100);
    test_attention_ref("decode T=1 S=300 q_pos0=296", 3, 1, 300, 4, 4, 8, kl_c, 296, 0);
    test_attention_ref("decode GQA 8/2 q_pos0=296 window=50", 3, 1, 300, 8, 2, 8, kl_c, 296, 50);
    test_attention_padding();
    test_attention_perf();
}

// ---- activations -----------------------------------------------------------------------------

typedef struct {
    float *out, *a, *b, *R;
    size_t n;
    int swiglu;
    int erf; // exact GELU instead of the tanh one
} act_ctx;
static double act_loss(void *p) {
    act_ctx *c = p;
    if (c->swiglu)
        swiglu_forward(c->out, c->a, c->b, c->n);
    else if (c->erf)
        gelu_erf_forward(c->out, c->a, c->n);
    else
        gelu_forward(c->out, c->a, c->n);
    return dot_d(c->out, c->R, c->n);
}

// kernels.h's kexpf / ktanhf against libm in double, and their edge values
static void test_vector_math(void) {
    printf("kexpf / ktanhf\n");
    double me = 0, mt = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + (float)i * (88.0f + 87.0f) / 200000; // -87 .. 88
        double e = exp((double)x);
        me = fmax(me, fabs(kexpf(x) - e) / e);
        float u = -12.0f + (float)i * 24.0f / 200000;
        mt = fmax(mt, fabs(ktanhf(u) - tanh((double)u)));
    }
    printf("  kexpf max rel err %.2e, ktanhf max abs err %.2e\n", me, mt);
    CHECK(me <= 2e-7 && mt <= 3e-7, "kexpf %.3e / ktanhf %.3e", me, mt);
    CHECK(kexpf(-INFINITY) == 0 && kexpf(-100) == 0 && kexpf(0) == 1 && isnan(kexpf(NAN)) &&
              ktanhf(INFINITY) == 1 && ktanhf(-INFINITY) == -1 && ktanhf(0) == 0,
          "kexpf/ktanhf edge values");
    float x[37];
    for (int i = 0; i < 37; i++) x[i] = (float)((i * 7919) % 37) - 18.0f;
    float m5 = fmaxf(fmaxf(fmaxf(x[0], x[1]), fmaxf(x[2], x[3])), x[4]);
    CHECK(kmax_row(x, 37) == 18.0f && kmax_row(x, 5) == m5, "kmax_row");
}

static void test_activations(void) {
    printf("gelu / swiglu\n");
    size_t n = 64;
    act_ctx c = {zeros(n), rnd(n, 4), rnd(n, 2), rnd(n, 1), n, 0, 0};
    float *da = zeros(n), *db = zeros(n);
    gelu_backward(da, c.R, c.a, n);
    fd_check("gelu dinp", act_loss, &c, c.a, da, n, 1e-2f, 1e-3);
    float *da2 = copy(da, n);
    gelu_backward(da2, c.R, c.a, n);
    gelu_backward(NULL, c.R, c.a, n);
    check_doubles("gelu", da, da2, n);
    // the tanh formula itself, in double
    gelu_forward(c.out, c.a, n);
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double x = c.a[i];
        double y = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        m = fmax(m, fabs(y - c.out[i]));
    }
    CHECK(m <= 1e-6, "gelu forward vs formula %.3e", m);

    // exact (erf) GELU: finite differences, the += and NULL rules, the formula in double
    c.erf = 1;
    memset(da, 0, n * 4);
    gelu_erf_backward(da, c.R, c.a, n);
    fd_check("gelu_erf dinp", act_loss, &c, c.a, da, n, 1e-2f, 1e-3);
    memcpy(da2, da, n * 4);
    gelu_erf_backward(da2, c.R, c.a, n);
    gelu_erf_backward(NULL, c.R, c.a, n);
    check_doubles("gelu_erf", da, da2, n);
    gelu_erf_forward(c.out, c.a, n);
    m = 0;
    for (size_t i = 0; i < n; i++) {
        double x = c.a[i];
        m = fmax(m, fabs(0.5 * x * (1 + erf(x / sqrt(2.0))) - c.out[i]));
    }
    CHECK(m <= 1e-6, "gelu_erf forward vs formula %.3e", m);
    c.erf = 0;

    c.swiglu = 1;
    memset(da, 0, n * 4);
    swiglu_backward(da, db, c.R, c.a, c.b, n);
    fd_check("swiglu dgate", act_loss, &c, c.a, da, n, 1e-2f, 1e-3);
    fd_check("swiglu dup", act_loss, &c, c.b, db, n, 1e-2f, 1e-3);
    float *db2 = copy(db, n), *da3 = zeros(n), *db3 = zeros(n);
    memcpy(da2, da, n * 4);
    swiglu_backward(da2, db2, c.R, c.a, c.b, n);
    check_doubles("swiglu dgate", da, da2, n);
    check_doubles("swiglu dup", db, db2, n);
    swiglu_backward(da3, NULL, c.R, c.a, c.b, n);
    swiglu_backward(NULL, db3, c.R, c.a, c.b, n);
    swiglu_backward(NULL, NULL, c.R, c.a, c.b, n);
    check_same("swiglu dgate alone", da3, da, n, 0);
    check_same("swiglu dup alone", db3, db, n, 0);
    // extreme gates stay finite
    float g[4] = {-200, -90, 90, 200}, u[4] = {1, 1, 1, 1}, o[4], dg[4] = {0}, du[4] = {0};
    swiglu_forward(o, g, u, 4);
    swiglu_backward(dg, du, u, g, u, 4);
    int finite = 1;
    for (int i = 0; i < 4; i++) finite &= isfinite(o[i]) && isfinite(dg[i]) && isfinite(du[i]);
    CHECK(finite, "swiglu not finite at |gate| = 200");
    free(c.out); free(c.a); free(c.b); free(c.R); free(da); free(db); free(da2); free(db2);
    free(da3); free(db3);
}

// ---- losses ----------------------------------------------------------------------------------

typedef struct {
    float *lp, *lq;
    int *target;
    int N, V, kl;
} loss_ctx;
static double loss_loss(void *p) {
    loss_ctx *c = p;
    if (c->kl) return kl_forward_backward(NULL, c->lp, c->lq, c->N, c->V, 1.0f);
    return crossentropy_forward_backward(NULL, c->lq, c->target, c->N, c->V, 1.0f);
}

// plain double references
static double ref_ce(const float *logits, const int *target, int N, int V) {
    double sum = 0;
    int cnt = 0;
    for (int n = 0; n < N; n++) {
        if (target[n] < 0) continue;
        double s = 0;
        for (int i = 0; i < V; i++) s += exp((double)logits[n * V + i]);
        sum += log(s) - logits[n * V + target[n]];
        cnt++;
    }
    return cnt ? sum / cnt : 0;
}
static double ref_kl(const float *lp, const float *lq, int N, int V) {
    double sum = 0;
    for (int n = 0; n < N; n++) {
        double zp = 0, zq = 0;
        for (int i = 0; i < V; i++) {
            zp += exp((double)lp[n * V + i]);
            zq += exp((double)lq[n * V + i]);
        }
        for (int i = 0; i < V; i++) {
            double p = exp((double)lp[n * V + i]) / zp, q = exp((double)lq[n * V + i]) / zq;
            sum += p * log(p / q);
        }
    }
    return sum / N;
}

static void test_losses(void) {
    printf("cross-entropy / kl / log_softmax\n");
    int N = 5, V = 7;
    int target[5] = {3, -1, 0, 6, -1}; // two unscored rows
    loss_ctx c = {rnd(N * V, 3), rnd(N * V, 3), target, N, V, 0};
    float *dl = rnd(N * V, 1); // garbage: SET, not accumulated
    float loss = crossentropy_forward_backward(dl, c.lq, target, N, V, 1.0f);
    CHECK(fabs(loss - ref_ce(c.lq, target, N, V)) <= 1e-6, "ce value %f vs %f", loss,
          ref_ce(c.lq, target, N, V));
    fd_check("crossentropy dlogits", loss_loss, &c, c.lq, dl, N * V, 1e-2f, 1e-3);
    int unscored_zero = 1;
    for (int i = 0; i < V; i++) unscored_zero &= dl[1 * V + i] == 0 && dl[4 * V + i] == 0;
    CHECK(unscored_zero, "unscored rows must get dlogits = 0");
    float *dl2 = zeros(N * V);
    crossentropy_forward_backward(dl2, c.lq, target, N, V, 2.5f);
    for (int i = 0; i < N * V; i++) dl[i] *= 2.5f;
    check_same("crossentropy scale", dl2, dl, N * V, 1e-6);
    int none[5] = {-1, -1, -1, -1, -1};
    float l0 = crossentropy_forward_backward(dl2, c.lq, none, N, V, 1.0f);
    float mx0 = 0;
    for (int i = 0; i < N * V; i++) mx0 = fmaxf(mx0, fabsf(dl2[i]));
    CHECK(l0 == 0 && mx0 == 0, "nothing scored: loss %f, max |dlogits| %f", l0, mx0);

    c.kl = 1;
    float kl = kl_forward_backward(dl, c.lp, c.lq, N, V, 1.0f);
    CHECK(fabs(kl - ref_kl(c.lp, c.lq, N, V)) <= 1e-6, "kl value %f vs %f", kl,
          ref_kl(c.lp, c.lq, N, V));
    fd_check("kl dlogits_q", loss_loss, &c, c.lq, dl, N * V, 1e-2f, 1e-3);
    float kl_self = kl_forward_backward(NULL, c.lp, c.lp, N, V, 1.0f);
    CHECK(fabsf(kl_self) <= 1e-7, "KL(p||p) = %g", kl_self);

    // the threaded path (N*V >= 32768) against the references, and determinism
    int Nb = 48, Vb = 5003;
    float *lp = rnd((size_t)Nb * Vb, 8), *lq = rnd((size_t)Nb * Vb, 8);
    lq[7] = 80.0f; lq[Vb + 1] = -80.0f; // large logits: max-subtraction
    int *tb = malloc(Nb * sizeof *tb);
    for (int n = 0; n < Nb; n++) tb[n] = n % 5 == 0 ? -1 : (n * 977) % Vb;
    tb[0] = 7;
    float *g1 = zeros((size_t)Nb * Vb);
    float ce1 = crossentropy_forward_backward(g1, lq, tb, Nb, Vb, 1.0f);
    float ce2 = crossentropy_forward_backward(NULL, lq, tb, Nb, Vb, 1.0f);
    double rce = ref_ce(lq, tb, Nb, Vb);
    float kl1 = kl_forward_backward(g1, lp, lq, Nb, Vb, 1.0f);
    float kl2 = kl_forward_backward(NULL, lp, lq, Nb, Vb, 1.0f);
    double rkl = ref_kl(lp, lq, Nb, Vb);
    printf("  %dx%d: ce %.6f (ref %.6f), kl %.6f (ref %.6f)\n", Nb, Vb, ce1, rce, kl1, rkl);
    CHECK(fabs(ce1 - rce) <= 1e-5 * fabs(rce) && ce1 == ce2, "ce large: %f %f vs %f", ce1, ce2,
          rce);
    CHECK(fabs(kl1 - rkl) <= 1e-5 * fabs(rkl) && kl1 == kl2, "kl large: %f %f vs %f", kl1, kl2,
          rkl);

    // the gradient written over the logits (dlogits == logits): the same loss and gradient
    float *lq2 = copy(lq, (size_t)Nb * Vb), *lq3 = copy(lq, (size_t)Nb * Vb);
    float ce3 = crossentropy_forward_backward(lq2, lq2, tb, Nb, Vb, 1.0f);
    crossentropy_forward_backward(g1, lq, tb, Nb, Vb, 1.0f);
    float kl3 = kl_forward_backward(lq3, lp, lq3, Nb, Vb, 1.0f);
    CHECK(ce3 == ce1 && !memcmp(lq2, g1, (size_t)Nb * Vb * 4), "ce in place differs");
    kl_forward_backward(g1, lp, lq, Nb, Vb, 1.0f);
    CHECK(kl3 == kl1 && !memcmp(lq3, g1, (size_t)Nb * Vb * 4), "kl in place differs");
    free(lq2); free(lq3);

    // log_softmax_row, in place too
    float row[6] = {1, -2, 300, 0.5f, 299, -1e3f}, ls[6];
    log_softmax_row(ls, row, 6);
    double z = 0;
    for (int i = 0; i < 6; i++) z += exp((double)ls[i]);
    log_softmax_row(row, row, 6);
    CHECK(fabs(z - 1) <= 1e-6 && !memcmp(ls, row, sizeof ls), "log_softmax_row: sum exp = %f", z);
    free(c.lp); free(c.lq); free(dl); free(dl2); free(lp); free(lq); free(tb); free(g1);
}

// ---- matmul with f16 / bf16 weights ---------------------------------------------------------------

// matmul_forward_w16 / _backward_w16 against matmul_forward / _backward on the widened weights,
// for both dtypes, both paths (fused dot for N <= 64, widened blocks + sgemm above), OC across
// several blocks, with and without bias
static void test_matmul_w16(void) {
    printf("matmul with f16/bf16 weights\n");
    // IC 9000: 233 rows per widened block, so OC 300 takes two; N on both sides of 64
    const int IC = 9000, OC = 300, Ns[] = {1, 5, 64, 65};
    float *w = rnd((size_t)OC * IC, 1), *wf = zeros((size_t)OC * IC), *bias = rnd(OC, 1);
    uint16_t *w16 = malloc(sizeof(uint16_t) * (size_t)OC * IC);
    float *scratch = zeros(matmul_w16_scratch(IC, OC));
    double worst = 0;
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        if (bf16) { ked_f32_to_bf16_row(w, w16, (size_t)OC * IC); ked_bf16_to_f32_row(w16, wf, (size_t)OC * IC); }
        else { ked_f32_to_f16_row(w, w16, (size_t)OC * IC); ked_f16_to_f32_row(w16, wf, (size_t)OC * IC); }
        for (size_t k = 0; k < sizeof Ns / sizeof *Ns; k++) {
            int N = Ns[k];
            for (int with_bias = 0; with_bias <= 1; with_bias++) {
                const float *b = with_bias ? bias : NULL;
                float *inp = rnd((size_t)N * IC, 1), *dout = rnd((size_t)N * OC, 1);
                float *o1 = zeros((size_t)N * OC), *o2 = zeros((size_t)N * OC);
                matmul_forward(o1, inp, wf, b, N, IC, OC);
                matmul_forward_w16(o2, inp, w16, bf16, b, N, IC, OC, scratch);
                double e = rel_err(o2, o1, (size_t)N * OC, 1e-6);
                worst = e > worst ? e : worst;
                CHECK(e <= 1e-5, "%s N=%d bias=%d forward: rel %.3e", bf16 ? "bf16" : "f16", N,
                      with_bias, e);
                float *di1 = rnd((size_t)N * IC, 1), *di2 = copy(di1, (size_t)N * IC);
                float *dw1 = zeros((size_t)OC * IC), *dw2 = zeros((size_t)OC * IC);
                float *db1 = zeros(OC), *db2 = zeros(OC);
                matmul_backward(di1, dw1, db1, dout, inp, wf, N, IC, OC);
                matmul_backward_w16(di2, dw2, db2, dout, inp, w16, bf16, N, IC, OC, scratch);
                e = rel_err(di2, di1, (size_t)N * IC, 1e-6);
                worst = e > worst ? e : worst;
                CHECK(e <= 1e-5, "%s N=%d backward dinp: rel %.3e", bf16 ? "bf16" : "f16", N, e);
                CHECK(!memcmp(dw1, dw2, sizeof(float) * (size_t)OC * IC) &&
                      !memcmp(db1, db2, sizeof(float) * (size_t)OC), "w16 dw/db differ");
                matmul_backward_w16(NULL, NULL, NULL, dout, inp, w16, bf16, N, IC, OC, scratch);
                free(inp); free(dout); free(o1); free(o2); free(di1); free(di2); free(dw1);
                free(dw2); free(db1); free(db2);
            }
        }
    }
    printf("  w16 vs f32 matmul on the same (widened) weights: worst relative diff %.2e\n", worst);
    free(w); free(wf); free(bias); free(w16); free(scratch);
}

int main(void) {
    double t0 = now_s(), t = t0;
    void (*tests[])(void) = {test_matmul, test_matmul_w16, test_norms,      test_rope,
                             test_attention, test_vector_math, test_activations, test_losses};
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
        tests[i]();
        printf("  (%.2f s)\n", now_s() - t);
        t = now_s();
    }
    printf("worst finite-difference error %.2e; %.2f s\n", worst_fd, now_s() - t0);
    return test_finish("test_kernels");
}
