// templates.c: context templates for the locate-then-edit methods. EasyEdit's ROME recipe
// (rome_main.py get_context_templates): "{}" followed by, for each (length, count) of
// context_template_length_params, count/5 top-k 5 samples from each of the prefixes "The",
// "Therefore", "Because", "I", "You" of at most `length` tokens counting the prompt's (no stop at
// EOS), decoded as generate_fast does (special tokens skipped, NFKD, "\n\n" -> " ",
// "<|endoftext|>" removed), braces removed, + ". {}". EasyEdit samples with torch's global RNG; ked seeds one explicit
// sampler (sample j of prefix p of group g uses seed + 1000003 * (g * 64 + p) + j), so the
// templates are the same on every run with the same seed, or come from a file.
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "edit/edit.h"

void edit_templates_free(char **t, int n) {
    for (int i = 0; t && i < n; i++) free(t[i]);
    free(t);
}

static ked_status push(char ***t, int *n, char *s, ked_error *err) {
    if (!s) return ked_fail(err, KED_ERR_NOMEM, "out of memory for templates");
    char **nt = realloc(*t, sizeof *nt * (size_t)(*n + 1));
    if (!nt) { free(s); return ked_fail(err, KED_ERR_NOMEM, "out of memory for templates"); }
    *t = nt;
    (*t)[(*n)++] = s;
    return KED_OK;
}

ked_status edit_templates_sample(const ked_model *m, const ked_tokenizer *tok,
                                 const int (*len_params)[2], int n_params, uint64_t seed,
                                 char ***out, int *n_out, ked_error *err) {
    static const char *prefixes[5] = {"The", "Therefore", "Because", "I", "You"};
    char **t = NULL;
    int n = 0;
    ked_status st = push(&t, &n, strdup("{}"), err);
    for (int g = 0; !st && g < n_params; g++) {
        int length = len_params[g][0], per = len_params[g][1] / 5;
        for (int p = 0; !st && p < 5; p++) {
            int *ids = NULL, n_ids = 0;
            if ((st = ked_tokenizer_encode(tok, prefixes[p], strlen(prefixes[p]), 1, &ids, NULL,
                                           &n_ids, err)))
                break;
            int cap = n_ids + (length > n_ids ? length - n_ids : 0);
            int *gen = malloc(sizeof(int) * (size_t)(cap > 0 ? cap : 1));
            if (!gen) { free(ids); st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); break; }
            for (int j = 0; !st && j < per; j++) {
                ked_generate_opts o = ked_generate_defaults();
                o.max_new = length > n_ids ? length - n_ids : 0;
                o.temperature = 1.0f;
                o.top_k = 5;
                o.seed = seed + 1000003ull * (uint64_t)(g * 64 + p) + (uint64_t)j;
                o.stop_at_eos = 0; // generate_fast runs to max_out_len
                int n_gen = 0;
                char *text = NULL;
                if (o.max_new > 0)
                    st = ked_generate(m, ids, n_ids, &o, gen, cap, &n_gen, NULL, NULL, err);
                else { memcpy(gen, ids, sizeof(int) * (size_t)n_ids); n_gen = n_ids; }
                if (!st) st = ked_tokenizer_decode(tok, gen, n_gen, 1, &text, err);
                if (st) break;
                // as generate_fast returns it: NFKD, "\n\n" -> " ", "<|endoftext|>" out; then
                // braces out and ". {}" appended
                char *nf = (char *)utf8proc_NFKD((const utf8proc_uint8_t *)text);
                if (nf) { free(text); text = nf; }
                size_t L = strlen(text), k = 0;
                char *s = malloc(L + 5);
                if (!s) { free(text); st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); break; }
                for (size_t i = 0; i < L; i++) {
                    if (!strncmp(text + i, "<|endoftext|>", 13)) { i += 12; continue; }
                    if (text[i] == '\n' && text[i + 1] == '\n') { s[k++] = ' '; i++; continue; }
                    if (text[i] != '{' && text[i] != '}') s[k++] = text[i];
                }
                memcpy(s + k, ". {}", 5);
                free(text);
                st = push(&t, &n, s, err);
            }
            free(gen);
            free(ids);
        }
    }
    if (st) { edit_templates_free(t, n); return st; }
    *out = t;
    *n_out = n;
    return KED_OK;
}

ked_status edit_templates_read(const char *path, char ***out, int *n_out, ked_error *err) {
    char *data = NULL;
    size_t len = 0;
    ked_status st = ked_read_file(path, &data, &len, err);
    if (st) return st;
    char **t = NULL;
    int n = 0, line = 0;
    for (char *save = NULL, *s = strtok_r(data, "\n", &save); s; s = strtok_r(NULL, "\n", &save)) {
        line++;
        size_t l = strlen(s);
        if (l && s[l - 1] == '\r') s[--l] = 0;
        if (!l) continue;
        const char *h = strstr(s, "{}");
        if (!h || strstr(h + 2, "{}")) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: line %d: a template must hold \"{}\" once",
                          path, line);
            break;
        }
        if ((st = push(&t, &n, strdup(s), err))) break;
    }
    free(data);
    if (!st && n == 0) st = ked_fail(err, KED_ERR_FORMAT, "%s: no templates", path);
    if (st) { edit_templates_free(t, n); return st; }
    *out = t;
    *n_out = n;
    return KED_OK;
}

/* ---- public wrappers ------------------------------------------------------------------------ */

ked_status ked_edit_templates(const ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                              uint64_t seed, char ***out, int *n, ked_error *err) {
    return edit_templates_sample(m, tok, (const int (*)[2])hp->ctx_len, hp->n_ctx_len, seed, out, n,
                                 err);
}
ked_status ked_edit_templates_read(const char *path, char ***out, int *n, ked_error *err) {
    return edit_templates_read(path, out, n, err);
}
void ked_edit_templates_free(char **templates, int n) { edit_templates_free(templates, n); }
