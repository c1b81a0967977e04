// dataset.c: editing datasets read with jansson into ked_case values (docs/evaluation.md, "Data").
//   zsre            EasyEdit's ZsRE eval/train files: src -> prompt, alt -> target_new, answers[0]
//                   -> ground_truth, rephrase, loc/loc_ans -> locality "neighborhood",
//                   portability "New Question"/"New Answer" -> portability "one_hop"
//   counterfact     ROME/MEMIT schema: requested_rewrite.{prompt (with "{}"), subject,
//                   target_new.str, target_true.str}; paraphrase_prompts (rephrase = the first, the
//                   ROME paraphrase score uses all); neighborhood_prompts -> locality
//                   "neighborhood" with answer target_true.str; portability as in zsre
//   counterfact-ee  EasyEdit's schema: prompt, target_new, subject, ground_truth, rephrase_prompt,
//                   locality_prompt/locality_ground_truth -> locality "neighborhood"
//   knowedit        prompt, target_new, subject, ground_truth (string or list), rephrase_prompt,
//                   locality/portability objects of lists of {prompt, ground_truth}; a ground
//                   truth list is reduced to its first string (as KnowEdit's script does);
//                   portability "Reasoning" is named "reasoning" (KnowEdit's script's key)
// Records with an empty target_new are skipped, entries with an empty answer dropped (counted).
#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "io/dataset.h"

const char *ked_data_format_name(ked_data_format f) {
    switch (f) {
    case KED_DATA_AUTO: return "auto";
    case KED_DATA_ZSRE: return "zsre";
    case KED_DATA_COUNTERFACT: return "counterfact";
    case KED_DATA_COUNTERFACT_EE: return "counterfact-ee";
    case KED_DATA_KNOWEDIT: return "knowedit";
    }
    return "?";
}

int ked_data_format_parse(const char *name) {
    for (int f = KED_DATA_AUTO; f <= KED_DATA_KNOWEDIT; f++)
        if (name && !strcmp(name, ked_data_format_name((ked_data_format)f))) return f;
    return -1;
}

ked_data_format dataset_detect(const void *json_record) {
    json_t *r = (json_t *)json_record;
    if (!json_is_object(r)) return KED_DATA_AUTO;
    if (json_object_get(r, "requested_rewrite")) return KED_DATA_COUNTERFACT;
    if (json_object_get(r, "src") && json_object_get(r, "alt")) return KED_DATA_ZSRE;
    if (json_is_object(json_object_get(r, "locality")) || json_is_object(json_object_get(r, "portability")))
        return KED_DATA_KNOWEDIT;
    if (json_object_get(r, "prompt") && json_object_get(r, "target_new")) return KED_DATA_COUNTERFACT_EE;
    if (json_object_get(r, "text") && json_object_get(r, "labels")) return KED_DATA_KNOWEDIT;
    return KED_DATA_AUTO;
}

/* ---- the pool every case points into ---------------------------------------------------------- */

static void *pool_keep(ked_dataset *d, void *p) {
    if (!p) return NULL;
    if (d->n_allocs == d->cap_allocs) {
        int cap = d->cap_allocs ? 2 * d->cap_allocs : 256;
        void **na = realloc(d->allocs, sizeof *na * (size_t)cap);
        if (!na) { free(p); return NULL; }
        d->allocs = na;
        d->cap_allocs = cap;
    }
    d->allocs[d->n_allocs++] = p;
    return p;
}
static char *pool_str(ked_dataset *d, const char *s) { return pool_keep(d, strdup(s)); }

static int blank(const char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    return *s == 0;
}

/* ---- one record ------------------------------------------------------------------------------- */

typedef struct {
    ked_dataset *d;
    int i;                 // record index
    ked_error *err;
} rctx;

static ked_status bad(rctx *c, const char *field, const char *expected) {
    return ked_fail(c->err, KED_ERR_FORMAT, "%s: record %d: field \"%s\": expected %s", c->d->path,
                    c->i, field, expected);
}

// a string field: required (missing is an error) or optional (*out NULL when missing or null)
static ked_status get_str(rctx *c, json_t *o, const char *key, const char *field, int required,
                          const char **out) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) return required ? bad(c, field, "a string (missing)") : KED_OK;
    if (!json_is_string(v)) return bad(c, field, "a string");
    *out = json_string_value(v);
    return KED_OK;
}

