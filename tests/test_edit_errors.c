// test_edit_errors.c: bad input to the editing API is an error naming what is wrong, never a
// crash: requests (no subject in the prompt, empty target, a template without "{}"), patch files
// (not a patch, truncated, for another model, a tensor of the wrong shape), edited directories
// (a malformed edits.json, a missing patch), the editor's list (unknown ids, double reverts),
// hyperparameters (unknown method, a YAML syntax error, a non-numeric field, an unknown alg_name).
#include "test.h"

#include "ked.h"
#include "edit/edit.h"
#include "io/safetensors.h"

static ked_model *m;
static ked_tokenizer *tok;

#define EXPECT_FAIL(expr, want_st, needle)                                                    \
    do {                                                                                    \
        ked_error e_;                                                                       \
        memset(&e_, 0, sizeof e_);                                                          \
        ked_error *err = &e_;                                                               \
        ked_status s_ = (expr);                                                             \
        CHECK(s_ == (want_st) && strstr(e_.msg, needle), "%s: status %d, message '%s' "     \
              "(expected %d and '%s')", #expr, (int)s_, e_.msg, (int)(want_st), needle);     \
        if (s_ == (want_st)) printf("  ok: %s\n", e_.msg);                                  \
    } while (0)

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) { fputs(text, f); fclose(f); }
}

static void requests(void) {
    ked_hparams hp;
    ked_error e;
    CHECK_OK(ked_hparams_defaults(m, "rome", &hp, &e), &e);
    hp.v_num_grad_steps = 2;
    ked_patch *p = NULL;
    ked_request req = {0};
    req.prompt = "Once upon a time";
    req.subject = "dragon";
    req.target_new = " Sue";
    const char *tmpl[1] = {"{}"};
    ked_edit_opts o = ked_edit_defaults();
    o.templates = tmpl;
    o.n_templates = 1;
    EXPECT_FAIL(ked_edit(m, tok, &hp, &req, &o, &p, NULL, err), KED_ERR_ARG, "not in the prompt");
    req.subject = "time";
    req.target_new = "";
    EXPECT_FAIL(ked_edit(m, tok, &hp, &req, &o, &p, NULL, err), KED_ERR_ARG, "required");
    req.target_new = " Sue";
    const char *bad[2] = {"{}", "no placeholder"};
    o.templates = bad;
    o.n_templates = 2;
    EXPECT_FAIL(ked_edit(m, tok, &hp, &req, &o, &p, NULL, err), KED_ERR_ARG, "template 1");
    o.templates = tmpl;
    o.n_templates = 1;
    snprintf(hp.method, sizeof hp.method, "grace");
    EXPECT_FAIL(ked_edit(m, tok, &hp, &req, &o, &p, NULL, err), KED_ERR_ARG, "unknown editing method");
    CHECK(p == NULL, "a failed edit returned a patch");
    CHECK_OK(ked_hparams_defaults(m, "rome", &hp, &e), &e);
    hp.layers[0] = 7;
    EXPECT_FAIL(ked_edit(m, tok, &hp, &req, &o, &p, NULL, err), KED_ERR_ARG, "layer 7");
    CHECK_OK(ked_hparams_defaults(m, "rome", &hp, &e), &e);
    hp.mom2_adjustment = 1; // no statistics cached, no corpus: names mom2_dataset and the option
    ked_stats_opts so = ked_stats_defaults();
    so.cache_dir = "build/tests/edit_errors_empty_cache";
    o.stats = &so;
    EXPECT_FAIL(ked_edit(m, tok, &hp, &req, &o, &p, NULL, err), KED_ERR_ARG, "--stats-corpus");
    {
        ked_error e2;
        ked_status s2 = ked_edit(m, tok, &hp, &req, &o, &p, NULL, &e2);
        CHECK(s2 == KED_ERR_ARG && strstr(e2.msg, "mom2_dataset 'wikipedia'"), "%s", e2.msg);
    }
    CHECK_OK(ked_hparams_defaults(m, "memit", &hp, &e), &e);
    EXPECT_FAIL(ked_edit(m, tok, &hp, &req, &o, &p, NULL, err), KED_ERR_ARG, "--stats-corpus");
    o.stats = NULL;
    EXPECT_FAIL(ked_hparams_defaults(m, "nope", &hp, err), KED_ERR_ARG, "unknown editing method");
}

static void hparams_files(void) {
    ked_hparams hp;
    write_text("build/tests/edit_bad1.yaml", "alg_name: \"ROME\"\nlayers: [1\nv_lr: 0.5\n");
    EXPECT_FAIL(ked_hparams_load(m, "build/tests/edit_bad1.yaml", NULL, &hp, err), KED_ERR_FORMAT,
                "edit_bad1.yaml: line");
    write_text("build/tests/edit_bad2.yaml", "alg_name: \"GRACE\"\nlayers: [1]\n");
    EXPECT_FAIL(ked_hparams_load(m, "build/tests/edit_bad2.yaml", NULL, &hp, err),
                KED_ERR_UNSUPPORTED, "alg_name 'GRACE'");
    write_text("build/tests/edit_bad3.yaml",
               "alg_name: ROME\nlayers: [1]\nfact_token: subject_last\nv_num_grad_steps: many\n");
    EXPECT_FAIL(ked_hparams_load(m, "build/tests/edit_bad3.yaml", NULL, &hp, err), KED_ERR_FORMAT,
                "'v_num_grad_steps' must be a number");
    write_text("build/tests/edit_bad4.yaml", "alg_name: FT\nlayers: [1]\nnum_steps: 3\n");
    EXPECT_FAIL(ked_hparams_load(m, "build/tests/edit_bad4.yaml", NULL, &hp, err), KED_ERR_FORMAT,
                "missing field 'lr'");
    write_text("build/tests/edit_bad5.yaml", "- just\n- a list\n");
    EXPECT_FAIL(ked_hparams_load(m, "build/tests/edit_bad5.yaml", NULL, &hp, err), KED_ERR_FORMAT,
                "edit_bad5.yaml");
    write_text("build/tests/edit_bad6.yaml", "alg_name: ROME\nlayers: [1]\nfact_token: subject_middle\n");
    EXPECT_FAIL(ked_hparams_load(m, "build/tests/edit_bad6.yaml", NULL, &hp, err),
                KED_ERR_FORMAT, "fact_token 'subject_middle'");
}

