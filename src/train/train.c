// train.c: the trainer. AdamW with linear warmup and cosine decay, global-norm gradient clipping,
// batches of packed documents, an evaluation loss on held-out documents, atomic checkpoints that
// hold everything a resumed run needs to continue bitwise as the uninterrupted run would: the
// parameters, AdamW's moments, the step, the data order's RNG state and the position in it.
//
// Data: a corpus is a list of documents (text: one per line, CRLF tolerated, empty lines
// skipped; .jsonl: the "text" field of each line's object). Every document is tokenized once.
// An epoch permutes the training documents with the run's RNG and packs them, each followed by
// EOS, into windows of T+1 tokens: a document that does not fit in what is left of a window
// starts the next window (the rest is padding, not scored), unless it is longer than T/4, then it
// is split across windows. So short documents (facts) always start at a window's position 0 or
// follow other documents, as they will be seen at inference.
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "train/train.h"

#define TRY(x) do { ked_status st_ = (x); if (st_) return st_; } while (0)

ked_train_opts ked_train_defaults(void) {
    ked_train_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 16; o.seq = 128; o.steps = 1000; o.warmup = 100;
    o.lr = 1e-3f; o.min_lr = 1e-4f; o.weight_decay = 0.1f;
    o.beta1 = 0.9f; o.beta2 = 0.95f; o.eps = 1e-8f; o.clip = 1.0f;
    o.eval_frac = 0.01f; o.eval_every = 200; o.eval_batches = 4;
    o.ckpt_every = 200; o.keep = 2; o.seed = 1; o.progress_every = 10;
    return o;
}

/* ---- corpus ---------------------------------------------------------------------------------- */

void corpus_free(corpus *c) {
    if (!c) return;
    free(c->tok); free(c->doc_off); free(c->doc_len);
    memset(c, 0, sizeof *c);
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

ked_status corpus_read_texts(const char *path, char **data_out, text_ref **docs_out, char ***owned_out,
                             size_t *n_out, ked_error *err) {
    char *data = NULL;
    size_t len = 0;
    TRY(ked_read_file(path, &data, &len, err));
    int jsonl = has_suffix(path, ".jsonl");
    size_t cap = 1024, n = 0;
    text_ref *docs = malloc(cap * sizeof *docs);
    char **owned = jsonl ? calloc(cap, sizeof *owned) : NULL;
    if (!docs || (jsonl && !owned)) { free(data); free(docs); free(owned); return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", path); }
    size_t line_no = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && data[j] != '\n') j++;
        size_t e = j;
        if (e > i && data[e - 1] == '\r') e--;
        line_no++;
        if (e > i) {
            if (n == cap) {
                cap *= 2;
                text_ref *nd = realloc(docs, cap * sizeof *docs);
                char **no = jsonl ? realloc(owned, cap * sizeof *owned) : NULL;
                if (nd) docs = nd;
                if (no) owned = no;
                if (!nd || (jsonl && !no)) goto nomem;
            }
            if (jsonl) {
                json_error_t je;
                json_t *o = json_loadb(data + i, e - i, 0, &je);
                json_t *t = json_is_object(o) ? json_object_get(o, "text") : NULL;
                if (!json_is_string(t)) {
                    json_decref(o);
                    ked_status st = ked_fail(err, KED_ERR_FORMAT, "%s:%zu: %s", path, line_no,
                                             o ? "field 'text' is missing or not a string" : je.text);
                    for (size_t k = 0; k < n; k++) free(owned[k]);
                    free(owned); free(docs); free(data);
                    return st;
                }
                size_t tl = json_string_length(t);
                owned[n] = malloc(tl + 1);
                if (!owned[n]) { json_decref(o); goto nomem; }
                memcpy(owned[n], json_string_value(t), tl + 1);
                docs[n].p = owned[n]; docs[n].n = tl;
                json_decref(o);
                if (tl == 0) { free(owned[n]); i = j + 1; continue; }
            } else {
                docs[n].p = data + i; docs[n].n = e - i;
            }
            n++;
        }
        i = j + 1;
    }
    *data_out = data; *docs_out = docs; *owned_out = owned; *n_out = n;
    return KED_OK;
nomem:
    for (size_t k = 0; jsonl && k < n; k++) free(owned[k]);
    free(owned); free(docs); free(data);
    return ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", path);
}

void corpus_free_texts(char *data, text_ref *docs, char **owned, size_t n) {
    for (size_t k = 0; owned && k < n; k++) free(owned[k]);
    free(owned); free(docs); free(data);
}

