// tok_json.c: the Hugging Face tokenizer.json loader (BPE models): vocab, merges (strings "a b"
// or pairs), added tokens, normalizer, pre_tokenizer, post_processor (BOS/EOS) and decoder, and
// tokenizer_config.json beside it (add_bos_token, add_eos_token, bos_token, eos_token).
// Every error names the file and the field, e.g. "tokenizer.json: model.merges[12]: ...".
#include "tokenizer/tok_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *path;
    ked_tokenizer *t;
    size_t norm_cap, pre_cap, dec_cap;
    ked_error *err;
} ctx;

static ked_status bad(ctx *c, const char *field, const char *what) {
    return ked_fail(c->err, KED_ERR_FORMAT, "%s: %s: %s", c->path, field, what);
}

static ked_status unsupported(ctx *c, const char *field, const char *type, const char *known) {
    return ked_fail(c->err, KED_ERR_UNSUPPORTED, "%s: %s.type: \"%s\" is not supported (known: %s)",
                    c->path, field, type, known);
}

static ked_status nomem(ctx *c) {
    return ked_fail(c->err, KED_ERR_NOMEM, "%s: out of memory", c->path);
}

// optional boolean field: 0/1, def when absent or null; -1 when of the wrong type
static int get_bool(json_t *o, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_boolean(v)) return -1;
    return json_is_true(v);
}

// a required string field into a malloc'd copy
static ked_status get_str(ctx *c, json_t *o, const char *key, const char *field, char **s,
                          size_t *len) {
    json_t *v = json_object_get(o, key);
    char f[256];
    snprintf(f, sizeof f, "%s.%s", field, key);
    if (!v) return bad(c, f, "missing (expected a string)");
    if (!json_is_string(v)) return bad(c, f, "expected a string");
    *len = json_string_length(v);
    *s = malloc(*len + 1);
    if (!*s) return nomem(c);
    memcpy(*s, json_string_value(v), *len + 1);
    return KED_OK;
}

// a pattern object {"String": s} or {"Regex": r}; *is_regex tells which
static ked_status get_pattern(ctx *c, json_t *o, const char *field, char **s, size_t *len,
                              int *is_regex) {
    json_t *p = json_object_get(o, "pattern");
    char f[256];
    snprintf(f, sizeof f, "%s.pattern", field);
    if (!p) return bad(c, f, "missing (expected {\"String\": ...} or {\"Regex\": ...})");
    if (!json_is_object(p)) return bad(c, f, "expected {\"String\": ...} or {\"Regex\": ...}");
    json_t *v = json_object_get(p, "String");
    *is_regex = 0;
    if (!v) {
        v = json_object_get(p, "Regex");
        *is_regex = 1;
    }
    if (!v || !json_is_string(v))
        return bad(c, f, "expected {\"String\": ...} or {\"Regex\": ...}");
    *len = json_string_length(v);
    *s = malloc(*len + 1);
    if (!*s) return nomem(c);
    memcpy(*s, json_string_value(v), *len + 1);
    return KED_OK;
}

