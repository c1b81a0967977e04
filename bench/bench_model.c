// bench_model.c: the transformer runtime on a GPT-2-small-shaped model (issue 2, performance).
//
// 1. writes a random GPT-2-small Hugging Face directory (config.json + model.safetensors, f32,
//    the names and Conv1D (in, out) layouts of GPT2LMHeadModel.save_pretrained) unless one with
//    the same shape is already there (default build/bench/gpt2-small-random);
// 2. loads it in a fresh child process (this program re-executed with --load-only), so that the
//    peak resident memory (VmHWM) it reports is the load's alone, and compares it with the
//    weight bytes;
// 3. loads it here and times, at B x T = 8 x 128 with 2 threads (ked_set_threads): the forward
//    with all B*T logits, and forward + cross-entropy over every position + backward with the
//    gradients of ALL parameters enabled; one warm-up, then --iters timed iterations (best and
//    median printed; best is used for the ratios);
// 4. KV-cached greedy decoding of 128 new tokens, batch 1 (extra information).
//
// FLOPs counted (multiply-adds count 2; norms, GELU, softmax, the loss and the embedding
// lookups are left out, as llm.c does):
//   P_mm  = L * 12 * C^2 + V * C                      matmul parameters (tied head counted here)
//   attn  = L * 2 * C * B * T * (T + 1)                QK^T and att @ V over the causal half
//   fwd   = 2 * B*T * P_mm + attn
//   bwd   = 2 * fwd (two matmuls per forward matmul)   fwd+bwd = 3 * fwd
// The share of peak divides GFLOP/s by the sgemm peak: the larger of --peak (bench_sgemm's
// number, passed in by bench/run.sh) and a 2-thread sgemm measured here just before and just
// after the timings (the best the machine showed during the run). Prints `key value` lines.
//
//   build/bench/bench_model [--dir DIR] [--peak GFLOPS] [--iters N] [--threads N]
//                           [--batch B] [--seq T] [--decode N] [--only fwd|bwd|all]
//                           [--breakdown REPS]   (time each kernel of a forward + backward)
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BENCH_NAME "bench_model"
#include "bench_util.h"
#include "ked.h"
#include "io/safetensors.h"
#include "model/model.h" // --breakdown replays the decoder's kernels on a run's own buffers

// ---- resident memory ----------------------------------------------------------------------------

// the child: load, report, exit. Nothing else is allocated before the load.
static int load_only(const char *dir) {
    long rss0 = status_kb("VmRSS");
    ked_error err;
    ked_model *m = NULL;
    double t0 = now();
    if (ked_model_load(dir, &m, &err)) die("ked_model_load", &err);
    double dt = now() - t0;
    double wb = (double)ked_model_weight_bytes(m);
    long hwm = status_kb("VmHWM"), anon = status_kb("RssAnon"), file = status_kb("RssFile");
    printf("load_s %.3f\n", dt);
    printf("n_params %lld\n", (long long)ked_model_n_params(m));
    printf("weight_mb %.1f\n", wb / 1e6);
    printf("rss_before_load_mb %.1f\n", rss0 * 1024.0 / 1e6);
    printf("load_peak_rss_mb %.1f\n", hwm * 1024.0 / 1e6);
    printf("load_rss_anon_mb %.1f\n", anon * 1024.0 / 1e6);
    printf("load_rss_file_mb %.1f\n", file * 1024.0 / 1e6);
    printf("load_peak_rss_over_weights %.3f\n", (hwm - rss0) * 1024.0 / wb);
    // then a first small forward, which touches every weight (the memory-mapped ones too)
    ked_run *r = NULL;
    int ids[16] = {0};
    if (ked_run_new(m, 1, 16, 16, 0, &r, &err)) die("ked_run_new", &err);
    if (ked_forward(m, r, ids, 1, 16, NULL, NULL, &err)) die("ked_forward", &err);
    hwm = status_kb("VmHWM");
    printf("first_fwd_peak_rss_mb %.1f\n", hwm * 1024.0 / 1e6);
    printf("first_fwd_rss_anon_mb %.1f\n", status_kb("RssAnon") * 1024.0 / 1e6);
    printf("first_fwd_rss_file_mb %.1f\n", status_kb("RssFile") * 1024.0 / 1e6);
    printf("first_fwd_run_mb %.1f\n", ked_run_bytes(r) / 1e6);
    printf("first_fwd_peak_rss_minus_run_over_weights %.3f\n",
           ((hwm - rss0) * 1024.0 - (double)ked_run_bytes(r)) / wb);
    ked_run_free(r);
    ked_model_free(m);
    return 0;
}

