// cmd_stats.c: `ked stats`: second-moment statistics of the mlp_key hook over a corpus, for the
// methods that need them (MEMIT, EMMET, AlphaEdit, ROME with mom2_adjustment), computed in one
// pass for several layers and cached (docs/editing.md, "ked stats").
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_io.h"

static const char *usage =
    "usage: ked stats --model PATH --layers L[,L...] --corpus FILE [options]\n"
    "       ked stats --list | --clear [--cache DIR]\n"
    "       ked stats --read FILE.npz|FILE.kstats\n"
    "\n"
    "Computes C = sum k k^T / count of the mlp_key hook (the input of the MLP's output\n"
    "projection) at every token of the corpus, for each layer, in one pass (the forward stops\n"
    "after the highest layer), and caches it under the model's hash, the layer, the corpus'\n"
    "hash and the budget ($KED_CACHE, else ~/.cache/ked/stats). ked edit finds it there.\n"
    "\n"
    "  --model PATH        the model\n"
    "  --tokenizer PATH    tokenizer (default: the one beside the model)\n"
    "  --layers L,L,...    layers (e.g. 3,4,5 or 3-5)\n"
    "  --corpus FILE       plain text, or JSONL with a \"text\" field (*.jsonl)\n"
    "  --doc-split S       line (default: a document per line), blank (per blank-line block),\n"
    "                      jsonl; carriage returns are dropped, empty documents skipped\n"
    "  --n-docs N          at most N documents (EasyEdit's mom2_n_samples)\n"
    "  --stats-tokens N    at most N tokens (also --tokens)\n"
    "  --batch-tokens N    tokens per forward (default 2048)\n"
    "  --cache DIR         cache directory\n"
    "  --no-cache          compute, neither read nor write the cache\n"
    "  --list              list the cached statistics;  --clear  remove them\n"
    "  --read FILE         print the size and count of a statistics file (EasyEdit .npz too)\n"
    "  --threads N         threads (default: all cores)\n";

static void progress(int64_t docs, int64_t tokens, double s, double frac, void *user) {
    (void)user;
    double left = frac > 0 && frac < 1 ? s * (1 - frac) / frac : 0;
    fprintf(stderr, "\rstats    %lld docs, %lld tokens, %.0f tokens/s, %.0f%%, %.0f s left   ",
            (long long)docs, (long long)tokens, s > 0 ? tokens / s : 0.0, 100 * (frac > 1 ? 1 : frac), left);
    fflush(stderr);
}

static int parse_layers(const char *s, int *out, int *n) {
    *n = 0;
    while (*s) {
        char *e;
        long a = strtol(s, &e, 10), b = a;
        if (e == s || a < 0) return 0;
        if (*e == '-') { s = e + 1; b = strtol(s, &e, 10); if (e == s || b < a) return 0; }
        for (long l = a; l <= b; l++) { if (*n == KED_MAX_EDIT_LAYERS) return 0; out[(*n)++] = (int)l; }
        s = e;
        if (*s == ',') s++;
        else if (*s) return 0;
    }
    return *n > 0;
}

