// accuracy.c: EasyEdit's teacher-forced token accuracy (test_prediction_acc,
// easyedit-reference.md §4.3) for one prompt: text = prompt + " " + target (target's own leading
// space removed first, since ked's targets may carry one), prompt_len = |encode(prompt)| (BOS
// included), predictions = argmax of the logits at positions prompt_len-1 .. n-2, labels =
// ids[prompt_len .. n-1]; accuracy = the share that agree. EasyEdit assumes the prompt's tokens
// are a prefix of the joint text's; when a tokenizer merges across the boundary (TinyStories-656K
// does) ked scores encode(prompt) followed by the target's ids (request.c's rule) instead.
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"

ked_status ked_edit_token_accuracy(const ked_model *m, const ked_tokenizer *tok,
                                   const char *prompt, const char *target, float *acc,
                                   int **pred, int *n_pred, ked_error *err) {
    while (*target == ' ') target++;
    size_t lp = strlen(prompt), lt = strlen(target);
    char *text = malloc(lp + lt + 2);
    if (!text) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    memcpy(text, prompt, lp);
    text[lp] = ' ';
    memcpy(text + lp + 1, target, lt + 1);
    int *p = NULL, *ids = NULL, np = 0, n = 0, *lidx = NULL, *t = NULL, nt = 0;
    ked_run *r = NULL;
    ked_status st = ked_tokenizer_encode(tok, prompt, lp, 1, &p, NULL, &np, err);
    if (!st) st = ked_tokenizer_encode(tok, text, lp + lt + 1, 1, &ids, NULL, &n, err);
    if (st) goto done;
    int prefix = n > np;
    for (int i = 0; prefix && i < np; i++) prefix = p[i] == ids[i];
    if (!prefix) { // the tokenizer merges across the boundary: prompt ids + the target's ids
        if ((st = edit_target_ids(tok, prompt, text + lp, &t, &nt, err))) goto done;
        free(ids);
        n = np + nt;
        ids = malloc(sizeof(int) * (size_t)n);
        if (!ids) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        memcpy(ids, p, sizeof(int) * (size_t)np);
        memcpy(ids + np, t, sizeof(int) * (size_t)nt);
    }
    int k = n - np; // scored positions
    if (k < 1) { st = ked_fail(err, KED_ERR_ARG, "accuracy: \"%s\" adds no tokens to the prompt", target); goto done; }
    lidx = malloc(sizeof(int) * (size_t)k);
    if (!lidx) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = 0; i < k; i++) lidx[i] = np - 1 + i;
    if ((st = ked_run_new(m, 1, n - 1, n - 1, 0, &r, err))) goto done;
    ked_forward_opts o = ked_forward_defaults();
    o.logit_idx = lidx;
    o.n_logit = k;
    if ((st = ked_forward(m, r, ids, 1, n - 1, NULL, &o, err))) goto done;
    const float *logits = ked_run_logits(r, NULL);
    int V = ked_model_config(m)->vocab, good = 0;
    int *pr = pred ? malloc(sizeof(int) * (size_t)k) : NULL;
    if (pred && !pr) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = 0; i < k; i++) {
        const float *z = logits + (size_t)i * V;
        int best = 0;
        for (int v = 1; v < V; v++) if (z[v] > z[best]) best = v;
        good += best == ids[np + i];
        if (pr) pr[i] = best;
    }
    *acc = (float)good / (float)k;
    if (pred) { *pred = pr; *n_pred = k; }
done:
    ked_run_free(r);
    free(text); free(p); free(ids); free(lidx); free(t);
    return st;
}
