// run.c: a whole evaluation (docs/evaluation.md, "Runs"): EasyEdit's edit_requests (single:
// each edit evaluated and rolled back; sequential: edits accumulate, "post" right after each edit
// and "post_final" after the last) and batches of B requests, then evaluated together: one joint
// edit (ked_edit_batch) for MEMIT, EMMET, PMET and AlphaEdit (EasyEdit's batch_edit), B edits one
// after another for the single-request methods. "pre" is always measured on the unedited model. The results file is
// rewritten atomically after each case or batch; a file left by an interrupted run with the same
// settings is resumed (sequential runs recompute the finished cases' edits, which are
// deterministic, before going on).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "edit/edit.h"
#include "eval/eval.h"

ked_eval_opts ked_eval_defaults(void) {
    ked_eval_opts o;
    memset(&o, 0, sizeof o);
    o.method = "none";
    o.batch = 1;
    o.fluency = 1;
    o.fluency_len = 100;
    return o;
}

typedef struct {
    ked_model *m;
    const ked_tokenizer *tok;
    const ked_dataset *d;
    const ked_eval_opts *o;
    int n, off, B, edit;
    int joint;                // memit, emmet, pmet, alphaedit: a batch is one ked_edit_batch
    json_t *root, *results;
    double t0;
    int edits_done, cases_done_here;
    double phase_t0;          // the current phase's start and cases done then (for the time left)
    int phase_done0;
    ked_editor *ed;
    char **tmpl;
    int n_tmpl;
} run_ctx;

static ked_status write_out(run_ctx *r, ked_eval_summary *sum, ked_error *err) {
    ked_eval_summary s;
    json_object_set_new(r->root, "summary", eval_summary_json(r->results, sum ? sum : &s));
    char *txt = json_dumps(r->root, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!txt) return ked_fail(err, KED_ERR_NOMEM, "%s: cannot serialise the results", r->o->out);
    size_t len = strlen(txt);
    char *buf = realloc(txt, len + 2);
    if (!buf) { free(txt); return ked_fail(err, KED_ERR_NOMEM, "out of memory"); }
    buf[len] = '\n';
    buf[len + 1] = 0;
    ked_status st = ked_write_file_atomic(r->o->out, buf, len + 1, err);
    free(buf);
    return st;
}

static void progress_table(run_ctx *r, const char *phase, int done, int total, const char *table) {
    if (!r->o->on_progress) return;
    ked_eval_progress p;
    p.table = table;
    p.done = done;
    p.total = total;
    p.phase = phase;
    p.elapsed_s = ked_time_s() - r->t0;
    p.edits_per_s = p.elapsed_s > 0 ? r->edits_done / p.elapsed_s : 0;
    double pe = ked_time_s() - r->phase_t0;
    int pd = done - r->phase_done0;
    p.eta_s = pd > 0 ? pe / pd * (total - done) : NAN;
    r->o->on_progress(&p, r->o->user);
}

static void progress(run_ctx *r, const char *phase, int done, int total) {
    progress_table(r, phase, done, total, NULL);
}

static void phase_begin(run_ctx *r, int done) {
    r->phase_t0 = ked_time_s();
    r->phase_done0 = done;
}

static const ked_case *case_at(run_ctx *r, int i) { return ked_dataset_case(r->d, r->off + i); }

// --retention: after the batch that ends at case e, every edited case's rewrite_acc (EasyEdit's
// teacher-forced token accuracy of target_new after the prompt) and the mean per-token NLL of
// target_new (ROME's rewrite probability, which shows a fading edit before its accuracy drops)
// on the model as it is now, as means per batch: {"after": e, "rewrite_acc": [batch 1, ...],
// "rewrite_nll": [...]} (NaN: null); the summary table prints it (summary.c)
static ked_status retention_after(run_ctx *r, int e, json_t **entry, ked_error *err) {
    json_t *means = json_array(), *nlls = json_array();
    *entry = json_pack("{s:i,s:o,s:o}", "after", e, "rewrite_acc", means, "rewrite_nll", nlls);
    if (!*entry) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    for (int b0 = 0; b0 < e; b0 += r->B) {
        int b1 = b0 + r->B < e ? b0 + r->B : e, n = 0;
        double sum = 0, sum_nll = 0;
        for (int i = b0; i < b1; i++) {
            const ked_request *q = &case_at(r, i)->req;
            double acc, nll;
            int k;
            ked_status st = eval_teacher_forced(r->m, r->tok, q->prompt, q->target_new, r->o->aligned_targets, &acc,
                                                &nll, NULL, NULL, &k, err);
            if (st) {
                ked_prefix_error(err, "case %d (record %d): retention", i, case_at(r, i)->record);
                json_decref(*entry);
                *entry = NULL;
                return st;
            }
            if (isfinite(acc)) { sum += acc; sum_nll += nll; n++; }
        }
        json_array_append_new(means, eval_real(n ? sum / n : NAN));
        json_array_append_new(nlls, eval_real(n ? sum_nll / n : NAN));
    }
    return KED_OK;
}

