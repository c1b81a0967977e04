// summary.c: means over cases (easyedit-reference.md §4.7), x100 as KnowEdit's script prints them:
//   Edit_Succ   = mean_i rewrite_acc[0]
//   Rephrase    = mean of every rephrase_acc value (EasyEdit's summary_metrics)
//   Portability = mean over cases with >= 1 key of mean_k mean(portability[k])  (KnowEdit)
//   Locality    = the same over locality "<k>_acc" keys (post only: pre has no locality score)
//   Fluency     = mean_i fluency.ngram_entropy (x100, hence values near 500)
// and per key mean_i mean(list) (EasyEdit's summary_metrics). ROME's CounterFact scores
// (summarize.py): per case the mean over its prompts of [NLL(true) > NLL(new)] (efficacy,
// paraphrase) or [NLL(true) < NLL(new)] (neighbourhood), and of P(new) - P(true) (resp.
// P(true) - P(new)) with P = exp(-mean per-token NLL); then the mean over cases.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

typedef struct {
    double sum;
    int n;
} acc_t;

static void add(acc_t *a, double v) {
    if (isfinite(v)) { a->sum += v; a->n++; }
}
static ked_eval_stat stat_of(acc_t a, double scale) {
    ked_eval_stat s;
    s.n = a.n;
    s.mean = a.n ? a.sum / a.n * scale : NAN;
    return s;
}

static double list_mean(json_t *l, int *n) {
    double s = 0;
    int k = 0;
    for (size_t i = 0; i < json_array_size(l); i++) {
        json_t *v = json_array_get(l, i);
        if (json_is_number(v)) { s += json_number_value(v); k++; }
    }
    if (n) *n = k;
    return k ? s / k : NAN;
}

// mean over the "<k>_acc" keys of a section (NaN when none), and the per-key sums
static double section_mean(json_t *sec, json_t *per_key) {
    const char *key;
    json_t *v;
    double s = 0;
    int k = 0;
    json_object_foreach(sec, key, v) {
        size_t lk = strlen(key);
        if (lk < 4 || strcmp(key + lk - 4, "_acc") || !json_is_array(v)) continue;
        int n;
        double m = list_mean(v, &n);
        if (!n) continue;
        s += m;
        k++;
        json_t *a = json_object_get(per_key, key);
        if (!a) { a = json_pack("[f,i]", 0.0, 0); json_object_set_new(per_key, key, a); }
        json_array_set_new(a, 0, json_real(json_real_value(json_array_get(a, 0)) + m));
        json_array_set_new(a, 1, json_integer(json_integer_value(json_array_get(a, 1)) + 1));
    }
    return k ? s / k : NAN;
}

// ROME's per-case score and magnitude over a list of {target_new, target_true} NLLs
static void probs(json_t *l, int new_better, double *score, double *mag) {
    double s = 0, g = 0;
    int k = 0;
    for (size_t i = 0; i < json_array_size(l); i++) {
        json_t *e = json_array_get(l, i), *a = json_object_get(e, "target_new"), *b = json_object_get(e, "target_true");
        if (!json_is_number(a) || !json_is_number(b)) continue;
        double nn = json_number_value(a), nt = json_number_value(b);
        if (new_better) { s += nt > nn; g += exp(-nn) - exp(-nt); }
        else { s += nt < nn; g += exp(-nt) - exp(-nn); }
        k++;
    }
    *score = k ? s / k : NAN;
    *mag = k ? g / k : NAN;
}

static json_t *num(ked_eval_stat s) { return eval_real(s.mean); }

static json_t *per_key_json(json_t *pk) {
    json_t *o = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(pk, key, v) {
        double s = json_real_value(json_array_get(v, 0));
        json_int_t n = json_integer_value(json_array_get(v, 1));
        json_object_set_new(o, key, eval_real(n ? s / (double)n * 100 : NAN));
    }
    return o;
}

