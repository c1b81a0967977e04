// model.h: the in-memory model: config, parameter slots, family tables, runs. Internal.
//
// Every family is described by a table (family.c): how its config.json reads into ked_config,
// and which HF tensor fills which parameter slot with which layout transform. The generic decoder
// (decoder.c) only ever sees slots, in one layout: linear weights (out, in) as nn.Linear stores
// them, biases (out), norms (C), embeddings (V, C).
#ifndef KED_MODEL_H
#define KED_MODEL_H

#include <jansson.h>

#include "core/core.h"
#include "io/safetensors.h"
#include "model/kernels.h"

// parameter slots of one layer
typedef enum {
    P_ATTN_NORM_W = 0, P_ATTN_NORM_B,
    P_WQ, P_BQ, P_WK, P_BK, P_WV, P_BV, P_WO, P_BO,
    P_MLP_NORM_W, P_MLP_NORM_B,
    P_WGATE, P_BGATE, P_WUP, P_BUP, P_WDOWN, P_BDOWN,
    P_LAYER_COUNT
} layer_slot;
// parameter slots of the whole model
typedef enum {
    G_EMBED = 0, G_POS_EMBED, G_FINAL_NORM_W, G_FINAL_NORM_B, G_HEAD_W, G_HEAD_B, G_COUNT
} global_slot;

// index of a slot in ked_model.params
#define PARAM_GLOBAL(g) (g)
#define PARAM_LAYER(l, s) (G_COUNT + (l) * P_LAYER_COUNT + (s))

// A parameter is held either in f32 (`w`) or, for matrices of a model loaded with keep_half, in
// f16/bf16 (`w16`, w == NULL). Code that reads or writes values directly (editors) calls
// model_param_materialize_f32 first: it converts a half-held tensor once, and from then on `w` is
// the tensor (an edited tensor is held in fp32 even when the base is bf16; design.md section 2).
typedef struct {
    float *w;        // (rows, cols) row-major, ked layout; NULL when unused or held in half
    float *grad;     // same shape; NULL unless enabled
    int64_t rows, cols; // cols == 1 for vectors
    int owned;       // w was malloc'd (converted); otherwise it points into a memory map
    const uint16_t *w16; // (rows, cols) f16/bf16 values when held in half (dtype says which)
    ked_dtype dtype;     // KED_F32 (w), or KED_F16 / KED_BF16 (w16)
    int owned16;         // w16 was malloc'd; otherwise it points into a memory map
} ked_param;

// whether the slot holds a tensor (in f32 or in half)
static inline int param_present(const ked_param *p) { return p->w || p->w16; }
// model_param_materialize_f32: the f32 values of p, converting a half-held tensor once (p->w is
// set, p->w16 dropped). NULL with an error for an unused slot or when out of memory.
float *model_param_materialize_f32(ked_model *m, ked_param *p, ked_error *err);
// model_param_row_f32: row r of p (cols floats) into dst, whatever p is held in
void model_param_row_f32(const ked_param *p, int64_t r, float *dst);

// how an HF tensor maps onto slots
typedef enum {
    T_COPY = 0,      // same layout
    T_TRANSPOSE,     // GPT-2 Conv1D: file (in, out) -> slot (out, in)
    T_SPLIT3_TRANSPOSE, // GPT-2 c_attn weight: file (in, 3*out) -> q, k, v slots (out, in)
    T_SPLIT3,        // GPT-2 c_attn bias: file (3*out) -> q, k, v bias slots
    T_QKV_HEADS,     // GPT-NeoX query_key_value weight (3*H*D, C) / bias (3*H*D), rows per head
                     // [h][q, k, v][D] -> q, k, v slots (H*D, C) / (H*D)
} tensor_transform;

typedef struct {
    const char *pattern;   // HF name; "%d" stands for the layer index
    int slot[3];           // layer_slot (pattern has %d) or global_slot; [1], [2] for SPLIT3/QKV
    tensor_transform transform;
} family_tensor;

typedef struct family {
    const char *name;                 // "llama", "gpt2"
    const char *const *model_types;   // config.json "model_type" values, NULL-terminated
    const char *const *architectures; // config.json "architectures" values, NULL-terminated
    const char *const *prefixes;      // optional name prefixes (GPT-2: "transformer."), NULL-terminated
    const char *const *ignored;       // tensor names to skip (buffers), "%d" allowed, NULL-terminated
    // read config.json into cfg; errors name `path` and the field
    ked_status (*read_config)(json_t *root, const char *path, ked_config *cfg, ked_error *err);
    const family_tensor *tensors;
    int n_tensors;
} family;

const family *family_find(const char *model_type, json_t *architectures);
const family *family_by_name(const char *name);
// family_tensor_count: number of HF tensors a model of this config has (per-layer entries count
// once per layer; optional biases/heads only when the config has them)
int family_tensor_present(const family *f, const family_tensor *t, const ked_config *cfg);

