// memit.c: the covariance-weighted batch methods (easyedit-reference.md §2.4 MEMIT, §2.6 EMMET,
// §2.8 AlphaEdit) and the statistics lookup they share with ROME's mom2_adjustment.
//
//   z_j   = compute_z(request j) at zL = the last edit layer: the v* optimisation (vstar.c) with
//           delta added to the layer's output (resid_out); z_j = target_init + delta
//   for each edit layer l, ascending (each seeing the ones before it):
//     K   (F, n)  the mlp_key at the lookup token, averaged over the context templates as
//                 EasyEdit groups them: the bare prompt (ctx[0]) weight 1/2, the others share 1/2
//     cur (C, n)  resid_out of zL at the bare prompt's lookup token (the model as edited so far)
//     R   = (z - cur) / (number of layers left)
//     MEMIT:     dW = R (lambda C + K K^T)^-1 K)^T          b = (lambda C + K K^T)^-1 K
//     EMMET:     C' = lambda C + update_norm_lambda I,  D = K^T C'^-1 K + emmet_lambda I
//                dW = R D^-1 (C'^-1 K)^T                    a = R D^-1, b = C'^-1 K
//     AlphaEdit: P = U0 U0^T (eigenvectors of C with eigenvalue < nullspace_threshold)
//                dW^T = (P (K K^T + cache_c) + L2 I)^-1 P K R^T      b = that matrix times P K
//   each dW is a rank-n pair (a (C, n), b (F, n)): W_down += a b^T.
// Solves in float64 through LAPACKE (EasyEdit: MEMIT float64, EMMET float64/pinv, AlphaEdit
// float32; ked uses float64 for all three). AlphaEdit's cache_c (the sum of K K^T of earlier
// edits) is the keys each active alphaedit patch of opts->editor carries (recomputed on the
// edited model, as EasyEdit does): reverting a patch takes its keys out of the sum.
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "edit/edit.h"

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* ---- statistics for a layer --------------------------------------------------------------------- */

static void format_tmp(char *out, size_t cap, const char *tmpl, int layer) {
    const char *b = strstr(tmpl, "{}");
    if (!b) { snprintf(out, cap, "%s", tmpl); return; }
    snprintf(out, cap, "%.*s%d%s", (int)(b - tmpl), tmpl, layer, b + 2);
}

// how statistics are found or computed for an edit: the options given, EasyEdit's
// mom2_n_samples as the document budget when none is given; no corpus without a tokenizer
static ked_stats_opts stats_opts_for(const ked_hparams *hp, const ked_edit_opts *o,
                                     const ked_tokenizer *tok) {
    ked_stats_opts so = o && o->stats ? *o->stats : ked_stats_defaults();
    if (!tok) so.corpus = NULL;
    if (so.corpus && so.max_docs <= 0 && so.max_tokens <= 0 && hp->mom2_n_samples > 0)
        so.max_docs = hp->mom2_n_samples;
    return so;
}

// the statistics of one layer; compute = 0 only looks (EasyEdit's .npz, ked's cache under the
// same key as computing would use) and fails when there are none
static ked_status stats_layer(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                              const ked_edit_opts *o, int layer, int compute, ked_stats *out,
                              ked_error *err) {
    int F = ked_model_config(m)->d_ff;
    // EasyEdit's own file: {stats_dir}/{model}/{ds}_stats/{rewrite module}_float32_mom2_{n}.npz
    if (hp->stats_dir[0] && hp->rewrite_tmp[0]) {
        char mod[160], path[1024], base[256];
        const char *mp = ked_model_path(m), *sl = strrchr(mp, '/');
        snprintf(base, sizeof base, "%s", sl && sl[1] ? sl + 1 : mp);
        format_tmp(mod, sizeof mod, hp->rewrite_tmp, layer);
        size_t ml = strlen(mod);
        if (ml > 7 && !strcmp(mod + ml - 7, ".weight")) mod[ml - 7] = 0;
        snprintf(path, sizeof path, "%s/%s/%s_stats/%s_float32_mom2_%d.npz", hp->stats_dir, base,
                 hp->mom2_dataset[0] ? hp->mom2_dataset : "wikipedia", mod, hp->mom2_n_samples);
        if (ked_file_exists(path)) {
            ked_status st = ked_stats_read_npz(path, out, err);
            if (st) return st;
            if (out->dim != F) {
                ked_stats_free(out);
                return ked_fail(err, KED_ERR_FORMAT, "%s: statistics of dimension %d, the model's "
                                "d_ff is %d", path, out->dim, F);
            }
            out->layer = layer;
            return KED_OK;
        }
    }
    ked_stats_opts so = stats_opts_for(hp, o, tok);
    ked_error e2;
    ked_status st = ked_stats_get(m, compute ? tok : NULL, &layer, 1, &so, out, &e2);
    if (st && !so.corpus && compute) {
        char dir[1024];
        ked_stats_cache_dir(so.cache_dir, dir, sizeof dir);
        return ked_fail(err, st, "%s: %s needs second-moment statistics of layer %d, and none are "
                        "cached in %s: EasyEdit computes them from mom2_dataset '%s', ked from a "
                        "file: give --stats-corpus FILE (a text or JSONL file; or run ked stats "
                        "first)", hp->source, hp->method, layer, dir,
                        hp->mom2_dataset[0] ? hp->mom2_dataset : "wikipedia");
    }
    if (st && err) *err = e2;
    return st;
}

