// cmd_inspect.c: `ked inspect`: what a model is: family, config, parameters, dtypes, memory.
#include <string.h>

#include "cli.h"

static const char *usage =
    "usage: ked inspect --model PATH [--tensors] [--keep-half]\n"
    "\n"
    "Prints the model's family, config, parameter count, dtypes and memory.\n"
    "\n"
    "  --model PATH   Hugging Face directory or llama2.c checkpoint\n"
    "  --tensors      also list every tensor (Hugging Face name and shape)\n"
    "  --keep-half    load F16/BF16 weights as ked generate --keep-half does (16-bit in memory)\n";

int cmd_inspect(int argc, char **argv) {
    const char *model_path = NULL, *v;
    int list = 0;
    ked_load_opts lo = ked_load_defaults();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); return 0; }
        else if ((v = cli_opt_value(argc, argv, &i, "--model"))) model_path = v;
        else if (!strcmp(argv[i], "--tensors")) list = 1;
        else if (!strcmp(argv[i], "--keep-half")) lo.keep_half = 1;
        else if (!model_path && argv[i][0] != '-') model_path = argv[i];
        else return cli_usage_error("inspect", "unknown argument '%s'", argv[i]);
    }
    if (!model_path) return cli_usage_error("inspect", "--model PATH is required");
    cli_timing tm;
    cli_timing_start(&tm);
    ked_error err;
    ked_model *m = NULL;
    if (ked_model_load_ex(model_path, &lo, &m, &err)) return cli_report("inspect", &err);
    tm.load_s = ked_time_s_cli() - tm.t_start;
    const ked_config *c = ked_model_config(m);
    int64_t np = ked_model_n_params(m);
    char b1[32], b2[32], b3[32];
    printf("model       %s\n", model_path);
    printf("format      %s (weights stored as %s)\n", ked_model_format(m),
           ked_dtype_name(ked_model_file_dtype(m)));
    printf("family      %s\n", c->family);
    printf("layers      %d\n", c->n_layer);
    printf("d_model     %d\n", c->d_model);
    printf("heads       %d query, %d key/value (head size %d)\n", c->n_head, c->n_kv_head, c->head_dim);
    printf("d_ff        %d\n", c->d_ff);
    printf("vocab       %d\n", c->vocab);
    printf("context     %d positions\n", c->max_pos);
    printf("norm        %s (eps %g)\n", c->norm == KED_NORM_RMSNORM ? "RMSNorm" : "LayerNorm", c->norm_eps);
    if (c->pos == KED_POS_ROTARY) {
        printf("positions   rotary, %d of %d dims, %s pairing, theta %g\n", c->rot_dim, c->head_dim,
               c->rope_interleaved ? "GPT-J" : "NeoX (rotate-half)", c->rope_theta);
        if (c->rope_scaling == KED_ROPE_SCALING_LLAMA3)
            printf("rope scale  llama3: factor %g, low/high freq factor %g/%g, original context %d\n",
                   c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                   c->rope_orig_max_pos);
    } else
        printf("positions   learned\n");
    printf("block       %s, MLP %s\n",
           c->block != KED_BLOCK_PARALLEL ? "sequential"
           : c->parallel_shared_norm       ? "parallel (one norm for attention and MLP)"
                                           : "parallel",
           c->mlp == KED_MLP_GATED_SILU ? "gated SiLU"
           : c->gelu == KED_GELU_ERF    ? "GELU (erf)"
                                        : "GELU (tanh)");
    printf("biases      qkv %s, out %s, mlp %s\n", c->qkv_bias ? "yes" : "no", c->o_bias ? "yes" : "no",
           c->mlp_bias ? "yes" : "no");
    printf("head        %s%s\n", c->tied_head ? "tied to the embedding" : "separate",
           c->head_bias ? ", with bias" : "");
    if (c->window) printf("window      %d\n", c->window);
    printf("bos / eos   %d / %d\n", c->bos_id, c->eos_id);
    printf("parameters  %lld (%.3f M)\n", (long long)np, np / 1e6);
    cli_human_bytes(b1, sizeof b1, (double)ked_model_weight_bytes(m));
    printf("memory      %s of weights in memory (f32 compute)\n", b1);
    for (ked_dtype dt = KED_F16; dt <= KED_BF16; dt++) {
        size_t hb = ked_model_weight_bytes_dtype(m, dt);
        if (!hb) continue;
        cli_human_bytes(b1, sizeof b1, (double)hb);
        cli_human_bytes(b2, sizeof b2, (double)ked_model_weight_bytes_dtype(m, KED_F32));
        printf("            %s held as %s (matrices, widened inside each product), %s f32\n", b1,
               ked_dtype_name(dt), b2);
    }
    cli_human_bytes(b1, sizeof b1, np * 4.0);
    cli_human_bytes(b2, sizeof b2, np * 2.0);
    cli_human_bytes(b3, sizeof b3, np * 2.0);
    printf("storage     f32 %s, bf16 %s, f16 %s\n", b1, b2, b3);
    printf("tensors     %d\n", ked_model_n_tensors(m));
    if (list)
        for (int i = 0; i < ked_model_n_tensors(m); i++) {
            const char *name = ked_model_tensor_name(m, i);
            int64_t s[2];
            int nd = ked_model_tensor_shape(m, name, s);
            if (nd == 2) printf("  %-48s [%lld, %lld]\n", name, (long long)s[0], (long long)s[1]);
            else printf("  %-48s [%lld]\n", name, (long long)s[0]);
        }
    ked_model_free(m);
    cli_timing_print(&tm);
    return 0;
}
