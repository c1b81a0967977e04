// tok_pretok.c: the pre-tokenizers of tokenizer.json: Split (a PCRE2 pattern or a literal, with
// HF's five delimiter behaviours and invert), ByteLevel (optional prefix space, GPT-2 pattern)
// and Metaspace (spaces -> U+2581, prepend scheme, split). They cut the normalised string into
// ranges; the ones that rewrite text (prefix space, Metaspace) rebuild the string and keep the
// original spans of every byte.
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tok_gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

pcre2_code *tok_compile_regex(const char *pattern, size_t len, int literal, char *why,
                              size_t why_len) {
    int ec;
    PCRE2_SIZE eo;
    uint32_t opt = literal ? PCRE2_UTF | PCRE2_LITERAL | PCRE2_MATCH_INVALID_UTF
                           : PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opt, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(ec, buf, sizeof buf);
        if (why) snprintf(why, why_len, "%s at offset %zu", (char *)buf, (size_t)eo);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // falls back to the interpreter if JIT is absent
    return re;
}

typedef struct {
    size_t start, end;
    int match;
} seg;
typedef struct {
    seg *s;
    size_t n, cap;
} segs;

static int seg_push(segs *v, size_t a, size_t b, int m) {
    if (b <= a) return 0;
    if (tok_grow((void **)&v->s, &v->cap, v->n + 1, sizeof *v->s) != 0) return -1;
    v->s[v->n++] = (seg){a, b, m};
    return 0;
}

// cut [a, b) of ns into matching and non-matching segments (appended to v)
static int find_matches(const tok_pretok *p, const tok_nstr *ns, size_t a, size_t b,
                        pcre2_match_data *md, segs *v) {
    size_t first = v->n, pos = a;
    const char *subj = ns->s + a;
    size_t len = b - a, off = 0;
    while (off < len) {
        size_t ms, me;
        if (p->re) {
            int rc = pcre2_match(p->re, (PCRE2_SPTR)subj, len, off, 0, md, NULL);
            if (rc < 0) break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            ms = ov[0];
            me = ov[1];
            if (me == ms) { // empty match: step over one character
                int l = tok_utf8_len((const unsigned char *)subj + ms, len - ms);
                off = ms + (l ? (size_t)l : 1);
                continue;
            }
        } else {
            const char *q = memmem(subj + off, len - off, p->repl, p->repl_len);
            if (!q) break;
            ms = (size_t)(q - subj);
            me = ms + p->repl_len;
        }
        if (seg_push(v, pos, a + ms, 0) != 0 || seg_push(v, a + ms, a + me, 1) != 0) return -1;
        pos = a + me;
        off = me;
    }
    if (seg_push(v, pos, b, 0) != 0) return -1;
    if (p->invert)
        for (size_t i = first; i < v->n; i++) v->s[i].match = !v->s[i].match;
    return 0;
}

// apply a delimiter behaviour to the segments of one range, appending ranges to out
static int behave(int behavior, seg *s, size_t n, tok_range **out, size_t *nout, size_t *cap) {
    size_t base = *nout;
#define PUSH(a, b)                                                                                 \
    do {                                                                                           \
        if (tok_grow((void **)out, cap, *nout + 1, sizeof **out) != 0) return -1;                  \
        (*out)[(*nout)++] = (tok_range){(a), (b)};                                                 \
    } while (0)
    switch (behavior) {
    case TOK_B_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!s[i].match) PUSH(s[i].start, s[i].end);
        break;
    case TOK_B_ISOLATED:
        for (size_t i = 0; i < n; i++) PUSH(s[i].start, s[i].end);
        break;
    case TOK_B_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            if (*nout > base && i > 0 && s[i - 1].match == s[i].match)
                (*out)[*nout - 1].end = s[i].end;
            else PUSH(s[i].start, s[i].end);
        }
        break;
    case TOK_B_PREV: {
        int prev_match = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i].match && !prev_match && *nout > base) (*out)[*nout - 1].end = s[i].end;
            else PUSH(s[i].start, s[i].end);
            prev_match = s[i].match;
        }
        break;
    }
    case TOK_B_NEXT: {
        // walk backwards: a match is glued to the start of the segment after it
        size_t first = *nout;
        int prev_match = 0;
        for (size_t k = n; k-- > 0;) {
            if (s[k].match && !prev_match && *nout > first) (*out)[*nout - 1].start = s[k].start;
            else PUSH(s[k].start, s[k].end);
            prev_match = s[k].match;
        }
        for (size_t i = first, j = *nout; i + 1 < j; i++, j--) {
            tok_range x = (*out)[i];
            (*out)[i] = (*out)[j - 1];
            (*out)[j - 1] = x;
        }
        break;
    }
    }
