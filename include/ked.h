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
 *     const char *prompt = "Once upon a time";
 *     int *ids = NULL, n = 0;                              // ids with BOS, as the model expects
 *     ked_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, NULL, &n, &err);
 *     ked_generate_opts opts = ked_generate_defaults();   // greedy, 64 new tokens
 *     int out[320]; int n_out = 0;
 *     ked_generate(m, ids, n, &opts, out, 320, &n_out, NULL, NULL, &err);
 *     char *text = NULL;
 *     ked_tokenizer_decode(tok, out, n_out, 1, &text, &err); // 1: leave out BOS/EOS
 *     printf("%s\n", text);
 *     free(text);
 *     free(ids);
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
// A tokenizer turns text into token ids and back, id for id as the model's own tokenizer does.
// Formats: Hugging Face tokenizer.json (BPE: byte-level like GPT-2/Qwen2/LLaMA-3, or
// SentencePiece-style with U+2581 and byte fallback like LLaMA-2/Mistral), GPT-2 vocab.json +
// merges.txt, llama2.c tokenizer.bin. See docs/tokenizers.md.
typedef struct ked_tokenizer ked_tokenizer;
typedef struct { size_t start, end; } ked_span; // byte span [start, end) in the input

// ked_tokenizer_load: path is a tokenizer.json file, a llama2.c tokenizer file (tokenizer.bin,
// tok*.bin), or a directory holding tokenizer.json, vocab.json + merges.txt, tokenizer.bin or
// a tok*.bin llama2.c tokenizer (tried in that order). tokenizer_config.json beside a
// tokenizer.json decides BOS/EOS (add_bos_token, add_eos_token, bos_token, eos_token).
ked_status ked_tokenizer_load(const char *path, ked_tokenizer **out, ked_error *err);
void ked_tokenizer_free(ked_tokenizer *t);
int ked_tokenizer_vocab_size(const ked_tokenizer *t); // 1 + the largest id
int ked_tokenizer_bos(const ked_tokenizer *t);        // -1 if none
int ked_tokenizer_eos(const ked_tokenizer *t);        // -1 if none
const char *ked_tokenizer_kind(const ked_tokenizer *t); // e.g. "tokenizer.json (BPE, byte-level)"

// ked_tokenizer_encode: encode len bytes of text (any bytes; invalid UTF-8 is encoded as raw
// bytes by byte-level tokenizers and as U+FFFD by SentencePiece-style ones). add_special: add
// BOS/EOS as the tokenizer's config says. *ids and *spans (spans may be NULL if not wanted) are
// malloc'd arrays of *n entries, freed by the caller. spans[i] is the byte span of token i in
// text as given (before normalisation); BOS/EOS get empty spans at 0 and len. Thread-safe.
ked_status ked_tokenizer_encode(const ked_tokenizer *t, const char *text, size_t len, int add_special,
                                int **ids, ked_span **spans, int *n, ked_error *err);
// ked_tokenizer_decode: the text of n ids as a malloc'd NUL-terminated string. skip_special:
// leave out special tokens (BOS, EOS, ...). The exact inverse of encode where the vocabulary
// covers the input (byte-fallback <0xNN> pieces and byte-level pieces give back raw bytes).
ked_status ked_tokenizer_decode(const ked_tokenizer *t, const int *ids, int n, int skip_special,
                                char **text, ked_error *err);
// ked_tokenizer_decode_len: as decode, but also gives the byte length (text may hold NUL bytes).
ked_status ked_tokenizer_decode_len(const ked_tokenizer *t, const int *ids, int n, int skip_special,
                                    char **text, size_t *len, ked_error *err);
const char *ked_tokenizer_piece(const ked_tokenizer *t, int id); // raw vocabulary string, NULL if out of range
// ked_tokenizer_token_id: the id of a vocabulary string (added tokens included), -1 if none.
int ked_tokenizer_token_id(const ked_tokenizer *t, const char *piece);

// streaming decode for generation: push ids one at a time, get back only complete UTF-8 text
// (bytes that do not start a valid UTF-8 character come out as U+FFFD; flush ends an unfinished
// character as U+FFFD). Special tokens are left out.
typedef struct ked_detok ked_detok;
ked_status ked_detok_new(const ked_tokenizer *t, ked_detok **out, ked_error *err);
ked_status ked_detok_push(ked_detok *d, int id, char **text, ked_error *err); // *text malloc'd, may be ""
ked_status ked_detok_flush(ked_detok *d, char **text, ked_error *err);
void ked_detok_free(ked_detok *d);
/* KED-SECTION tokenizer: end */

/* ------------------------------------------------------------------------------------------ */
/* models (src/io, src/model)                                                                  */
/* KED-SECTION model: begin */

// The architecture of a decoder, read from config.json (or a llama2.c header) through the
// model's family table. One generic decoder runs every family (design.md §2).
typedef enum { KED_NORM_LAYERNORM = 0, KED_NORM_RMSNORM } ked_norm_kind;
typedef enum { KED_POS_LEARNED = 0, KED_POS_ROTARY } ked_pos_kind;
typedef enum { KED_BLOCK_SEQUENTIAL = 0, KED_BLOCK_PARALLEL } ked_block_kind;
typedef enum { KED_MLP_GELU = 0, KED_MLP_GATED_SILU } ked_mlp_kind;
// GELU of a GELU MLP: tanh approximation (GPT-2/GPT-J "gelu_new") or exact erf (NeoX "gelu")
typedef enum { KED_GELU_TANH = 0, KED_GELU_ERF } ked_gelu_kind;
// rotary frequency scaling (config.json "rope_scaling"): none, or "llama3" (Llama-3.1's
// per-wavelength rule, computed once at load)
typedef enum { KED_ROPE_SCALING_NONE = 0, KED_ROPE_SCALING_LLAMA3 } ked_rope_scaling_kind;

