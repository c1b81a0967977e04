// stats.c: second-moment statistics of the mlp_key hook (easyedit-reference.md §2.0, EasyEdit's
// layer_stats / SecondMoment): C = sum over every non-padding token of k k^T / count, uncentred,
// for one or more layers in one pass over a corpus. Each document is tokenised (BOS where the
// tokenizer adds one) and truncated to the model's context length, as EasyEdit does.
//
// Batches: documents are packed into right-padded batches of about batch_tokens tokens; one
// forward per batch stops after the highest requested layer and captures mlp_key at every valid
// position of every requested layer (a capture hook over all sites). Accumulation: per batch a
// float32 symmetric rank-k update (cblas_ssyrk, as EasyEdit accumulates in float32), then added
// into a float64 running sum, so the sum over millions of tokens loses nothing to fp32 round-off.
//
// Cache: <dir>/<model hash>-L<layer>-<corpus hash>-<budget>.kstats (dir: $KED_CACHE, else
// ~/.cache/ked/stats), written atomically; the model hash (FNV-1a over the weight files' bytes)
// is computed once per file set and kept in <dir>/modelhash-<path hash> with the files' size and
// mtime. EasyEdit's own .npz files (np.savez: a zip of stored .npy entries) are read too.
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "edit/edit.h"

#define FNV0 0xcbf29ce484222325ull
#define FNVP 0x100000001b3ull

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNVP;
    return h;
}

ked_stats_opts ked_stats_defaults(void) {
    ked_stats_opts o;
    memset(&o, 0, sizeof o);
    o.batch_tokens = 2048;
    return o;
}

void ked_stats_free(ked_stats *s) {
    if (!s) return;
    free(s->mom2);
    s->mom2 = NULL;
}

/* ---- cache directory and model hash ------------------------------------------------------------ */

void ked_stats_cache_dir(const char *given, char *buf, size_t cap) {
    const char *e = getenv("KED_CACHE"), *home = getenv("HOME");
    if (given && *given) snprintf(buf, cap, "%s", given);
    else if (e && *e) snprintf(buf, cap, "%s", e);
    else snprintf(buf, cap, "%s/.cache/ked/stats", home && *home ? home : ".");
}

// the files whose bytes make the model: *.safetensors, *.bin, config.json of a directory, or
// the file itself; total size and newest mtime
static int model_files(const char *path, char names[][512], int cap, int64_t *size, int64_t *mtime) {
    struct stat st;
    int n = 0;
    *size = 0; *mtime = 0;
    if (stat(path, &st)) return -1;
    if (!S_ISDIR(st.st_mode)) {
        snprintf(names[0], 512, "%s", path);
        *size = st.st_size; *mtime = st.st_mtime;
        return 1;
    }
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *de;
    while ((de = readdir(d)) && n < cap) {
        size_t l = strlen(de->d_name);
        int want = (l > 12 && !strcmp(de->d_name + l - 12, ".safetensors")) ||
                   (l > 4 && !strcmp(de->d_name + l - 4, ".bin")) || !strcmp(de->d_name, "config.json");
        if (!want || de->d_name[0] == '.') continue;
        snprintf(names[n], 512, "%s/%s", path, de->d_name);
        if (stat(names[n], &st) || !S_ISREG(st.st_mode)) continue;
        *size += st.st_size;
        if (st.st_mtime > *mtime) *mtime = st.st_mtime;
        n++;
    }
    closedir(d);
    // sorted, so the hash does not depend on readdir's order
    qsort(names, (size_t)n, 512, (int (*)(const void *, const void *))strcmp);
    return n;
}