ked_status corpus_load(const char *path, const ked_tokenizer *tok, corpus *c, ked_error *err) {
    memset(c, 0, sizeof *c);
    char *data; text_ref *docs; char **owned; size_t n;
    TRY(corpus_read_texts(path, &data, &docs, &owned, &n, err));
    if (n == 0) {
        corpus_free_texts(data, docs, owned, n);
        return ked_fail(err, KED_ERR_FORMAT, "%s: no documents (empty corpus)", path);
    }
    int **ids = calloc(n, sizeof *ids);
    int *cnt = calloc(n, sizeof *cnt);
    ked_status st = KED_OK;
    if (!ids || !cnt) { st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", path); goto done; }
    int failed = 0;
    ked_error e1 = {0};
#pragma omp parallel for schedule(dynamic, 64)
    for (long i = 0; i < (long)n; i++) {
        ked_error le;
        if (ked_tokenizer_encode(tok, docs[i].p, docs[i].n, 0, &ids[i], NULL, &cnt[i], &le) != KED_OK) {
#pragma omp critical
            { if (!failed) { failed = 1; e1 = le; } }
        }
    }
    if (failed) {
        st = ked_fail(err, e1.status, "%s: tokenizing: %s", path, e1.msg);
        goto done;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += (size_t)cnt[i];
    c->tok = malloc((total ? total : 1) * sizeof(int));
    c->doc_off = malloc(n * sizeof(size_t));
    c->doc_len = malloc(n * sizeof(int));
    if (!c->tok || !c->doc_off || !c->doc_len) { st = ked_fail(err, KED_ERR_NOMEM, "%s: out of memory", path); goto done; }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        c->doc_off[i] = off; c->doc_len[i] = cnt[i];
        if (cnt[i]) memcpy(c->tok + off, ids[i], (size_t)cnt[i] * sizeof(int));
        off += (size_t)cnt[i];
    }
    c->n_tok = total; c->n_doc = n;
done:
    for (size_t i = 0; ids && i < n; i++) free(ids[i]);
    free(ids); free(cnt);
    corpus_free_texts(data, docs, owned, n);
    if (st) corpus_free(c);
    return st;
}

// pack documents (in the order given) into windows of T+1 tokens; returns the number of windows.
// ids (cap, T+1), nvalid (cap); with ids == NULL only counts.
static size_t pack(const corpus *c, const int *order, size_t n_order, int T, int eos, int *ids,
                   int *nvalid) {
    size_t W = (size_t)T + 1, nw = 0, fill = 0;
    for (size_t k = 0; k < n_order; k++) {
        const int *d = c->tok + c->doc_off[order[k]];
        size_t len = (size_t)c->doc_len[order[k]] + 1; // + EOS
        if (fill > 0 && len > W - fill && len <= W / 4 + 1) { // start a new window
            if (ids) {
                for (size_t t = fill; t < W; t++) ids[nw * W + t] = eos;
                nvalid[nw] = (int)fill;
            }
            nw++; fill = 0;
        }
        for (size_t t = 0; t < len; t++) {
            if (ids) ids[nw * W + fill] = t + 1 < len ? d[t] : eos;
            if (++fill == W) {
                if (ids) nvalid[nw] = (int)W;
                nw++; fill = 0;
            }
        }
    }
    if (fill > 0) {
        if (ids) {
            for (size_t t = fill; t < W; t++) ids[nw * W + t] = eos;
            nvalid[nw] = (int)fill;
        }
        nw++;
    }
    return nw;
}

/* ---- the trainer's state ----------------------------------------------------------------------- */

typedef struct {
    const ked_train_opts *o;
    ked_model *m;
    ked_tokenizer *tok;
    corpus c;
    int eos;
    int *train_docs, *eval_docs;
    size_t n_train, n_eval;
    // data order
    ked_rng rng;
    uint64_t epoch_rng;      // rng state when the current epoch's order was drawn
    int epoch;
    size_t cursor, n_win;
    int *win, *win_valid;    // this epoch's windows
    int *order;
    // eval windows
    int *ewin, *ewin_valid;
    size_t n_ewin;
    // optimizer
    float **adam_m, **adam_v;
    long step, tokens;
    double elapsed_prev;     // seconds trained before this process (resumed runs)
    char *config_json, *tokenizer_json, *tokenizer_config;
    size_t config_len, tokenizer_len, tokenizer_config_len;
} trainer;

ked_status train_make_writable(ked_model *m, ked_error *err) {
    for (int i = 0; i < m->n_params; i++) {
        ked_param *p = &m->params[i];
        if (!p->w || p->owned) continue;
        size_t n = (size_t)(p->rows * p->cols);
        float *w = ked_malloc(n * sizeof(float), "writable parameter", err);
        if (!w) return KED_ERR_NOMEM;
        memcpy(w, p->w, n * sizeof(float));
        p->w = w;
        p->owned = 1;
    }
    return KED_OK;
}

static ked_status new_epoch(trainer *tr, ked_error *err) {
    tr->epoch_rng = tr->rng.s;
    for (size_t i = 0; i < tr->n_train; i++) tr->order[i] = tr->train_docs[i];
    for (size_t i = tr->n_train; i > 1; i--) { // Fisher-Yates
        size_t j = (size_t)(ked_rng_u64(&tr->rng) % i);
        int t = tr->order[i - 1]; tr->order[i - 1] = tr->order[j]; tr->order[j] = t;
    }
    int T = tr->o->seq;
    size_t nw = pack(&tr->c, tr->order, tr->n_train, T, tr->eos, NULL, NULL);
    if (nw > tr->n_win || !tr->win) {
        free(tr->win); free(tr->win_valid);
        tr->win = ked_malloc(nw * (size_t)(T + 1) * sizeof(int), "training windows", err);
        tr->win_valid = ked_malloc(nw * sizeof(int), "training windows", err);
        if (!tr->win || !tr->win_valid) return KED_ERR_NOMEM;
    }
    tr->n_win = pack(&tr->c, tr->order, tr->n_train, T, tr->eos, tr->win, tr->win_valid);
    tr->cursor = 0;
    return KED_OK;
}

// the next B windows into ids (B, T) and targets (B, T)
static ked_status next_batch(trainer *tr, int *ids, int *tgt, ked_error *err) {
    int B = tr->o->batch, T = tr->o->seq;
    for (int b = 0; b < B; b++) {
        if (tr->cursor >= tr->n_win) {
            tr->epoch++;
            TRY(new_epoch(tr, err));
        }
        const int *w = tr->win + tr->cursor * (size_t)(T + 1);
        int nv = tr->win_valid[tr->cursor];
        for (int t = 0; t < T; t++) {
            ids[b * T + t] = w[t];
            tgt[b * T + t] = t + 1 < nv ? w[t + 1] : -1;
        }
        tr->cursor++;
    }
    return KED_OK;
}

static float lr_at(const ked_train_opts *o, long step) {
    if (o->warmup > 0 && step < o->warmup) return o->lr * (float)(step + 1) / (float)o->warmup;
    long span = o->steps - o->warmup;
    if (span <= 0) return o->lr;
    double p = (double)(step - o->warmup) / (double)span;
    if (p > 1) p = 1;
    return (float)(o->min_lr + 0.5 * (o->lr - o->min_lr) * (1.0 + cos(M_PI * p)));
}

static int decays(const ked_param *p) { return p->cols > 1; } // matrices and embeddings

static double grad_norm(const ked_model *m) {
    double s = 0;
    for (int i = 0; i < m->n_params; i++) {
        const ked_param *p = &m->params[i];
        if (!p->w || !p->grad) continue;
        size_t n = (size_t)(p->rows * p->cols);
        double ps = 0;
        for (size_t j = 0; j < n; j++) ps += (double)p->grad[j] * p->grad[j];
        s += ps;
    }
    return sqrt(s);
}

static void adamw_step(trainer *tr, float lr, float gscale) {
    const ked_train_opts *o = tr->o;
    ked_model *m = tr->m;
    long t = tr->step + 1;
    float bc1 = (float)(1.0 - pow(o->beta1, (double)t));
    float bc2 = (float)(1.0 - pow(o->beta2, (double)t));
    float sbc2 = sqrtf(bc2), b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    float step_size = lr / bc1;
    for (int i = 0; i < m->n_params; i++) {
        ked_param *p = &m->params[i];
        if (!p->w || !p->grad) continue;
        long n = (long)(p->rows * p->cols);
        float *w = p->w, *g = p->grad, *mm = tr->adam_m[i], *vv = tr->adam_v[i];
        float wd = decays(p) ? 1.0f - lr * o->weight_decay : 1.0f;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (long j = 0; j < n; j++) {
            float gj = g[j] * gscale;
            mm[j] = b1 * mm[j] + (1.0f - b1) * gj;
            vv[j] = b2 * vv[j] + (1.0f - b2) * gj * gj;
            float denom = sqrtf(vv[j]) / sbc2 + eps;
            w[j] = w[j] * wd - step_size * mm[j] / denom;
        }
    }
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = ked_path_join(dir, e->d_name);
        if (p) { unlink(p); free(p); }
    }
    closedir(d);
    rmdir(dir);
}