ked_status edit_stats_layer(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                            const ked_edit_opts *o, int layer, ked_stats *out, ked_error *err) {
    return stats_layer(m, tok, hp, o, layer, 1, out, err);
}

ked_status edit_stats_ensure(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                             const ked_edit_opts *o, ked_error *err) {
    int missing[KED_MAX_EDIT_LAYERS], n_missing = 0;
    for (int i = 0; i < hp->n_layers; i++) { // found (an .npz file or ked's cache), one at a time
        ked_stats S;
        if (!stats_layer(m, tok, hp, o, hp->layers[i], 0, &S, NULL)) ked_stats_free(&S);
        else missing[n_missing++] = hp->layers[i];
    }
    if (!n_missing) return KED_OK;
    ked_stats_opts so = stats_opts_for(hp, o, tok);
    if (!so.corpus) { // the error that names mom2_dataset and --stats-corpus
        ked_stats S;
        ked_status st = edit_stats_layer(m, tok, hp, o, missing[0], &S, err);
        if (!st) ked_stats_free(&S);
        return st;
    }
    // the missing layers together: one pass over the corpus, cached for the edit to read
    ked_stats S[KED_MAX_EDIT_LAYERS];
    ked_status st = ked_stats_get(m, tok, missing, n_missing, &so, S, err);
    for (int i = 0; !st && i < n_missing; i++) ked_stats_free(&S[i]);
    return st;
}

/* ---- small fp64 linear algebra ------------------------------------------------------------------ */

// a symmetric matrix (F, F) as what it is made of: lam C + diag I + K K^T (C (F, F) row-major,
// symmetric; K (F, nk) row-major, or NULL). Built where it is factored, so a solve needs no copy
// of it: a second build replaces one.
typedef struct {
    const double *C;
    double lam, diag;
    const double *K;
    int nk;
} sym_spec;

// A (F, F) = the matrix of s: its upper triangle in row-major order (= its lower triangle in
// column-major order), and with full the lower one too
static void sym_build(const sym_spec *s, double *A, int F, int full) {
    for (int i = 0; i < F; i++) {
        const double *c = s->C + (size_t)i * F;
        double *a = A + (size_t)i * F;
        for (int j = i; j < F; j++) a[j] = s->lam * c[j];
        a[i] += s->diag;
    }
    if (s->K && s->nk > 0)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, F, s->nk, 1.0, s->K, s->nk, 1.0, A, F);
    for (int i = 0; full && i < F; i++)
        for (int j = 0; j < i; j++) A[(size_t)i * F + j] = A[(size_t)j * F + i];
}