static quality_opts qopts(run_ctx *r, int i) {
    quality_opts q;
    q.aligned = r->o->aligned_targets;
    q.fluency = r->o->fluency;
    q.fluency_len = r->o->fluency_len > 0 ? r->o->fluency_len : 100;
    q.fluency_seed = r->o->seed * 1000003u + (uint64_t)case_at(r, i)->record;
    return q;
}

static ked_status quality(run_ctx *r, int i, json_t **out, ked_error *err) {
    quality_opts q = qopts(r, i);
    ked_status st = eval_quality(r->m, r->tok, case_at(r, i), &q, out, err);
    if (st) ked_prefix_error(err, "case %d (record %d)", i, case_at(r, i)->record);
    return st;
}

static ked_edit_opts edit_opts(run_ctx *r) {
    ked_edit_opts eo = ked_edit_defaults();
    eo.seed = r->o->seed;
    eo.templates = (const char *const *)r->tmpl;
    eo.n_templates = r->n_tmpl;
    eo.stats = r->o->stats;
    eo.editor = r->ed; // AlphaEdit's cache_c: the keys of the edits applied (sequential)
    return eo;
}

// AlphaEdit: the null space its projector keeps, {"null_space": [kept, of, layer]} (the same for
// every edit of a run: the projector is the base model's; docs/editing.md)
static void note_edit(run_ctx *r, const ked_edit_info *info) {
    if (strcmp(info->method, "alphaedit")) return;
    json_t *e = json_object();
    json_object_set_new(e, "null_space", json_pack("[i,i,i]", info->null_space_dim, ked_model_config(r->m)->d_ff,
                                                   info->layer));
    json_object_set_new(r->root, "edit_info", e);
}

// edit case i and apply the patch; *id its editor id
static ked_status do_edit(run_ctx *r, int i, int *id, ked_error *err) {
    ked_edit_opts eo = edit_opts(r);
    ked_patch *p = NULL;
    ked_edit_info info;
    ked_status st = ked_edit(r->m, r->tok, r->o->hp, &case_at(r, i)->req, &eo, &p, &info, err);
    if (!st) note_edit(r, &info);
    if (!st) st = ked_editor_apply(r->ed, p, id, err);
    if (st) ked_prefix_error(err, "case %d (record %d): edit", i, case_at(r, i)->record);
    r->edits_done += !st;
    return st;
}

// edit cases s..e-1 with one joint edit (MEMIT, EMMET, AlphaEdit) and apply the patch
static ked_status do_edit_joint(run_ctx *r, int s, int e, int *id, ked_error *err) {
    ked_edit_opts eo = edit_opts(r);
    int nb = e - s;
    ked_request *rq = ked_malloc(sizeof *rq * (size_t)nb, "requests", err);
    if (!rq) return KED_ERR_NOMEM;
    for (int i = s; i < e; i++) rq[i - s] = case_at(r, i)->req;
    ked_patch *p = NULL;
    ked_edit_info info;
    ked_status st = ked_edit_batch(r->m, r->tok, r->o->hp, rq, nb, &eo, &p, &info, err);
    free(rq);
    if (!st) note_edit(r, &info);
    if (!st) st = ked_editor_apply(r->ed, p, id, err);
    if (st) ked_prefix_error(err, "cases %d..%d (records %d..%d): batch edit", s, e - 1, case_at(r, s)->record,
                             case_at(r, e - 1)->record);
    r->edits_done += st ? 0 : nb;
    return st;
}