ked_status ked_stats_model_hash(const ked_model *m, const char *cache_dir, uint64_t *out,
                                ked_error *err) {
    const char *path = ked_model_path(m);
    char dir[1024], idx[1200];
    ked_stats_cache_dir(cache_dir, dir, sizeof dir);
    char (*names)[512] = ked_malloc(sizeof *names * 64, "model hash", err);
    if (!names) return KED_ERR_NOMEM;
    int64_t size, mtime;
    int n = model_files(path, names, 64, &size, &mtime);
    if (n < 0) { free(names); return ked_fail(err, KED_ERR_IO, "%s: cannot list the model's files", path); }
    char absp[4096];
    if (!realpath(path, absp)) snprintf(absp, sizeof absp, "%s", path);
    snprintf(idx, sizeof idx, "%s/modelhash-%016llx", dir,
             (unsigned long long)fnv(FNV0, absp, strlen(absp)));
    FILE *f = fopen(idx, "r");
    if (f) { // "size mtime hash"
        long long s = 0, t = 0;
        unsigned long long h = 0;
        int ok = fscanf(f, "%lld %lld %llx", &s, &t, &h) == 3 && s == size && t == mtime;
        fclose(f);
        if (ok) { free(names); *out = h; return KED_OK; }
    }
    uint64_t h = FNV0;
    unsigned char *buf = ked_malloc(1 << 20, "model hash", err);
    if (!buf) { free(names); return KED_ERR_NOMEM; }
    for (int i = 0; i < n; i++) {
        FILE *g = fopen(names[i], "rb");
        if (!g) {
            ked_status st = ked_fail(err, KED_ERR_IO, "%s: cannot open", names[i]);
            free(buf); free(names);
            return st;
        }
        size_t r;
        while ((r = fread(buf, 1, 1 << 20, g)) > 0) h = fnv(h, buf, r);
        fclose(g);
    }
    free(buf);
    free(names);
    *out = h;
    if (ked_mkdir_p(dir) == 0) {
        char line[128];
        int len = snprintf(line, sizeof line, "%lld %lld %016llx\n", (long long)size,
                           (long long)mtime, (unsigned long long)h);
        ked_write_file_atomic(idx, line, (size_t)len, NULL); // a cache: failing to write is fine
    }
    return KED_OK;
}

/* ---- the accumulation ------------------------------------------------------------------------- */

ked_status edit_stats_ids(const ked_model *m, const int *const *docs, const int *lens, int n_docs,
                          const int *layers, int n_layers, int batch_tokens, double **acc,
                          int64_t *count, ked_error *err) {
    const ked_config *cfg = ked_model_config(m);
    int F = cfg->d_ff, top = 0, maxT = 1;
    for (int i = 0; i < n_layers; i++) {
        if (layers[i] < 0 || layers[i] >= cfg->n_layer)
            return ked_fail(err, KED_ERR_ARG, "stats: layer %d outside the model's layers 0..%d",
                            layers[i], cfg->n_layer - 1);
        if (layers[i] > top) top = layers[i];
    }
    for (int d = 0; d < n_docs; d++) if (lens[d] > maxT) maxT = lens[d];
    if (batch_tokens < maxT) batch_tokens = maxT;
    int maxB = 2 * batch_tokens; // rows (padded to a power of two)
    ked_status st = KED_OK;
    int *ids = ked_malloc(sizeof(int) * (size_t)batch_tokens * 4, "stats batch", err);
    int *len = ked_malloc(sizeof(int) * (size_t)maxB, "stats batch", err);
    int *row = ked_malloc(sizeof(int) * (size_t)batch_tokens, "stats batch", err);
    int *pos = ked_malloc(sizeof(int) * (size_t)batch_tokens, "stats batch", err);
    float *cap = ked_malloc(sizeof(float) * (size_t)batch_tokens * F * n_layers, "stats captures", err);
    float *cb = ked_malloc(sizeof(float) * (size_t)F * F, "stats batch sum", err);
    int *order = ked_malloc(sizeof(int) * (size_t)(n_docs ? n_docs : 1), "stats batch", err);
    ked_hook hooks[KED_MAX_EDIT_LAYERS];
    ked_run *r = NULL;        // reused while the (padded) batch shape fits
    int rB = 0, rT = 0;
    if (!ids || !len || !row || !pos || !cap || !cb || !order || n_layers > KED_MAX_EDIT_LAYERS) {
        st = ked_fail(err, KED_ERR_NOMEM, "stats: out of memory");
        goto done;
    }
    // documents by length (less padding); the sum does not depend on the order but for rounding
    for (int d = 0; d < n_docs; d++) order[d] = d;
    for (int i = 1; i < n_docs; i++) { // insertion sort by length: groups are small
        int v = order[i], j = i - 1;
        while (j >= 0 && lens[order[j]] > lens[v]) { order[j + 1] = order[j]; j--; }
        order[j + 1] = v;
    }
    for (int d0 = 0; d0 < n_docs;) {
        // documents d0..d1-1 with B * T <= batch_tokens (T = the longest of them)
        int d1 = d0, T = 0;
        while (d1 < n_docs) {
            int t = lens[order[d1]] > T ? lens[order[d1]] : T;
            if (d1 > d0 && (int64_t)t * (d1 - d0 + 1) > batch_tokens) break;
            T = t;
            d1++;
        }
        int B = d1 - d0, n = 0;
        if (T < 1) { d0 = d1; continue; }
        // rows padded up to a power of two, so that one run serves many batches
        int Bp = 1;
        while (Bp < B) Bp *= 2;
        if ((int64_t)Bp * T > 2 * (int64_t)batch_tokens) Bp = B;
        for (int b = 0; b < Bp; b++) {
            const int *doc = b < B ? docs[order[d0 + b]] : docs[order[d0]];
            int dl = b < B ? lens[order[d0 + b]] : 0;
            for (int t = 0; t < T; t++) ids[b * T + t] = t < dl ? doc[t] : doc[0];
            len[b] = dl ? dl : 1;
            for (int t = 0; t < dl; t++) { row[n] = b; pos[n] = t; n++; }
        }
        B = Bp;
        d0 = d1;
        if (!n) continue;
        for (int k = 0; k < n_layers; k++) {
            memset(&hooks[k], 0, sizeof hooks[k]);
            hooks[k].point = KED_HOOK_MLP_KEY;
            hooks[k].layer = layers[k];
            hooks[k].n = n;
            hooks[k].row = row;
            hooks[k].pos = pos;
            hooks[k].capture = cap + (size_t)k * batch_tokens * F;
        }
        if (!r || rB != B || rT < T) {
            ked_run_free(r);
            r = NULL;
            rB = B;
            rT = T > rT ? T : rT;
            if (rT < T) rT = T;
            if ((int64_t)rB * rT > 2 * (int64_t)batch_tokens) rT = T;
            if ((st = ked_run_new(m, rB, rT, rT, 0, &r, err))) goto done;
        }
        ked_forward_opts fo = ked_forward_defaults();
        fo.hooks = hooks;
        fo.n_hooks = n_layers;
        fo.stop_after_layer = top;
        fo.n_logit = 0;
        if ((st = ked_forward(m, r, ids, B, T, len, &fo, err))) goto done;
        for (int k = 0; k < n_layers; k++) {
            // cb = X^T X (upper triangle), X (n, F) row-major
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, F, n, 1.0f, hooks[k].capture, F,
                        0.0f, cb, F);
            double *a = acc[k];
            for (int i = 0; i < F; i++)
                for (int j = i; j < F; j++) a[(size_t)i * F + j] += cb[(size_t)i * F + j];
        }
        *count += n;
    }