// checkpoints in out_dir, ascending by step (malloc'd array of steps)
static long *list_checkpoints(const char *out_dir, int *n) {
    *n = 0;
    DIR *d = opendir(out_dir);
    if (!d) return NULL;
    long *s = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long v;
        char tail;
        if (sscanf(e->d_name, "checkpoint-%ld%c", &v, &tail) != 1 || v < 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            long *ns = realloc(s, (size_t)cap * sizeof *s);
            if (!ns) break;
            s = ns;
        }
        s[(*n)++] = v;
    }
    closedir(d);
    for (int i = 1; i < *n; i++) // insertion sort
        for (int j = i; j > 0 && s[j - 1] > s[j]; j--) { long t = s[j]; s[j] = s[j - 1]; s[j - 1] = t; }
    return s;
}

static ked_status write_blob(const char *dir, const char *name, const char *data, size_t len,
                             ked_error *err) {
    char *p = ked_path_join(dir, name);
    if (!p) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    ked_status st = ked_write_file_atomic(p, data, len, err);
    free(p);
    return st;
}

static ked_status write_checkpoint(trainer *tr, double elapsed, ked_error *err) {
    const ked_train_opts *o = tr->o;
    ked_model *m = tr->m;
    char tmp[4096], fin[4096];
    snprintf(tmp, sizeof tmp, "%s/.checkpoint-%ld.tmp.%d", o->out_dir, tr->step, (int)getpid());
    snprintf(fin, sizeof fin, "%s/checkpoint-%ld", o->out_dir, tr->step);
    remove_dir(tmp);
    if (mkdir(tmp, 0777) != 0)
        return ked_fail(err, KED_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
    ked_status st = KED_OK;
    int nt = m->n_names;
    st_write_tensor *t = calloc((size_t)(nt > 0 ? nt : 1) + 2 * (size_t)m->n_params, sizeof *t);
    float **buf = calloc((size_t)(nt > 0 ? nt : 1), sizeof *buf);
    char (*onames)[32] = calloc(2 * (size_t)m->n_params + 1, sizeof *onames);
    if (!t || !buf || !onames) { st = ked_fail(err, KED_ERR_NOMEM, "checkpoint: out of memory"); goto done; }
    for (int i = 0; i < nt; i++) {
        int64_t shape[2];
        int nd = ked_model_tensor_shape(m, m->names[i], shape);
        KED_ASSERT(nd > 0);
        size_t numel = (size_t)(shape[0] * (nd == 2 ? shape[1] : 1));
        buf[i] = ked_malloc(numel * sizeof(float), "checkpoint tensor", err);
        if (!buf[i]) { st = KED_ERR_NOMEM; goto done; }
        if ((st = ked_model_tensor_read(m, m->names[i], 0, buf[i], err))) goto done;
        t[i].name = m->names[i]; t[i].dtype = KED_F32; t[i].ndim = nd;
        t[i].shape[0] = shape[0]; t[i].shape[1] = shape[1];
        t[i].data = buf[i];
    }
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    if ((st = st_write_dir(tmp, t, nt, 0, mk, mv, 1, err))) goto done;
    // optimizer moments, by parameter slot (ked's layout)
    int k = 0;
    for (int i = 0; i < m->n_params; i++) {
        ked_param *p = &m->params[i];
        if (!p->w || !p->grad) continue;
        for (int which = 0; which < 2; which++) {
            snprintf(onames[k], sizeof onames[k], "%s.%d", which ? "exp_avg_sq" : "exp_avg", i);
            t[k].name = onames[k]; t[k].dtype = KED_F32; t[k].ndim = 2;
            t[k].shape[0] = p->rows; t[k].shape[1] = p->cols;
            t[k].data = which ? tr->adam_v[i] : tr->adam_m[i];
            k++;
        }
    }
    char *opath = ked_path_join(tmp, "optimizer.safetensors");
    if (!opath) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
    st = st_write(opath, t, k, NULL, NULL, 0, err);
    free(opath);
    if (st) goto done;
    if ((st = write_blob(tmp, "config.json", tr->config_json, tr->config_len, err))) goto done;
    if ((st = write_blob(tmp, "tokenizer.json", tr->tokenizer_json, tr->tokenizer_len, err))) goto done;
    if (tr->tokenizer_config &&
        (st = write_blob(tmp, "tokenizer_config.json", tr->tokenizer_config, tr->tokenizer_config_len, err)))
        goto done;
    json_t *js = json_pack("{s:I, s:i, s:I, s:s, s:I, s:f, s:i, s:i, s:I, s:I, s:I, s:s}",
                           "step", (json_int_t)tr->step, "epoch", tr->epoch,
                           "cursor", (json_int_t)tr->cursor, "epoch_rng", "",
                           "tokens", (json_int_t)tr->tokens, "elapsed_s", elapsed,
                           "batch", o->batch, "seq", o->seq, "steps", (json_int_t)o->steps,
                           "n_docs", (json_int_t)tr->c.n_doc, "n_tokens", (json_int_t)tr->c.n_tok,
                           "seed", "");
    if (!js) { st = ked_fail(err, KED_ERR_NOMEM, "checkpoint: out of memory"); goto done; }
    char hex[32];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)tr->epoch_rng);
    json_object_set_new(js, "epoch_rng", json_string(hex));
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)o->seed);
    json_object_set_new(js, "seed", json_string(hex));
    char *text = json_dumps(js, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(js);
    if (!text) { st = ked_fail(err, KED_ERR_NOMEM, "checkpoint: out of memory"); goto done; }
    st = write_blob(tmp, "trainer_state.json", text, strlen(text), err);
    free(text);
    if (st) goto done;
    remove_dir(fin); // a checkpoint of the same step from an earlier, interrupted attempt
    if (rename(tmp, fin) != 0) {
        st = ked_fail(err, KED_ERR_IO, "%s: cannot rename to %s: %s", tmp, fin, strerror(errno));
        goto done;
    }
    // keep the newest o->keep
    int n;
    long *steps = list_checkpoints(o->out_dir, &n);
    for (int i = 0; i + (o->keep > 0 ? o->keep : 1) < n; i++) {
        snprintf(fin, sizeof fin, "%s/checkpoint-%ld", o->out_dir, steps[i]);
        remove_dir(fin);
    }
    free(steps);
done:
    if (st) remove_dir(tmp);
    for (int i = 0; buf && i < nt; i++) free(buf[i]);
    free(buf); free(t); free(onames);
    return st;
}

