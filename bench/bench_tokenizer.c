// bench_tokenizer.c: tokenizer speed, single-threaded: encoding throughput in MB/s on
// WikiText-2 (line by line, as a corpus is tokenised) for GPT-2 byte-level BPE and for LLaMA-2
// SentencePiece-style BPE (tokenizer.json), and the load time of LLaMA-2's 32k tokenizer.json.
// usage: build/bench/bench_tokenizer [WIKITEXT_PATH]   (run from the repository root)
// Times are CPU seconds of the process (one thread). Prints "key: value" lines; bench/bench_tokenizer.sh compares them with the Python references.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ked.h"

#define D "tests/data/tokenizer/"

// CPU time of this (single-threaded) process: steadier than wall time on a shared machine
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

// encode every line (CRLF kept, as in the file); returns seconds, *tokens the count
static double encode_lines(ked_tokenizer *t, const char *text, size_t len, long *tokens) {
    ked_error err;
    long total = 0;
    double t0 = now();
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        int *ids = NULL, n = 0;
        if (ked_tokenizer_encode(t, text + i, e - i, 0, &ids, NULL, &n, &err) != KED_OK) {
            fprintf(stderr, "encode: %s\n", err.msg);
            exit(1);
        }
        total += n;
        free(ids);
        i = e + 1;
    }
    *tokens = total;
    return now() - t0;
}

static void bench(const char *name, const char *path, const char *text, size_t len) {
    ked_tokenizer *t = NULL;
    ked_error err;
    double t0 = now();
    if (ked_tokenizer_load(path, &t, &err) != KED_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    printf("%s_load_ms: %.1f\n", name, (now() - t0) * 1e3);
    long tok = 0;
    double first = encode_lines(t, text, len, &tok);
    double best = first;
    for (int r = 0; r < 2; r++) {
        double s = encode_lines(t, text, len, &tok);
        if (s < best) best = s;
    }
    printf("%s_tokens: %ld\n", name, tok);
    printf("%s_first_pass_mb_s: %.2f\n", name, (double)len / first / 1e6);
    printf("%s_mb_s: %.2f\n", name, (double)len / best / 1e6);
    ked_tokenizer_free(t);
}

int main(int argc, char **argv) {
    const char *wt = argc > 1 ? argv[1] : "/work/shared/corpora/wikitext2_raw_test.txt";
    size_t len;
    char *text = read_all(wt, &len);
    if (!text) {
        fprintf(stderr, "bench_tokenizer: cannot read %s (pass WikiText-2 as argument)\n", wt);
        return 1;
    }
    printf("wikitext_bytes: %zu\n", len);
    bench("gpt2_bpe", D "gpt2", text, len);
    bench("llama2_tokenizer_json", D "vicuna-llama/tokenizer.json", text, len);
    bench("llama2c_tok512", D "stories260k/tok512.bin", text, len);
    // load time of the 32k tokenizer.json: the first load, and the best of 5
    double first = 0, best = 1e9;
    for (int r = 0; r < 6; r++) {
        ked_tokenizer *t = NULL;
        ked_error err;
        double t0 = now();
        if (ked_tokenizer_load(D "vicuna-llama/tokenizer.json", &t, &err) != KED_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double s = now() - t0;
        ked_tokenizer_free(t);
        if (r == 0) first = s;
        else if (s < best) best = s;
    }
    printf("llama2_tokenizer_json_load_first_ms: %.1f\n", first * 1e3);
    printf("llama2_tokenizer_json_load_ms: %.1f\n", best * 1e3);
    free(text);
    return 0;
}