typedef struct {
    char family[32];          // "llama", "gpt2", ...
    int n_layer, d_model, n_head, n_kv_head, head_dim, d_ff, vocab, max_pos;
    ked_norm_kind norm;
    float norm_eps;
    ked_pos_kind pos;
    int rot_dim;              // rotary dims per head (== head_dim for full rotary)
    int rope_interleaved;     // 1: GPT-J pairing (2i, 2i+1); 0: NeoX / HF LLaMA rotate-half
    float rope_theta;
    ked_block_kind block;
    int parallel_shared_norm; // parallel block whose MLP reads the attention's norm (GPT-J)
    ked_mlp_kind mlp;
    int qkv_bias, o_bias, mlp_bias, head_bias, norm_bias;
    int tied_head;            // the lm head is the token embedding
    int window;               // sliding-window attention span (0: none)
    int bos_id, eos_id;       // -1 when unknown
    ked_gelu_kind gelu;       // which GELU a GELU MLP uses
    ked_rope_scaling_kind rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor; // llama3
    int rope_orig_max_pos;    // llama3: original_max_position_embeddings
} ked_config;

typedef struct ked_model ked_model;

// ked_model_load: load a model from `path`: a Hugging Face directory (config.json +
// model.safetensors or a sharded model.safetensors.index.json), a .safetensors file beside its
// config.json, or a llama2.c checkpoint (a .bin file, or a directory holding one). Every tensor
// is validated (name, shape, dtype) before use; f32 tensors already in ked's layout are used in
// place from the read-only memory map, others are converted once. On error *out is untouched
// and err names the file and the tensor or config field.
ked_status ked_model_load(const char *path, ked_model **out, ked_error *err);

// options of ked_model_load_ex (start from ked_load_defaults())
typedef struct {
    // 1: F16 and BF16 weight matrices stay in that dtype in memory (half the bytes: a 7B model
    // in about 14 GB) -- used in place from the memory map when already in ked's layout -- and
    // are widened block by block inside each matrix product; compute stays f32. Vectors (norms,
    // biases) are always f32. 0 (default): every weight is f32 in memory.
    int keep_half;
} ked_load_opts;
ked_load_opts ked_load_defaults(void);
// ked_model_load_ex: ked_model_load with options (opts NULL: the defaults).
ked_status ked_model_load_ex(const char *path, const ked_load_opts *opts, ked_model **out,
                             ked_error *err);
void ked_model_free(ked_model *m);
const ked_config *ked_model_config(const ked_model *m);
const char *ked_model_path(const ked_model *m);    // the path it was loaded from
const char *ked_model_format(const ked_model *m);  // "safetensors" or "llama2.c"
int64_t ked_model_n_params(const ked_model *m);    // parameters (a tied head counted once)
size_t ked_model_weight_bytes(const ked_model *m); // bytes the weights occupy in memory
// ked_model_file_dtype: the dtype the weights have in the file (the most common one)
ked_dtype ked_model_file_dtype(const ked_model *m);
// ked_model_weight_bytes_dtype: bytes of the weights held in memory as dtype (KED_F32, KED_F16,
// KED_BF16); they add up to ked_model_weight_bytes
size_t ked_model_weight_bytes_dtype(const ked_model *m, ked_dtype dtype);

// ---- converting a checkpoint directory (src/io/convert.c) --------------------------------------
typedef struct {
    int n_tensors;             // tensors written
    int n_converted;           // of them, floating tensors whose dtype changed
    size_t bytes_in, bytes_out; // tensor data read and written (the weights' size before and after)
    int n_files;               // other files written: config.json and the tokenizer files
} ked_convert_stats;
// ked_checkpoint_convert: write into out_dir (created, with missing parents, when absent; an
// existing directory's files of the same names are replaced) a copy of the Hugging Face model
// directory in_dir whose floating-point tensors (F32, F16, BF16, F64) are stored as dtype
// (KED_F32, KED_F16 or KED_BF16; narrowing rounds to nearest, ties to even, through f32 for
// F64; a tensor already in dtype is copied bit for bit); other dtypes are copied verbatim. Tensor
// order and __metadata__ are kept; the weights are one model.safetensors, or shards of at most
// max_shard_bytes (0: no limit) and an index, as transformers writes them. config.json is written
// with "torch_dtype" (and "dtype" when present) set to "float32", "float16" or "bfloat16" and its
// other fields unchanged; tokenizer.json, tokenizer_config.json, tokenizer.model,
// special_tokens_map.json, added_tokens.json, chat_template.jinja, generation_config.json,
// vocab.json, merges.txt and tok*.bin are copied when present. Everything is read and validated
// before anything is written; every file is written under a temporary name and renamed,
// config.json last. The converted tensors are held in memory while writing (up to the output's
// size; tensors already in dtype are read from the input's map). out_dir may not be in_dir (the
// same directory by stat: KED_ERR_ARG). stats (may be NULL) is filled on success.
ked_status ked_checkpoint_convert(const char *in_dir, const char *out_dir, ked_dtype dtype,
                                  size_t max_shard_bytes, ked_convert_stats *stats, ked_error *err);

// ---- parameters, named as in the family's Hugging Face checkpoints ------------------------------
// Parameter tensors are addressed by their HF names and shown in the HF layout (GPT-2 Conv1D
// (in, out); GPT-2's fused c_attn as one tensor), whatever ked holds internally. A llama2.c
// checkpoint is seen as the HF LLaMA checkpoint it converts to.
int ked_model_n_tensors(const ked_model *m);
// ked_model_tensor_name: HF name of tensor i (0 <= i < ked_model_n_tensors), NULL if out of range
const char *ked_model_tensor_name(const ked_model *m, int i);
// ked_model_tensor_shape: shape in the HF layout; returns ndim (1 or 2), -1 for an unknown name
int ked_model_tensor_shape(const ked_model *m, const char *name, int64_t shape[2]);
// ked_model_tensor_read: copy a tensor (values, or its gradient when grad = 1) in HF layout into
// out (numel floats). Gradients exist only for tensors given to ked_model_grad_enable.
ked_status ked_model_tensor_read(const ked_model *m, const char *name, int grad, float *out,
                                 ked_error *err);
