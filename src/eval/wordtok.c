// wordtok.c: nltk.word_tokenize without punkt's data (docs/evaluation.md, "Fluency"): the text is
// cut into sentences after . ! ? (and any closing quotes or brackets) followed by white space,
// and each sentence goes through NLTK's NLTKWordTokenizer (the improved Treebank tokenizer,
// nltk/tokenize/destructive.py) rule for rule, in its order, as PCRE2 substitutions (UTF + UCP,
// so \w, \s, \d and \b are Unicode-aware as in Python's re); then the text is split on white
// space. Replacements are written in PCRE2's syntax ($1 for Python's \1, $0 for \g<0>).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

typedef struct {
    const char *pat, *rep;
} rule;

static const rule starting_quotes[] = {
    {"([«“‘„]|[`]+)", " $1 "},
    {"^\"", "``"},
    {"(``)", " $1 "},
    {"([ \\(\\[{<])(\"|\\'{2})", "$1 `` "},
    {"(?i)(\\')(?!re|ve|ll|m|t|s|d|n)(\\w)\\b", "$1 $2"},
};
static const rule punctuation[] = {
    {"([^\\.])(\\.)([\\]\\)}>\"\\'»”’ ]*)\\s*$", "$1 $2 $3 "}, // the final period
    {"([:,])([^\\d])", " $1 $2"},
    {"([:,])$", " $1 "},
    {"\\.{2,}", " $0 "},
    {"[;@#$%&]", " $0 "},
    {"([^\\.])(\\.)([\\]\\)}>\"\\']*)\\s*$", "$1 $2$3 "}, // the final period (again, as NLTK)
    {"[?!]", " $0 "},
    {"([^'])' ", "$1 ' "},
    {"[*]", " $0 "},
};
static const rule parens[] = {
    {"[\\]\\[\\(\\)\\{\\}\\<\\>]", " $0 "},
    {"--", " -- "},
};
static const rule ending_quotes[] = {
    {"([»”’])", " $1 "},
    {"''", " '' "},
    {"\"", " '' "},
    {"([^' ])('[sS]|'[mM]|'[dD]|') ", "$1 $2 "},
    {"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", "$1 $2 "},
};
static const rule contractions[] = {
    {"(?i)\\b(can)(?#X)(not)\\b", " $1 $2 "},
    {"(?i)\\b(d)(?#X)('ye)\\b", " $1 $2 "},
    {"(?i)\\b(gim)(?#X)(me)\\b", " $1 $2 "},
    {"(?i)\\b(gon)(?#X)(na)\\b", " $1 $2 "},
    {"(?i)\\b(got)(?#X)(ta)\\b", " $1 $2 "},
    {"(?i)\\b(lem)(?#X)(me)\\b", " $1 $2 "},
    {"(?i)\\b(more)(?#X)('n)\\b", " $1 $2 "},
    {"(?i)\\b(wan)(?#X)(na)(?=\\s)", " $1 $2 "},
    {"(?i) ('t)(?#X)(is)\\b", " $1 $2 "},
    {"(?i) ('t)(?#X)(was)\\b", " $1 $2 "},
};

// apply one rule to *s (malloc'd, replaced)
static ked_status apply(const rule *r, char **s, ked_error *err) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)r->pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    if (!re) return ked_fail(err, KED_ERR_ARG, "word tokenizer: pattern %s: PCRE2 error %d", r->pat, ec);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    size_t len = strlen(*s);
    PCRE2_SIZE cap = len * 2 + 64;
    char *out = NULL;
    ked_status st = KED_OK;
    for (int tries = 0; tries < 2; tries++) {
        free(out);
        out = malloc(cap + 1);
        if (!out || !md) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); break; }
        PCRE2_SIZE olen = cap;
        int rc = pcre2_substitute(re, (PCRE2_SPTR)*s, len, 0,
                                  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH | PCRE2_NO_UTF_CHECK,
                                  md, NULL, (PCRE2_SPTR)r->rep, PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)out, &olen);
        if (rc == PCRE2_ERROR_NOMEMORY) { cap = olen + 1; continue; }
        if (rc < 0) {
            st = ked_fail(err, KED_ERR_ARG, "word tokenizer: pattern %s: PCRE2 error %d", r->pat, rc);
            break;
        }
        out[olen] = 0;
        free(*s);
        *s = out;
        out = NULL;
        break;
    }
    free(out);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return st;
}

