// test_tokenizer_fuzz.c: seeded random input for the encoders, decoders, streaming decoder and the
// tokenizer.json / tokenizer.bin loaders: no crash, no leak, no sanitizer report (run it under
// `make asan`), ids and spans always in range, byte-level decode(encode(s)) == s for any bytes.
#include <pthread.h>
#include <unistd.h>

#include "core/core.h"
#include "tokenizer/tok_internal.h"
#include "ked.h"
#include "test.h"

#define D "tests/data/tokenizer/"

static const char *frags[] = {"<s>",
                              "</s>",
                              "<unk>",
                              "<|endoftext|>",
                              "<|start_story|>",
                              "\xe2\x96\x81",
                              "'s",
                              "'ll",
                              " ",
                              "  ",
                              "\n",
                              "\r\n",
                              "\t",
                              "e\xcc\x81",
                              "\xef\xac\x81",
                              "<0x41>",
                              "\xf0\x9f\x98\x80",
                              "\xe6\x97\xa5",
                              "123",
                              "Hello",
                              " world",
                              "\xc3\xa9"};

static size_t random_text(ked_rng *r, char *buf, size_t cap) {
    size_t n = 0, want = ked_rng_u64(r) % (cap / 8);
    while (n < want) {
        int kind = (int)(ked_rng_u64(r) % 5);
        if (kind == 0) buf[n++] = (char)(ked_rng_u64(r) & 0xFF); // any byte
        else if (kind == 1) buf[n++] = (char)(32 + ked_rng_u64(r) % 95); // ASCII
        else if (kind == 2) { // a valid code point
            uint32_t cp = (uint32_t)(ked_rng_u64(r) % 0x10FFFF);
            if (cp >= 0xD800 && cp < 0xE000) cp = 0x41;
            if (cp < 0x80) buf[n++] = (char)cp;
            else if (cp < 0x800) {
                buf[n++] = (char)(0xC0 | cp >> 6);
                buf[n++] = (char)(0x80 | (cp & 63));
            } else if (cp < 0x10000) {
                buf[n++] = (char)(0xE0 | cp >> 12);
                buf[n++] = (char)(0x80 | ((cp >> 6) & 63));
                buf[n++] = (char)(0x80 | (cp & 63));
            } else {
                buf[n++] = (char)(0xF0 | cp >> 18);
                buf[n++] = (char)(0x80 | ((cp >> 12) & 63));
                buf[n++] = (char)(0x80 | ((cp >> 6) & 63));
                buf[n++] = (char)(0x80 | (cp & 63));
            }
        } else { // a tricky fragment
            const char *f = frags[ked_rng_u64(r) % (sizeof frags / sizeof *frags)];
            size_t l = strlen(f);
            memcpy(buf + n, f, l);
            n += l;
        }
    }
    return n;
}

static int valid_utf8(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        int l = *u < 0x80 ? 1 : *u < 0xC2 ? 0 : *u < 0xE0 ? 2 : *u < 0xF0 ? 3 : *u < 0xF5 ? 4 : 0;
        if (!l) return 0;
        for (int k = 1; k < l; k++)
            if ((u[k] & 0xC0) != 0x80) return 0;
        u += l;
    }
    return 1;
}

static void fuzz_encode(const char *path, int byte_level, int iters, uint64_t seed) {
    ked_tokenizer *t = NULL;
    ked_error err;
    CHECK_OK(ked_tokenizer_load(path, &t, &err), &err);
    if (!t) return;
    ked_rng r;
    ked_rng_seed(&r, seed);
    char buf[1024];
    int round = 0, total = 0;
    for (int it = 0; it < iters; it++) {
        size_t n = random_text(&r, buf, sizeof buf - 8);
        int *ids = NULL, nid = 0;
        ked_span *sp = NULL;
        int special = (int)(ked_rng_u64(&r) & 1);
        if (ked_tokenizer_encode(t, buf, n, special, &ids, &sp, &nid, &err) != KED_OK) {
            CHECK(0, "%s: encode: %s", path, err.msg);
            continue;
        }
        for (int k = 0; k < nid; k++) {
            if (ids[k] < 0 || ids[k] >= ked_tokenizer_vocab_size(t) || sp[k].start > sp[k].end ||
                sp[k].end > n) {
                CHECK(0, "%s: token %d: id %d span [%zu, %zu) of %zu", path, k, ids[k], sp[k].start,
                      sp[k].end, n);
                break;
            }
        }
        char *text = NULL;
        size_t tl = 0;
        CHECK_OK(ked_tokenizer_decode_len(t, ids, nid, 0, &text, &tl, &err), &err);
        if (byte_level) {
            total++;
            if (text && tl == n && memcmp(text, buf, n) == 0) round++;
        }
        ked_detok *d = NULL;
        CHECK_OK(ked_detok_new(t, &d, &err), &err);
        for (int k = 0; k <= nid && d; k++) {
            char *piece = NULL;
            ked_status st = k < nid ? ked_detok_push(d, ids[k], &piece, &err)
                                    : ked_detok_flush(d, &piece, &err);
            CHECK(st == KED_OK && piece && valid_utf8(piece), "%s: streaming piece", path);
            free(piece);
        }
        ked_detok_free(d);
        free(text);
        free(ids);
        free(sp);
    }
    if (byte_level) {
        printf("%-50s byte-level round trip of random bytes: %d / %d\n", path, round, total);
        CHECK(round == total, "%s: %d random strings do not round-trip", path, total - round);
    } else {
        printf("%-50s %d random strings encoded and decoded\n", path, iters);
    }
    ked_tokenizer_free(t);
}

