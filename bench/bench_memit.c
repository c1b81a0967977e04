// bench_memit.c: the MEMIT family's costs on a GPT-2-small-shaped model (issue 7, performance):
// second-moment statistics of the five MEMIT layers in one pass, a MEMIT batch of 100 edits
// with cached statistics, and the memory of statistics and AlphaEdit projectors for a wide
// (7B-shaped, d_ff 11008) layer. bench/ref_stats_torch.py and bench/ref_memit_torch.py do the
// same work as EasyEdit does it, from the token ids this program writes.
//
// The model is the random GPT-2-small directory bench_model / bench_edit write (12 layers, 768
// wide, vocab 50257, 1024 positions, f32); the tokenizer is GPT-2's (tests/data/tokenizer/gpt2).
// Each part runs in a fresh child process (this program re-executed with --child PART), so that
// its peak resident memory (VmHWM) is its own:
//
//  stats  the corpus: the first documents (lines, '\r' dropped, blank lines skipped) of
//         --corpus (WikiText-2 test) until --stats-tokens tokens (each document truncated to the
//         1024 positions, as EasyEdit and ked stats do), written to CACHE.corpus.txt (beside
//         the cache directory) and, as token ids, to --stats-ids (JSON, for
//         ref_stats_torch.py); the model hash is computed first (ked keeps it; not timed);
//         the .kstats files of CACHE are removed; then
//         ked_stats_get for the layers of --hparams (3-7) over that file, timed: one pass, the
//         forward stopping after layer 7, float64 sums, the five cache files written.
//         Prints stats_tokens, stats_seconds, stats_tok_s_per_layer_pass (tokens x layers / s),
//         stats_peak_rss_mb.
//  memit  --n ZsRE requests (the records of --data files, in order: tests/data/eval
//         zsre_eval_50.json then knowedit_zsre_50.json: 100), the hyperparameters of --hparams
//         (EasyEdit's MEMIT gpt2-xl.yaml adapted to 12 layers: layers 3-7, 20 z steps) and the
//         fixed context templates of --templates ("{}" + 5, EasyEdit's MEMIT shape); the
//         statistics from CACHE (the stats part's; read, as an edit reads them, inside the
//         timing); ked_edit_batch timed (wall, CPU, phases from the step callback), then peak
//         RSS against the weights and the statistics. Writes every tokenised request to
//         --inputs (JSON) for ref_memit_torch.py.
//  mem    the memory of statistics and projectors for a layer of width --mem-dim (default
//         11008, LLaMA-2-7B's d_ff): the bytes of each buffer ked allocates (formulas, printed),
//         and measured peaks (VmHWM reset through /proc/self/clear_refs) of ked's MEMIT solve
//         (edit_memit_solve, n = 100 keys, a random positive definite C of that width) and, at
//         --mem-alpha-dim (default 3072: dsyevd and AlphaEdit's F^3 products are too slow at
//         11008 on two cores), of AlphaEdit's solve with its projector.
//
//   build/bench/bench_memit [--dir DIR] [--tokenizer DIR] [--corpus FILE] [--stats-tokens N]
//       [--hparams F] [--templates F] [--data F]... [--n N] [--threads N] [--cache DIR]
//       [--inputs FILE] [--stats-ids FILE] [--mem-dim F] [--mem-alpha-dim F]
//       [--only stats|memit|mem|all]
// Prints `key value` lines. OMP_WAIT_POLICY is taken from the environment (run.sh: passive).
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define BENCH_NAME "bench_memit"
#include "bench_util.h"
#include "ked.h"
#include "edit/edit.h" // edit_case_build, edit_memit_solve

