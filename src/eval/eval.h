// eval.h: the evaluation's internals (docs/evaluation.md): one case's quality in EasyEdit's JSON
// layout, locality finalisation, the results file and its summary. Public API: include/ked.h,
// section "eval".
#ifndef KED_EVAL_H
#define KED_EVAL_H

#include <jansson.h>
#include "ked.h"
#include "core/core.h"

// eval_teacher_forced: ked_eval_teacher_forced; aligned = 1: prompt ids + the target's ids when
// the prompt's ids are not a prefix of the joint text's (ked_eval_opts.aligned_targets)
ked_status eval_teacher_forced(const ked_model *m, const ked_tokenizer *tok, const char *prompt,
                               const char *target, int aligned, double *acc, double *nll, int **pred,
                               int **labels, int *k, ked_error *err);

typedef struct {
    int aligned;
    int fluency, fluency_len;
    uint64_t fluency_seed;    // the seed of this case's fluency sample (same pre and post)
} quality_opts;

// eval_quality: EasyEdit's compute_edit_quality of case c on m as it is now (+ ROME's
// CounterFact probabilities when c->counterfact); *out a new JSON object
ked_status eval_quality(const ked_model *m, const ked_tokenizer *tok, const ked_case *c,
                        const quality_opts *o, json_t **out, ked_error *err);
// eval_finalize_locality: post.locality["<k>_acc"] = per prompt ked_eval_locality(pre output,
// post output) (EasyEdit's finalize_locality_metrics)
ked_status eval_finalize_locality(const json_t *pre, json_t *post, ked_error *err);
// eval_request_json: EasyEdit's request dict of a case
json_t *eval_request_json(const ked_case *c);
// eval_fluency_text: the text EasyEdit's test_generation_quality scores: a top-k 5 sample of
// `total` tokens (prompt included; no stop at EOS), decoded with special tokens, NFKD,
// "\n\n" -> " ", "<|endoftext|>" removed. malloc'd.
ked_status eval_fluency_text(const ked_model *m, const ked_tokenizer *tok, const char *prompt,
                             int total, uint64_t seed, char **text, ked_error *err);

// eval_summary_json: the summary of a results array (see docs/evaluation.md) into sum and a
// JSON object; eval_summary_table: the printed table
json_t *eval_summary_json(const json_t *results, ked_eval_summary *sum);
char *eval_summary_table(const json_t *root, const ked_eval_summary *sum);

// json helpers: a real or null for NaN
json_t *eval_real(double v);
#endif
