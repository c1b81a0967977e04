// bench_7b.c: a LLaMA-2-7B-shaped layer stack in bf16 on a CPU (issue 4, performance): what a
// user needs to know before editing a 7B model here -- load time, resident memory, seconds per
// token of a decode step and of a prefill forward, extrapolated to the 32 layers of the model.
//
// 1. writes DIR (default build/bench/llama7b-shape) with config.json (LlamaForCausalLM, hidden
//    4096, intermediate 11008, 32 heads, 32 kv heads, vocab 32000, --layers L, untied head,
//    torch_dtype bfloat16) and model.safetensors in bf16 with random weights (uniform, std 0.02,
//    from xorshift64*; norms 1), streamed to disk in 16 MB chunks (no full copy in memory);
//    one layer is 202.4 M parameters = 405 MB, the embedding and the head 131 M = 262 MB each.
//    The file is fsync'd and its pages dropped from the page cache (posix_fadvise DONTNEED), so
//    the load and the first forward read it from disk (a cold load), as a user's first run does.
// 2. ked_model_load_ex with keep_half = 1 (bf16 weights stay bf16, used in place from the memory
//    map): load time, RSS (anon, file) after the load; a first 1-token forward (which touches
//    every weight: the pages come in from disk) and RSS after it.
// 3. with a run of B = 1, T = --ctx (128), cache --ctx + 2 * --steps positions:
//    (a) prefill: a --ctx-token forward with all logits, and the same forward stopping after the
//        last layer (no final norm / head: the layer stack alone); seconds per token = time / ctx;
//    (b) decode: --steps one-token steps with the KV cache holding ctx.. positions (median), with
//        and without the head.
//    Extrapolation to 32 layers: t32 = t_stack * 32 / L + (t_full - t_stack) (the layers scale
//    with their count; the embedding lookup, final norm and head do not).
// 4. one layer, f32 (keep_half = 0) against bf16 (keep_half = 1), from a second 1-layer file
//    (DIR-1layer): the layer alone (stop after layer 0), decode step (median of --steps) and
//    --ctx-token prefill. --f32 0 skips it.
// The files are removed at the end unless --keep 1 (about 4.7 GB for 8 layers).
//
//   build/bench/bench_7b [--dir DIR] [--layers 8] [--threads 2] [--ctx 128] [--steps 4]
//                        [--f32 1] [--keep 0]
// Run with OMP_WAIT_POLICY=passive on a shared machine (bench/run.sh exports it).
// Prints `key value` lines.
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ked.h"

enum { HID = 4096, FF = 11008, NH = 32, VOC = 32000 };

static double now(void) { return omp_get_wtime(); }

static void die(const char *what, const ked_error *err) {
    fprintf(stderr, "bench_7b: %s: %s\n", what, err ? err->msg : strerror(errno));
    exit(1);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_7b [--dir DIR] [--layers L] [--threads N] [--ctx T] "
                    "[--steps N] [--f32 0|1] [--keep 0|1]\n");
    exit(2);
}

// a field of /proc/self/status in MB ("VmRSS", "VmHWM", "RssAnon", "RssFile"); -1 if absent
static double status_mb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            v = atol(line + n + 1) * 1024.0 / 1e6;
            break;
        }
    fclose(f);
    return v;
}

static void print_rss(const char *when) {
    printf("%s_rss_mb %.0f\n%s_rss_anon_mb %.0f\n%s_rss_file_mb %.0f\n", when, status_mb("VmRSS"),
           when, status_mb("RssAnon"), when, status_mb("RssFile"));
}

// ---- the checkpoint, streamed -------------------------------------------------------------------

typedef struct { char name[64]; int64_t d0, d1; int is_norm; } tdesc;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

// n bf16 values: uniform with std 0.02 (half-width 0.02 * sqrt 3), truncated from f32
static void fill_bf16(uint16_t *x, size_t n) {
    const float k = 0.02f * 1.7320508f / 2147483648.0f;
    uint64_t s = rng_state;
    for (size_t i = 0; i + 1 < n; i += 2) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t r = s * 0x2545F4914F6CDD1Dull;
        float a = (float)(int32_t)(uint32_t)(r >> 32) * k, b = (float)(int32_t)(uint32_t)r * k;
        uint32_t ua, ub;
        memcpy(&ua, &a, 4);
        memcpy(&ub, &b, 4);
        x[i] = (uint16_t)(ua >> 16);
        x[i + 1] = (uint16_t)(ub >> 16);
    }
    if (n % 2) x[n - 1] = 0;
    rng_state = s;
}

