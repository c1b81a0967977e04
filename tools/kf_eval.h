// kf_eval.h: accuracy of a model on the ked-facts manifest (models/ked-facts/manifest.jsonl):
// top-1 of the first token of " " + target after each prompt, as the evaluation of knowledge
// edits reads it. Shared by tools/kf_eval.c (the figures in the model card) and
// tests/test_ked_facts.c. Header-only (static functions).
#ifndef KF_EVAL_H
#define KF_EVAL_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ked.h"

typedef struct { int right, total; } kf_count;

typedef struct {
    kf_count prompt, prompt_trained, prompt_held;   // the records' own prompts
    kf_count para_trained, para_held;               // paraphrase prompts (noise prefix included)
    kf_count neigh;                                  // neighbourhood prompts (the same target)
    int n_records, n_held;
    long demo_case;                                  // a held-out record right on all its prompts
    long demo_cases[16];                             // the first 16 such records
    int n_demo;
} kf_result;

// 1 when the model's greedy next token after prompt is the first token of " " + target
static ked_status kf_top1(const ked_model *m, ked_run *r, int cap, const ked_tokenizer *tok,
                          const char *prompt, const char *target, int *right, ked_error *err) {
    int *ids = NULL, *tid = NULL, n = 0, nt = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, " %s", target);
    ked_status st = ked_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, NULL, &n, err);
    if (!st) st = ked_tokenizer_encode(tok, buf, strlen(buf), 0, &tid, NULL, &nt, err);
    if (!st && (n < 1 || nt < 1)) {
        snprintf(err->msg, sizeof err->msg, "empty prompt or target: '%s' / '%s'", prompt, target);
        st = KED_ERR_ARG;
    }
    if (!st && n > cap) { // keep the end of an over-long prompt
        memmove(ids, ids + (n - cap), sizeof(int) * (size_t)cap);
        n = cap;
    }
    if (!st) {
        ked_forward_opts fo = ked_forward_defaults();
        int last = n - 1;
        fo.logit_idx = &last;
        fo.n_logit = 1;
        st = ked_forward(m, r, ids, 1, n, NULL, &fo, err);
    }
    if (!st) {
        int rows;
        const float *lg = ked_run_logits(r, &rows);
        int V = ked_model_config(m)->vocab, best = 0;
        for (int i = 1; i < V; i++) if (lg[i] > lg[best]) best = i;
        *right = best == tid[0];
    }
    free(ids);
    free(tid);
    return st;
}

// evaluate dir (model + tokenizer) on manifest; neighbours too when want_neigh
static ked_status kf_evaluate(const char *dir, const char *manifest, int want_neigh, kf_result *res,
                              ked_error *err) {
    memset(res, 0, sizeof *res);
    res->demo_case = -1;
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    ked_run *r = NULL;
    const int cap = 256;
    FILE *f = NULL;
    ked_status st = ked_model_load(dir, &m, err);
    if (!st) st = ked_tokenizer_load(dir, &tok, err);
    if (!st) st = ked_run_new(m, 1, cap, cap, 0, &r, err);
    if (!st && !(f = fopen(manifest, "rb"))) {
        snprintf(err->msg, sizeof err->msg, "%s: cannot open", manifest);
        st = KED_ERR_IO;
    }
    char *line = NULL;
    size_t lcap = 0;
    long line_no = 0;
    while (!st && getline(&line, &lcap, f) > 0) {
        line_no++;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        json_t *held = json_object_get(o, "held_out"), *pp = json_object_get(o, "paraphrases");
        json_t *nb = json_object_get(o, "neighbours");
        const char *prompt = json_string_value(json_object_get(o, "prompt"));
        const char *target = json_string_value(json_object_get(o, "target"));
        if (!json_is_boolean(held) || !json_is_array(pp) || !json_is_array(nb) || !prompt || !target) {
            snprintf(err->msg, sizeof err->msg, "%s:%ld: expected held_out, prompt, target, paraphrases, "
                     "neighbours", manifest, line_no);
            json_decref(o);
            st = KED_ERR_FORMAT;
            break;
        }
        int h = json_is_true(held), ok, all = 1;
        res->n_records++;
        res->n_held += h;
        st = kf_top1(m, r, cap, tok, prompt, target, &ok, err);
        res->prompt.right += ok; res->prompt.total++;
        kf_count *pc = h ? &res->prompt_held : &res->prompt_trained;
        pc->right += ok; pc->total++;
        all &= ok;
        for (size_t i = 0; !st && i < json_array_size(pp); i++) {
            st = kf_top1(m, r, cap, tok, json_string_value(json_array_get(pp, i)), target, &ok, err);
            kf_count *c = h ? &res->para_held : &res->para_trained;
            c->right += ok; c->total++;
            all &= ok;
        }
        if (want_neigh)
            for (size_t i = 0; !st && i < json_array_size(nb); i++) {
                st = kf_top1(m, r, cap, tok, json_string_value(json_array_get(nb, i)), target, &ok, err);
                res->neigh.right += ok; res->neigh.total++;
                all &= ok;
            }
        if (!st && h && all && res->n_demo < 16)
            res->demo_cases[res->n_demo++] = (long)json_integer_value(json_object_get(o, "case_id"));
        if (!st && h && all && res->demo_case < 0)
            res->demo_case = (long)json_integer_value(json_object_get(o, "case_id"));
        json_decref(o);
    }
    free(line);
    if (f) fclose(f);
    ked_run_free(r);
    ked_tokenizer_free(tok);
    ked_model_free(m);
    return st;
}

static double kf_pct(kf_count c) { return c.total ? 100.0 * c.right / c.total : 0; }

#endif