// ked_model_grad_enable: allocate (zeroed) gradient buffers for the tensor with this HF name
// ("*" for all), so that ked_backward accumulates its gradient. Only these are computed.
ked_status ked_model_grad_enable(ked_model *m, const char *name, ked_error *err);
void ked_model_grad_zero(ked_model *m);

// ---- hooks: the only door editors use into the runtime (design.md §2) ---------------------------
typedef enum {
    KED_HOOK_RESID_IN = 0, // residual stream entering layer l                 (d_model)
    KED_HOOK_ATTN_OUT,     // attention block output, before the residual add  (d_model)
    KED_HOOK_MLP_IN,       // the normalised input of the MLP                  (d_model)
    KED_HOOK_MLP_KEY,      // input of the MLP's output projection: the ROME/MEMIT key (d_ff)
    KED_HOOK_MLP_OUT,      // MLP output, before the residual add               (d_model)
    KED_HOOK_RESID_OUT,    // residual stream leaving layer l                   (d_model)
    KED_HOOK_COUNT
} ked_hook_point;
const char *ked_hook_point_name(ked_hook_point p); // "resid_in", ..., "resid_out"
int ked_hook_point_parse(const char *name);          // -1 if unknown

// A hook acts at n sites (row[i], pos[i]) of point `point` of layer `layer`. Each pointer is
// optional: `add` (n, width) is added to the activation there; `capture` (n, width) receives the
// activation (after the addition); `grad` (n, width) receives, from ked_backward, the gradient
// of the loss with respect to the activation there (= with respect to `add`).
typedef struct {
    ked_hook_point point;
    int layer;
    int n;
    const int *row, *pos;  // (n)
    const float *add;      // (n, width) or NULL
    float *capture;        // (n, width) or NULL
    float *grad;           // (n, width) or NULL
} ked_hook;

// A run holds the activations of one batch shape (B rows, up to T positions each) for forward
// and backward, and the key/value cache for incremental decoding (capacity S positions).
typedef struct ked_run ked_run;
// ked_run_new: allocate everything a forward (and, with backward = 1, a backward) of up to
// B x T tokens needs, with a key/value cache of S >= T positions. Forward and backward never
// allocate afterwards.
ked_status ked_run_new(const ked_model *m, int B, int T, int S, int backward, ked_run **out,
                       ked_error *err);
// The same with everything that sizes a run (ked_run_new(m, B, T, S, bw) is
// ked_run_new_opts(m, &(ked_run_opts){B, T, S, bw, 0, 0, NULL, 0})). A run's memory is mapped when
// it is made and given back to the system when it is freed; pages a run never touches (the
// logits of rows never asked for) cost nothing.
typedef struct {
    int B, T, S;           // rows, positions per forward, key/value cache positions (S >= T)
    int backward;          // keep what ked_backward needs
    int max_logits;        // logit rows one forward may ask for (0: B*T); the logit buffers are
                           // (max_logits, V), the largest of a run on a big vocabulary
    int backward_from;     // > 0: ked_backward never goes below this layer (hooks, parameters),
                           // so the layers under it keep no activations of their own
    const ked_run *kv_from; // or NULL: use that run's key/value cache (same model, B and S; it
                           // must outlive this run): a forward-only run can prefill, in one wide
                           // pass, the cache that a narrow backward run then continues
    int dlogits_in_logits; // ked_run_dlogits is the logits buffer itself: a loss that reads each
                           // logit row before writing its gradient row halves the logit memory
} ked_run_opts;
ked_status ked_run_new_opts(const ked_model *m, const ked_run_opts *o, ked_run **out,
                            ked_error *err);
void ked_run_free(ked_run *r);
size_t ked_run_bytes(const ked_run *r);

typedef struct {
    const ked_hook *hooks;
    int n_hooks;
    int stop_after_layer;  // -1: run every layer and the head; l: stop after layer l (no logits)
    int start_layer;       // > 0: reuse layers below it from the previous forward of this run
                           //      that had cache_layer == start_layer (same ids, same hooks below)
    int cache_layer;       // > 0: remember the residual entering this layer for a later start_layer
    const int *logit_idx;  // compute logits only at these flattened b*T+t indices (NULL: all)
    int n_logit;
    int pos0;              // position of the first token (> 0 only for incremental decoding)
    const int *row_pos0;   // (B) or NULL: the position of row b's first token (overrides pos0).
                           // Positions before it are read from the run's key/value cache (what
                           // earlier forwards of this run wrote there) and are constants: the
                           // backward sends no gradient into them. Then len[b] may be 0.
} ked_forward_opts;
ked_forward_opts ked_forward_defaults(void);

// ked_forward: run the decoder on ids (B, T) (row b valid for its first len[b] tokens; len may
// be NULL for all T; right padding never changes a valid position's result). With pos0 > 0 (or
// row_pos0) the tokens continue the sequences held in the run's key/value cache: incremental
// decoding, chunked prefill, or recomputing only the tail of each row (a v* step recomputes the
// positions from the subject on). A run made for backward with S == T keeps its cache packed per
// forward and takes no positions before 0; give it S > T for that. Logits are left in the run:
// ked_run_logits.
ked_status ked_forward(const ked_model *m, ked_run *r, const int *ids, int B, int T,
                       const int *len, const ked_forward_opts *opts, ked_error *err);
// ked_run_logits: (n_logit, V) logits of the last forward (n_logit = B*T when opts.logit_idx
// was NULL), and ked_run_dlogits: a buffer of the same shape for the loss gradient.
float *ked_run_logits(ked_run *r, int *n_rows);
float *ked_run_dlogits(ked_run *r);