static void patch_files(void) {
    ked_patch *p = NULL;
    // not a patch: a model file
    EXPECT_FAIL(ked_patch_load(m, "tests/data/tiny-llama/model.safetensors", &p, err),
                KED_ERR_FORMAT, "not a ked patch");
    // a real patch, then damaged copies of it
    ked_error e;
    CHECK_OK(patch_new("rome", &p, &e), &e);
    int C = ked_model_config(m)->d_model, F = ked_model_config(m)->d_ff;
    float *a = calloc((size_t)C, sizeof(float)), *b = calloc((size_t)F, sizeof(float));
    a[0] = 1;
    b[0] = 1;
    CHECK_OK(patch_add_lowrank(p, m, 1, P_WDOWN, 1, a, b, &e), &e);
    EXPECT_FAIL(patch_add_lowrank(p, m, 1, P_WDOWN, 1, a, b, err), KED_ERR_ARG, "twice");
    EXPECT_FAIL(patch_add_dense(p, m, 9, P_WDOWN, a, err), KED_ERR_ARG, "slot");
    CHECK_OK(ked_patch_save(p, m, "build/tests/edit_ok.safetensors", &e), &e);
    ked_patch_free(p);
    p = NULL;
    free(a);
    free(b);
    char *data = NULL;
    size_t len = 0;
    CHECK_OK(ked_read_file("build/tests/edit_ok.safetensors", &data, &len, &e), &e);
    if (data) {
        for (size_t cut = 0; cut < len; cut += len / 7 + 1) { // truncated anywhere
            CHECK_OK(ked_write_file_atomic("build/tests/edit_cut.safetensors", data, cut, &e), &e);
            ked_status st = ked_patch_load(m, "build/tests/edit_cut.safetensors", &p, &e);
            CHECK(st != KED_OK && p == NULL, "a patch truncated at %zu bytes loaded", cut);
        }
        free(data);
    }
    // the patch against another model (tiny-llama: other shapes, no layer 1 down_proj of that size)
    ked_model *other = NULL;
    CHECK_OK(ked_model_load("tests/data/tiny-llama", &other, &e), &e);
    if (other) {
        EXPECT_FAIL(ked_patch_load(other, "build/tests/edit_ok.safetensors", &p, err), KED_ERR_FORMAT,
                    "should be");
        ked_model_free(other);
    }
    // a patch naming a tensor the model does not have
    float x[4] = {0};
    st_write_tensor t = {"model.layers.9.mlp.down_proj.weight.delta", KED_F32, 2, {2, 2}, x};
    const char *k[3] = {"format", "method", "tensors"};
    const char *v[3] = {"ked-patch", "ft-m", "model.layers.9.mlp.down_proj.weight"};
    CHECK_OK(st_write("build/tests/edit_alien.safetensors", &t, 1, k, v, 3, &e), &e);
    EXPECT_FAIL(ked_patch_load(m, "build/tests/edit_alien.safetensors", &p, err), KED_ERR_FORMAT,
                "is not a tensor of");
}

static void editor_and_dirs(void) {
    ked_editor *ed = NULL;
    ked_error e;
    CHECK_OK(ked_editor_new(m, &ed, &e), &e);
    EXPECT_FAIL(ked_editor_revert(ed, 0, err), KED_ERR_ARG, "no patch 0");
    ked_patch *p = NULL;
    CHECK_OK(ked_patch_load(m, "build/tests/edit_ok.safetensors", &p, &e), &e);
    if (p) CHECK_OK(ked_editor_apply(ed, p, NULL, &e), &e);
    EXPECT_FAIL(ked_editor_reapply(ed, 0, err), KED_ERR_ARG, "already applied");
    CHECK_OK(ked_editor_save_dir(ed, "build/tests/edit_dir_err", &e), &e);
    EXPECT_FAIL(ked_editor_save_dir(ed, "models/stories260K", err), KED_ERR_ARG, "base model's own");
    ked_editor_free(ed);
    ed = NULL;
    ked_model *bm = NULL;
    write_text("build/tests/edit_dir_err/edits.json", "{\"format\": \"ked-edits\", ");
    EXPECT_FAIL(ked_editor_open_dir("build/tests/edit_dir_err", &bm, &ed, err), KED_ERR_FORMAT,
                "edits.json: line");
    write_text("build/tests/edit_dir_err/edits.json", "{\"format\": \"something else\"}");
    EXPECT_FAIL(ked_editor_open_dir("build/tests/edit_dir_err", &bm, &ed, err), KED_ERR_FORMAT,
                "not a ked edit record");
    CHECK(bm == NULL && ed == NULL, "outputs were set on failure");
    CHECK(!ked_edit_dir_is("tests/data/tiny-llama"), "tiny-llama is not an edited directory");
}

int main(void) {
    ked_set_threads(1);
    ked_error e;
    if (ked_model_load("models/stories260K", &m, &e) ||
        ked_tokenizer_load("models/stories260K/tok512.bin", &tok, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    requests();
    hparams_files();
    patch_files();
    editor_and_dirs();
    ked_tokenizer_free(tok);
    ked_model_free(m);
    return test_finish("test_edit_errors");
}