static int describe(tdesc *t, int L) {
    int n = 0;
#define T_(nm, a, b, norm) do { snprintf(t[n].name, sizeof t[n].name, "%s", nm); \
        t[n].d0 = a; t[n].d1 = b; t[n].is_norm = norm; n++; } while (0)
    T_("model.embed_tokens.weight", VOC, HID, 0);
    for (int l = 0; l < L; l++) {
        char b[64];
        static const char *mats[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                     "self_attn.o_proj"};
        snprintf(b, sizeof b, "model.layers.%d.input_layernorm.weight", l);
        T_(b, HID, 0, 1);
        for (int i = 0; i < 4; i++) {
            snprintf(b, sizeof b, "model.layers.%d.%s.weight", l, mats[i]);
            T_(b, HID, HID, 0);
        }
        snprintf(b, sizeof b, "model.layers.%d.post_attention_layernorm.weight", l);
        T_(b, HID, 0, 1);
        snprintf(b, sizeof b, "model.layers.%d.mlp.gate_proj.weight", l);
        T_(b, FF, HID, 0);
        snprintf(b, sizeof b, "model.layers.%d.mlp.up_proj.weight", l);
        T_(b, FF, HID, 0);
        snprintf(b, sizeof b, "model.layers.%d.mlp.down_proj.weight", l);
        T_(b, HID, FF, 0);
    }
    T_("model.norm.weight", HID, 0, 1);
    T_("lm_head.weight", VOC, HID, 0);
#undef T_
    return n;
}

// writes dir/config.json and dir/model.safetensors (bf16); returns the file's bytes
static long long write_model(const char *dir, int L) {
    char path[1024], tmp[1100];
    if (mkdir(dir, 0755) && errno != EEXIST) die(dir, NULL);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) die(path, NULL);
    fprintf(f, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
               "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
               "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
               "  \"num_hidden_layers\": %d,\n  \"vocab_size\": %d,\n"
               "  \"max_position_embeddings\": 4096,\n  \"rms_norm_eps\": 1e-05,\n"
               "  \"rope_theta\": 10000.0,\n  \"hidden_act\": \"silu\",\n"
               "  \"tie_word_embeddings\": false,\n  \"bos_token_id\": 1,\n"
               "  \"eos_token_id\": 2,\n  \"torch_dtype\": \"bfloat16\"\n}\n",
            HID, FF, NH, NH, L, VOC);
    if (fclose(f)) die(path, NULL);

    int cap = 4 + 9 * L;
    tdesc *t = malloc(sizeof *t * (size_t)cap);
    if (!t) die("tensor list", NULL);
    int n = describe(t, L);
    size_t hcap = (size_t)n * 160 + 64, hl = 0;
    char *h = malloc(hcap);
    if (!h) die("header", NULL);
    long long off = 0;
    hl += (size_t)snprintf(h + hl, hcap - hl, "{");
    for (int i = 0; i < n; i++) {
        long long nb = 2ll * t[i].d0 * (t[i].d1 ? t[i].d1 : 1);
        if (t[i].d1)
            hl += (size_t)snprintf(h + hl, hcap - hl,
                                   "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],"
                                   "\"data_offsets\":[%lld,%lld]}", i ? "," : "", t[i].name,
                                   (long long)t[i].d0, (long long)t[i].d1, off, off + nb);
        else
            hl += (size_t)snprintf(h + hl, hcap - hl,
                                   "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld],"
                                   "\"data_offsets\":[%lld,%lld]}", i ? "," : "", t[i].name,
                                   (long long)t[i].d0, off, off + nb);
        off += nb;
    }
    hl += (size_t)snprintf(h + hl, hcap - hl, "}");
    while (hl % 8) h[hl++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "wb");
    if (!f) die(tmp, NULL);
    uint64_t hl64 = hl;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl64 >> (8 * i));
    if (fwrite(le, 1, 8, f) != 8 || fwrite(h, 1, hl, f) != hl) die(tmp, NULL);
    enum { CHUNK = 8 << 20 }; // values (16 MB)
    uint16_t *buf = malloc(sizeof(uint16_t) * CHUNK);
    if (!buf) die("chunk", NULL);
    for (int i = 0; i < n; i++) {
        size_t left = (size_t)t[i].d0 * (size_t)(t[i].d1 ? t[i].d1 : 1);
        while (left) {
            size_t c = left < CHUNK ? left : CHUNK;
            if (t[i].is_norm) for (size_t j = 0; j < c; j++) buf[j] = 0x3F80; // 1.0
            else fill_bf16(buf, c);
            if (fwrite(buf, 2, c, f) != c) die(tmp, NULL);
            left -= c;
        }
    }
    free(buf);
    free(h);
    free(t);
    if (fflush(f) || fsync(fileno(f))) die(tmp, NULL);
    if (fclose(f)) die(tmp, NULL);
    if (rename(tmp, path)) die(path, NULL);
    return 8 + (long long)hl + off;
}

