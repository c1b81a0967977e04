// test_edit.c: end-to-end edits of a real model (models/stories260K, tokenizer tok512.bin):
// "Once upon a time, there was a little girl named" with subject "little girl" and target
// " Sue". ROME, R-ROME, FT-M and FT-L each (with ked's model-derived defaults, seeded context
// templates) must make the 12-token greedy continuation contain "Sue", while the argmax at every
// position of 50 unrelated prompts (tests/data/edit/locality_prompts.txt) agrees with the
// unedited model at >= 0.90 of positions. Reverting the patch gives back the base weights bit
// for bit. On the 2-layer TinyStories-656K (tokenizer.json), ROME and FT-M with the default
// hyperparameters also make the answer " Sue". Prints the figures.
#include "test.h"
#include "locality.h"

#include "ked.h"
#include "edit/edit.h"

#define MODEL "models/stories260K"
#define TOKENIZER "models/stories260K/tok512.bin"
static const char *prompt = "Once upon a time, there was a little girl named";

static ked_model *m;
static ked_tokenizer *tok;
static test_locality loc;

// greedy continuation of the prompt (12 tokens) as text
static char *greedy(void) {
    ked_error err;
    int *ids = NULL, n = 0, out[128], n_out = 0;
    CHECK_OK(ked_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, NULL, &n, &err), &err);
    ked_generate_opts o = ked_generate_defaults();
    o.max_new = 12;
    CHECK_OK(ked_generate(m, ids, n, &o, out, 128, &n_out, NULL, NULL, &err), &err);
    char *text = NULL;
    CHECK_OK(ked_tokenizer_decode(tok, out + n, n_out - n, 1, &text, &err), &err);
    free(ids);
    return text;
}

static void on_step(int step, float loss, void *user) {
    (void)user;
    if (step < 3 || step % 10 == 0) printf("      step %2d loss %.4f\n", step, loss);
}

static void edit_one(const char *method, const int *base_arg, const float *base_down) {
    ked_error err;
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(m, method, &hp, &err), &err);
    ked_request req = {0};
    req.prompt = prompt;
    req.subject = "little girl";
    req.target_new = " Sue";
    ked_edit_opts o = ked_edit_defaults();
    o.seed = 1;
    o.on_step = on_step;
    ked_patch *p = NULL;
    ked_edit_info info;
    printf("  %s (layer %d)\n", method, hp.layers[0]);
    CHECK_OK(ked_edit(m, tok, &hp, &req, &o, &p, &info, &err), &err);
    if (!p) return;
    ked_editor *ed = NULL;
    CHECK_OK(ked_editor_new(m, &ed, &err), &err);
    float acc0 = 0, acc1 = 0;
    CHECK_OK(ked_edit_token_accuracy(m, tok, prompt, " Sue", &acc0, NULL, NULL, &err), &err);
    CHECK_OK(ked_editor_apply(ed, p, NULL, &err), &err);
    CHECK_OK(ked_edit_token_accuracy(m, tok, prompt, " Sue", &acc1, NULL, NULL, &err), &err);
    char *after = greedy();
    int *arg = malloc(sizeof(int) * (size_t)loc.n * loc.T);
    test_locality_argmax(&loc, m, arg);
    float agree = test_locality_agreement(&loc, base_arg, arg);
    printf("    %d steps, final loss %.4f, %.3f s; rewrite acc %.2f -> %.2f; locality agreement "
           "%.4f\n    after: \"%s\"\n", info.n_steps, info.loss[info.n_steps - 1], info.seconds,
           acc0, acc1, agree, after);
    CHECK(strstr(after, "Sue") != NULL, "%s: the continuation lacks Sue: \"%s\"", method, after);
    CHECK(agree >= 0.90f, "%s: locality agreement %.4f < 0.90", method, agree);
    CHECK(acc1 == 1.0f, "%s: rewrite accuracy %.2f after the edit", method, acc1);
    // revert: the base weights, bit for bit
    CHECK_OK(ked_editor_revert(ed, 0, &err), &err);
    const ked_param *w = model_param(m, info.layer, P_WDOWN);
    CHECK(!memcmp(w->w, base_down + (size_t)info.layer * w->rows * w->cols,
                  sizeof(float) * (size_t)(w->rows * w->cols)), "%s: revert is not bit-exact", method);
    ked_editor_free(ed);
    free(after);
    free(arg);
}