static ked_status read_text(const char *dir, const char *name, int required, char **data,
                            size_t *len, ked_error *err) {
    *data = NULL; *len = 0;
    char *p = ked_path_join(dir, name);
    if (!p) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    ked_status st = KED_OK;
    if (required || ked_file_exists(p)) st = ked_read_file(p, data, len, err);
    free(p);
    return st;
}

static ked_status state_int(json_t *js, const char *path, const char *key, long long *v,
                            ked_error *err) {
    json_t *x = json_object_get(js, key);
    if (!json_is_integer(x))
        return ked_fail(err, KED_ERR_FORMAT, "%s: field '%s' is missing or not an integer", path, key);
    *v = json_integer_value(x);
    return KED_OK;
}

static ked_status state_hex(json_t *js, const char *path, const char *key, uint64_t *v,
                            ked_error *err) {
    json_t *x = json_object_get(js, key);
    unsigned long long u;
    if (!json_is_string(x) || sscanf(json_string_value(x), "%llx", &u) != 1)
        return ked_fail(err, KED_ERR_FORMAT, "%s: field '%s' is missing or not a hex string", path, key);
    *v = u;
    return KED_OK;
}

// restore the trainer's state from checkpoint dir (model already loaded from it)
static ked_status restore(trainer *tr, const char *dir, ked_error *err) {
    const ked_train_opts *o = tr->o;
    char path[4096];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    json_error_t je;
    json_t *js = json_load_file(path, 0, &je);
    if (!js) return ked_fail(err, KED_ERR_FORMAT, "%s:%d: %s", path, je.line, je.text);
    long long step = 0, epoch = 0, cursor = 0, tokens = 0, batch = 0, seq = 0, n_docs = 0, n_tokens = 0;
    uint64_t erng = 0, seed = 0;
    ked_status st;
    if ((st = state_int(js, path, "step", &step, err)) || (st = state_int(js, path, "epoch", &epoch, err)) ||
        (st = state_int(js, path, "cursor", &cursor, err)) || (st = state_int(js, path, "tokens", &tokens, err)) ||
        (st = state_int(js, path, "batch", &batch, err)) || (st = state_int(js, path, "seq", &seq, err)) ||
        (st = state_int(js, path, "n_docs", &n_docs, err)) ||
        (st = state_int(js, path, "n_tokens", &n_tokens, err)) ||
        (st = state_hex(js, path, "epoch_rng", &erng, err)) || (st = state_hex(js, path, "seed", &seed, err))) {
        json_decref(js);
        return st;
    }
    json_t *el = json_object_get(js, "elapsed_s");
    tr->elapsed_prev = json_is_number(el) ? json_number_value(el) : 0;
    json_decref(js);
    if (batch != o->batch || seq != o->seq)
        return ked_fail(err, KED_ERR_ARG, "%s: fields 'batch' %lld and 'seq' %lld: this run asks for "
                        "batch %d and seq %d (resume with the same shape)", path, batch, seq, o->batch, o->seq);
    if (seed != o->seed)
        return ked_fail(err, KED_ERR_ARG, "%s: field 'seed' differs from this run's seed %llu", path,
                        (unsigned long long)o->seed);
    if ((size_t)n_docs != tr->c.n_doc || (size_t)n_tokens != tr->c.n_tok)
        return ked_fail(err, KED_ERR_ARG, "%s: fields 'n_docs' %lld / 'n_tokens' %lld: the corpus %s "
                        "has %zu documents, %zu tokens (not the corpus this run was trained on)",
                        path, n_docs, n_tokens, o->data, tr->c.n_doc, tr->c.n_tok);
    if (step < 0 || epoch < 0 || cursor < 0)
        return ked_fail(err, KED_ERR_FORMAT, "%s: negative step, epoch or cursor", path);
    tr->step = (long)step; tr->tokens = (long)tokens; tr->epoch = (int)epoch;
    tr->rng.s = erng;
    TRY(new_epoch(tr, err));
    if ((size_t)cursor > tr->n_win)
        return ked_fail(err, KED_ERR_FORMAT, "%s: field 'cursor' %lld beyond the epoch's %zu windows",
                        path, cursor, tr->n_win);
    tr->cursor = (size_t)cursor;
    // moments
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    st_file *f;
    TRY(st_open(path, &f, err));
    for (int i = 0; i < tr->m->n_params && !st; i++) {
        ked_param *p = &tr->m->params[i];
        if (!p->w || !p->grad) continue;
        for (int which = 0; which < 2 && !st; which++) {
            char name[32];
            snprintf(name, sizeof name, "%s.%d", which ? "exp_avg_sq" : "exp_avg", i);
            const st_tensor *t = st_find(f, name);
            if (!t || t->dtype != KED_F32 || t->numel != p->rows * p->cols)
                st = ked_fail(err, KED_ERR_FORMAT, "%s: tensor '%s' is missing or not F32 (%lld, %lld)",
                              path, name, (long long)p->rows, (long long)p->cols);
            else
                memcpy(which ? tr->adam_v[i] : tr->adam_m[i], t->data, t->nbytes);
        }
    }
    st_close(f);
    return st;
}

