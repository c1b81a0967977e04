// test_model_formats.c: what ked_model_load makes of the same model in other formats.
//  - half precision: a bf16 and an f16 copy of a fixture (every tensor converted, as a bf16
//    checkpoint on the Hub is), loaded with keep_half (matrices stay 16-bit, used in place from
//    the map when in ked's layout) and without (widened to f32 at load). keep_half gives the
//    same logits and hook gradients as the widened load (same values, another matmul path), and
//    the f32 model's logits within the dtype's tolerance; its weights take about half the bytes;
//    tensor_read, generation, the editor (base hash, writable weights) and
//    model_param_materialize_f32 work on half-held tensors.
//    Models: tiny-llama (GQA), tiny-gpt2 (transposed Conv1D, fused c_attn), tiny-neox (fused
//    per-head qkv), tiny-gptj (head bias) -- every load transform -- in bf16 and f16; the other
//    fixtures in bf16.
//  - sharded checkpoints: a fixture split into three shards + model.safetensors.index.json by
//    st_write_dir loads and gives bit-identical logits; bad indexes (a missing shard, a tensor
//    in two shards, a shard lacking a listed tensor) fail through ked_model_load with errors
//    naming the file and the tensor, and leave *out untouched.
//  - config fields of LLaMA-3, Mistral, Qwen2, GPT-J and GPT-NeoX that change the computation:
//    values ked does not implement are errors naming the field.
#include "test.h"

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ked.h"
#include "edit/edit.h"
#include "io/safetensors.h"
#include "model/model.h"

static char root[256];

// a new directory under root holding src's config.json
static void new_model_dir(char *dir, size_t cap, const char *src, const char *name) {
    char a[600], b[600];
    snprintf(dir, cap, "%s/%s", root, name);
    mkdir(dir, 0700);
    snprintf(a, sizeof a, "%s/config.json", src);
    snprintf(b, sizeof b, "%s/config.json", dir);
    test_copy_file(a, b);
}