static json_t *stage(const json_t *results, const char *name, ked_eval_stage *st, int *present) {
    acc_t rw = {0}, rp = {0}, po = {0}, lo = {0}, fl = {0}, es = {0}, em = {0}, ps = {0}, pm = {0}, ns = {0}, nm = {0};
    json_t *pk_loc = json_object(), *pk_port = json_object();
    *present = 0;
    for (size_t i = 0; i < json_array_size(results); i++) {
        json_t *s = json_object_get(json_array_get(results, i), name);
        if (!json_is_object(s)) continue;
        (*present)++;
        json_t *ra = json_object_get(s, "rewrite_acc");
        if (json_array_size(ra) && json_is_number(json_array_get(ra, 0))) add(&rw, json_number_value(json_array_get(ra, 0)));
        json_t *ph = json_object_get(s, "rephrase_acc");
        for (size_t j = 0; j < json_array_size(ph); j++)
            if (json_is_number(json_array_get(ph, j))) add(&rp, json_number_value(json_array_get(ph, j)));
        add(&po, section_mean(json_object_get(s, "portability"), pk_port));
        add(&lo, section_mean(json_object_get(s, "locality"), pk_loc));
        json_t *f = json_object_get(json_object_get(s, "fluency"), "ngram_entropy");
        if (json_is_number(f)) add(&fl, json_number_value(f));
        double a, b;
        probs(json_object_get(s, "rewrite_prompts_probs"), 1, &a, &b); add(&es, a); add(&em, b);
        probs(json_object_get(s, "paraphrase_prompts_probs"), 1, &a, &b); add(&ps, a); add(&pm, b);
        probs(json_object_get(s, "neighborhood_prompts_probs"), 0, &a, &b); add(&ns, a); add(&nm, b);
    }
    st->rewrite = stat_of(rw, 100); st->rephrase = stat_of(rp, 100); st->portability = stat_of(po, 100);
    st->locality = stat_of(lo, 100); st->fluency = stat_of(fl, 100);
    st->es = stat_of(es, 100); st->em = stat_of(em, 100); st->ps = stat_of(ps, 100);
    st->pm = stat_of(pm, 100); st->ns = stat_of(ns, 100); st->nm = stat_of(nm, 100);
    json_t *o = json_object();
    json_object_set_new(o, "Edit_Succ", num(st->rewrite));
    json_object_set_new(o, "Rephrase", num(st->rephrase));
    json_object_set_new(o, "Portability", num(st->portability));
    json_object_set_new(o, "Locality", num(st->locality));
    json_object_set_new(o, "Fluency", num(st->fluency));
    json_object_set_new(o, "efficacy_score", num(st->es));
    json_object_set_new(o, "efficacy_magnitude", num(st->em));
    json_object_set_new(o, "paraphrase_score", num(st->ps));
    json_object_set_new(o, "paraphrase_magnitude", num(st->pm));
    json_object_set_new(o, "neighborhood_score", num(st->ns));
    json_object_set_new(o, "neighborhood_magnitude", num(st->nm));
    json_object_set_new(o, "locality", per_key_json(pk_loc));
    json_object_set_new(o, "portability", per_key_json(pk_port));
    json_decref(pk_loc);
    json_decref(pk_port);
    return o;
}

json_t *eval_summary_json(const json_t *results, ked_eval_summary *sum) {
    memset(sum, 0, sizeof *sum);
    sum->n_cases = (int)json_array_size(results);
    json_t *o = json_object();
    int present;
    json_object_set_new(o, "n_cases", json_integer(sum->n_cases));
    json_object_set_new(o, "pre", stage(results, "pre", &sum->pre, &present));
    json_t *p = stage(results, "post", &sum->post, &present);
    sum->has_post = present > 0;
    if (sum->has_post) json_object_set_new(o, "post", p); else json_decref(p);
    p = stage(results, "post_final", &sum->post_final, &present);
    sum->has_post_final = present > 0;
    if (sum->has_post_final) json_object_set_new(o, "post_final", p); else json_decref(p);
    return o;
}