// b (F, n) row-major = A^-1 b for the symmetric A of s: Cholesky, then an LU solve when A is not
// positive definite. LAPACK's column-major calls on the row-major upper triangle (its lower one
// column-major): no transposed copy of A; A (F^2 doubles) is the one buffer of F^2.
static ked_status solve_sym(const sym_spec *s, double *b, int F, int n, const char *what,
                            ked_error *err) {
    double *A = malloc(sizeof(double) * (size_t)F * F), *bt = malloc(sizeof(double) * (size_t)F * n);
    int *piv = NULL;
    if (!A || !bt) { free(A); free(bt); return ked_fail(err, KED_ERR_NOMEM, "out of memory"); }
    // bt (n, F) row-major = b column-major
    for (int i = 0; i < F; i++)
        for (int j = 0; j < n; j++) bt[(size_t)j * F + i] = b[(size_t)i * n + j];
    sym_build(s, A, F, 0);
    lapack_int info = LAPACKE_dposv(LAPACK_COL_MAJOR, 'L', F, n, A, F, bt, F);
    if (info > 0) { // not positive definite: A again, whole, and LU (b untouched so far)
        sym_build(s, A, F, 1);
        for (int i = 0; i < F; i++)
            for (int j = 0; j < n; j++) bt[(size_t)j * F + i] = b[(size_t)i * n + j];
        piv = malloc(sizeof(int) * (size_t)F);
        info = piv ? LAPACKE_dgesv(LAPACK_COL_MAJOR, F, n, A, F, piv, bt, F) : -1;
    }
    for (int i = 0; !info && i < F; i++)
        for (int j = 0; j < n; j++) b[(size_t)i * n + j] = bt[(size_t)j * F + i];
    free(A); free(bt); free(piv);
    if (info) return ked_fail(err, KED_ERR_ARG, "%s: the matrix is singular (LAPACK info %d)", what, (int)info);
    return KED_OK;
}

// the null space of C: eigenvectors with eigenvalue < thr (thr < 0: |thr| times the largest
// eigenvalue), U0 (F, k) row-major malloc'd; cached beside the statistics in the cache directory
static ked_status null_space(const ked_stats *s, double thr, const ked_edit_opts *o, double **U0,
                             int *k, ked_error *err) {
    int F = s->dim;
    char dir[1024], path[1400];
    ked_stats_cache_dir(o && o->stats ? o->stats->cache_dir : NULL, dir, sizeof dir);
    char key[600];
    int kl = snprintf(key, sizeof key, "%s|%lld|%.9g", s->source, (long long)s->count, thr);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < kl; i++) h = (h ^ (unsigned char)key[i]) * 0x100000001b3ull;
    snprintf(path, sizeof path, "%s/%016llx-null.kproj", dir, (unsigned long long)h);
    char *data = NULL;
    size_t n = 0;
    if (ked_file_exists(path) && !ked_read_file(path, &data, &n, NULL)) {
        int64_t hd[3];
        if (n >= 32 && !memcmp(data, "KEDPROJ1", 8)) {
            memcpy(hd, data + 8, 24);
            if (hd[0] == F && hd[1] >= 0 && hd[1] <= F && n == 32 + (size_t)F * hd[1] * 8) {
                *k = (int)hd[1];
                *U0 = malloc(sizeof(double) * (size_t)F * (hd[1] ? hd[1] : 1));
                if (*U0) { memcpy(*U0, data + 32, (size_t)F * hd[1] * 8); free(data); return KED_OK; }
            }
        }
        free(data);
    }
    double *A = malloc(sizeof(double) * (size_t)F * F), *w = malloc(sizeof(double) * (size_t)F);
    if (!A || !w) { free(A); free(w); return ked_fail(err, KED_ERR_NOMEM, "out of memory"); }
    memcpy(A, s->mom2, sizeof(double) * (size_t)F * F);
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', F, A, F, w);
    if (info) { free(A); free(w); return ked_fail(err, KED_ERR_ARG, "AlphaEdit: the eigendecomposition of C failed (LAPACK info %d)", (int)info); }
    double t = thr < 0 ? -thr * w[F - 1] : thr;
    int kk = 0;
    while (kk < F && w[kk] < t) kk++; // ascending eigenvalues
    double *U = malloc(sizeof(double) * (size_t)F * (kk ? kk : 1));
    if (!U) { free(A); free(w); return ked_fail(err, KED_ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < F; i++)
        for (int j = 0; j < kk; j++) U[(size_t)i * kk + j] = A[(size_t)i * F + j];
    free(A); free(w);
    size_t bytes = 32 + (size_t)F * kk * 8;
    char *buf = malloc(bytes);
    if (buf) {
        int64_t hd[3] = {F, kk, 0};
        memcpy(buf, "KEDPROJ1", 8);
        memcpy(buf + 8, hd, 24);
        memcpy(buf + 32, U, (size_t)F * kk * 8);
        mkdir(dir, 0755);
        ked_write_file_atomic(path, buf, bytes, NULL); // a cache: failing to write is fine
        free(buf);
    }
    *U0 = U;
    *k = kk;
    return KED_OK;
}

