// test_edit_patch.c: patches and the editor on models/stories260K: twenty sequential ROME edits
// then rolling all back give the base weights bit for bit; reverting the tenth and re-applying
// it gives the weights of before, bit for bit; a patch written to a file and read back is the
// same patch; freeing the editor gives the model its loaded buffers back; an edited directory
// loads as a plain model and, through its record, reverts bit-exactly. Also: the v*
// optimisation with the layers below the edit cached equals the one recomputing them; split into
// one run per request by edit_vstar_all's budget it equals one run (MEMIT's z, PMET's zs);
// EasyEdit YAML files load (values, module templates) or fail with a message naming the file
// and field.
#include "test.h"

#include "ked.h"
#include "edit/edit.h"
#include "io/safetensors.h"
#include <stdint.h>
#include <sys/stat.h>

static ked_model *m;
static ked_tokenizer *tok;

// every layer's down projection, concatenated
static float *snapshot(void) {
    const ked_config *c = ked_model_config(m);
    size_t per = (size_t)c->d_model * c->d_ff;
    float *s = malloc(sizeof(float) * per * c->n_layer);
    for (int l = 0; l < c->n_layer; l++) memcpy(s + l * per, model_param(m, l, P_WDOWN)->w, sizeof(float) * per);
    return s;
}
static int same(const float *a, const float *b) {
    const ked_config *c = ked_model_config(m);
    return !memcmp(a, b, sizeof(float) * (size_t)c->d_model * c->d_ff * c->n_layer);
}

static const char *names[] = {"Lily", "Tom", "Ben", "Mia", "Max", "Sam", "Anna", "Tim", "Sue", "Bob"};
static const char *things[] = {"little girl", "big dog", "small cat", "old man", "red bird"};

static void test_sequential(void) {
    ked_error err;
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(m, "rome", &hp, &err), &err);
    hp.v_num_grad_steps = 8; // the weights, not the edits' quality, are under test here
    char **tmpl = NULL;
    int n_tmpl = 0;
    CHECK_OK(edit_templates_sample(m, tok, (const int (*)[2])hp.ctx_len, hp.n_ctx_len, 7, &tmpl,
                                   &n_tmpl, &err), &err);
    ked_edit_opts o = ked_edit_defaults();
    o.templates = (const char *const *)tmpl;
    o.n_templates = n_tmpl;
    float *base = snapshot();
    const float *loaded[5];
    for (int l = 0; l < 5; l++) loaded[l] = model_param(m, l, P_WDOWN)->w;
    ked_editor *ed = NULL;
    CHECK_OK(ked_editor_new(m, &ed, &err), &err);
    double t0 = ked_time_s();
    for (int i = 0; i < 20; i++) {
        char prompt[256], target[64];
        snprintf(prompt, sizeof prompt, "Once upon a time, there was a %s named", things[i % 5]);
        snprintf(target, sizeof target, " %s", names[(i * 3 + 1) % 10]);
        ked_request req = {0};
        req.prompt = prompt;
        req.subject = things[i % 5];
        req.target_new = target;
        hp.layers[0] = i % 4; // spread over layers 0..3, several edits per tensor
        ked_patch *p = NULL;
        CHECK_OK(ked_edit(m, tok, &hp, &req, &o, &p, NULL, &err), &err);
        int id = -1;
        if (p) CHECK_OK(ked_editor_apply(ed, p, &id, &err), &err);
        CHECK(id == i, "patch id %d, expected %d", id, i);
    }
    printf("  20 ROME edits (8 v* steps each) in %.2f s\n", ked_time_s() - t0);
    CHECK(ked_editor_n_patches(ed) == 20, "%d patches", ked_editor_n_patches(ed));
    float *after = snapshot();
    CHECK(!same(after, base), "the edits changed nothing");
    // the tenth out and back in
    CHECK_OK(ked_editor_revert(ed, 9, &err), &err);
    float *without = snapshot();
    CHECK(!same(without, after), "reverting patch 9 changed nothing");
    CHECK(!ked_editor_is_active(ed, 9), "patch 9 still active");
    CHECK(ked_editor_revert(ed, 9, &err) == KED_ERR_ARG, "reverting twice should fail");
    CHECK_OK(ked_editor_reapply(ed, 9, &err), &err);
    float *again = snapshot();
    CHECK(same(again, after), "revert + re-apply of patch 9 is not bit-exact");
    // save patch 9 and read it back: applying the copy after reverting the original gives the
    // same weights as re-applying the original only if it is last, so compare the entries
    const ked_patch *p9 = ked_editor_patch(ed, 9);
    CHECK_OK(ked_patch_save(p9, m, "build/tests/edit_patch9.safetensors", &err), &err);
    ked_patch *q = NULL;
    CHECK_OK(ked_patch_load(m, "build/tests/edit_patch9.safetensors", &q, &err), &err);
    if (q) {
        CHECK(q->n == p9->n && !strcmp(q->method, "rome"), "loaded patch differs");
        for (int i = 0; i < q->n && i < p9->n; i++) {
            const patch_entry *a = &q->e[i], *b = &p9->e[i];
            CHECK(a->layer == b->layer && a->slot == b->slot && a->rank == b->rank &&
                  !memcmp(a->a, b->a, sizeof(float) * (size_t)(a->rows * a->rank)) &&
                  !memcmp(a->b, b->b, sizeof(float) * (size_t)(a->cols * a->rank)),
                  "loaded entry %d differs", i);
            int rank = -1;
            const char *nm = ked_patch_entry(q, i, &rank);
            printf("  patch 9: %s rank %d\n", nm, rank);
            CHECK(rank == 1, "rank %d", rank);
        }
        ked_patch_free(q);
    }
    // everything out, in a scrambled order
    for (int k = 0; k < 20; k++) CHECK_OK(ked_editor_revert(ed, (k * 7) % 20, &err), &err);
    float *none = snapshot();
    CHECK(same(none, base), "rolling back all 20 edits is not bit-exact");
    ked_editor_free(ed);
    for (int l = 0; l < 5; l++)
        CHECK(model_param(m, l, P_WDOWN)->w == loaded[l], "layer %d: the loaded buffer is not back", l);
    float *freed = snapshot();
    CHECK(same(freed, base), "after ked_editor_free the weights differ from the base");
    free(base); free(after); free(without); free(again); free(none); free(freed);
    edit_templates_free(tmpl, n_tmpl);
}