done:
    ked_run_free(r);
    free(ids); free(len); free(row); free(pos); free(cap); free(cb); free(order);
    return st;
}

/* ---- corpora ------------------------------------------------------------------------------------ */

// the next document of text (line / blank-line separated; '\r' dropped; empty ones skipped) or
// of a JSONL file (field "text"); returns a malloc'd string or NULL at the end
static char *next_doc(const char *data, size_t len, size_t *at, int split, int64_t *line_no,
                      ked_status *st, const char *path, ked_error *err) {
    for (;;) {
        if (*at >= len) return NULL;
        size_t s = *at, e = s;
        if (split == KED_DOC_BLANK) {
            // up to a line that is empty (after dropping '\r')
            size_t p = s;
            e = len;
            while (p < len) {
                size_t nl = p;
                while (nl < len && data[nl] != '\n') nl++;
                size_t q = p;
                while (q < nl && data[q] == '\r') q++;
                if (q == nl && p > s) { e = p; break; }
                (*line_no)++;
                p = nl < len ? nl + 1 : len;
            }
            *at = e < len ? e + 1 : len;
            while (*at < len && (data[*at] == '\n' || data[*at] == '\r')) (*at)++;
        } else {
            while (e < len && data[e] != '\n') e++;
            *at = e < len ? e + 1 : len;
            (*line_no)++;
        }
        char *doc = malloc(e - s + 1);
        if (!doc) { *st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); return NULL; }
        size_t k = 0;
        for (size_t i = s; i < e; i++) if (data[i] != '\r') doc[k++] = data[i];
        while (split == KED_DOC_BLANK && k && doc[k - 1] == '\n') k--;
        doc[k] = 0;
        if (split == KED_DOC_JSONL) {
            if (!k) { free(doc); continue; }
            json_error_t je;
            json_t *j = json_loads(doc, 0, &je);
            free(doc);
            const char *t = j ? json_string_value(json_object_get(j, "text")) : NULL;
            if (!t) {
                json_decref(j);
                *st = ked_fail(err, KED_ERR_FORMAT, "%s: line %lld: a JSON object with a string "
                               "field 'text' expected", path, (long long)*line_no);
                return NULL;
            }
            doc = strdup(t);
            json_decref(j);
            if (!doc) { *st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); return NULL; }
            if (!*doc) { free(doc); continue; }
            return doc;
        }
        if (!k) { free(doc); continue; }
        return doc;
    }
}