// load mutated copies of a tokenizer file: an error or a working tokenizer, never a crash
static void fuzz_loader(const char *src, const char *name, int iters, uint64_t seed) {
    size_t n;
    char *orig;
    ked_error err;
    if (ked_read_file(src, &orig, &n, &err) != KED_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    char dir[] = "/tmp/ked_tok_fuzzXXXXXX";
    if (!mkdtemp(dir)) {
        free(orig);
        CHECK(0, "mkdtemp");
        return;
    }
    char *path = ked_path_join(dir, name);
    char *buf = malloc(n + 1);
    ked_rng r;
    ked_rng_seed(&r, seed);
    int loaded = 0;
    for (int it = 0; it < iters; it++) {
        memcpy(buf, orig, n);
        size_t len = n;
        int kind = (int)(ked_rng_u64(&r) % 3);
        if (kind == 0) len = ked_rng_u64(&r) % n; // truncated
        int flips = kind == 1 ? 1 + (int)(ked_rng_u64(&r) % 8) : 1;
        for (int f = 0; f < flips && len; f++) { // bytes changed
            size_t at = ked_rng_u64(&r) % len;
            const char *pick = "{}[]\",:0123456789-. tfnabx\\";
            buf[at] =
                kind == 2 ? pick[ked_rng_u64(&r) % strlen(pick)] : (char)(ked_rng_u64(&r) & 0xFF);
        }
        if (ked_write_file_atomic(path, buf, len, &err) != KED_OK) {
            CHECK(0, "%s", err.msg);
            break;
        }
        ked_tokenizer *t = NULL;
        if (ked_tokenizer_load(path, &t, &err) == KED_OK) {
            loaded++;
            int *ids = NULL, nid = 0;
            ked_span *sp = NULL;
            const char *s = "Hello world, <s> once upon a time \xe6\x97\xa5\xff";
            if (ked_tokenizer_encode(t, s, strlen(s), 1, &ids, &sp, &nid, &err) == KED_OK) {
                char *text = NULL;
                if (ked_tokenizer_decode(t, ids, nid, 0, &text, &err) == KED_OK) free(text);
                free(ids);
                free(sp);
            }
            ked_tokenizer_free(t);
        } else {
            CHECK(t == NULL && err.msg[0], "%s: failure without a message", name);
        }
    }
    printf("%-50s %d mutated files: %d loaded, %d rejected with a message\n", name, iters, loaded,
           iters - loaded);
    remove(path);
    rmdir(dir);
    free(path);
    free(buf);
    free(orig);
}

// encode from several threads at once (the byte-level word cache is shared): same ids as alone
#define N_THREADS 4
#define N_STR 400
typedef struct {
    ked_tokenizer *t;
    char **s;
    size_t *len;
    int **ids, *n;
    int bad;
} job;

static void *encode_all(void *arg) {
    job *j = arg;
    ked_error err;
    for (int i = 0; i < N_STR; i++) {
        int *ids = NULL, n = 0;
        if (ked_tokenizer_encode(j->t, j->s[i], j->len[i], 1, &ids, NULL, &n, &err) != KED_OK ||
            n != j->n[i] || (n && memcmp(ids, j->ids[i], sizeof(int) * (size_t)n) != 0))
            j->bad++;
        free(ids);
    }
    return NULL;
}

static void threads(const char *path) {
    ked_tokenizer *t = NULL;
    ked_error err;
    CHECK_OK(ked_tokenizer_load(path, &t, &err), &err);
    if (!t) return;
    ked_rng r;
    ked_rng_seed(&r, 99);
    char *s[N_STR];
    size_t len[N_STR];
    int *ids[N_STR], n[N_STR];
    char buf[1024];
    for (int i = 0; i < N_STR; i++) {
        len[i] = random_text(&r, buf, sizeof buf - 8);
        s[i] = malloc(len[i] + 1);
        memcpy(s[i], buf, len[i]);
        CHECK_OK(ked_tokenizer_encode(t, s[i], len[i], 1, &ids[i], NULL, &n[i], &err), &err);
    }
    ked_tokenizer_free(t); // a fresh tokenizer: the threads fill its cache together
    t = NULL;
    CHECK_OK(ked_tokenizer_load(path, &t, &err), &err);
    job jobs[N_THREADS];
    pthread_t th[N_THREADS];
    for (int k = 0; k < N_THREADS; k++) {
        jobs[k] = (job){t, s, len, ids, n, 0};
        pthread_create(&th[k], NULL, encode_all, &jobs[k]);
    }
    int bad = 0;
    for (int k = 0; k < N_THREADS; k++) {
        pthread_join(th[k], NULL);
        bad += jobs[k].bad;
    }
    printf("%-50s %d threads x %d strings: %d differ from one thread\n", path, N_THREADS, N_STR,
           bad);
    CHECK(bad == 0, "%s: %d encodings differ under threads", path, bad);
    for (int i = 0; i < N_STR; i++) {
        free(s[i]);
        free(ids[i]);
    }
    ked_tokenizer_free(t);
}

// the cut of SentencePiece-style words before U+2581 (split_meta, a speed-up) gives the same ids
// as BPE over the whole word, on random text heavy in spaces and U+2581
static void split_meta_same(const char *path, uint64_t seed) {
    ked_tokenizer *a = NULL, *b = NULL;
    ked_error err;
    CHECK_OK(ked_tokenizer_load(path, &a, &err), &err);
    CHECK_OK(ked_tokenizer_load(path, &b, &err), &err);
    if (!a || !b) {
        ked_tokenizer_free(a);
        ked_tokenizer_free(b);
        return;
    }
    CHECK(a->split_meta == 1, "%s: expected the U+2581 cut to be on", path);
    b->split_meta = 0;
    ked_rng r;
    ked_rng_seed(&r, seed);
    char buf[1024];
    int same = 0, total = 600;
    for (int i = 0; i < total; i++) {
        size_t n = random_text(&r, buf, sizeof buf - 8);
        for (size_t k = 0; k < n; k++)
            if (ked_rng_u64(&r) % 4 == 0 && (unsigned char)buf[k] < 0x80) buf[k] = ' ';
        int *x = NULL, *y = NULL, nx = 0, ny = 0;
        CHECK_OK(ked_tokenizer_encode(a, buf, n, 1, &x, NULL, &nx, &err), &err);
        CHECK_OK(ked_tokenizer_encode(b, buf, n, 1, &y, NULL, &ny, &err), &err);
        same += nx == ny && (nx == 0 || memcmp(x, y, sizeof(int) * (size_t)nx) == 0);
        free(x);
        free(y);
    }
    printf("%-50s word cut before U+2581: %d / %d same ids as whole words\n", path, same, total);
    CHECK(same == total, "%s: the U+2581 cut changes ids", path);
    ked_tokenizer_free(a);
    ked_tokenizer_free(b);
}

int main(void) {
    fuzz_encode(D "gpt2", 1, 1500, 1);
    fuzz_encode(D "gpt2-llama3style/tokenizer.json", 0, 500, 2);
    fuzz_encode(D "vicuna-llama", 0, 1000, 3);
    fuzz_encode(D "tinystories-656k", 0, 500, 4);
    fuzz_encode(D "stories260k/tok512.bin", 0, 1000, 5);
    split_meta_same(D "vicuna-llama", 8);
    threads(D "gpt2");
    threads(D "vicuna-llama");
    fuzz_loader(D "tinystories-656k/tokenizer.json", "tokenizer.json", 150, 6);
    fuzz_loader(D "stories260k/tok512.bin", "tokenizer.bin", 300, 7);
    return test_finish("test_tokenizer_fuzz");
}