// v* computed on each row's window (positions from the lookup token on, above the edited layer,
// the prefix from the key/value cache) equals the reference path that recomputes everything
static void test_vstar_cache(void) {
    ked_error err;
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(m, "rome", &hp, &err), &err);
    hp.v_num_grad_steps = 10;
    const char *tmpl[3] = {"{}", "The dog ran. {}", "Because it was a sunny day. {}"};
    ked_request req = {0};
    req.prompt = "Once upon a time, there was a little girl named";
    req.subject = "little girl";
    req.target_new = "Sue";
    edit_case c;
    CHECK_OK(edit_case_build(tok, &req, tmpl, 3, 0, &c, &err), &err);
    vstar_result a, b;
    double t0 = ked_time_s();
    CHECK_OK(edit_vstar(m, &hp, &c, 3, 0, NULL, &a, &err), &err);
    double t1 = ked_time_s();
    CHECK_OK(edit_vstar(m, &hp, &c, 3, 1, NULL, &b, &err), &err);
    double t2 = ked_time_s();
    int C = ked_model_config(m)->d_model;
    float d = test_maxdiff(a.delta, b.delta, (size_t)C, NULL);
    float mx = 0;
    for (int x = 0; x < C; x++) mx = fmaxf(mx, fabsf(b.delta[x]));
    printf("  v* at layer 3, 10 steps: windows %.3f s, full %.3f s, max |delta diff| %g (|delta| "
           "max %g), losses %.6f vs %.6f\n", t1 - t0, t2 - t1, d, mx, a.loss[a.n_steps - 1],
           b.loss[b.n_steps - 1]);
    CHECK(d <= 1e-4f * mx, "windowed and full v* differ by %g", d);
    for (int s = 0; s < a.n_steps; s++)
        CHECK(fabsf(a.loss[s] - b.loss[s]) <= 1e-5f * fabsf(b.loss[s]), "step %d loss %g vs %g", s,
              a.loss[s], b.loss[s]);
    CHECK(a.n_steps == b.n_steps, "steps %d vs %d", a.n_steps, b.n_steps);
    vstar_result_free(&a);
    vstar_result_free(&b);
    edit_case_free(&c);
}

