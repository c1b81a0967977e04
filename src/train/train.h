// train.h: what the trainer's parts share (internal to libked).
#ifndef KED_TRAIN_H
#define KED_TRAIN_H

#include <stddef.h>
#include "ked.h"

struct ked_model;

// a tokenized corpus: documents as spans of one token array
typedef struct {
    int *tok;
    size_t n_tok;
    size_t *doc_off;
    int *doc_len;
    size_t n_doc;
} corpus;

// corpus_load: read a corpus (text: one document a line, CRLF tolerated, empty lines skipped;
// .jsonl: the string field "text" of each line) and tokenize every document (no BOS/EOS).
ked_status corpus_load(const char *path, const ked_tokenizer *tok, corpus *c, ked_error *err);
void corpus_free(corpus *c);

// corpus_read_texts: the documents of a corpus file as (pointer, length) pairs into *data (or
// into the malloc'd strings *owned, for .jsonl); free with corpus_free_texts.
typedef struct { const char *p; size_t n; } text_ref;
ked_status corpus_read_texts(const char *path, char **data, text_ref **docs, char ***owned,
                             size_t *n, ked_error *err);
void corpus_free_texts(char *data, text_ref *docs, char **owned, size_t n);

// train_make_writable: give every parameter that points into a read-only memory map its own
// malloc'd copy (values unchanged), so that training can update it in place.
ked_status train_make_writable(struct ked_model *m, ked_error *err);

#endif
