// hparams.c: editing hyperparameters. EasyEdit's YAML files are read as they are (alg_name
// ROME, R-ROME, FT, MEMIT, EMMET, AlphaEdit or PMET; scientific notation such as 5e-1 is a
// number, as EasyEdit's construct_float_from_scientific_notation makes it); their module templates are mapped onto
// ked's slots and hook points for the model's family, and a template that names nothing in that
// family is an error. Without a file the values are derived from the model (design.md §3b).
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "edit/edit.h"

/* ---- defaults ------------------------------------------------------------------------------------ */

static int method_id(const char *method) {
    static const char *names[] = {"rome", "r-rome", "ft-l", "ft-m", "ft", "memit", "emmet", "alphaedit",
                                  "pmet"};
    for (int i = 0; i < 9; i++)
        if (!strcmp(method, names[i])) return i;
    return -1;
}

ked_status ked_hparams_defaults(const ked_model *m, const char *method, ked_hparams *hp,
                                ked_error *err) {
    int id = method ? method_id(method) : -1;
    if (id < 0)
        return ked_fail(err, KED_ERR_ARG, "unknown editing method '%s' (known: %s)",
                        method ? method : "(none)", ked_edit_methods());
    int L = ked_model_config(m)->n_layer;
    memset(hp, 0, sizeof *hp);
    snprintf(hp->method, sizeof hp->method, "%s", id == 4 ? "ft-l" : method);
    snprintf(hp->source, sizeof hp->source, "defaults");
    // the edit layer: a third of the depth (EasyEdit: 17 of 48 for gpt2-xl), never the last
    // layer for ROME, whose edit must reach the positions after the subject
    int layer = (L * 3) / 10;
    if (layer > L - 2) layer = L - 2;
    if (layer < 0) layer = 0;
    hp->layers[0] = layer;
    hp->n_layers = 1;
    hp->v_num_grad_steps = 40;      // the loss stops it early (< 5e-2) when the target is reached
    hp->v_lr = 0.5f;
    hp->v_loss_layer = L - 1;
    hp->v_weight_decay = 0.5f;      // EasyEdit's gpt2-xl value; 1e-3 (its llama value) edits
                                    // a small model's unrelated prompts too (docs/editing.md)
    hp->clamp_norm_factor = 4.0f;
    hp->kl_factor = 0.0625f;
    hp->ctx_len[0][0] = 5; hp->ctx_len[0][1] = 10;
    hp->ctx_len[1][0] = 10; hp->ctx_len[1][1] = 10;
    hp->n_ctx_len = 2;
    hp->v_point = KED_HOOK_MLP_OUT;
    hp->random_prefix_keys = id == 1;
    // FT: the last layer's down projection (on stories260K it keeps unrelated prompts best).
    // FT-M: up to 100 steps of lr 5e-3, which the loss (< 1e-2) stops early: 19-21 steps on
    // stories260K and TinyStories-656K. FT-L's bag-of-tokens loss cannot fall below
    // log(#distinct target tokens), so it always runs its budget: 40 steps of lr 1e-3.
    // (EasyEdit's 5e-4 for 25 steps barely moves a small model.)
    if (id >= 2) { hp->layers[0] = L - 1; }
    hp->num_steps = id == 3 ? 100 : 40;
    hp->batch_size = 1;
    hp->lr = id == 3 ? 5e-3f : 1e-3f;
    hp->weight_decay = 0;
    hp->norm_constraint = 0;
    hp->ft_target_new = id == 3;
    hp->ft_bias = 1;
    // statistics and the covariance-weighted methods (docs/editing.md)
    snprintf(hp->mom2_dataset, sizeof hp->mom2_dataset, "wikipedia");
    hp->mom2_n_samples = 100000;
    // lambda: E[k^T C^-1 k] = d_ff for a key of the statistics, so lambda in units of d_ff
    // (EasyEdit: 20000 / 6400 for gpt2-xl, 15000 / 11008 for llama-7b); 1 x d_ff: the best
    // efficacy/neighbourhood trade-off on ked-facts and stories260K (docs/editing.md)
    hp->mom2_update_weight = 1.0f * (float)ked_model_config(m)->d_ff;
    hp->emmet_lambda = 0.1f;
    hp->update_norm_lambda = 0;
    // AlphaEdit: the null space = eigenvalues below 5% of C's largest, L2 = 50 x C's mean
    // eigenvalue (both relative to the statistics' scale; docs/editing.md for the evidence)
    hp->nullspace_threshold = -5e-2f; // < 0: relative to C's largest eigenvalue
    hp->L2 = -50.0f;                  // < 0: relative to C's mean eigenvalue
    if (id >= 5) {
        // MEMIT's layers: a run of up to 5 layers in the lower half (EasyEdit: 13-17 of 48,
        // 4-8 of 32), never the last; its templates: "{}" + 5 of 10 tokens
        int a = (L * 3) / 20, b = (L * 7) / 20;
        if (b > L - 2) b = L - 2;
        if (b < a) b = a;
        if (b - a > 4) a = b - 4;
        if (a < 0) a = 0;
        hp->n_layers = 0;
        for (int l = a; l <= b; l++) hp->layers[hp->n_layers++] = l;
        hp->ctx_len[0][0] = 10; hp->ctx_len[0][1] = 5;
        hp->n_ctx_len = 1;
        hp->v_point = KED_HOOK_RESID_OUT;
        hp->mom2_adjustment = 1;
    }
    // PMET: MEMIT's layers, templates and lambda; its z is the MLP's output (and an attention
    // delta beside it, pmet.c); EasyEdit's nll_loss_factor 1
    hp->nll_loss_factor = 1.0f;
    if (id == 8) hp->v_point = KED_HOOK_MLP_OUT;
    return KED_OK;
}

