// bench_edit.c: seconds per edit for ROME and FT-M on a GPT-2-small-shaped model (issue 5,
// performance), with EasyEdit's gpt2-xl hyperparameters adapted to 12 layers
// (bench/hparams/ROME-gpt2-small.yaml: layer 5, v_loss_layer 11, 20 v* steps;
// bench/hparams/FT-gpt2-small.yaml: FT-M, layer 0, 25 steps, lr 5e-4, norm_constraint 5e-4) and
// 21 fixed context templates (bench/hparams/context-templates-21.txt, EasyEdit's shape: "{}", 10
// short and 10 longer prefixes), so that bench/ref_edit_torch.py (PyTorch, EasyEdit's
// computation: full logits, nothing cached) edits with identical inputs.
//
// 1. writes a random GPT-2-small Hugging Face directory (12 layers, 768 wide, 12 heads, vocab
//    50257, 1024 positions, tied head; config.json + model.safetensors, f32, the names and Conv1D
//    (in, out) layouts of GPT2LMHeadModel.save_pretrained) unless one of that shape is there
//    (default build/bench/gpt2-small-random, the directory bench_model writes: either reuses it);
// 2. for each method, in a fresh child process (this program re-executed with --child METHOD),
//    so that the peak resident memory (VmHWM) is that method's alone: load the model, set the
//    threads (ked_set_threads), one warm-up edit, then --iters timed edits of the request
//        prompt "The mother tongue of Danielle Darrieux is", subject "Danielle Darrieux",
//        target " English" (a ZsRE-style fact; the weights are random, so the fact means
//        nothing: the computation and its cost are what is measured)
//    through ked_edit (the patch is computed, not applied; the model is unchanged afterwards),
//    with wall and CPU time (getrusage: both threads) per edit, and a phase split from the
//    per-step callback's timestamps;
// 3. the ROME child writes the tokenised inputs (every sequence, lookup index, the target ids)
//    and the hyperparameters as ked read them to --inputs (JSON) for ref_edit_torch.py.
// Prints `key value` lines (rome_seconds, ftm_seconds, rome_peak_rss_over_weights, ...).
//
//   build/bench/bench_edit [--dir DIR] [--tokenizer DIR] [--templates FILE] [--rome-hparams F]
//       [--ft-hparams F] [--iters N] [--warmup N] [--threads N] [--only rome|ftm|all]
//       [--inputs FILE]
// OMP_WAIT_POLICY is taken from the environment (bench/run.sh exports passive).
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define BENCH_NAME "bench_edit"
#include "bench_util.h"
#include "ked.h"
#include "edit/edit.h"       // edit_case_build (the inputs for ref_edit_torch.py)
#include "io/safetensors.h"


static const char *PROMPT = "The mother tongue of Danielle Darrieux is";
static const char *SUBJECT = "Danielle Darrieux";
static const char *TARGET = " English";

// ---- options --------------------------------------------------------------------------------------

typedef struct {
    const char *dir, *tokenizer, *templates, *rome_hp, *ft_hp, *only, *inputs;
    int iters, warmup, threads;
} opts;

// ---- the inputs for ref_edit_torch.py -------------------------------------------------------------

static void json_ids(FILE *f, const int *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", ids[i]);
    fputc(']', f);
}

static void write_inputs(const char *path, const edit_case *c, const ked_hparams *rh,
                         const ked_hparams *fh, const char *const *templates, int n_t) {
    FILE *f = fopen(path, "w");
    if (!f) die(path, NULL);
    fprintf(f, "{\n  \"generator\": \"bench/bench_edit.c\",\n");
    fprintf(f, "  \"prompt\": \"%s\", \"subject\": \"%s\", \"target\": \"%s\",\n", PROMPT, SUBJECT, TARGET);
    fprintf(f, "  \"n_templates\": %d,\n  \"ctx\": [\n", n_t);
    for (int i = 0; i < c->n_ctx; i++) {
        fprintf(f, "    {\"lookup\": %d, \"ids\": ", c->ctx[i].lookup);
        json_ids(f, c->ctx[i].ids, c->ctx[i].n);
        fprintf(f, "}%s\n", i + 1 < c->n_ctx ? "," : "");
    }
    fprintf(f, "  ],\n  \"bare\": {\"lookup\": %d, \"ids\": ", c->bare.lookup);
    json_ids(f, c->bare.ids, c->bare.n);
    fprintf(f, "},\n  \"kl\": {\"lookup\": %d, \"ids\": ", c->kl.lookup);
    json_ids(f, c->kl.ids, c->kl.n);
    fprintf(f, "},\n  \"target_ids\": ");
    json_ids(f, c->target, c->n_target);
    fprintf(f, ",\n  \"rome\": {\"source\": \"%s\", \"layer\": %d, \"v_num_grad_steps\": %d, "
               "\"v_lr\": %.9g, \"v_weight_decay\": %.9g, \"clamp_norm_factor\": %.9g, "
               "\"kl_factor\": %.9g, \"v_loss_layer\": %d},\n",
            rh->source, rh->layers[0], rh->v_num_grad_steps, rh->v_lr, rh->v_weight_decay,
            rh->clamp_norm_factor, rh->kl_factor, rh->v_loss_layer);
    fprintf(f, "  \"ftm\": {\"source\": \"%s\", \"layer\": %d, \"num_steps\": %d, \"lr\": %.9g, "
               "\"weight_decay\": %.9g, \"norm_constraint\": %.9g, \"bias\": %d}\n}\n",
            fh->source, fh->layers[0], fh->num_steps, fh->lr, fh->weight_decay, fh->norm_constraint,
            fh->ft_bias);
    if (fclose(f)) die(path, NULL);
    printf("inputs %s\n", path);
}