/* ---- keys ------------------------------------------------------------------------------------------ */

// cur (n, C): point pt (MEMIT: resid_out; PMET: mlp_out) of layer zL at each request's bare
// prompt's lookup token, in batches (one forward per request would read the weights of layers
// 0..zL once per request)
ked_status edit_bare_outputs_at(const ked_model *m, const edit_case *cs, int n, int zL,
                                ked_hook_point pt, float *cur, ked_error *err) {
    enum { ROWS = 32 };
    edit_seq seqs[ROWS];
    int C = m->cfg.d_model;
    for (int j0 = 0; j0 < n; j0 += ROWS) {
        int nb = n - j0 < ROWS ? n - j0 : ROWS;
        for (int j = 0; j < nb; j++) seqs[j] = cs[j0 + j].bare;
        float *out = cur + (size_t)j0 * C;
        ked_status st = edit_capture_at(m, seqs, nb, zL, &pt, &out, 1, err);
        if (st) return st;
    }
    return KED_OK;
}

// K (F, n) column j: case j's mlp_key at layer l averaged over its templates (EasyEdit's groups)
ked_status edit_memit_keys(const ked_model *m, const edit_case *cs, int n, int l, double *K,
                           ked_error *err) {
    // the template rows of whole requests, about ROWS at a time, in one capture forward each (one
    // forward per request would read the weights of layers 0..l once per request)
    enum { ROWS = 32 };
    int F = m->cfg.d_ff;
    for (int j0 = 0; j0 < n;) {
        int nr = 0, j1 = j0;
        while (j1 < n && (j1 == j0 || nr + cs[j1].n_ctx <= ROWS)) nr += cs[j1++].n_ctx;
        edit_seq *seqs = ked_malloc(sizeof *seqs * (size_t)nr, "keys", err);
        float *all = ked_malloc(sizeof(float) * (size_t)nr * F, "keys", err);
        if (!seqs || !all) { free(seqs); free(all); return KED_ERR_NOMEM; }
        for (int j = j0, r = 0; j < j1; j++)
            for (int i = 0; i < cs[j].n_ctx; i++) seqs[r++] = cs[j].ctx[i];
        ked_hook_point pt = KED_HOOK_MLP_KEY;
        ked_status st = edit_capture_at(m, seqs, nr, l, &pt, &all, 1, err);
        free(seqs);
        if (st) { free(all); return st; }
        for (int j = j0, r0 = 0; j < j1; r0 += cs[j].n_ctx, j++) {
            int nc = cs[j].n_ctx;
            const float *kj = all + (size_t)r0 * F; // (nc, F) this request's rows
            for (int f = 0; f < F; f++) {
                double v;
                if (nc == 1) v = kj[f];
                else {
                    double sum = 0;
                    for (int i = 1; i < nc; i++) sum += kj[(size_t)i * F + f];
                    v = 0.5 * kj[f] + 0.5 * sum / (nc - 1);
                }
                K[(size_t)f * n + j] = v;
            }
        }
        free(all);
        j0 = j1;
    }
    return KED_OK;
}

/* ---- the methods ------------------------------------------------------------------------------------ */

static const char *kind_name(int kind) { return kind == 1 ? "emmet" : kind == 2 ? "alphaedit" : "memit"; }