/* ---- a small YAML reader: a top-level mapping of scalars and (nested) lists --------------------- */

typedef struct {
    char *key;
    char *scalar;             // NULL for a list
    double nums[64];          // a list's numbers, flattened (nested lists too)
    int n_nums, n_items;      // numbers; top-level items
    char *strs[8];            // a list's items that are not numbers (PMET's rewrite_module_tmps)
    int n_strs;
    int line;
} yaml_entry;

typedef struct {
    yaml_entry *e;
    int n;
} yaml_map;

static void map_free(yaml_map *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->e[i].key);
        free(m->e[i].scalar);
        for (int k = 0; k < m->e[i].n_strs; k++) free(m->e[i].strs[k]);
    }
    free(m->e);
}

static ked_status map_read(const char *path, yaml_map *out, ked_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ked_fail(err, KED_ERR_IO, "%s: cannot open", path);
    yaml_parser_t ps;
    yaml_parser_initialize(&ps);
    yaml_parser_set_input_file(&ps, f);
    memset(out, 0, sizeof *out);
    ked_status st = KED_OK;
    int depth = 0, seq_depth = 0, done = 0;
    yaml_entry *cur = NULL; // the entry whose value is being read
    while (!done && !st) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: line %zu: %s", path, ps.problem_mark.line + 1,
                          ps.problem ? ps.problem : "YAML syntax error");
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_MAPPING_START_EVENT:
            if (depth > 0 || seq_depth > 0)
                st = ked_fail(err, KED_ERR_FORMAT, "%s: line %d: nested mappings are not "
                              "EasyEdit hparams", path, line);
            depth++;
            break;
        case YAML_MAPPING_END_EVENT: depth--; break;
        case YAML_SEQUENCE_START_EVENT:
            if (!cur) { st = ked_fail(err, KED_ERR_FORMAT, "%s: line %d: a list where a key "
                                      "was expected", path, line); break; }
            if (seq_depth == 1) cur->n_items++;
            seq_depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
            if (--seq_depth == 0) cur = NULL;
            break;
        case YAML_SCALAR_EVENT: {
            const char *v = (const char *)ev.data.scalar.value;
            if (depth != 1) break;
            if (!cur) { // a key
                yaml_entry *ne = realloc(out->e, sizeof *ne * (size_t)(out->n + 1));
                if (!ne) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); break; }
                out->e = ne;
                cur = &out->e[out->n++];
                memset(cur, 0, sizeof *cur);
                cur->key = strdup(v);
                cur->line = line;
            } else if (seq_depth == 0) { // a scalar value
                cur->scalar = strdup(v);
                cur = NULL;
            } else { // a list item
                char *end;
                double d = strtod(v, &end);
                if (end == v || *end) { // a string item: kept; fields of numbers refuse it
                    if (cur->n_strs == 8)
                        st = ked_fail(err, KED_ERR_FORMAT, "%s: line %d: field '%s': too many items",
                                      path, line, cur->key);
                    else if (!(cur->strs[cur->n_strs++] = strdup(v)))
                        st = ked_fail(err, KED_ERR_NOMEM, "out of memory");
                    if (seq_depth == 1) cur->n_items++;
                } else if (cur->n_nums == 64) {
                    st = ked_fail(err, KED_ERR_FORMAT, "%s: line %d: field '%s': too many items",
                                  path, line, cur->key);
                } else {
                    cur->nums[cur->n_nums++] = d;
                    if (seq_depth == 1) cur->n_items++;
                }
            }
            break;
        }
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&ps);
    fclose(f);
    if (st) map_free(out);
    return st;
}