/* ---- evaluation ------------------------------------------------------------------------------ */

static ked_status evaluate(trainer *tr, ked_run *r, int *ids, int *tgt, float *out, ked_error *err) {
    int B = tr->o->batch, T = tr->o->seq;
    size_t nb = tr->n_ewin / (size_t)B;
    if (nb > (size_t)tr->o->eval_batches) nb = (size_t)tr->o->eval_batches;
    if (nb == 0) { *out = NAN; return KED_OK; }
    double s = 0;
    for (size_t k = 0; k < nb; k++) {
        for (int b = 0; b < B; b++) {
            size_t w = k * (size_t)B + (size_t)b;
            const int *win = tr->ewin + w * (size_t)(T + 1);
            for (int t = 0; t < T; t++) {
                ids[b * T + t] = win[t];
                tgt[b * T + t] = t + 1 < tr->ewin_valid[w] ? win[t + 1] : -1;
            }
        }
        ked_forward_opts fo = ked_forward_defaults();
        TRY(ked_forward(tr->m, r, ids, B, T, NULL, &fo, err));
        s += ked_loss_crossentropy(r, tgt, 0);
    }
    *out = (float)(s / (double)nb);
    return KED_OK;
}

/* ---- the run ------------------------------------------------------------------------------- */

static ked_status check_opts(const ked_train_opts *o, ked_error *err) {
    if (!o->data || !o->out_dir)
        return ked_fail(err, KED_ERR_ARG, "train: data and out_dir are required");
    if (o->batch <= 0 || o->seq < 8 || o->steps <= 0 || o->warmup < 0)
        return ked_fail(err, KED_ERR_ARG, "train: batch > 0, seq >= 8, steps > 0 and warmup >= 0 are needed "
                        "(got batch %d, seq %d, steps %ld, warmup %d)", o->batch, o->seq, o->steps, o->warmup);
    if (!(o->lr > 0) || o->min_lr < 0 || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) ||
        !(o->eps > 0) || o->weight_decay < 0 || o->clip < 0)
        return ked_fail(err, KED_ERR_ARG, "train: bad optimizer settings (lr %g, min_lr %g, betas %g %g, eps %g, "
                        "weight decay %g, clip %g)", (double)o->lr, (double)o->min_lr, (double)o->beta1,
                        (double)o->beta2, (double)o->eps, (double)o->weight_decay, (double)o->clip);
    if (!(o->eval_frac >= 0 && o->eval_frac < 1))
        return ked_fail(err, KED_ERR_ARG, "train: eval_frac %g must be in [0, 1)", (double)o->eval_frac);
    return KED_OK;
}