// the first string of a string or a (nested) list, "" for an empty list; NULL for other types
static const char *first_string(json_t *v) {
    while (json_is_array(v)) {
        if (json_array_size(v) == 0) return "";
        v = json_array_get(v, 0);
    }
    return json_is_string(v) ? json_string_value(v) : NULL;
}

typedef struct {
    const char *name;
    const char **p, **a;
    int n, cap;
} group_b;

typedef struct {
    group_b g[16];
    int n;
} groups_b;

static ked_status group_push(rctx *c, groups_b *gs, const char *name, const char *prompt,
                             const char *answer) {
    if (blank(answer)) { c->d->n_dropped++; return KED_OK; }
    group_b *g = NULL;
    for (int k = 0; k < gs->n; k++) if (!strcmp(gs->g[k].name, name)) g = &gs->g[k];
    if (!g) {
        if (gs->n == 16) return bad(c, name, "at most 16 locality or portability groups");
        g = &gs->g[gs->n++];
        memset(g, 0, sizeof *g);
        g->name = name;
    }
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 8;
        const char **np = realloc(g->p, sizeof *np * (size_t)cap);
        if (np) g->p = np;
        const char **na = np ? realloc(g->a, sizeof *na * (size_t)cap) : NULL;
        if (na) g->a = na;
        if (!np || !na) return ked_fail(c->err, KED_ERR_NOMEM, "out of memory");
        g->cap = cap;
    }
    g->p[g->n] = prompt;
    g->a[g->n] = answer;
    g->n++;
    return KED_OK;
}

static void groups_free(groups_b *gs) {
    for (int k = 0; k < gs->n; k++) { free(gs->g[k].p); free(gs->g[k].a); }
    gs->n = 0;
}

// copy the built groups (and every string) into the pool
static ked_status groups_commit(rctx *c, groups_b *gs, const ked_edit_group **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    if (!gs->n) return KED_OK;
    ked_dataset *d = c->d;
    ked_edit_group *g = pool_keep(d, calloc((size_t)gs->n, sizeof *g));
    if (!g) return ked_fail(c->err, KED_ERR_NOMEM, "out of memory");
    for (int k = 0; k < gs->n; k++) {
        const char **p = pool_keep(d, calloc((size_t)gs->g[k].n, sizeof *p));
        const char **a = pool_keep(d, calloc((size_t)gs->g[k].n, sizeof *a));
        g[k].name = pool_str(d, gs->g[k].name);
        if (!p || !a || !g[k].name) return ked_fail(c->err, KED_ERR_NOMEM, "out of memory");
        for (int j = 0; j < gs->g[k].n; j++) {
            p[j] = pool_str(d, gs->g[k].p[j]);
            a[j] = pool_str(d, gs->g[k].a[j]);
            if (!p[j] || !a[j]) return ked_fail(c->err, KED_ERR_NOMEM, "out of memory");
        }
        g[k].prompts = p;
        g[k].ground_truth = a;
        g[k].n = gs->g[k].n;
    }
    *out = g;
    *n_out = gs->n;
    return KED_OK;
}

// a list of strings (optional): *out pooled, *n its length
static ked_status str_list(rctx *c, json_t *o, const char *key, const char *field,
                           const char *const **out, int *n) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v)) return KED_OK;
    if (json_is_string(v)) v = NULL; // handled below as a one-string list
    const char **l;
    if (!v) {
        l = pool_keep(c->d, calloc(1, sizeof *l));
        if (!l || !(l[0] = pool_str(c->d, json_string_value(json_object_get(o, key)))))
            return ked_fail(c->err, KED_ERR_NOMEM, "out of memory");
        *out = l;
        *n = 1;
        return KED_OK;
    }
    if (!json_is_array(v)) return bad(c, field, "a list of strings");
    size_t m = json_array_size(v);
    l = pool_keep(c->d, calloc(m ? m : 1, sizeof *l));
    if (!l) return ked_fail(c->err, KED_ERR_NOMEM, "out of memory");
    for (size_t j = 0; j < m; j++) {
        json_t *s = json_array_get(v, j);
        if (!json_is_string(s)) {
            char f[128];
            snprintf(f, sizeof f, "%s[%zu]", field, j);
            return bad(c, f, "a string");
        }
        if (!(l[j] = pool_str(c->d, json_string_value(s))))
            return ked_fail(c->err, KED_ERR_NOMEM, "out of memory");
    }
    *out = l;
    *n = (int)m;
    return KED_OK;
}

