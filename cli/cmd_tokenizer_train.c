// cmd_tokenizer_train.c: `ked tokenizer-train`: learn a byte-level BPE tokenizer (GPT-2 style)
// from text files and write tokenizer.json (+ tokenizer_config.json beside it).
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *usage =
    "usage: ked tokenizer-train --out tokenizer.json [options] FILE...\n"
    "\n"
    "Learns byte-level BPE merges (GPT-2's byte alphabet and split regex, most frequent pair\n"
    "first, ties to the smaller pair of ids) from text files (one document a line) or .jsonl.\n"
    "\n"
    "  --out FILE          tokenizer.json to write (tokenizer_config.json goes beside it)\n"
    "  --vocab-size N      special tokens + 256 bytes + merges (default 4096)\n"
    "  --min-frequency N   pairs seen fewer times are not merged (default 2)\n"
    "  --special TOKEN     a special token (repeatable; default <|endoftext|>); the first is BOS/EOS\n";

int cmd_tokenizer_train(int argc, char **argv) {
    ked_bpe_opts o = ked_bpe_defaults();
    const char *out = NULL, *v;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    const char **special = calloc((size_t)argc + 1, sizeof *special);
    int n_files = 0, n_special = 0, rc = 0;
    long lv;
    if (!files || !special) { free(files); free(special); fprintf(stderr, "ked tokenizer-train: out of memory\n"); return 1; }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); goto out; }
        else if ((v = cli_opt_value(argc, argv, &i, "--out"))) out = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--special"))) special[n_special++] = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--vocab-size"))) {
            if (!cli_parse_int(v, 1, 1 << 24, &lv)) { rc = cli_usage_error("tokenizer-train", "bad --vocab-size '%s'", v); goto out; }
            o.vocab_size = (int)lv;
        } else if ((v = cli_opt_value(argc, argv, &i, "--min-frequency"))) {
            if (!cli_parse_int(v, 1, 1L << 40, &lv)) { rc = cli_usage_error("tokenizer-train", "bad --min-frequency '%s'", v); goto out; }
            o.min_frequency = (int)lv;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            rc = cli_usage_error("tokenizer-train", "unknown option '%s'", argv[i]);
            goto out;
        } else files[n_files++] = argv[i];
    }
    if (!out) { rc = cli_usage_error("tokenizer-train", "--out FILE is required"); goto out; }
    if (!n_files) { rc = cli_usage_error("tokenizer-train", "give at least one input FILE"); goto out; }
    if (n_special) { o.special = special; o.n_special = n_special; }
    {
        cli_timing tm;
        cli_timing_start(&tm);
        ked_error err;
        if (ked_bpe_train(files, n_files, &o, out, &err)) rc = cli_report("tokenizer-train", &err);
        else fprintf(stderr, "wrote %s\n", out);
        tm.compute_s = ked_time_s_cli() - tm.t_start;
        cli_timing_print(&tm);
    }
out:
    free(files);
    free(special);
    return rc;
}
