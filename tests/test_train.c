// test_train.c: the trainer and the BPE trainer.
//  - BPE: retraining on tests/data/tokenizer/corpus.txt gives tests/data/train/bpe_tokenizer.json
//    byte for byte; ked encodes every corpus line with it as @lenml/tokenizers does
//    (tests/ref/tok_train_ref.sh); decode(encode(text)) == text;
//  - a fresh tiny LLaMA (random init written as an HF directory) loads and trains: the loss falls;
//  - a run stopped at a checkpoint and resumed gives the uninterrupted run's loss curve and final
//    weights bitwise; checkpoints are loadable HF directories.
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ked.h"
#include "test.h"
#include "test_tokenizer_corpus.h"

#define MAX_STEPS 64

typedef struct { float loss[MAX_STEPS + 1]; int seen[MAX_STEPS + 1]; } curve;

static void record(const ked_train_progress *p, void *user) {
    curve *c = user;
    if (isnan(p->eval_loss) && p->step <= MAX_STEPS) { c->loss[p->step] = p->loss; c->seen[p->step] = 1; }
}

static void rm_rf(const char *path) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

static int same_file(const char *a, const char *b) {
    size_t la, lb;
    char *x = tc_read_all(a, &la), *y = tc_read_all(b, &lb);
    int same = x && y && la == lb && !memcmp(x, y, la);
    free(x); free(y);
    return same;
}

static void test_bpe(const char *tmp) {
    ked_error err;
    const char *files[] = {"tests/data/tokenizer/corpus.txt"};
    ked_bpe_opts o = ked_bpe_defaults();
    o.vocab_size = 1000;
    char out[512];
    snprintf(out, sizeof out, "%s/bpe/tokenizer.json", tmp);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bpe", tmp);
    mkdir(dir, 0777);
    CHECK_OK(ked_bpe_train(files, 1, &o, out, &err), &err);
    CHECK(same_file(out, "tests/data/train/bpe_tokenizer.json"),
          "retrained tokenizer differs from tests/data/train/bpe_tokenizer.json");
    ked_tokenizer *tok = NULL;
    CHECK_OK(ked_tokenizer_load("tests/data/train/bpe_tokenizer.json", &tok, &err), &err);
    if (!tok) return;
    CHECK(ked_tokenizer_vocab_size(tok) == 1000, "vocab %d", ked_tokenizer_vocab_size(tok));
    tc_corpus c;
    tc_ids ref;
    if (tc_load_corpus("tests/data/tokenizer/corpus.txt", &c) || tc_load_ids("tests/data/train/bpe_corpus_ids.txt", &ref)) {
        CHECK(0, "cannot read the corpus or its reference ids");
        ked_tokenizer_free(tok);
        return;
    }
    CHECK(c.n == ref.n, "corpus %d lines, reference %d", c.n, ref.n);
    int bad = 0, bad_rt = 0;
    for (int i = 0; i < c.n && i < ref.n; i++) {
        int *ids = NULL, n = 0;
        if (ked_tokenizer_encode(tok, c.s[i], c.len[i], 0, &ids, NULL, &n, &err)) { bad++; continue; }
        if (!tc_same(ids, n, ref.ids[i], ref.n_ids[i])) {
            if (bad++ < 3) { fprintf(stderr, "line %d:\n", i + 1); tc_print_ids("ked", ids, n); tc_print_ids("ref", ref.ids[i], ref.n_ids[i]); }
        }
        char *text = NULL;
        size_t len = 0;
        if (ked_tokenizer_decode_len(tok, ids, n, 0, &text, &len, &err) || len != c.len[i] ||
            memcmp(text, c.s[i], len))
            bad_rt++;
        free(text);
        free(ids);
    }
    CHECK(bad == 0, "%d of %d lines encode differently from @lenml/tokenizers", bad, c.n);
    CHECK(bad_rt == 0, "%d of %d lines do not round-trip", bad_rt, c.n);
    tc_free_corpus(&c);
    tc_free_ids(&ref);
    ked_tokenizer_free(tok);
}