// EasyEdit's portability object of the ZsRE/CounterFact files: "New Question" -> "New Answer"
static ked_status port_one_hop(rctx *c, json_t *r, groups_b *port) {
    json_t *p = json_object_get(r, "portability");
    if (!p || json_is_null(p)) return KED_OK;
    if (!json_is_object(p)) return bad(c, "portability", "an object");
    const char *q, *a;
    ked_status st;
    if ((st = get_str(c, p, "New Question", "portability.New Question", 1, &q)) ||
        (st = get_str(c, p, "New Answer", "portability.New Answer", 1, &a)))
        return st;
    return group_push(c, port, "one_hop", q, a);
}

// KnowEdit's locality/portability object: {key: [{prompt, ground_truth}, ...], ...}
static ked_status knowedit_groups(rctx *c, json_t *r, const char *section, groups_b *gs) {
    json_t *o = json_object_get(r, section);
    if (!o || json_is_null(o)) return KED_OK;
    if (!json_is_object(o)) return bad(c, section, "an object");
    const char *key;
    json_t *list;
    char f[256];
    json_object_foreach(o, key, list) {
        const char *name = key;
        if (!strcmp(section, "portability") && !strcmp(key, "Reasoning")) name = "reasoning";
        if (json_is_null(list)) continue;
        snprintf(f, sizeof f, "%s.%s", section, key);
        if (!json_is_array(list)) return bad(c, f, "a list of {prompt, ground_truth}");
        for (size_t j = 0; j < json_array_size(list); j++) {
            json_t *e = json_array_get(list, j);
            snprintf(f, sizeof f, "%s.%s[%zu]", section, key, j);
            if (!json_is_object(e)) return bad(c, f, "an object {prompt, ground_truth}");
            json_t *pv = json_object_get(e, "prompt"), *gv = json_object_get(e, "ground_truth");
            const char *ans = gv ? first_string(gv) : NULL;
            if (!json_is_string(pv)) {
                snprintf(f, sizeof f, "%s.%s[%zu].prompt", section, key, j);
                return bad(c, f, "a string");
            }
            if (!ans) {
                snprintf(f, sizeof f, "%s.%s[%zu].ground_truth", section, key, j);
                return bad(c, f, "a string or a list of strings");
            }
            ked_status st = group_push(c, gs, name, json_string_value(pv), ans);
            if (st) return st;
        }
    }
    return KED_OK;
}

// "The mother tongue of {} is" with the subject in place of the first "{}"
static char *format_prompt(const char *tmpl, const char *subject) {
    const char *ph = strstr(tmpl, "{}");
    if (!ph) return strdup(tmpl);
    size_t a = (size_t)(ph - tmpl), ls = strlen(subject), lr = strlen(ph + 2);
    char *s = malloc(a + ls + lr + 1);
    if (!s) return NULL;
    memcpy(s, tmpl, a);
    memcpy(s + a, subject, ls);
    memcpy(s + a + ls, ph + 2, lr + 1);
    return s;
}