static ked_status apply_all(const rule *r, size_t n, char **s, ked_error *err) {
    for (size_t i = 0; i < n; i++) {
        ked_status st = apply(&r[i], s, err);
        if (st) return st;
    }
    return KED_OK;
}

// Python's str.split(): ASCII white space and \x1c-\x1f
static int is_ws(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f); }

static ked_status push(char ***toks, int *n, int *cap, const char *s, size_t len, ked_error *err) {
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        char **nt = realloc(*toks, sizeof *nt * (size_t)nc);
        if (!nt) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
        *toks = nt;
        *cap = nc;
    }
    char *t = malloc(len + 1);
    if (!t) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    memcpy(t, s, len);
    t[len] = 0;
    (*toks)[(*n)++] = t;
    return KED_OK;
}

// NLTKWordTokenizer.tokenize of one sentence, tokens appended
static ked_status tokenize_sentence(const char *sent, size_t len, char ***toks, int *n, int *cap, ked_error *err) {
    char *s = malloc(len + 3);
    if (!s) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    memcpy(s, sent, len);
    s[len] = 0;
    ked_status st = apply_all(starting_quotes, sizeof starting_quotes / sizeof *starting_quotes, &s, err);
    if (!st) st = apply_all(punctuation, sizeof punctuation / sizeof *punctuation, &s, err);
    if (!st) st = apply_all(parens, sizeof parens / sizeof *parens, &s, err);
    if (!st) { // " " + text + " "
        size_t l = strlen(s);
        char *t = malloc(l + 3);
        if (!t) st = ked_fail(err, KED_ERR_NOMEM, "out of memory");
        else { t[0] = ' '; memcpy(t + 1, s, l); t[l + 1] = ' '; t[l + 2] = 0; free(s); s = t; }
    }
    if (!st) st = apply_all(ending_quotes, sizeof ending_quotes / sizeof *ending_quotes, &s, err);
    if (!st) st = apply_all(contractions, sizeof contractions / sizeof *contractions, &s, err);
    for (size_t i = 0; !st && s[i];) {
        while (s[i] && is_ws((unsigned char)s[i])) i++;
        size_t j = i;
        while (s[j] && !is_ws((unsigned char)s[j])) j++;
        if (j > i) st = push(toks, n, cap, s + i, j - i, err);
        i = j;
    }
    free(s);
    return st;
}

void ked_word_tokens_free(char **tokens, int n) {
    for (int i = 0; i < n; i++) free(tokens[i]);
    free(tokens);
}

ked_status ked_word_tokenize(const char *text, char ***tokens, int *n_out, ked_error *err) {
    char **toks = NULL;
    int n = 0, cap = 0;
    ked_status st = KED_OK;
    size_t i = 0, len = strlen(text), start = 0;
    // the sentence split standing in for punkt
    while (!st && i < len) {
        unsigned char c = (unsigned char)text[i];
        if (c == '.' || c == '!' || c == '?') {
            size_t j = i + 1;
            while (j < len && strchr(".!?", text[j])) j++;
            while (j < len && strchr("\"')]}", text[j])) j++;
            if (j < len && is_ws((unsigned char)text[j])) {
                st = tokenize_sentence(text + start, j - start, &toks, &n, &cap, err);
                while (j < len && is_ws((unsigned char)text[j])) j++;
                start = i = j;
                continue;
            }
            i = j;
            continue;
        }
        i++;
    }
    if (!st && start < len) st = tokenize_sentence(text + start, len - start, &toks, &n, &cap, err);
    if (st) { ked_word_tokens_free(toks, n); return st; }
    *tokens = toks;
    *n_out = n;
    return KED_OK;
}
