// tokenizer.c: finding and loading a tokenizer (ked_tokenizer_load), the object's life cycle
// and its accessors. The formats live in tok_json.c, tok_gpt2.c and tok_llama2c.c.
#include "tokenizer/tok_internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ked_tokenizer *tok_new(int n_vocab, ked_error *err) {
    ked_tokenizer *t = ked_calloc(1, sizeof *t, "tokenizer", err);
    if (!t) return NULL;
    t->n_vocab = n_vocab;
    t->piece = calloc((size_t)n_vocab + 1, sizeof *t->piece);
    t->piece_len = calloc((size_t)n_vocab + 1, sizeof *t->piece_len);
    t->special = calloc((size_t)n_vocab + 1, 1);
    t->bos = t->eos = t->unk_id = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    pthread_mutex_init(&t->cache_lock, NULL);
    if (!t->piece || !t->piece_len || !t->special) {
        ked_tokenizer_free(t);
        ked_fail(err, KED_ERR_NOMEM, "out of memory for a vocabulary of %d tokens", n_vocab);
        return NULL;
    }
    return t;
}

// vocabulary strings come from 1 MiB blocks, freed together (one malloc per block, not per token)
static char *arena_alloc(ked_tokenizer *t, size_t n) {
    if (n > t->arena_left) {
        size_t block = n > (1u << 20) ? n : (1u << 20);
        char **a = realloc(t->arena, ((size_t)t->n_arena + 1) * sizeof *a);
        if (!a) return NULL;
        t->arena = a;
        if (!(a[t->n_arena] = malloc(block))) return NULL;
        t->arena_ptr = a[t->n_arena++];
        t->arena_left = block;
    }
    char *p = t->arena_ptr;
    t->arena_ptr += n;
    t->arena_left -= n;
    return p;
}

int tok_set_piece(ked_tokenizer *t, int id, const char *s, size_t len) {
    if (id < 0 || id >= t->n_vocab) return -1;
    char *p = arena_alloc(t, len + 1);
    if (!p) return -1;
    memcpy(p, s, len);
    p[len] = 0;
    t->piece[id] = p;
    t->piece_len[id] = (uint32_t)len;
    return 0;
}

ked_status tok_finish(ked_tokenizer *t, const char *path, ked_error *err) {
    tok_strmap_free(&t->vocab);
    if (tok_strmap_init(&t->vocab, (size_t)t->n_vocab) != 0) goto nomem;
    for (int i = 0; i < t->n_vocab; i++)
        if (t->piece[i] && tok_strmap_put(&t->vocab, t->piece[i], t->piece_len[i], i) != 0)
            goto nomem;
    if (t->byte_level) {
        const tok_bytechar *bc = tok_byte_chars();
        for (int b = 0; b < 256; b++) t->byte_id[b] = tok_strmap_get(&t->vocab, bc[b].s, bc[b].len);
        if (!t->cache && !(t->cache = calloc(TOK_CACHE_SLOTS, sizeof *t->cache))) goto nomem;
    } else if (t->byte_fallback) {
        for (int b = 0; b < 256; b++) {
            char buf[8];
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            t->byte_id[b] = tok_strmap_get(&t->vocab, buf, 6);
        }
    }
    if (t->kind == TOK_KIND_HF && !t->byte_level && !t->ignore_merges) {
        // When no vocabulary string holds U+2581 after a different character (LLaMA, Mistral:
        // "▁the", "▁▁▁", but never "a▁b"), no merge can join across such a U+2581, so a word can be
        // cut before it without changing the ids -- and the pieces are short enough to cache.
        // Tokenizers that merge across words (TinyStories-656K: "little▁girl▁") keep whole words.
        t->split_meta =
            tok_strmap_get(&t->vocab, "\xe2\x96\x81", 3) >= 0; // else unknowns fuse across it
        for (int i = 0; i < t->n_vocab && t->split_meta; i++) {
            const unsigned char *p = (const unsigned char *)t->piece[i];
            if (!p) continue;
            for (size_t k = 1; k + 3 <= t->piece_len[i]; k++)
                if (p[k] == 0xE2 && p[k + 1] == 0x96 && p[k + 2] == 0x81 &&
                    !(k >= 3 && p[k - 3] == 0xE2 && p[k - 2] == 0x96 && p[k - 1] == 0x81)) {
                    t->split_meta = 0;
                    break;
                }
        }
        if (t->split_meta && !t->cache && !(t->cache = calloc(TOK_CACHE_SLOTS, sizeof *t->cache)))
            goto nomem;
    }
    return KED_OK;
nomem:
    return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory building the vocabulary map", path);
}