// a small corpus of facts and sentences for the tiny model
static void write_corpus(const char *path) {
    FILE *f = fopen(path, "w");
    static const char *subj[] = {"Paris", "Rome", "Berlin", "Madrid", "Lisbon", "Vienna", "Oslo", "Athens"};
    static const char *ctry[] = {"France", "Italy", "Germany", "Spain", "Portugal", "Austria", "Norway", "Greece"};
    for (int r = 0; r < 12; r++)
        for (int i = 0; i < 8; i++) {
            fprintf(f, "%s is the capital of %s. The capital of %s is %s.\n", subj[i], ctry[i], ctry[i], subj[i]);
            if (r % 3 == 0) fprintf(f, "{\"not\": \"json here\"} line %d of the corpus, number %d.\r\n", r, i);
        }
    fclose(f);
}

static ked_train_opts tiny_opts(const char *model, const char *tok, const char *data, const char *out,
                                curve *c) {
    ked_train_opts o = ked_train_defaults();
    o.model = model; o.tokenizer = tok; o.data = data; o.out_dir = out;
    o.batch = 4; o.seq = 32; o.steps = 24; o.warmup = 4; o.lr = 3e-3f; o.min_lr = 3e-4f;
    o.eval_frac = 0.1f; o.eval_every = 8; o.eval_batches = 1; o.ckpt_every = 5; o.keep = 2;
    o.seed = 7; o.progress_every = 1; o.on_progress = record; o.user = c;
    return o;
}

