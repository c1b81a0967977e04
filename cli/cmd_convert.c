// cmd_convert.c: `ked convert`: a copy of a Hugging Face model directory with its floating-point
// weights in another dtype (ked_checkpoint_convert).
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

static const char *usage =
    "usage: ked convert --model DIR --out DIR --dtype f32|f16|bf16 [--max-shard SIZE]\n"
    "\n"
    "Writes a copy of a Hugging Face model directory whose floating-point tensors (F32, F16,\n"
    "BF16, F64) are stored as the given dtype (rounded to nearest, ties to even); other tensors,\n"
    "the tensor order and the safetensors metadata are kept. config.json gets \"torch_dtype\";\n"
    "the tokenizer and generation files are copied. Everything is read and checked before\n"
    "anything is written, and every file is written under a temporary name and renamed.\n"
    "The converted weights are held in memory while writing (the output's size).\n"
    "\n"
    "  --model DIR       the Hugging Face model directory to read\n"
    "  --out DIR         where to write (created if missing; not the --model directory)\n"
    "  --dtype D         f32, f16 or bf16 (also float32, float16, bfloat16)\n"
    "  --max-shard SIZE  largest weight file: bytes, or with KB, MB, GB (powers of 1000) or\n"
    "                    KiB, MiB, GiB (powers of 1024); 0: one file (default: 5GB, as\n"
    "                    transformers' save_pretrained)\n";

static int parse_dtype(const char *s, ked_dtype *out) {
    static const struct { const char *name; ked_dtype dt; } names[] = {
        {"f32", KED_F32},  {"float32", KED_F32},  {"fp32", KED_F32},
        {"f16", KED_F16},  {"float16", KED_F16},  {"fp16", KED_F16},
        {"bf16", KED_BF16}, {"bfloat16", KED_BF16},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(s, names[i].name)) { *out = names[i].dt; return 1; }
    return 0;
}

// "5GB", "500MiB", "1000000": bytes (transformers' units: KB/MB/GB decimal, KiB/MiB/GiB binary)
static int parse_size(const char *s, size_t *out) {
    static const struct { const char *unit; double mul; } units[] = {
        {"", 1}, {"B", 1}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
        {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
    };
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0)) return 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(end, units[i].unit)) {
            double b = v * units[i].mul;
            if (b >= 1.8e19) return 0;
            *out = (size_t)b;
            return 1;
        }
    return 0;
}

int cmd_convert(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *dtype_s = NULL, *shard_s = NULL, *v;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); return 0; }
        else if ((v = cli_opt_value(argc, argv, &i, "--model"))) model = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--out"))) out = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--dtype"))) dtype_s = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--max-shard"))) shard_s = v;
        else return cli_usage_error("convert", "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage_error("convert", "--model DIR is required");
    if (!out) return cli_usage_error("convert", "--out DIR is required");
    if (!dtype_s) return cli_usage_error("convert", "--dtype f32|f16|bf16 is required");
    ked_dtype dtype;
    if (!parse_dtype(dtype_s, &dtype))
        return cli_usage_error("convert", "--dtype '%s': expected f32, f16 or bf16", dtype_s);
    size_t max_shard = 5000000000u;
    if (shard_s && !parse_size(shard_s, &max_shard))
        return cli_usage_error("convert", "--max-shard '%s': expected bytes, e.g. 5GB, 500MiB or "
                               "0", shard_s);
    cli_timing tm;
    cli_timing_start(&tm);
    ked_error err;
    ked_convert_stats cs;
    if (ked_checkpoint_convert(model, out, dtype, max_shard, &cs, &err))
        return cli_report("convert", &err);
    tm.compute_s = ked_time_s_cli() - tm.t_start;
    char a[32], b[32];
    cli_human_bytes(a, sizeof a, (double)cs.bytes_in);
    cli_human_bytes(b, sizeof b, (double)cs.bytes_out);
    printf("%s: %d of %d tensors converted to %s, %zu -> %zu bytes (%s -> %s), %d other files\n",
           out, cs.n_converted, cs.n_tensors, ked_dtype_name(dtype), cs.bytes_in, cs.bytes_out, a,
           b, cs.n_files);
    cli_timing_print(&tm);
    return 0;
}