// ked_backward: given d loss / d logits in ked_run_dlogits (for the logit rows of the last
// forward), accumulate the gradients of enabled parameters and fill the `grad` buffers of the
// last forward's hooks. Layers below the lowest hook or enabled parameter are not visited.
// The hooks array given to the forward must still be alive.
ked_status ked_backward(ked_model *m, ked_run *r, ked_error *err);

// losses over the last forward's logits; each fills ked_run_dlogits (when want_grad) and
// returns the loss. targets (n_logit) with -1 (or any negative) meaning "not scored".
float ked_loss_crossentropy(ked_run *r, const int *targets, int want_grad);
// KL(p || q) averaged over rows, p = softmax(logits_p) fixed (n_logit, V), q = this run's logits
float ked_loss_kl(ked_run *r, const float *logits_p, int want_grad);

// ---- generation ----------------------------------------------------------------------------------
typedef struct {
    int max_new;           // tokens to generate (default 64)
    float temperature;     // 0: greedy argmax (default)
    int top_k;             // 0: off
    float top_p;           // 1: off
    uint64_t seed;
    int stop_at_eos;       // stop at the model's EOS (and a BOS, as llama2.c does); default 1
} ked_generate_opts;
ked_generate_opts ked_generate_defaults(void);

// ked_generate: continue `prompt` (n ids) with KV-cached incremental decoding. out receives the
// prompt followed by the new tokens (at most cap ids); *n_out is how many. on_token, when not
// NULL, is called with each new id as it is produced (for streaming output).
ked_status ked_generate(const ked_model *m, const int *prompt, int n, const ked_generate_opts *o,
                        int *out, int cap, int *n_out, void (*on_token)(int id, void *user),
                        void *user, ked_error *err);

// ked_set_threads: threads for BLAS and ked's own loops (0: the default, all cores).
void ked_set_threads(int n);
/* KED-SECTION model: end */

/* ------------------------------------------------------------------------------------------ */
/* training (src/train/)                                                                       */
/* KED-SECTION train: begin */
// ked trains small decoders from scratch or from a checkpoint (docs/training.md). A run writes
// Hugging Face directories that ked_model_load (and transformers) read back.

// The sizes of a fresh LLaMA, initialised as Hugging Face does: linear and embedding weights
// normal(0, init_std), norms 1.
typedef struct {
    int n_layer, d_model, n_head, n_kv_head, d_ff, vocab, max_pos;
    float rope_theta, norm_eps, init_std;
    int tied;               // tie the lm head to the token embedding
    int bos_id, eos_id;     // written to config.json (-1: null)
    uint64_t seed;
} ked_init_opts;
ked_init_opts ked_init_defaults(void); // 4 layers, 256 wide, 8 heads, d_ff 688, vocab 4096
// ked_model_init_write: write config.json + model.safetensors of a fresh LLaMA into dir (created
// when missing; files written atomically). Deterministic for a given seed.
ked_status ked_model_init_write(const char *dir, const ked_init_opts *o, ked_error *err);

// one progress report: after a step (eval_loss NaN) or after an evaluation (eval_loss set)
typedef struct {
    long step, steps;       // steps done, steps in all
    int epoch;
    float loss;             // training loss of this step's batch
    float lr, grad_norm;    // learning rate used, gradient norm before clipping
    float eval_loss;        // NaN unless this report carries an evaluation
    double tokens_per_s;    // since this process started training
    double elapsed_s, eta_s;
    long tokens;            // tokens trained on so far (whole run, across resumes)
} ked_train_progress;

typedef struct {
    const char *model;      // HF directory to start from (unused when out_dir holds a checkpoint)
    const char *tokenizer;  // tokenizer.json (copied into every checkpoint)
    const char *data;       // corpus: .jsonl ({"text": ...} per line) or text (one document a line)
    const char *out_dir;    // checkpoints out_dir/checkpoint-STEP (the last one is the model)
    int batch, seq;         // B rows of T tokens per step (documents packed, EOS between)
    long steps;             // optimizer steps in all
    int warmup;             // linear warmup steps, then cosine decay to min_lr
    float lr, min_lr, weight_decay, beta1, beta2, eps, clip; // AdamW; clip: global norm (0: off)
    float eval_frac;        // share of documents held out for the evaluation loss
    int eval_every, eval_batches; // evaluate every eval_every steps on eval_batches batches
    int ckpt_every;         // checkpoint every ckpt_every steps (and at the end)
    int keep;               // checkpoints kept (older ones removed); >= 1
    long stop_at;           // > 0: stop after this step as if interrupted (a checkpoint is written)
    uint64_t seed;          // data order
    int progress_every;     // steps between progress reports
    void (*on_progress)(const ked_train_progress *p, void *user);
    void *user;
} ked_train_opts;
ked_train_opts ked_train_defaults(void);
// ked_train: train (or resume: when out_dir holds a checkpoint, training continues from the
// latest one exactly as the uninterrupted run would, bitwise for the same thread count). Each
// checkpoint is written into a temporary folder and renamed: an HF directory (config.json,
// model.safetensors, tokenizer.json) plus optimizer.safetensors and trainer_state.json.
ked_status ked_train(const ked_train_opts *o, ked_error *err);

// Byte-level BPE training in the manner of Hugging Face's BpeTrainer: GPT-2's byte-to-unicode
// alphabet (all 256 bytes), GPT-2's split regex, merges by pair frequency (ties: the smaller
// pair of ids), special tokens first.
typedef struct {
    int vocab_size;         // special tokens + 256 bytes + merges
    int min_frequency;      // a pair seen fewer times is not merged
    const char *const *special; // special tokens (ids 0..n_special-1); the first is BOS/EOS
    int n_special;
} ked_bpe_opts;
ked_bpe_opts ked_bpe_defaults(void); // 4096, 2, {"<|endoftext|>"}
// ked_bpe_train: learn from the files (text, or .jsonl {"text"} lines) and write tokenizer.json
// to out_path (and tokenizer_config.json beside it, naming the first special token BOS/EOS).
ked_status ked_bpe_train(const char *const *files, int n_files, const ked_bpe_opts *o,
                         const char *out_path, ked_error *err);