static void test_train(const char *tmp) {
    ked_error err;
    char tokdir[512], tok[512], data[512], init[512], a[512], b[512], path[600], path2[600];
    snprintf(tokdir, sizeof tokdir, "%s/tok", tmp);
    snprintf(tok, sizeof tok, "%s/tok/tokenizer.json", tmp);
    snprintf(data, sizeof data, "%s/corpus.txt", tmp);
    snprintf(init, sizeof init, "%s/init", tmp);
    snprintf(a, sizeof a, "%s/run_a", tmp);
    snprintf(b, sizeof b, "%s/run_b", tmp);
    mkdir(tokdir, 0777);
    write_corpus(data);
    const char *files[] = {data};
    ked_bpe_opts bo = ked_bpe_defaults();
    bo.vocab_size = 320;
    CHECK_OK(ked_bpe_train(files, 1, &bo, tok, &err), &err);

    ked_init_opts io = ked_init_defaults();
    io.n_layer = 2; io.d_model = 32; io.n_head = 4; io.n_kv_head = 2; io.d_ff = 64; io.vocab = 320;
    io.max_pos = 64; io.seed = 3;
    CHECK_OK(ked_model_init_write(init, &io, &err), &err);
    ked_model *m = NULL;
    CHECK_OK(ked_model_load(init, &m, &err), &err);
    if (!m) return;
    CHECK(ked_model_config(m)->n_kv_head == 2 && ked_model_config(m)->tied_head == 1, "config read back");
    int64_t shape[2];
    CHECK(ked_model_tensor_shape(m, "model.layers.1.mlp.down_proj.weight", shape) == 2 && shape[0] == 32 &&
          shape[1] == 64, "down_proj shape");
    float *norm = malloc(32 * sizeof(float)), *emb = malloc(320 * 32 * sizeof(float));
    CHECK_OK(ked_model_tensor_read(m, "model.norm.weight", 0, norm, &err), &err);
    CHECK_OK(ked_model_tensor_read(m, "model.embed_tokens.weight", 0, emb, &err), &err);
    double s = 0, s2 = 0;
    for (int i = 0; i < 320 * 32; i++) { s += emb[i]; s2 += (double)emb[i] * emb[i]; }
    double sd = sqrt(s2 / (320 * 32) - (s / (320 * 32)) * (s / (320 * 32)));
    CHECK(norm[0] == 1.0f && norm[31] == 1.0f, "norms start at 1");
    CHECK(fabs(sd - 0.02) < 0.002, "embedding std %g, expected 0.02", sd);
    free(norm); free(emb);
    ked_model_free(m);

    // the uninterrupted run
    curve ca = {0}, cb = {0};
    ked_train_opts oa = tiny_opts(init, tok, data, a, &ca);
    CHECK_OK(ked_train(&oa, &err), &err);
    int all = 1;
    for (int i = 1; i <= 24; i++) all &= ca.seen[i];
    CHECK(all, "every step reported");
    float first = (ca.loss[1] + ca.loss[2] + ca.loss[3]) / 3, last = (ca.loss[22] + ca.loss[23] + ca.loss[24]) / 3;
    CHECK(last < first - 1.0f, "loss falls: first steps %.4f, last steps %.4f", first, last);
    // the interrupted run: stop after step 12 (checkpoint), then resume to the end
    ked_train_opts ob = tiny_opts(init, tok, data, b, &cb);
    ob.stop_at = 12;
    CHECK_OK(ked_train(&ob, &err), &err);
    CHECK(cb.seen[12] && !cb.seen[13], "stopped at 12");
    snprintf(path, sizeof path, "%s/checkpoint-12", b);
    ked_model *mc = NULL;
    CHECK_OK(ked_model_load(path, &mc, &err), &err); // a checkpoint is an HF directory
    ked_model_free(mc);
    ob.stop_at = 0;
    memset(cb.seen, 0, sizeof cb.seen);
    CHECK_OK(ked_train(&ob, &err), &err);
    CHECK(!cb.seen[12] && cb.seen[13] && cb.seen[24], "resumed at 13");
    int same = 1;
    for (int i = 13; i <= 24; i++)
        if (memcmp(&ca.loss[i], &cb.loss[i], sizeof(float))) {
            same = 0;
            fprintf(stderr, "step %d: uninterrupted %.9g, resumed %.9g\n", i, (double)ca.loss[i], (double)cb.loss[i]);
        }
    CHECK(same, "the resumed run's losses equal the uninterrupted run's bitwise");
    snprintf(path, sizeof path, "%s/checkpoint-24/model.safetensors", a);
    snprintf(path2, sizeof path2, "%s/checkpoint-24/model.safetensors", b);
    CHECK(same_file(path, path2), "final weights identical");
    snprintf(path, sizeof path, "%s/checkpoint-24/optimizer.safetensors", a);
    snprintf(path2, sizeof path2, "%s/checkpoint-24/optimizer.safetensors", b);
    CHECK(same_file(path, path2), "final optimizer state identical");
    snprintf(path, sizeof path, "%s/checkpoint-15", a); // keep = 2: 20 and 24 remain
    CHECK(access(path, F_OK) != 0, "old checkpoints removed");
    // a resumed run with another shape is refused, naming the field
    ob.batch = 2;
    CHECK(ked_train(&ob, &err) == KED_ERR_ARG && strstr(err.msg, "batch"), "shape change refused: %s", err.msg);
    // bad arguments
    ked_train_opts bad = tiny_opts(init, tok, data, a, &ca);
    bad.lr = -1;
    CHECK(ked_train(&bad, &err) == KED_ERR_ARG, "negative lr refused");
    ked_init_opts bi = io;
    bi.n_head = 5;
    CHECK(ked_model_init_write(init, &bi, &err) == KED_ERR_ARG && strstr(err.msg, "n_head"), "%s", err.msg);
}

int main(void) {
    ked_set_threads(2);
    char tmp[] = "/tmp/ked_test_train.XXXXXX";
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    test_bpe(tmp);
    test_train(tmp);
    rm_rf(tmp);
    return test_finish("test_train");
}