// edit cases s..e-1 (a batch) and apply them: one patch (ids[0]) for a joint method, else one
// per case (ids[i - s]); *n_ids patches in all
static ked_status edit_range(run_ctx *r, int s, int e, int *ids, int *n_ids, ked_error *err) {
    *n_ids = 0;
    if (r->joint) {
        ked_status st = do_edit_joint(r, s, e, &ids[0], err);
        *n_ids = !st;
        return st;
    }
    for (int i = s; i < e; i++) {
        ked_status st = do_edit(r, i, &ids[i - s], err);
        if (st) return st;
        (*n_ids)++;
    }
    return KED_OK;
}

static json_t *meta_json(run_ctx *r) {
    const ked_eval_opts *o = r->o;
    json_t *m = json_object();
    json_object_set_new(m, "version", json_integer(1));
    json_object_set_new(m, "model", json_string(o->model_name ? o->model_name : ked_model_path(r->m)));
    json_object_set_new(m, "data", json_string(o->data_name ? o->data_name : "?"));
    json_object_set_new(m, "format", json_string(ked_data_format_name(ked_dataset_format(r->d))));
    json_object_set_new(m, "method", json_string(r->edit ? o->hp->method : "none"));
    json_object_set_new(m, "hparams", json_string(r->edit ? o->hp->source : ""));
    json_t *layers = json_array();
    for (int i = 0; r->edit && i < o->hp->n_layers; i++) json_array_append_new(layers, json_integer(o->hp->layers[i]));
    json_object_set_new(m, "layers", layers);
    json_object_set_new(m, "mode", json_string(o->sequential ? "sequential" : "single"));
    json_object_set_new(m, "batch", json_integer(r->B));
    json_object_set_new(m, "n", json_integer(r->n));
    json_object_set_new(m, "offset", json_integer(r->off));
    json_object_set_new(m, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(m, "fluency", json_integer(o->fluency ? (o->fluency_len > 0 ? o->fluency_len : 100) : 0));
    json_object_set_new(m, "targets", json_string(o->aligned_targets ? "aligned" : "easyedit"));
    if (o->retention) json_object_set_new(m, "retention", json_true()); // absent when off (older files resume)
    json_object_set_new(m, "records", json_integer(ked_dataset_n_records(r->d)));
    json_object_set_new(m, "cases", json_integer(ked_dataset_n(r->d)));
    json_object_set_new(m, "skipped_records", json_integer(ked_dataset_n_skipped(r->d)));
    json_object_set_new(m, "dropped_answers", json_integer(ked_dataset_n_dropped(r->d)));
    return m;
}

// a results file to resume: its settings must be ours
static ked_status resume_load(run_ctx *r, json_t *meta, ked_error *err) {
    if (!ked_file_exists(r->o->out)) return KED_OK;
    json_error_t je;
    json_t *old = json_load_file(r->o->out, 0, &je);
    if (!old)
        return ked_fail(err, KED_ERR_FORMAT, "%s: line %d: %s (not a results file to resume; remove it)",
                        r->o->out, je.line, je.text);
    json_t *om = json_object_get(old, "ked_eval"), *res = json_object_get(old, "results");
    if (!json_is_object(om) || !json_is_array(res)) {
        json_decref(old);
        return ked_fail(err, KED_ERR_FORMAT, "%s: not a ked eval results file (fields ked_eval, results)", r->o->out);
    }
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v) {
        if (!strcmp(key, "complete")) continue;
        json_t *w = json_object_get(om, key);
        if (!w || !json_equal(v, w)) {
            char *a = json_dumps(v, JSON_ENCODE_ANY), *b = w ? json_dumps(w, JSON_ENCODE_ANY) : NULL;
            ked_fail(err, KED_ERR_ARG, "%s: written by a run with other settings (%s: %s there, %s now); "
                     "remove it or use another --out", r->o->out, key, b ? b : "missing", a ? a : "?");
            free(a);
            free(b);
            json_decref(old);
            return KED_ERR_ARG;
        }
    }
    size_t done = json_array_size(res);
    if ((int)done > r->n || (done % (size_t)r->B && (int)done != r->n)) {
        json_decref(old);
        return ked_fail(err, KED_ERR_FORMAT, "%s: %zu results do not fit %d cases in batches of %d", r->o->out,
                        done, r->n, r->B);
    }
    for (size_t i = 0; i < done; i++)
        if (!json_is_object(json_object_get(json_array_get(res, i), "pre"))) {
            json_decref(old);
            return ked_fail(err, KED_ERR_FORMAT, "%s: results[%zu]: no \"pre\"", r->o->out, i);
        }
    json_object_set(r->root, "results", res);
    json_decref(r->results);
    r->results = json_incref(res);
    if (json_is_object(json_object_get(old, "edit_info")))
        json_object_set(r->root, "edit_info", json_object_get(old, "edit_info"));
    json_t *ret = json_object_get(old, "retention");
    if (json_is_array(ret) && json_object_get(r->root, "retention")) json_object_set(r->root, "retention", ret);
    json_t *c = json_object_get(om, "complete");
    json_object_set_new(json_object_get(r->root, "ked_eval"), "complete", json_boolean(json_is_true(c)));
    json_decref(old);
    return KED_OK;
}

