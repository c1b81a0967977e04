// metrics.c: EasyEdit's teacher-forced token accuracy (test_prediction_acc,
// easyedit-reference.md §4.3) with ROME's per-token NLL from the same forward, and locality's
// token agreement (§4.4). One prompt per forward (B = 1): no padding, so how cases are grouped
// never changes a number. With `aligned`, a prompt whose ids are not a prefix of the joint
// text's (a tokenizer merging across the boundary) is scored on prompt ids + the target's ids
// (edit_target_ids, docs/editing.md) instead of EasyEdit's count-based split.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"
#include "eval/eval.h"

ked_status ked_eval_teacher_forced(const ked_model *m, const ked_tokenizer *tok, const char *prompt,
                                   const char *target, double *acc, double *nll, int **pred,
                                   int **labels, int *k_out, ked_error *err) {
    return eval_teacher_forced(m, tok, prompt, target, 0, acc, nll, pred, labels, k_out, err);
}

ked_status eval_teacher_forced(const ked_model *m, const ked_tokenizer *tok, const char *prompt,
                               const char *target, int aligned, double *acc, double *nll, int **pred,
                               int **labels, int *k_out, ked_error *err) {
    while (*target == ' ') target++;
    size_t lp = strlen(prompt), lt = strlen(target);
    char *text = malloc(lp + lt + 2);
    if (!text) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    memcpy(text, prompt, lp);
    text[lp] = ' ';
    memcpy(text + lp + 1, target, lt + 1);
    int *p = NULL, *ids = NULL, np = 0, n = 0, *lidx = NULL, *pr = NULL, *lb = NULL;
    ked_run *r = NULL;
    ked_status st = ked_tokenizer_encode(tok, prompt, lp, 1, &p, NULL, &np, err);
    if (!st) st = ked_tokenizer_encode(tok, text, lp + lt + 1, 1, &ids, NULL, &n, err);
    if (st) goto done;
    int prefix = n > np;
    for (int i = 0; prefix && i < np; i++) prefix = p[i] == ids[i];
    if (aligned && !prefix) { // prompt ids + the target's ids (the editing core's rule)
        int *t = NULL, nt = 0;
        if ((st = edit_target_ids(tok, prompt, text + lp, &t, &nt, err))) goto done;
        int *j = malloc(sizeof(int) * (size_t)(np + nt));
        if (!j) { free(t); st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        memcpy(j, p, sizeof(int) * (size_t)np);
        memcpy(j + np, t, sizeof(int) * (size_t)nt);
        free(t);
        free(ids);
        ids = j;
        n = np + nt;
    }
    int k = n - np; // scored positions (EasyEdit: by count, the prompt assumed a prefix)
    if (k < 0) k = 0;
    if (n > ked_model_config(m)->max_pos && ked_model_config(m)->max_pos > 0) {
        st = ked_fail(err, KED_ERR_ARG, "\"%s\" + \"%s\": %d tokens, more than the model's %d positions",
                      prompt, target, n, ked_model_config(m)->max_pos);
        goto done;
    }
    pr = malloc(sizeof(int) * (size_t)(k + 1));
    lb = malloc(sizeof(int) * (size_t)(k + 1));
    lidx = malloc(sizeof(int) * (size_t)(k + 1));
    if (!pr || !lb || !lidx) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    double good = 0, sum_nll = 0;
    if (k > 0) {
        for (int i = 0; i < k; i++) lidx[i] = np - 1 + i;
        if ((st = ked_run_new(m, 1, n - 1, n - 1, 0, &r, err))) goto done;
        ked_forward_opts o = ked_forward_defaults();
        o.logit_idx = lidx;
        o.n_logit = k;
        if ((st = ked_forward(m, r, ids, 1, n - 1, NULL, &o, err))) goto done;
        const float *logits = ked_run_logits(r, NULL);
        int V = ked_model_config(m)->vocab;
        for (int i = 0; i < k; i++) {
            const float *z = logits + (size_t)i * V;
            int best = 0;
            for (int v = 1; v < V; v++) if (z[v] > z[best]) best = v;
            double mx = z[best], se = 0;
            for (int v = 0; v < V; v++) se += exp((double)z[v] - mx);
            int y = ids[np + i];
            sum_nll += mx + log(se) - (double)z[y];
            good += best == y;
            pr[i] = best;
            lb[i] = y;
        }
    }
    if (acc) *acc = k ? good / k : NAN;
    if (nll) *nll = k ? sum_nll / k : NAN;
    if (pred) { *pred = pr; pr = NULL; }
    if (labels) { *labels = lb; lb = NULL; }
    if (k_out) *k_out = k;
done:
    ked_run_free(r);
    free(text); free(p); free(ids); free(lidx); free(pr); free(lb);
    return st;
}

double ked_eval_locality(const int *pre, const int *post, int n) {
    if (n <= 0) return NAN;
    int same = 0;
    for (int i = 0; i < n; i++) same += pre[i] == post[i];
    return (double)same / n;
}
