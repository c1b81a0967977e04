// tok_internal.h: what the files of src/tokenizer share: the tokenizer object, the hash maps
// for vocabularies and merges, the normalised string with its alignment to the original bytes,
// the BPE merge loop, and the pipeline stages (normalizers, pre-tokenizers, decoders).
// Internal; the public API is the tokenizer section of include/ked.h.
#ifndef KED_TOK_INTERNAL_H
#define KED_TOK_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/core.h"
#include "ked.h"

/* ---- growable arrays ---------------------------------------------------------------------- */

// tok_grow: make room for `need` elements of `size` bytes in *p (capacity *cap); 0 on success.
int tok_grow(void **p, size_t *cap, size_t need, size_t size);

/* ---- hash maps (tok_hash.c) --------------------------------------------------------------- */

uint64_t tok_hash_bytes(const void *p, size_t n);

// string -> int, keys are borrowed (they must outlive the map). Open addressing, linear probing.
typedef struct {
    const char **key;
    uint32_t *klen;
    int *val;
    uint64_t *hash;
    size_t cap, n; // cap is a power of two, 0 when empty
} tok_strmap;
int tok_strmap_init(tok_strmap *m, size_t expected);
void tok_strmap_free(tok_strmap *m);
// put: insert or keep the existing value (first wins); returns 0 on success, -1 on no memory
int tok_strmap_put(tok_strmap *m, const char *key, size_t klen, int val);
int tok_strmap_get(const tok_strmap *m, const char *key, size_t klen); // -1 if absent

// (left id, right id) -> (rank, merged id)
typedef struct {
    uint64_t key;
    int rank, id;
} tok_pair;
typedef struct {
    tok_pair *slot; // key == UINT64_MAX: empty
    size_t cap, n;
} tok_pairmap;
int tok_pairmap_init(tok_pairmap *m, size_t expected);
void tok_pairmap_free(tok_pairmap *m);
int tok_pairmap_put(tok_pairmap *m, int a, int b, int rank, int id); // first wins
const tok_pair *tok_pairmap_get(const tok_pairmap *m, int a, int b);

/* ---- byte-level character map (tok_bytelevel.c) ------------------------------------------- */

// GPT-2's bytes_to_unicode: byte b is written as the UTF-8 string tok_byte_char[b] (1-2 bytes)
typedef struct {
    char s[3];
    uint8_t len;
} tok_bytechar;
extern const tok_bytechar *tok_byte_chars(void);
// the byte that code point cp stands for, -1 if it is not one of the 256 byte characters
int tok_byte_of_codepoint(int32_t cp);

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

// length of the valid UTF-8 character at s (at most n bytes), 0 if it is not valid there
int tok_utf8_len(const unsigned char *s, size_t n);

/* ---- normalised string (tok_nstr.c) ------------------------------------------------------- */

// bytes with, for every byte, the span [o0, o1) of the original input it came from.
typedef struct {
    char *s;
    size_t *o0, *o1;
    size_t len, cap;
} tok_nstr;
void tok_nstr_free(tok_nstr *ns);
int tok_nstr_push(tok_nstr *ns, const char *p, size_t n, size_t o0, size_t o1); // 0 ok
// from original bytes text[0..len), offsets counted from base; sanitize: invalid UTF-8 -> U+FFFD
int tok_nstr_from(tok_nstr *ns, const char *text, size_t len, size_t base, int sanitize);

/* ---- pipeline components ------------------------------------------------------------------ */

enum {
    TOK_N_PREPEND,
    TOK_N_REPLACE,
    TOK_N_NFC,
    TOK_N_NFD,
    TOK_N_NFKC,
    TOK_N_NFKD,
    TOK_N_LOWER,
    TOK_N_STRIP
};
typedef struct {
    int type;
    char *a, *b; // Prepend: a; Replace: a (literal) or re, -> b
    size_t alen, blen;
    pcre2_code *re;
    int left, right; // Strip
} tok_norm;

enum { TOK_P_SPLIT, TOK_P_BYTELEVEL, TOK_P_METASPACE };
enum { TOK_B_REMOVED, TOK_B_ISOLATED, TOK_B_PREV, TOK_B_NEXT, TOK_B_CONTIGUOUS };
enum { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER };
typedef struct {
    int type;
    pcre2_code *re; // Split pattern; ByteLevel with use_regex: the GPT-2 pattern
    int behavior, invert;
    int add_prefix_space; // ByteLevel
    char repl[8]; // Metaspace replacement (UTF-8)
    size_t repl_len;
    int prepend_scheme, split; // Metaspace
} tok_pretok;

enum {
    TOK_D_REPLACE,
    TOK_D_BYTEFALLBACK,
    TOK_D_FUSE,
    TOK_D_STRIP,
    TOK_D_BYTELEVEL,
    TOK_D_METASPACE
};
typedef struct {
    int type;
    char *a, *b;
    size_t alen, blen;
    int start, stop; // Strip: how many `a` characters to strip at each end
    int prepend; // Metaspace: strip the leading space of the first token
} tok_dec;

typedef struct {
    char *s;
    size_t len;
    int id, special, lstrip, rstrip;
} tok_added;

/* ---- word cache for byte-level BPE (tok_bpe.c) --------------------------------------------- */