static int ctx_len(const ked_config *c) { return c->max_pos > 0 ? c->max_pos : 2048; }

static const char *split_name(int s) {
    return s == KED_DOC_BLANK ? "blank" : s == KED_DOC_JSONL ? "jsonl" : "line";
}

static void key_name(char *buf, size_t cap, const char *dir, uint64_t mh, int layer, uint64_t ch,
                     const ked_stats_opts *o) {
    snprintf(buf, cap, "%s/%016llx-L%d-%016llx-%s-d%lld-t%lld.kstats", dir, (unsigned long long)mh,
             layer, (unsigned long long)ch, split_name(o->doc_split), (long long)o->max_docs,
             (long long)o->max_tokens);
}

// the .kstats file: "KEDSTAT1", int64 dim, count, docs, then dim*dim float64 (full, symmetric)
static ked_status write_kstats(const char *path, const ked_stats *s, ked_error *err) {
    size_t F = (size_t)s->dim, n = 32 + F * F * 8;
    char *buf = ked_malloc(n, "stats file", err);
    if (!buf) return KED_ERR_NOMEM;
    int64_t h[3] = {s->dim, s->count, s->docs};
    memcpy(buf, "KEDSTAT1", 8);
    memcpy(buf + 8, h, 24);
    memcpy(buf + 32, s->mom2, F * F * 8);
    ked_status st = ked_write_file_atomic(path, buf, n, err);
    free(buf);
    return st;
}

ked_status ked_stats_read_file(const char *path, ked_stats *out, ked_error *err) {
    size_t l = strlen(path);
    if (l > 4 && !strcmp(path + l - 4, ".npz")) return ked_stats_read_npz(path, out, err);
    // the header, then the matrix read straight into its buffer (no second copy of F^2 doubles)
    FILE *f = fopen(path, "rb");
    if (!f) return ked_fail(err, KED_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    size_t n = fstat(fileno(f), &sb) ? 0 : (size_t)sb.st_size;
    char magic[8];
    int64_t h[3] = {0, 0, 0};
    if (n < 32 || fread(magic, 1, 8, f) != 8 || fread(h, 8, 3, f) != 3 ||
        memcmp(magic, "KEDSTAT1", 8) || h[0] <= 0 || h[0] > 1 << 20 ||
        n != 32 + (size_t)h[0] * (size_t)h[0] * 8) {
        fclose(f);
        return ked_fail(err, KED_ERR_FORMAT, "%s: not a ked statistics file (or truncated)", path);
    }
    size_t FF = (size_t)h[0] * (size_t)h[0];
    memset(out, 0, sizeof *out);
    out->dim = (int)h[0];
    out->count = h[1];
    out->docs = h[2];
    out->mom2 = ked_malloc(FF * 8, "statistics", err);
    if (!out->mom2) { fclose(f); return KED_ERR_NOMEM; }
    if (fread(out->mom2, 8, FF, f) != FF) {
        fclose(f);
        ked_stats_free(out);
        return ked_fail(err, KED_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    snprintf(out->source, sizeof out->source, "%s", path);
    const char *L = strstr(path, "-L");
    out->layer = L ? atoi(L + 2) : -1;
    return KED_OK;
}

// the newest cached statistics of this model and layer (any corpus); 0 if none
static int find_cached(const char *dir, uint64_t mh, int layer, char *path, size_t cap) {
    char pre[64];
    snprintf(pre, sizeof pre, "%016llx-L%d-", (unsigned long long)mh, layer);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    time_t best = 0;
    int found = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, pre, strlen(pre)) || l < 7 || strcmp(de->d_name + l - 7, ".kstats")) continue;
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(p, &st) || (found && st.st_mtime < best)) continue;
        best = st.st_mtime;
        snprintf(path, cap, "%s", p);
        found = 1;
    }
    closedir(d);
    return found;
}