ked_status ked_eval_run(ked_model *m, const ked_tokenizer *tok, const ked_dataset *d,
                        const ked_eval_opts *o, ked_eval_summary *sum, char **table, ked_error *err) {
    run_ctx R;
    memset(&R, 0, sizeof R);
    run_ctx *r = &R;
    r->m = m; r->tok = tok; r->d = d; r->o = o;
    r->edit = o->method && strcmp(o->method, "none");
    if (r->edit && !o->hp) return ked_fail(err, KED_ERR_ARG, "eval: method %s without hyperparameters", o->method);
    if (!o->out) return ked_fail(err, KED_ERR_ARG, "eval: no output file");
    if (o->retention && (!r->edit || !o->sequential))
        return ked_fail(err, KED_ERR_ARG, "eval: retention needs a sequential run of an editing method");
    int N = ked_dataset_n(d);
    if (o->offset < 0 || o->offset > N)
        return ked_fail(err, KED_ERR_ARG, "eval: offset %d outside the dataset's %d cases", o->offset, N);
    r->off = o->offset;
    r->n = o->n > 0 && o->n < N - r->off ? o->n : N - r->off;
    r->B = o->batch > 1 ? o->batch : 1;
    r->joint = r->edit && (!strcmp(o->hp->method, "memit") || !strcmp(o->hp->method, "emmet") ||
                           !strcmp(o->hp->method, "alphaedit") || !strcmp(o->hp->method, "pmet"));
    r->t0 = ked_time_s();
    ked_status st = KED_OK;
    json_t **pre = NULL;
    int *ids = NULL;

    r->root = json_object();
    r->results = json_array();
    json_t *meta = meta_json(r);
    json_object_set_new(meta, "complete", json_false());
    json_object_set_new(r->root, "ked_eval", meta);
    json_object_set(r->root, "results", r->results);
    if (r->edit && o->sequential && o->retention) json_object_set_new(r->root, "retention", json_array());
    if ((st = resume_load(r, meta, err))) goto done;
    meta = json_object_get(r->root, "ked_eval");
    int done0 = (int)json_array_size(r->results);
    int complete = json_is_true(json_object_get(meta, "complete"));

    if (r->edit && !complete) {
        if ((st = ked_editor_new(m, &r->ed, err))) goto done;
        if (!strncmp(o->hp->method, "rome", 4) || !strcmp(o->hp->method, "r-rome") || r->joint) {
            // EasyEdit samples the context templates once per process, from the unedited model
            // (ROME's and MEMIT's CONTEXT_TEMPLATES_CACHE)
            if ((st = edit_templates_sample(m, tok, (const int (*)[2])o->hp->ctx_len, o->hp->n_ctx_len,
                                            o->seed, &r->tmpl, &r->n_tmpl, err)))
                goto done;
        }
    }
    pre = calloc((size_t)r->n + 1, sizeof *pre);
    ids = calloc((size_t)r->B + 1, sizeof *ids);
    if (!pre || !ids) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    if (!complete && r->edit && o->sequential) {
        // pre of every remaining case on the unedited model, then the finished cases' edits again
        phase_begin(r, done0);
        for (int i = done0; i < r->n; i++) {
            if ((st = quality(r, i, &pre[i], err))) goto done;
            progress(r, "pre", i + 1, r->n);
        }
        phase_begin(r, 0);
        for (int s = 0; s < done0; s += r->B) {
            int e = s + r->B < done0 ? s + r->B : done0, nid;
            if ((st = edit_range(r, s, e, ids, &nid, err))) goto done;
            progress(r, "replay", e, done0);
        }
    }
    phase_begin(r, done0);
    for (int s = done0; s < r->n && !complete; s += r->B) {
        int e = s + r->B < r->n ? s + r->B : r->n;
        for (int i = s; i < e; i++)
            if (!pre[i] && (st = quality(r, i, &pre[i], err))) goto done;
        json_t *recs[1024];
        int nb = e - s;
        if (nb > 1024) { st = ked_fail(err, KED_ERR_ARG, "eval: batch larger than 1024"); goto done; }
        int n_ids = 0;
        if (r->edit && (st = edit_range(r, s, e, ids, &n_ids, err))) goto done;
        for (int i = s; i < e; i++) {
            json_t *rec = json_object();
            json_object_set(rec, "pre", pre[i]);
            json_object_set_new(rec, "case_id", json_integer(i));
            json_object_set_new(rec, "ked_record", json_integer(case_at(r, i)->record));
            json_object_set_new(rec, "requested_rewrite", eval_request_json(case_at(r, i)));
            recs[i - s] = rec;
            if (r->edit) {
                json_t *post = NULL;
                if (!(st = quality(r, i, &post, err))) st = eval_finalize_locality(pre[i], post, err);
                if (st) { json_decref(post); for (int j = s; j <= i; j++) json_decref(recs[j - s]); goto done; }
                json_object_set_new(rec, "post", post);
            }
        }
        if (r->edit && !o->sequential)
            for (int q = n_ids - 1; q >= 0; q--)
                if ((st = ked_editor_revert(r->ed, ids[q], err))) {
                    for (int j = 0; j < nb; j++) json_decref(recs[j]);
                    goto done;
                }
        for (int j = 0; j < nb; j++) json_array_append_new(r->results, recs[j]);
        r->cases_done_here += nb;
        if (r->edit && o->sequential && o->retention) {
            json_t *entry = NULL;
            if ((st = retention_after(r, e, &entry, err))) goto done;
            json_array_append_new(json_object_get(r->root, "retention"), entry);
        }
        if ((st = write_out(r, NULL, err))) goto done;
        char *tb = NULL;
        if ((r->B > 1 || o->retention) && o->on_progress) { // the summary so far after each batch (issue 7)
            ked_eval_summary s2;
            json_decref(eval_summary_json(r->results, &s2));
            tb = eval_summary_table(r->root, &s2);
        }
        progress_table(r, r->edit ? "edit" : "pre", e, r->n, tb);
        free(tb);
    }
    if (!complete && r->edit && o->sequential) {
        phase_begin(r, 0);
        for (int i = 0; i < r->n; i++) {
            json_t *rec = json_array_get(r->results, (size_t)i), *post = NULL;
            if (!(st = quality(r, i, &post, err))) st = eval_finalize_locality(json_object_get(rec, "pre"), post, err);
            if (st) { json_decref(post); goto done; }
            json_object_set_new(rec, "post_final", post);
            r->cases_done_here++;
            progress(r, "post_final", i + 1, r->n);
        }
    }
    json_object_set_new(meta, "complete", json_true());
    if ((st = write_out(r, sum, err))) goto done;
    if (!sum) { ked_eval_summary s; json_decref(eval_summary_json(r->results, &s)); }
    if (table) {
        ked_eval_summary s;
        json_decref(eval_summary_json(r->results, &s));
        *table = eval_summary_table(r->root, &s);
    }
done:
    for (int i = 0; pre && i < r->n; i++) json_decref(pre[i]);
    free(pre);
    free(ids);
    edit_templates_free(r->tmpl, r->n_tmpl);
    ked_editor_free(r->ed);
    json_decref(r->results);
    json_decref(r->root);
    return st;
}

ked_status ked_eval_summarize(const char *results_path, ked_eval_summary *sum, char **table, ked_error *err) {
    json_error_t je;
    json_t *root = json_load_file(results_path, 0, &je);
    if (!root) {
        if (!ked_file_exists(results_path)) return ked_fail(err, KED_ERR_IO, "%s: cannot open", results_path);
        return ked_fail(err, KED_ERR_FORMAT, "%s: line %d column %d: %s", results_path, je.line, je.column, je.text);
    }
    json_t *res = json_is_array(root) ? root : json_object_get(root, "results");
    if (!json_is_array(res)) {
        json_decref(root);
        return ked_fail(err, KED_ERR_FORMAT, "%s: expected a list of results or an object with \"results\"", results_path);
    }
    ked_eval_summary s;
    json_decref(eval_summary_json(res, &s));
    if (sum) *sum = s;
    if (table) *table = eval_summary_table(root, &s);
    json_decref(root);
    return KED_OK;
}
