// edit.h: the editing core's internals (docs/editing.md): patches, tokenised requests, the
// machinery the locate-then-edit methods share (keys, the v* optimisation, Adam), and the
// methods. Public API: include/ked.h, section "edit".
//
// Dimension letters: C d_model, F d_ff, V vocab, R rank of a low-rank entry.
#ifndef KED_EDIT_H
#define KED_EDIT_H

#include "ked.h"
#include "core/core.h"
#include "model/model.h"

/* ---- patches (patch.c) ------------------------------------------------------------------------ */

// one tensor's change, addressed by slot. Dense: delta (rows, cols). Low rank: a (rows, R),
// b (cols, R), delta[i][j] = sum_r a[i][r] b[j][r], always summed in r order (bit-exact replays).
typedef struct {
    int layer, slot;          // model_param(m, layer, slot); layer < 0: a global slot
    int64_t rows, cols;
    int rank;                 // 0: dense
    float *delta;             // (rows, cols) when dense
    float *a, *b;             // (rows, R), (cols, R) when low rank
} patch_entry;

struct ked_patch {
    char method[16];
    patch_entry *e;
    int n;
    char **names;             // HF tensor name per entry (filled by patch_add)
    char *note;               // what the edit was ("prompt -> target"), may be NULL
    // method state the edit changed (design.md §2): AlphaEdit's keys of this edit per layer
    // (their K K^T is its contribution to the running sum cache_c); freed with the patch
    struct { int layer; int64_t rows, cols; float *data; } state[KED_MAX_EDIT_LAYERS];
    int n_state;
};

// patch_new: an empty patch of a method; patch_add_*: append an entry (copies the data).
ked_status patch_new(const char *method, ked_patch **out, ked_error *err);
ked_status patch_add_dense(ked_patch *p, const ked_model *m, int layer, int slot,
                           const float *delta, ked_error *err);
ked_status patch_add_lowrank(ked_patch *p, const ked_model *m, int layer, int slot, int rank,
                             const float *a, const float *b, ked_error *err);
// patch_entry_add: w (rows, cols) += the entry's delta, element by element
void patch_entry_add(const patch_entry *e, float *w);
// patch_hf_name: the HF name of a slot's tensor for m's family (into buf), 0 if it has none
int patch_hf_name(const ked_model *m, int layer, int slot, char *buf, size_t cap);

// a weight made temporarily writable: param->w points to a private copy until temp_weight_end
// puts the original pointer back (methods that optimise weights, or stack several layers' edits,
// leave the model as they found it)
typedef struct {
    ked_param *p;
    float *orig, *tmp;
} temp_weight;
ked_status temp_weight_begin(ked_model *m, int layer, int slot, temp_weight *t, ked_error *err);
void temp_weight_end(temp_weight *t);
// patch_find_slot: the (layer, slot) of an HF tensor name of m's family; 0 if none
int patch_find_slot(const ked_model *m, const char *name, int *layer, int *slot);

/* ---- tokenised requests (request.c) ----------------------------------------------------------- */

// one token sequence and its lookup index (the subject's last token, or the last token)
typedef struct {
    int *ids;
    int n;
    int lookup;
} edit_seq;

// a request turned into token ids: everything the methods need, nothing they must re-tokenise
typedef struct {
    edit_seq *ctx;            // (n_ctx) context templates formatted with the prompt; [0] usually "{}"
    int n_ctx;
    edit_seq bare;            // the prompt alone (BOS where the tokenizer adds it)
    edit_seq kl;              // "{subject} is a"
    int *target;              // (n_target) target ids without BOS
    int n_target;
} edit_case;

void edit_case_free(edit_case *c);
// edit_subject_last: the subject's last token in ids/spans of text: the last token with a
// non-empty span that starts before subj_end (the byte after the subject's last byte); -1 if none
int edit_subject_last(const ked_span *spans, int n, size_t subj_start, size_t subj_end);
// edit_target_ids: the ids of target as it continues prompt (see docs/editing.md)
ked_status edit_target_ids(const ked_tokenizer *tok, const char *prompt, const char *target,
                           int **ids, int *n, ked_error *err);
