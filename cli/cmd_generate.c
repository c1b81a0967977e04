// cmd_generate.c: `ked generate`: continue a prompt with the model, KV-cached, streaming the
// text as it is produced.
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_io.h"

static const char *usage =
    "usage: ked generate --model PATH [options] PROMPT\n"
    "\n"
    "Prints the prompt followed by the model's continuation.\n"
    "\n"
    "  --model PATH        Hugging Face directory or llama2.c checkpoint\n"
    "  --tokenizer PATH    tokenizer (default: the one beside the model)\n"
    "  --max-new N         tokens to generate (default 64)\n"
    "  --temperature T     0 = greedy argmax (default 0)\n"
    "  --top-k K           sample only from the K most likely tokens (default 0: off)\n"
    "  --top-p P           nucleus sampling mass (default 1: off)\n"
    "  --seed S            RNG seed for sampling (default 0)\n"
    "  --threads N         threads (default: all cores)\n"
    "  --keep-half         keep F16/BF16 weights 16-bit in memory (half the bytes; f32 compute)\n"
    "  --no-stop           keep going past an end-of-sequence token\n"
    "  --patch FILE        apply an edit's patch file first (repeatable, in order)\n";

typedef struct {
    ked_detok *dt;
    int failed;
} stream_state;

static void on_token(int id, void *user) {
    stream_state *s = user;
    char *text = NULL;
    ked_error err;
    if (ked_detok_push(s->dt, id, &text, &err)) { s->failed = 1; return; }
    fputs(text, stdout);
    fflush(stdout);
    free(text);
}

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = NULL, *v;
    const char *patches[64];
    int n_patches = 0;
    ked_generate_opts o = ked_generate_defaults();
    ked_load_opts lo = ked_load_defaults();
    long threads = 0, lv;
    double dv;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); return 0; }
        else if ((v = cli_opt_value(argc, argv, &i, "--model"))) model_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--tokenizer"))) tok_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--max-new"))) {
            if (!cli_parse_int(v, 0, 1 << 20, &lv)) return cli_usage_error("generate", "bad --max-new '%s'", v);
            o.max_new = (int)lv;
        } else if ((v = cli_opt_value(argc, argv, &i, "--temperature"))) {
            if (!cli_parse_float(v, 0, 100, &dv)) return cli_usage_error("generate", "bad --temperature '%s'", v);
            o.temperature = (float)dv;
        } else if ((v = cli_opt_value(argc, argv, &i, "--top-k"))) {
            if (!cli_parse_int(v, 0, 1 << 30, &lv)) return cli_usage_error("generate", "bad --top-k '%s'", v);
            o.top_k = (int)lv;
        } else if ((v = cli_opt_value(argc, argv, &i, "--top-p"))) {
            if (!cli_parse_float(v, 0, 1, &dv) || dv <= 0) return cli_usage_error("generate", "bad --top-p '%s' (0 < P <= 1)", v);
            o.top_p = (float)dv;
        } else if ((v = cli_opt_value(argc, argv, &i, "--seed"))) {
            if (!cli_parse_int(v, 0, 0x7fffffffffffffffL, &lv)) return cli_usage_error("generate", "bad --seed '%s'", v);
            o.seed = (uint64_t)lv;
        } else if ((v = cli_opt_value(argc, argv, &i, "--threads"))) {
            if (!cli_parse_int(v, 1, 1024, &threads)) return cli_usage_error("generate", "bad --threads '%s'", v);
        } else if (!strcmp(argv[i], "--no-stop")) o.stop_at_eos = 0;
        else if (!strcmp(argv[i], "--keep-half")) lo.keep_half = 1;
        else if ((v = cli_opt_value(argc, argv, &i, "--patch"))) {
            if (n_patches == 64) return cli_usage_error("generate", "at most 64 --patch files");
            patches[n_patches++] = v;
        }
        else if (argv[i][0] == '-' && argv[i][1] == '-') return cli_usage_error("generate", "unknown option '%s'", argv[i]);
        else if (!prompt) prompt = argv[i];
        else return cli_usage_error("generate", "one PROMPT only (quote it)");
    }
    if (!model_path) return cli_usage_error("generate", "--model PATH is required");
    if (!prompt) return cli_usage_error("generate", "PROMPT is required");
    if (threads) ked_set_threads((int)threads);

    cli_timing tm;
    cli_timing_start(&tm);
    ked_error err;
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    if (ked_model_load_ex(model_path, &lo, &m, &err)) return cli_report("generate", &err);
    ked_editor *ed = NULL;
    if (n_patches && ked_editor_new(m, &ed, &err)) { ked_model_free(m); return cli_report("generate", &err); }
    for (int i = 0; i < n_patches; i++) {
        ked_patch *p = NULL;
        if (ked_patch_load(m, patches[i], &p, &err) || ked_editor_apply(ed, p, NULL, &err)) {
            ked_editor_free(ed);
            ked_model_free(m);
            return cli_report("generate", &err);
        }
    }
    if (cli_load_tokenizer("generate", model_path, tok_path, &tok)) { ked_editor_free(ed); ked_model_free(m); return 1; }
    tm.load_s = ked_time_s_cli() - tm.t_start;

    int *ids = NULL, n = 0, rc = 0;
    if (ked_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, NULL, &n, &err)) {
        rc = cli_report("generate", &err);
        goto done;
    }
    {
        int cap = n + o.max_new;
        int *out = malloc(sizeof(int) * (size_t)cap), n_out = 0;
        stream_state ss = {NULL, 0};
        if (!out || ked_detok_new(tok, &ss.dt, &err)) { rc = out ? cli_report("generate", &err) : 1; free(out); goto done; }
        // feed the prompt through the stream decoder so the continuation is decoded in context
        for (int i = 0; i < n && !ss.failed; i++) {
            char *t = NULL;
            if (ked_detok_push(ss.dt, ids[i], &t, &err)) ss.failed = 1;
            free(t);
        }
        fputs(prompt, stdout);
        fflush(stdout);
        double t0 = ked_time_s_cli();
        ked_status st = ked_generate(m, ids, n, &o, out, cap, &n_out, on_token, &ss, &err);
        tm.compute_s = ked_time_s_cli() - t0;
        char *rest = NULL;
        if (!st && !ked_detok_flush(ss.dt, &rest, &err)) { fputs(rest, stdout); free(rest); }
        fputc('\n', stdout);
        ked_detok_free(ss.dt);
        if (st) rc = cli_report("generate", &err);
        tm.tokens = n_out - n;
        free(out);
    }
done:
    free(ids);
    ked_tokenizer_free(tok);
    ked_editor_free(ed);
    ked_model_free(m);
    cli_timing_print(&tm);
    return rc;
}
