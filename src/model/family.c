// family.c: the model families as tables (design.md §2). A family says how its config.json
// reads into ked_config and which Hugging Face tensor fills which parameter slot. Adding a
// family is adding a table here, not a forward pass.
#include <math.h>
#include <string.h>

#include "model/model.h"

// ---- config.json readers shared by the families ------------------------------------------------

// cfg_int: integer field `key`; required when def < -1 (use CFG_REQUIRED), else def if absent/null
#define CFG_REQUIRED (-2)
static ked_status cfg_int(json_t *root, const char *path, const char *key, int def, int *out,
                          ked_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (def == CFG_REQUIRED)
            return ked_fail(err, KED_ERR_FORMAT, "%s: missing field '%s'", path, key);
        *out = def;
        return KED_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 30))
        return ked_fail(err, KED_ERR_FORMAT, "%s: field '%s' must be a non-negative integer",
                        path, key);
    *out = (int)json_integer_value(v);
    return KED_OK;
}

static ked_status cfg_float(json_t *root, const char *path, const char *key, float def,
                            float *out, ked_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return KED_OK; }
    if (!json_is_number(v))
        return ked_fail(err, KED_ERR_FORMAT, "%s: field '%s' must be a number", path, key);
    *out = (float)json_number_value(v);
    return KED_OK;
}

static ked_status cfg_bool(json_t *root, const char *path, const char *key, int def, int *out,
                           ked_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return KED_OK; }
    if (!json_is_boolean(v))
        return ked_fail(err, KED_ERR_FORMAT, "%s: field '%s' must be true or false", path, key);
    *out = json_is_true(v);
    return KED_OK;
}

// token ids may be an integer or a list (the first is used); absent -> -1
static void cfg_token_id(json_t *root, const char *key, int *out) {
    json_t *v = json_object_get(root, key);
    if (json_is_array(v) && json_array_size(v) > 0) v = json_array_get(v, 0);
    *out = json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

// a field that changes the computation and that ked does not implement: an error naming it
static ked_status cfg_unsupported_if(int cond, const char *path, const char *key, const char *what,
                                     ked_error *err) {
    return cond ? ked_fail(err, KED_ERR_UNSUPPORTED, "%s: field '%s': %s is not supported", path,
                           key, what)
                : KED_OK;
}

#define TRY(x) do { ked_status st_ = (x); if (st_) return st_; } while (0)

// a string field that must be one of `allowed` (NULL-terminated) when present; *out gets its
// index (def when absent or null)
static ked_status cfg_choice(json_t *root, const char *path, const char *key,
                             const char *const *allowed, int def, int *out, const char *what,
                             ked_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return KED_OK; }
    for (int i = 0; json_is_string(v) && allowed[i]; i++)
        if (!strcmp(json_string_value(v), allowed[i])) { *out = i; return KED_OK; }
    return ked_fail(err, KED_ERR_UNSUPPORTED, "%s: field '%s': %s%s%s is not supported (ked "
                    "implements %s)", path, key, json_is_string(v) ? "\"" : "",
                    json_is_string(v) ? json_string_value(v) : "a non-string value",
                    json_is_string(v) ? "\"" : "", what);
}