// edit_vstar_all split into runs of one request (budget 1 byte) equals it in one run (SIZE_MAX):
// the rows never interact, so each batch's share of res and of vo's outputs (offset by its first
// request) must hold what the one run puts there. Field f of request j of a run: the delta,
// target_init (P, C each), key_mean, key_row0 (F), value_mean (C); out: key_mean (n, F),
// key_row0 (n, F), value_mean (n, C) one after the other
static const float *vstar_field(int f, const vstar_result *r, const float *out, int n, int j,
                                int C, int F, size_t *len) {
    size_t PC = (size_t)r->n_points * C;
    switch (f) {
    case 0: *len = PC; return r->delta;
    case 1: *len = PC; return r->target_init;
    case 2: *len = (size_t)F; return out + (size_t)j * F;
    case 3: *len = (size_t)F; return out + (size_t)(n + j) * F;
    default: *len = (size_t)C; return out + (size_t)2 * n * F + (size_t)j * C;
    }
}

// max |a - b| / max |b| (infinite where a holds a NaN: an output left unwritten)
static double rel_diff(const float *a, const float *b, size_t n) {
    float mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(b[i]));
    return test_maxdiff(a, b, n, NULL) / (mx > 0 ? mx : 1e-30f);
}

static void vstar_split_check(const char *what, const ked_hparams *hp, const edit_case *cs, int n,
                              int layer, vstar_opts vo) {
    static const char *fname[5] = {"delta", "target_init", "key_mean", "key_row0", "value_mean"};
    static const size_t budget[2] = {1, SIZE_MAX}; // one request per run; all in one run
    ked_error err;
    int C = ked_model_config(m)->d_model, F = ked_model_config(m)->d_ff;
    size_t n_out = (size_t)n * (2 * (size_t)F + C);
    float *out[2];
    vstar_result *res[2];
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        out[k] = malloc(sizeof(float) * n_out);
        for (size_t i = 0; i < n_out; i++) out[k][i] = NAN;
        res[k] = calloc((size_t)n, sizeof *res[k]);
        vo.key_mean = out[k];
        vo.key_row0 = out[k] + (size_t)n * F;
        vo.value_mean = out[k] + (size_t)2 * n * F;
        vo.budget = budget[k];
        ked_status st = edit_vstar_all(m, hp, cs, n, layer, &vo, NULL, res[k], &err);
        CHECK_OK(st, &err);
        ok = ok && !st;
    }
    double worst = 0, loss_worst = 0, apart = INFINITY;
    for (int j = 0; ok && j < n; j++) {
        const vstar_result *a = &res[0][j], *b = &res[1][j];
        if (!a->delta || !b->delta) { // not written: a request's share given to another
            CHECK(0, "%s request %d: no delta (split %p, one run %p)", what, j, (void *)a->delta,
                  (void *)b->delta);
            continue;
        }
        CHECK(a->n_steps == b->n_steps && a->n_points == b->n_points,
              "%s request %d: %d steps, %d points split; %d, %d in one run", what, j, a->n_steps,
              a->n_points, b->n_steps, b->n_points);
        for (int s = 0; s < a->n_steps && s < b->n_steps; s++) {
            double d = fabs((double)a->loss[s] - b->loss[s]) / fabs((double)b->loss[s]);
            loss_worst = fmax(loss_worst, d != d ? INFINITY : d);
        }
        for (int f = 0; f < 5; f++) {
            size_t len;
            const float *x = vstar_field(f, a, out[0], n, j, C, F, &len);
            const float *y = vstar_field(f, b, out[1], n, j, C, F, &len);
            double r = rel_diff(x, y, len);
            worst = fmax(worst, r);
            CHECK(r <= 1e-5, "%s request %d %s: split vs one run, rel diff %g", what, j, fname[f],
                  r);
            // the requests' outputs differ from their neighbour's (so misplaced ones would show)
            if (j > 0) apart = fmin(apart, rel_diff(y, vstar_field(f, &res[1][j - 1], out[1], n,
                                                                    j - 1, C, F, &len), len));
        }
    }
    if (ok) {
        CHECK(loss_worst <= 1e-5, "%s: losses split vs one run, rel diff %g", what, loss_worst);
        CHECK(apart > 1e-2, "%s: neighbouring requests' outputs differ by only %g", what, apart);
        printf("  %s, %d requests at layer %d, one run per request vs one run: steps", what, n,
               layer);
        for (int j = 0; j < n; j++) printf(" %d", res[1][j].n_steps);
        printf(", losses rel %.1e, outputs rel %.1e (neighbours apart %.2f)\n", loss_worst, worst,
               apart);
    }
    for (int k = 0; k < 2; k++) {
        for (int j = 0; j < n; j++) vstar_result_free(&res[k][j]);
        free(res[k]);
        free(out[k]);
    }
}