static void trainer_free(trainer *tr) {
    if (tr->adam_m)
        for (int i = 0; i < tr->m->n_params; i++) { free(tr->adam_m[i]); free(tr->adam_v[i]); }
    free(tr->adam_m); free(tr->adam_v);
    free(tr->win); free(tr->win_valid); free(tr->order); free(tr->ewin); free(tr->ewin_valid);
    free(tr->train_docs); free(tr->eval_docs);
    free(tr->config_json); free(tr->tokenizer_json); free(tr->tokenizer_config);
    corpus_free(&tr->c);
    ked_tokenizer_free(tr->tok);
    ked_model_free(tr->m);
}

// split documents into training and evaluation ones, by a hash of (seed, index)
static ked_status split_docs(trainer *tr, ked_error *err) {
    size_t n = tr->c.n_doc;
    tr->train_docs = ked_malloc(n * sizeof(int), "document lists", err);
    tr->eval_docs = ked_malloc(n * sizeof(int), "document lists", err);
    tr->order = ked_malloc(n * sizeof(int), "document lists", err);
    if (!tr->train_docs || !tr->eval_docs || !tr->order) return KED_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        ked_rng h;
        ked_rng_seed(&h, tr->o->seed * 0x100000001B3ull ^ (uint64_t)i);
        if (n > 1 && ked_rng_uniform(&h) < tr->o->eval_frac) tr->eval_docs[tr->n_eval++] = (int)i;
        else tr->train_docs[tr->n_train++] = (int)i;
    }
    if (tr->n_train == 0) return ked_fail(err, KED_ERR_ARG, "%s: no training documents left", tr->o->data);
    int T = tr->o->seq;
    tr->n_ewin = pack(&tr->c, tr->eval_docs, tr->n_eval, T, tr->eos, NULL, NULL);
    tr->ewin = ked_malloc((tr->n_ewin + 1) * (size_t)(T + 1) * sizeof(int), "evaluation windows", err);
    tr->ewin_valid = ked_malloc((tr->n_ewin + 1) * sizeof(int), "evaluation windows", err);
    if (!tr->ewin || !tr->ewin_valid) return KED_ERR_NOMEM;
    pack(&tr->c, tr->eval_docs, tr->n_eval, T, tr->eos, tr->ewin, tr->ewin_valid);
    return KED_OK;
}