// rope_scaling: null, {"rope_type"|"type": "default"}, or Llama-3.1's {"rope_type": "llama3",
// "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}
static ked_status read_rope_scaling(json_t *r, const char *path, ked_config *c, ked_error *err) {
    json_t *rs = json_object_get(r, "rope_scaling");
    c->rope_scaling = KED_ROPE_SCALING_NONE;
    if (!rs || json_is_null(rs)) return KED_OK;
    if (!json_is_object(rs))
        return ked_fail(err, KED_ERR_FORMAT, "%s: field 'rope_scaling' must be an object or null",
                        path);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : NULL;
    if (type && !strcmp(type, "default")) return KED_OK;
    if (!type || strcmp(type, "llama3"))
        return ked_fail(err, KED_ERR_UNSUPPORTED, "%s: field 'rope_scaling': rope_type \"%s\" is "
                        "not supported (ked implements \"llama3\" and \"default\")", path,
                        type ? type : "(none)");
    static const char *const keys[4] = {"factor", "low_freq_factor", "high_freq_factor",
                                        "original_max_position_embeddings"};
    double v[4];
    for (int i = 0; i < 4; i++) {
        json_t *x = json_object_get(rs, keys[i]);
        if (!json_is_number(x) || !(json_number_value(x) > 0))
            return ked_fail(err, KED_ERR_FORMAT, "%s: field 'rope_scaling.%s' must be a positive "
                            "number (llama3 rope scaling)", path, keys[i]);
        v[i] = json_number_value(x);
    }
    if (!(v[2] > v[1]))
        return ked_fail(err, KED_ERR_FORMAT, "%s: field 'rope_scaling.high_freq_factor' (%g) must "
                        "exceed low_freq_factor (%g)", path, v[2], v[1]);
    if (v[3] > (1 << 30))
        return ked_fail(err, KED_ERR_FORMAT, "%s: field 'rope_scaling.original_max_position_"
                        "embeddings' is out of range", path);
    c->rope_scaling = KED_ROPE_SCALING_LLAMA3;
    c->rope_factor = (float)v[0];
    c->rope_low_freq_factor = (float)v[1];
    c->rope_high_freq_factor = (float)v[2];
    c->rope_orig_max_pos = (int)v[3];
    return KED_OK;
}

// the GELU of a GELU MLP (GPT-2, GPT-J activation_function; GPT-NeoX hidden_act): "gelu" is the
// exact erf GELU, the others are transformers' names of the tanh approximation
static ked_status read_gelu(json_t *r, const char *path, const char *key, ked_config *c,
                            ked_error *err) {
    static const char *const names[] = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu", NULL};
    int k;
    TRY(cfg_choice(r, path, key, names, 0, &k, "\"gelu\" (erf) and \"gelu_new\", "
                   "\"gelu_pytorch_tanh\", \"gelu_fast\" (tanh)", err));
    c->gelu = k == 3 ? KED_GELU_ERF : KED_GELU_TANH;
    return KED_OK;
}

// hidden_act of a gated-SiLU MLP
static ked_status read_silu(json_t *r, const char *path, ked_error *err) {
    static const char *const silu[] = {"silu", NULL};
    int k;
    return cfg_choice(r, path, "hidden_act", silu, 0, &k, "\"silu\"", err);
}

// ---- LLaMA (1, 2, 3; and llama2.c checkpoints, converted to it), Mistral, Qwen2 -----------------
// One reader: they differ in their attention biases (LLaMA: attention_bias; Qwen2: q/k/v always,
// o never) and Mistral's sliding window.

typedef enum { LL_LLAMA, LL_MISTRAL, LL_QWEN2 } llama_like;

static ked_status llama_like_read(json_t *r, const char *path, ked_config *c, llama_like kind,
                                  ked_error *err) {
    TRY(cfg_int(r, path, "hidden_size", CFG_REQUIRED, &c->d_model, err));
    TRY(cfg_int(r, path, "intermediate_size", CFG_REQUIRED, &c->d_ff, err));
    TRY(cfg_int(r, path, "num_hidden_layers", CFG_REQUIRED, &c->n_layer, err));
    TRY(cfg_int(r, path, "num_attention_heads", CFG_REQUIRED, &c->n_head, err));
    TRY(cfg_int(r, path, "num_key_value_heads", c->n_head, &c->n_kv_head, err));
    TRY(cfg_int(r, path, "vocab_size", CFG_REQUIRED, &c->vocab, err));
    TRY(cfg_int(r, path, "max_position_embeddings", 2048, &c->max_pos, err));
    TRY(cfg_int(r, path, "head_dim", 0, &c->head_dim, err));
    TRY(cfg_float(r, path, "rms_norm_eps", 1e-6f, &c->norm_eps, err));
    TRY(cfg_float(r, path, "rope_theta", 10000.0f, &c->rope_theta, err));
    TRY(cfg_bool(r, path, "tie_word_embeddings", 0, &c->tied_head, err));
    if (kind == LL_LLAMA) {
        TRY(cfg_bool(r, path, "attention_bias", 0, &c->qkv_bias, err));
        c->o_bias = c->qkv_bias;
        TRY(cfg_bool(r, path, "mlp_bias", 0, &c->mlp_bias, err));
        int tp = 1;
        TRY(cfg_int(r, path, "pretraining_tp", 1, &tp, err));
        TRY(cfg_unsupported_if(tp != 1, path, "pretraining_tp", "a value other than 1", err));
    } else if (kind == LL_QWEN2) { // modeling_qwen2.py: q/k/v Linear(bias=True), o_proj bias=False
        c->qkv_bias = 1;
        c->o_bias = 0;
        // use_sliding_window (default false in every released Qwen2) would window some layers
        // (those from max_window_layers on); sliding_window is ignored without it
        int sw = 0;
        TRY(cfg_bool(r, path, "use_sliding_window", 0, &sw, err));
        TRY(cfg_unsupported_if(sw, path, "use_sliding_window", "true (per-layer sliding windows)",
                               err));
    } else { // Mistral: no biases; sliding_window (int or null)
        TRY(cfg_int(r, path, "sliding_window", 0, &c->window, err));
    }
    TRY(read_silu(r, path, err));
    TRY(read_rope_scaling(r, path, c, err));
    c->norm = KED_NORM_RMSNORM;
    c->pos = KED_POS_ROTARY;
    c->rope_interleaved = 0;
    c->block = KED_BLOCK_SEQUENTIAL;
    c->mlp = KED_MLP_GATED_SILU;
    c->norm_bias = 0;
    cfg_token_id(r, "bos_token_id", &c->bos_id);
    cfg_token_id(r, "eos_token_id", &c->eos_id);
    return KED_OK;
}