static const char *get_type(json_t *o) {
    json_t *v = json_object_get(o, "type");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

// one entry of a tokenizer.json list-like component (normalizer, pre-tokenizer, decoder) whose
// "type" is not "Sequence"
typedef ked_status (*component_parser)(ctx *c, json_t *j, const char *type, const char *field);

// such a component: null (none), or an object with a "type"; a "Sequence" holds a list of them
// under list_key, each parsed the same way (Sequences may nest)
static ked_status parse_component(ctx *c, json_t *j, const char *field, const char *list_key,
                                  component_parser one) {
    if (!j || json_is_null(j)) return KED_OK;
    if (!json_is_object(j)) return bad(c, field, "expected an object or null");
    const char *type = get_type(j);
    char f[256];
    if (!type) {
        snprintf(f, sizeof f, "%s.type", field);
        return bad(c, f, "missing (expected a string)");
    }
    if (strcmp(type, "Sequence")) return one(c, j, type, field);
    json_t *a = json_object_get(j, list_key);
    snprintf(f, sizeof f, "%s.%s", field, list_key);
    if (!json_is_array(a)) return bad(c, f, "expected an array");
    for (size_t i = 0; i < json_array_size(a); i++) {
        snprintf(f, sizeof f, "%s.%s[%zu]", field, list_key, i);
        ked_status st = parse_component(c, json_array_get(a, i), f, list_key, one);
        if (st != KED_OK) return st;
    }
    return KED_OK;
}

/* ---- normalizers -------------------------------------------------------------------------- */

static ked_status parse_norm(ctx *c, json_t *j, const char *type, const char *field) {
    ked_tokenizer *t = c->t;
    char f[256];
    if (tok_grow((void **)&t->norm, &c->norm_cap, (size_t)t->n_norm + 1, sizeof *t->norm) != 0)
        return nomem(c);
    tok_norm *nm = &t->norm[t->n_norm];
    memset(nm, 0, sizeof *nm);
    ked_status st = KED_OK;
    if (!strcmp(type, "Prepend")) {
        nm->type = TOK_N_PREPEND;
        st = get_str(c, j, "prepend", field, &nm->a, &nm->alen);
    } else if (!strcmp(type, "Replace")) {
        nm->type = TOK_N_REPLACE;
        int is_re = 0;
        st = get_pattern(c, j, field, &nm->a, &nm->alen, &is_re);
        if (st == KED_OK) st = get_str(c, j, "content", field, &nm->b, &nm->blen);
        if (st == KED_OK && is_re) {
            char why[300];
            nm->re = tok_compile_regex(nm->a, nm->alen, 0, why, sizeof why);
            snprintf(f, sizeof f, "%s.pattern.Regex", field);
            if (!nm->re) st = bad(c, f, why);
        }
    } else if (!strcmp(type, "NFC")) nm->type = TOK_N_NFC;
    else if (!strcmp(type, "NFD")) nm->type = TOK_N_NFD;
    else if (!strcmp(type, "NFKC")) nm->type = TOK_N_NFKC;
    else if (!strcmp(type, "NFKD")) nm->type = TOK_N_NFKD;
    else if (!strcmp(type, "Lowercase")) nm->type = TOK_N_LOWER;
    else if (!strcmp(type, "Strip")) {
        nm->type = TOK_N_STRIP;
        nm->left = get_bool(j, "strip_left", 1);
        nm->right = get_bool(j, "strip_right", 1);
        if (nm->left < 0 || nm->right < 0)
            st = bad(c, field, "strip_left/strip_right must be booleans");
    } else {
        return unsupported(c, field, type,
                           "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip");
    }
    t->n_norm++; // counted even on failure so that its strings are freed
    return st;
}

/* ---- pre-tokenizers ----------------------------------------------------------------------- */

static ked_status add_pre_regex(ctx *c, tok_pretok *p, const char *pat, size_t len, int literal,
                                const char *field) {
    char why[300];
    p->re = tok_compile_regex(pat, len, literal, why, sizeof why);
    if (!p->re) {
        char f[256];
        snprintf(f, sizeof f, "%s.pattern", field);
        return bad(c, f, why);
    }
    return KED_OK;
}

static ked_status parse_prepend_scheme(ctx *c, json_t *j, const char *field, int *scheme) {
    json_t *ps = json_object_get(j, "prepend_scheme");
    char f[256];
    snprintf(f, sizeof f, "%s.prepend_scheme", field);
    if (ps && !json_is_null(ps)) {
        if (!json_is_string(ps)) return bad(c, f, "expected \"always\", \"first\" or \"never\"");
        const char *s = json_string_value(ps);
        if (!strcmp(s, "always")) *scheme = TOK_PREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *scheme = TOK_PREPEND_FIRST;
        else if (!strcmp(s, "never")) *scheme = TOK_PREPEND_NEVER;
        else return bad(c, f, "expected \"always\", \"first\" or \"never\"");
        return KED_OK;
    }
    int aps = get_bool(j, "add_prefix_space", 1);
    if (aps < 0) {
        snprintf(f, sizeof f, "%s.add_prefix_space", field);
        return bad(c, f, "expected a boolean");
    }
    *scheme = aps ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
    return KED_OK;
}

static ked_status get_replacement(ctx *c, json_t *j, const char *field, char *out, size_t *len) {
    json_t *r = json_object_get(j, "replacement");
    char f[256];
    snprintf(f, sizeof f, "%s.replacement", field);
    if (!json_is_string(r) || json_string_length(r) == 0 || json_string_length(r) > 4)
        return bad(c, f, "expected a one-character string");
    *len = json_string_length(r);
    memcpy(out, json_string_value(r), *len);
    out[*len] = 0;
    return KED_OK;
}

static ked_status parse_pre(ctx *c, json_t *j, const char *type, const char *field) {
    ked_tokenizer *t = c->t;
    char f[256];
    if (tok_grow((void **)&t->pre, &c->pre_cap, (size_t)t->n_pre + 1, sizeof *t->pre) != 0)
        return nomem(c);
    tok_pretok *p = &t->pre[t->n_pre];
    memset(p, 0, sizeof *p);
    t->n_pre++;
    p->behavior = TOK_B_ISOLATED;
    if (!strcmp(type, "ByteLevel")) {
        p->type = TOK_P_BYTELEVEL;
        p->add_prefix_space = get_bool(j, "add_prefix_space", 1);
        int use_regex = get_bool(j, "use_regex", 1);
        if (p->add_prefix_space < 0 || use_regex < 0)
            return bad(c, field, "add_prefix_space/use_regex must be booleans");
        t->byte_level = 1;
        if (use_regex)
            return add_pre_regex(c, p, tok_gpt2_pattern, PCRE2_ZERO_TERMINATED, 0, field);
        return KED_OK;
    }
    if (!strcmp(type, "Split")) {
        p->type = TOK_P_SPLIT;
        char *pat = NULL;
        size_t len = 0;
        int is_re = 0;
        ked_status st = get_pattern(c, j, field, &pat, &len, &is_re);
        if (st != KED_OK) return st;
        st = add_pre_regex(c, p, pat, len, !is_re, field);
        free(pat);
        if (st != KED_OK) return st;
        json_t *b = json_object_get(j, "behavior");
        snprintf(f, sizeof f, "%s.behavior", field);
        const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                               "Contiguous"};
        p->behavior = -1;
        for (int k = 0; k < 5 && json_is_string(b); k++)
            if (!strcmp(json_string_value(b), names[k])) p->behavior = k;
        if (p->behavior < 0)
            return bad(
                c, f,
                "expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
        p->invert = get_bool(j, "invert", 0);
        if (p->invert < 0) {
            snprintf(f, sizeof f, "%s.invert", field);
            return bad(c, f, "expected a boolean");
        }
        return KED_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        p->type = TOK_P_METASPACE;
        ked_status st = get_replacement(c, j, field, p->repl, &p->repl_len);
        if (st == KED_OK) st = parse_prepend_scheme(c, j, field, &p->prepend_scheme);
        p->split = get_bool(j, "split", 1);
        if (st == KED_OK && p->split < 0) st = bad(c, field, "split must be a boolean");
        return st;
    }
    p->type = TOK_P_SPLIT;
    if (!strcmp(type, "Whitespace")) {
        p->behavior = TOK_B_REMOVED;
        p->invert = 1;
        return add_pre_regex(c, p, "\\w+|[^\\w\\s]+", PCRE2_ZERO_TERMINATED, 0, field);
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        p->behavior = TOK_B_REMOVED;
        return add_pre_regex(c, p, "\\s+", PCRE2_ZERO_TERMINATED, 0, field);
    }
    if (!strcmp(type, "Digits")) {
        int ind = get_bool(j, "individual_digits", 0);
        return add_pre_regex(c, p, ind == 1 ? "\\p{N}" : "\\p{N}+", PCRE2_ZERO_TERMINATED, 0,
                             field);
    }
    if (!strcmp(type, "Punctuation"))
        return add_pre_regex(c, p, "\\p{P}", PCRE2_ZERO_TERMINATED, 0, field);
    return unsupported(
        c, field, type,
        "Sequence, ByteLevel, Split, Metaspace, Whitespace, WhitespaceSplit, Digits, Punctuation");
}

/* ---- decoders ----------------------------------------------------------------------------- */

static ked_status parse_dec(ctx *c, json_t *j, const char *type, const char *field) {
    ked_tokenizer *t = c->t;
    char f[256];
    if (tok_grow((void **)&t->dec, &c->dec_cap, (size_t)t->n_dec + 1, sizeof *t->dec) != 0)
        return nomem(c);
    tok_dec *d = &t->dec[t->n_dec];
    memset(d, 0, sizeof *d);
    t->n_dec++;
    if (!strcmp(type, "Replace")) {
        d->type = TOK_D_REPLACE;
        int is_re = 0;
        ked_status st = get_pattern(c, j, field, &d->a, &d->alen, &is_re);
        if (st == KED_OK) st = get_str(c, j, "content", field, &d->b, &d->blen);
        if (st == KED_OK && is_re) {
            snprintf(f, sizeof f, "%s.pattern", field);
            return ked_fail(c->err, KED_ERR_UNSUPPORTED,
                            "%s: %s: a Regex pattern in a decoder is not supported", c->path, f);
        }
        return st;
    }
    if (!strcmp(type, "ByteFallback")) {
        d->type = TOK_D_BYTEFALLBACK;
        return KED_OK;
    }
    if (!strcmp(type, "Fuse")) {
        d->type = TOK_D_FUSE;
        return KED_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        d->type = TOK_D_BYTELEVEL;
        return KED_OK;
    }
    if (!strcmp(type, "Strip")) {
        d->type = TOK_D_STRIP;
        ked_status st = get_str(c, j, "content", field, &d->a, &d->alen);
        if (st != KED_OK) return st;
        json_t *a = json_object_get(j, "start"), *b = json_object_get(j, "stop");
        if (!json_is_integer(a) || !json_is_integer(b) || json_integer_value(a) < 0 ||
            json_integer_value(b) < 0 || json_integer_value(a) > 1000 ||
            json_integer_value(b) > 1000)
            return bad(c, field, "start and stop must be small non-negative integers");
        d->start = (int)json_integer_value(a);
        d->stop = (int)json_integer_value(b);
        return KED_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        d->type = TOK_D_METASPACE;
        char r[8];
        size_t rl;
        ked_status st = get_replacement(c, j, field, r, &rl);
        if (st != KED_OK) return st;
        if (!(d->a = malloc(rl + 1))) return nomem(c);
        memcpy(d->a, r, rl + 1);
        d->alen = rl;
        int scheme;
        st = parse_prepend_scheme(c, j, field, &scheme);
        d->prepend = scheme != TOK_PREPEND_NEVER;
        return st;
    }
    return unsupported(c, field, type,
                       "Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace");
}

/* ---- model -------------------------------------------------------------------------------- */

static ked_status bad_merge(ctx *c, size_t i, const char *what) {
    char f[64];
    snprintf(f, sizeof f, "model.merges[%zu]", i);
    return bad(c, f, what);
}

static ked_status parse_merges(ctx *c, json_t *merges) {
    ked_tokenizer *t = c->t;
    if (!json_is_array(merges)) return bad(c, "model.merges", "missing or not an array");
    if (tok_pairmap_init(&t->merges, json_array_size(merges)) != 0) return nomem(c);
    t->has_merges = 1;
    char buf[2048];
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t l = json_string_length(m);
            const char *sp = memchr(s, ' ', l);
            if (!sp || sp == s || sp == s + l - 1 || memchr(sp + 1, ' ', (size_t)(s + l - sp - 1)))
                return bad_merge(c, i, "expected \"A B\" (two tokens separated by one space)");
            a = s;
            la = (size_t)(sp - s);
            b = sp + 1;
            lb = l - la - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            la = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            lb = json_string_length(json_array_get(m, 1));
        } else {
            return bad_merge(c, i, "expected a string \"A B\" or a pair of strings [\"A\", \"B\"]");
        }
        if (la + lb > sizeof buf) return bad_merge(c, i, "merge is too long");
        int ia = tok_strmap_get(&t->vocab, a, la), ib = tok_strmap_get(&t->vocab, b, lb);
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int im = tok_strmap_get(&t->vocab, buf, la + lb);
        if (ia < 0 || ib < 0 || im < 0) {
            char msg[2200];
            snprintf(msg, sizeof msg, "merge \"%.*s\" + \"%.*s\": %s is not in model.vocab",
                     (int)la, a, (int)lb, b,
                     ia < 0   ? "the first token"
                     : ib < 0 ? "the second token"
                              : "the merged token");
            return bad_merge(c, i, msg);
        }
        if (tok_pairmap_put(&t->merges, ia, ib, (int)i, im) != 0) return nomem(c);
    }
    return KED_OK;
}