static void test_vstar_split(void) {
    static const ked_request rq[4] = {
        {.prompt = "Once upon a time, there was a little girl named", .subject = "little girl",
         .target_new = " Sue"},
        {.prompt = "One day, a big dog called", .subject = "big dog", .target_new = " Max"},
        {.prompt = "The small cat liked to play with", .subject = "small cat",
         .target_new = " Tom"},
        {.prompt = "In the park, the old man was called", .subject = "old man",
         .target_new = " Ben"},
    };
    const char *tmpl[2] = {"{}", "The dog ran. {}"};
    static const char *method[2] = {"memit", "pmet"};
    for (int k = 0; k < 2; k++) {
        ked_error err;
        ked_hparams hp;
        CHECK_OK(ked_hparams_defaults(m, method[k], &hp, &err), &err);
        hp.v_num_grad_steps = 10;
        edit_case cs[4];
        int nc = 0;
        for (; nc < 4; nc++)
            if (edit_case_build(tok, &rq[nc], tmpl, 2, hp.fact_token, &cs[nc], &err)) break;
        CHECK(nc == 4, "%s", err.msg);
        if (nc == 4) {
            if (k == 0) { // MEMIT's z: one delta at the last layer's output (memit.c)
                hp.v_point = KED_HOOK_RESID_OUT;
                vstar_split_check("MEMIT z (resid_out)", &hp, cs, 4, 3, (vstar_opts){0});
            } else {
                vstar_opts vo = {.n_points = 2, .points = {KED_HOOK_MLP_OUT, KED_HOOK_ATTN_OUT},
                                 .pmet_rule = 1};
                vstar_split_check("PMET zs (mlp_out + attn_out)", &hp, cs, 4, 2, vo);
            }
        }
        for (int j = 0; j < nc; j++) edit_case_free(&cs[j]);
    }
}

static void test_subject_rule(void) {
    ked_error err;
    const char *prompt = "Once upon a time, there was a little girl named";
    int *ids = NULL, n = 0;
    ked_span *sp = NULL;
    CHECK_OK(ked_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &sp, &n, &err), &err);
    const char *at = strstr(prompt, "little girl");
    int last = edit_subject_last(sp, n, (size_t)(at - prompt), (size_t)(at - prompt) + 11);
    // " little" " g" "ir" "l" " named": the subject's last token is "l"
    CHECK(last == n - 2, "subject-last token %d, expected %d", last, n - 2);
    size_t s0 = (size_t)(at - prompt), s1 = s0 + 11;
    CHECK(edit_lookup(sp, n, s0, s1, KED_FACT_SUBJECT_FIRST) == n - 5, "subject_first");
    CHECK(edit_lookup(sp, n, s0, s1, KED_FACT_SUBJECT_LAST) == n - 2, "subject_last");
    CHECK(edit_lookup(sp, n, s0, s1, KED_FACT_SUBJECT_FIRST_AFTER_LAST) == n - 1, "subject_first_after_last");
    CHECK(edit_lookup(sp, n, s0, s1, KED_FACT_LAST) == n - 1, "last");
    // nothing after the subject: subject_first_after_last is the subject's last token
    CHECK(edit_lookup(sp, n - 1, s0, s1, KED_FACT_SUBJECT_FIRST_AFTER_LAST) == n - 2, "after, at the end");
    int *t = NULL, nt = 0;
    CHECK_OK(edit_target_ids(tok, prompt, " Sue", &t, &nt, &err), &err);
    CHECK(nt == 3 && t && t[0] == 301, "target ids: %d of them, first %d", nt, t ? t[0] : -1);
    free(ids); free(sp); free(t);
    // TinyStories-656K merges "girl named " into one token, so encode(prompt) is not a prefix of
    // encode(prompt + " Sue"): the target is encode(" Sue") without its dummy-prefix "▁",
    // i.e. "▁" (the space) then "Sue"
    ked_tokenizer *t2 = NULL;
    CHECK_OK(ked_tokenizer_load("models/TinyStories-656K", &t2, &err), &err);
    if (t2) {
        t = NULL;
        CHECK_OK(edit_target_ids(t2, prompt, " Sue", &t, &nt, &err), &err);
        CHECK(nt == 2 && t && t[0] == ked_tokenizer_token_id(t2, "\xe2\x96\x81") &&
              t[1] == ked_tokenizer_token_id(t2, "Sue"), "TinyStories-656K target: %d ids", nt);
        free(t);
        ked_tokenizer_free(t2);
    }
}

