// tok_nstr.c: the normalised string (bytes + the original span of every byte) and the
// normalizers of tokenizer.json that rewrite it: Prepend, Replace, NFC/NFD/NFKC/NFKD (utf8proc),
// Lowercase, Strip. Every byte a normalizer writes inherits the original span of what it replaced,
// so token offsets always point into the caller's input.
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void tok_nstr_free(tok_nstr *ns) {
    free(ns->s);
    free(ns->o0);
    free(ns->o1);
    memset(ns, 0, sizeof *ns);
}

static int nstr_reserve(tok_nstr *ns, size_t need) {
    if (need <= ns->cap) return 0;
    size_t c = ns->cap ? ns->cap : 64;
    while (c < need) c *= 2;
    char *s = realloc(ns->s, c + 1);
    if (!s) return -1;
    ns->s = s;
    size_t *a = realloc(ns->o0, c * sizeof *a);
    if (!a) return -1;
    ns->o0 = a;
    size_t *b = realloc(ns->o1, c * sizeof *b);
    if (!b) return -1;
    ns->o1 = b;
    ns->cap = c;
    return 0;
}

int tok_nstr_push(tok_nstr *ns, const char *p, size_t n, size_t o0, size_t o1) {
    if (n == 0) return 0;
    if (nstr_reserve(ns, ns->len + n) != 0) return -1;
    memcpy(ns->s + ns->len, p, n);
    for (size_t i = 0; i < n; i++) {
        ns->o0[ns->len + i] = o0;
        ns->o1[ns->len + i] = o1;
    }
    ns->len += n;
    ns->s[ns->len] = 0;
    return 0;
}

int tok_nstr_from(tok_nstr *ns, const char *text, size_t len, size_t base, int sanitize) {
    ns->len = 0;
    if (nstr_reserve(ns, len + 1) != 0) return -1;
    if (!sanitize) {
        memcpy(ns->s, text, len);
        for (size_t i = 0; i < len; i++) {
            ns->o0[i] = base + i;
            ns->o1[i] = base + i + 1;
        }
        ns->len = len;
        ns->s[len] = 0;
        return 0;
    }
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        int l = tok_utf8_len(u + i, len - i);
        if (l == 0) {
            if (tok_nstr_push(ns, "\xEF\xBF\xBD", 3, base + i, base + i + 1) != 0) return -1;
            i++;
            continue;
        }
        if (nstr_reserve(ns, ns->len + (size_t)l) != 0) return -1;
        for (int k = 0; k < l; k++) {
            ns->s[ns->len] = text[i + (size_t)k];
            ns->o0[ns->len] = base + i + (size_t)k;
            ns->o1[ns->len] = base + i + (size_t)k + 1;
            ns->len++;
        }
        i += (size_t)l;
    }
    if (ns->s) ns->s[ns->len] = 0;
    return 0;
}

// the span of the whole character starting at byte i of ns
static void char_span(const tok_nstr *ns, size_t i, size_t l, size_t *o0, size_t *o1) {
    *o0 = ns->o0[i];
    *o1 = ns->o1[i + l - 1];
    if (*o1 < *o0) *o1 = *o0;
}

static size_t char_len_at(const tok_nstr *ns, size_t i) {
    int l = tok_utf8_len((const unsigned char *)ns->s + i, ns->len - i);
    return l ? (size_t)l : 1;
}

// replace occurrences of literal a (or matches of re) by b
static int norm_replace(const tok_norm *nm, tok_nstr *ns, tok_nstr *out) {
    out->len = 0;
    size_t i = 0;
    pcre2_match_data *md = NULL;
    if (nm->re) {
        md = pcre2_match_data_create_from_pattern(nm->re, NULL);
        if (!md) return -1;
    }
    while (i < ns->len) {
        size_t ms, me;
        if (nm->re) {
            int rc = pcre2_match(nm->re, (PCRE2_SPTR)ns->s, ns->len, i, 0, md, NULL);
            if (rc < 0) break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            ms = ov[0];
            me = ov[1];
        } else {
            const char *p = nm->alen ? memmem(ns->s + i, ns->len - i, nm->a, nm->alen) : NULL;
            if (!p) break;
            ms = (size_t)(p - ns->s);
            me = ms + nm->alen;
        }
        for (size_t k = i; k < ms; k++)
            if (tok_nstr_push(out, ns->s + k, 1, ns->o0[k], ns->o1[k]) != 0) goto fail;
        if (me == ms) { // empty match: keep one character and go on
            size_t l = char_len_at(ns, ms);
            if (ms >= ns->len) break;
            for (size_t k = ms; k < ms + l && k < ns->len; k++)
                if (tok_nstr_push(out, ns->s + k, 1, ns->o0[k], ns->o1[k]) != 0) goto fail;
            i = ms + l;
            continue;
        }
        if (tok_nstr_push(out, nm->b, nm->blen, ns->o0[ms], ns->o1[me - 1]) != 0) goto fail;
        i = me;
    }
    for (size_t k = i; k < ns->len; k++)
        if (tok_nstr_push(out, ns->s + k, 1, ns->o0[k], ns->o1[k]) != 0) goto fail;
    if (md) pcre2_match_data_free(md);
    return 0;
fail:
    if (md) pcre2_match_data_free(md);
    return -1;
}