/* KED-SECTION train: end */

/* ------------------------------------------------------------------------------------------ */
/* editing (src/edit/)                                                                         */
/* KED-SECTION edit: begin */
// Editing (docs/editing.md). An edit is a patch over an immutable base (design.md §2): per
// tensor a dense delta or a low-rank pair (delta = a b^T). A ked_editor owns the live weights
// of a model: live tensor = base + the applied patches, added in list order in fp32. Reverting
// a patch recomputes its tensors from the base; re-applying puts it back at its old place, so
// rollback is bit-exact. Methods: "rome", "r-rome", "ft-l", "ft-m" ("ft" = "ft-l").

typedef struct ked_patch ked_patch;
void ked_patch_free(ked_patch *p);
const char *ked_patch_method(const ked_patch *p);  // "rome", ...
int ked_patch_n_entries(const ked_patch *p);      // tensors it changes
// ked_patch_entry: entry i's HF tensor name (as ked_model_tensor_name spells it) and rank
// (0: dense). Returns NULL when i is out of range.
const char *ked_patch_entry(const ked_patch *p, int i, int *rank);
// ked_patch_save: a safetensors file: per entry "<hf name>.delta" (dense, ked layout) or
// "<hf name>.a" / ".b" (low rank, delta = a b^T in ked's (out, in) layout), metadata: format
// "ked-patch", version, method, base (the model's path), tensors (the names), note. Written
// atomically.
ked_status ked_patch_save(const ked_patch *p, const ked_model *m, const char *path, ked_error *err);
// ked_patch_load: read a file written by ked_patch_save, checking every tensor against m.
ked_status ked_patch_load(const ked_model *m, const char *path, ked_patch **out, ked_error *err);
// a one-line description of the edit ("prompt -> target"); "" when none. set_note copies it.
const char *ked_patch_note(const ked_patch *p);
ked_status ked_patch_set_note(ked_patch *p, const char *note, ked_error *err);

typedef struct ked_editor ked_editor;

// Second-moment statistics (docs/editing.md, "ked stats"): C = sum k k^T / count of the mlp_key
// hook (the key of ROME/MEMIT) over every token of a corpus, each document truncated to the
// model's context length; float32 per batch (as EasyEdit), float64 across batches. Cached on
// disk under the model's hash, the layer, the corpus' hash and the budget.
typedef enum { KED_DOC_LINE = 0, KED_DOC_BLANK, KED_DOC_JSONL } ked_doc_split;
typedef struct {
    const char *corpus;       // a text file or JSONL (field "text"); NULL: the cache only
    int doc_split;            // ked_doc_split: a document per line, per blank-line block, per JSON line
    int64_t max_docs;         // 0: no limit (EasyEdit's mom2_n_samples)
    int64_t max_tokens;       // 0: no limit
    int batch_tokens;         // tokens per forward (default 2048)
    const char *cache_dir;    // NULL: $KED_CACHE, else ~/.cache/ked/stats
    int no_cache;             // 1: compute, neither read nor write the cache
    // progress after each group of documents; frac: share done (of the budget or the file)
    void (*progress)(int64_t docs, int64_t tokens, double seconds, double frac, void *user);
    void *user;
} ked_stats_opts;
ked_stats_opts ked_stats_defaults(void);
typedef struct {
    int layer, dim;           // dim = d_ff
    int64_t count, docs;      // tokens and documents summed
    double *mom2;             // (dim, dim) C, full and symmetric
    char source[512];         // the file it was read from, or "computed from CORPUS"
} ked_stats;
// ked_stats_get: the statistics of n layers (out: n of them): from the cache when there, else
// computed in one pass over o->corpus and cached; without a corpus, the newest cached
// statistics of the model and layer, else an error naming the corpus options.
ked_status ked_stats_get(const ked_model *m, const ked_tokenizer *tok, const int *layers, int n,
                         const ked_stats_opts *o, ked_stats *out, ked_error *err);
void ked_stats_free(ked_stats *s);
// ked_stats_read_file: a .kstats cache file, or EasyEdit's .npz (np.savez: mom2.mom2, mom2.count)
ked_status ked_stats_read_file(const char *path, ked_stats *out, ked_error *err);
ked_status ked_stats_read_npz(const char *path, ked_stats *out, ked_error *err);
// the cache directory (given, $KED_CACHE or ~/.cache/ked/stats) into buf
void ked_stats_cache_dir(const char *given, char *buf, size_t cap);
// ked_stats_model_hash: FNV-1a of the model's files, kept in the cache dir beside size + mtime
ked_status ked_stats_model_hash(const ked_model *m, const char *cache_dir, uint64_t *hash,
                                ked_error *err);
// list (one line per file, malloc'd text) / remove the cached statistics and projectors
ked_status ked_stats_cache_list(const char *cache_dir, char **text, ked_error *err);
ked_status ked_stats_cache_clear(const char *cache_dir, int *n_removed, ked_error *err);