// reset VmHWM to the current RSS (Linux >= 4.0); 0 on success
static int reset_hwm(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

typedef struct {
    const char *dir, *tokenizer, *corpus, *hparams, *templates, *cache, *inputs, *stats_ids, *only;
    const char *data[8];
    int n_data, stats_tokens, n, threads, mem_dim, mem_alpha_dim;
} opts;

static void json_ids(FILE *f, const int *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", ids[i]);
    fputc(']', f);
}

// the corpus file next to the cache directory
static void corpus_path(const opts *o, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.corpus.txt", o->cache);
}

static void stats_opts_for(const opts *o, ked_stats_opts *so, const char *corpus) {
    *so = ked_stats_defaults();
    so->corpus = corpus;
    so->doc_split = KED_DOC_LINE;
    so->cache_dir = o->cache;
}

/* ---- stats ------------------------------------------------------------------------------------- */

static int child_stats(const opts *o) {
    ked_error err;
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    double t0 = now();
    if (ked_model_load(o->dir, &m, &err)) die("ked_model_load", &err);
    printf("stats_load_s %.3f\n", now() - t0);
    ked_set_threads(o->threads);
    if (ked_tokenizer_load(o->tokenizer, &tok, &err)) die("ked_tokenizer_load", &err);
    ked_hparams hp;
    if (ked_hparams_load(m, o->hparams, "memit", &hp, &err)) die("ked_hparams_load", &err);
    const ked_config *cfg = ked_model_config(m);
    int maxT = cfg->max_pos > 0 ? cfg->max_pos : 2048, F = cfg->d_ff;

    // the corpus: whole documents until the token budget
    char *data = NULL, cpath[1200];
    size_t dlen = 0;
    corpus_path(o, cpath, sizeof cpath);
    FILE *f = fopen(o->corpus, "rb");
    if (!f) die(o->corpus, NULL);
    fseek(f, 0, SEEK_END);
    dlen = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc(dlen + 1);
    if (!data || fread(data, 1, dlen, f) != dlen) die(o->corpus, NULL);
    fclose(f);
    data[dlen] = 0;
    FILE *cf = fopen(cpath, "w"), *jf = fopen(o->stats_ids, "w");
    if (!cf) die(cpath, NULL);
    if (!jf) die(o->stats_ids, NULL);
    fprintf(jf, "{\"generator\": \"bench/bench_memit.c\", \"corpus\": \"%s\", \"max_len\": %d,\n"
                " \"layers\": [", o->corpus, maxT);
    for (int i = 0; i < hp.n_layers; i++) fprintf(jf, "%s%d", i ? ", " : "", hp.layers[i]);
    fprintf(jf, "],\n \"docs\": [\n");
    long total = 0, ndocs = 0;
    double tt = 0;
    size_t at = 0;
    while (at < dlen && total < o->stats_tokens) {
        size_t e = at;
        while (e < dlen && data[e] != '\n') e++;
        char *line = data + at;
        size_t k = 0;
        for (size_t i = at; i < e; i++) if (data[i] != '\r') line[k++] = data[i];
        at = e + 1;
        size_t blank = 1;
        for (size_t i = 0; i < k; i++) if (line[i] != ' ' && line[i] != '\t') { blank = 0; break; }
        if (blank) continue; // empty and whitespace-only lines are not documents here
        int *ids = NULL, n = 0;
        double tk = now();
        if (ked_tokenizer_encode(tok, line, k, 1, &ids, NULL, &n, &err)) die("tokenize", &err);
        tt += now() - tk;
        if (n > maxT) n = maxT;
        fwrite(line, 1, k, cf);
        fputc('\n', cf);
        fprintf(jf, "%s  ", ndocs ? ",\n" : "");
        json_ids(jf, ids, n);
        free(ids);
        total += n;
        ndocs++;
    }
    fprintf(jf, "\n ]}\n");
    if (fclose(cf)) die(cpath, NULL);
    if (fclose(jf)) die(o->stats_ids, NULL);
    free(data);
    printf("stats_corpus %s\nstats_docs %ld\nstats_tokens %ld\nstats_tokenize_s %.3f\n", cpath,
           ndocs, total, tt);
    printf("stats_ids %s\n", o->stats_ids);
    printf("stats_layers %d (%d", hp.n_layers, hp.layers[0]);
    for (int i = 1; i < hp.n_layers; i++) printf(",%d", hp.layers[i]);
    printf(")\nstats_dim %d\n", F);

    // the model hash once (ked keeps it in the cache directory), and no cached statistics
    mkdir(o->cache, 0755);
    uint64_t mh = 0;
    t0 = now();
    if (ked_stats_model_hash(m, o->cache, &mh, &err)) die("model hash", &err);
    printf("stats_model_hash_s %.3f\n", now() - t0);
    DIR *d = opendir(o->cache);
    int removed = 0;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 7 && !strcmp(de->d_name + l - 7, ".kstats")) {
                char p[1400];
                snprintf(p, sizeof p, "%s/%s", o->cache, de->d_name);
                removed += unlink(p) == 0;
            }
        }
        closedir(d);
    }
    printf("stats_cache %s (%d old .kstats removed)\n", o->cache, removed);
    ked_stats_opts so;
    stats_opts_for(o, &so, cpath);
    ked_stats S[KED_MAX_EDIT_LAYERS];
    long hwm0 = status_kb("VmHWM");
    loadavg("stats_start");
    double c0 = cpu_now();
    t0 = now();
    if (ked_stats_get(m, tok, hp.layers, hp.n_layers, &so, S, &err)) die("ked_stats_get", &err);
    double sec = now() - t0, cpu = cpu_now() - c0;
    loadavg("stats_end");
    long hwm = status_kb("VmHWM");
    printf("stats_count %lld\nstats_docs_counted %lld\n", (long long)S[0].count, (long long)S[0].docs);
    printf("stats_seconds %.3f\nstats_cpu_seconds %.3f\n", sec, cpu);
    printf("stats_tok_s %.1f\n", S[0].count / sec);
    printf("stats_tok_s_per_layer_pass %.1f\n", S[0].count * (double)hp.n_layers / sec);
    printf("stats_s_per_1000_tok_per_layer %.3f\n", 1000.0 * sec / ((double)S[0].count * hp.n_layers));
    double trace = 0;
    for (int i = 0; i < F; i++) trace += S[0].mom2[(size_t)i * F + i];
    printf("stats_trace_L%d %.6g\n", hp.layers[0], trace);
    double wb = (double)ked_model_weight_bytes(m);
    printf("weight_mb %.1f\n", wb / 1e6);
    printf("stats_load_peak_rss_mb %.1f\n", mb(hwm0));
    printf("stats_peak_rss_mb %.1f\n", mb(hwm));
    printf("stats_fp64_result_mb %.1f\n", hp.n_layers * (double)F * F * 8 / 1e6);
    for (int i = 0; i < hp.n_layers; i++) ked_stats_free(&S[i]);
    ked_tokenizer_free(tok);
    ked_model_free(m);
    return 0;
}