ked_status edit_memit_solve(int kind, const ked_hparams *hp, const ked_stats *Sp, const double *K,
                            const double *R, int C, int n, const double *cache,
                            const ked_edit_opts *o, float *fa, float *fb, int *null_dim,
                            ked_error *err) {
    int F = Sp->dim;
    const ked_stats S = *Sp;
    ked_status st = KED_OK;
    double *A = NULL, *B = malloc(sizeof(double) * (size_t)F * n);
    double *P = NULL, *U0 = NULL, *T1 = NULL;
    *null_dim = 0;
    if (!B) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    if (kind == 0 || kind == 1) {
        // MEMIT: lambda C + K K^T; EMMET: lambda C + update_norm_lambda I
        sym_spec A0 = {S.mom2, hp->mom2_update_weight, kind == 0 ? 0.0 : hp->update_norm_lambda,
                       kind == 0 ? K : NULL, n};
        memcpy(B, K, sizeof(double) * (size_t)F * n);
        if ((st = solve_sym(&A0, B, F, n, kind == 0 ? "MEMIT: lambda C + K K^T" : "EMMET: lambda C", err))) goto done;
        if (kind == 0) {
            for (size_t i = 0; i < (size_t)C * n; i++) fa[i] = (float)R[i];
        } else {
            // D = K^T B + emmet_lambda I (n, n); a = R D^-1  <=>  D a^T = R^T
            double *D = malloc(sizeof(double) * (size_t)n * n), *Rt = malloc(sizeof(double) * (size_t)n * C);
            if (!D || !Rt) { free(D); free(Rt); st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, F, 1.0, K, n, B, n, 0.0, D, n);
            for (int c = 0; c < C; c++)
                for (int j = 0; j < n; j++) Rt[(size_t)j * C + c] = R[(size_t)c * n + j];
            sym_spec Ds = {D, 1.0, hp->emmet_lambda, NULL, 0};
            st = solve_sym(&Ds, Rt, n, C, "EMMET: K^T C'^-1 K + emmet_lambda I", err);
            for (int c = 0; c < C && !st; c++)
                for (int j = 0; j < n; j++) fa[(size_t)c * n + j] = (float)Rt[(size_t)j * C + c];
            free(D); free(Rt);
            if (st) goto done;
        }
        for (size_t i = 0; i < (size_t)F * n; i++) fb[i] = (float)B[i];
    } else {
        // AlphaEdit: P = U0 U0^T
        int k = 0;
        if ((st = null_space(&S, hp->nullspace_threshold, o, &U0, &k, err))) goto done;
        *null_dim = k;
        A = malloc(sizeof(double) * (size_t)F * F);
        P = malloc(sizeof(double) * (size_t)F * F);
        T1 = malloc(sizeof(double) * (size_t)F * F);
        if (!A || !P || !T1) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        if (k > 0) cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, F, F, k, 1.0, U0, k, U0, k, 0.0, P, F);
        else memset(P, 0, sizeof(double) * (size_t)F * F);
        // T1 = K K^T + cache_c (full)
        memset(T1, 0, sizeof(double) * (size_t)F * F);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, F, F, n, 1.0, K, n, K, n, 0.0, T1, F);
        if (cache) for (size_t i = 0; i < (size_t)F * F; i++) T1[i] += cache[i];
        // A = P T1 + L2 I; B = P K
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, F, F, F, 1.0, P, F, T1, F, 0.0, A, F);
        double l2 = hp->L2, tr = 0;
        if (l2 < 0) { // relative to C's mean eigenvalue
            for (int i = 0; i < F; i++) tr += S.mom2[(size_t)i * F + i];
            l2 = -l2 * tr / F;
        }
        for (int i = 0; i < F; i++) A[(size_t)i * F + i] += l2;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, F, n, F, 1.0, P, F, K, n, 0.0, B, n);
        int *piv = malloc(sizeof(int) * (size_t)F);
        if (!piv) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        lapack_int inf = LAPACKE_dgesv(LAPACK_ROW_MAJOR, F, n, A, F, piv, B, n);
        free(piv);
        if (inf) { st = ked_fail(err, KED_ERR_ARG, "AlphaEdit: P (K K^T + cache) + L2 I is singular (LAPACK info %d)", (int)inf); goto done; }
        for (size_t i = 0; i < (size_t)C * n; i++) fa[i] = (float)R[i];
        for (size_t i = 0; i < (size_t)F * n; i++) fb[i] = (float)B[i];
    }
done:
    free(A); free(B); free(P); free(U0); free(T1);
    return st;
}

