// request.c: a request turned into token ids (design.md §2 "Which token is the subject's").
//
// Prompt ids = encode(prompt) with BOS where the tokenizer adds it. The subject's last token is
// the last token whose byte span (from the tokenizer, not re-tokenised pieces) starts before
// the end of the subject: so with "a little girl named" -> " little", " g", "ir", "l", " named"
// and subject "little girl" it is "l". EasyEdit instead counts tokens of encode(prefix) and
// encode(prefix + subject), which goes wrong when a token straddles the subject's edge.
//
// Target ids are the tokens that encode(prompt + target) adds after encode(prompt) (so that a
// SentencePiece tokenizer does not contribute its dummy-prefix "▁" piece); when the prompt's
// tokens are not a prefix of the joint encoding (TinyStories-656K's tokenizer merges "girl named "
// into one token), encode(target) without specials, minus leading tokens that consume no text of
// their own (a dummy-prefix "▁": an empty span, or the same start as the next token).
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"

int edit_subject_last(const ked_span *spans, int n, size_t subj_start, size_t subj_end) {
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (spans[i].end <= spans[i].start) continue;     // BOS/EOS/dummy prefix
        if (spans[i].start < subj_end && spans[i].end > subj_start) last = i;
    }
    return last;
}

int edit_lookup(const ked_span *spans, int n, size_t s0, size_t s1, int fact_token) {
    int last = edit_subject_last(spans, n, s0, s1);
    if (fact_token == KED_FACT_LAST) return n - 1;
    if (last < 0 || fact_token == KED_FACT_SUBJECT_LAST) return last;
    if (fact_token == KED_FACT_SUBJECT_FIRST) {
        for (int i = 0; i < n; i++)
            if (spans[i].end > spans[i].start && spans[i].start < s1 && spans[i].end > s0) return i;
        return last;
    }
    // the first token after the subject's last; the last token when nothing follows (EasyEdit:
    // p + w, or p + w - 1 with an empty suffix)
    for (int i = last + 1; i < n; i++)
        if (spans[i].end > spans[i].start) return i;
    return last;
}

char *edit_normalise_target(const char *target) {
    size_t n = strlen(target);
    char *s = malloc(n + 2);
    if (!s) return NULL;
    if (target[0] == ' ') memcpy(s, target, n + 1);
    else { s[0] = ' '; memcpy(s + 1, target, n + 1); }
    return s;
}

ked_status edit_target_ids(const ked_tokenizer *tok, const char *prompt, const char *target,
                           int **ids, int *n, ked_error *err) {
    size_t lp = strlen(prompt), lt = strlen(target);
    char *joint = malloc(lp + lt + 1);
    if (!joint) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    memcpy(joint, prompt, lp);
    memcpy(joint + lp, target, lt + 1);
    int *a = NULL, *b = NULL, na = 0, nb = 0;
    ked_span *sp = NULL;
    ked_status st = ked_tokenizer_encode(tok, prompt, lp, 1, &a, NULL, &na, err);
    if (!st) st = ked_tokenizer_encode(tok, joint, lp + lt, 1, &b, NULL, &nb, err);
    free(joint);
    if (st) goto done;
    int prefix = nb > na;
    for (int i = 0; prefix && i < na; i++) prefix = a[i] == b[i];
    if (prefix) {
        *n = nb - na;
        *ids = malloc(sizeof(int) * (size_t)*n);
        if (!*ids) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        memcpy(*ids, b + na, sizeof(int) * (size_t)*n);
        goto done;
    }
    free(b);
    b = NULL;
    if ((st = ked_tokenizer_encode(tok, target, lt, 0, &b, &sp, &nb, err))) goto done;
    // leading tokens that consume no text of their own: an empty span (tok512's dummy prefix) or
    // the same start as the next token (a tokenizer.json Metaspace prefix "▁" whose span is the
    // space the next "▁" really is)
    int skip = 0;
    while (skip < nb && (sp[skip].end <= sp[skip].start ||
                         (skip + 1 < nb && sp[skip + 1].start == sp[skip].start)))
        skip++;
    if (skip == nb) {
        st = ked_fail(err, KED_ERR_ARG, "target '%s' encodes to no tokens", target);
        goto done;
    }
    *n = nb - skip;
    *ids = malloc(sizeof(int) * (size_t)*n);
    if (!*ids) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    memcpy(*ids, b + skip, sizeof(int) * (size_t)*n);
done:
    free(a);
    free(b);
    free(sp);
    return st;
}