static const yaml_entry *map_get(const yaml_map *m, const char *key) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->e[i].key, key)) return &m->e[i];
    return NULL;
}

// typed fields; a missing required field or a value of the wrong type names the file and key
static ked_status get_num(const yaml_map *m, const char *path, const char *key, int required,
                          double *out, ked_error *err) {
    const yaml_entry *e = map_get(m, key);
    if (!e || (e->scalar && (!strcmp(e->scalar, "null") || !*e->scalar))) {
        return required ? ked_fail(err, KED_ERR_FORMAT, "%s: missing field '%s'", path, key) : KED_OK;
    }
    char *end = NULL;
    double d = e->scalar ? strtod(e->scalar, &end) : 0;
    if (!e->scalar || end == e->scalar || *end)
        return ked_fail(err, KED_ERR_FORMAT, "%s: line %d: field '%s' must be a number", path,
                        e->line, key);
    *out = d;
    return KED_OK;
}

static ked_status get_bool(const yaml_map *m, const char *path, const char *key, int *out,
                           ked_error *err) {
    const yaml_entry *e = map_get(m, key);
    if (!e) return KED_OK;
    const char *v = e->scalar ? e->scalar : "";
    if (!strcmp(v, "true") || !strcmp(v, "True")) *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "False")) *out = 0;
    else return ked_fail(err, KED_ERR_FORMAT, "%s: line %d: field '%s' must be true or false",
                         path, e->line, key);
    return KED_OK;
}

// a list that must hold numbers only
static ked_status num_list(const yaml_entry *e, const char *path, ked_error *err) {
    if (e && e->n_strs > 0)
        return ked_fail(err, KED_ERR_FORMAT, "%s: line %d: field '%s': list item '%s' is not a "
                        "number", path, e->line, e->key, e->strs[0]);
    return KED_OK;
}

static const char *get_str(const yaml_map *m, const char *key) {
    const yaml_entry *e = map_get(m, key);
    return e ? e->scalar : NULL;
}

/* ---- module templates ------------------------------------------------------------------------- */

// what a template names, relative to a family's layer prefix
typedef enum { MOD_DOWN = 0, MOD_MLP, MOD_LAYER, MOD_ATTN, MOD_ATTN_OUT, MOD_COUNT } module_kind;

typedef struct {
    const char *family;
    const char *prefixes[3];  // the layer's module path with "{}" for the index
    const char *suffix[MOD_COUNT];
} family_modules;