ked_status ked_stats_get(const ked_model *m, const ked_tokenizer *tok, const int *layers,
                         int n_layers, const ked_stats_opts *o, ked_stats *out, ked_error *err) {
    ked_stats_opts def = ked_stats_defaults();
    if (!o) o = &def;
    const ked_config *cfg = ked_model_config(m);
    int F = cfg->d_ff;
    char dir[1024];
    ked_stats_cache_dir(o->cache_dir, dir, sizeof dir);
    memset(out, 0, sizeof *out * (size_t)n_layers);
    if (n_layers < 1 || n_layers > KED_MAX_EDIT_LAYERS)
        return ked_fail(err, KED_ERR_ARG, "stats: 1 to %d layers", KED_MAX_EDIT_LAYERS);
    uint64_t mh = 0;
    ked_status st = ked_stats_model_hash(m, o->cache_dir, &mh, err);
    if (st) return st;
    char *data = NULL;
    size_t dlen = 0;
    uint64_t ch = 0;
    if (o->corpus) {
        if ((st = ked_read_file(o->corpus, &data, &dlen, err))) return st;
        ch = fnv(FNV0, data, dlen);
    }
    // the cache: every layer present -> done
    int need = 0;
    for (int k = 0; k < n_layers; k++) {
        char p[1400];
        int have = 0;
        if (o->corpus) {
            key_name(p, sizeof p, dir, mh, layers[k], ch, o);
            have = !o->no_cache && ked_file_exists(p);
            if (!have && !o->no_cache) { // the whole corpus, when it fits in the budget
                ked_stats_opts all = *o;
                all.max_docs = all.max_tokens = 0;
                key_name(p, sizeof p, dir, mh, layers[k], ch, &all);
                have = ked_file_exists(p) && !ked_stats_read_file(p, &out[k], NULL) &&
                       (o->max_docs <= 0 || out[k].docs < o->max_docs) &&
                       (o->max_tokens <= 0 || out[k].count < o->max_tokens);
                ked_stats_free(&out[k]);
            }
        } else {
            have = find_cached(dir, mh, layers[k], p, sizeof p);
        }
        if (have && !ked_stats_read_file(p, &out[k], NULL) && out[k].dim == F) {
            out[k].layer = layers[k];
            continue;
        }
        ked_stats_free(&out[k]);
        need = 1;
    }
    if (!need) { free(data); return KED_OK; }
    if (!o->corpus) {
        for (int k = 0; k < n_layers; k++) ked_stats_free(&out[k]);
        return ked_fail(err, KED_ERR_ARG, "no second-moment statistics of %s layer %d are cached "
                        "in %s: give a corpus (ked edit --stats-corpus FILE, or ked stats --corpus "
                        "FILE; EasyEdit's mom2_dataset is wikipedia)", ked_model_path(m), layers[0], dir);
    }
    if (!tok) {
        free(data);
        for (int k = 0; k < n_layers; k++) ked_stats_free(&out[k]);
        return ked_fail(err, KED_ERR_ARG, "statistics of %s layer %d are not cached, and computing "
                        "them from %s needs a tokenizer", ked_model_path(m), layers[0], o->corpus);
    }
    // one pass over the corpus for every layer (the cached ones too: one pass costs the same)
    double *acc[KED_MAX_EDIT_LAYERS] = {0};
    int **docs = NULL, *lens = NULL, cap_docs = 0, nd = 0, maxT = ctx_len(cfg);
    int64_t count = 0, docs_done = 0, tok_done = 0;
    double t0 = ked_time_s();
    size_t at = 0;
    int64_t line_no = 0;
    for (int k = 0; k < n_layers; k++) {
        ked_stats_free(&out[k]);
        acc[k] = ked_calloc((size_t)F * F, sizeof(double), "statistics", err);
        if (!acc[k]) { st = KED_ERR_NOMEM; goto done; }
    }
    int batch_docs = 64, exhausted = 0; // exhausted: the corpus ended before the budget
    for (int eof = 0; !eof;) {
        // read a group of documents, tokenise, then accumulate them
        nd = 0;
        int64_t group_tok = 0;
        while (nd < batch_docs || group_tok < (int64_t)o->batch_tokens * 32) {
            if ((o->max_docs > 0 && docs_done + nd >= o->max_docs) ||
                (o->max_tokens > 0 && tok_done + group_tok >= o->max_tokens)) { eof = 1; break; }
            char *doc = next_doc(data, dlen, &at, o->doc_split, &line_no, &st, o->corpus, err);
            if (st) goto done;
            if (!doc) { eof = exhausted = 1; break; }
            int *ids = NULL, n = 0;
            st = ked_tokenizer_encode(tok, doc, strlen(doc), 1, &ids, NULL, &n, err);
            free(doc);
            if (st) goto done;
            if (n > maxT) n = maxT;
            if (o->max_tokens > 0 && tok_done + group_tok + n > o->max_tokens)
                n = (int)(o->max_tokens - tok_done - group_tok);
            if (n <= 0) { free(ids); continue; }
            if (nd == cap_docs) {
                cap_docs = cap_docs ? 2 * cap_docs : 256;
                int **nd2 = realloc(docs, sizeof *docs * (size_t)cap_docs);
                int *nl2 = nd2 ? realloc(lens, sizeof *lens * (size_t)cap_docs) : NULL;
                if (nd2) docs = nd2;
                if (!nd2 || !nl2) { free(ids); st = ked_fail(err, KED_ERR_NOMEM, "out of memory"); goto done; }
                lens = nl2;
            }
            docs[nd] = ids;
            lens[nd++] = n;
            group_tok += n;
        }
        if (nd) {
            st = edit_stats_ids(m, (const int *const *)docs, lens, nd, layers, n_layers,
                                o->batch_tokens, acc, &count, err);
            for (int i = 0; i < nd; i++) free(docs[i]);
            docs_done += nd;
            tok_done += group_tok;
            nd = 0;
            if (st) goto done;
        }
        if (o->progress) {
            double el = ked_time_s() - t0, frac = -1;
            if (o->max_tokens > 0) frac = (double)tok_done / o->max_tokens;
            else if (o->max_docs > 0) frac = (double)docs_done / o->max_docs;
            double byfile = dlen ? (double)at / dlen : 1;
            if (frac < 0 || byfile > frac) frac = frac < 0 ? byfile : (byfile > frac ? byfile : frac);
            o->progress(docs_done, tok_done, el, frac, o->user);
        }
    }
    if (count == 0) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: no tokens (empty corpus?)", o->corpus);
        goto done;
    }
    for (int k = 0; k < n_layers; k++) {
        double *a = acc[k];
        for (int i = 0; i < F; i++)
            for (int j = i; j < F; j++) {
                a[(size_t)i * F + j] /= (double)count;
                a[(size_t)j * F + i] = a[(size_t)i * F + j];
            }
        out[k].layer = layers[k];
        out[k].dim = F;
        out[k].count = count;
        out[k].docs = docs_done;
        out[k].mom2 = a;
        acc[k] = NULL;
        char p[1400];
        ked_stats_opts all = *o;
        if (exhausted) all.max_docs = all.max_tokens = 0; // the same as any larger budget
        key_name(p, sizeof p, dir, mh, layers[k], ch, &all);
        snprintf(out[k].source, sizeof out[k].source, "computed from %s", o->corpus);
        if (!o->no_cache) {
            if (ked_mkdir_p(dir)) { st = ked_fail(err, KED_ERR_IO, "%s: cannot create the cache directory", dir); goto done; }
            if ((st = write_kstats(p, &out[k], err))) goto done;
        }
    }