// edit_normalise_target: target with one leading space (EasyEdit adds " "); malloc'd
char *edit_normalise_target(const char *target);
// edit_lookup: the lookup token of a fact_token rule (ked_fact_token) in ids/spans of a text with
// the subject at [s0, s1); -1 if no token covers the subject
int edit_lookup(const ked_span *spans, int n, size_t s0, size_t s1, int fact_token);
// edit_case_build: tokenise req against the templates (each with one "{}"); fact_token picks
// the lookup token (ked_fact_token).
ked_status edit_case_build(const ked_tokenizer *tok, const ked_request *req,
                           const char *const *templates, int n_templates, int fact_token,
                           edit_case *out, ked_error *err);

/* ---- context templates (templates.c) ---------------------------------------------------------- */

// edit_templates_sample: EasyEdit's ROME recipe, seeded: "{}" then for each (length, count)
// count/5 samples (top-k 5) of at most `length` tokens (prompt included) from each of "The",
// "Therefore", "Because", "I", "You", braces removed, + ". {}". *out: malloc'd array of malloc'd
// strings, freed with edit_templates_free.
ked_status edit_templates_sample(const ked_model *m, const ked_tokenizer *tok,
                                 const int (*len_params)[2], int n_params, uint64_t seed,
                                 char ***out, int *n_out, ked_error *err);
// edit_templates_read: one template per line (blank lines skipped); each must hold "{}" once
ked_status edit_templates_read(const char *path, char ***out, int *n_out, ked_error *err);
void edit_templates_free(char **t, int n);

/* ---- keys and values at the lookup token (keys.c) ----------------------------------------------- */

// edit_capture_at: run seqs (stopping after `layer`) and copy the activation of points[k] of
// `layer` at each sequence's lookup token into outs[k] (n_seqs, width), k < n_points
ked_status edit_capture_at(const ked_model *m, const edit_seq *seqs, int n_seqs, int layer,
                           const ked_hook_point *points, float *const *outs, int n_points,
                           ked_error *err);
// edit_batch: seqs right-padded into ids (n_seqs, T) (padding repeats id of position 0) and
// len (n_seqs); extra[i] more ids appended to row i when extra_ids is not NULL
ked_status edit_batch(const edit_seq *seqs, int n_seqs, const int *extra_ids, const int *extra,
                      int **ids, int **len, int *T, ked_error *err);

/* ---- Adam (adam.c) ---------------------------------------------------------------------------- */

// torch.optim.Adam (betas 0.9, 0.999, eps 1e-8, L2 weight decay added to the gradient), in the
// same float32 operation order as torch 1.13's single-tensor implementation
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t n;
    int step;
    float *m, *v;             // (n)
} edit_adam;
ked_status edit_adam_init(edit_adam *a, int64_t n, float lr, float weight_decay, ked_error *err);
void edit_adam_step(edit_adam *a, float *param, const float *grad);
void edit_adam_free(edit_adam *a);

/* ---- the v* optimisation (vstar.c) -------------------------------------------------------------- */

#define VSTAR_MAX_POINTS 2
typedef struct {
    float *target_init;       // (P, C) the activation at ctx[0]'s lookup before any change, per
                              // hook point (P = 1 but with vstar_opts.points)
    float *delta;             // (P, C) the optimised deltas
    int n_points;             // P
    int n_steps;
    float loss[256];
    float nll_last, kl_last;
} vstar_result;
// what else a v* run does or hands back (all optional)
typedef struct {
    int full;                 // recompute every position of every row at every step from layer 0
                              // (the reference path; the default recomputes only each row's
                              // positions from its lookup token on, above `layer`)
    float *key_mean;          // (n, F): per request, the mean over its template rows of mlp_key
                              // at `layer` at the lookup token (ROME's k*), from the first forward
    float *key_row0;          // (n, F): mlp_key at `layer` at ctx[0]'s lookup token
    float *value_mean;        // (n, C): the mean over the template rows of hp->v_point at the
                              // lookup token before any delta (R-ROME's v0 when it is mlp_out)
    int n_points;             // > 0: a delta at each of points[] of `layer` instead of hp->v_point
    ked_hook_point points[VSTAR_MAX_POINTS]; // (PMET: mlp_out and attn_out), optimised jointly:
                              // wd sums ||delta_p|| / ||target_init_p||^2, each delta is clamped
                              // to clamp_norm_factor ||target_init_p||
    int pmet_rule;            // EasyEdit PMET compute_zs: the NLL weighted by hp->nll_loss_factor,
                              // a tenth of it once every target token is the argmax, and then
                              // the end when kl_factor * KL <= 0.01
    size_t budget;            // edit_vstar_all's bytes per run (0: its default rule below; any
                              // other value as given, e.g. 1 for one request per run in tests)
} vstar_opts;
// edit_vstar_run: EasyEdit's compute_v / compute_z (easyedit-reference.md §2.0) at hp->v_point of
// `layer` for n requests at once: one forward/backward per step over all their rows, a delta,
// Adam state and early stop per request; res (n). vo may be NULL. With vo->points the deltas of
// PMET's compute_zs (a delta per point and request).
ked_status edit_vstar_run(ked_model *m, const ked_hparams *hp, const edit_case *cs, int n,
                          int layer, const vstar_opts *vo, const ked_edit_opts *o,
                          vstar_result *res, ked_error *err);