// ked_editor_new: take charge of m's weights (m must outlive the editor; one editor per model).
// The first patch touching a tensor gives it its own fp32 buffer; the base stays as loaded.
ked_status ked_editor_new(ked_model *m, ked_editor **out, ked_error *err);
// ked_editor_free: put the base weights back (the model's values are as loaded; a tensor a
// keep_half load held in f16/bf16 stays widened to f32) and free every patch.
void ked_editor_free(ked_editor *e);
// ked_editor_apply: append p (the editor takes ownership, also on failure) and add it to the
// live weights; *id (may be NULL) receives its index in the list.
ked_status ked_editor_apply(ked_editor *e, ked_patch *p, int *id, ked_error *err);
ked_status ked_editor_revert(ked_editor *e, int id, ked_error *err);   // take patch id out
ked_status ked_editor_reapply(ked_editor *e, int id, ked_error *err);  // put it back in place
int ked_editor_n_patches(const ked_editor *e);                         // applied or reverted
int ked_editor_is_active(const ked_editor *e, int id);
const ked_patch *ked_editor_patch(const ked_editor *e, int id);
ked_model *ked_editor_model(const ked_editor *e);
// ked_editor_base_hash: a 64-bit hash of the base weights (as loaded, whatever is applied)
uint64_t ked_editor_base_hash(const ked_editor *e);

// Edited model directories (docs/editing.md): model.safetensors holds the live weights (HF
// names and layout, F32) beside config.json and the tokenizer files, so DIR loads as a model;
// patches/ holds every patch of the list and edits.json the base (path, hash) and the list
// (file, method, active, note). ked_editor_save_dir writes DIR (files atomically);
// ked_editor_open_dir loads the base the record names, checks its hash and applies the active
// patches in order (the weights are recomputed from the base, so revert stays bit-exact);
// ked_edit_dir_is: 1 if path is such a directory. open_dir's *model and *editor are the
// caller's: free the editor, then the model.
ked_status ked_editor_save_dir(const ked_editor *e, const char *dir, ked_error *err);
ked_status ked_editor_open_dir(const char *dir, ked_model **model, ked_editor **editor,
                               ked_error *err);
int ked_edit_dir_is(const char *path);

// A request as EasyEdit writes one (easyedit-reference.md §1.3). prompt contains subject
// (or "{}" standing for it); target_new is the answer (a leading space is added when missing,
// as EasyEdit does).
typedef struct {
    const char *name;                 // e.g. "neighborhood"
    const char *const *prompts;       // (n)
    const char *const *ground_truth;  // (n), may be NULL
    int n;
} ked_edit_group;
typedef struct {
    const char *prompt, *subject, *target_new;
    const char *ground_truth;         // may be NULL
    const char *rephrase;             // may be NULL
    const ked_edit_group *locality;   // (n_locality)
    int n_locality;
    const ked_edit_group *portability;
    int n_portability;
} ked_request;

// Hyperparameters: EasyEdit's YAML files as they are (ROME, R-ROME, FT), or defaults derived
// from the model (design.md §3b). Fields a method does not use are ignored.
#define KED_MAX_EDIT_LAYERS 16
// fact_token (EasyEdit's names): the subject's last token, the prompt's last token, the subject's
// first token, the first token after the subject (the last token when nothing follows it)
typedef enum {
    KED_FACT_SUBJECT_LAST = 0, KED_FACT_LAST, KED_FACT_SUBJECT_FIRST, KED_FACT_SUBJECT_FIRST_AFTER_LAST
} ked_fact_token;
typedef struct {
    char method[16];          // "rome", "r-rome", "ft-l", "ft-m"
    char source[512];         // the YAML path, or "defaults"
    int layers[KED_MAX_EDIT_LAYERS], n_layers;
    // ROME family
    int v_num_grad_steps;
    float v_lr;
    int v_loss_layer;         // ked always scores the model's own logits (= the last layer)
    float v_weight_decay, clamp_norm_factor, kl_factor;
    int fact_token;           // which token is looked up: KED_FACT_SUBJECT_LAST, ...
    int mom2_adjustment;      // must be 0 (no second-moment statistics yet)
    int ctx_len[4][2], n_ctx_len;      // context_template_length_params [[length, count], ...]
    ked_hook_point v_point;   // where delta is added: mlp_out (mlp_module_tmp) or resid_out
    int random_prefix_keys;   // R-ROME: k0, v0 averaged over the context templates
    // FT
    int num_steps, batch_size;
    float lr, weight_decay;
    float norm_constraint;    // <= 0: none
    int ft_target_new;        // 0: prompt_last (FT-L), 1: target_new (FT-M)
    int ft_bias;              // also train the down projection's bias (when the model has one)
    // second-moment statistics and the methods that use them (MEMIT, EMMET, AlphaEdit; ROME
    // with mom2_adjustment)
    float mom2_update_weight; // lambda: weight of C against the new keys (MEMIT, EMMET)
    int mom2_n_samples;       // EasyEdit's budget in documents (used when a corpus is given)
    char mom2_dataset[64];    // EasyEdit's corpus name (ked needs the file: --stats-corpus)
    char stats_dir[256];      // EasyEdit's stats_dir: its .npz files are read when present
    char rewrite_tmp[128];    // rewrite_module_tmp as written (names EasyEdit's .npz files)
    float emmet_lambda, update_norm_lambda;   // EMMET
    float nullspace_threshold, L2;            // AlphaEdit
    float nll_loss_factor;    // PMET: the weight of the NLL term of its z optimisation
} ked_hparams;

// ked_hparams_defaults: values derived from the model for a method (design.md §3b).
ked_status ked_hparams_defaults(const ked_model *m, const char *method, ked_hparams *hp,
                                ked_error *err);
// ked_hparams_load: read an EasyEdit YAML file (alg_name ROME, R-ROME, FT, MEMIT, EMMET,
// AlphaEdit or PMET) for model m; the module templates must name modules of m's family. method
// (may be NULL) picks "ft-l"/"ft-m" for FT files whose objective_optimization says otherwise.
ked_status ked_hparams_load(const ked_model *m, const char *path, const char *method,
                            ked_hparams *hp, ked_error *err);