static const family_modules fam_modules[] = {
    {"llama", {"model.layers.{}", "layers.{}", NULL},
     {".mlp.down_proj", ".mlp", "", ".self_attn", ".self_attn.o_proj"}},
    {"mistral", {"model.layers.{}", "layers.{}", NULL},
     {".mlp.down_proj", ".mlp", "", ".self_attn", ".self_attn.o_proj"}},
    {"qwen2", {"model.layers.{}", "layers.{}", NULL},
     {".mlp.down_proj", ".mlp", "", ".self_attn", ".self_attn.o_proj"}},
    {"gpt2", {"transformer.h.{}", "h.{}", NULL}, {".mlp.c_proj", ".mlp", "", ".attn", ".attn.c_proj"}},
    {"gptj", {"transformer.h.{}", "h.{}", NULL}, {".mlp.fc_out", ".mlp", "", ".attn", ".attn.out_proj"}},
    {"gpt_neox", {"gpt_neox.layers.{}", "layers.{}", NULL},
     {".mlp.dense_4h_to_h", ".mlp", "", ".attention", ".attention.dense"}},
};

// which module kind a template names in m's family; *weight_only: it ended in ".weight"
static int template_kind(const ked_model *m, const char *tmpl, int *weight_only) {
    const char *fam = ked_model_config(m)->family;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", tmpl);
    size_t n = strlen(buf);
    if (weight_only) *weight_only = 0;
    if (n > 7 && !strcmp(buf + n - 7, ".weight")) { buf[n - 7] = 0; if (weight_only) *weight_only = 1; }
    for (size_t f = 0; f < sizeof fam_modules / sizeof fam_modules[0]; f++) {
        if (strcmp(fam_modules[f].family, fam)) continue;
        for (int p = 0; p < 3 && fam_modules[f].prefixes[p]; p++)
            for (int k = 0; k < MOD_COUNT; k++) {
                char full[256];
                snprintf(full, sizeof full, "%s%s", fam_modules[f].prefixes[p], fam_modules[f].suffix[k]);
                if (!strcmp(full, buf)) return k;
            }
    }
    return -1;
}

static ked_status check_template(const ked_model *m, const yaml_map *y, const char *path,
                                 const char *key, int want, int required, int *weight_only,
                                 ked_error *err) {
    const char *t = get_str(y, key);
    if (!t) return required ? ked_fail(err, KED_ERR_FORMAT, "%s: missing field '%s'", path, key) : KED_OK;
    int k = template_kind(m, t, weight_only);
    static const char *what[MOD_COUNT] = {"the MLP's output projection", "the MLP", "a layer",
                                          "the attention block", "the attention's output projection"};
    if (k != want)
        return ked_fail(err, KED_ERR_UNSUPPORTED, "%s: field '%s': '%s' names %s of a %s model, "
                        "%s expected", path, key, t, k < 0 ? "nothing" : what[k],
                        ked_model_config(m)->family, what[want]);
    return KED_OK;
}

// PMET's templates: mlp_module_tmp names the MLP or its down projection (both: mlp_out),
// attn_module_tmp the attention block or its output projection (attn_out); rewrite_module_tmps
// (EasyEdit's list of the modules PMET writes) may name only the down projection
static ked_status check_pmet_templates(const ked_model *m, const yaml_map *y, const char *path,
                                       ked_error *err) {
    const char *fam = ked_model_config(m)->family;
    static const char *keys[2] = {"mlp_module_tmp", "attn_module_tmp"};
    static const int want[2][2] = {{MOD_DOWN, MOD_MLP}, {MOD_ATTN_OUT, MOD_ATTN}};
    static const char *what[2] = {"the MLP or its output projection",
                                  "the attention block or its output projection"};
    for (int i = 0; i < 2; i++) {
        const char *t = get_str(y, keys[i]);
        if (!t) return ked_fail(err, KED_ERR_FORMAT, "%s: missing field '%s'", path, keys[i]);
        int k = template_kind(m, t, NULL);
        if (k != want[i][0] && k != want[i][1])
            return ked_fail(err, KED_ERR_UNSUPPORTED, "%s: field '%s': '%s' names %s of a %s model, "
                            "%s expected", path, keys[i], t, k < 0 ? "nothing" : "another module",
                            fam, what[i]);
    }
    const yaml_entry *e = map_get(y, "rewrite_module_tmps");
    if (!e) return KED_OK; // EasyEdit's default: the down projection alone
    if (e->scalar || e->n_strs < 1 || e->n_nums > 0)
        return ked_fail(err, KED_ERR_FORMAT, "%s: line %d: field 'rewrite_module_tmps' must be a "
                        "list of module templates", path, e->line);
    for (int i = 0; i < e->n_strs; i++) {
        int k = template_kind(m, e->strs[i], NULL);
        if (k == MOD_ATTN_OUT || k == MOD_ATTN)
            return ked_fail(err, KED_ERR_UNSUPPORTED, "%s: line %d: field 'rewrite_module_tmps': "
                            "'%s' is the attention's output projection: ked's PMET edits only the "
                            "MLP's down projection (it has no hook at the input of the attention's "
                            "output projection, and no statistics of it)", path, e->line, e->strs[i]);
        if (k != MOD_DOWN)
            return ked_fail(err, KED_ERR_UNSUPPORTED, "%s: line %d: field 'rewrite_module_tmps': "
                            "'%s' names %s of a %s model, the MLP's output projection expected",
                            path, e->line, e->strs[i], k < 0 ? "nothing" : "another module", fam);
    }
    return KED_OK;
}