int cmd_stats(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *v, *read = NULL;
    ked_stats_opts so = ked_stats_defaults();
    int layers[KED_MAX_EDIT_LAYERS], n_layers = 0, list = 0, clear = 0, split_given = 0;
    long x, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); return 0; }
        else if ((v = cli_opt_value(argc, argv, &i, "--model"))) model_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--tokenizer"))) tok_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--corpus"))) so.corpus = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--cache"))) so.cache_dir = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--read"))) read = v;
        else if (!strcmp(argv[i], "--no-cache")) so.no_cache = 1;
        else if (!strcmp(argv[i], "--list")) list = 1;
        else if (!strcmp(argv[i], "--clear")) clear = 1;
        else if ((v = cli_opt_value(argc, argv, &i, "--layers")) || (v = cli_opt_value(argc, argv, &i, "--layer"))) {
            if (!parse_layers(v, layers, &n_layers)) return cli_usage_error("stats", "bad --layers '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--doc-split"))) {
            split_given = 1;
            if (!strcmp(v, "line")) so.doc_split = KED_DOC_LINE;
            else if (!strcmp(v, "blank")) so.doc_split = KED_DOC_BLANK;
            else if (!strcmp(v, "jsonl")) so.doc_split = KED_DOC_JSONL;
            else return cli_usage_error("stats", "--doc-split: line, blank or jsonl");
        } else if ((v = cli_opt_value(argc, argv, &i, "--n-docs"))) {
            if (!cli_parse_int(v, 1, 0x7fffffffffffffffL, &x)) return cli_usage_error("stats", "bad --n-docs '%s'", v);
            so.max_docs = x;
        } else if ((v = cli_opt_value(argc, argv, &i, "--stats-tokens")) || (v = cli_opt_value(argc, argv, &i, "--tokens"))) {
            if (!cli_parse_int(v, 1, 0x7fffffffffffffffL, &x)) return cli_usage_error("stats", "bad --stats-tokens '%s'", v);
            so.max_tokens = x;
        } else if ((v = cli_opt_value(argc, argv, &i, "--batch-tokens"))) {
            if (!cli_parse_int(v, 16, 1 << 24, &x)) return cli_usage_error("stats", "bad --batch-tokens '%s'", v);
            so.batch_tokens = (int)x;
        } else if ((v = cli_opt_value(argc, argv, &i, "--threads"))) {
            if (!cli_parse_int(v, 1, 1024, &threads)) return cli_usage_error("stats", "bad --threads '%s'", v);
        } else return cli_usage_error("stats", "unknown argument '%s'", argv[i]);
    }
    ked_error err;
    char dir[1024];
    ked_stats_cache_dir(so.cache_dir, dir, sizeof dir);
    if (list || clear) {
        if (list) {
            char *text = NULL;
            if (ked_stats_cache_list(so.cache_dir, &text, &err)) return cli_report("stats", &err);
            printf("cache    %s\n%s", dir, text);
            free(text);
        }
        if (clear) {
            int n = 0;
            if (ked_stats_cache_clear(so.cache_dir, &n, &err)) return cli_report("stats", &err);
            printf("removed  %d files from %s\n", n, dir);
        }
        return 0;
    }
    if (read) {
        ked_stats s;
        if (ked_stats_read_file(read, &s, &err)) return cli_report("stats", &err);
        double tr = 0;
        for (int i = 0; i < s.dim; i++) tr += s.mom2[(size_t)i * s.dim + i];
        printf("%s: dim %d, count %lld, trace %.6g\n", read, s.dim, (long long)s.count, tr);
        ked_stats_free(&s);
        return 0;
    }
    if (!model_path) return cli_usage_error("stats", "--model PATH is required");
    if (!n_layers) return cli_usage_error("stats", "--layers L,... is required");
    if (!so.corpus) return cli_usage_error("stats", "--corpus FILE is required");
    size_t cl = strlen(so.corpus);
    if (!split_given && cl > 6 && !strcmp(so.corpus + cl - 6, ".jsonl")) so.doc_split = KED_DOC_JSONL;
    if (threads) ked_set_threads((int)threads);
    cli_timing tm;
    cli_timing_start(&tm);
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    if (ked_model_load(model_path, &m, &err)) return cli_report("stats", &err);
    if (cli_load_tokenizer("stats", model_path, tok_path, &tok)) { ked_model_free(m); return 1; }
    tm.load_s = ked_time_s_cli() - tm.t_start;
    double t0 = ked_time_s_cli();
    so.progress = progress;
    ked_stats s[KED_MAX_EDIT_LAYERS];
    int rc = 0;
    if (ked_stats_get(m, tok, layers, n_layers, &so, s, &err)) {
        fprintf(stderr, "\n");
        rc = cli_report("stats", &err);
    } else {
        fprintf(stderr, "\n");
        for (int k = 0; k < n_layers; k++) {
            double tr = 0;
            for (int i = 0; i < s[k].dim; i++) tr += s[k].mom2[(size_t)i * s[k].dim + i];
            printf("layer %2d  dim %d  tokens %lld  docs %lld  trace %.6g  %s\n", layers[k], s[k].dim,
                   (long long)s[k].count, (long long)s[k].docs, tr, s[k].source);
            if (k == 0) tm.tokens = (long)s[k].count;
            ked_stats_free(&s[k]);
        }
        printf("cache    %s\n", dir);
    }
    tm.compute_s = ked_time_s_cli() - t0;
    ked_tokenizer_free(tok);
    ked_model_free(m);
    fflush(stdout);
    cli_timing_print(&tm);
    return rc;
}
