// test_tinystories.c: real pretrained models generate what their references say (design.md §6).
//
//  - TinyStories-656K (Hugging Face format, tied through a __metadata__ alias): for each prompt of
//    tests/data/tinystories-656k-greedy.json (written by tests/ref/make_tinystories_fixture.py
//    from the PyTorch reference), greedy ked_generate reproduces greedy_ids exactly. The ids come
//    from the fixture, so this part needs no tokenizer.
//  - stories260K (llama2.c checkpoint): the greedy story its author documents in
//    models/stories260K/README.md (`./run stories260K.bin -z tok512.bin -t 0.0`). As llama2.c's
//    run.c does: encode "Once upon a time" with BOS (id 1) through tok512.bin, generate greedily
//    stopping at a BOS, up to 256 steps (the sequence holds BOS + 256 tokens, prompt included),
//    decode everything after the BOS, and compare with the documented text as far as both go
//    (the shorter of the two is a prefix of the other).
#include "test.h"

#include <jansson.h>

#include "ked.h"

static void tinystories_656k(void) {
    printf("== TinyStories-656K: greedy ids vs the PyTorch reference\n");
    ked_error err;
    ked_model *m = NULL;
    CHECK_OK(ked_model_load("models/TinyStories-656K", &m, &err), &err);
    json_error_t je;
    json_t *fx = json_load_file("tests/data/tinystories-656k-greedy.json", 0, &je);
    CHECK(json_is_array(fx) && json_array_size(fx) == 3,
          "tests/data/tinystories-656k-greedy.json: %s", fx ? "expected 3 prompts" : je.text);
    if (!m || !json_is_array(fx)) {
        ked_model_free(m);
        json_decref(fx);
        return;
    }
    size_t i;
    json_t *e;
    json_array_foreach(fx, i, e) {
        json_t *pj = json_object_get(e, "prompt_ids"), *gj = json_object_get(e, "greedy_ids");
        int np = (int)json_array_size(pj), ng = (int)json_array_size(gj);
        CHECK(np > 0 && ng > 0, "prompt %zu: no prompt_ids / greedy_ids", i);
        if (np <= 0 || ng <= 0) continue;
        int *prompt = malloc(sizeof(int) * (size_t)np), *want = malloc(sizeof(int) * (size_t)ng);
        int *out = malloc(sizeof(int) * (size_t)(np + ng));
        for (int k = 0; k < np; k++)
            prompt[k] = (int)json_integer_value(json_array_get(pj, (size_t)k));
        for (int k = 0; k < ng; k++)
            want[k] = (int)json_integer_value(json_array_get(gj, (size_t)k));
        ked_generate_opts o = ked_generate_defaults();
        o.temperature = 0;
        o.stop_at_eos = 0;
        o.max_new = ng;
        int n_out = 0;
        CHECK_OK(ked_generate(m, prompt, np, &o, out, np + ng, &n_out, NULL, NULL, &err), &err);
        CHECK(n_out == np + ng, "prompt %zu: %d ids out, want %d", i, n_out, np + ng);
        int first_diff = -1;
        for (int k = 0; k < ng && np + k < n_out; k++)
            if (out[np + k] != want[k]) { first_diff = k; break; }
        CHECK(first_diff < 0, "prompt %zu (\"%s\"): new token %d is %d, the reference has %d", i,
              json_string_value(json_object_get(e, "prompt")), first_diff,
              first_diff >= 0 ? out[np + first_diff] : 0, first_diff >= 0 ? want[first_diff] : 0);
        CHECK(!memcmp(out, prompt, sizeof(int) * (size_t)np), "prompt %zu: prompt not echoed", i);
        printf("  prompt %zu: %d + %d ids, %s  \"%s\"\n", i, np, ng,
               first_diff < 0 && n_out == np + ng ? "identical" : "DIFFERENT",
               json_string_value(json_object_get(e, "prompt")));
        free(prompt); free(want); free(out);
    }
    json_decref(fx);
    ked_model_free(m);
}

// the documented story: the first ``` block of models/stories260K/README.md
static char *documented_story(void) {
    FILE *f = fopen("models/stories260K/README.md", "rb");
    if (!f) return NULL;
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *a = strstr(buf, "```\n");
    if (!a) return NULL;
    a += 4;
    char *b = strstr(a, "\n```");
    if (!b) return NULL;
    *b = 0; // the block's last newline is the fence's, not the story's
    return strdup(a);
}

static void stories260k(void) {
    printf("== stories260K: the author's documented greedy story\n");
    const int steps = 256; // llama2.c run.c's default -n
    ked_error err;
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    CHECK_OK(ked_model_load("models/stories260K", &m, &err), &err);
    CHECK_OK(ked_tokenizer_load("models/stories260K/tok512.bin", &tok, &err), &err);
    char *doc = documented_story();
    CHECK(doc != NULL, "models/stories260K/README.md: no ``` block with the story");
    if (!m || !tok || !doc) goto done;
    CHECK(ked_tokenizer_bos(tok) == 1, "tok512.bin BOS is %d, llama2.c uses 1",
          ked_tokenizer_bos(tok));

    const char *prompt = "Once upon a time";
    int *ids = NULL, n = 0;
    CHECK_OK(ked_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, NULL, &n, &err), &err);
    if (!ids || n < 2) { CHECK(0, "encode gave %d ids", n); free(ids); goto done; }
    CHECK(ids[0] == 1, "encode(add_special) starts with %d, not BOS 1", ids[0]);
    printf("  prompt ids:");
    for (int i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");

    // llama2.c: positions 0..steps-1 are fed, each yields the next token: BOS + steps tokens
    int total = 1 + steps, out[1 + 256], n_out = 0;
    ked_generate_opts o = ked_generate_defaults();
    o.temperature = 0;
    o.stop_at_eos = 1;  // stops at EOS (2) or BOS (1); llama2.c stops at BOS only (below)
    o.max_new = total - n;
    CHECK_OK(ked_generate(m, ids, n, &o, out, total, &n_out, NULL, NULL, &err), &err);
    if (n_out < total) // stopped early: llama2.c would have stopped only at a BOS
        printf("  generation stopped after %d of %d tokens\n", n_out, total);
    char *text = NULL;
    // decode everything after the BOS (run.c prints prompt and continuation, not the BOS)
    CHECK_OK(ked_tokenizer_decode(tok, out + 1, n_out - 1, 1, &text, &err), &err);
    if (!text) { free(ids); goto done; }
    const char *t = text;
    if (t[0] == ' ') t++; // SentencePiece's dummy prefix: run.c strips it after a BOS
    size_t lt = strlen(t), ld = strlen(doc), k = lt < ld ? lt : ld;
    size_t same = 0;
    while (same < k && t[same] == doc[same]) same++;
    printf("  %d tokens, %zu bytes generated; documented %zu bytes; first %zu bytes identical\n",
           n_out, lt, ld, same);
    CHECK(same == k, "stories260K greedy text differs from the documented story at byte %zu:\n"
          "  ked:        \"%.60s\"\n  documented: \"%.60s\"", same, t + same, doc + same);
    // as far as it goes must be far: a short or empty generation proves nothing
    CHECK(k >= ld * 9 / 10, "compared only %zu of the documented %zu bytes", k, ld);
    free(text);
    free(ids);
done:
    free(doc);
    ked_tokenizer_free(tok);
    ked_model_free(m);
}

int main(void) {
    tinystories_656k();
    stories260k();
    return test_finish("test_tinystories");
}