// the id of a special-token setting: a string or an object with "content"
static int token_setting_id(ked_tokenizer *t, json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return tok_strmap_get(&t->vocab, json_string_value(v), json_string_length(v));
}

// BOS/EOS from post_processor TemplateProcessing: special tokens before / after $A
static void parse_template(ked_tokenizer *t, json_t *pp) {
    if (!json_is_object(pp)) return;
    const char *type = get_type(pp);
    if (!type || strcmp(type, "TemplateProcessing") != 0) return;
    json_t *single = json_object_get(pp, "single");
    json_t *specials = json_object_get(pp, "special_tokens");
    if (!json_is_array(single)) return;
    int seen_seq = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *it = json_array_get(single, i);
        if (json_object_get(it, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        json_t *sp = json_object_get(it, "SpecialToken");
        json_t *name = sp ? json_object_get(sp, "id") : NULL;
        if (!json_is_string(name)) continue;
        int id = -1;
        json_t *def = json_object_get(specials, json_string_value(name));
        json_t *ids = def ? json_object_get(def, "ids") : NULL;
        if (json_is_array(ids) && json_is_integer(json_array_get(ids, 0)))
            id = (int)json_integer_value(json_array_get(ids, 0));
        if (id < 0 || id >= t->n_vocab) id = token_setting_id(t, name);
        if (id < 0) continue;
        if (!seen_seq) {
            t->bos = id;
            t->add_bos = 1;
        } else {
            t->eos = id;
            t->add_eos = 1;
        }
    }
}

// tokenizer_config.json beside the tokenizer.json, if there is one
static ked_status read_config(ctx *c) {
    ked_tokenizer *t = c->t;
    char *dir = strdup(c->path);
    if (!dir) return nomem(c);
    char *slash = strrchr(dir, '/');
    char *cp = slash ? (*slash = 0, ked_path_join(dir, "tokenizer_config.json"))
                     : strdup("tokenizer_config.json");
    free(dir);
    if (!cp) return nomem(c);
    if (!ked_file_exists(cp)) {
        free(cp);
        return KED_OK;
    }
    json_error_t je;
    json_t *root = json_load_file(cp, JSON_DECODE_INT_AS_REAL, &je); // model_max_length: 1e30
    if (!root || !json_is_object(root)) {
        ked_status st = ked_fail(c->err, KED_ERR_FORMAT, "%s: line %d: %s", cp, je.line,
                                 root ? "expected an object" : je.text);
        json_decref(root);
        free(cp);
        return st;
    }
    int id;
    json_t *v;
    if ((v = json_object_get(root, "bos_token")) && (id = token_setting_id(t, v)) >= 0) t->bos = id;
    if ((v = json_object_get(root, "eos_token")) && (id = token_setting_id(t, v)) >= 0) t->eos = id;
    int ab = get_bool(root, "add_bos_token", -2), ae = get_bool(root, "add_eos_token", -2);
    ked_status st = KED_OK;
    if (ab == -1 || ae == -1)
        st = ked_fail(c->err, KED_ERR_FORMAT, "%s: add_bos_token/add_eos_token: expected a boolean",
                      cp);
    if (ab >= 0) t->add_bos = ab;
    if (ae >= 0) t->add_eos = ae;
    json_decref(root);
    free(cp);
    return st;
}

static ked_status load(ctx *c, json_t *root) {
    const char *path = c->path;
    if (!json_is_object(root)) return bad(c, "(top level)", "expected an object");
    json_t *model = json_object_get(root, "model");
    if (!model) return bad(c, "model", "missing (expected an object)");
    if (!json_is_object(model)) return bad(c, "model", "expected an object");
    const char *mtype = get_type(model);
    if (json_object_get(model, "type") && !mtype) return bad(c, "model.type", "expected a string");
    if (mtype && strcmp(mtype, "BPE") != 0)
        return ked_fail(c->err, KED_ERR_UNSUPPORTED,
                        "%s: model.type: \"%s\" is not supported (only BPE)", path, mtype);
    json_t *vocab = json_object_get(model, "vocab");
    if (!vocab) return bad(c, "model.vocab", "missing (expected an object of token -> id)");
    if (!json_is_object(vocab)) return bad(c, "model.vocab", "expected an object of token -> id");
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return bad(c, "added_tokens", "expected an array");
    int maxid = -1;
    const char *k;
    json_t *v;
    char f[300];
    json_object_foreach(vocab, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= (1 << 24)) {
            snprintf(f, sizeof f, "model.vocab[\"%.200s\"]", k);
            return bad(c, f, "expected an integer id in [0, 2^24)");
        }
        if (json_integer_value(v) > maxid) maxid = (int)json_integer_value(v);
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id"),
               *ct = json_object_get(a, "content");
        snprintf(f, sizeof f, "added_tokens[%zu]", i);
        if (!json_is_object(a) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (1 << 24) || !json_is_string(ct) ||
            json_string_length(ct) == 0)
            return bad(c, f, "expected {\"id\": integer, \"content\": non-empty string, ...}");
        if (json_integer_value(id) > maxid) maxid = (int)json_integer_value(id);
    }
    ked_tokenizer *t = c->t = tok_new(maxid + 1, c->err);
    if (!t) return KED_ERR_NOMEM;
    t->kind = TOK_KIND_HF;
    json_object_foreach(vocab, k, v) if (tok_set_piece(t, (int)json_integer_value(v), k,
                                                       strlen(k)) != 0) return nomem(c);
    t->added = calloc(json_array_size(added) + 1, sizeof *t->added);
    if (!t->added) return nomem(c);
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        int id = (int)json_integer_value(json_object_get(a, "id"));
        json_t *ct = json_object_get(a, "content");
        tok_added *ad = &t->added[t->n_added];
        if (!(ad->s = malloc(json_string_length(ct) + 1))) return nomem(c);
        t->n_added++;
        memcpy(ad->s, json_string_value(ct), json_string_length(ct) + 1);
        ad->len = json_string_length(ct);
        ad->id = id;
        ad->special = get_bool(a, "special", 0) == 1;
        ad->lstrip = get_bool(a, "lstrip", 0) == 1;
        ad->rstrip = get_bool(a, "rstrip", 0) == 1;
        if (ad->special) t->special[id] = 1;
        if (!t->piece[id] && tok_set_piece(t, id, ad->s, ad->len) != 0) return nomem(c);
    }
    // model options
    int bf = get_bool(model, "byte_fallback", 0), fu = get_bool(model, "fuse_unk", 0),
        im = get_bool(model, "ignore_merges", 0);
    if (bf < 0) return bad(c, "model.byte_fallback", "expected a boolean");
    if (fu < 0) return bad(c, "model.fuse_unk", "expected a boolean");
    if (im < 0) return bad(c, "model.ignore_merges", "expected a boolean");
    t->byte_fallback = bf;
    t->fuse_unk = fu;
    t->ignore_merges = im;
    const char *opts[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *o = json_object_get(model, opts[i]);
        snprintf(f, sizeof f, "model.%s", opts[i]);
        if (o && !json_is_null(o) && !(json_is_string(o) && json_string_length(o) == 0))
            return ked_fail(c->err, KED_ERR_UNSUPPORTED, "%s: %s: not supported (only null)", path,
                            f);
    }
    static const struct {
        const char *field, *list_key;
        component_parser one;
    } parts[3] = {{"normalizer", "normalizers", parse_norm},
                  {"pre_tokenizer", "pretokenizers", parse_pre},
                  {"decoder", "decoders", parse_dec}};
    ked_status st;
    for (int i = 0; i < 3; i++)
        if ((st = parse_component(c, json_object_get(root, parts[i].field), parts[i].field,
                                  parts[i].list_key, parts[i].one)) != KED_OK)
            return st;
    if ((st = tok_finish(t, path, c->err)) != KED_OK) return st;
    json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        if (!json_is_string(unk)) return bad(c, "model.unk_token", "expected a string or null");
        t->unk_id = tok_strmap_get(&t->vocab, json_string_value(unk), json_string_length(unk));
        if (t->unk_id < 0) return bad(c, "model.unk_token", "not in model.vocab");
    }
    if ((st = parse_merges(c, json_object_get(model, "merges"))) != KED_OK) return st;
    parse_template(t, json_object_get(root, "post_processor"));
    if ((st = read_config(c)) != KED_OK) return st;
    snprintf(t->kind_str, sizeof t->kind_str, "tokenizer.json (BPE, %s, %zu merges)",
             t->byte_level      ? "byte-level"
             : t->byte_fallback ? "SentencePiece-style, byte fallback"
                                : "SentencePiece-style",
             t->merges.n);
    return KED_OK;
}

ked_status tok_load_json(const char *path, ked_tokenizer **out, ked_error *err) {
    json_error_t je;
    char *data;
    size_t len;
    ked_status st0 = ked_read_file(path, &data, &len, err); // one read: faster than json_load_file
    if (st0 != KED_OK) return st0;
    json_t *root = json_loadb(data, len, 0, &je);
    free(data);
    if (!root)
        return ked_fail(err, KED_ERR_FORMAT, "%s: line %d, column %d: %s", path, je.line, je.column,
                        je.text);
    ctx c = {path, NULL, 0, 0, 0, err};
    ked_status st = load(&c, root);
    json_decref(root);
    if (st != KED_OK) {
        ked_tokenizer_free(c.t);
        return st;
    }
    *out = c.t;
    return KED_OK;
}