/* ---- memit ------------------------------------------------------------------------------------- */

static void write_seq(FILE *f, const edit_seq *s) {
    fprintf(f, "{\"lookup\": %d, \"ids\": ", s->lookup);
    json_ids(f, s->ids, s->n);
    fputc('}', f);
}

static int child_memit(const opts *o) {
    ked_error err;
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    long rss0 = status_kb("VmRSS");
    double t0 = now();
    if (ked_model_load(o->dir, &m, &err)) die("ked_model_load", &err);
    double load_s = now() - t0;
    long hwm_load = status_kb("VmHWM");
    ked_set_threads(o->threads);
    if (ked_tokenizer_load(o->tokenizer, &tok, &err)) die("ked_tokenizer_load", &err);
    ked_hparams hp;
    if (ked_hparams_load(m, o->hparams, "memit", &hp, &err)) die("ked_hparams_load", &err);
    char **templates = NULL;
    int n_t = 0;
    if (ked_edit_templates_read(o->templates, &templates, &n_t, &err)) die("templates", &err);
    // the requests
    ked_dataset *ds[8] = {0};
    ked_request *reqs = calloc((size_t)o->n, sizeof *reqs);
    int nr = 0;
    for (int i = 0; i < o->n_data && nr < o->n; i++) {
        if (ked_dataset_load(o->data[i], KED_DATA_AUTO, &ds[i], &err)) die(o->data[i], &err);
        for (int j = 0; j < ked_dataset_n(ds[i]) && nr < o->n; j++) {
            reqs[nr] = ked_dataset_case(ds[i], j)->req;
            reqs[nr].rephrase = NULL;
            nr++;
        }
    }
    if (nr < o->n) fprintf(stderr, "bench_memit: only %d requests in the data files\n", nr);
    const ked_config *cfg = ked_model_config(m);
    int F = cfg->d_ff, C = cfg->d_model;
    // the tokenised requests for the PyTorch side (ked_edit_batch builds the same inside)
    FILE *jf = fopen(o->inputs, "w");
    if (!jf) die(o->inputs, NULL);
    long rows = 0, toks = 0;
    fprintf(jf, "{\"generator\": \"bench/bench_memit.c\", \"hparams\": {\"source\": \"%s\", "
                "\"layers\": [", hp.source);
    for (int i = 0; i < hp.n_layers; i++) fprintf(jf, "%s%d", i ? ", " : "", hp.layers[i]);
    fprintf(jf, "], \"v_num_grad_steps\": %d, \"v_lr\": %.9g, \"v_weight_decay\": %.9g, "
                "\"clamp_norm_factor\": %.9g, \"kl_factor\": %.9g, \"v_loss_layer\": %d, "
                "\"mom2_update_weight\": %.9g},\n \"stats_cache\": \"%s\",\n \"requests\": [\n",
            hp.v_num_grad_steps, hp.v_lr, hp.v_weight_decay, hp.clamp_norm_factor, hp.kl_factor,
            hp.v_loss_layer, hp.mom2_update_weight, o->cache);
    for (int j = 0; j < nr; j++) {
        edit_case c;
        if (edit_case_build(tok, &reqs[j], (const char *const *)templates, n_t, hp.fact_token, &c, &err))
            die("edit_case_build", &err);
        fprintf(jf, "  {\"ctx\": [");
        for (int i = 0; i < c.n_ctx; i++) {
            if (i) fputs(", ", jf);
            write_seq(jf, &c.ctx[i]);
            toks += c.ctx[i].n + c.n_target - 1;
        }
        fprintf(jf, "],\n   \"bare\": ");
        write_seq(jf, &c.bare);
        fprintf(jf, ", \"kl\": ");
        write_seq(jf, &c.kl);
        fprintf(jf, ", \"target_ids\": ");
        json_ids(jf, c.target, c.n_target);
        fprintf(jf, "}%s\n", j + 1 < nr ? "," : "");
        rows += c.n_ctx + 1;
        toks += c.kl.n;
        edit_case_free(&c);
    }
    fprintf(jf, " ]}\n");
    if (fclose(jf)) die(o->inputs, NULL);
    printf("memit_inputs %s\n", o->inputs);
    printf("memit_hparams %s\nmemit_requests %d\nmemit_templates %d\n", hp.source, nr, n_t);
    printf("memit_layers %d (%d-%d)\nmemit_z_steps %d\nmemit_lambda %.0f\n", hp.n_layers,
           hp.layers[0], hp.layers[hp.n_layers - 1], hp.v_num_grad_steps, hp.mom2_update_weight);
    printf("memit_z_rows %ld\nmemit_z_tokens %ld\n", rows, toks);
    printf("memit_load_s %.3f\nmemit_threads %d\n", load_s, o->threads);

    char cpath[1200];
    corpus_path(o, cpath, sizeof cpath);
    ked_stats_opts so;
    stats_opts_for(o, &so, ked_file_exists(cpath) ? cpath : NULL);
    ked_edit_opts eo = ked_edit_defaults();
    eo.templates = (const char *const *)templates;
    eo.n_templates = n_t;
    eo.stats = &so;
    steps_log *sl = calloc(1, sizeof *sl);
    sl->track_hwm = 1; // the z optimisations' peak
    eo.on_step = steps_log_on_step;
    eo.user = sl;
    ked_patch *p = NULL;
    ked_edit_info info;
    fflush(stdout);
    long hwm_before = status_kb("VmHWM");
    loadavg("memit_start");
    double c0 = cpu_now();
    t0 = now();
    if (ked_edit_batch(m, tok, &hp, reqs, nr, &eo, &p, &info, &err)) die("ked_edit_batch", &err);
    double t1 = now(), cpu = cpu_now() - c0;
    loadavg("memit_end");
    long hwm = status_kb("VmHWM");
    double wb = (double)ked_model_weight_bytes(m);
    double stats32 = hp.n_layers * (double)F * F * 4, stats64 = 2 * stats32;
    printf("memit_seconds %.3f\nmemit_cpu_seconds %.3f\n", t1 - t0, cpu);
    printf("memit_seconds_per_edit %.3f\n", (t1 - t0) / nr);
    // phases: the step callback fires for the first request of each batch of z optimisations
    if (sl->n) {
        printf("memit_phase_until_first_loss_s %.3f\n", sl->t[0] - t0);
        printf("memit_phase_z_s %.3f (to the last step callback)\n", sl->t[sl->n - 1] - t0);
        printf("memit_phase_after_z_s %.3f (keys, cur, solves of %d layers)\n", t1 - sl->t[sl->n - 1],
               hp.n_layers);
        printf("memit_peak_rss_at_last_z_step_mb %.1f\n", mb(sl->hwm));
        int k = 0;
        while (k + 1 < sl->n && sl->step[k + 1] > sl->step[k]) k++;
        printf("memit_req0_steps %d\nmemit_req0_loss_first %.4f\nmemit_req0_loss_last %.4f\n", k + 1,
               sl->loss[0], sl->loss[k]);
        printf("memit_req0_losses");
        for (int i = 0; i <= k; i++) printf(" %.4f", sl->loss[i]);
        printf("\n");
    }
    printf("memit_info_steps %d\nmemit_stats_source %s\n", info.n_steps, info.stats_source);
    printf("weight_mb %.1f\n", wb / 1e6);
    printf("memit_stats_fp32_mb %.1f\nmemit_stats_fp64_mb %.1f\n", stats32 / 1e6, stats64 / 1e6);
    printf("memit_rss_before_load_mb %.1f\n", mb(rss0));
    printf("memit_load_peak_rss_mb %.1f\n", mb(hwm_load));
    printf("memit_peak_before_edit_mb %.1f\n", mb(hwm_before));
    printf("memit_peak_rss_mb %.1f\n", mb(hwm));
    printf("memit_peak_rss_over_weights %.3f\n", hwm * 1024.0 / wb);
    printf("memit_peak_rss_over_weights_plus_stats_fp32 %.3f\n", hwm * 1024.0 / (wb + stats32));
    printf("memit_peak_rss_over_weights_plus_stats_fp64 %.3f\n", hwm * 1024.0 / (wb + stats64));
    printf("memit_edit_rss_growth_mb %.1f\n", mb(hwm - hwm_load));
    (void)C;
    ked_patch_free(p);
    free(sl);
    free(reqs);
    for (int i = 0; i < o->n_data; i++) ked_dataset_free(ds[i]);
    ked_edit_templates_free(templates, n_t);
    ked_tokenizer_free(tok);
    ked_model_free(m);
    return 0;
}

