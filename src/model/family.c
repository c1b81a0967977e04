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

// ---- LLaMA (and llama2.c checkpoints, converted to it) -------------------------------------------

static ked_status llama_read_config(json_t *r, const char *path, ked_config *c, ked_error *err) {
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
    TRY(cfg_bool(r, path, "attention_bias", 0, &c->qkv_bias, err));
    c->o_bias = c->qkv_bias;
    TRY(cfg_bool(r, path, "mlp_bias", 0, &c->mlp_bias, err));
    json_t *act = json_object_get(r, "hidden_act");
    TRY(cfg_unsupported_if(act && !(json_is_string(act) && !strcmp(json_string_value(act), "silu")),
                           path, "hidden_act", "an activation other than \"silu\"", err));
    json_t *rs = json_object_get(r, "rope_scaling");
    TRY(cfg_unsupported_if(rs && !json_is_null(rs), path, "rope_scaling", "rope scaling", err));
    int tp = 1;
    TRY(cfg_int(r, path, "pretraining_tp", 1, &tp, err));
    TRY(cfg_unsupported_if(tp != 1, path, "pretraining_tp", "a value other than 1", err));
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
    json_t *act = json_object_get(r, "activation_function");
    const char *a = json_is_string(act) ? json_string_value(act) : "gelu_new";
    TRY(cfg_unsupported_if(strcmp(a, "gelu_new") && strcmp(a, "gelu_pytorch_tanh"), path,
                           "activation_function", "an activation other than gelu_new", err));
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

// ---- the registry ---------------------------------------------------------------------------------

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
static const family families[] = {
    {"llama", llama_types, llama_archs, llama_prefixes, llama_ignored, llama_read_config,
     llama_tensors, N_OF(llama_tensors)},
    {"gpt2", gpt2_types, gpt2_archs, gpt2_prefixes, gpt2_ignored, gpt2_read_config, gpt2_tensors,
     N_OF(gpt2_tensors)},
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