/* ---- reading a file ---------------------------------------------------------------------------- */

ked_status ked_hparams_load(const ked_model *m, const char *path, const char *method,
                            ked_hparams *hp, ked_error *err) {
    yaml_map y;
    ked_status st = map_read(path, &y, err);
    if (st) return st;
    const char *alg = get_str(&y, "alg_name");
    const char *mname = NULL;
    if (!alg) { st = ked_fail(err, KED_ERR_FORMAT, "%s: missing field 'alg_name'", path); goto done; }
    if (!strcmp(alg, "ROME")) mname = "rome";
    else if (!strcmp(alg, "MEMIT")) mname = "memit";
    else if (!strcmp(alg, "EMMET")) mname = "emmet";
    else if (!strcmp(alg, "AlphaEdit")) mname = "alphaedit";
    else if (!strcmp(alg, "PMET")) mname = "pmet";
    else if (!strcmp(alg, "R-ROME")) mname = "r-rome";
    else if (!strcmp(alg, "FT")) {
        const char *obj = get_str(&y, "objective_optimization");
        mname = obj && !strcmp(obj, "target_new") ? "ft-m" : "ft-l";
        if (obj && strcmp(obj, "target_new") && strcmp(obj, "prompt_last")) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: objective_optimization '%s' (prompt_last or "
                          "target_new expected)", path, obj);
            goto done;
        }
        if (method && (!strcmp(method, "ft-l") || !strcmp(method, "ft-m"))) mname = method;
    } else {
        st = ked_fail(err, KED_ERR_UNSUPPORTED, "%s: alg_name '%s': ked edits with ROME, R-ROME, "
                      "MEMIT, EMMET, AlphaEdit, PMET and FT files (known methods: %s)", path, alg,
                      ked_edit_methods());
        goto done;
    }
    if (method && strcmp(method, mname) && !(!strcmp(method, "ft") && !strcmp(mname, "ft-l")) &&
        !(!strcmp(mname, "ft-l") && !strcmp(method, "ft-m")) && !(!strcmp(mname, "ft-m") && !strcmp(method, "ft-l"))) {
        st = ked_fail(err, KED_ERR_ARG, "%s: alg_name %s does not fit method '%s'", path, alg, method);
        goto done;
    }
    if ((st = ked_hparams_defaults(m, mname, hp, err))) goto done;
    snprintf(hp->source, sizeof hp->source, "%s", path);
    double d;
    int pmet = !strcmp(mname, "pmet");
    int memit_like = !strcmp(mname, "memit") || !strcmp(mname, "emmet") ||
                     !strcmp(mname, "alphaedit") || pmet;
    if (!strcmp(mname, "rome") || !strcmp(mname, "r-rome") || memit_like) {
        const char *ft = get_str(&y, "fact_token");
        if (!ft) { st = ked_fail(err, KED_ERR_FORMAT, "%s: missing field 'fact_token'", path); goto done; }
        if (!strcmp(ft, "subject_last")) hp->fact_token = KED_FACT_SUBJECT_LAST;
        else if (!strcmp(ft, "last")) hp->fact_token = KED_FACT_LAST;
        else if (!strcmp(ft, "subject_first")) hp->fact_token = KED_FACT_SUBJECT_FIRST;
        else if (!strcmp(ft, "subject_first_after_last")) hp->fact_token = KED_FACT_SUBJECT_FIRST_AFTER_LAST;
        else { st = ked_fail(err, KED_ERR_FORMAT, "%s: fact_token '%s' (subject_last, last, "
                             "subject_first or subject_first_after_last expected)", path, ft); goto done; }
        if ((st = get_num(&y, path, "v_num_grad_steps", 1, &d, err))) goto done;
        hp->v_num_grad_steps = (int)d;
        if ((st = get_num(&y, path, "v_lr", 1, &d, err))) goto done;
        hp->v_lr = (float)d;
        if ((st = get_num(&y, path, "v_loss_layer", 1, &d, err))) goto done;
        hp->v_loss_layer = (int)d;
        if ((st = get_num(&y, path, "v_weight_decay", 1, &d, err))) goto done;
        hp->v_weight_decay = (float)d;
        if ((st = get_num(&y, path, "clamp_norm_factor", 1, &d, err))) goto done;
        hp->clamp_norm_factor = (float)d;
        if ((st = get_num(&y, path, "kl_factor", 1, &d, err))) goto done;
        hp->kl_factor = (float)d;
        if ((st = get_bool(&y, path, "mom2_adjustment", &hp->mom2_adjustment, err))) goto done;
        if ((st = get_bool(&y, path, "enable_random_prefix_keys", &hp->random_prefix_keys, err))) goto done;
        const yaml_entry *ce = map_get(&y, "context_template_length_params");
        if ((st = num_list(ce, path, err))) goto done;
        if (ce) {
            if (ce->scalar || ce->n_nums % 2 || ce->n_nums / 2 > 4 || ce->n_nums == 0) {
                st = ked_fail(err, KED_ERR_FORMAT, "%s: line %d: context_template_length_params "
                              "must be a list of up to 4 [length, count] pairs", path, ce->line);
                goto done;
            }
            hp->n_ctx_len = ce->n_nums / 2;
            for (int i = 0; i < hp->n_ctx_len; i++) {
                hp->ctx_len[i][0] = (int)ce->nums[2 * i];
                hp->ctx_len[i][1] = (int)ce->nums[2 * i + 1];
            }
        }
        if (hp->v_num_grad_steps < 1 || !(hp->v_lr > 0)) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: v_num_grad_steps and v_lr must be positive", path);
            goto done;
        }
        if ((st = check_template(m, &y, path, "rewrite_module_tmp", MOD_DOWN, 1, NULL, err))) goto done;
        if (pmet) {
            if ((st = check_pmet_templates(m, &y, path, err))) goto done;
        } else {
            if ((st = check_template(m, &y, path, "mlp_module_tmp", MOD_MLP, 1, NULL, err))) goto done;
            if ((st = check_template(m, &y, path, "attn_module_tmp", MOD_ATTN, 0, NULL, err))) goto done;
        }
        if ((st = check_template(m, &y, path, "layer_module_tmp", MOD_LAYER, 0, NULL, err))) goto done;
        hp->v_point = memit_like && !pmet ? KED_HOOK_RESID_OUT : KED_HOOK_MLP_OUT;
        if (pmet) {
            d = hp->nll_loss_factor;
            if ((st = get_num(&y, path, "nll_loss_factor", 1, &d, err))) goto done;
            hp->nll_loss_factor = (float)d;
        }
        // statistics
        const char *sv;
        if ((sv = get_str(&y, "mom2_dataset"))) snprintf(hp->mom2_dataset, sizeof hp->mom2_dataset, "%s", sv);
        if ((sv = get_str(&y, "stats_dir"))) snprintf(hp->stats_dir, sizeof hp->stats_dir, "%s", sv);
        if ((sv = get_str(&y, "rewrite_module_tmp"))) snprintf(hp->rewrite_tmp, sizeof hp->rewrite_tmp, "%s", sv);
        d = hp->mom2_n_samples;
        if ((st = get_num(&y, path, "mom2_n_samples", 0, &d, err))) goto done;
        hp->mom2_n_samples = (int)d;
        const char *dt = get_str(&y, "mom2_dtype");
        if (dt && strcmp(dt, "float32") && strcmp(dt, "float64")) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: mom2_dtype '%s' (float32 expected)", path, dt);
            goto done;
        }
        if (memit_like) {
            d = hp->mom2_update_weight;
            if ((st = get_num(&y, path, "mom2_update_weight", !strcmp(mname, "alphaedit") ? 0 : 1, &d, err))) goto done;
            hp->mom2_update_weight = (float)d;
            d = hp->emmet_lambda;
            if ((st = get_num(&y, path, "emmet_lambda", !strcmp(mname, "emmet"), &d, err))) goto done;
            hp->emmet_lambda = (float)d;
            d = hp->update_norm_lambda;
            if ((st = get_num(&y, path, "update_norm_lambda", 0, &d, err))) goto done;
            hp->update_norm_lambda = (float)d;
            d = hp->nullspace_threshold;
            if ((st = get_num(&y, path, "nullspace_threshold", !strcmp(mname, "alphaedit"), &d, err))) goto done;
            hp->nullspace_threshold = (float)d;
            d = hp->L2;
            if ((st = get_num(&y, path, "L2", !strcmp(mname, "alphaedit"), &d, err))) goto done;
            hp->L2 = (float)d;
            if (!(hp->mom2_update_weight > 0) && strcmp(mname, "alphaedit")) {
                st = ked_fail(err, KED_ERR_FORMAT, "%s: mom2_update_weight must be positive", path);
                goto done;
            }
        }
    } else { // FT
        if ((st = get_num(&y, path, "num_steps", 1, &d, err))) goto done;
        hp->num_steps = (int)d;
        if ((st = get_num(&y, path, "batch_size", 0, &d, err))) goto done;
        if ((st = get_num(&y, path, "lr", 1, &d, err))) goto done;
        hp->lr = (float)d;
        d = 0;
        if ((st = get_num(&y, path, "weight_decay", 0, &d, err))) goto done;
        hp->weight_decay = (float)d;
        const char *nc = get_str(&y, "norm_constraint");
        hp->norm_constraint = 0;
        if (nc && strcmp(nc, "false") && strcmp(nc, "False")) {
            if ((st = get_num(&y, path, "norm_constraint", 1, &d, err))) goto done;
            hp->norm_constraint = (float)d;
        }
        int weight_only = 0;
        if ((st = check_template(m, &y, path, "rewrite_module_tmp", MOD_DOWN, 1, &weight_only, err))) goto done;
        hp->ft_bias = !weight_only;
        if (hp->num_steps < 0 || !(hp->lr > 0)) {
            st = ked_fail(err, KED_ERR_FORMAT, "%s: num_steps must be >= 0 and lr positive", path);
            goto done;
        }
    }
    // layers (after the templates, so a file for another family says that first)
    const yaml_entry *le = map_get(&y, "layers");
    if ((st = num_list(le, path, err))) goto done;
    if (!le || le->scalar || le->n_nums < 1 || le->n_nums > KED_MAX_EDIT_LAYERS) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: field 'layers' must be a list of 1 to %d layer "
                      "indices", path, KED_MAX_EDIT_LAYERS);
        goto done;
    }
    int L = ked_model_config(m)->n_layer;
    hp->n_layers = le->n_nums;
    for (int i = 0; i < le->n_nums; i++) {
        hp->layers[i] = (int)le->nums[i];
        if (hp->layers[i] != le->nums[i] || hp->layers[i] < 0 || hp->layers[i] >= L) {
            st = ked_fail(err, KED_ERR_ARG, "%s: line %d: layer %g is not a layer of %s (0..%d)",
                          path, le->line, le->nums[i], ked_model_path(m), L - 1);
            goto done;
        }
    }
done:
    map_free(&y);
    return st;
}
