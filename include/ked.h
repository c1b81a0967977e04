/*
 * ked.h — the one public header of libked, a knowledge editor for language models.
 *
 * Load a model, run it, free it:
 *
 *     ked_error err;
 *     ked_model *m = NULL;
 *     ked_tokenizer *tok = NULL;
 *     if (ked_model_load("models/stories260K", &m, &err) != KED_OK ||
 *         ked_tokenizer_load("models/stories260K/tok512.bin", &tok, &err) != KED_OK) {
 *         fprintf(stderr, "%s\n", err.msg);
 *         return 1;
 *     }
 *     int ids[256]; int n = 0;
 *     ked_tokenizer_encode(tok, "Once upon a time", 1, ids, 256, &n, NULL, &err);
 *     ked_generate_opts opts = ked_generate_defaults();   // greedy, 64 new tokens
 *     int out[320]; int n_out = 0;
 *     ked_generate(m, ids, n, &opts, out, 320, &n_out, &err);
 *     char *text = NULL;
 *     ked_tokenizer_decode(tok, out, n_out, &text, &err);
 *     printf("%s\n", text);
 *     free(text);
 *     ked_tokenizer_free(tok);
 *     ked_model_free(m);
 *
 * Conventions (every function below follows them):
 *  - Functions that can fail return a ked_status and, when `err` is not NULL, fill err->msg
 *    with one line naming the file, field, tensor or record and what was expected.
 *    On failure the output arguments are left untouched (or NULL) and nothing leaks.
 *  - The library never exits and never prints. Only cli/ and tests/ do.
 *  - Objects returned through `T **out` are owned by the caller and freed with ked_T_free
 *    (which accepts NULL). Strings returned through `char **` are freed with free().
 *  - Shapes are written (B, T, C): B rows of a batch, T positions, C channels.
 */
#ifndef KED_H
#define KED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KED_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------ */
/* errors                                                                                      */

typedef enum {
    KED_OK = 0,
    KED_ERR_IO,          // a file could not be opened, read or written
    KED_ERR_FORMAT,      // a file's contents are malformed (bad header, offsets, JSON, ...)
    KED_ERR_UNSUPPORTED, // well-formed, but names something ked does not implement
    KED_ERR_ARG,         // a bad argument from the caller (out-of-range id, bad option)
    KED_ERR_NOMEM,       // an allocation failed
} ked_status;

typedef struct {
    ked_status status;
    char msg[1024];
} ked_error;

// ked_status_name: a short constant name for a status ("ok", "io", "format", ...).
const char *ked_status_name(ked_status st);

/* ------------------------------------------------------------------------------------------ */
/* element types of stored tensors                                                              */

typedef enum {
    KED_F32 = 0, KED_F16, KED_BF16, KED_F64, KED_I8, KED_U8, KED_I16, KED_I32, KED_I64, KED_BOOL,
    KED_DTYPE_COUNT
} ked_dtype;

// ked_dtype_name: "F32", "BF16", ... as safetensors spells them; ked_dtype_size: bytes per element.
const char *ked_dtype_name(ked_dtype t);
size_t ked_dtype_size(ked_dtype t);

/* ------------------------------------------------------------------------------------------ */
/* tokenizers (src/tokenizer/)                                                                 */
/* KED-SECTION tokenizer: begin */
/* KED-SECTION tokenizer: end */

/* ------------------------------------------------------------------------------------------ */
/* models (src/io, src/model)                                                                  */
/* KED-SECTION model: begin */
/* KED-SECTION model: end */

#ifdef __cplusplus
}
#endif
#endif