#undef PUSH
    return 0;
}

// rebuild ns range by range: prepend `pre` (when want_prefix says so) and replace ' ' by repl
static int rebuild(tok_nstr *ns, tok_range *r, size_t n, const tok_pretok *p, int metaspace) {
    tok_nstr out = {0};
    for (size_t k = 0; k < n; k++) {
        size_t a = r[k].start, b = r[k].end, start = out.len;
        if (b > a) {
            int want;
            if (metaspace) {
                int starts =
                    (b - a >= p->repl_len && memcmp(ns->s + a, p->repl, p->repl_len) == 0) ||
                    ns->s[a] == ' ';
                want = !starts && (p->prepend_scheme == TOK_PREPEND_ALWAYS ||
                                   (p->prepend_scheme == TOK_PREPEND_FIRST && ns->o0[a] == 0));
            } else {
                want = p->add_prefix_space && ns->s[a] != ' ';
            }
            if (want) {
                int l = tok_utf8_len((const unsigned char *)ns->s + a, b - a);
                size_t last = a + (l ? (size_t)l : 1) - 1;
                const char *pre = metaspace ? p->repl : " ";
                size_t plen = metaspace ? p->repl_len : 1;
                if (tok_nstr_push(&out, pre, plen, ns->o0[a], ns->o1[last]) != 0) goto fail;
            }
            for (size_t i = a; i < b; i++) {
                int rc = (metaspace && ns->s[i] == ' ')
                             ? tok_nstr_push(&out, p->repl, p->repl_len, ns->o0[i], ns->o1[i])
                             : tok_nstr_push(&out, ns->s + i, 1, ns->o0[i], ns->o1[i]);
                if (rc != 0) goto fail;
            }
        }
        r[k].start = start;
        r[k].end = out.len;
    }
    tok_nstr_free(ns);
    *ns = out;
    return 0;
fail:
    tok_nstr_free(&out);
    return -1;
}

ked_status tok_pretokenize(const ked_tokenizer *t, tok_nstr *ns, tok_range **ranges, size_t *n,
                           pcre2_match_data *md, ked_error *err) {
    size_t cap = 0, nr = 0;
    tok_range *r = NULL;
    segs v = {0};
    if (tok_grow((void **)&r, &cap, 1, sizeof *r) != 0) goto nomem;
    r[nr++] = (tok_range){0, ns->len};
    for (int k = 0; k < t->n_pre; k++) {
        const tok_pretok *p = &t->pre[k];
        int behavior = p->behavior;
        if (p->type == TOK_P_METASPACE) {
            if (rebuild(ns, r, nr, p, 1) != 0) goto nomem;
            if (!p->split) continue;
            behavior = TOK_B_NEXT;
        } else if (p->type == TOK_P_BYTELEVEL) {
            if (p->add_prefix_space && rebuild(ns, r, nr, p, 0) != 0) goto nomem;
            if (!p->re) continue;
            behavior = TOK_B_ISOLATED;
        }
        tok_range *nr2 = NULL;
        size_t n2 = 0, cap2 = 0;
        for (size_t i = 0; i < nr; i++) {
            v.n = 0;
            if (find_matches(p, ns, r[i].start, r[i].end, md, &v) != 0 ||
                behave(behavior, v.s, v.n, &nr2, &n2, &cap2) != 0) {
                free(nr2);
                goto nomem;
            }
        }
        free(r);
        r = nr2;
        nr = n2;
        cap = cap2;
    }
    free(v.s);
    *ranges = r;
    *n = nr;
    return KED_OK;
nomem:
    free(v.s);
    free(r);
    return ked_fail(err, KED_ERR_NOMEM, "tokenizer: out of memory in pre-tokenizer");
}
