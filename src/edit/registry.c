// registry.c: the editing methods by name, and ked_edit, which tokenises a request (context
// templates sampled or given) and hands it to the method.
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"

typedef enum { M_ROME, M_RROME, M_FT, M_MEMIT, M_EMMET, M_ALPHA, M_PMET } method_kind;

typedef struct {
    const char *name;
    method_kind kind;
    int needs_templates;
} method_entry;

static const method_entry methods[] = {
    {"rome", M_ROME, 1},
    {"r-rome", M_RROME, 1},
    {"ft-l", M_FT, 0},
    {"ft-m", M_FT, 0},
    {"ft", M_FT, 0}, // EasyEdit's FT with its default objective, prompt_last = FT-L
    {"memit", M_MEMIT, 1},
    {"emmet", M_EMMET, 1},
    {"alphaedit", M_ALPHA, 1},
    {"pmet", M_PMET, 1},
};

static const method_entry *find_method(const char *name) {
    for (size_t i = 0; name && i < sizeof methods / sizeof methods[0]; i++)
        if (!strcmp(methods[i].name, name)) return &methods[i];
    return NULL;
}

const char *ked_edit_methods(void) { return "rome, r-rome, ft-l, ft-m, ft, memit, emmet, alphaedit, pmet"; }
int ked_edit_method_known(const char *method) { return find_method(method) != NULL; }

ked_edit_opts ked_edit_defaults(void) {
    ked_edit_opts o;
    memset(&o, 0, sizeof o);
    return o;
}

ked_status ked_edit(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                    const ked_request *req, const ked_edit_opts *o, ked_patch **out,
                    ked_edit_info *info, ked_error *err) {
    return ked_edit_batch(m, tok, hp, req, 1, o, out, info, err);
}

ked_status ked_edit_batch(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                          const ked_request *reqs, int n_req, const ked_edit_opts *o,
                          ked_patch **out, ked_edit_info *info, ked_error *err) {
    const ked_request *req = reqs;
    const method_entry *me = find_method(hp->method);
    if (!me)
        return ked_fail(err, KED_ERR_ARG, "unknown editing method '%s' (known: %s)", hp->method,
                        ked_edit_methods());
    int batched = me->kind == M_MEMIT || me->kind == M_EMMET || me->kind == M_ALPHA || me->kind == M_PMET;
    if (n_req < 1 || (!batched && n_req != 1))
        return ked_fail(err, KED_ERR_ARG, "%s edits one request at a time (%d given; memit, emmet, "
                        "alphaedit and pmet take batches)", hp->method, n_req);
    ked_edit_opts def = ked_edit_defaults();
    if (!o) o = &def;
    double t0 = ked_time_s();
    char **sampled = NULL;
    int n_sampled = 0;
    const char *const *templates = o->templates;
    int n_templates = o->n_templates;
    static const char *const bare[1] = {"{}"};
    ked_status st = KED_OK;
    if (!me->needs_templates) {
        templates = bare;
        n_templates = 1;
    } else if (!templates || n_templates <= 0) {
        st = edit_templates_sample(m, tok, (const int (*)[2])hp->ctx_len, hp->n_ctx_len, o->seed,
                                   &sampled, &n_sampled, err);
        if (st) return st;
        templates = (const char *const *)sampled;
        n_templates = n_sampled;
    }
    edit_case c;
    if (batched) {
        edit_case *cs = ked_calloc((size_t)n_req, sizeof *cs, "requests", err);
        int nb = 0;
        st = cs ? KED_OK : KED_ERR_NOMEM;
        for (; !st && nb < n_req; nb++)
            if ((st = edit_case_build(tok, &reqs[nb], templates, n_templates, hp->fact_token, &cs[nb], err)))
                ked_prefix_error(err, "request %d", nb);
        edit_templates_free(sampled, n_sampled);
        if (!st && me->kind == M_PMET)
            st = edit_pmet_cases(m, tok, hp, cs, n_req, o, out, info, err);
        else if (!st)
            st = edit_memit_cases(m, tok, hp, cs, n_req,
                                  me->kind == M_MEMIT ? 0 : me->kind == M_EMMET ? 1 : 2, o, out, info, err);
        for (int i = 0; i < nb && cs; i++) edit_case_free(&cs[i]);
        free(cs);
        if (!st && info) info->seconds = ked_time_s() - t0;
        if (!st) { // the note: the first request, and how many
            size_t nn = strlen(req->prompt) + strlen(req->subject) + strlen(req->target_new) + 64;
            char *note = malloc(nn);
            if (note) {
                int k = snprintf(note, nn, "%s [%s] ->%s%s", req->prompt, req->subject,
                                 req->target_new[0] == ' ' ? "" : " ", req->target_new);
                if (n_req > 1 && k > 0 && (size_t)k < nn) snprintf(note + k, nn - (size_t)k, " (+ %d more)", n_req - 1);
                ked_patch_set_note(*out, note, NULL);
                free(note);
            }
        }
        return st;
    }
    st = edit_case_build(tok, req, templates, n_templates, hp->fact_token, &c, err);
    edit_templates_free(sampled, n_sampled);
    if (st) return st;
    if (me->kind != M_FT && hp->mom2_adjustment && (st = edit_stats_ensure(m, tok, hp, o, err))) {
        edit_case_free(&c); // ROME's C: computed (and cached) up front
        return st;
    }
    if (me->kind == M_FT) {
        ked_hparams h = *hp;
        if (!strcmp(hp->method, "ft-m")) h.ft_target_new = 1;
        if (!strcmp(hp->method, "ft-l") || !strcmp(hp->method, "ft")) h.ft_target_new = 0;
        st = edit_ft_case(m, &h, &c, o, out, info, err);
    } else {
        int rrome = me->kind == M_RROME || hp->random_prefix_keys;
        st = edit_rome_case(m, hp, &c, rrome, o, out, NULL, info, err);
    }
    edit_case_free(&c);
    if (!st) { // the note: what the edit was
        size_t n = strlen(req->prompt) + strlen(req->subject) + strlen(req->target_new) + 32;
        char *note = malloc(n);
        if (note) {
            snprintf(note, n, "%s [%s] ->%s%s", req->prompt, req->subject,
                     req->target_new[0] == ' ' ? "" : " ", req->target_new);
            ked_patch_set_note(*out, note, NULL);
            free(note);
        }
    }
    if (!st && info) info->seconds = ked_time_s() - t0;
    return st;
}