static ked_status llama_read_config(json_t *r, const char *path, ked_config *c, ked_error *err) {
    return llama_like_read(r, path, c, LL_LLAMA, err);
}
static ked_status mistral_read_config(json_t *r, const char *path, ked_config *c, ked_error *err) {
    return llama_like_read(r, path, c, LL_MISTRAL, err);
}
static ked_status qwen2_read_config(json_t *r, const char *path, ked_config *c, ked_error *err) {
    return llama_like_read(r, path, c, LL_QWEN2, err);
}

static const family_tensor llama_tensors[] = {
    {"model.embed_tokens.weight", {G_EMBED}, T_COPY},
    {"model.layers.%d.input_layernorm.weight", {P_ATTN_NORM_W}, T_COPY},
    {"model.layers.%d.self_attn.q_proj.weight", {P_WQ}, T_COPY},
    {"model.layers.%d.self_attn.q_proj.bias", {P_BQ}, T_COPY},
    {"model.layers.%d.self_attn.k_proj.weight", {P_WK}, T_COPY},
    {"model.layers.%d.self_attn.k_proj.bias", {P_BK}, T_COPY},
    {"model.layers.%d.self_attn.v_proj.weight", {P_WV}, T_COPY},
    {"model.layers.%d.self_attn.v_proj.bias", {P_BV}, T_COPY},
    {"model.layers.%d.self_attn.o_proj.weight", {P_WO}, T_COPY},
    {"model.layers.%d.self_attn.o_proj.bias", {P_BO}, T_COPY},
    {"model.layers.%d.post_attention_layernorm.weight", {P_MLP_NORM_W}, T_COPY},
    {"model.layers.%d.mlp.gate_proj.weight", {P_WGATE}, T_COPY},
    {"model.layers.%d.mlp.gate_proj.bias", {P_BGATE}, T_COPY},
    {"model.layers.%d.mlp.up_proj.weight", {P_WUP}, T_COPY},
    {"model.layers.%d.mlp.up_proj.bias", {P_BUP}, T_COPY},
    {"model.layers.%d.mlp.down_proj.weight", {P_WDOWN}, T_COPY},
    {"model.layers.%d.mlp.down_proj.bias", {P_BDOWN}, T_COPY},
    {"model.norm.weight", {G_FINAL_NORM_W}, T_COPY},
    {"lm_head.weight", {G_HEAD_W}, T_COPY},
};
static const char *const llama_types[] = {"llama", NULL};
static const char *const mistral_types[] = {"mistral", NULL};
static const char *const mistral_archs[] = {"MistralForCausalLM", NULL};
static const char *const qwen2_types[] = {"qwen2", NULL};
static const char *const qwen2_archs[] = {"Qwen2ForCausalLM", NULL};
static const char *const llama_archs[] = {"LlamaForCausalLM", NULL};
static const char *const llama_prefixes[] = {NULL};
static const char *const llama_ignored[] = {"model.layers.%d.self_attn.rotary_emb.inv_freq", NULL};