void edit_case_free(edit_case *c) {
    for (int i = 0; c->ctx && i < c->n_ctx; i++) free(c->ctx[i].ids);
    free(c->ctx);
    free(c->bare.ids);
    free(c->kl.ids);
    free(c->target);
    memset(c, 0, sizeof *c);
}

// encode text (BOS as the tokenizer says) and find the lookup token of the subject at
// [s0, s1) (or the last token)
static ked_status encode_seq(const ked_tokenizer *tok, const char *text, size_t s0, size_t s1,
                             int fact_token, edit_seq *out, ked_error *err) {
    ked_span *sp = NULL;
    ked_status st = ked_tokenizer_encode(tok, text, strlen(text), 1, &out->ids, &sp, &out->n, err);
    if (st) return st;
    out->lookup = edit_lookup(sp, out->n, s0, s1, fact_token);
    free(sp);
    if (out->lookup < 0)
        return ked_fail(err, KED_ERR_ARG, "no token of \"%s\" covers the subject (bytes %zu..%zu)",
                        text, s0, s1);
    return KED_OK;
}

// text = prefix + middle + suffix (malloc'd)
static char *join3(const char *a, size_t la, const char *b, const char *c) {
    size_t lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
    return s;
}

ked_status edit_case_build(const ked_tokenizer *tok, const ked_request *req,
                           const char *const *templates, int n_templates, int fact_token,
                           edit_case *out, ked_error *err) {
    memset(out, 0, sizeof *out);
    if (!req->prompt || !req->subject || !req->target_new || !*req->subject || !*req->target_new)
        return ked_fail(err, KED_ERR_ARG, "request: prompt, subject and target_new are required");
    // the prompt as text, and where its subject is
    const char *ph = strstr(req->prompt, "{}");
    char *prompt;
    size_t s0;
    if (ph) {
        prompt = join3(req->prompt, (size_t)(ph - req->prompt), req->subject, ph + 2);
        s0 = (size_t)(ph - req->prompt);
    } else {
        const char *at = strstr(req->prompt, req->subject);
        if (!at)
            return ked_fail(err, KED_ERR_ARG, "request: subject \"%s\" is not in the prompt \"%s\"",
                            req->subject, req->prompt);
        prompt = strdup(req->prompt);
        s0 = (size_t)(at - req->prompt);
    }
    if (!prompt) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    size_t s1 = s0 + strlen(req->subject);
    char *target = edit_normalise_target(req->target_new), *kl = NULL;
    ked_status st = KED_OK;
    if (!target) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    if ((st = encode_seq(tok, prompt, s0, s1, fact_token, &out->bare, err))) goto done;
    kl = join3(req->subject, strlen(req->subject), " is a", "");
    if (!kl) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    if ((st = encode_seq(tok, kl, 0, strlen(req->subject), fact_token, &out->kl, err))) goto done;
    if ((st = edit_target_ids(tok, prompt, target, &out->target, &out->n_target, err))) goto done;
    out->ctx = ked_calloc((size_t)(n_templates ? n_templates : 1), sizeof *out->ctx, "templates", err);
    if (!out->ctx) { st = KED_ERR_NOMEM; goto done; }
    for (int i = 0; i < n_templates; i++) {
        const char *h = strstr(templates[i], "{}");
        if (!h || strstr(h + 2, "{}")) {
            st = ked_fail(err, KED_ERR_ARG, "context template %d \"%s\" must hold \"{}\" once", i,
                          templates[i]);
            goto done;
        }
        size_t pre = (size_t)(h - templates[i]);
        char *text = join3(templates[i], pre, prompt, h + 2);
        if (!text) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        st = encode_seq(tok, text, pre + s0, pre + s1, fact_token, &out->ctx[i], err);
        free(text);
        out->n_ctx = i + 1;
        if (st) goto done;
    }
done:
    free(prompt);
    free(target);
    free(kl);
    if (st) edit_case_free(out);
    return st;
}