#define TOK_CACHE_KEY 30
#define TOK_CACHE_TOK 14
typedef struct {
    uint64_t hash; // 0: empty
    uint8_t klen, ntok;
    char key[TOK_CACHE_KEY];
    uint8_t tlen[TOK_CACHE_TOK];
    int32_t id[TOK_CACHE_TOK];
} tok_cache_slot;
#define TOK_CACHE_SLOTS 32768

/* ---- the tokenizer ------------------------------------------------------------------------ */

enum { TOK_KIND_HF, TOK_KIND_GPT2, TOK_KIND_LLAMA2C };

struct ked_tokenizer {
    int kind;
    char kind_str[96];
    int n_vocab; // 1 + the largest id
    char **piece; // [n_vocab] vocabulary strings (NUL-terminated; NULL for unused ids)
    uint32_t *piece_len;
    float *score; // llama2.c: merge scores (NULL otherwise)
    uint8_t *special; // [n_vocab] 1 for special tokens (left out by decode with skip_special)
    tok_strmap vocab; // piece -> id (model vocabulary and added tokens)
    tok_pairmap merges;
    int has_merges;
    int byte_level; // a ByteLevel pre-tokenizer: encode bytes through the byte-character map
    int byte_fallback, fuse_unk, ignore_merges, unk_id;
    int split_meta; // SentencePiece-style words may be cut before U+2581 (see tok_finish)
    int byte_id[256]; // id of "<0xNN>" (byte fallback) or, byte-level, of byte N's character
    tok_norm *norm;
    int n_norm;
    tok_pretok *pre;
    int n_pre;
    tok_dec *dec;
    int n_dec;
    tok_added *added;
    int n_added;
    int bos, eos, add_bos, add_eos;
    int max_token_len; // llama2.c
    char **arena;
    int n_arena;
    size_t arena_left;
    char *arena_ptr; // vocabulary strings
    tok_cache_slot *cache; // byte-level word cache (NULL: none)
    pthread_mutex_t cache_lock;
};

// tok_new: an empty tokenizer of n_vocab ids; tok_set_piece copies a vocabulary string.
ked_tokenizer *tok_new(int n_vocab, ked_error *err);
int tok_set_piece(ked_tokenizer *t, int id, const char *s, size_t len);
// tok_finish: build the vocabulary map, byte ids and cache once pieces are set; 0 ok
ked_status tok_finish(ked_tokenizer *t, const char *path, ked_error *err);
// tok_compile_regex: PCRE2 with UTF, Unicode properties, invalid UTF-8 allowed, JIT.
// literal: the pattern is a plain string (Split with {"String": ...}).
pcre2_code *tok_compile_regex(const char *pattern, size_t len, int literal, char *why,
                              size_t why_len);
extern const char *const tok_gpt2_pattern;

// the loaders
ked_status tok_load_json(const char *path, ked_tokenizer **out, ked_error *err);
ked_status tok_load_gpt2(const char *vocab_path, const char *merges_path, ked_tokenizer **out,
                         ked_error *err);
ked_status tok_load_llama2c(const char *path, ked_tokenizer **out, ked_error *err);
int tok_is_llama2c_file(const char *path); // 1 if the file parses as a llama2.c tokenizer

/* ---- encoding ----------------------------------------------------------------------------- */

// the output of an encode: ids with spans
typedef struct {
    int *id;
    ked_span *span;
    size_t n, cap;
} tok_out;
int tok_out_push(tok_out *o, int id, size_t start, size_t end);

// BPE over symbols (ids with normalised byte ranges): merges pairs by rank (merges map) or by
// score (llama2.c), lowest rank / highest score first, leftmost on ties. Returns the new count.
typedef struct {
    int id;
    uint32_t start, end;
} tok_sym;
typedef struct {
    int *prev, *next;
    struct tok_heap_item *heap;
    size_t cap, heap_cap;
} tok_bpe_work;
int tok_bpe(const ked_tokenizer *t, tok_sym *sym, int n, tok_bpe_work *w);
void tok_bpe_work_free(tok_bpe_work *w);

// the pipeline stages
ked_status tok_normalize(const ked_tokenizer *t, tok_nstr *ns, ked_error *err);
typedef struct {
    size_t start, end;
} tok_range;
ked_status tok_pretokenize(const ked_tokenizer *t, tok_nstr *ns, tok_range **ranges, size_t *n,
                           pcre2_match_data *md, ked_error *err);
ked_status tok_encode_llama2c(const ked_tokenizer *t, const char *text, size_t len, tok_out *o,
                              tok_bpe_work *w, ked_error *err);

/* ---- decoding (tok_decode.c) -------------------------------------------------------------- */

// state carried from token to token while decoding
typedef struct {
    int n_done; // tokens decoded so far (not counting skipped ones)
    int prev_id;
    int strip_left; // Strip decoder after Fuse: leading characters still to strip
} tok_dec_state;
void tok_dec_state_init(const ked_tokenizer *t, tok_dec_state *st);
// append the bytes of token id to *buf (cap *cap, length *len); 0 ok, -1 no memory
int tok_decode_piece(const ked_tokenizer *t, int id, tok_dec_state *st, char **buf, size_t *len,
                     size_t *cap);

#endif