// ---- one method in this (fresh) process ------------------------------------------------------------

static int child(const opts *o, const char *method) {
    int rome = !strcmp(method, "rome");
    const char *key = rome ? "rome" : "ftm";
    long rss0 = status_kb("VmRSS");
    ked_error err;
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    double t0 = now();
    if (ked_model_load(o->dir, &m, &err)) die("ked_model_load", &err);
    double load_s = now() - t0;
    long hwm_load = status_kb("VmHWM");
    ked_set_threads(o->threads);
    if (ked_tokenizer_load(o->tokenizer, &tok, &err)) die("ked_tokenizer_load", &err);
    char **templates = NULL;
    int n_t = 0;
    if (ked_edit_templates_read(o->templates, &templates, &n_t, &err)) die("templates", &err);
    ked_hparams hp, fh;
    if (ked_hparams_load(m, rome ? o->rome_hp : o->ft_hp, rome ? "rome" : "ft-m", &hp, &err))
        die("ked_hparams_load", &err);
    ked_request req;
    memset(&req, 0, sizeof req);
    req.prompt = PROMPT;
    req.subject = SUBJECT;
    req.target_new = TARGET;
    edit_case c;
    if (edit_case_build(tok, &req, (const char *const *)templates, n_t, hp.fact_token, &c, &err))
        die("edit_case_build", &err);
    if (rome && o->inputs) {
        if (ked_hparams_load(m, o->ft_hp, "ft-m", &fh, &err)) die("ked_hparams_load", &err);
        write_inputs(o->inputs, &c, &hp, &fh, (const char *const *)templates, n_t);
    }
    double wb = (double)ked_model_weight_bytes(m);
    printf("%s_hparams %s (layer %d)\n", key, hp.source, hp.layers[0]);
    printf("%s_threads %d\n", key, o->threads);
    printf("%s_load_s %.3f\n", key, load_s);
    printf("%s_templates %d\n", key, n_t);
    printf("%s_prompt_tokens %d\n%s_target_tokens %d\n", key, c.bare.n, key, c.n_target);

    ked_edit_opts eo = ked_edit_defaults();
    eo.templates = (const char *const *)templates;
    eo.n_templates = n_t;
    steps_log sl = {.n = 0};
    eo.on_step = steps_log_on_step;
    eo.user = &sl;
    int n = o->warmup + o->iters;
    double wall[64], cpu[64], first[64], mid[64], last[64];
    int steps = 0;
    float loss0 = NAN, loss1 = NAN;
    if (n > 64) n = 64;
    loadavg(rome ? "rome_start" : "ftm_start");
    for (int k = 0; k < n; k++) {
        ked_patch *p = NULL;
        ked_edit_info info;
        sl.n = 0;
        double c0 = cpu_now();
        t0 = now();
        if (ked_edit(m, tok, &hp, &req, &eo, &p, &info, &err)) die("ked_edit", &err);
        double t1 = now();
        wall[k] = t1 - t0;
        cpu[k] = cpu_now() - c0;
        // phases: before the first step's loss | between the first and the last loss | after
        first[k] = sl.n ? sl.t[0] - t0 : NAN;
        mid[k] = sl.n ? sl.t[sl.n - 1] - sl.t[0] : NAN;
        last[k] = sl.n ? t1 - sl.t[sl.n - 1] : NAN;
        steps = sl.n;
        loss0 = sl.n ? sl.loss[0] : NAN;
        loss1 = sl.n ? sl.loss[sl.n - 1] : NAN;
        printf("%s_%s_%d_s %.3f (cpu %.3f s, %d steps)\n", key, k < o->warmup ? "warmup" : "iter",
               k < o->warmup ? k : k - o->warmup, wall[k], cpu[k], sl.n);
        fflush(stdout);
        ked_patch_free(p);
    }
    loadavg(rome ? "rome_end" : "ftm_end");
    int w = o->warmup, ni = n - w;
    long hwm = status_kb("VmHWM");
    printf("%s_seconds %.3f\n", key, median(wall + w, ni));
    double mn = INFINITY;
    for (int k = w; k < n; k++) mn = wall[k] < mn ? wall[k] : mn;
    printf("%s_seconds_min %.3f\n", key, mn);
    printf("%s_cpu_seconds %.3f\n", key, median(cpu + w, ni));
    printf("%s_timed_edits %d\n", key, ni);
    printf("%s_steps %d\n%s_loss_first %.4f\n%s_loss_last %.4f\n", key, steps, key, loss0, key, loss1);
    printf("%s_phase_until_first_loss_s %.3f\n", key, median(first + w, ni));
    printf("%s_phase_steps_after_first_s %.3f\n", key, median(mid + w, ni));
    printf("%s_phase_per_step_after_first_s %.4f\n", key,
           steps > 1 ? median(mid + w, ni) / (steps - 1) : NAN);
    printf("%s_phase_after_last_loss_s %.3f\n", key, median(last + w, ni));
    printf("weight_mb %.1f\n", wb / 1e6);
    printf("%s_rss_before_load_mb %.1f\n", key, mb(rss0));
    printf("%s_load_peak_rss_mb %.1f\n", key, mb(hwm_load));
    printf("%s_peak_rss_mb %.1f\n", key, mb(hwm));
    printf("%s_peak_rss_over_weights %.3f\n", key, hwm * 1024.0 / wb);
    printf("%s_load_peak_rss_over_weights %.3f\n", key, hwm_load * 1024.0 / wb);
    printf("%s_edit_rss_growth_over_weights %.3f\n", key, (hwm - hwm_load) * 1024.0 / wb);
    fflush(stdout);
    edit_case_free(&c);
    ked_edit_templates_free(templates, n_t);
    ked_tokenizer_free(tok);
    ked_model_free(m);
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_edit [--dir DIR] [--tokenizer DIR] [--templates FILE] "
                    "[--rome-hparams F] [--ft-hparams F] [--iters N] [--warmup N] [--threads N] "
                    "[--only rome|ftm|all] [--inputs FILE]\n");
    exit(2);
}

