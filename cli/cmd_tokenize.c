// cmd_tokenize.c: `ked tokenize`: the token ids, pieces and byte offsets of a text.
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_io.h"

static const char *usage =
    "usage: ked tokenize (--tokenizer PATH | --model PATH) [--ids] [--no-special] [TEXT | -]\n"
    "\n"
    "Encodes TEXT (or standard input with '-' or no TEXT) and prints one token per line:\n"
    "index, id, piece, byte span [start, end) in TEXT, and the text of that span.\n"
    "\n"
    "  --tokenizer PATH  tokenizer.json, a directory holding tokenizer.json or vocab.json +\n"
    "                    merges.txt or a llama2.c tokenizer (tokenizer.bin, tok*.bin), or a\n"
    "                    llama2.c tokenizer file\n"
    "  --model PATH      a model directory or file: its tokenizer is the one found beside it\n"
    "  --ids             print only the ids, space-separated, on one line\n"
    "  --no-special      leave out BOS/EOS (added by default as the tokenizer's config says)\n"
    "  --decode          also print the decoded text of the ids (a check of the round trip)\n";

// print bytes with control characters and backslashes escaped, so one token stays on one line
static void put_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02X", c);
        else putchar(c);
    }
}

static char *read_stdin(size_t *len) {
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    size_t r;
    while ((r = fread(b + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
        }
    }
    *len = n;
    return b;
}

int cmd_tokenize(int argc, char **argv) {
    const char *tok_path = NULL, *model_path = NULL, *text = NULL, *v;
    int ids_only = 0, special = 1, decode = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if ((v = cli_opt_value(argc, argv, &i, "--tokenizer"))) tok_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--model"))) model_path = v;
        else if (!strcmp(argv[i], "--ids")) ids_only = 1;
        else if (!strcmp(argv[i], "--no-special")) special = 0;
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!text && (argv[i][0] != '-' || !strcmp(argv[i], "-") || argv[i][1] == 0))
            text = argv[i];
        else if (!text && !strcmp(argv[i], "--") && i + 1 < argc) text = argv[++i];
        else return cli_usage_error("tokenize", "unknown argument '%s'", argv[i]);
    }
    if (!tok_path && !model_path)
        return cli_usage_error("tokenize", "--tokenizer PATH or --model PATH is required");
    cli_timing tm;
    cli_timing_start(&tm);
    ked_tokenizer *t = NULL;
    if (cli_load_tokenizer("tokenize", model_path, tok_path, &t)) return 1;
    tm.load_s = ked_time_s_cli() - tm.t_start;

    char *owned = NULL;
    size_t len;
    if (!text || !strcmp(text, "-")) {
        owned = read_stdin(&len);
        if (!owned) {
            ked_tokenizer_free(t);
            fprintf(stderr, "ked tokenize: cannot read standard input\n");
            return 1;
        }
        text = owned;
    } else {
        len = strlen(text);
    }
    ked_error err;
    int *ids = NULL, n = 0;
    ked_span *sp = NULL;
    double t0 = ked_time_s_cli();
    if (ked_tokenizer_encode(t, text, len, special, &ids, &sp, &n, &err)) {
        free(owned);
        ked_tokenizer_free(t);
        return cli_report("tokenize", &err);
    }
    tm.compute_s = ked_time_s_cli() - t0;
    tm.tokens = n;
    if (ids_only) {
        for (int k = 0; k < n; k++) printf(k ? " %d" : "%d", ids[k]);
        printf("\n");
    } else {
        for (int k = 0; k < n; k++) {
            const char *p = ked_tokenizer_piece(t, ids[k]);
            printf("%d\t%d\t", k, ids[k]);
            put_escaped(p ? p : "", p ? strlen(p) : 0);
            printf("\t[%zu, %zu)\t", sp[k].start, sp[k].end);
            put_escaped(text + sp[k].start, sp[k].end - sp[k].start);
            printf("\n");
        }
    }
    int rc = 0;
    if (decode) {
        char *out = NULL;
        if (ked_tokenizer_decode(t, ids, n, 1, &out, &err)) rc = cli_report("tokenize", &err);
        else {
            printf("decoded: ");
            put_escaped(out, strlen(out));
            printf("\n");
            free(out);
        }
    }
    fprintf(stderr, "tokenizer: %s\n", ked_tokenizer_kind(t));
    cli_timing_print(&tm);
    free(ids);
    free(sp);
    free(owned);
    ked_tokenizer_free(t);
    return rc;
}