// ---- the sgemm peak, measured here (bench_sgemm's method, fewer shapes) -------------------------

static double sgemm_peak(int threads) {
    static const int shapes[][3] = {{1024, 3072, 768}, {2048, 2048, 2048}}; // M, N, K
    size_t na = 2048 * 2048, nb = 3072 * 768 > na ? 3072 * 768 : na,
           nc = 1024 * 3072 > na ? 1024 * 3072 : na;
    float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4);
    if (!A || !B || !C) die("sgemm buffers", NULL);
    for (size_t i = 0; i < na; i++) A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < nb; i++) B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    openblas_set_num_threads(threads);
    double peak = 0;
    for (int s = 0; s < 2; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C, N);
        double best = 1e30, spent = 0;
        for (int rep = 0; rep < 50 && (rep < 3 || spent < 0.25); rep++) {
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C, N);
            double dt = now() - t0;
            spent += dt;
            best = dt < best ? dt : best;
        }
        double g = 2.0 * M * N * K / best * 1e-9;
        peak = g > peak ? g : peak;
    }
    free(A); free(B); free(C);
    return peak;
}

// ---- timing -------------------------------------------------------------------------------------

typedef struct { double best, median; } timing;
static timing summarize(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    timing r = {t[0], n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2])};
    return r;
}

static void report(const char *name, timing t, double tokens, double flops, double peak) {
    printf("%s_s_best %.3f\n%s_s_median %.3f\n", name, t.best, name, t.median);
    printf("%s_tok_s %.1f\n%s_tok_s_median %.1f\n", name, tokens / t.best, name, tokens / t.median);
    printf("%s_gflops %.1f\n", name, flops / t.best * 1e-9);
    printf("%s_share_of_peak %.3f\n", name, flops / t.best * 1e-9 / peak);
}

// ---- --breakdown: where the time of one forward + backward goes ---------------------------------
// Replays, kernel by kernel, the calls decoder.c makes for a GPT-2 (sequential block, LayerNorm,
// GELU MLP, learned positions, tied head) forward + cross-entropy + backward with every gradient
// enabled, on the buffers of a run that has just done a real one, timing each call. Keep it in
// step with decoder.c; the sum is printed next to the measured step so that drift shows.
// matmul_backward is split into its three parts (dinp, dweight, dbias) to time them separately.
enum { K_EMBED, K_LN, K_MM_QKV, K_MM_KV_ROWS, K_ATTN, K_MM_O, K_RESID, K_MM_FC, K_GELU, K_MM_PROJ,
       K_MM_LOGITS, K_LOSS, K_MM_LOGITS_B, K_SCATTER, K_LN_B, K_MM_B_DINP, K_MM_B_DW, K_MM_B_DBIAS,
       K_MM_LOGITS_B_DW, K_GELU_B, K_ATTN_B, K_MEMSET, K_EMBED_B, K_COUNT };
static const char *k_names[K_COUNT] = {
    "fwd embed lookup", "fwd layernorm", "fwd matmul q", "fwd matmul k, v",
    "fwd attention", "fwd matmul attn c_proj", "fwd residual adds (serial)", "fwd matmul c_fc",
    "fwd gelu", "fwd matmul mlp c_proj", "fwd matmul logits (V x C)",
    "loss cross-entropy", "bwd matmul logits dinp", "bwd logits row scatter",
    "bwd layernorm", "bwd matmuls dinp (layers)", "bwd matmuls dweight (layers)",
    "bwd bias column sums", "bwd matmul logits dweight (dwte)", "bwd gelu",
    "bwd attention", "bwd memset/memcpy scratch", "bwd embedding scatter (serial)"};