static void test_hparams(void) {
    ked_error err;
    ked_hparams hp;
    CHECK_OK(ked_hparams_load(m, "tests/data/hparams/ROME-stories260k.yaml", NULL, &hp, &err), &err);
    CHECK(!strcmp(hp.method, "rome") && hp.n_layers == 1 && hp.layers[0] == 1 &&
          hp.v_num_grad_steps == 40 && hp.v_lr == 0.5f && hp.v_weight_decay == 0.5f &&
          hp.kl_factor == 0.0625f && hp.clamp_norm_factor == 4.0f && hp.n_ctx_len == 2 &&
          hp.ctx_len[1][0] == 10 && hp.ctx_len[1][1] == 10 && hp.v_point == KED_HOOK_MLP_OUT &&
          !hp.mom2_adjustment, "ROME-stories260k.yaml read wrong");
    // EasyEdit's own files: a llama file names modules of stories260K but layer 5 is not there
    ked_status st = ked_hparams_load(m, "tests/data/hparams/ROME-llama-7b.yaml", NULL, &hp, &err);
    CHECK(st == KED_ERR_ARG && strstr(err.msg, "ROME-llama-7b.yaml") && strstr(err.msg, "layer 5"),
          "llama-7b on stories260K: %s", err.msg);
    printf("  %s\n", err.msg);
    // a GPT-2 file's templates name nothing in a llama model
    st = ked_hparams_load(m, "tests/data/hparams/ROME-gpt2-xl.yaml", NULL, &hp, &err);
    CHECK(st == KED_ERR_UNSUPPORTED && strstr(err.msg, "rewrite_module_tmp") &&
          strstr(err.msg, "transformer.h.{}.mlp.c_proj"), "gpt2-xl on a llama: %s", err.msg);
    printf("  %s\n", err.msg);
    st = ked_hparams_load(m, "tests/data/hparams/FT-llama-7b.yaml", "ft-m", &hp, &err);
    CHECK(st == KED_ERR_ARG && strstr(err.msg, "layer 21"), "FT llama-7b: %s", err.msg);
    st = ked_hparams_load(m, "tests/data/hparams/no-such-file.yaml", NULL, &hp, &err);
    CHECK(st == KED_ERR_IO && strstr(err.msg, "no-such-file.yaml"), "missing file: %s", err.msg);
    // the EasyEdit GPT-2 files on the tiny GPT-2 fixture: everything but the layer fits
    ked_model *g = NULL;
    CHECK_OK(ked_model_load("tests/data/tiny-gpt2", &g, &err), &err);
    if (g) {
        st = ked_hparams_load(g, "tests/data/hparams/R-ROME-gpt2-xl.yaml", NULL, &hp, &err);
        CHECK(st == KED_ERR_ARG && strstr(err.msg, "layer 17"), "R-ROME gpt2-xl: %s", err.msg);
        st = ked_hparams_load(g, "tests/data/hparams/FT-gpt2-xl.yaml", NULL, &hp, &err);
        CHECK(st == KED_OK && !strcmp(hp.method, "ft-l") && hp.layers[0] == 0 &&
              hp.norm_constraint == 5e-4f && hp.lr == 5e-4f && hp.num_steps == 25 && hp.ft_bias,
              "FT gpt2-xl on tiny-gpt2: %s", err.msg);
        ked_model_free(g);
    }
    // EasyEdit's GPT-J file on the tiny GPT-J fixture: transformer.h.{}.mlp.fc_out is its down
    // projection (the template is accepted; its layer 5 is not in a 2-layer model)
    CHECK_OK(ked_model_load("tests/data/tiny-gptj", &g, &err), &err);
    if (g) {
        st = ked_hparams_load(g, "tests/data/hparams/ROME-gpt-j-6B.yaml", NULL, &hp, &err);
        CHECK(st == KED_ERR_ARG && strstr(err.msg, "layer 5"), "ROME gpt-j-6B: %s", err.msg);
        ked_model_free(g);
    }
    // defaults: never the last layer for ROME
    CHECK_OK(ked_hparams_defaults(m, "rome", &hp, &err), &err);
    CHECK(hp.layers[0] >= 0 && hp.layers[0] < 4, "ROME default layer %d", hp.layers[0]);
    // MEMIT: a run of layers, never the last
    CHECK_OK(ked_hparams_defaults(m, "memit", &hp, &err), &err);
    CHECK(hp.n_layers >= 1 && hp.layers[hp.n_layers - 1] < 4, "MEMIT default layers end at %d",
          hp.layers[hp.n_layers - 1]);
}