/* ---- mem: statistics and projectors of a wide layer -------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) { // xorshift64*, in [-1, 1)
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 4503599627370496.0 - 1.0;
}

// one solve of method kind (0 MEMIT, 2 AlphaEdit) at width F with n keys; prints its peak
static void mem_solve(int kind, int F, int n, const char *cache) {
    const char *name = kind == 0 ? "memit" : "alphaedit";
    ked_stats S;
    memset(&S, 0, sizeof S);
    S.dim = F;
    S.count = 1000000;
    snprintf(S.source, sizeof S.source, "bench_memit random %s %d", name, F);
    long r0 = status_kb("VmRSS");
    S.mom2 = malloc(sizeof(double) * (size_t)F * F);
    if (!S.mom2) die("statistics", NULL);
    double t0 = now();
    if (kind == 0) {
        // diagonally dominant, symmetric: positive definite
        for (int i = 0; i < F; i++) {
            for (int j = i; j < F; j++) {
                double v = i == j ? 1.0 + 0.01 * F : 0.01 * urand();
                S.mom2[(size_t)i * F + j] = S.mom2[(size_t)j * F + i] = v;
            }
        }
    } else {
        // rank F/2 + a small ridge: half the eigenvalues near zero (a null space to keep)
        int r = F / 2;
        float *X = malloc(sizeof(float) * (size_t)r * F);
        double *Xd = malloc(sizeof(double) * (size_t)r * F);
        if (!X || !Xd) die("statistics", NULL);
        for (size_t i = 0; i < (size_t)r * F; i++) Xd[i] = urand();
        memset(S.mom2, 0, sizeof(double) * (size_t)F * F);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, F, r, 1.0 / r, Xd, F, 0.0, S.mom2, F);
        for (int i = 0; i < F; i++) {
            S.mom2[(size_t)i * F + i] += 1e-4;
            for (int j = i + 1; j < F; j++) S.mom2[(size_t)j * F + i] = S.mom2[(size_t)i * F + j];
        }
        free(X);
        free(Xd);
    }
    long r1 = status_kb("VmRSS");
    printf("mem_%s_F%d_make_s %.2f\n", name, F, now() - t0);
    double *K = malloc(sizeof(double) * (size_t)F * n), *R = malloc(sizeof(double) * (size_t)768 * n);
    float *fa = malloc(sizeof(float) * (size_t)768 * n), *fb = malloc(sizeof(float) * (size_t)F * n);
    if (!K || !R || !fa || !fb) die("keys", NULL);
    for (size_t i = 0; i < (size_t)F * n; i++) K[i] = urand();
    for (size_t i = 0; i < (size_t)768 * n; i++) R[i] = urand();
    ked_hparams hp;
    memset(&hp, 0, sizeof hp);
    snprintf(hp.method, sizeof hp.method, "%s", name);
    snprintf(hp.source, sizeof hp.source, "bench_memit");
    hp.mom2_update_weight = 20000;
    hp.nullspace_threshold = -0.01f; // 1% of the largest eigenvalue (ked's default)
    hp.L2 = 10;
    ked_stats_opts so = ked_stats_defaults();
    so.cache_dir = cache;
    ked_edit_opts eo = ked_edit_defaults();
    eo.stats = &so;
    ked_error err;
    int nd = 0;
    if (reset_hwm()) printf("mem_note clear_refs failed: the peaks below are the process's\n");
    long rs = status_kb("VmRSS");
    t0 = now();
    if (edit_memit_solve(kind, &hp, &S, K, R, 768, n, NULL, &eo, fa, fb, &nd, &err)) die("solve", &err);
    double sec = now() - t0;
    long hwm = status_kb("VmHWM");
    double F2 = (double)F * F;
    printf("mem_%s_F%d_statistics_fp64_mb %.1f (measured RSS growth %.1f)\n", name, F, F2 * 8 / 1e6,
           mb(r1 - r0));
    printf("mem_%s_F%d_solve_s %.2f\n", name, F, sec);
    if (kind == 2) printf("mem_%s_F%d_null_space_dim %d\n", name, F, nd);
    printf("mem_%s_F%d_solve_peak_above_statistics_mb %.1f (%.2f x F^2 doubles)\n", name, F,
           mb(hwm - rs), (hwm - rs) * 1024.0 / (F2 * 8));
    printf("mem_%s_F%d_peak_with_statistics_mb %.1f (%.2f x F^2 doubles)\n", name, F,
           mb(hwm - r0), (hwm - r0) * 1024.0 / (F2 * 8));
    free(K); free(R); free(fa); free(fb);
    free(S.mom2);
}

static int child_mem(const opts *o) {
    ked_set_threads(o->threads);
    double F = o->mem_dim, F2 = F * F, L = 5, bt = 2048;
    printf("mem_dim %d (LLaMA-2-7B d_ff = 11008)\n", o->mem_dim);
    // what ked allocates (src/edit/stats.c, memit.c), per layer unless said
    printf("mem_calc_stats_fp64_accumulator_mb %.1f (F^2 doubles per layer)\n", F2 * 8 / 1e6);
    printf("mem_calc_stats_fp32_batch_sum_mb %.1f (F^2 floats, one per pass)\n", F2 * 4 / 1e6);
    printf("mem_calc_stats_captures_mb %.1f (batch_tokens %.0f x F floats per layer)\n",
           bt * F * 4 / 1e6, bt);
    printf("mem_calc_stats_pass_5_layers_mb %.1f (5 accumulators + batch sum + captures)\n",
           (L * F2 * 8 + F2 * 4 + L * bt * F * 4) / 1e6);
    printf("mem_calc_kstats_file_mb %.1f (float64, per layer)\n", F2 * 8 / 1e6);
    printf("mem_calc_easyedit_npz_fp32_mb %.1f (EasyEdit's float32 mom2, per layer)\n", F2 * 4 / 1e6);
    printf("mem_calc_read_kstats_mb %.1f (read straight into the matrix)\n", F2 * 8 / 1e6);
    printf("mem_calc_memit_solve_mb %.1f (C + lambda C + K K^T, upper triangle factored in place)\n",
           2 * F2 * 8 / 1e6);
    printf("mem_calc_alphaedit_projector_P_mb %.1f (F^2 doubles)\n", F2 * 8 / 1e6);
    printf("mem_calc_alphaedit_eig_workspace_mb %.1f (dsyevd: A copy + work 1 + 6F + 2F^2 doubles)\n",
           (F2 * 8 + (1 + 6 * F + 2 * F2) * 8) / 1e6);
    printf("mem_calc_alphaedit_solve_mb %.1f (C, P, K K^T + cache, A: 4 F^2 doubles)\n", 4 * F2 * 8 / 1e6);
    printf("mem_calc_easyedit_P_fp32_5_layers_mb %.1f (EasyEdit keeps P (5, F, F) float32)\n",
           L * F2 * 4 / 1e6);
    fflush(stdout);
    char dir[1400];
    snprintf(dir, sizeof dir, "%s/mem", o->cache);
    mkdir(o->cache, 0755);
    mkdir(dir, 0755);
    loadavg("mem_start");
    if (o->mem_dim > 0) mem_solve(0, o->mem_dim, 100, dir);
    fflush(stdout);
    if (o->mem_alpha_dim > 0) mem_solve(2, o->mem_alpha_dim, 100, dir);
    loadavg("mem_end");
    // the projector file the AlphaEdit solve cached: F x k doubles
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 6 && !strcmp(de->d_name + l - 6, ".kproj")) {
                char p[1700];
                struct stat sb;
                snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
                if (!stat(p, &sb)) printf("mem_alphaedit_projector_file_mb %.1f\n", sb.st_size / 1e6);
                unlink(p);
            }
        }
        closedir(d);
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_memit [--dir DIR] [--tokenizer DIR] [--corpus FILE] "
                    "[--stats-tokens N] [--hparams F] [--templates F] [--data F]... [--n N] "
                    "[--threads N] [--cache DIR] [--inputs FILE] [--stats-ids FILE] [--mem-dim F] "
                    "[--mem-alpha-dim F] [--only stats|memit|mem|all]\n");
    exit(2);
}

int main(int argc, char **argv) {
    opts o = {"build/bench/gpt2-small-random", "tests/data/tokenizer/gpt2",
              "data/wikitext2_raw_test.txt", "bench/hparams/MEMIT-gpt2-small.yaml",
              "bench/hparams/context-templates-memit-6.txt", "build/bench/memit-cache",
              "build/bench/memit_inputs.json", "build/bench/memit_stats_ids.json", "all",
              {NULL}, 0, 20000, 100, 2, 11008, 3072};
    const char *child = NULL;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--dir")) o.dir = v;
        else if (!strcmp(a, "--tokenizer")) o.tokenizer = v;
        else if (!strcmp(a, "--corpus")) o.corpus = v;
        else if (!strcmp(a, "--stats-tokens")) o.stats_tokens = atoi(v);
        else if (!strcmp(a, "--hparams")) o.hparams = v;
        else if (!strcmp(a, "--templates")) o.templates = v;
        else if (!strcmp(a, "--data") && o.n_data < 8) o.data[o.n_data++] = v;
        else if (!strcmp(a, "--n")) o.n = atoi(v);
        else if (!strcmp(a, "--threads")) o.threads = atoi(v);
        else if (!strcmp(a, "--cache")) o.cache = v;
        else if (!strcmp(a, "--inputs")) o.inputs = v;
        else if (!strcmp(a, "--stats-ids")) o.stats_ids = v;
        else if (!strcmp(a, "--mem-dim")) o.mem_dim = atoi(v);
        else if (!strcmp(a, "--mem-alpha-dim")) o.mem_alpha_dim = atoi(v);
        else if (!strcmp(a, "--only")) o.only = v;
        else if (!strcmp(a, "--child")) child = v;
        else usage();
    }
    if (!o.n_data) {
        o.data[o.n_data++] = "tests/data/eval/zsre_eval_50.json";
        o.data[o.n_data++] = "tests/data/eval/knowedit_zsre_50.json";
    }
    if (o.n < 1 || o.threads < 1 || o.stats_tokens < 1) usage();
    if (child) {
        if (!strcmp(child, "stats")) return child_stats(&o);
        if (!strcmp(child, "memit")) return child_memit(&o);
        if (!strcmp(child, "mem")) return child_mem(&o);
        usage();
    }
    printf("bench_memit: GPT-2-small shape, %d threads, OMP_WAIT_POLICY=%s, model %s\n", o.threads,
           getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "unset", o.dir);
    fflush(stdout);
    char cfg[1200];
    snprintf(cfg, sizeof cfg, "%s/config.json", o.dir);
    if (!ked_file_exists(cfg)) {
        fprintf(stderr, "bench_memit: %s missing: run bench_model or bench_edit first (they write "
                        "the random GPT-2-small model)\n", cfg);
        return 1;
    }
    const char *parts[3] = {"stats", "memit", "mem"};
    int status = 0;
    for (int k = 0; k < 3; k++) {
        if (strcmp(o.only, "all") && strcmp(o.only, parts[k])) continue;
        char st[16], n[16], th[16], md[16], ma[16];
        snprintf(st, sizeof st, "%d", o.stats_tokens);
        snprintf(n, sizeof n, "%d", o.n);
        snprintf(th, sizeof th, "%d", o.threads);
        snprintf(md, sizeof md, "%d", o.mem_dim);
        snprintf(ma, sizeof ma, "%d", o.mem_alpha_dim);
        const char *args[64] = {"/proc/self/exe", "--child", parts[k], "--dir", o.dir,
                                "--tokenizer", o.tokenizer, "--corpus", o.corpus, "--stats-tokens",
                                st, "--hparams", o.hparams, "--templates", o.templates, "--n", n,
                                "--threads", th, "--cache", o.cache, "--inputs", o.inputs,
                                "--stats-ids", o.stats_ids, "--mem-dim", md, "--mem-alpha-dim", ma};
        int na = 29;
        for (int i = 0; i < o.n_data; i++) { args[na++] = "--data"; args[na++] = o.data[i]; }
        args[na] = NULL;
        if (run_child(args, "bench_memit", parts[k])) status = 1;
    }
    return status;
}