static double k_time[K_COUNT], k_flops[K_COUNT], k_wall;
#define TIMED(k, ...) do { double t0_ = now(); __VA_ARGS__; k_time[k] += now() - t0_; } while (0)
// a matmul out (M, N) = a (M, K) b: 2*M*N*K FLOPs, counted on the first replay only
#define MMF(k, M, N, K) (k_flops[k] += first ? 2.0 * (M) * (N) * (K) : 0)

// matmul_backward as three timed calls
static void mm_bwd(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                   const float *w, int N, int IC, int OC, int k_dw, int first) {
    MMF(K_MM_B_DINP, N, IC, OC);
    MMF(k_dw, OC, IC, N);
    TIMED(K_MM_B_DINP, matmul_backward(dinp, NULL, NULL, dout, inp, w, N, IC, OC));
    TIMED(k_dw, matmul_backward(NULL, dw, NULL, dout, inp, w, N, IC, OC));
    if (db) TIMED(K_MM_B_DBIAS, matmul_backward(NULL, NULL, db, dout, inp, w, N, IC, OC));
}

static void breakdown_once(ked_model *m, ked_run *r, const int *tgt, int first) {
    const ked_config *c = &m->cfg;
    int B = r->B, T = r->cur_T, N = B * T, C = c->d_model, F = c->d_ff, H = c->n_head;
    int D = c->head_dim, HD = H * D, KVD = c->n_kv_head * D, V = c->vocab, L = c->n_layer;
    size_t NC = (size_t)N * C, NF = (size_t)N * F;
#define W_(l, s) model_param(m, l, s)->w
#define G_(l, s) model_param(m, l, s)->grad
    memset(k_time, 0, sizeof k_time);
    if (first) memset(k_flops, 0, sizeof k_flops);
    double t_all = now();
    // ---- forward
    const float *E = W_(-1, G_EMBED), *Pe = W_(-1, G_POS_EMBED);
    double t0 = now();
    float *x0 = r->L[0].resid_in;
#pragma omp parallel for if (N > 64)
    for (int n = 0; n < N; n++) {
        memcpy(x0 + (size_t)n * C, E + (size_t)r->ids[n] * C, sizeof(float) * C);
        for (int j = 0; j < C; j++) x0[(size_t)n * C + j] += Pe[(size_t)r->pos[n] * C + j];
    }
    k_time[K_EMBED] += now() - t0;
    for (int l = 0; l < L; l++) {
        layer_acts *a = &r->L[l];
        float *x = a->resid_in, *out = l + 1 < L ? r->L[l + 1].resid_in : r->resid_final;
        TIMED(K_LN, layernorm_forward(a->h1, a->h1_mean, a->h1_rstd, x, W_(l, P_ATTN_NORM_W),
                                      W_(l, P_ATTN_NORM_B), N, C, c->norm_eps));
        MMF(K_MM_QKV, N, HD, C);
        MMF(K_MM_KV_ROWS, 2 * N, KVD, C);
        MMF(K_MM_O, N, C, HD);
        MMF(K_MM_FC, N, F, C);
        MMF(K_MM_PROJ, N, C, F);
        MMF(K_ATTN, 2 * B * H, (double)T * (T + 1) / 2, D); // the causal half of QK^T and att V
        MMF(K_ATTN_B, 4 * B * H, (double)T * (T + 1) / 2, D);
        TIMED(K_MM_QKV, matmul_forward(a->q, a->h1, W_(l, P_WQ), W_(l, P_BQ), N, C, HD));
        // k, v packed (B, T, KV, D) in a backward run: one N-row product each
        TIMED(K_MM_KV_ROWS, matmul_forward(a->k, a->h1, W_(l, P_WK), W_(l, P_BK), N, C, KVD));
        TIMED(K_MM_KV_ROWS, matmul_forward(a->v, a->h1, W_(l, P_WV), W_(l, P_BV), N, C, KVD));
        for (int b = 0; b < B; b++)
            TIMED(K_ATTN,
                  attention_forward(a->atty + (size_t)b * T * HD, a->att + (size_t)b * H * T * T,
                                    a->q + (size_t)b * T * HD, a->k + (size_t)b * T * KVD,
                                    a->v + (size_t)b * T * KVD, &r->key_len[b], 1, T, T, H,
                                    c->n_kv_head, D, 0, 0));
        TIMED(K_MM_O, matmul_forward(a->attn_out, a->atty, W_(l, P_WO), W_(l, P_BO), N, HD, C));
        TIMED(K_RESID, for (size_t i = 0; i < NC; i++) a->mid[i] = x[i] + a->attn_out[i]);
        TIMED(K_LN, layernorm_forward(a->h2, a->h2_mean, a->h2_rstd, a->mid, W_(l, P_MLP_NORM_W),
                                      W_(l, P_MLP_NORM_B), N, C, c->norm_eps));
        TIMED(K_MM_FC, matmul_forward(a->pre_up, a->h2, W_(l, P_WUP), W_(l, P_BUP), N, C, F));
        TIMED(K_GELU, gelu_forward(a->key, a->pre_up, NF));
        TIMED(K_MM_PROJ,
              matmul_forward(a->mlp_out, a->key, W_(l, P_WDOWN), W_(l, P_BDOWN), N, F, C));
        TIMED(K_RESID, for (size_t i = 0; i < NC; i++) out[i] = a->mid[i] + a->mlp_out[i]);
    }
    TIMED(K_LN,
          layernorm_forward(r->hf, r->hf_mean, r->hf_rstd, r->resid_final, W_(-1, G_FINAL_NORM_W),
                            W_(-1, G_FINAL_NORM_B), N, C, c->norm_eps));
    TIMED(K_SCATTER, memcpy(r->sel, r->hf, sizeof(float) * NC));
    MMF(K_MM_LOGITS, N, V, C);
    MMF(K_MM_LOGITS_B, N, C, V);
    MMF(K_MM_LOGITS_B_DW, V, C, N);
    TIMED(K_MM_LOGITS, matmul_forward(r->logits, r->sel, E, NULL, N, C, V));
    TIMED(K_LOSS, crossentropy_forward_backward(r->dlogits, r->logits, tgt, N, V, 1.0f));
    // ---- backward
    float *dE = G_(-1, G_EMBED);
    TIMED(K_MEMSET, memset(r->d_sel, 0, sizeof(float) * NC));
    TIMED(K_MM_LOGITS_B, matmul_backward(r->d_sel, NULL, NULL, r->dlogits, r->sel, E, N, C, V));
    TIMED(K_MM_LOGITS_B_DW, matmul_backward(NULL, dE, NULL, r->dlogits, r->sel, E, N, C, V));
    TIMED(K_SCATTER, {
        memset(r->d_h, 0, sizeof(float) * NC);
        for (size_t i = 0; i < NC; i++) r->d_h[i] += r->d_sel[i];
    });
    float *d = r->d_resid;
    TIMED(K_MEMSET, memset(d, 0, sizeof(float) * NC));
    TIMED(K_LN_B,
          layernorm_backward(d, G_(-1, G_FINAL_NORM_W), G_(-1, G_FINAL_NORM_B), r->d_h,
                             r->resid_final, W_(-1, G_FINAL_NORM_W), r->hf_mean, r->hf_rstd, N, C));
    for (int l = L - 1; l >= 0; l--) {
        layer_acts *a = &r->L[l];
        float *dx = d == r->d_resid ? r->d_mid : r->d_resid;
        TIMED(K_MEMSET, memset(r->d_key, 0, sizeof(float) * NF));
        mm_bwd(r->d_key, G_(l, P_WDOWN), G_(l, P_BDOWN), d, a->key, W_(l, P_WDOWN), N, F, C,
               K_MM_B_DW, first);
        TIMED(K_MEMSET, {
            memset(r->d_up, 0, sizeof(float) * NF);
            memset(r->d_h, 0, sizeof(float) * NC);
        });
        TIMED(K_GELU_B, gelu_backward(r->d_up, r->d_key, a->pre_up, NF));
        mm_bwd(r->d_h, G_(l, P_WUP), G_(l, P_BUP), r->d_up, a->h2, W_(l, P_WUP), N, C, F, K_MM_B_DW,
               first);
        TIMED(K_MEMSET, memcpy(dx, d, sizeof(float) * NC));
        TIMED(K_LN_B,
              layernorm_backward(dx, G_(l, P_MLP_NORM_W), G_(l, P_MLP_NORM_B), r->d_h, a->mid,
                                 W_(l, P_MLP_NORM_W), a->h2_mean, a->h2_rstd, N, C));
        TIMED(K_MEMSET, memset(r->d_atty, 0, sizeof(float) * (size_t)N * HD));
        mm_bwd(r->d_atty, G_(l, P_WO), G_(l, P_BO), dx, a->atty, W_(l, P_WO), N, HD, C, K_MM_B_DW,
               first);
        TIMED(K_MEMSET, {
            memset(r->d_q, 0, sizeof(float) * (size_t)N * HD);
            memset(r->d_k, 0, sizeof(float) * (size_t)N * KVD);
            memset(r->d_v, 0, sizeof(float) * (size_t)N * KVD);
        });
        for (int b = 0; b < B; b++)
            TIMED(K_ATTN_B,
                  attention_backward(r->d_q + (size_t)b * T * HD, r->d_k + (size_t)b * T * KVD,
                                     r->d_v + (size_t)b * T * KVD, r->d_atty + (size_t)b * T * HD,
                                     a->att + (size_t)b * H * T * T, a->q + (size_t)b * T * HD,
                                     a->k + (size_t)b * T * KVD, a->v + (size_t)b * T * KVD, 1, T,
                                     T, H, c->n_kv_head, D));
        TIMED(K_MEMSET, memset(r->d_h, 0, sizeof(float) * NC));
        mm_bwd(r->d_h, G_(l, P_WQ), G_(l, P_BQ), r->d_q, a->h1, W_(l, P_WQ), N, C, HD, K_MM_B_DW,
               first);
        mm_bwd(r->d_h, G_(l, P_WK), G_(l, P_BK), r->d_k, a->h1, W_(l, P_WK), N, C, KVD, K_MM_B_DW,
               first);
        mm_bwd(r->d_h, G_(l, P_WV), G_(l, P_BV), r->d_v, a->h1, W_(l, P_WV), N, C, KVD, K_MM_B_DW,
               first);
        TIMED(K_LN_B,
              layernorm_backward(dx, G_(l, P_ATTN_NORM_W), G_(l, P_ATTN_NORM_B), r->d_h,
                                 a->resid_in, W_(l, P_ATTN_NORM_W), a->h1_mean, a->h1_rstd, N, C));
        d = dx;
    }
    float *dP = G_(-1, G_POS_EMBED);
    TIMED(K_EMBED_B, for (int n = 0; n < N; n++) {
        const float *dn = d + (size_t)n * C;
        for (int j = 0; j < C; j++) dE[(size_t)r->ids[n] * C + j] += dn[j];
        for (int j = 0; j < C; j++) dP[(size_t)r->pos[n] * C + j] += dn[j];
    });
    k_wall = now() - t_all;
#undef W_
#undef G_
}