done:
    for (int k = 0; k < n_layers; k++) free(acc[k]);
    for (int i = 0; i < nd; i++) free(docs[i]);
    free(docs); free(lens); free(data);
    if (st) for (int k = 0; k < n_layers; k++) ked_stats_free(&out[k]);
    return st;
}

/* ---- the cache: list and clear ----------------------------------------------------------------- */

ked_status ked_stats_cache_list(const char *cache_dir, char **text, ked_error *err) {
    char dir[1024];
    ked_stats_cache_dir(cache_dir, dir, sizeof dir);
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    if (!s) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    s[0] = 0;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            int ks = l > 7 && !strcmp(de->d_name + l - 7, ".kstats");
            int ns = l > 6 && !strcmp(de->d_name + l - 6, ".kproj");
            if (!ks && !ns) continue;
            char p[1400];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            struct stat st;
            if (stat(p, &st)) continue;
            char line[1700];
            int64_t h[3] = {0, 0, 0};
            FILE *f = fopen(p, "rb");
            if (f) { char mg[8]; if (fread(mg, 1, 8, f) != 8 || fread(h, 8, 3, f) != 3) memset(h, 0, sizeof h); fclose(f); }
            int len = ks ? snprintf(line, sizeof line, "%s  dim %lld  tokens %lld  docs %lld  %.1f MB\n", p,
                                    (long long)h[0], (long long)h[1], (long long)h[2], st.st_size / 1e6)
                         : snprintf(line, sizeof line, "%s  null-space projector  %.1f MB\n", p, st.st_size / 1e6);
            if (n + (size_t)len + 1 > cap) {
                cap = 2 * (n + (size_t)len + 1);
                char *s2 = realloc(s, cap);
                if (!s2) { closedir(d); free(s); return ked_fail(err, KED_ERR_NOMEM, "out of memory"); }
                s = s2;
            }
            memcpy(s + n, line, (size_t)len + 1);
            n += (size_t)len;
        }
        closedir(d);
    }
    *text = s;
    return KED_OK;
}