// an edited directory: loads as a plain model with the live weights; reopened through its record
// it recomputes them from the base, and reverting there gives the base bit for bit
static void test_dir(void) {
    ked_error err;
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(m, "ft-m", &hp, &err), &err);
    ked_request req = {0};
    req.prompt = "Once upon a time, there was a little girl named";
    req.subject = "little girl";
    req.target_new = " Sue";
    ked_editor *ed = NULL;
    ked_patch *p = NULL, *q = NULL;
    CHECK_OK(ked_editor_new(m, &ed, &err), &err);
    float *base = snapshot();
    CHECK_OK(ked_edit(m, tok, &hp, &req, NULL, &p, NULL, &err), &err);
    if (!p) { ked_editor_free(ed); free(base); return; }
    CHECK(strstr(ked_patch_note(p), "Sue") != NULL, "note '%s'", ked_patch_note(p));
    CHECK_OK(ked_editor_apply(ed, p, NULL, &err), &err);
    hp.layers[0] = 2;
    req.target_new = " Tom";
    CHECK_OK(ked_edit(m, tok, &hp, &req, NULL, &q, NULL, &err), &err);
    if (q) CHECK_OK(ked_editor_apply(ed, q, NULL, &err), &err);
    float *live = snapshot();
    const char *dir = "build/tests/edit_dir";
    CHECK_OK(ked_editor_save_dir(ed, dir, &err), &err);
    CHECK(ked_edit_dir_is(dir), "%s is not an edited directory", dir);
    ked_editor_free(ed);
    // as a plain model
    ked_model *saved = m, *plain = NULL;
    CHECK_OK(ked_model_load(dir, &plain, &err), &err);
    if (plain) {
        m = plain;
        float *got = snapshot();
        CHECK(same(got, live), "the merged model.safetensors differs from the live weights");
        free(got);
        ked_model_free(plain);
    }
    // through the record
    ked_model *bm = NULL;
    ked_editor *e2 = NULL;
    CHECK_OK(ked_editor_open_dir(dir, &bm, &e2, &err), &err);
    if (bm && e2) {
        m = bm;
        float *got = snapshot();
        CHECK(same(got, live), "reopened weights differ from the live weights");
        CHECK(ked_editor_n_patches(e2) == 2 && !strcmp(ked_patch_method(ked_editor_patch(e2, 1)), "ft-m"),
              "reopened list");
        CHECK_OK(ked_editor_revert(e2, 0, &err), &err);
        CHECK_OK(ked_editor_revert(e2, 1, &err), &err);
        float *none = snapshot();
        CHECK(same(none, base), "reverting in a reopened directory is not bit-exact");
        free(got);
        free(none);
    }
    ked_editor_free(e2);
    ked_model_free(bm);
    m = saved;
    // a record whose base changed is refused
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(ked_read_file("build/tests/edit_dir/edits.json", &text, &len, &err), &err);
    char *h = text ? strstr(text, "fnv1a64:") : NULL;
    if (h) {
        h[8] = h[8] == '0' ? '1' : '0';
        CHECK_OK(ked_write_file_atomic("build/tests/edit_dir/edits.json", text, len, &err), &err);
        ked_status st = ked_editor_open_dir(dir, &bm, &e2, &err);
        CHECK(st == KED_ERR_FORMAT && strstr(err.msg, "hash"), "changed base: %s", err.msg);
        printf("  %s\n", err.msg);
    }
    free(text);
    free(base);
    free(live);
}

// ROME on two layers: one rank-1 entry per layer, the second computed with the first in place,
// and the model as it was afterwards
static void test_two_layers(void) {
    ked_error err;
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(m, "rome", &hp, &err), &err);
    hp.layers[0] = 2;
    hp.layers[1] = 1; // given out of order: edited in increasing order
    hp.n_layers = 2;
    hp.v_num_grad_steps = 5;
    const char *tmpl[2] = {"{}", "The dog ran. {}"};
    ked_edit_opts o = ked_edit_defaults();
    o.templates = tmpl;
    o.n_templates = 2;
    ked_request req = {0};
    req.prompt = "Once upon a time, there was a little girl named";
    req.subject = "little girl";
    req.target_new = " Sue";
    float *before = snapshot();
    ked_patch *p = NULL;
    ked_edit_info info;
    CHECK_OK(ked_edit(m, tok, &hp, &req, &o, &p, &info, &err), &err);
    float *after = snapshot();
    CHECK(same(before, after), "a two-layer ROME edit left the model changed");
    CHECK(p && p->n == 2 && p->e[0].layer == 1 && p->e[1].layer == 2 && p->e[0].rank == 1,
          "two-layer ROME patch: %d entries", p ? p->n : -1);
    CHECK(info.n_steps == 10 && info.layer == 1, "steps %d, layer %d", info.n_steps, info.layer);
    ked_patch_free(p);
    free(before);
    free(after);
}