// reps replays; each kernel's time is its best over the replays (the machine may be shared)
static void breakdown(ked_model *m, ked_run *r, const int *tgt, int reps, double step_s,
                      double peak) {
    double best[K_COUNT], wall = 1e30;
    for (int k = 0; k < K_COUNT; k++) best[k] = 1e30;
    for (int i = 0; i < reps; i++) {
        breakdown_once(m, r, tgt, i == 0);
        for (int k = 0; k < K_COUNT; k++) best[k] = k_time[k] < best[k] ? k_time[k] : best[k];
        wall = k_wall < wall ? k_wall : wall;
    }
    double sum = 0;
    for (int k = 0; k < K_COUNT; k++) sum += best[k];
    printf("breakdown of one forward + loss + backward (B=%d T=%d), best of %d replays:\n", r->B,
           r->cur_T, reps);
    int order[K_COUNT];
    for (int k = 0; k < K_COUNT; k++) order[k] = k;
    for (int i = 0; i < K_COUNT; i++) // largest first
        for (int j = i + 1; j < K_COUNT; j++)
            if (best[order[j]] > best[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    for (int i = 0; i < K_COUNT; i++) {
        int k = order[i];
        printf("  breakdown %-34s %7.3f s %5.1f%%", k_names[k], best[k], 100 * best[k] / sum);
        if (k_flops[k] > 0)
            printf("  %6.1f GFLOP/s (%3.0f%% of peak)", k_flops[k] / best[k] * 1e-9,
                   100 * k_flops[k] / best[k] * 1e-9 / peak);
        printf("\n");
    }
    printf("  breakdown %-34s %7.3f s (best replay wall %.3f s; measured step best %.3f s)\n",
           "sum", sum, wall, step_s);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_model [--dir DIR] [--peak GFLOPS] [--iters N] [--threads N] "
                    "[--batch B] [--seq T] [--decode N] [--only fwd|bwd|all] [--breakdown REPS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *dir = "build/bench/gpt2-small-random", *only = "all";
    double peak_in = 0;
    int iters = 3, threads = 2, B = 8, T = 128, n_decode = 128, n_breakdown = 0;
    for (int i = 1; i < argc; i += 2) { // --option value pairs
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--load-only") && v) return load_only(v);
        if (!v) usage();
        if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--peak")) peak_in = atof(v);
        else if (!strcmp(a, "--iters")) iters = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--seq")) T = atoi(v);
        else if (!strcmp(a, "--decode")) n_decode = atoi(v);
        else if (!strcmp(a, "--only")) only = v;
        else if (!strcmp(a, "--breakdown")) n_breakdown = atoi(v);
        else usage();
    }
    if (iters < 1 || threads < 1 || B < 1 || T < 1 || T > P_ || n_decode < 0) usage();
    int do_fwd = strcmp(only, "bwd") != 0, do_bwd = strcmp(only, "fwd") != 0;
    setvbuf(stdout, NULL, _IOLBF, 0);

    write_gpt2_small(dir);

    // the load, in a fresh process
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork", NULL);
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "--load-only", dir, (char *)NULL);
        _exit(127);
    }
    int wst = 0;
    if (waitpid(pid, &wst, 0) < 0 || !WIFEXITED(wst) || WEXITSTATUS(wst))
        die("the load-only child failed", NULL);

    ked_error err;
    ked_model *m = NULL;
    if (ked_model_load(dir, &m, &err)) die("ked_model_load", &err);
    ked_set_threads(threads);
    const ked_config *c = ked_model_config(m);
    printf("threads %d\nbatch %d\nseq %d\n", threads, B, T);

    // FLOPs (see the header)
    double N = (double)B * T, Cd = c->d_model;
    double p_mm = (double)c->n_layer * 12 * Cd * Cd + (double)c->vocab * Cd;
    double attn = (double)c->n_layer * 2 * Cd * B * (double)T * (T + 1);
    double f_fwd = 2 * N * p_mm + attn, f_fb = 3 * f_fwd;
    printf("matmul_params %.0f\nflops_fwd %.4g\nflops_fwd_bwd %.4g\n", p_mm, f_fwd, f_fb);

    double peak_here = sgemm_peak(threads);
    openblas_set_num_threads(threads);
    printf("sgemm_peak_here_before_gflops %.1f\n", peak_here);

    int *ids = malloc(sizeof(int) * (size_t)N), *tgt = malloc(sizeof(int) * (size_t)N);
    double *ts = malloc(sizeof(double) * (size_t)iters);
    if (!ids || !tgt || !ts) die("ids", NULL);
    for (int i = 0; i < (int)N; i++) ids[i] = (int)(rng_u32() % (uint32_t)c->vocab);
    for (int i = 0; i < (int)N; i++)
        tgt[i] = (i + 1) % T ? ids[i + 1] : (int)(rng_u32() % (uint32_t)c->vocab);

    ked_run *r = NULL;
    if (ked_run_new(m, B, T, T, 1, &r, &err)) die("ked_run_new", &err);
    printf("run_mb %.1f\n", ked_run_bytes(r) / 1e6);
    timing t_fwd = {0, 0}, t_fb = {0, 0};
    if (do_fwd) {
        for (int it = -1; it < iters; it++) {
            double t0 = now();
            if (ked_forward(m, r, ids, B, T, NULL, NULL, &err)) die("ked_forward", &err);
            if (it >= 0) ts[it] = now() - t0;
            else printf("fwd_warmup_s %.3f\n", now() - t0);
        }
        t_fwd = summarize(ts, iters);
    }
    if (do_bwd) {
        if (ked_model_grad_enable(m, "*", &err)) die("ked_model_grad_enable", &err);
        float loss = 0;
        for (int it = -1; it < iters; it++) {
            ked_model_grad_zero(m); // outside the timing, as zero_grad is in the PyTorch script
            double t0 = now();
            if (ked_forward(m, r, ids, B, T, NULL, NULL, &err)) die("ked_forward", &err);
            loss = ked_loss_crossentropy(r, tgt, 1);
            if (ked_backward(m, r, &err)) die("ked_backward", &err);
            if (it >= 0) ts[it] = now() - t0;
            else printf("fwd_bwd_warmup_s %.3f\n", now() - t0);
        }
        t_fb = summarize(ts, iters);
        printf("loss %.4f (ln V = %.4f)\n", loss, log((double)c->vocab));
        if (n_breakdown > 0)
            breakdown(m, r, tgt, n_breakdown, t_fb.best, peak_in > peak_here ? peak_in : peak_here);
    }
    double peak_after = sgemm_peak(threads);
    openblas_set_num_threads(threads);
    printf("sgemm_peak_here_after_gflops %.1f\n", peak_after);
    peak_here = peak_after > peak_here ? peak_after : peak_here;
    double peak = peak_in > peak_here ? peak_in : peak_here;
    printf("peak_gflops_used %.1f\n", peak);
    if (do_fwd) report("fwd", t_fwd, N, f_fwd, peak);
    if (do_bwd) report("fwd_bwd", t_fb, N, f_fb, peak);
    long hwm = status_kb("VmHWM");
    printf("peak_rss_mb_all %.1f\n", hwm * 1024.0 / 1e6);
    ked_run_free(r);

    if (n_decode > 0) { // KV-cached greedy decode, batch 1, from a 16-token prompt
        int prompt[16], *out = malloc(sizeof(int) * (16 + (size_t)n_decode));
        if (!out) die("decode buffer", NULL);
        for (int i = 0; i < 16; i++) prompt[i] = (int)(rng_u32() % (uint32_t)c->vocab);
        ked_generate_opts o = ked_generate_defaults();
        o.max_new = n_decode;
        o.stop_at_eos = 0;
        int n_out = 0;
        o.max_new = 4; // warm-up
        if (ked_generate(m, prompt, 16, &o, out, 16 + n_decode, &n_out, NULL, NULL, &err))
            die("ked_generate", &err);
        o.max_new = n_decode;
        double t0 = now();
        if (ked_generate(m, prompt, 16, &o, out, 16 + n_decode, &n_out, NULL, NULL, &err))
            die("ked_generate", &err);
        double dt = now() - t0;
        printf("decode_new_tokens %d\ndecode_s %.3f\ndecode_tok_s %.1f\n", n_out - 16, dt,
               (n_out - 16) / dt);
        free(out);
    }
    free(ids); free(tgt); free(ts);
    ked_model_free(m);
    return 0;
}