// ---- GPT-2 ----------------------------------------------------------------------------------------

static ked_status gpt2_read_config(json_t *r, const char *path, ked_config *c, ked_error *err) {
    TRY(cfg_int(r, path, "n_embd", CFG_REQUIRED, &c->d_model, err));
    TRY(cfg_int(r, path, "n_layer", CFG_REQUIRED, &c->n_layer, err));
    TRY(cfg_int(r, path, "n_head", CFG_REQUIRED, &c->n_head, err));
    TRY(cfg_int(r, path, "vocab_size", CFG_REQUIRED, &c->vocab, err));
    TRY(cfg_int(r, path, "n_positions", 1024, &c->max_pos, err));
    TRY(cfg_int(r, path, "n_inner", 0, &c->d_ff, err));
    if (c->d_ff == 0) c->d_ff = 4 * c->d_model;
    TRY(cfg_float(r, path, "layer_norm_epsilon", 1e-5f, &c->norm_eps, err));
    TRY(cfg_bool(r, path, "tie_word_embeddings", 1, &c->tied_head, err));
    TRY(read_gelu(r, path, "activation_function", c, err));
    int scale = 1, by_layer = 0;
    TRY(cfg_bool(r, path, "scale_attn_weights", 1, &scale, err));
    TRY(cfg_unsupported_if(!scale, path, "scale_attn_weights", "false", err));
    TRY(cfg_bool(r, path, "scale_attn_by_inverse_layer_idx", 0, &by_layer, err));
    TRY(cfg_unsupported_if(by_layer, path, "scale_attn_by_inverse_layer_idx", "true", err));
    c->n_kv_head = c->n_head;
    c->head_dim = 0;
    c->norm = KED_NORM_LAYERNORM;
    c->norm_bias = 1;
    c->pos = KED_POS_LEARNED;
    c->block = KED_BLOCK_SEQUENTIAL;
    c->mlp = KED_MLP_GELU;
    c->qkv_bias = c->o_bias = c->mlp_bias = 1;
    cfg_token_id(r, "bos_token_id", &c->bos_id);
    cfg_token_id(r, "eos_token_id", &c->eos_id);
    return KED_OK;
}

static const family_tensor gpt2_tensors[] = {
    {"wte.weight", {G_EMBED}, T_COPY},
    {"wpe.weight", {G_POS_EMBED}, T_COPY},
    {"h.%d.ln_1.weight", {P_ATTN_NORM_W}, T_COPY},
    {"h.%d.ln_1.bias", {P_ATTN_NORM_B}, T_COPY},
    {"h.%d.attn.c_attn.weight", {P_WQ, P_WK, P_WV}, T_SPLIT3_TRANSPOSE},
    {"h.%d.attn.c_attn.bias", {P_BQ, P_BK, P_BV}, T_SPLIT3},
    {"h.%d.attn.c_proj.weight", {P_WO}, T_TRANSPOSE},
    {"h.%d.attn.c_proj.bias", {P_BO}, T_COPY},
    {"h.%d.ln_2.weight", {P_MLP_NORM_W}, T_COPY},
    {"h.%d.ln_2.bias", {P_MLP_NORM_B}, T_COPY},
    {"h.%d.mlp.c_fc.weight", {P_WUP}, T_TRANSPOSE},
    {"h.%d.mlp.c_fc.bias", {P_BUP}, T_COPY},
    {"h.%d.mlp.c_proj.weight", {P_WDOWN}, T_TRANSPOSE},
    {"h.%d.mlp.c_proj.bias", {P_BDOWN}, T_COPY},
    {"ln_f.weight", {G_FINAL_NORM_W}, T_COPY},
    {"ln_f.bias", {G_FINAL_NORM_B}, T_COPY},
    {"lm_head.weight", {G_HEAD_W}, T_COPY},
};
static const char *const gpt2_types[] = {"gpt2", NULL};
static const char *const gpt2_archs[] = {"GPT2LMHeadModel", "GPT2Model", NULL};
static const char *const gpt2_prefixes[] = {"transformer.", NULL};
static const char *const gpt2_ignored[] = {"h.%d.attn.bias", "h.%d.attn.masked_bias", NULL};