/* ---- the printed table ------------------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = b->s ? vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap) : -1;
        va_end(ap);
        if (k >= 0 && b->len + (size_t)k < b->cap) { b->len += (size_t)k; return; }
        size_t nc = b->cap ? 2 * b->cap : 4096;
        while (k >= 0 && nc <= b->len + (size_t)k) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) return;
        b->s = ns;
        b->cap = nc;
    }
}

static void cell(sbuf *b, ked_eval_stat s) {
    if (s.n) sb_printf(b, " %11.2f", s.mean);
    else sb_printf(b, " %11s", "-");
}

static void row(sbuf *b, const char *name, const ked_eval_stage *s) {
    sb_printf(b, "%-10s", name);
    cell(b, s->rewrite); cell(b, s->rephrase); cell(b, s->portability); cell(b, s->locality); cell(b, s->fluency);
    sb_printf(b, "\n");
}
static void row_cf(sbuf *b, const char *name, const ked_eval_stage *s) {
    sb_printf(b, "%-10s", name);
    cell(b, s->es); cell(b, s->em); cell(b, s->ps); cell(b, s->pm); cell(b, s->ns); cell(b, s->nm);
    sb_printf(b, "\n");
}

static void keys(sbuf *b, json_t *summary, const char *section) {
    static const char *st[3] = {"pre", "post", "post_final"};
    for (int i = 0; i < 3; i++) {
        json_t *o = json_object_get(json_object_get(summary, st[i]), section);
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) {
            if (json_is_number(v)) sb_printf(b, "  %-11s %-10s %-32s %8.2f\n", section, st[i], k, json_number_value(v));
        }
    }
}

// mean rewrite_acc[0] of results first..first+n-1 at a stage (NaN: none)
static double batch_edit_succ(const json_t *results, int first, int n, const char *stage) {
    acc_t a = {0, 0};
    for (int i = first; i < first + n && i < (int)json_array_size(results); i++) {
        json_t *ra = json_object_get(json_object_get(json_array_get(results, (size_t)i), stage), "rewrite_acc");
        if (json_is_number(json_array_get(ra, 0))) add(&a, json_number_value(json_array_get(ra, 0)));
    }
    return stat_of(a, 100).mean;
}

// sequential runs: the first batch's Edit_Succ right after its edit and after the last one;
// --retention: the first batch's after each batch, and every batch's after the latest
static void retention(sbuf *b, const json_t *root, const json_t *meta, int has_post_final) {
    const json_t *results = json_object_get(root, "results");
    int B = (int)json_integer_value(json_object_get(meta, "batch"));
    if (B < 1) B = 1;
    const char *unit = B > 1 ? "batch" : "edit";
    double a = batch_edit_succ(results, 0, B, "post"), z = batch_edit_succ(results, 0, B, "post_final");
    if (has_post_final && isfinite(a) && isfinite(z)) {
        sb_printf(b, "retention: the first %s's Edit_Succ %.2f right after its edit, %.2f after the last", unit, a, z);
        if (a > 0) sb_printf(b, " (%.2f of it)", z / a);
        sb_printf(b, "\n");
    }
    const json_t *curve = json_object_get(root, "retention");
    size_t nc = json_array_size(curve);
    if (!nc) return;
    sb_printf(b, "retention: the first %s's Edit_Succ after each %s:", unit, unit);
    for (size_t i = 0; i < nc; i++) {
        json_t *v = json_array_get(json_object_get(json_array_get(curve, i), "rewrite_acc"), 0);
        sb_printf(b, " %.1f", json_is_number(v) ? json_number_value(v) * 100 : NAN);
    }
    json_t *now = json_object_get(json_array_get(curve, nc - 1), "rewrite_acc");
    sb_printf(b, "\nretention: each %s's Edit_Succ with %d cases edited:", unit,
              (int)json_integer_value(json_object_get(json_array_get(curve, nc - 1), "after")));
    for (size_t i = 0; i < json_array_size(now); i++) {
        json_t *v = json_array_get(now, i);
        sb_printf(b, " %.1f", json_is_number(v) ? json_number_value(v) * 100 : NAN);
    }
    sb_printf(b, "\n");
}

char *eval_summary_table(const json_t *root, const ked_eval_summary *sum) {
    sbuf b = {0};
    json_t *meta = json_object_get(root, "ked_eval");
    json_t *summary = json_object_get(root, "summary");
    if (meta)
        sb_printf(&b, "%d cases of %s (%s), method %s, %s, batch %d\n", sum->n_cases,
                  json_string_value(json_object_get(meta, "data")), json_string_value(json_object_get(meta, "format")),
                  json_string_value(json_object_get(meta, "method")), json_string_value(json_object_get(meta, "mode")),
                  (int)json_integer_value(json_object_get(meta, "batch")));
    else
        sb_printf(&b, "%d cases\n", sum->n_cases);
    sb_printf(&b, "%-10s %11s %11s %11s %11s %11s\n", "", "Edit_Succ", "Rephrase", "Portability", "Locality", "Fluency");
    row(&b, "pre", &sum->pre);
    if (sum->has_post) row(&b, "post", &sum->post);
    if (sum->has_post_final) row(&b, "post_final", &sum->post_final);
    if (sum->pre.es.n) {
        sb_printf(&b, "CounterFact (ROME): %d cases with a true target\n", sum->pre.es.n);
        sb_printf(&b, "%-10s %11s %11s %11s %11s %11s %11s\n", "", "Eff.Score", "Eff.Magn", "Para.Score", "Para.Magn",
                  "Neigh.Score", "Neigh.Magn");
        row_cf(&b, "pre", &sum->pre);
        if (sum->has_post) row_cf(&b, "post", &sum->post);
        if (sum->has_post_final) row_cf(&b, "post_final", &sum->post_final);
    }
    if (meta) retention(&b, root, meta, sum->has_post_final);
    json_t *ei = json_object_get(root, "edit_info"), *ns = json_object_get(ei, "null_space");
    if (json_array_size(ns) == 3)
        sb_printf(&b, "AlphaEdit: null space of C kept: %d of %d dimensions (layer %d)\n",
                  (int)json_integer_value(json_array_get(ns, 0)), (int)json_integer_value(json_array_get(ns, 1)),
                  (int)json_integer_value(json_array_get(ns, 2)));
    if (summary) {
        sb_printf(&b, "per key (mean over cases of the case's mean, x100):\n");
        keys(&b, summary, "locality");
        keys(&b, summary, "portability");
    }
    if (meta)
        sb_printf(&b, "data: %d records, %d cases, %d records skipped (empty target), %d answers dropped (empty)\n",
                  (int)json_integer_value(json_object_get(meta, "records")),
                  (int)json_integer_value(json_object_get(meta, "cases")),
                  (int)json_integer_value(json_object_get(meta, "skipped_records")),
                  (int)json_integer_value(json_object_get(meta, "dropped_answers")));
    return b.s;
}