typedef struct {
    const char *const *templates; // context templates, each with one "{}"; NULL: sampled
    int n_templates;
    uint64_t seed;                // seed of the sampled templates (default 0)
    // on_step: called after each optimisation step's loss (may be NULL)
    void (*on_step)(int step, float loss, void *user);
    void *user;
    // statistics (MEMIT, EMMET, AlphaEdit, ROME with mom2_adjustment): the cache is always
    // looked in (and EasyEdit's .npz files under hp->stats_dir); when the statistics of a layer
    // are missing they are computed with these options (a corpus must be given), else an error
    const ked_stats_opts *stats;
    // AlphaEdit: the editor whose active alphaedit patches carry the keys of earlier edits
    // (EasyEdit's cache_c; reverting a patch takes its keys out). NULL: no earlier edits.
    const ked_editor *editor;
} ked_edit_opts;
ked_edit_opts ked_edit_defaults(void);
// ked_edit_templates: the context templates ked_edit would sample for hp (EasyEdit's recipe,
// seeded), to sample once and pass to many edits through ked_edit_opts.templates (EasyEdit
// caches them per process). *out: malloc'd array of malloc'd strings; free with
// ked_edit_templates_free. ked_edit_templates_read: one template per line of a file.
ked_status ked_edit_templates(const ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                              uint64_t seed, char ***out, int *n, ked_error *err);
ked_status ked_edit_templates_read(const char *path, char ***out, int *n, ked_error *err);
void ked_edit_templates_free(char **templates, int n);

typedef struct {
    char method[16];
    int layer;                // the (first) edited layer
    int subject_token;        // index of the subject's last token in the prompt ids (-1: none)
    int n_steps;              // optimisation steps taken
    float loss[256];          // loss of each step (first min(n_steps, 256))
    double seconds;
    int n_requests;           // edits in the batch
    int null_space_dim;       // AlphaEdit: the null-space dimension kept (first layer)
    char stats_source[256];   // where the statistics came from (cache file, npz, computed)
} ked_edit_info;

// ked_edit_methods: the method names, comma-separated; ked_edit_method_known: 1 if known.
const char *ked_edit_methods(void);
int ked_edit_method_known(const char *method);

// ked_edit: compute the patch that makes m (as it is now, patches included) answer req with
// method hp->method. The model is unchanged afterwards; apply *out with ked_editor_apply.
// info may be NULL. While it runs, FT and multi-layer ROME point some of m's weights at private
// copies: run nothing else on m meanwhile (a model is one thread's at a time).
ked_status ked_edit(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                    const ked_request *req, const ked_edit_opts *o, ked_patch **out,
                    ked_edit_info *info, ked_error *err);

// ked_edit_batch: one edit of n requests at once (MEMIT, EMMET, AlphaEdit, PMET: EasyEdit's
// batch_edit; ROME, R-ROME and FT methods edit one request, n must be 1). Returns one patch
// (for MEMIT-like methods a rank-n entry per layer). info->loss holds the z optimisations'
// losses, request after request.
ked_status ked_edit_batch(ked_model *m, const ked_tokenizer *tok, const ked_hparams *hp,
                          const ked_request *reqs, int n, const ked_edit_opts *o, ked_patch **out,
                          ked_edit_info *info, ked_error *err);

// ked_edit_token_accuracy: EasyEdit's teacher-forced token accuracy (easyedit-reference.md
// §4.3): the share of target tokens of prompt + " " + target that are the argmax after their
// prefix. With pred (may be NULL) also the argmax ids (malloc'd, *n_pred of them).
ked_status ked_edit_token_accuracy(const ked_model *m, const ked_tokenizer *tok,
                                   const char *prompt, const char *target, float *acc,
                                   int **pred, int *n_pred, ked_error *err);
/* KED-SECTION edit: end */

/* ------------------------------------------------------------------------------------------ */
/* evaluation (src/eval/, src/io/dataset.c)                                                    */
/* KED-SECTION eval: begin */
// Evaluation as EasyEdit defines it (docs/evaluation.md; easyedit-reference.md §4): for each
// case the teacher-forced token accuracies of the rewrite and rephrase prompts, locality (the
// post-edit argmax tokens against the pre-edit ones), portability, fluency (n-gram entropy of a
// sampled generation), before ("pre") and after ("post") the edit, in EasyEdit's JSON layout;
// plus the ROME paper's CounterFact probability scores. Data in the formats users have.

typedef enum {
    KED_DATA_AUTO = 0,       // detected from the first record
    KED_DATA_ZSRE,           // EasyEdit's ZsRE (src, alt, rephrase, loc, loc_ans[, portability])
    KED_DATA_COUNTERFACT,    // ROME/MEMIT schema (requested_rewrite, paraphrase_prompts, ...)
    KED_DATA_COUNTERFACT_EE, // EasyEdit's schema (prompt, target_new, ground_truth, locality_prompt, ...)
    KED_DATA_KNOWEDIT,       // KnowEdit (ZsRE, wiki_counterfact, wiki_recent: locality/portability objects)
} ked_data_format;
const char *ked_data_format_name(ked_data_format f); // "auto", "zsre", "counterfact", "counterfact-ee", "knowedit"
int ked_data_format_parse(const char *name);          // -1 if unknown

// One case: an EasyEdit request (prompt with the subject in place of "{}") and what is scored.
typedef struct {
    int record;                       // index of the record in the file (0-based)
    ked_request req;                  // req.rephrase = rephrases[0] or NULL
    const char *const *rephrases;     // rephrase prompts (rephrase_acc: one value each)
    int n_rephrases;
    const char *const *paraphrases;   // the ROME paraphrase score's prompts
    int n_paraphrases;
    int counterfact;                  // 1: ROME's probability scores apply (a true target;
                                      // neighbourhood = the locality group "neighborhood")
} ked_case;

