// init.c: a fresh LLaMA written as a Hugging Face directory (config.json + model.safetensors),
// initialised as transformers' LlamaPreTrainedModel._init_weights does: every linear and
// embedding weight normal(0, initializer_range), every RMSNorm weight 1.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "io/safetensors.h"

ked_init_opts ked_init_defaults(void) {
    ked_init_opts o = {0};
    o.n_layer = 4; o.d_model = 256; o.n_head = 8; o.n_kv_head = 8; o.d_ff = 688;
    o.vocab = 4096; o.max_pos = 512; o.rope_theta = 10000.0f; o.norm_eps = 1e-5f;
    o.init_std = 0.02f; o.tied = 1; o.bos_id = 0; o.eos_id = 0; o.seed = 1;
    return o;
}

static ked_status check_opts(const ked_init_opts *o, ked_error *err) {
    const struct { const char *name; int v; } pos[] = {
        {"n_layer", o->n_layer}, {"d_model", o->d_model}, {"n_head", o->n_head},
        {"n_kv_head", o->n_kv_head}, {"d_ff", o->d_ff}, {"vocab", o->vocab}, {"max_pos", o->max_pos}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0 || pos[i].v > (1 << 24))
            return ked_fail(err, KED_ERR_ARG, "init: %s = %d must be in 1..%d", pos[i].name, pos[i].v,
                            1 << 24);
    if (o->d_model % o->n_head)
        return ked_fail(err, KED_ERR_ARG, "init: d_model %d is not a multiple of n_head %d",
                        o->d_model, o->n_head);
    if (o->n_head % o->n_kv_head)
        return ked_fail(err, KED_ERR_ARG, "init: n_head %d is not a multiple of n_kv_head %d",
                        o->n_head, o->n_kv_head);
    if ((o->d_model / o->n_head) % 2)
        return ked_fail(err, KED_ERR_ARG, "init: head_dim %d must be even (rotary)",
                        o->d_model / o->n_head);
    if (!(o->init_std > 0) || !(o->rope_theta > 0) || !(o->norm_eps > 0))
        return ked_fail(err, KED_ERR_ARG, "init: init_std, rope_theta and norm_eps must be positive");
    if (o->bos_id >= o->vocab || o->eos_id >= o->vocab)
        return ked_fail(err, KED_ERR_ARG, "init: bos_id/eos_id must be below vocab %d", o->vocab);
    return KED_OK;
}

static void id_or_null(char *buf, size_t n, int id) {
    if (id < 0) snprintf(buf, n, "null");
    else snprintf(buf, n, "%d", id);
}

ked_status ked_model_init_write(const char *dir, const ked_init_opts *o, ked_error *err) {
    ked_status st = check_opts(o, err);
    if (st) return st;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ked_fail(err, KED_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    int L = o->n_layer, C = o->d_model, H = o->n_head, KV = o->n_kv_head, D = C / H;
    int F = o->d_ff, V = o->vocab;
    // tensors in transformers' state_dict order
    int n_t = 1 + 9 * L + 1 + (o->tied ? 0 : 1);
    st_write_tensor *t = calloc((size_t)n_t, sizeof *t);
    char (*names)[96] = calloc((size_t)n_t, sizeof *names);
    float **data = calloc((size_t)n_t, sizeof *data);
    if (!t || !names || !data) { st = ked_fail(err, KED_ERR_NOMEM, "init: out of memory"); goto done; }
    int k = 0;
#define ADD(NAME_FMT, LAYER, R, CC, IS_NORM)                                                        \
    do {                                                                                        \
        snprintf(names[k], sizeof names[k], NAME_FMT, LAYER);                                   \
        t[k].name = names[k]; t[k].dtype = KED_F32;                                             \
        if ((CC) > 1) { t[k].ndim = 2; t[k].shape[0] = (R); t[k].shape[1] = (CC); }            \
        else { t[k].ndim = 1; t[k].shape[0] = (R); }                                            \
        data[k] = malloc(sizeof(float) * (size_t)(R) * (size_t)(CC));                          \
        if (!data[k]) { st = ked_fail(err, KED_ERR_NOMEM, "init: out of memory"); goto done; }  \
        for (size_t i_ = 0; i_ < (size_t)(R) * (size_t)(CC); i_++)                               \
            data[k][i_] = (IS_NORM) ? 1.0f : o->init_std * ked_rng_normal(&rng);                \
        t[k].data = data[k]; k++;                                                              \
    } while (0)
    ked_rng rng;
    ked_rng_seed(&rng, o->seed);
    ADD("model.embed_tokens.weight%.0d", 0, V, C, 0);
    for (int l = 0; l < L; l++) {
        ADD("model.layers.%d.self_attn.q_proj.weight", l, H * D, C, 0);
        ADD("model.layers.%d.self_attn.k_proj.weight", l, KV * D, C, 0);
        ADD("model.layers.%d.self_attn.v_proj.weight", l, KV * D, C, 0);
        ADD("model.layers.%d.self_attn.o_proj.weight", l, C, H * D, 0);
        ADD("model.layers.%d.mlp.gate_proj.weight", l, F, C, 0);
        ADD("model.layers.%d.mlp.up_proj.weight", l, F, C, 0);
        ADD("model.layers.%d.mlp.down_proj.weight", l, C, F, 0);
        ADD("model.layers.%d.input_layernorm.weight", l, C, 1, 1);
        ADD("model.layers.%d.post_attention_layernorm.weight", l, C, 1, 1);
    }
    ADD("model.norm.weight%.0d", 0, C, 1, 1);
    if (!o->tied) ADD("lm_head.weight%.0d", 0, V, C, 0);
#undef ADD
    // "%.0d" of 0 prints nothing: the global names carry no layer
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    st = st_write_dir(dir, t, k, 0, mk, mv, 1, err);
    if (st) goto done;
    char bos[16], eos[16], cfg[2048];
    id_or_null(bos, sizeof bos, o->bos_id);
    id_or_null(eos, sizeof eos, o->eos_id);
    int n = snprintf(cfg, sizeof cfg,
        "{\n"
        "  \"architectures\": [\"LlamaForCausalLM\"],\n"
        "  \"model_type\": \"llama\",\n"
        "  \"hidden_size\": %d,\n"
        "  \"intermediate_size\": %d,\n"
        "  \"num_hidden_layers\": %d,\n"
        "  \"num_attention_heads\": %d,\n"
        "  \"num_key_value_heads\": %d,\n"
        "  \"vocab_size\": %d,\n"
        "  \"max_position_embeddings\": %d,\n"
        "  \"rms_norm_eps\": %g,\n"
        "  \"rope_theta\": %g,\n"
        "  \"hidden_act\": \"silu\",\n"
        "  \"initializer_range\": %g,\n"
        "  \"tie_word_embeddings\": %s,\n"
        "  \"attention_bias\": false,\n"
        "  \"mlp_bias\": false,\n"
        "  \"bos_token_id\": %s,\n"
        "  \"eos_token_id\": %s,\n"
        "  \"torch_dtype\": \"float32\"\n"
        "}\n",
        C, F, L, H, KV, V, o->max_pos, (double)o->norm_eps, (double)o->rope_theta,
        (double)o->init_std, o->tied ? "true" : "false", bos, eos);
    char *path = ked_path_join(dir, "config.json");
    if (!path) { st = ked_fail(err, KED_ERR_NOMEM, "init: out of memory"); goto done; }
    st = ked_write_file_atomic(path, cfg, (size_t)n, err);
    free(path);
done:
    for (int i = 0; data && i < n_t; i++) free(data[i]);
    free(data); free(names); free(t);
    return st;
}