// a model whose matrices stay bf16 in memory (keep_half): the first edit of a tensor widens it to
// f32 (exactly), revert gives that widening back bit for bit, and the base's hash is the same
// before and after
static void test_half(void) {
    ked_error err;
    // tiny-llama as bf16
    st_file *f = NULL;
    CHECK_OK(st_open("tests/data/tiny-llama/model.safetensors", &f, &err), &err);
    if (!f) return;
    int n = st_count(f);
    st_write_tensor *t = calloc((size_t)n, sizeof *t);
    void **bufs = calloc((size_t)n, sizeof *bufs);
    for (int i = 0; i < n; i++) {
        const st_tensor *x = st_get(f, i);
        float *tmp = malloc(sizeof(float) * (size_t)x->numel);
        CHECK_OK(st_to_f32(f, x, tmp, &err), &err);
        bufs[i] = malloc(2 * (size_t)x->numel);
        ked_f32_to_bf16_row(tmp, bufs[i], (size_t)x->numel);
        free(tmp);
        t[i].name = x->name;
        t[i].dtype = KED_BF16;
        t[i].ndim = x->ndim;
        memcpy(t[i].shape, x->shape, sizeof x->shape);
        t[i].data = bufs[i];
    }
    mkdir("build/tests/tiny-llama-bf16", 0755);
    CHECK_OK(st_write("build/tests/tiny-llama-bf16/model.safetensors", t, n, NULL, NULL, 0, &err), &err);
    char *cfg = NULL;
    size_t len = 0;
    CHECK_OK(ked_read_file("tests/data/tiny-llama/config.json", &cfg, &len, &err), &err);
    CHECK_OK(ked_write_file_atomic("build/tests/tiny-llama-bf16/config.json", cfg, len, &err), &err);
    free(cfg);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(t);
    st_close(f);

    ked_load_opts lo = ked_load_defaults();
    lo.keep_half = 1;
    ked_model *h = NULL;
    CHECK_OK(ked_model_load_ex("build/tests/tiny-llama-bf16", &lo, &h, &err), &err);
    if (!h) return;
    ked_param *down = model_param(h, 0, P_WDOWN);
    CHECK(down->w == NULL && down->w16 != NULL, "keep_half did not keep layer 0's down_proj in bf16");
    int64_t numel = down->rows * down->cols;
    float *widened = malloc(sizeof(float) * (size_t)numel);
    for (int64_t r = 0; r < down->rows; r++) model_param_row_f32(down, r, widened + r * down->cols);
    ked_editor *ed = NULL;
    CHECK_OK(ked_editor_new(h, &ed, &err), &err);
    uint64_t h0 = ked_editor_base_hash(ed);
    // a ROME edit on ids (the tiny model has no tokenizer)
    int ids[6] = {1, 10, 20, 30, 40, 50}, kl[5] = {1, 20, 30, 60, 61}, tg[3] = {70, 71, 72};
    edit_seq ctx = {ids, 6, 3};
    edit_case c = {&ctx, 1, {ids, 6, 3}, {kl, 5, 2}, tg, 3};
    ked_hparams hp;
    CHECK_OK(ked_hparams_defaults(h, "rome", &hp, &err), &err);
    hp.layers[0] = 0;
    hp.v_num_grad_steps = 5;
    ked_patch *p = NULL;
    CHECK_OK(edit_rome_case(h, &hp, &c, 0, NULL, &p, NULL, NULL, &err), &err);
    if (p) CHECK_OK(ked_editor_apply(ed, p, NULL, &err), &err);
    CHECK(down->w != NULL && memcmp(down->w, widened, sizeof(float) * (size_t)numel),
          "the edit did not change the widened tensor");
    CHECK(ked_editor_base_hash(ed) == h0, "the base hash changed when the tensor was widened");
    CHECK_OK(ked_editor_revert(ed, 0, &err), &err);
    CHECK(down->w && !memcmp(down->w, widened, sizeof(float) * (size_t)numel),
          "revert on a half-held model is not the exact widening of the base");
    ked_editor_free(ed);
    free(widened);
    ked_model_free(h);
}