// Unicode normalisation by segments: a starter and the characters after it up to the next
// starter are normalised together and share their span. Invalid bytes pass through unchanged.
static int norm_unicode(int type, tok_nstr *ns, tok_nstr *out) {
    utf8proc_option_t opt = UTF8PROC_STABLE;
    if (type == TOK_N_NFC) opt |= UTF8PROC_COMPOSE;
    else if (type == TOK_N_NFD) opt |= UTF8PROC_DECOMPOSE;
    else if (type == TOK_N_NFKC) opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    out->len = 0;
    size_t i = 0;
    const unsigned char *u = (const unsigned char *)ns->s;
    while (i < ns->len) {
        int l = tok_utf8_len(u + i, ns->len - i);
        if (l == 0) {
            if (tok_nstr_push(out, ns->s + i, 1, ns->o0[i], ns->o1[i]) != 0) return -1;
            i++;
            continue;
        }
        if (u[i] < 0x80 && (i + 1 >= ns->len || u[i + 1] < 0x80)) { // ASCII fast path
            if (tok_nstr_push(out, ns->s + i, 1, ns->o0[i], ns->o1[i]) != 0) return -1;
            i++;
            continue;
        }
        // the segment: this character plus following non-starters
        size_t j = i + (size_t)l;
        while (j < ns->len) {
            int l2 = tok_utf8_len(u + j, ns->len - j);
            if (l2 == 0) break;
            utf8proc_int32_t cp;
            utf8proc_iterate(u + j, l2, &cp);
            const utf8proc_property_t *pr = utf8proc_get_property(cp);
            if (pr->combining_class == 0) {
                // Hangul jamo V/T compose with a preceding L/LV: keep them in the segment too
                if (!(cp >= 0x1160 && cp <= 0x11FF)) break;
            }
            j += (size_t)l2;
        }
        utf8proc_uint8_t *res = NULL;
        utf8proc_ssize_t rl = utf8proc_map(u + i, (utf8proc_ssize_t)(j - i), &res, opt);
        size_t o0 = ns->o0[i], o1 = ns->o1[j - 1];
        int rc = rl < 0 ? tok_nstr_push(out, ns->s + i, j - i, o0, o1)
                        : tok_nstr_push(out, (const char *)res, (size_t)rl, o0, o1);
        free(res);
        if (rc != 0) return -1;
        i = j;
    }
    return 0;
}

static int norm_lower(tok_nstr *ns, tok_nstr *out) {
    out->len = 0;
    const unsigned char *u = (const unsigned char *)ns->s;
    for (size_t i = 0; i < ns->len;) {
        int l = tok_utf8_len(u + i, ns->len - i);
        if (l == 0) {
            if (tok_nstr_push(out, ns->s + i, 1, ns->o0[i], ns->o1[i]) != 0) return -1;
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_iterate(u + i, l, &cp);
        utf8proc_uint8_t buf[8];
        utf8proc_ssize_t bl = utf8proc_encode_char(utf8proc_tolower(cp), buf);
        size_t o0, o1;
        char_span(ns, i, (size_t)l, &o0, &o1);
        if (tok_nstr_push(out, (const char *)buf, (size_t)bl, o0, o1) != 0) return -1;
        i += (size_t)l;
    }
    return 0;
}

static int is_ws(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

ked_status tok_normalize(const ked_tokenizer *t, tok_nstr *ns, ked_error *err) {
    tok_nstr tmp = {0};
    for (int k = 0; k < t->n_norm; k++) {
        const tok_norm *nm = &t->norm[k];
        int rc = 0, swap = 1;
        switch (nm->type) {
        case TOK_N_PREPEND:
            if (ns->len == 0) {
                swap = 0;
                break;
            }
            tmp.len = 0;
            {
                size_t o0, o1;
                char_span(ns, 0, char_len_at(ns, 0), &o0, &o1);
                rc = tok_nstr_push(&tmp, nm->a, nm->alen, o0, o1);
                for (size_t i = 0; rc == 0 && i < ns->len; i++)
                    rc = tok_nstr_push(&tmp, ns->s + i, 1, ns->o0[i], ns->o1[i]);
            }
            break;
        case TOK_N_REPLACE: rc = norm_replace(nm, ns, &tmp); break;
        case TOK_N_LOWER: rc = norm_lower(ns, &tmp); break;
        case TOK_N_STRIP: {
            size_t a = 0, b = ns->len;
            if (nm->left)
                while (a < b && is_ws((unsigned char)ns->s[a])) a++;
            if (nm->right)
                while (b > a && is_ws((unsigned char)ns->s[b - 1])) b--;
            tmp.len = 0;
            for (size_t i = a; rc == 0 && i < b; i++)
                rc = tok_nstr_push(&tmp, ns->s + i, 1, ns->o0[i], ns->o1[i]);
            break;
        }
        default: rc = norm_unicode(nm->type, ns, &tmp); break;
        }
        if (rc != 0) {
            tok_nstr_free(&tmp);
            return ked_fail(err, KED_ERR_NOMEM, "tokenizer: out of memory in normalizer");
        }
        if (swap) {
            tok_nstr x = *ns;
            *ns = tmp;
            tmp = x;
        }
    }
    tok_nstr_free(&tmp);
    return KED_OK;
}