ked_status edit_memit_given(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                            const edit_case *cs, int n, int kind, const ked_edit_opts *o,
                            const float *zgiven, ked_patch **out, ked_edit_info *info,
                            ked_error *err) {
    const ked_config *cfg = ked_model_config(m);
    int C = cfg->d_model, F = cfg->d_ff, NL = hp->n_layers;
    if (n < 1) return ked_fail(err, KED_ERR_ARG, "%s: no requests", kind_name(kind));
    if (NL < 1) return ked_fail(err, KED_ERR_ARG, "%s: no layers to edit", hp->source);
    int layers[KED_MAX_EDIT_LAYERS];
    memcpy(layers, hp->layers, sizeof(int) * (size_t)NL);
    qsort(layers, (size_t)NL, sizeof(int), cmp_int);
    for (int i = 0; i < NL; i++)
        if (layers[i] < 0 || layers[i] >= cfg->n_layer)
            return ked_fail(err, KED_ERR_ARG, "%s: layer %d outside the model's layers 0..%d",
                            hp->source, layers[i], cfg->n_layer - 1);
    int zL = layers[NL - 1];
    ked_patch *p = NULL;
    ked_status st = patch_new(kind_name(kind), &p, err);
    if (st) return st;
    float *z = ked_malloc(sizeof(float) * (size_t)C * n, "z", err);
    float *cur = ked_malloc(sizeof(float) * (size_t)C * n, "cur", err);
    double *K = ked_malloc(sizeof(double) * (size_t)F * n, "keys", err);
    double *R = ked_malloc(sizeof(double) * (size_t)C * n, "residuals", err);
    float *fa = ked_malloc(sizeof(float) * (size_t)C * n, "patch", err);
    float *fb = ked_malloc(sizeof(float) * (size_t)F * n, "patch", err);
    double *T1 = NULL;
    temp_weight tw[KED_MAX_EDIT_LAYERS];
    memset(tw, 0, sizeof tw);
    ked_stats S = {0};
    vstar_result *vs = zgiven ? NULL : ked_calloc((size_t)n, sizeof *vs, "z", err);
    if (!z || !cur || !K || !R || !fa || !fb || (!zgiven && !vs)) { st = KED_ERR_NOMEM; goto done; }
    edit_info_begin(info, p->method, layers[0], cs, n);
    if ((st = edit_stats_ensure(m, tok, hp, o, err))) goto done;
    // z: one v* optimisation per request at the last layer's output (independent of each other)
    if (zgiven) memcpy(z, zgiven, sizeof(float) * (size_t)C * n);
    else {
        ked_hparams hz = *hp;
        hz.v_point = KED_HOOK_RESID_OUT;
        // batched as memory allows (vstar.c)
        if ((st = edit_vstar_batch(m, &hz, cs, n, zL, o, vs, err))) goto done;
        for (int j = 0; j < n; j++) {
            for (int c = 0; c < C; c++) z[(size_t)c * n + j] = vs[j].target_init[c] + vs[j].delta[c];
            edit_info_add_losses(info, &vs[j]);
            vstar_result_free(&vs[j]);
        }
    }
    for (int li = 0; li < NL; li++) {
        int l = layers[li];
        if ((st = edit_memit_keys(m, cs, n, l, K, err))) goto done;
        if ((st = edit_bare_outputs_at(m, cs, n, zL, KED_HOOK_RESID_OUT, cur, err))) goto done;
        for (int j = 0; j < n; j++)
            for (int c = 0; c < C; c++)
                R[(size_t)c * n + j] = ((double)z[(size_t)c * n + j] - cur[(size_t)j * C + c]) / (NL - li);
        if ((st = edit_stats_layer(m, tok, hp, o, l, &S, err))) goto done;
        if (info && li == 0) snprintf(info->stats_source, sizeof info->stats_source, "%s", S.source);
        {
            // AlphaEdit's cache_c: the keys the active alphaedit patches of the editor carry
            double *cache = NULL;
            const ked_editor *ed = o ? o->editor : NULL;
            if (kind == 2 && ed) {
                if (!T1) T1 = calloc((size_t)F * F, sizeof(double));
                if (!T1) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
                memset(T1, 0, sizeof(double) * (size_t)F * F);
                for (int pi = 0; pi < ked_editor_n_patches(ed); pi++) {
                    const ked_patch *q = ked_editor_patch(ed, pi);
                    if (!ked_editor_is_active(ed, pi) || strcmp(q->method, "alphaedit")) continue;
                    for (int s2 = 0; s2 < q->n_state; s2++) {
                        if (q->state[s2].layer != l || q->state[s2].rows != F) continue;
                        int nc = (int)q->state[s2].cols;
                        double *Sd = malloc(sizeof(double) * (size_t)F * nc);
                        if (!Sd) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
                        for (size_t i = 0; i < (size_t)F * nc; i++) Sd[i] = q->state[s2].data[i];
                        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, F, F, nc, 1.0, Sd, nc, Sd, nc, 1.0, T1, F);
                        free(Sd);
                    }
                }
                cache = T1;
            }
            int nk = 0;
            if ((st = edit_memit_solve(kind, hp, &S, K, R, C, n, cache, o, fa, fb, &nk, err))) goto done;
            if (info && li == 0 && kind == 2) info->null_space_dim = nk;
        }
        ked_stats_free(&S); // one layer's statistics at a time, and none during the keys
        if ((st = patch_add_lowrank(p, m, l, P_WDOWN, n, fa, fb, err))) goto done;
        // later layers (and AlphaEdit's keys after the edit) see this one
        if ((st = temp_weight_begin(m, l, P_WDOWN, &tw[li], err))) goto done;
        patch_entry_add(&p->e[p->n - 1], tw[li].tmp);
    }
    if (kind == 2) { // the keys on the edited model: this edit's share of cache_c
        for (int li = 0; li < NL; li++) {
            if ((st = edit_memit_keys(m, cs, n, layers[li], K, err))) goto done;
            float *kd = ked_malloc(sizeof(float) * (size_t)F * n, "AlphaEdit keys", err);
            if (!kd) { st = KED_ERR_NOMEM; goto done; }
            for (size_t i = 0; i < (size_t)F * n; i++) kd[i] = (float)K[i];
            p->state[p->n_state].layer = layers[li];
            p->state[p->n_state].rows = F;
            p->state[p->n_state].cols = n;
            p->state[p->n_state].data = kd;
            p->n_state++;
        }
    }
    *out = p;
    p = NULL;