struct ked_model {
    ked_config cfg;
    const family *fam;
    char *path;
    const char *format;       // "safetensors" or "llama2.c"
    ked_dtype file_dtype;
    ked_param *params;        // G_COUNT + n_layer * P_LAYER_COUNT
    int n_params;
    float *inv_freq;          // (rot_dim / 2) rotary inverse frequencies
    st_set *st;               // open safetensors (memory maps the params may point into)
    void *map;                // llama2.c checkpoint map
    size_t map_len;
    // HF tensor names of this model, in file order (for inspect, tensor_read, save)
    char **names;
    int n_names;
    int keep_half;            // load option: f16/bf16 matrices stay half (ked_load_opts)
};

// number of HF-file parts a family tensor splits into (3 for fused q/k/v)
int family_tensor_parts(const family_tensor *t);
// rotary inverse frequencies (rot_dim / 2) of a config, rope scaling applied (rope_scaling.c)
void rope_inv_freq(const ked_config *c, float *inv_freq);
// whether any parameter of m is held in half (runs then carve matmul scratch)
int model_has_half(const ked_model *m);

ked_param *model_param(const ked_model *m, int layer, int slot); // layer < 0: global slot
// fill cfg's derived fields and check consistency; errors name `path`
ked_status config_finish(ked_config *cfg, const char *path, ked_error *err);

// loaders
ked_status load_hf(const char *path, ked_model *m, ked_error *err);
ked_status load_llama2c(const char *path, ked_model *m, ked_error *err);

// ---- runs (activations) -------------------------------------------------------------------------
typedef struct {
    float *resid_in;             // (N, C) residual entering the layer
    float *h1, *h1_mean, *h1_rstd; // (N, C), (N), (N) attention norm output and its statistics
    float *q;                    // (N, H*D) queries after rotary
    float *k, *v;                // (B, S, KV, D) the layer's key/value cache
    float *att;                  // (B, H, T, S) attention probabilities
    float *atty;                 // (N, H*D) attention output before o_proj
    float *attn_out;             // (N, C)
    float *mid;                  // (N, C) residual after attention (sequential blocks)
    float *h2, *h2_mean, *h2_rstd; // (N, C) the MLP's normalised input (mlp_in) and statistics
    float *pre_gate, *pre_up;    // (N, F) pre-activations (GELU MLP: pre_up only)
    float *key;                  // (N, F) mlp_key
    float *mlp_out;              // (N, C)
} layer_acts;

struct ked_run {
    const ked_model *m;
    int B, T, S, backward;
    int max_logits;              // logit rows a forward may ask for
    int backward_from;           // lowest layer ked_backward may visit (keeps activations)
    int cur_T;                   // T of the last forward
    int *row_pos0;               // (B) position of each row's first token in the last forward
    int kv_packed;               // the last forward kept k, v packed (B, cur_T, KV, D)
    int att_S;                   // key positions per att row in the last forward (its stride)
    int *kv_len;                 // (B) positions of each row's key/value cache that are written
    int kv_borrowed;             // k, v of every layer and kv_len belong to another run
    int dlogits_in_logits;       // dlogits == logits
    int *key_len;                // (B)
    int *ids;                    // (B, T) of the last forward
    int *len;                    // (B)
    int *pos;                    // (B*T) positions
    layer_acts *L;               // (n_layer)
    float *resid_final;          // (N, C) residual after the last layer
    float *hf, *hf_mean, *hf_rstd; // (N, C) final norm output
    float *sel;                  // (N, C) gathered final-norm rows for the selected logits
    float *logits, *dlogits;     // (N, V)
    int n_logit;
    int *logit_idx;              // (N) flattened indices of the logit rows
    float *cache_resid;          // (N, C) residual entering cache_layer (for start_layer reuse)
    int cache_layer;
    int cache_T;                 // T and row_pos0 (B) of the forward that filled cache_resid
    int *cache_pos0;
    float *kv_new;               // (N, 2 KVD) the k, v of a forward's tokens before they are
                                 // scattered into an unpacked cache
    int stopped_after;           // layer the last forward stopped after (n_layer-1: full)
    const ked_hook *hooks;       // of the last forward
    int n_hooks;
    // backward scratch
    float *d_resid, *d_h, *d_mid, *d_atty, *d_q, *d_k, *d_v, *d_key, *d_gate, *d_up, *d_sel;
    float *wscratch;             // matmul_w16_scratch floats: half weights widened (kernels.h)
    void *block;                 // the one allocation everything above points into
    size_t bytes;
};

int hook_width(const ked_config *cfg, ked_hook_point p);
// run_bytes_for: the bytes ked_run_new_opts(m, o) would map (o valid as it checks; SIZE_MAX when
// out of memory), so a caller can size a batch to a memory budget before making its run
size_t run_bytes_for(const ked_model *m, const ked_run_opts *o);

#endif