ked_status ked_stats_cache_clear(const char *cache_dir, int *n_removed, ked_error *err) {
    char dir[1024];
    ked_stats_cache_dir(cache_dir, dir, sizeof dir);
    *n_removed = 0;
    DIR *d = opendir(dir);
    if (!d) return KED_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (!((l > 7 && !strcmp(de->d_name + l - 7, ".kstats")) ||
              (l > 6 && !strcmp(de->d_name + l - 6, ".kproj")) || !strncmp(de->d_name, "modelhash-", 10)))
            continue;
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (unlink(p)) { closedir(d); return ked_fail(err, KED_ERR_IO, "%s: cannot remove", p); }
        (*n_removed)++;
    }
    closedir(d);
    return KED_OK;
}

/* ---- EasyEdit's .npz files --------------------------------------------------------------------- */

static uint32_t rd32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

// one .npy member: dtype '<f4' / '<f8' / '<i8' / '<i4', C order; values as double
static ked_status npy_parse(const char *path, const char *name, const unsigned char *p, size_t n,
                            double **vals, int64_t *numel, int *ndim, int64_t shape[2],
                            ked_error *err) {
    if (n < 10 || memcmp(p, "\x93NUMPY", 6))
        return ked_fail(err, KED_ERR_FORMAT, "%s: member %s is not a .npy array", path, name);
    size_t hl, off;
    if (p[6] == 1) { hl = rd16(p + 8); off = 10; }
    else { if (n < 12) goto bad; hl = rd32(p + 8); off = 12; }
    if (off + hl > n) goto bad;
    char hdr[1024];
    if (hl >= sizeof hdr) goto bad;
    memcpy(hdr, p + off, hl);
    hdr[hl] = 0;
    const char *ds = strstr(hdr, "'descr':");
    const char *fo = strstr(hdr, "'fortran_order':");
    const char *sh = strstr(hdr, "'shape':");
    if (!ds || !fo || !sh) goto bad;
    char descr[16] = {0};
    if (sscanf(ds + 8, " '%15[^']'", descr) != 1) goto bad;
    if (strstr(fo, "True")) return ked_fail(err, KED_ERR_UNSUPPORTED, "%s: member %s is in Fortran order", path, name);
    const char *q = strchr(sh, '(');
    if (!q) goto bad;
    *ndim = 0;
    int64_t ne = 1;
    q++;
    while (*q && *q != ')') {
        while (*q == ' ' || *q == ',') q++;
        if (*q == ')') break;
        char *e;
        long long v = strtoll(q, &e, 10);
        if (e == q || v < 0 || *ndim >= 2) goto bad;
        shape[(*ndim)++] = v;
        ne *= v;
        q = e;
    }
    int es = !strcmp(descr, "<f4") || !strcmp(descr, "<i4") ? 4 : !strcmp(descr, "<f8") || !strcmp(descr, "<i8") ? 8 : 0;
    if (!es) return ked_fail(err, KED_ERR_UNSUPPORTED, "%s: member %s has dtype %s (float32, "
                             "float64, int32 or int64 expected)", path, name, descr);
    off += hl;
    if (ne > (int64_t)((n - off) / (size_t)es)) goto bad;
    *vals = malloc(sizeof(double) * (size_t)(ne ? ne : 1));
    if (!*vals) return ked_fail(err, KED_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < ne; i++) {
        const unsigned char *x = p + off + (size_t)i * es;
        if (descr[1] == 'f' && es == 4) { float f; memcpy(&f, x, 4); (*vals)[i] = f; }
        else if (descr[1] == 'f') { double f; memcpy(&f, x, 8); (*vals)[i] = f; }
        else if (es == 4) { int32_t v; memcpy(&v, x, 4); (*vals)[i] = v; }
        else { int64_t v; memcpy(&v, x, 8); (*vals)[i] = (double)v; }
    }
    *numel = ne;
    return KED_OK;
bad:
    return ked_fail(err, KED_ERR_FORMAT, "%s: member %s: bad .npy header or size", path, name);
}