// a 2-layer model with a tokenizer.json that merges across words (TinyStories-656K): the
// defaults still reach the target (ROME must edit layer 0, the only one that is not the last)
static void two_layer_model(void) {
    ked_error err;
    ked_model *m2 = NULL;
    ked_tokenizer *t2 = NULL;
    CHECK_OK(ked_model_load("models/TinyStories-656K", &m2, &err), &err);
    CHECK_OK(ked_tokenizer_load("models/TinyStories-656K", &t2, &err), &err);
    if (!m2 || !t2) { ked_model_free(m2); ked_tokenizer_free(t2); return; }
    printf("  TinyStories-656K\n");
    const char *methods[2] = {"rome", "ft-m"};
    for (int i = 0; i < 2; i++) {
        ked_hparams hp;
        CHECK_OK(ked_hparams_defaults(m2, methods[i], &hp, &err), &err);
        ked_request req = {0};
        req.prompt = prompt;
        req.subject = "little girl";
        req.target_new = " Sue";
        ked_edit_opts o = ked_edit_defaults();
        o.seed = 1;
        ked_patch *p = NULL;
        ked_edit_info info;
        CHECK_OK(ked_edit(m2, t2, &hp, &req, &o, &p, &info, &err), &err);
        if (!p) continue;
        ked_editor *ed = NULL;
        CHECK_OK(ked_editor_new(m2, &ed, &err), &err);
        CHECK_OK(ked_editor_apply(ed, p, NULL, &err), &err);
        float acc = 0;
        CHECK_OK(ked_edit_token_accuracy(m2, t2, prompt, " Sue", &acc, NULL, NULL, &err), &err);
        int *ids = NULL, n = 0, out[128], n_out = 0;
        char *text = NULL;
        CHECK_OK(ked_tokenizer_encode(t2, prompt, strlen(prompt), 1, &ids, NULL, &n, &err), &err);
        ked_generate_opts go = ked_generate_defaults();
        go.max_new = 12;
        CHECK_OK(ked_generate(m2, ids, n, &go, out, 128, &n_out, NULL, NULL, &err), &err);
        CHECK_OK(ked_tokenizer_decode(t2, out + n, n_out - n, 1, &text, &err), &err);
        printf("    %s layer %d: %d steps, loss %.4f -> %.4f, %.3f s; rewrite acc %.2f; \"%s\"\n",
               methods[i], info.layer, info.n_steps, info.loss[0], info.loss[info.n_steps - 1],
               info.seconds, acc, text ? text : "");
        CHECK(text && strstr(text, "Sue"), "%s on TinyStories-656K: no Sue in \"%s\"", methods[i], text);
        CHECK(acc == 1.0f, "%s on TinyStories-656K: rewrite accuracy %.2f", methods[i], acc);
        free(ids);
        free(text);
        ked_editor_free(ed);
    }
    ked_tokenizer_free(t2);
    ked_model_free(m2);
}

int main(void) {
    ked_set_threads(1); // a tiny model: one thread is fastest (no pool to wake)
    ked_error err;
    if (ked_model_load(MODEL, &m, &err) || ked_tokenizer_load(TOKENIZER, &tok, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    test_locality_read(&loc, tok);
    CHECK(loc.n == 50, "%d locality prompts", loc.n);
    const ked_config *c = ked_model_config(m);
    int64_t per = (int64_t)c->d_model * c->d_ff;
    float *base_down = malloc(sizeof(float) * (size_t)(per * c->n_layer));
    for (int l = 0; l < c->n_layer; l++)
        memcpy(base_down + l * per, model_param(m, l, P_WDOWN)->w, sizeof(float) * (size_t)per);
    char *before = greedy();
    printf("  before: \"%s\"\n", before);
    CHECK(strstr(before, "Sue") == NULL, "the unedited model already says Sue");
    int *base_arg = malloc(sizeof(int) * (size_t)loc.n * loc.T);
    test_locality_argmax(&loc, m, base_arg);
    const char *methods[] = {"rome", "r-rome", "ft-m", "ft-l"};
    for (int i = 0; i < 4; i++) edit_one(methods[i], base_arg, base_down);
    two_layer_model();
    free(before);
    free(base_arg);
    free(base_down);
    test_locality_free(&loc);
    ked_tokenizer_free(tok);
    ked_model_free(m);
    return test_finish("test_edit");
}