// ---- GPT-J (modeling_gptj.py) -------------------------------------------------------------------
// One ln_1 feeds both attention and MLP (parallel block, shared norm); partial rotary (rotary_dim)
// with GPT-J's interleaved pairing, theta 10000; no attention biases; fc_in/fc_out with biases;
// lm_head with a bias, untied.

static ked_status gptj_read_config(json_t *r, const char *path, ked_config *c, ked_error *err) {
    TRY(cfg_int(r, path, "n_embd", CFG_REQUIRED, &c->d_model, err));
    TRY(cfg_int(r, path, "n_layer", CFG_REQUIRED, &c->n_layer, err));
    TRY(cfg_int(r, path, "n_head", CFG_REQUIRED, &c->n_head, err));
    TRY(cfg_int(r, path, "vocab_size", CFG_REQUIRED, &c->vocab, err));
    TRY(cfg_int(r, path, "n_positions", 2048, &c->max_pos, err));
    TRY(cfg_int(r, path, "n_inner", 0, &c->d_ff, err));
    if (c->d_ff == 0) c->d_ff = 4 * c->d_model;
    TRY(cfg_int(r, path, "rotary_dim", 0, &c->rot_dim, err)); // null: the whole head
    if (c->rot_dim && c->n_head > 0 && c->d_model % c->n_head == 0 &&
        (c->rot_dim % 2 || c->rot_dim > c->d_model / c->n_head))
        return ked_fail(err, KED_ERR_FORMAT, "%s: field 'rotary_dim' (%d) must be even and at most "
                        "the head size %d", path, c->rot_dim, c->d_model / c->n_head);
    TRY(cfg_float(r, path, "layer_norm_epsilon", 1e-5f, &c->norm_eps, err));
    TRY(cfg_bool(r, path, "tie_word_embeddings", 0, &c->tied_head, err));
    TRY(cfg_unsupported_if(c->tied_head, path, "tie_word_embeddings",
                           "true (GPT-J's lm_head has a bias of its own)", err));
    TRY(read_gelu(r, path, "activation_function", c, err));
    c->n_kv_head = c->n_head;
    c->head_dim = 0;
    c->norm = KED_NORM_LAYERNORM;
    c->norm_bias = 1;
    c->pos = KED_POS_ROTARY;
    c->rope_theta = 10000.0f;
    c->rope_interleaved = 1;
    c->block = KED_BLOCK_PARALLEL;
    c->parallel_shared_norm = 1;
    c->mlp = KED_MLP_GELU;
    c->qkv_bias = c->o_bias = 0;
    c->mlp_bias = 1;
    c->head_bias = 1;
    cfg_token_id(r, "bos_token_id", &c->bos_id);
    cfg_token_id(r, "eos_token_id", &c->eos_id);
    return KED_OK;
}

static const family_tensor gptj_tensors[] = {
    {"transformer.wte.weight", {G_EMBED}, T_COPY},
    {"transformer.h.%d.ln_1.weight", {P_ATTN_NORM_W}, T_COPY},
    {"transformer.h.%d.ln_1.bias", {P_ATTN_NORM_B}, T_COPY},
    {"transformer.h.%d.attn.q_proj.weight", {P_WQ}, T_COPY},
    {"transformer.h.%d.attn.k_proj.weight", {P_WK}, T_COPY},
    {"transformer.h.%d.attn.v_proj.weight", {P_WV}, T_COPY},
    {"transformer.h.%d.attn.out_proj.weight", {P_WO}, T_COPY},
    {"transformer.h.%d.mlp.fc_in.weight", {P_WUP}, T_COPY},
    {"transformer.h.%d.mlp.fc_in.bias", {P_BUP}, T_COPY},
    {"transformer.h.%d.mlp.fc_out.weight", {P_WDOWN}, T_COPY},
    {"transformer.h.%d.mlp.fc_out.bias", {P_BDOWN}, T_COPY},
    {"transformer.ln_f.weight", {G_FINAL_NORM_W}, T_COPY},
    {"transformer.ln_f.bias", {G_FINAL_NORM_B}, T_COPY},
    {"lm_head.weight", {G_HEAD_W}, T_COPY},
    {"lm_head.bias", {G_HEAD_B}, T_COPY},
};
static const char *const gptj_types[] = {"gptj", NULL};
static const char *const gptj_archs[] = {"GPTJForCausalLM", NULL};
static const char *const gptj_prefixes[] = {NULL};
static const char *const gptj_ignored[] = {"transformer.h.%d.attn.bias",
                                           "transformer.h.%d.attn.masked_bias", NULL};