ked_status ked_stats_read_npz(const char *path, ked_stats *out, ked_error *err) {
    char *data = NULL;
    size_t n = 0;
    ked_status st = ked_read_file(path, &data, &n, err);
    if (st) return st;
    const unsigned char *d = (const unsigned char *)data;
    double *mom2 = NULL, *count = NULL;
    int64_t mn = 0, shape[2] = {0, 0};
    int mdim = 0;
    // walk the local file headers (np.savez writes them one after the other)
    size_t at = 0;
    while (at + 30 <= n && rd32(d + at) == 0x04034b50) {
        uint16_t flags = rd16(d + at + 6), method = rd16(d + at + 8);
        uint64_t csize = rd32(d + at + 18), usize = rd32(d + at + 22);
        size_t nl = rd16(d + at + 26), xl = rd16(d + at + 28);
        if (at + 30 + nl + xl > n) break;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(nl < 255 ? nl : 255), (const char *)d + at + 30);
        // zip64: sizes in the extra field
        if (csize == 0xffffffffu || usize == 0xffffffffu) {
            const unsigned char *x = d + at + 30 + nl, *xe = x + xl;
            while (x + 4 <= xe) {
                uint16_t id = rd16(x), sz = rd16(x + 2);
                if (id == 1 && x + 4 + 16 <= xe) {
                    uint64_t u, c;
                    memcpy(&u, x + 4, 8); memcpy(&c, x + 12, 8);
                    usize = u; csize = c;
                }
                x += 4 + sz;
            }
        }
        size_t body = at + 30 + nl + xl;
        if (flags & 8) { st = ked_fail(err, KED_ERR_UNSUPPORTED, "%s: member %s uses a data descriptor (not written by np.savez)", path, name); goto done; }
        if (method != 0) {
            st = ked_fail(err, KED_ERR_UNSUPPORTED, "%s: member %s is compressed (np.savez_compressed); "
                          "ked reads np.savez files (stored): re-save with np.savez", path, name);
            goto done;
        }
        if (csize > n - body) { st = ked_fail(err, KED_ERR_FORMAT, "%s: member %s is truncated", path, name); goto done; }
        int64_t ne = 0, sh[2] = {0, 0};
        int nd = 0;
        if (!strcmp(name, "mom2.mom2.npy")) {
            if ((st = npy_parse(path, name, d + body, (size_t)csize, &mom2, &mn, &mdim, shape, err))) goto done;
        } else if (!strcmp(name, "mom2.count.npy")) {
            if ((st = npy_parse(path, name, d + body, (size_t)csize, &count, &ne, &nd, sh, err))) goto done;
            if (ne != 1) { st = ked_fail(err, KED_ERR_FORMAT, "%s: mom2.count must be a scalar", path); goto done; }
        }
        at = body + (size_t)csize;
    }
    if (!mom2 || !count) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: no %s in the archive (EasyEdit's layer_stats keys "
                      "mom2.mom2, mom2.count expected)", path, !mom2 ? "mom2.mom2" : "mom2.count");
        goto done;
    }
    if (mdim != 2 || shape[0] != shape[1] || shape[0] < 1 || !(count[0] > 0)) {
        st = ked_fail(err, KED_ERR_FORMAT, "%s: mom2.mom2 must be square and mom2.count positive", path);
        goto done;
    }
    memset(out, 0, sizeof *out);
    out->dim = (int)shape[0];
    out->count = (int64_t)count[0];
    out->layer = -1;
    for (int64_t i = 0; i < mn; i++) mom2[i] /= count[0];
    out->mom2 = mom2;
    mom2 = NULL;
    snprintf(out->source, sizeof out->source, "%s", path);
done:
    free(mom2); free(count); free(data);
    return st;
}