done:
    for (int i = NL - 1; i >= 0; i--) temp_weight_end(&tw[i]);
    for (int j = 0; vs && j < n; j++) vstar_result_free(&vs[j]);
    free(vs);
    ked_stats_free(&S);
    free(z); free(cur); free(K); free(R); free(fa); free(fb);
    free(T1);
    ked_patch_free(p);
    return st;
}

ked_status edit_memit_cases(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                            const edit_case *cs, int n, int kind, const ked_edit_opts *o,
                            ked_patch **out, ked_edit_info *info, ked_error *err) {
    return edit_memit_given(m, tok, hp, cs, n, kind, o, NULL, out, info, err);
}

ked_status edit_rome_mom2(ked_model *m, const ked_hparams *hp, const ked_edit_opts *o, int L,
                          const float *kstar, float *u, ked_error *err) {
    int F = ked_model_config(m)->d_ff;
    ked_stats S = {0};
    ked_status st = edit_stats_layer(m, NULL, hp, o, L, &S, err);
    if (st) return st;
    double *b = malloc(sizeof(double) * (size_t)F);
    if (!b) { ked_stats_free(&S); return ked_fail(err, KED_ERR_NOMEM, "out of memory"); }
    for (int j = 0; j < F; j++) b[j] = kstar[j];
    sym_spec A = {S.mom2, 1.0, 0.0, NULL, 0};
    st = solve_sym(&A, b, F, 1, "ROME: C (mom2_adjustment)", err);
    if (!st) {
        double nn = 0;
        for (int j = 0; j < F; j++) nn += b[j] * b[j];
        nn = sqrt(nn);
        if (!(nn > 0)) st = ked_fail(err, KED_ERR_ARG, "ROME: C^-1 k* is zero at layer %d", L);
        for (int j = 0; j < F && !st; j++) u[j] = (float)(b[j] / nn);
    }
    free(b);
    ked_stats_free(&S);
    return st;
}