// drop the file's (clean) pages from the page cache, so that the next read comes from disk
static void drop_cache(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    fdatasync(fd);
    int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    printf("page_cache_dropped %s\n", rc ? "no" : "yes");
}

static void remove_model(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

// ---- timing ------------------------------------------------------------------------------------

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

// a prefill of T tokens (from position 0) with all logits (stop < 0) or stopping after layer stop
static double prefill(const ked_model *m, ked_run *r, const int *ids, int T, int stop) {
    ked_error err;
    ked_forward_opts fo = ked_forward_defaults();
    fo.stop_after_layer = stop;
    double t0 = now();
    if (ked_forward(m, r, ids, 1, T, NULL, &fo, &err)) die("ked_forward (prefill)", &err);
    return now() - t0;
}

// n one-token steps from position *pos (advanced), median seconds
static double steps(const ked_model *m, ked_run *r, int n, int *pos, int stop) {
    ked_error err;
    ked_forward_opts fo = ked_forward_defaults();
    int zero = 0, id = 7;
    fo.stop_after_layer = stop;
    if (stop < 0) { fo.logit_idx = &zero; fo.n_logit = 1; }
    double *t = malloc(sizeof(double) * (size_t)n);
    if (!t) die("timings", NULL);
    for (int s = 0; s < n; s++) {
        fo.pos0 = (*pos)++;
        double t0 = now();
        if (ked_forward(m, r, &id, 1, 1, NULL, &fo, &err)) die("ked_forward (step)", &err);
        t[s] = now() - t0;
        id = (id * 31 + 11) % VOC;
    }
    double md = median(t, n);
    free(t);
    return md;
}

// ---- one layer, f32 against bf16 ----------------------------------------------------------------

static void one_layer(const char *dir, int keep_half, int ctx, int n_steps, const int *ids) {
    ked_error err;
    ked_model *m = NULL;
    ked_load_opts lo = ked_load_defaults();
    lo.keep_half = keep_half;
    const char *tag = keep_half ? "l1_bf16" : "l1_f32";
    double t0 = now();
    if (ked_model_load_ex(dir, &lo, &m, &err)) die("ked_model_load_ex (1 layer)", &err);
    printf("%s_load_s %.2f\n%s_weight_mb %.0f\n", tag, now() - t0, tag,
           ked_model_weight_bytes(m) / 1e6);
    ked_run *r = NULL;
    if (ked_run_new(m, 1, ctx, ctx + 2 * n_steps + 2, 0, &r, &err)) die("ked_run_new", &err);
    prefill(m, r, ids, ctx, 0); // warm-up (pages in)
    double pf = prefill(m, r, ids, ctx, 0);
    int pos = ctx;
    steps(m, r, 1, &pos, 0); // warm-up
    double st = steps(m, r, n_steps, &pos, 0);
    printf("%s_layer_prefill_s %.3f\n%s_layer_prefill_s_per_token %.4f\n", tag, pf, tag, pf / ctx);
    printf("%s_layer_decode_step_s %.4f\n", tag, st);
    ked_run_free(r);
    ked_model_free(m);
}

int main(int argc, char **argv) {
    const char *dir = "build/bench/llama7b-shape";
    int L = 8, threads = 2, ctx = 128, n_steps = 4, do_f32 = 1, keep = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--layers")) L = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--ctx")) ctx = atoi(v);
        else if (!strcmp(a, "--steps")) n_steps = atoi(v);
        else if (!strcmp(a, "--f32")) do_f32 = atoi(v);
        else if (!strcmp(a, "--keep")) keep = atoi(v);
        else usage();
    }
    if (L < 1 || L > 32 || threads < 1 || ctx < 1 || ctx > 2048 || n_steps < 1) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *wp = getenv("OMP_WAIT_POLICY");
    printf("threads %d\nomp_wait_policy %s\nlayers %d\nctx %d\n", threads, wp ? wp : "unset", L,
           ctx);
    double layer_params = 4.0 * HID * HID + 3.0 * HID * FF + 2.0 * HID;
    printf("layer_params_m %.1f\nlayer_bf16_mb %.1f\n", layer_params / 1e6, 2 * layer_params / 1e6);

    double t0 = now();
    long long fb = write_model(dir, L);
    printf("file_mb %.0f\nwrite_s %.1f\n", fb / 1e6, now() - t0);
    drop_cache(dir);

    // ---- load (cold), keep_half = 1
    print_rss("before_load");
    ked_error err;
    ked_model *m = NULL;
    ked_load_opts lo = ked_load_defaults();
    lo.keep_half = 1;
    t0 = now();
    if (ked_model_load_ex(dir, &lo, &m, &err)) die("ked_model_load_ex", &err);
    printf("load_s %.2f\n", now() - t0);
    ked_set_threads(threads);
    printf("weight_mb %.0f\nweight_bf16_mb %.0f\nn_params_m %.1f\n",
           ked_model_weight_bytes(m) / 1e6, ked_model_weight_bytes_dtype(m, KED_BF16) / 1e6,
           ked_model_n_params(m) / 1e6);
    print_rss("after_load");

    ked_run *r = NULL;
    if (ked_run_new(m, 1, ctx, ctx + 2 * n_steps + 2, 0, &r, &err)) die("ked_run_new", &err);
    printf("run_mb %.0f\n", ked_run_bytes(r) / 1e6);
    int *ids = malloc(sizeof(int) * (size_t)ctx);
    if (!ids) die("ids", NULL);
    for (int i = 0; i < ctx; i++) ids[i] = (int)((i * 7919u + 13u) % VOC);
    t0 = now();
    prefill(m, r, ids, 1, -1); // one token: touches every weight once (pages come in)
    printf("first_fwd_s %.2f\n", now() - t0);
    print_rss("after_first_fwd");

    // ---- (a) prefill, (b) decode steps
    double pf_full = prefill(m, r, ids, ctx, -1);
    double pf_stack = prefill(m, r, ids, ctx, L - 1);
    int pos = ctx;
    double st_full = steps(m, r, n_steps, &pos, -1);
    double st_stack = steps(m, r, n_steps, &pos, L - 1);
    print_rss("after_all");
    printf("peak_rss_mb %.0f\n", status_mb("VmHWM"));
    printf("prefill_s %.2f\nprefill_s_per_token %.4f\nprefill_stack_s %.2f\n", pf_full,
           pf_full / ctx, pf_stack);
    printf("decode_step_s %.3f\ndecode_step_stack_s %.3f\n", st_full, st_stack);
    double pf_head = pf_full - pf_stack, st_head = st_full - st_stack;
    double pf32 = pf_stack * 32 / L + (pf_head > 0 ? pf_head : 0);
    double st32 = st_stack * 32 / L + (st_head > 0 ? st_head : 0);
    printf("per_layer_prefill_s %.3f\nper_layer_decode_step_s %.4f\n", pf_stack / L, st_stack / L);
    printf("x32_prefill_s %.1f\nx32_prefill_s_per_token %.3f\n", pf32, pf32 / ctx);
    printf("x32_decode_step_s %.2f\nx32_decode_tok_s %.2f\n", st32, 1 / st32);
    printf("x32_weight_bf16_gb %.1f\n",
           (32 * 2 * layer_params + 2.0 * 2 * VOC * HID + 2.0 * HID) / 1e9);
    ked_run_free(r);
    ked_model_free(m);
    if (!keep) remove_model(dir);

    // ---- one layer: f32 vs bf16
    if (do_f32) {
        char d1[1024];
        snprintf(d1, sizeof d1, "%s-1layer", dir);
        write_model(d1, 1);
        one_layer(d1, 1, ctx, n_steps, ids);
        one_layer(d1, 0, ctx, n_steps, ids);
        if (!keep) remove_model(d1);
    }
    free(ids);
    return 0;
}