// sum_j log p(target_j | prompt, target_<j) on ids
static float logprob(const ked_model *mm, const int *prompt, int np, const int *tg, int nt) {
    ked_error err;
    int ids[64], n = np + nt - 1, V = ked_model_config(mm)->vocab;
    memcpy(ids, prompt, sizeof(int) * (size_t)np);
    memcpy(ids + np, tg, sizeof(int) * (size_t)(nt - 1));
    ked_run *r = NULL;
    CHECK_OK(ked_run_new(mm, 1, n, n, 0, &r, &err), &err);
    CHECK_OK(ked_forward(mm, r, ids, 1, n, NULL, NULL, &err), &err);
    const float *lg = ked_run_logits(r, NULL);
    double s = 0;
    for (int j = 0; r && j < nt; j++) {
        const float *z = lg + (size_t)(np - 1 + j) * V;
        double mx = z[0], se = 0;
        for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        for (int v = 0; v < V; v++) se += exp(z[v] - mx);
        s += z[tg[j]] - mx - log(se);
    }
    ked_run_free(r);
    return (float)s;
}

// every family the runtime loads (parallel GPT-J / NeoX blocks, Qwen2 biases, Mistral windows,
// LLaMA-3 rope scaling): ROME and FT-M raise the target's log-probability, and revert restores
static void test_families(void) {
    const char *dirs[] = {"tests/data/tiny-gptj", "tests/data/tiny-neox", "tests/data/tiny-neox-seq",
                          "tests/data/tiny-qwen2", "tests/data/tiny-mistral", "tests/data/tiny-llama3"};
    int ids[6] = {1, 10, 20, 30, 40, 50}, kl[5] = {1, 20, 30, 60, 61}, tg[3] = {70, 71, 72};
    int ids2[9] = {1, 5, 6, 7, 10, 20, 30, 40, 50};
    edit_seq ctx[2] = {{ids, 6, 3}, {ids2, 9, 6}};
    edit_case c = {ctx, 2, {ids, 6, 3}, {kl, 5, 2}, tg, 3};
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        ked_error err;
        ked_model *mm = NULL;
        CHECK_OK(ked_model_load(dirs[d], &mm, &err), &err);
        if (!mm) continue;
        const char *methods[2] = {"rome", "ft-m"};
        printf("  %-26s", dirs[d]);
        for (int k = 0; k < 2; k++) {
            ked_hparams hp;
            CHECK_OK(ked_hparams_defaults(mm, methods[k], &hp, &err), &err);
            hp.v_weight_decay = 1e-3f;
            float before = logprob(mm, ids, 6, tg, 3);
            ked_patch *p = NULL;
            if (k == 0) CHECK_OK(edit_rome_case(mm, &hp, &c, 0, NULL, &p, NULL, NULL, &err), &err);
            else CHECK_OK(edit_ft_case(mm, &hp, &c, NULL, &p, NULL, &err), &err);
            if (!p) continue;
            ked_editor *ed = NULL;
            CHECK_OK(ked_editor_new(mm, &ed, &err), &err);
            CHECK_OK(ked_editor_apply(ed, p, NULL, &err), &err);
            float after = logprob(mm, ids, 6, tg, 3);
            CHECK_OK(ked_editor_revert(ed, 0, &err), &err);
            float back = logprob(mm, ids, 6, tg, 3);
            printf("  %s %.2f -> %.2f", methods[k], before, after);
            CHECK(after > before + 0.5f, "%s %s: log-prob %f -> %f", dirs[d], methods[k], before, after);
            CHECK(back == before, "%s %s: revert gives log-prob %f, not %f", dirs[d], methods[k], back, before);
            ked_editor_free(ed);
        }
        printf("\n");
        ked_model_free(mm);
    }
}

int main(void) {
    ked_set_threads(1);
    ked_error err;
    if (ked_model_load("models/stories260K", &m, &err) ||
        ked_tokenizer_load("models/stories260K/tok512.bin", &tok, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    test_subject_rule();
    test_hparams();
    test_vstar_cache();
    test_vstar_split();
    test_two_layers();
    test_sequential();
    test_dir();
    test_half();
    test_families();
    ked_tokenizer_free(tok);
    ked_model_free(m);
    return test_finish("test_edit_patch");
}