void ked_tokenizer_free(ked_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_arena; i++) free(t->arena[i]);
    free(t->arena);
    free(t->piece);
    free(t->piece_len);
    free(t->score);
    free(t->special);
    tok_strmap_free(&t->vocab);
    tok_pairmap_free(&t->merges);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
        if (t->norm[i].re) pcre2_code_free(t->norm[i].re);
    }
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++)
        if (t->pre[i].re) pcre2_code_free(t->pre[i].re);
    free(t->pre);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
    }
    free(t->dec);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].s);
    free(t->added);
    free(t->cache);
    pthread_mutex_destroy(&t->cache_lock);
    free(t);
}

int ked_tokenizer_vocab_size(const ked_tokenizer *t) { return t ? t->n_vocab : 0; }
int ked_tokenizer_bos(const ked_tokenizer *t) { return t ? t->bos : -1; }
int ked_tokenizer_eos(const ked_tokenizer *t) { return t ? t->eos : -1; }
const char *ked_tokenizer_kind(const ked_tokenizer *t) { return t ? t->kind_str : ""; }

const char *ked_tokenizer_piece(const ked_tokenizer *t, int id) {
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    return t->piece[id];
}

int ked_tokenizer_token_id(const ked_tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    return tok_strmap_get(&t->vocab, piece, strlen(piece));
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

// a tok*.bin llama2.c tokenizer in dir (the first by name), malloc'd path or NULL
static char *find_tok_bin(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    struct dirent *e;
    char *best = NULL;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "tok", 3) != 0 || !ends_with(e->d_name, ".bin")) continue;
        char *p = ked_path_join(dir, e->d_name);
        if (p && tok_is_llama2c_file(p) && (!best || strcmp(p, best) < 0)) {
            free(best);
            best = p;
        } else {
            free(p);
        }
    }
    closedir(d);
    return best;
}

static ked_status load_file(const char *path, ked_tokenizer **out, ked_error *err) {
    if (ends_with(path, ".json")) {
        if (strcmp(base_name(path), "vocab.json") == 0) {
            // vocab.json given directly: merges.txt beside it
            char *dir = strdup(path);
            if (!dir) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
            char *slash = strrchr(dir, '/');
            if (slash) *slash = 0;
            char *m = ked_path_join(slash ? dir : ".", "merges.txt");
            free(dir);
            if (!m) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
            ked_status st = tok_load_gpt2(path, m, out, err);
            free(m);
            return st;
        }
        return tok_load_json(path, out, err);
    }
    if (tok_is_llama2c_file(path)) return tok_load_llama2c(path, out, err);
    // a tokenizer.json under another name?
    FILE *f = fopen(path, "rb");
    if (!f) return ked_fail(err, KED_ERR_IO, "%s: cannot open", path);
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t') {}
    fclose(f);
    if (c == '{') return tok_load_json(path, out, err);
    return ked_fail(err, KED_ERR_FORMAT,
                    "%s: not a tokenizer (expected a tokenizer.json, a GPT-2 "
                    "vocab.json or a llama2.c tokenizer.bin)",
                    path);
}

ked_status ked_tokenizer_load(const char *path, ked_tokenizer **out, ked_error *err) {
    if (!path || !out) return ked_fail(err, KED_ERR_ARG, "ked_tokenizer_load: NULL argument");
    *out = NULL;
    if (!ked_is_dir(path)) {
        if (!ked_file_exists(path))
            return ked_fail(err, KED_ERR_IO, "%s: no such file or directory", path);
        return load_file(path, out, err);
    }
    const char *names[] = {"tokenizer.json", "vocab.json", "tokenizer.bin"};
    for (int i = 0; i < 3; i++) {
        char *p = ked_path_join(path, names[i]);
        if (!p) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
        if (ked_file_exists(p)) {
            ked_status st;
            if (i == 1) {
                char *m = ked_path_join(path, "merges.txt");
                if (!m) {
                    free(p);
                    return ked_fail(err, KED_ERR_NOMEM, "out of memory");
                }
                if (!ked_file_exists(m)) {
                    free(m);
                    free(p);
                    continue;
                }
                st = tok_load_gpt2(p, m, out, err);
                free(m);
            } else {
                st = load_file(p, out, err);
            }
            free(p);
            return st;
        }
        free(p);
    }
    char *tb = find_tok_bin(path);
    if (tb) {
        ked_status st = tok_load_llama2c(tb, out, err);
        free(tb);
        return st;
    }
    return ked_fail(err, KED_ERR_IO,
                    "%s: no tokenizer found (looked for tokenizer.json, "
                    "vocab.json + merges.txt, tokenizer.bin, tok*.bin)",
                    path);
}