typedef struct ked_dataset ked_dataset;
// ked_dataset_load: read a JSON file (jansson) in format fmt (KED_DATA_AUTO: detected). Records
// with an empty target_new are skipped, locality/portability entries with an empty answer are
// dropped (both counted); a malformed record is an error naming the file, the record index and
// the field.
ked_status ked_dataset_load(const char *path, ked_data_format fmt, ked_dataset **out, ked_error *err);
void ked_dataset_free(ked_dataset *d);
ked_data_format ked_dataset_format(const ked_dataset *d);
int ked_dataset_n(const ked_dataset *d);                       // cases kept
const ked_case *ked_dataset_case(const ked_dataset *d, int i); // NULL when out of range
int ked_dataset_n_records(const ked_dataset *d);               // records in the file
int ked_dataset_n_skipped(const ked_dataset *d);               // records skipped (empty target)
int ked_dataset_n_dropped(const ked_dataset *d);               // answers dropped (empty)

// ---- metrics on one model as it is now (one prompt at a time: batching never changes a number)
// ked_eval_teacher_forced: text = prompt + " " + target (the target's own leading spaces
// removed), both encoded with BOS; the k = |text ids| - |prompt ids| last tokens are the labels,
// pred[j] the argmax after the prefix before label j (EasyEdit's test_prediction_acc), *acc the
// share of agreeing tokens (NaN when k == 0) and *nll the mean of -ln p(label j) (ROME's
// per-token NLL). pred/labels (may be NULL) receive malloc'd arrays of *k ids.
ked_status ked_eval_teacher_forced(const ked_model *m, const ked_tokenizer *tok, const char *prompt,
                                   const char *target, double *acc, double *nll, int **pred,
                                   int **labels, int *k, ked_error *err);
// ked_eval_locality: EasyEdit's locality of one prompt: the share of positions where the
// post-edit argmax ids equal the pre-edit ones (NaN when n == 0).
double ked_eval_locality(const int *pre, const int *post, int n);
// ked_word_tokenize: nltk.word_tokenize's Treebank rules (NLTKWordTokenizer) after a simple
// sentence split (punkt's data is not available; docs/evaluation.md). *tokens: malloc'd array
// of malloc'd strings, freed with ked_word_tokens_free.
ked_status ked_word_tokenize(const char *text, char ***tokens, int *n, ked_error *err);
void ked_word_tokens_free(char **tokens, int n);
// ked_ngram_entropy: EasyEdit's compute_n_gram_entropy: mean(2/3 H_2, 4/3 H_3), H_n the entropy
// (bits) of the n-gram frequencies of the word tokens.
ked_status ked_ngram_entropy(const char *text, double *out, ked_error *err);

// ---- a whole evaluation run (single, sequential or batch), resumable from its output file
typedef struct {
    int done, total;          // cases finished, cases in all
    const char *phase;        // "pre", "edit", "replay", "post_final"
    double elapsed_s, edits_per_s, eta_s;
    const char *table;        // with batch > 1, after each batch: the summary table of the
                              // cases so far (valid during the call); else NULL
} ked_eval_progress;

typedef struct {
    const char *method;       // an editing method, or "none" (pre only)
    const ked_hparams *hp;    // the method's hyperparameters (unused for "none")
    int n, offset;            // cases offset .. offset+n-1 of the dataset (n <= 0: to the end)
    int sequential;           // edits accumulate (post after each edit or batch, post_final at the end)
    int batch;                // B >= 1 requests edited, then evaluated together: one joint edit
                              // (ked_edit_batch) for memit, emmet, pmet, alphaedit; else one by one
    uint64_t seed;            // context templates and fluency sampling
    int fluency;              // 1: fluency (n-gram entropy of a 100-token top-k 5 generation)
    int fluency_len;          // total tokens of the generation, prompt included (EasyEdit: 100)
    int aligned_targets;      // 0: EasyEdit's count-based labels; 1: where a tokenizer merges
                              // across the prompt/target boundary, prompt ids + the target's ids
    int retention;            // sequential: after each batch, the rewrite_acc and target_new NLL
                              // of every case edited so far, as means per batch, into the file's
                              // "retention" list and the progress table (n^2 / 2B teacher-forced
                              // prompts)
    const char *out;          // results JSON, written atomically after each case or batch; a
                              // file from an interrupted run of the same settings is resumed
    const char *model_name;   // recorded in the file (checked on resume); NULL: the model path
    const char *data_name;    // likewise, the data file
    const ked_stats_opts *stats; // second-moment statistics when not cached (NULL: cache only)
    void (*on_progress)(const ked_eval_progress *p, void *user);
    void *user;
} ked_eval_opts;
ked_eval_opts ked_eval_defaults(void); // method "none", batch 1, fluency on (100 tokens), seed 0

// summary means over cases as KnowEdit's script computes them (x100; fluency: entropy x100),
// and the ROME CounterFact scores (x100): efficacy/paraphrase/neighbourhood score and magnitude
typedef struct {
    int n;                    // cases with a value
    double mean;              // NaN when n == 0
} ked_eval_stat;
typedef struct {
    ked_eval_stat rewrite, rephrase, portability, locality, fluency;
    ked_eval_stat es, em, ps, pm, ns, nm;
} ked_eval_stage;
typedef struct {
    int n_cases;
    int has_post, has_post_final;
    ked_eval_stage pre, post, post_final;
} ked_eval_summary;

// ked_eval_run: evaluate (and edit, unless the method is "none") the cases of d, writing
// opts->out; returns the summary, and the printed table (malloc'd, may be NULL) in *table.
ked_status ked_eval_run(ked_model *m, const ked_tokenizer *tok, const ked_dataset *d,
                        const ked_eval_opts *o, ked_eval_summary *sum, char **table, ked_error *err);
// ked_eval_summarize: the summary and table of a results file written by ked_eval_run.
ked_status ked_eval_summarize(const char *results_path, ked_eval_summary *sum, char **table,
                              ked_error *err);
/* KED-SECTION eval: end */

#ifdef __cplusplus
}
#endif
#endif