static ked_status parse_record(rctx *c, json_t *r, ked_data_format fmt, ked_case *cs, int *kept) {
    ked_dataset *d = c->d;
    const char *prompt = NULL, *subject = NULL, *target = NULL, *truth = NULL, *reph = NULL;
    const char *lp = NULL, *la = NULL;
    char *formatted = NULL;
    groups_b loc = {0}, port = {0};
    ked_status st = KED_OK;
    memset(cs, 0, sizeof *cs);
    cs->record = c->i;
    *kept = 0;
    if (!json_is_object(r))
        return ked_fail(c->err, KED_ERR_FORMAT, "%s: record %d: expected an object", d->path, c->i);
    switch (fmt) {
    case KED_DATA_ZSRE: {
        if ((st = get_str(c, r, "src", "src", 1, &prompt)) ||
            (st = get_str(c, r, "alt", "alt", 1, &target)) ||
            (st = get_str(c, r, "subject", "subject", 1, &subject)) ||
            (st = get_str(c, r, "rephrase", "rephrase", 0, &reph)) ||
            (st = get_str(c, r, "loc", "loc", 0, &lp)) ||
            (st = get_str(c, r, "loc_ans", "loc_ans", 0, &la)))
            goto done;
        json_t *ans = json_object_get(r, "answers");
        if (ans && !json_is_null(ans)) {
            if (!json_is_array(ans) || (json_array_size(ans) && !json_is_string(json_array_get(ans, 0)))) {
                st = bad(c, "answers", "a list of strings");
                goto done;
            }
            if (json_array_size(ans)) truth = json_string_value(json_array_get(ans, 0));
        }
        if (lp && !la) { st = bad(c, "loc_ans", "a string (loc is given)"); goto done; }
        if (lp && (st = group_push(c, &loc, "neighborhood", lp, la))) goto done;
        if ((st = port_one_hop(c, r, &port))) goto done;
        if (reph && (st = str_list(c, r, "rephrase", "rephrase", &cs->rephrases, &cs->n_rephrases))) goto done;
        break;
    }
    case KED_DATA_COUNTERFACT: {
        json_t *rr = json_object_get(r, "requested_rewrite");
        const char *tmpl = NULL;
        if (!json_is_object(rr)) { st = bad(c, "requested_rewrite", "an object"); goto done; }
        json_t *tn = json_object_get(rr, "target_new"), *tt = json_object_get(rr, "target_true");
        if ((st = get_str(c, rr, "prompt", "requested_rewrite.prompt", 1, &tmpl)) ||
            (st = get_str(c, rr, "subject", "requested_rewrite.subject", 1, &subject)))
            goto done;
        if (!json_is_object(tn)) { st = bad(c, "requested_rewrite.target_new", "an object {str, id}"); goto done; }
        if ((st = get_str(c, tn, "str", "requested_rewrite.target_new.str", 1, &target))) goto done;
        if (tt && !json_is_null(tt)) {
            if (!json_is_object(tt)) { st = bad(c, "requested_rewrite.target_true", "an object {str, id}"); goto done; }
            if ((st = get_str(c, tt, "str", "requested_rewrite.target_true.str", 1, &truth))) goto done;
        }
        if (!(formatted = format_prompt(tmpl, subject))) { st = ked_fail(c->err, KED_ERR_NOMEM, "out of memory"); goto done; }
        prompt = formatted;
        if ((st = str_list(c, r, "paraphrase_prompts", "paraphrase_prompts", &cs->paraphrases, &cs->n_paraphrases)))
            goto done;
        if (cs->n_paraphrases) { cs->rephrases = cs->paraphrases; cs->n_rephrases = 1; }
        const char *const *nb = NULL;
        int n_nb = 0;
        if ((st = str_list(c, r, "neighborhood_prompts", "neighborhood_prompts", &nb, &n_nb))) goto done;
        for (int j = 0; truth && j < n_nb; j++)
            if ((st = group_push(c, &loc, "neighborhood", nb[j], truth))) goto done;
        if ((st = port_one_hop(c, r, &port))) goto done;
        cs->counterfact = truth != NULL && !blank(truth);
        break;
    }
    case KED_DATA_COUNTERFACT_EE:
    case KED_DATA_KNOWEDIT: {
        int ke = fmt == KED_DATA_KNOWEDIT;
        const char *pk = "prompt", *tk = "target_new", *sk = "subject";
        if (ke && !json_object_get(r, "prompt") && json_object_get(r, "text")) { pk = "text"; tk = "labels"; sk = "concept"; }
        if ((st = get_str(c, r, pk, pk, 1, &prompt)) || (st = get_str(c, r, tk, tk, 1, &target)) ||
            (st = get_str(c, r, sk, sk, 1, &subject)) ||
            (st = get_str(c, r, "rephrase_prompt", "rephrase_prompt", 0, &reph)))
            goto done;
        json_t *gt = json_object_get(r, "ground_truth");
        if (gt && !json_is_null(gt) && !(truth = first_string(gt))) {
            st = bad(c, "ground_truth", "a string or a list of strings");
            goto done;
        }
        if (reph && (st = str_list(c, r, "rephrase_prompt", "rephrase_prompt", &cs->rephrases, &cs->n_rephrases)))
            goto done;
        if (ke) {
            if ((st = knowedit_groups(c, r, "locality", &loc)) || (st = knowedit_groups(c, r, "portability", &port)))
                goto done;
        } else {
            if ((st = get_str(c, r, "locality_prompt", "locality_prompt", 0, &lp)) ||
                (st = get_str(c, r, "locality_ground_truth", "locality_ground_truth", 0, &la)))
                goto done;
            if (lp && !la) { st = bad(c, "locality_ground_truth", "a string (locality_prompt is given)"); goto done; }
            if (lp && (st = group_push(c, &loc, "neighborhood", lp, la))) goto done;
            cs->paraphrases = cs->rephrases;
            cs->n_paraphrases = cs->n_rephrases;
            cs->counterfact = truth != NULL && !blank(truth);
        }
        break;
    }
    default:
        st = ked_fail(c->err, KED_ERR_ARG, "%s: no dataset format given", d->path);
        goto done;
    }
    if (blank(target)) { d->n_skipped++; goto done; }
    if (!strstr(prompt, subject)) {
        st = bad(c, fmt == KED_DATA_COUNTERFACT ? "requested_rewrite.subject" : "subject",
                 "a substring of the prompt");
        goto done;
    }
    if (!(cs->req.prompt = pool_str(d, prompt)) || !(cs->req.subject = pool_str(d, subject)) ||
        !(cs->req.target_new = pool_str(d, target)) || (truth && !(cs->req.ground_truth = pool_str(d, truth)))) {
        st = ked_fail(c->err, KED_ERR_NOMEM, "out of memory");
        goto done;
    }
    cs->req.rephrase = cs->n_rephrases ? cs->rephrases[0] : NULL;
    if ((st = groups_commit(c, &loc, &cs->req.locality, &cs->req.n_locality)) ||
        (st = groups_commit(c, &port, &cs->req.portability, &cs->req.n_portability)))
        goto done;
    *kept = 1;
done:
    free(formatted);
    groups_free(&loc);
    groups_free(&port);
    return st;
}