int main(int argc, char **argv) {
    opts o = {"build/bench/gpt2-small-random", "tests/data/tokenizer/gpt2",
              "bench/hparams/context-templates-21.txt", "bench/hparams/ROME-gpt2-small.yaml",
              "bench/hparams/FT-gpt2-small.yaml", "all", NULL, 3, 1, 2};
    const char *child_method = NULL;
    for (int i = 1; i < argc; i += 2) { // --option value pairs
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--dir")) o.dir = v;
        else if (!strcmp(a, "--tokenizer")) o.tokenizer = v;
        else if (!strcmp(a, "--templates")) o.templates = v;
        else if (!strcmp(a, "--rome-hparams")) o.rome_hp = v;
        else if (!strcmp(a, "--ft-hparams")) o.ft_hp = v;
        else if (!strcmp(a, "--iters")) o.iters = atoi(v);
        else if (!strcmp(a, "--warmup")) o.warmup = atoi(v);
        else if (!strcmp(a, "--threads")) o.threads = atoi(v);
        else if (!strcmp(a, "--only")) o.only = v;
        else if (!strcmp(a, "--inputs")) o.inputs = v;
        else if (!strcmp(a, "--child")) child_method = v;
        else usage();
    }
    if (o.iters < 0 || o.warmup < 0 || o.iters + o.warmup < 1 || o.threads < 1) usage();
    if (child_method) return child(&o, child_method);

    printf("bench_edit: GPT-2-small shape (L %d, C %d, V %d), %d threads, OMP_WAIT_POLICY=%s\n",
           L_, C_, V_, o.threads, getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "unset");
    printf("request: prompt \"%s\", subject \"%s\", target \"%s\"\n", PROMPT, SUBJECT, TARGET);
    fflush(stdout);
    write_gpt2_small(o.dir);
    fflush(stdout);
    const char *ms[2] = {"rome", "ftm"};
    int status = 0;
    for (int k = 0; k < 2; k++) {
        if (strcmp(o.only, "all") && strcmp(o.only, ms[k])) continue;
        char it[16], wu[16], th[16];
        snprintf(it, sizeof it, "%d", o.iters);
        snprintf(wu, sizeof wu, "%d", o.warmup);
        snprintf(th, sizeof th, "%d", o.threads);
        const char *args[32] = {"/proc/self/exe", "--child", ms[k], "--dir", o.dir, "--tokenizer",
                                o.tokenizer, "--templates", o.templates, "--rome-hparams",
                                o.rome_hp, "--ft-hparams", o.ft_hp, "--iters", it, "--warmup", wu,
                                "--threads", th};
        int na = 19;
        if (o.inputs) { args[na++] = "--inputs"; args[na++] = o.inputs; }
        args[na] = NULL;
        if (run_child(args, "bench_edit", ms[k])) status = 1;
    }
    return status;
}