// ---- GPT-NeoX / Pythia (modeling_gpt_neox.py) ---------------------------------------------------
// Fused query_key_value (3C, C) whose rows are per head [h][q, k, v][D]; partial rotary
// (rotary_pct) with rotate-half pairing; use_parallel_residual true: x + attn(ln1(x)) +
// mlp(ln2(x)), false: sequential; exact erf GELU ("gelu"); biases everywhere; embed_out untied.

static ked_status neox_read_config(json_t *r, const char *path, ked_config *c, ked_error *err) {
    TRY(cfg_int(r, path, "hidden_size", CFG_REQUIRED, &c->d_model, err));
    TRY(cfg_int(r, path, "intermediate_size", CFG_REQUIRED, &c->d_ff, err));
    TRY(cfg_int(r, path, "num_hidden_layers", CFG_REQUIRED, &c->n_layer, err));
    TRY(cfg_int(r, path, "num_attention_heads", CFG_REQUIRED, &c->n_head, err));
    TRY(cfg_int(r, path, "vocab_size", CFG_REQUIRED, &c->vocab, err));
    TRY(cfg_int(r, path, "max_position_embeddings", 2048, &c->max_pos, err));
    TRY(cfg_float(r, path, "layer_norm_eps", 1e-5f, &c->norm_eps, err));
    // rope_theta (newer configs) or rotary_emb_base (older); rotary_pct or partial_rotary_factor
    float base = 10000.0f, pct = 0.25f;
    TRY(cfg_float(r, path, "rotary_emb_base", 10000.0f, &base, err));
    TRY(cfg_float(r, path, "rope_theta", base, &c->rope_theta, err));
    TRY(cfg_float(r, path, "partial_rotary_factor", 0.25f, &pct, err));
    TRY(cfg_float(r, path, "rotary_pct", pct, &pct, err));
    if (!(pct > 0 && pct <= 1))
        return ked_fail(err, KED_ERR_FORMAT, "%s: field 'rotary_pct' (%g) must be in (0, 1]",
                        path, pct);
    int parallel = 1;
    TRY(cfg_bool(r, path, "use_parallel_residual", 1, &parallel, err));
    TRY(cfg_bool(r, path, "tie_word_embeddings", 0, &c->tied_head, err));
    TRY(cfg_bool(r, path, "attention_bias", 1, &c->qkv_bias, err));
    c->o_bias = c->qkv_bias;
    TRY(read_gelu(r, path, "hidden_act", c, err));
    json_t *act = json_object_get(r, "hidden_act");
    if (!act || json_is_null(act)) c->gelu = KED_GELU_ERF; // GPTNeoXConfig's default: "gelu"
    TRY(read_rope_scaling(r, path, c, err));
    if (c->n_head > 0 && c->d_model % c->n_head == 0) {
        // modeling_gpt_neox.py: rotary_ndims = int(head_size * rotary_pct)
        c->rot_dim = (int)((double)(c->d_model / c->n_head) * pct);
        if (c->rot_dim == 0 || c->rot_dim % 2)
            return ked_fail(err, KED_ERR_UNSUPPORTED, "%s: field 'rotary_pct' (%g) gives %d rotary "
                            "dimensions of %d; ked needs an even, non-zero number", path, pct,
                            c->rot_dim, c->d_model / c->n_head);
    }
    c->n_kv_head = c->n_head;
    c->head_dim = 0;
    c->norm = KED_NORM_LAYERNORM;
    c->norm_bias = 1;
    c->pos = KED_POS_ROTARY;
    c->rope_interleaved = 0;
    c->block = parallel ? KED_BLOCK_PARALLEL : KED_BLOCK_SEQUENTIAL;
    c->parallel_shared_norm = 0;
    c->mlp = KED_MLP_GELU;
    c->mlp_bias = 1;
    c->head_bias = 0;
    cfg_token_id(r, "bos_token_id", &c->bos_id);
    cfg_token_id(r, "eos_token_id", &c->eos_id);
    return KED_OK;
}