// edit_vstar_all: edit_vstar_run over n requests in batches chosen from a memory budget: as many
// requests (at most VSTAR_MAX_BATCH) as keep a batch's run (run_bytes_for: activations, key/value
// cache, logits) within half the model's weight bytes, or VSTAR_MIN_BUDGET when that is more
// (vo->budget instead when set); at least one. The results are the same as one batch's (the
// requests never interact). res (n); the per-request outputs of vo (key_mean, ...) are filled
// for all n.
#define VSTAR_MAX_BATCH 16
#define VSTAR_MIN_BUDGET ((size_t)64 << 20)
ked_status edit_vstar_all(ked_model *m, const ked_hparams *hp, const edit_case *cs, int n,
                          int layer, const vstar_opts *vo, const ked_edit_opts *o,
                          vstar_result *res, ked_error *err);
// edit_vstar: one request (full as in vstar_opts); edit_vstar_batch: edit_vstar_all, vo NULL
ked_status edit_vstar(ked_model *m, const ked_hparams *hp, const edit_case *c, int layer,
                      int full, const ked_edit_opts *o, vstar_result *res, ked_error *err);
ked_status edit_vstar_batch(ked_model *m, const ked_hparams *hp, const edit_case *cs, int n,
                            int layer, const ked_edit_opts *o, vstar_result *res, ked_error *err);
void vstar_result_free(vstar_result *r);
// edit_info_begin: info (may be NULL) reset for an edit of n cases by `method` at `layer`;
// edit_info_add_losses: append a v* run's per-step losses to info->loss (as far as it holds)
void edit_info_begin(ked_edit_info *info, const char *method, int layer, const edit_case *cs,
                     int n);
void edit_info_add_losses(ked_edit_info *info, const vstar_result *r);

/* ---- methods ------------------------------------------------------------------------------------- */

// what a ROME edit computed (for the reference tests): k* = the key averaged over the templates
// (before normalisation), u = k*/|k*|, v* = target_init + delta, k0, v0, right
typedef struct {
    float *kstar, *u, *vstar, *k0, *v0, *right; // (F), (F), (C), (F), (C), (C)
    vstar_result vs;
} rome_trace;
void rome_trace_free(rome_trace *t);
// edit_rome_case: ROME (rrome = 0) or R-ROME (rrome = 1) on a tokenised case; trace may be NULL
ked_status edit_rome_case(ked_model *m, const ked_hparams *hp, const edit_case *c, int rrome,
                          const ked_edit_opts *o, ked_patch **out, rome_trace *trace,
                          ked_edit_info *info, ked_error *err);
// edit_ft_case: FT-L (hp->ft_target_new = 0) or FT-M on a tokenised case (uses bare + target)
ked_status edit_ft_case(ked_model *m, const ked_hparams *hp, const edit_case *c,
                        const ked_edit_opts *o, ked_patch **out, ked_edit_info *info,
                        ked_error *err);

/* ---- statistics and the covariance-weighted methods (stats.c, memit.c) ------------------------- */