// write src's tensors into dir (converted to dtype unless it is KED_F32), split into shards of
// at most max_shard bytes (0: one file)
static void write_copy(const char *src, const char *dir, ked_dtype dtype, size_t max_shard) {
    char path[600];
    ked_error err;
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    st_file *f = NULL;
    if (st_open(path, &f, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    int n = st_count(f);
    st_write_tensor *ts = calloc((size_t)n, sizeof *ts);
    void **bufs = calloc((size_t)n, sizeof *bufs);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_get(f, i);
        float *x = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        if (st_to_f32(f, t, x, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
        if (dtype == KED_BF16 || dtype == KED_F16) {
            uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(t->numel ? t->numel : 1));
            if (dtype == KED_BF16) ked_f32_to_bf16_row(x, h, (size_t)t->numel);
            else ked_f32_to_f16_row(x, h, (size_t)t->numel);
            free(x);
            bufs[i] = h;
        } else {
            bufs[i] = x;
        }
        ts[i].name = t->name;
        ts[i].dtype = dtype;
        ts[i].ndim = t->ndim;
        for (int k = 0; k < t->ndim; k++) ts[i].shape[k] = t->shape[k];
        ts[i].data = bufs[i];
    }
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    if (st_write_dir(dir, ts, n, max_shard, mk, mv, 1, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(ts);
    st_close(f);
}

static const int ids[9] = {5, 17, 3, 88, 41, 9, 60, 2, 33};

// logits (9, V) of ids, malloc'd; with an mlp_key hook at layer 1, position 4 whose gradient of
// the logit sum (times a fixed pattern) goes into hook_grad (F floats) when not NULL
static float *run_logits(ked_model *m, float *hook_grad) {
    const ked_config *c = ked_model_config(m);
    ked_error err;
    ked_run *r = NULL;
    CHECK_OK(ked_run_new(m, 1, 9, 9, hook_grad != NULL, &r, &err), &err);
    if (!r) return NULL;
    int row = 0, pos = 4;
    ked_hook h = {KED_HOOK_MLP_KEY, 1, 1, &row, &pos, NULL, NULL, hook_grad};
    ked_forward_opts o = ked_forward_defaults();
    o.hooks = &h;
    o.n_hooks = hook_grad ? 1 : 0;
    CHECK_OK(ked_forward(m, r, ids, 1, 9, NULL, &o, &err), &err);
    float *out = malloc(sizeof(float) * 9 * (size_t)c->vocab);
    memcpy(out, ked_run_logits(r, NULL), sizeof(float) * 9 * (size_t)c->vocab);
    if (hook_grad) {
        int tg[9] = {17, 3, 88, 41, 9, 60, 2, 33, -1};
        ked_loss_crossentropy(r, tg, 1);
        CHECK_OK(ked_backward(m, r, &err), &err);
    }
    ked_run_free(r);
    return out;
}

static float absmax(const float *x, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

static ked_model *load(const char *dir, int keep_half) {
    ked_error err;
    ked_model *m = NULL;
    ked_load_opts o = ked_load_defaults();
    o.keep_half = keep_half;
    CHECK_OK(ked_model_load_ex(dir, &o, &m, &err), &err);
    if (!m) { fprintf(stderr, "cannot load %s\n", dir); exit(1); }
    return m;
}

static void test_half(const char *src, const char *name, ked_dtype dtype, float tol) {
    char dir[512];
    char sub[128];
    snprintf(sub, sizeof sub, "%s-%s", name, ked_dtype_name(dtype));
    new_model_dir(dir, sizeof dir, src, sub);
    write_copy(src, dir, dtype, 0);
    ked_model *m32 = load(src, 0), *mw = load(dir, 0), *mh = load(dir, 1);
    const ked_config *c = ked_model_config(m32);
    size_t nl = 9 * (size_t)c->vocab;
    int F = c->d_ff;
    float *g_w = calloc((size_t)F, 4), *g_h = calloc((size_t)F, 4);
    float *l32 = run_logits(m32, NULL), *lw = run_logits(mw, g_w), *lh = run_logits(mh, g_h);
    float scale = absmax(l32, nl);
    float d_same = test_maxdiff(lh, lw, nl, NULL), d_f32 = test_maxdiff(lh, l32, nl, NULL);
    float g_scale = absmax(g_w, (size_t)F), d_grad = test_maxdiff(g_h, g_w, (size_t)F, NULL);
    size_t b32 = ked_model_weight_bytes(m32), bh = ked_model_weight_bytes(mh);
    size_t bhalf = ked_model_weight_bytes_dtype(mh, dtype);
    printf("  %-18s keep_half vs widened: logits %.2e, hook grad %.2e (rel); vs f32 model: "
           "logits max diff %.3g of scale %.3g (%.2f%%); weights %zu -> %zu bytes (%zu in %s)\n",
           sub, d_same, d_grad / g_scale, d_f32, scale, 100.0 * d_f32 / scale, b32, bh, bhalf,
           ked_dtype_name(dtype));
    CHECK(d_same <= 2e-5f * scale, "%s: keep_half logits differ from the widened load by %g", sub,
          d_same);
    CHECK(d_grad <= 1e-4f * g_scale, "%s: keep_half hook gradient differs by %g", sub, d_grad);
    CHECK(d_f32 <= tol * scale, "%s: logits differ from the f32 model by %g (> %g of %g)", sub,
          d_f32, tol, scale);
    CHECK(bhalf > 0 && bh < b32 * 6 / 10, "%s: weights take %zu bytes of the f32 model's %zu", sub,
          bh, b32);
    CHECK(ked_model_weight_bytes(mw) == b32, "%s: widened load holds %zu bytes", sub,
          ked_model_weight_bytes(mw));
    // matrices in ked's layout come straight from the map; every matrix is held half
    int in_place = 0, half = 0, mats = 0;
    for (int i = 0; i < mh->n_params; i++) {
        const ked_param *p = &mh->params[i];
        if (!param_present(p) || p->cols == 1) continue;
        mats++;
        half += p->w16 != NULL && p->w == NULL && p->dtype == dtype;
        in_place += p->w16 && !p->owned16;
    }
    CHECK(half == mats && in_place > 0, "%s: %d of %d matrices half, %d in place", sub, half, mats,
          in_place);
    // tensor_read of every tensor equals the widened load's
    ked_error err;
    for (int i = 0; i < ked_model_n_tensors(mh); i++) {
        const char *tn = ked_model_tensor_name(mh, i);
        int64_t sh[2];
        int nd = ked_model_tensor_shape(mh, tn, sh);
        size_t ne = (size_t)(sh[0] * (nd == 2 ? sh[1] : 1));
        float *a = malloc(4 * ne), *b = malloc(4 * ne);
        CHECK_OK(ked_model_tensor_read(mh, tn, 0, a, &err), &err);
        CHECK_OK(ked_model_tensor_read(mw, tn, 0, b, &err), &err);
        CHECK(!memcmp(a, b, 4 * ne), "%s: tensor_read '%s' differs", sub, tn);
        free(a);
        free(b);
    }
    // greedy generation agrees with the widened load (KV-cached decode through the N = 1 path)
    ked_generate_opts go = ked_generate_defaults();
    go.max_new = 8;
    go.stop_at_eos = 0;
    int o1[32], o2[32], n1 = 0, n2 = 0;
    CHECK_OK(ked_generate(mw, ids, 5, &go, o1, 32, &n1, NULL, NULL, &err), &err);
    CHECK_OK(ked_generate(mh, ids, 5, &go, o2, 32, &n2, NULL, NULL, &err), &err);
    CHECK(n1 == n2 && !memcmp(o1, o2, sizeof(int) * (size_t)n1), "%s: greedy differs", sub);
    // the editor: the base hash of a half-held model is that of its widened load; a weight made
    // writable (temp_weight_begin, what FT does) becomes f32 and computes the same
    ked_editor *eh = NULL, *ew = NULL;
    CHECK_OK(ked_editor_new(mh, &eh, &err), &err);
    CHECK_OK(ked_editor_new(mw, &ew, &err), &err);
    if (eh && ew)
        CHECK(ked_editor_base_hash(eh) == ked_editor_base_hash(ew), "%s: editor base hash differs",
              sub);
    ked_editor_free(eh);
    ked_editor_free(ew);
    temp_weight tw = {0};
    CHECK_OK(temp_weight_begin(mh, 1, P_WDOWN, &tw, &err), &err);
    CHECK(model_param(mh, 1, P_WDOWN)->w != NULL, "%s: temp weight has no f32 values", sub);
    float *lt = run_logits(mh, NULL);
    CHECK(test_maxdiff(lt, lh, nl, NULL) <= 2e-5f * scale, "%s: temp weight changes logits", sub);
    free(lt);
    temp_weight_end(&tw);
    CHECK(model_param(mh, 1, P_WDOWN)->w && !model_param(mh, 1, P_WDOWN)->w16,
          "%s: the written weight stays f32", sub);
    // materialising every matrix in f32 (what an editor does first) changes nothing
    for (int i = 0; i < mh->n_params; i++)
        if (param_present(&mh->params[i]))
            CHECK(model_param_materialize_f32(mh, &mh->params[i], &err) != NULL, "%s", err.msg);
    CHECK(ked_model_weight_bytes(mh) == b32, "%s: materialised model holds %zu bytes", sub,
          ked_model_weight_bytes(mh));
    float *lm = run_logits(mh, NULL);
    float d_mat = test_maxdiff(lm, lw, nl, NULL);
    CHECK(d_mat <= 1e-6f * scale, "%s: materialised logits differ by %g", sub, d_mat);
    free(l32); free(lw); free(lh); free(lm); free(g_w); free(g_h);
    ked_model_free(m32); ked_model_free(mw); ked_model_free(mh);
}

// expect ked_model_load(dir) to fail with status st and a message holding every non-NULL string
static void expect_fail(const char *what, const char *dir, ked_status st, const char *s1,
                        const char *s2) {
    ked_error err = {KED_OK, ""};
    ked_model *m = (ked_model *)(uintptr_t)0x1;
    ked_status got = ked_model_load(dir, &m, &err);
    printf("  %-28s -> %s: %s\n", what, ked_status_name(got), err.msg);
    CHECK(got == st, "%s: status %s, want %s", what, ked_status_name(got), ked_status_name(st));
    CHECK(m == (ked_model *)(uintptr_t)0x1, "%s: *out was set on failure", what);
    CHECK(!s1 || strstr(err.msg, s1), "%s: message lacks '%s': %s", what, s1, err.msg);
    CHECK(!s2 || strstr(err.msg, s2), "%s: message lacks '%s': %s", what, s2, err.msg);
    if (got == KED_OK && m != (ked_model *)(uintptr_t)0x1) ked_model_free(m);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "%s: %s\n", path, strerror(errno)); exit(1); }
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "%s: %s\n", path, strerror(errno)); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) exit(1);
    s[n] = 0;
    fclose(f);
    return s;
}

// replace the first occurrence of `from` in s (malloc'd) with `to`
static char *replace(char *s, const char *from, const char *to) {
    char *p = strstr(s, from);
    if (!p) { fprintf(stderr, "replace: '%s' not found\n", from); exit(1); }
    size_t n = strlen(s) - strlen(from) + strlen(to);
    char *o = malloc(n + 1);
    size_t k = (size_t)(p - s);
    memcpy(o, s, k);
    strcpy(o + k, to);
    strcat(o, p + strlen(from));
    free(s);
    return o;
}

static void test_sharded(const char *src, const char *name) {
    char dir[512], path[700], idx[700];
    new_model_dir(dir, sizeof dir, src, name);
    // three shards: at most 40% of the bytes each (tensors are small against that)
    char mpath[600];
    snprintf(mpath, sizeof mpath, "%s/model.safetensors", src);
    struct stat sb;
    stat(mpath, &sb);
    write_copy(src, dir, KED_F32, (size_t)sb.st_size * 2 / 5);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    CHECK(access(idx, R_OK) == 0, "%s: no index written", name);
    ked_model *a = load(src, 0), *b = load(dir, 0);
    CHECK(b->st && st_set_file_count(b->st) == 3, "%s: %d shards, want 3", name,
          b->st ? st_set_file_count(b->st) : 0);
    size_t nl = 9 * (size_t)ked_model_config(a)->vocab;
    float *la = run_logits(a, NULL), *lb = run_logits(b, NULL);
    CHECK(!memcmp(la, lb, sizeof(float) * nl), "%s: sharded logits differ by %g", name,
          test_maxdiff(la, lb, nl, NULL));
    printf("  %-28s 3 shards, logits identical to the single file: %s\n", name,
           memcmp(la, lb, sizeof(float) * nl) ? "NO" : "yes");
    free(la); free(lb);
    ked_model_free(a); ked_model_free(b);

    char *orig = read_text(idx);
    // which shard holds the final norm (listed in the index); another shard's name
    const char *tn = "gpt_neox.final_layer_norm.weight";
    char *p = strstr(orig, tn);
    CHECK(p != NULL, "index lacks %s", tn);
    if (!p) { free(orig); return; }
    char shard[128] = "";
    sscanf(strchr(p + strlen(tn) + 1, '"') + 1, "%127[^\"]", shard);
    const char *other = strcmp(shard, "model-00001-of-00003.safetensors")
                            ? "model-00001-of-00003.safetensors"
                            : "model-00002-of-00003.safetensors";
    char listed[300], moved[300];
    snprintf(listed, sizeof listed, "\"%s\": \"%s\"", tn, shard);
    snprintf(moved, sizeof moved, "\"%s\": \"%s\"", tn, other);

    // a tensor listed for a shard that lacks it (it is in another)
    char *bad = replace(read_text(idx), listed, moved);
    write_text(idx, bad);
    free(bad);
    snprintf(path, sizeof path, "%s/%s", dir, other);
    expect_fail("listed for the wrong shard", dir, KED_ERR_FORMAT, tn, other);
    write_text(idx, orig);

    // a listed tensor that no shard holds
    bad = replace(read_text(idx), "\"weight_map\": {",
                  "\"weight_map\": {\"gpt_neox.ghost.weight\": "
                  "\"model-00001-of-00003.safetensors\", ");
    write_text(idx, bad);
    free(bad);
    expect_fail("listed tensor in no shard", dir, KED_ERR_FORMAT, "gpt_neox.ghost.weight",
                "model-00001-of-00003.safetensors");
    write_text(idx, orig);

    // a missing shard
    char from[700], to[700];
    snprintf(from, sizeof from, "%s/%s", dir, other);
    snprintf(to, sizeof to, "%s/%s.away", dir, other);
    rename(from, to);
    expect_fail("missing shard", dir, KED_ERR_IO, other, NULL);
    rename(to, from);

    // a tensor in two shards: a fourth shard (listed in the index) holding a copy of tn
    // (the extra shard is opened because the index lists its other tensor, extra.dummy)
    ked_error err;
    int64_t C = 32;
    float *w = calloc((size_t)C, sizeof(float));
    st_write_tensor dup[2] = {{tn, KED_F32, 1, {C}, w}, {"extra.dummy", KED_F32, 1, {1}, w}};
    snprintf(path, sizeof path, "%s/extra.safetensors", dir);
    CHECK_OK(st_write(path, dup, 2, NULL, NULL, 0, &err), &err);
    char extra[300];
    snprintf(extra, sizeof extra, "\"weight_map\": {\"extra.dummy\": \"extra.safetensors\", ");
    bad = replace(read_text(idx), "\"weight_map\": {", extra);
    write_text(idx, bad);
    free(bad);
    expect_fail("tensor in two shards", dir, KED_ERR_FORMAT, tn, NULL);
    write_text(idx, orig);
    unlink(path);
    free(w);

    // and the repaired folder loads again
    ked_model *c = load(dir, 0);
    ked_model_free(c);
    free(orig);
}

// a copy of src (config.json edited by `edit`, then the weights) under root/name
static void cfg_case(const char *what, const char *src, const char *name, const char *key,
                     json_t *value, ked_status st, const char *s1, const char *s2) {
    char dir[512], a[700], b[700];
    new_model_dir(dir, sizeof dir, src, name);
    snprintf(a, sizeof a, "%s/config.json", dir);
    json_error_t je;
    json_t *cfg = json_load_file(a, 0, &je);
    if (!cfg) { fprintf(stderr, "%s: %s\n", a, je.text); exit(1); }
    if (value) json_object_set_new(cfg, key, value);
    else json_object_del(cfg, key);
    json_dump_file(cfg, a, JSON_INDENT(2));
    json_decref(cfg);
    snprintf(a, sizeof a, "%s/model.safetensors", src);
    snprintf(b, sizeof b, "%s/model.safetensors", dir);
    test_copy_file(a, b);
    snprintf(a, sizeof a, "%s/config.json", dir);
    expect_fail(what, dir, st, s1 ? s1 : a, s2);
}

// config fields of the newer families that change the computation: values ked does not
// implement are errors naming the field (and the file)
static void test_config_fields(void) {
    const char *L3 = "tests/data/tiny-llama3", *MI = "tests/data/tiny-mistral";
    const char *QW = "tests/data/tiny-qwen2", *GJ = "tests/data/tiny-gptj";
    const char *NX = "tests/data/tiny-neox";
    cfg_case("qwen2 use_sliding_window", QW, "c1", "use_sliding_window", json_true(),
             KED_ERR_UNSUPPORTED, "'use_sliding_window'", "config.json");
    cfg_case("llama rope_scaling yarn", L3, "c2", "rope_scaling",
             json_pack("{sssf}", "rope_type", "yarn", "factor", 4.0), KED_ERR_UNSUPPORTED,
             "'rope_scaling'", "yarn");
    cfg_case("llama rope_scaling linear", L3, "c2b", "rope_scaling",
             json_pack("{sssf}", "type", "linear", "factor", 2.0), KED_ERR_UNSUPPORTED,
             "'rope_scaling'", "linear");
    cfg_case("llama3 scaling lacks factor", L3, "c3", "rope_scaling",
             json_pack("{sssfsfsi}", "rope_type", "llama3", "low_freq_factor", 1.0,
                       "high_freq_factor", 4.0, "original_max_position_embeddings", 64),
             KED_ERR_FORMAT, "'rope_scaling.factor'", "config.json");
    cfg_case("llama3 high <= low", L3, "c3b", "rope_scaling",
             json_pack("{sssfsfsfsi}", "rope_type", "llama3", "factor", 8.0, "low_freq_factor",
                       4.0, "high_freq_factor", 1.0, "original_max_position_embeddings", 64),
             KED_ERR_FORMAT, "'rope_scaling.high_freq_factor'", NULL);
    cfg_case("mistral sliding_window -1", MI, "c4", "sliding_window", json_integer(-1),
             KED_ERR_FORMAT, "'sliding_window'", NULL);
    cfg_case("mistral hidden_act gelu", MI, "c4b", "hidden_act", json_string("gelu"),
             KED_ERR_UNSUPPORTED, "'hidden_act'", "gelu");
    cfg_case("gptj activation relu", GJ, "c5", "activation_function", json_string("relu"),
             KED_ERR_UNSUPPORTED, "'activation_function'", "relu");
    cfg_case("gptj tied head", GJ, "c6", "tie_word_embeddings", json_true(), KED_ERR_UNSUPPORTED,
             "'tie_word_embeddings'", NULL);
    cfg_case("gptj rotary_dim 5", GJ, "c7", "rotary_dim", json_integer(5), KED_ERR_FORMAT,
             "'rotary_dim'", NULL);
    cfg_case("neox hidden_act relu", NX, "c8", "hidden_act", json_string("relu"),
             KED_ERR_UNSUPPORTED, "'hidden_act'", "relu");
    cfg_case("neox rotary_pct 0.1", NX, "c9", "rotary_pct", json_real(0.1), KED_ERR_UNSUPPORTED,
             "'rotary_pct'", NULL);
    cfg_case("neox rotary_pct 0.375", NX, "c10", "rotary_pct", json_real(0.375),
             KED_ERR_UNSUPPORTED, "'rotary_pct'", NULL);
    cfg_case("neox parallel residual 'yes'", NX, "c11", "use_parallel_residual",
             json_string("yes"), KED_ERR_FORMAT, "'use_parallel_residual'", NULL);
    cfg_case("neox rope_scaling dynamic", NX, "c12", "rope_scaling",
             json_pack("{sssf}", "type", "dynamic", "factor", 2.0), KED_ERR_UNSUPPORTED,
             "'rope_scaling'", NULL);
    // attention_bias false while the weights hold q/k/v biases: the stored tensor is named
    cfg_case("neox attention_bias false", NX, "c13", "attention_bias", json_false(),
             KED_ERR_FORMAT, ".attention.", "model.safetensors");
    // GPT-2 with "gelu": the exact GELU; NeoX without hidden_act: GPTNeoXConfig's "gelu"
    const struct { const char *src, *name, *key; json_t *v; ked_gelu_kind want; } acts[] = {
        {"tests/data/tiny-gpt2", "g1", "activation_function", json_string("gelu"), KED_GELU_ERF},
        {"tests/data/tiny-gpt2", "g2", "activation_function", json_string("gelu_new"),
         KED_GELU_TANH},
        {NX, "g3", "hidden_act", NULL, KED_GELU_ERF},
        {NX, "g4", "hidden_act", json_string("gelu_pytorch_tanh"), KED_GELU_TANH},
    };
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) {
        char gd[512], ga[700], gb[700];
        new_model_dir(gd, sizeof gd, acts[i].src, acts[i].name);
        snprintf(ga, sizeof ga, "%s/config.json", gd);
        json_error_t je;
        json_t *cfg = json_load_file(ga, 0, &je);
        if (acts[i].v) json_object_set_new(cfg, acts[i].key, acts[i].v);
        else json_object_del(cfg, acts[i].key);
        json_dump_file(cfg, ga, JSON_INDENT(2));
        json_decref(cfg);
        snprintf(ga, sizeof ga, "%s/model.safetensors", acts[i].src);
        snprintf(gb, sizeof gb, "%s/model.safetensors", gd);
        test_copy_file(ga, gb);
        ked_model *gm = load(gd, 0);
        CHECK(ked_model_config(gm)->gelu == acts[i].want, "%s %s: GELU kind %d", acts[i].src,
              acts[i].key, (int)ked_model_config(gm)->gelu);
        ked_model_free(gm);
    }
    // an unchanged copy loads: the cases above fail for their field alone
    char dir[512], a[700], b[700];
    new_model_dir(dir, sizeof dir, NX, "c14");
    snprintf(a, sizeof a, "%s/model.safetensors", NX);
    snprintf(b, sizeof b, "%s/model.safetensors", dir);
    test_copy_file(a, b);
    ked_model *m = load(dir, 0);
    CHECK(ked_model_config(m)->block == KED_BLOCK_PARALLEL, "tiny-neox is parallel");
    ked_model_free(m);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/ked_test_model_formats.XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    printf("half precision (bf16 tolerance: 3%% of the logit scale; f16: 0.3%%)\n");
    const char *models[4][2] = {{"tests/data/tiny-llama", "llama"},
                                {"tests/data/tiny-gpt2", "gpt2"},
                                {"tests/data/tiny-neox", "neox"},
                                {"tests/data/tiny-gptj", "gptj"}};
    for (int i = 0; i < 4; i++) {
        test_half(models[i][0], models[i][1], KED_BF16, 0.03f);
        test_half(models[i][0], models[i][1], KED_F16, 0.003f);
    }
    // the other families in bf16: tied head with q/k/v biases, sliding window, llama3 rope,
    // sequential NeoX
    const char *more[4][2] = {{"tests/data/tiny-qwen2", "qwen2"},
                              {"tests/data/tiny-mistral", "mistral"},
                              {"tests/data/tiny-llama3", "llama3"},
                              {"tests/data/tiny-neox-seq", "neox-seq"}};
    for (int i = 0; i < 4; i++) test_half(more[i][0], more[i][1], KED_BF16, 0.03f);
    printf("config fields of the newer families\n");
    test_config_fields();
    printf("sharded checkpoints\n");
    test_sharded("tests/data/tiny-neox", "neox-sharded");
    test_rm_tree(root);
    return test_finish("test_model_formats");
}
