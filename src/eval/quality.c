// quality.c: EasyEdit's compute_edit_quality of one case (easyedit-reference.md §4.2-4.5) as a
// JSON object in EasyEdit's layout, plus ROME's compute_rewrite_quality_counterfact
// probabilities (mean per-token NLL of target_new and target_true) for CounterFact cases:
//   rewrite_acc [acc], rephrase_acc [acc per rephrase prompt], locality {"<k>_output": [[ids]]},
//   portability {"<k>_acc": [acc per prompt]}, fluency {"ngram_entropy": h},
//   rewrite_prompts_probs / paraphrase_prompts_probs / neighborhood_prompts_probs
//   [{"target_new": nll, "target_true": nll}] (ROME's names).
// NaN accuracies (a target that adds no token) are left out of the lists, as EasyEdit drops them.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

json_t *eval_real(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *ids_json(const int *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static ked_status tf(const ked_model *m, const ked_tokenizer *tok, int aligned, const char *prompt,
                     const char *target, double *acc, double *nll, int **pred, int *k, ked_error *err) {
    ked_status st = eval_teacher_forced(m, tok, prompt, target, aligned, acc, nll, pred, NULL, k, err);
    if (st) ked_prefix_error(err, "prompt \"%s\", target \"%s\"", prompt, target);
    return st;
}

static json_t *probs_obj(double nll_new, double nll_true) {
    json_t *o = json_object();
    json_object_set_new(o, "target_new", eval_real(nll_new));
    json_object_set_new(o, "target_true", eval_real(nll_true));
    return o;
}

ked_status eval_quality(const ked_model *m, const ked_tokenizer *tok, const ked_case *c,
                        const quality_opts *o, json_t **out, ked_error *err) {
    const ked_request *q = &c->req;
    json_t *ret = json_object();
    ked_status st = KED_OK;
    double acc, nll, nll_t;
    int k;
    int cf = c->counterfact && q->ground_truth;
    if (!ret) return ked_fail(err, KED_ERR_NOMEM, "out of memory");

    // rewrite
    json_t *ra = json_array(), *rp = cf ? json_array() : NULL;
    json_object_set_new(ret, "rewrite_acc", ra);
    if ((st = tf(m, tok, o->aligned, q->prompt, q->target_new, &acc, &nll, NULL, &k, err))) goto fail;
    if (isfinite(acc)) json_array_append_new(ra, json_real(acc));
    if (cf) {
        if ((st = tf(m, tok, o->aligned, q->prompt, q->ground_truth, NULL, &nll_t, NULL, &k, err))) goto fail;
        json_array_append_new(rp, probs_obj(nll, nll_t));
    }
    // rephrase
    if (c->n_rephrases) {
        json_t *a = json_array();
        json_object_set_new(ret, "rephrase_acc", a);
        for (int i = 0; i < c->n_rephrases; i++) {
            if ((st = tf(m, tok, o->aligned, c->rephrases[i], q->target_new, &acc, NULL, NULL, &k, err))) goto fail;
            if (isfinite(acc)) json_array_append_new(a, json_real(acc));
        }
    }
    // locality: the argmax ids (compared with the pre-edit ones by eval_finalize_locality)
    json_t *loc = json_object();
    json_object_set_new(ret, "locality", loc);
    for (int g = 0; g < q->n_locality; g++) {
        const ked_edit_group *G = &q->locality[g];
        json_t *a = json_array();
        char key[256];
        snprintf(key, sizeof key, "%s_output", G->name);
        json_object_set_new(loc, key, a);
        for (int i = 0; i < G->n; i++) {
            int *pred = NULL;
            if ((st = tf(m, tok, o->aligned, G->prompts[i], G->ground_truth[i], NULL, NULL, &pred, &k, err))) goto fail;
            json_array_append_new(a, ids_json(pred, k));
            free(pred);
        }
    }
    // portability
    json_t *port = json_object();
    json_object_set_new(ret, "portability", port);
    for (int g = 0; g < q->n_portability; g++) {
        const ked_edit_group *G = &q->portability[g];
        json_t *a = json_array();
        char key[256];
        snprintf(key, sizeof key, "%s_acc", G->name);
        json_object_set_new(port, key, a);
        for (int i = 0; i < G->n; i++) {
            if ((st = tf(m, tok, o->aligned, G->prompts[i], G->ground_truth[i], &acc, NULL, NULL, &k, err))) goto fail;
            if (isfinite(acc)) json_array_append_new(a, json_real(acc));
        }
    }
    // fluency
    if (o->fluency) {
        char *text = NULL;
        double h = 0;
        if ((st = eval_fluency_text(m, tok, q->prompt, o->fluency_len, o->fluency_seed, &text, err))) goto fail;
        st = ked_ngram_entropy(text, &h, err);
        free(text);
        if (st) goto fail;
        json_t *f = json_object();
        json_object_set_new(f, "ngram_entropy", json_real(h));
        json_object_set_new(ret, "fluency", f);
    }
    // ROME's CounterFact probabilities
    if (cf) {
        json_object_set_new(ret, "rewrite_prompts_probs", rp);
        rp = NULL;
        json_t *pp = json_array(), *np = json_array();
        json_object_set_new(ret, "paraphrase_prompts_probs", pp);
        json_object_set_new(ret, "neighborhood_prompts_probs", np);
        for (int i = 0; i < c->n_paraphrases; i++) {
            if ((st = tf(m, tok, o->aligned, c->paraphrases[i], q->target_new, NULL, &nll, NULL, &k, err)) ||
                (st = tf(m, tok, o->aligned, c->paraphrases[i], q->ground_truth, NULL, &nll_t, NULL, &k, err)))
                goto fail;
            json_array_append_new(pp, probs_obj(nll, nll_t));
        }
        for (int g = 0; g < q->n_locality; g++) {
            const ked_edit_group *G = &q->locality[g];
            if (strcmp(G->name, "neighborhood")) continue;
            for (int i = 0; i < G->n; i++) {
                if ((st = tf(m, tok, o->aligned, G->prompts[i], q->target_new, NULL, &nll, NULL, &k, err)) ||
                    (st = tf(m, tok, o->aligned, G->prompts[i], q->ground_truth, NULL, &nll_t, NULL, &k, err)))
                    goto fail;
                json_array_append_new(np, probs_obj(nll, nll_t));
            }
        }
    }
    *out = ret;
    return KED_OK;
fail:
    json_decref(rp);
    json_decref(ret);
    return st;
}

ked_status eval_finalize_locality(const json_t *pre, json_t *post, ked_error *err) {
    json_t *pl = json_object_get(pre, "locality"), *ql = json_object_get(post, "locality");
    if (!json_is_object(pl) || !json_is_object(ql)) return KED_OK;
    const char *key;
    json_t *qa;
    json_t *add = json_object();
    json_object_foreach(ql, key, qa) {
        size_t lk = strlen(key);
        if (lk < 7 || strcmp(key + lk - 7, "_output")) continue;
        json_t *pa = json_object_get(pl, key);
        if (!json_is_array(pa) || json_array_size(pa) != json_array_size(qa)) {
            json_decref(add);
            return ked_fail(err, KED_ERR_FORMAT, "locality \"%s\": the pre and post outputs differ in number", key);
        }
        json_t *acc = json_array();
        for (size_t i = 0; i < json_array_size(qa); i++) {
            json_t *x = json_array_get(pa, i), *y = json_array_get(qa, i);
            size_t n = json_array_size(x);
            if (json_array_size(y) != n) {
                json_decref(acc);
                json_decref(add);
                return ked_fail(err, KED_ERR_FORMAT, "locality \"%s\" prompt %zu: pre and post lengths differ", key, i);
            }
            int same = 0;
            for (size_t j = 0; j < n; j++)
                same += json_integer_value(json_array_get(x, j)) == json_integer_value(json_array_get(y, j));
            if (n) json_array_append_new(acc, json_real((double)same / (double)n));
        }
        char k2[256];
        snprintf(k2, sizeof k2, "%.*s_acc", (int)(lk - 7), key);
        json_object_set_new(add, k2, acc);
    }
    json_object_update(ql, add);
    json_decref(add);
    return KED_OK;
}

static json_t *group_json(const ked_edit_group *g, int n) {
    json_t *o = json_object();
    for (int i = 0; i < n; i++) {
        json_t *e = json_object(), *p = json_array(), *a = json_array();
        for (int j = 0; j < g[i].n; j++) {
            json_array_append_new(p, json_string(g[i].prompts[j]));
            json_array_append_new(a, json_string(g[i].ground_truth[j]));
        }
        json_object_set_new(e, "prompt", p);
        json_object_set_new(e, "ground_truth", a);
        json_object_set_new(o, g[i].name, e);
    }
    return o;
}

json_t *eval_request_json(const ked_case *c) {
    const ked_request *q = &c->req;
    json_t *o = json_object();
    json_object_set_new(o, "prompt", json_string(q->prompt));
    json_object_set_new(o, "target_new", json_string(q->target_new));
    json_object_set_new(o, "ground_truth", q->ground_truth ? json_string(q->ground_truth) : json_null());
    json_object_set_new(o, "portability", group_json(q->portability, q->n_portability));
    json_object_set_new(o, "locality", group_json(q->locality, q->n_locality));
    json_object_set_new(o, "subject", json_string(q->subject));
    if (q->rephrase) json_object_set_new(o, "rephrase_prompt", json_string(q->rephrase));
    return o;
}