ked_status ked_train(const ked_train_opts *o, ked_error *err) {
    TRY(check_opts(o, err));
    if (mkdir(o->out_dir, 0777) != 0 && errno != EEXIST)
        return ked_fail(err, KED_ERR_IO, "%s: cannot create directory: %s", o->out_dir, strerror(errno));
    trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.o = o;
    ked_status st = KED_OK;
    ked_run *run = NULL, *erun = NULL;
    int *ids = NULL, *tgt = NULL;
    // resume from the newest checkpoint, or start from o->model
    int n_ck;
    long *cks = list_checkpoints(o->out_dir, &n_ck);
    char resume[4096] = "";
    if (n_ck > 0) snprintf(resume, sizeof resume, "%s/checkpoint-%ld", o->out_dir, cks[n_ck - 1]);
    free(cks);
    const char *src = resume[0] ? resume : o->model;
    if (!src) return ked_fail(err, KED_ERR_ARG, "train: %s holds no checkpoint and no model was given", o->out_dir);
    char tokpath[4096];
    if (resume[0]) snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", resume);
    else if (o->tokenizer) snprintf(tokpath, sizeof tokpath, "%s", o->tokenizer);
    else snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", o->model);
    if ((st = ked_model_load(src, &tr.m, err))) goto done;
    if ((st = ked_tokenizer_load(tokpath, &tr.tok, err))) goto done;
    if ((st = read_text(src, "config.json", 1, &tr.config_json, &tr.config_len, err))) goto done;
    if ((st = ked_read_file(tokpath, &tr.tokenizer_json, &tr.tokenizer_len, err))) goto done;
    {
        char *tdir = strdup(tokpath);
        if (!tdir) { st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
        char *slash = strrchr(tdir, '/');
        if (slash) *slash = 0; else strcpy(tdir, ".");
        st = read_text(tdir, "tokenizer_config.json", 0, &tr.tokenizer_config, &tr.tokenizer_config_len, err);
        free(tdir);
        if (st) goto done;
    }
    const ked_config *cfg = ked_model_config(tr.m);
    if (ked_tokenizer_vocab_size(tr.tok) > cfg->vocab) {
        st = ked_fail(err, KED_ERR_ARG, "%s: vocabulary of %d tokens exceeds the model's vocab_size %d",
                      tokpath, ked_tokenizer_vocab_size(tr.tok), cfg->vocab);
        goto done;
    }
    tr.eos = ked_tokenizer_eos(tr.tok);
    if (tr.eos < 0) tr.eos = cfg->eos_id;
    if (tr.eos < 0) tr.eos = ked_tokenizer_token_id(tr.tok, "<|endoftext|>");
    if (tr.eos < 0) {
        st = ked_fail(err, KED_ERR_ARG, "%s: the tokenizer names no EOS token (needed between documents)", tokpath);
        goto done;
    }
    if (cfg->pos == KED_POS_LEARNED && o->seq > cfg->max_pos) {
        st = ked_fail(err, KED_ERR_ARG, "train: seq %d exceeds the model's %d positions", o->seq, cfg->max_pos);
        goto done;
    }
    if ((st = corpus_load(o->data, tr.tok, &tr.c, err))) goto done;
    if ((st = split_docs(&tr, err))) goto done;
    if ((st = train_make_writable(tr.m, err))) goto done;
    if ((st = ked_model_grad_enable(tr.m, "*", err))) goto done;
    tr.adam_m = ked_calloc((size_t)tr.m->n_params, sizeof(float *), "AdamW state", err);
    tr.adam_v = ked_calloc((size_t)tr.m->n_params, sizeof(float *), "AdamW state", err);
    if (!tr.adam_m || !tr.adam_v) { st = KED_ERR_NOMEM; goto done; }
    for (int i = 0; i < tr.m->n_params; i++) {
        ked_param *p = &tr.m->params[i];
        if (!p->w || !p->grad) continue;
        tr.adam_m[i] = ked_calloc((size_t)(p->rows * p->cols), sizeof(float), "AdamW state", err);
        tr.adam_v[i] = ked_calloc((size_t)(p->rows * p->cols), sizeof(float), "AdamW state", err);
        if (!tr.adam_m[i] || !tr.adam_v[i]) { st = KED_ERR_NOMEM; goto done; }
    }
    if (resume[0]) {
        if ((st = restore(&tr, resume, err))) goto done;
    } else {
        ked_rng_seed(&tr.rng, o->seed);
        if ((st = new_epoch(&tr, err))) goto done;
    }
    int B = o->batch, T = o->seq;
    if ((st = ked_run_new(tr.m, B, T, T, 1, &run, err))) goto done;
    if (tr.n_ewin >= (size_t)B && o->eval_batches > 0 && (st = ked_run_new(tr.m, B, T, T, 0, &erun, err))) goto done;
    ids = ked_malloc((size_t)B * T * sizeof(int), "batch", err);
    tgt = ked_malloc((size_t)B * T * sizeof(int), "batch", err);
    if (!ids || !tgt) { st = KED_ERR_NOMEM; goto done; }
    double t0 = ked_time_s();
    long step0 = tr.step;
    ked_forward_opts fo = ked_forward_defaults();
    while (tr.step < o->steps) {
        if ((st = next_batch(&tr, ids, tgt, err))) goto done;
        ked_model_grad_zero(tr.m);
        if ((st = ked_forward(tr.m, run, ids, B, T, NULL, &fo, err))) goto done;
        float loss = ked_loss_crossentropy(run, tgt, 1);
        if ((st = ked_backward(tr.m, run, err))) goto done;
        double gn = grad_norm(tr.m);
        float gscale = o->clip > 0 && gn > o->clip ? (float)(o->clip / gn) : 1.0f;
        float lr = lr_at(o, tr.step);
        adamw_step(&tr, lr, gscale);
        tr.step++;
        tr.tokens += (long)B * T;
        double now = ked_time_s() - t0;
        int last = tr.step == o->steps || (o->stop_at > 0 && tr.step >= o->stop_at);
        ked_train_progress p = {0};
        p.step = tr.step; p.steps = o->steps; p.epoch = tr.epoch; p.loss = loss; p.lr = lr;
        p.grad_norm = (float)gn; p.eval_loss = NAN; p.tokens = tr.tokens;
        p.tokens_per_s = now > 0 ? (double)(tr.step - step0) * B * T / now : 0;
        p.elapsed_s = tr.elapsed_prev + now;
        p.eta_s = (double)(o->steps - tr.step) * now / (double)(tr.step - step0);
        if (o->on_progress && (last || o->progress_every <= 1 || tr.step % o->progress_every == 0))
            o->on_progress(&p, o->user);
        if (erun && o->eval_every > 0 && (tr.step % o->eval_every == 0 || tr.step == o->steps)) {
            float el;
            if ((st = evaluate(&tr, erun, ids, tgt, &el, err))) goto done;
            p.eval_loss = el;
            if (o->on_progress) o->on_progress(&p, o->user);
        }
        if (last || (o->ckpt_every > 0 && tr.step % o->ckpt_every == 0))
            if ((st = write_checkpoint(&tr, tr.elapsed_prev + (ked_time_s() - t0), err))) goto done;
        if (last) break;
    }
done:
    free(ids); free(tgt);
    ked_run_free(run); ked_run_free(erun);
    trainer_free(&tr);
    return st;
}