static const family_tensor neox_tensors[] = {
    {"gpt_neox.embed_in.weight", {G_EMBED}, T_COPY},
    {"gpt_neox.layers.%d.input_layernorm.weight", {P_ATTN_NORM_W}, T_COPY},
    {"gpt_neox.layers.%d.input_layernorm.bias", {P_ATTN_NORM_B}, T_COPY},
    {"gpt_neox.layers.%d.attention.query_key_value.weight", {P_WQ, P_WK, P_WV}, T_QKV_HEADS},
    {"gpt_neox.layers.%d.attention.query_key_value.bias", {P_BQ, P_BK, P_BV}, T_QKV_HEADS},
    {"gpt_neox.layers.%d.attention.dense.weight", {P_WO}, T_COPY},
    {"gpt_neox.layers.%d.attention.dense.bias", {P_BO}, T_COPY},
    {"gpt_neox.layers.%d.post_attention_layernorm.weight", {P_MLP_NORM_W}, T_COPY},
    {"gpt_neox.layers.%d.post_attention_layernorm.bias", {P_MLP_NORM_B}, T_COPY},
    {"gpt_neox.layers.%d.mlp.dense_h_to_4h.weight", {P_WUP}, T_COPY},
    {"gpt_neox.layers.%d.mlp.dense_h_to_4h.bias", {P_BUP}, T_COPY},
    {"gpt_neox.layers.%d.mlp.dense_4h_to_h.weight", {P_WDOWN}, T_COPY},
    {"gpt_neox.layers.%d.mlp.dense_4h_to_h.bias", {P_BDOWN}, T_COPY},
    {"gpt_neox.final_layer_norm.weight", {G_FINAL_NORM_W}, T_COPY},
    {"gpt_neox.final_layer_norm.bias", {G_FINAL_NORM_B}, T_COPY},
    {"embed_out.weight", {G_HEAD_W}, T_COPY},
};
static const char *const neox_types[] = {"gpt_neox", NULL};
static const char *const neox_archs[] = {"GPTNeoXForCausalLM", NULL};
static const char *const neox_prefixes[] = {NULL};
static const char *const neox_ignored[] = {"gpt_neox.layers.%d.attention.bias",
                                           "gpt_neox.layers.%d.attention.masked_bias",
                                           "gpt_neox.layers.%d.attention.rotary_emb.inv_freq",
                                           NULL};

// ---- the registry ---------------------------------------------------------------------------------

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
static const family families[] = {
    {"llama", llama_types, llama_archs, llama_prefixes, llama_ignored, llama_read_config,
     llama_tensors, N_OF(llama_tensors)},
    {"gpt2", gpt2_types, gpt2_archs, gpt2_prefixes, gpt2_ignored, gpt2_read_config, gpt2_tensors,
     N_OF(gpt2_tensors)},
    {"mistral", mistral_types, mistral_archs, llama_prefixes, llama_ignored, mistral_read_config,
     llama_tensors, N_OF(llama_tensors)},
    {"qwen2", qwen2_types, qwen2_archs, llama_prefixes, llama_ignored, qwen2_read_config,
     llama_tensors, N_OF(llama_tensors)},
    {"gptj", gptj_types, gptj_archs, gptj_prefixes, gptj_ignored, gptj_read_config, gptj_tensors,
     N_OF(gptj_tensors)},
    {"gpt_neox", neox_types, neox_archs, neox_prefixes, neox_ignored, neox_read_config,
     neox_tensors, N_OF(neox_tensors)},
};

static int in_list(const char *const *list, const char *s) {
    for (; s && *list; list++)
        if (!strcmp(*list, s)) return 1;
    return 0;
}