// edit_stats_ids: add sum k k^T (upper triangle, float64) of mlp_key at every token of docs
// (ids, lens) for each layer into acc[k] (F*F), tokens into *count; batches of ~batch_tokens
ked_status edit_stats_ids(const ked_model *m, const int *const *docs, const int *lens, int n_docs,
                          const int *layers, int n_layers, int batch_tokens, double **acc,
                          int64_t *count, ked_error *err);
// edit_stats_layer: the statistics of one layer (EasyEdit's .npz when hp names one, else ked's
// cache, else computed from the corpus of o->stats)
ked_status edit_stats_layer(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                            const ked_edit_opts *o, int layer, ked_stats *out, ked_error *err);
// edit_stats_ensure: every layer of hp->layers has statistics before an edit starts: the
// missing ones computed together in one pass over the corpus (cached), or the error that names
// mom2_dataset and --stats-corpus when there is none
ked_status edit_stats_ensure(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                             const ked_edit_opts *o, ked_error *err);
// edit_rome_mom2: u = C^-1 kstar / |C^-1 kstar| with the cached statistics of layer L
ked_status edit_rome_mom2(ked_model *m, const ked_hparams *hp, const ked_edit_opts *o, int L,
                          const float *kstar, float *u, ked_error *err);
// edit_memit_solve: one layer's update of MEMIT (kind 0), EMMET (1), AlphaEdit (2) from the keys
// K (F, n), residuals R (C, n) and the statistics S; cache (F, F, AlphaEdit's sum of earlier
// K K^T) may be NULL. dW = a b^T with a = fa (C, n), b = fb (F, n); *null_dim: AlphaEdit's kept
// null-space dimension.
ked_status edit_memit_solve(int kind, const ked_hparams *hp, const ked_stats *S, const double *K,
                            const double *R, int C, int n, const double *cache,
                            const ked_edit_opts *o, float *fa, float *fb, int *null_dim,
                            ked_error *err);
// edit_memit_keys: K (F, n), column j = case j's mlp_key at layer l at the lookup token averaged
// over its templates as EasyEdit's MEMIT family groups them (ctx[0] 1/2, the others share 1/2)
ked_status edit_memit_keys(const ked_model *m, const edit_case *cs, int n, int l, double *K,
                           ked_error *err);
// edit_bare_outputs_at: cur (n, C) = point pt of layer zL at each case's bare prompt's lookup
// token (batched forwards)
ked_status edit_bare_outputs_at(const ked_model *m, const edit_case *cs, int n, int zL,
                                ked_hook_point pt, float *cur, ked_error *err);
// edit_memit_cases: MEMIT (kind 0), EMMET (1), AlphaEdit (2) on tokenised cases
ked_status edit_memit_cases(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                            const edit_case *cs, int n, int kind, const ked_edit_opts *o,
                            ked_patch **out, ked_edit_info *info, ked_error *err);
// the same given z (C, n) for the reference tests: no z optimisation (z NULL: optimise)
ked_status edit_memit_given(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                            const edit_case *cs, int n, int kind, const ked_edit_opts *o,
                            const float *z, ked_patch **out, ked_edit_info *info, ked_error *err);

// PMET (pmet.c): edit_pmet_zs: EasyEdit's compute_zs at zL for n cases, z_mlp and z_attn (C, n)
// (z_attn may be NULL); info (may be NULL) collects the losses. edit_pmet_given: the update given
// z_mlp (C, n) (NULL: optimised); edit_pmet_cases: the whole edit.
ked_status edit_pmet_zs(ked_model *m, const ked_hparams *hp, const edit_case *cs, int n, int zL,
                        const ked_edit_opts *o, float *z_mlp, float *z_attn, ked_edit_info *info,
                        ked_error *err);
ked_status edit_pmet_given(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                           const edit_case *cs, int n, const ked_edit_opts *o, const float *z,
                           ked_patch **out, ked_edit_info *info, ked_error *err);
ked_status edit_pmet_cases(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                           const edit_case *cs, int n, const ked_edit_opts *o, ked_patch **out,
                           ked_edit_info *info, ked_error *err);

// edit_norm2: the Euclidean norm of x (n), accumulated in double (vstar.c)
double edit_norm2(const float *x, int n);

#endif