ked_status ked_dataset_load(const char *path, ked_data_format fmt, ked_dataset **out, ked_error *err) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        if (je.line <= 0 && !ked_file_exists(path)) return ked_fail(err, KED_ERR_IO, "%s: cannot open", path);
        return ked_fail(err, KED_ERR_FORMAT, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
    }
    ked_status st = KED_OK;
    ked_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto fail; }
    if (!json_is_array(root)) { st = ked_fail(err, KED_ERR_FORMAT, "%s: expected a JSON list of records", path); goto fail; }
    size_t n = json_array_size(root);
    if (fmt == KED_DATA_AUTO) {
        if (!n) { st = ked_fail(err, KED_ERR_FORMAT, "%s: no records (give --format)", path); goto fail; }
        fmt = dataset_detect(json_array_get(root, 0));
        if (fmt == KED_DATA_AUTO) {
            st = ked_fail(err, KED_ERR_FORMAT,
                          "%s: record 0: unknown format (expected the fields of ZsRE (src, alt), CounterFact "
                          "(requested_rewrite or prompt, target_new) or KnowEdit (locality, portability))", path);
            goto fail;
        }
    }
    d->format = fmt;
    d->n_records = (int)n;
    d->cases = calloc(n ? n : 1, sizeof *d->cases);
    if (!d->cases) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto fail; }
    for (size_t i = 0; i < n; i++) {
        rctx c = {d, (int)i, err};
        int kept = 0;
        if ((st = parse_record(&c, json_array_get(root, i), fmt, &d->cases[d->n], &kept))) goto fail;
        d->n += kept;
    }
    json_decref(root);
    *out = d;
    return KED_OK;
fail:
    json_decref(root);
    ked_dataset_free(d);
    return st;
}

void ked_dataset_free(ked_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n_allocs; i++) free(d->allocs[i]);
    free(d->allocs);
    free(d->cases);
    free(d->path);
    free(d);
}

ked_data_format ked_dataset_format(const ked_dataset *d) { return d->format; }
int ked_dataset_n(const ked_dataset *d) { return d->n; }
const ked_case *ked_dataset_case(const ked_dataset *d, int i) {
    return i >= 0 && i < d->n ? &d->cases[i] : NULL;
}
int ked_dataset_n_records(const ked_dataset *d) { return d->n_records; }
int ked_dataset_n_skipped(const ked_dataset *d) { return d->n_skipped; }
int ked_dataset_n_dropped(const ked_dataset *d) { return d->n_dropped; }