// model_type decides (as transformers' AutoConfig does); "architectures" only when it is absent,
// so that an unknown model_type is never loaded as whatever class "architectures" also names
const family *family_find(const char *model_type, json_t *architectures) {
    for (int i = 0; i < N_OF(families); i++)
        if (in_list(families[i].model_types, model_type)) return &families[i];
    if (model_type) return NULL;
    size_t j;
    json_t *a;
    json_array_foreach(architectures, j, a) {
        for (int i = 0; i < N_OF(families); i++)
            if (in_list(families[i].architectures, json_string_value(a))) return &families[i];
    }
    return NULL;
}

const family *family_by_name(const char *name) {
    for (int i = 0; i < N_OF(families); i++)
        if (!strcmp(families[i].name, name)) return &families[i];
    return NULL;
}

// whether a model with this config has the tensor (optional biases and heads)
int family_tensor_present(const family *f, const family_tensor *t, const ked_config *c) {
    (void)f;
    int layered = strstr(t->pattern, "%d") != NULL;
    int s = t->slot[0];
    if (!layered) {
        switch (s) {
        case G_POS_EMBED: return c->pos == KED_POS_LEARNED;
        case G_FINAL_NORM_B: return c->norm_bias;
        case G_HEAD_W: return !c->tied_head;
        case G_HEAD_B: return c->head_bias;
        default: return 1;
        }
    }
    switch (s) {
    case P_ATTN_NORM_B: return c->norm_bias;
    case P_MLP_NORM_W: return !(c->block == KED_BLOCK_PARALLEL && c->parallel_shared_norm);
    case P_MLP_NORM_B: return c->norm_bias &&
                              !(c->block == KED_BLOCK_PARALLEL && c->parallel_shared_norm);
    case P_BQ: case P_BK: case P_BV: return c->qkv_bias;
    case P_BO: return c->o_bias;
    case P_WGATE: return c->mlp == KED_MLP_GATED_SILU;
    case P_BGATE: return c->mlp == KED_MLP_GATED_SILU && c->mlp_bias;
    case P_BUP: case P_BDOWN: return c->mlp_bias;
    default: return 1;
    }
}

// derived fields and consistency checks, common to every family
ked_status config_finish(ked_config *c, const char *path, ked_error *err) {
    if (c->d_model <= 0 || c->n_layer <= 0 || c->n_head <= 0 || c->vocab <= 0 || c->d_ff <= 0)
        return ked_fail(err, KED_ERR_FORMAT,
                        "%s: sizes must be positive (d_model %d, layers %d, heads %d, vocab %d, "
                        "d_ff %d)", path, c->d_model, c->n_layer, c->n_head, c->vocab, c->d_ff);
    if (c->n_kv_head <= 0 || c->n_head % c->n_kv_head)
        return ked_fail(err, KED_ERR_FORMAT,
                        "%s: num_key_value_heads %d must divide num_attention_heads %d", path,
                        c->n_kv_head, c->n_head);
    if (c->head_dim == 0) {
        if (c->d_model % c->n_head)
            return ked_fail(err, KED_ERR_FORMAT, "%s: hidden size %d is not divisible by %d heads",
                            path, c->d_model, c->n_head);
        c->head_dim = c->d_model / c->n_head;
    }
    if (c->pos == KED_POS_ROTARY) {
        if (c->rot_dim == 0) c->rot_dim = c->head_dim;
        if (c->rot_dim % 2 || c->rot_dim > c->head_dim)
            return ked_fail(err, KED_ERR_FORMAT, "%s: rotary dimension %d must be even and <= "
                            "head_dim %d", path, c->rot_dim, c->head_dim);
        if (!(c->rope_theta > 0))
            return ked_fail(err, KED_ERR_FORMAT, "%s: field 'rope_theta' must be positive", path);
    }
    if (!(c->norm_eps > 0) || c->norm_eps > 1)
        return ked_fail(err, KED_ERR_FORMAT, "%s: norm epsilon %g out of range", path, c->norm_eps);
    if (c->max_pos <= 0)
        return ked_fail(err, KED_ERR_FORMAT, "%s: max positions must be positive", path);
    return KED_OK;
}

int family_tensor_parts(const family_tensor *t) {
    return t->transform == T_SPLIT3 || t->transform == T_SPLIT3_TRANSPOSE ||
                   t->transform == T_QKV_HEADS
               ? 3
               : 1;
}
