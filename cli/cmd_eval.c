// cmd_eval.c: `ked eval`: EasyEdit's evaluation of an editing method over a dataset (ZsRE,
// CounterFact, KnowEdit), single, sequential or in batches, resumable, with a progress line on
// stderr, the results JSON (EasyEdit's layout) and the summary table (docs/evaluation.md).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_io.h"

static const char *usage =
    "usage: ked eval --model PATH --data FILE --method M|none --out results.json [options]\n"
    "\n"
    "Evaluates METHOD on the cases of FILE as EasyEdit does: before (pre) and after (post) each\n"
    "edit, teacher-forced token accuracy of the rewrite and rephrase prompts, locality (post-edit\n"
    "argmax tokens against pre-edit ones), portability, fluency (n-gram entropy), and for\n"
    "CounterFact the ROME paper's probability scores. Writes EasyEdit's JSON layout to --out\n"
    "after every case or batch; run the same command again to resume an interrupted run.\n"
    "\n"
    "  --model PATH        Hugging Face directory or llama2.c checkpoint\n"
    "  --tokenizer PATH    tokenizer (default: the one beside the model)\n"
    "  --data FILE         ZsRE, CounterFact (ROME or EasyEdit schema) or KnowEdit JSON\n"
    "  --format F          auto (default), zsre, counterfact, counterfact-ee, knowedit\n"
    "  --method M          rome, r-rome, ft-l, ft-m (ft = ft-l), memit, emmet, pmet, alphaedit, or\n"
    "                      none (the unedited model)\n"
    "  --hparams YAML      an EasyEdit hparams file; default: values derived from the model\n"
    "  --layer N           edit layer N instead of the hparams' layers\n"
    "  --n N               evaluate N cases (default: all)\n"
    "  --offset K          start at case K (default 0)\n"
    "  --sequential        edits accumulate: post after each edit, post_final after the last\n"
    "  --batch B           B requests edited, then evaluated together: memit, emmet, pmet, alphaedit\n"
    "                      edit them jointly (one edit), other methods one after another; the\n"
    "                      summary table is printed after each batch\n"
    "  --retention         with --sequential: after each batch, Edit_Succ (rewrite_acc) of every\n"
    "                      batch edited so far, printed and kept in the results' \"retention\" list\n"
    "  --seed S            seed of the context templates and the fluency samples (default 0)\n"
    "  --no-fluency        leave out fluency (the 100-token generations)\n"
    "  --aligned-targets   where the tokenizer merges across the prompt/target boundary, score\n"
    "                      prompt ids + the target's ids (default: EasyEdit's count-based split)\n"
    "  --stats-corpus FILE second-moment statistics (memit, emmet, alphaedit, ROME with\n"
    "                      mom2_adjustment) are computed from FILE when not cached (ked stats)\n"
    "  --stats-tokens N    token budget of the statistics (default: mom2_n_samples documents)\n"
    "  --stats-docs N      document budget of the statistics\n"
    "  --threads N         threads (default: all cores)\n"
    "  --out FILE          results JSON (resumed when it holds an unfinished run)\n";

// the progress line, at most every half second (and at the end of each phase)
static void on_progress(const ked_eval_progress *p, void *user) {
    double *last = user;
    if (p->done != p->total && p->elapsed_s - *last < 0.5) return;
    *last = p->elapsed_s;
    int el = (int)p->elapsed_s, left = isfinite(p->eta_s) ? (int)p->eta_s : -1;
    fprintf(stderr, "\r  %-10s %d/%d cases  %.2f edits/s  elapsed %d:%02d  left ", p->phase, p->done, p->total,
            p->edits_per_s, el / 60, el % 60);
    if (left >= 0) fprintf(stderr, "%d:%02d   ", left / 60, left % 60);
    else fprintf(stderr, "?      ");
    if (p->done == p->total) fprintf(stderr, "\n");
    fflush(stderr);
    if (p->table) { // after a batch: the summary so far
        if (p->done != p->total) fprintf(stderr, "\n");
        fputs(p->table, stderr);
        fflush(stderr);
    }
}

int cmd_eval(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *data = NULL, *method = NULL, *hp_path = NULL;
    const char *out = NULL, *fmt_name = "auto", *v;
    long n = 0, offset = 0, batch = 1, seed = 0, threads = 0, layer = -1;
    int sequential = 0, fluency = 1, aligned = 0, retention = 0;
    ked_stats_opts so = ked_stats_defaults();
    long sv = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); return 0; }
        else if (!strcmp(argv[i], "--sequential")) sequential = 1;
        else if (!strcmp(argv[i], "--no-fluency")) fluency = 0;
        else if (!strcmp(argv[i], "--aligned-targets")) aligned = 1;
        else if (!strcmp(argv[i], "--retention")) retention = 1;
        else if ((v = cli_opt_value(argc, argv, &i, "--model"))) model_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--tokenizer"))) tok_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--data"))) data = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--method"))) method = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--hparams"))) hp_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--out"))) out = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--format"))) fmt_name = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--stats-corpus"))) so.corpus = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--stats-tokens"))) {
            if (!cli_parse_int(v, 1, 0x7fffffffffffffffL, &sv)) return cli_usage_error("eval", "bad --stats-tokens '%s'", v);
            so.max_tokens = sv;
        } else if ((v = cli_opt_value(argc, argv, &i, "--stats-docs"))) {
            if (!cli_parse_int(v, 1, 0x7fffffffffffffffL, &sv)) return cli_usage_error("eval", "bad --stats-docs '%s'", v);
            so.max_docs = sv;
        }
        else if ((v = cli_opt_value(argc, argv, &i, "--n"))) {
            if (!cli_parse_int(v, 1, 1L << 30, &n)) return cli_usage_error("eval", "bad --n '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--offset"))) {
            if (!cli_parse_int(v, 0, 1L << 30, &offset)) return cli_usage_error("eval", "bad --offset '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--layer"))) {
            if (!cli_parse_int(v, 0, 1 << 20, &layer)) return cli_usage_error("eval", "bad --layer '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--batch"))) {
            if (!cli_parse_int(v, 1, 1024, &batch)) return cli_usage_error("eval", "bad --batch '%s' (1..1024)", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--seed"))) {
            if (!cli_parse_int(v, 0, 0x7fffffffffffffffL, &seed)) return cli_usage_error("eval", "bad --seed '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--threads"))) {
            if (!cli_parse_int(v, 1, 1024, &threads)) return cli_usage_error("eval", "bad --threads '%s'", v);
        } else return cli_usage_error("eval", "unknown argument '%s'", argv[i]);
    }
    if (!model_path) return cli_usage_error("eval", "--model PATH is required");
    if (!data) return cli_usage_error("eval", "--data FILE is required");
    if (!out) return cli_usage_error("eval", "--out FILE is required");
    if (!method && !hp_path) return cli_usage_error("eval", "--method M is required (%s, none)", ked_edit_methods());
    int none = method && !strcmp(method, "none");
    if (none && (hp_path || layer >= 0)) return cli_usage_error("eval", "--method none takes no --hparams or --layer");
    if (method && !none && !ked_edit_method_known(method))
        return cli_usage_error("eval", "unknown method '%s' (known: %s, none)", method, ked_edit_methods());
    int fmt = ked_data_format_parse(fmt_name);
    if (fmt < 0) return cli_usage_error("eval", "unknown --format '%s' (auto, zsre, counterfact, counterfact-ee, knowedit)", fmt_name);
    if (threads) ked_set_threads((int)threads);

    cli_timing tm;
    cli_timing_start(&tm);
    ked_error err;
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    ked_dataset *d = NULL;
    char *table = NULL;
    int rc = 0;
    if (ked_dataset_load(data, (ked_data_format)fmt, &d, &err)) return cli_report("eval", &err);
    if (ked_model_load(model_path, &m, &err)) { ked_dataset_free(d); return cli_report("eval", &err); }
    if (cli_load_tokenizer("eval", model_path, tok_path, &tok)) { ked_model_free(m); ked_dataset_free(d); return 1; }
    tm.load_s = ked_time_s_cli() - tm.t_start;
    double t0 = ked_time_s_cli();

    ked_hparams hp;
    if (!none) {
        if (hp_path ? ked_hparams_load(m, hp_path, method, &hp, &err)
                    : ked_hparams_defaults(m, method, &hp, &err)) { rc = cli_report("eval", &err); goto done; }
        if (method && strcmp(method, hp.method) && strcmp(method, "ft")) snprintf(hp.method, sizeof hp.method, "%s", method);
        if (layer >= 0) {
            if (layer >= ked_model_config(m)->n_layer) {
                rc = cli_usage_error("eval", "--layer %ld: the model has layers 0..%d", layer, ked_model_config(m)->n_layer - 1);
                goto done;
            }
            hp.layers[0] = (int)layer;
            hp.n_layers = 1;
        }
    }
    fprintf(stderr, "ked eval: %s: %d records -> %d cases (%s; %d skipped, %d answers dropped)\n", data,
            ked_dataset_n_records(d), ked_dataset_n(d), ked_data_format_name(ked_dataset_format(d)),
            ked_dataset_n_skipped(d), ked_dataset_n_dropped(d));
    if (!none) {
        fprintf(stderr, "ked eval: method %s, layer", hp.method);
        for (int i = 0; i < hp.n_layers; i++) fprintf(stderr, " %d", hp.layers[i]);
        fprintf(stderr, ", hparams: %s\n", hp.source);
    }
    ked_eval_opts eo = ked_eval_defaults();
    eo.method = none ? "none" : hp.method;
    eo.hp = none ? NULL : &hp;
    eo.n = (int)n;
    eo.offset = (int)offset;
    eo.sequential = sequential;
    eo.batch = (int)batch;
    eo.seed = (uint64_t)seed;
    eo.fluency = fluency;
    eo.aligned_targets = aligned;
    eo.retention = retention;
    eo.out = out;
    eo.model_name = model_path;
    eo.data_name = data;
    eo.stats = &so;
    eo.on_progress = on_progress;
    double last_progress = -1;
    eo.user = &last_progress;
    ked_eval_summary sum;
    if (ked_eval_run(m, tok, d, &eo, &sum, &table, &err)) { fprintf(stderr, "\n"); rc = cli_report("eval", &err); goto done; }
    if (table) fputs(table, stdout);
    printf("results  %s\n", out);
    tm.compute_s = ked_time_s_cli() - t0;
done:
    free(table);
    ked_tokenizer_free(tok);
    ked_model_free(m);
    ked_dataset_free(d);
    fflush(stdout);
    cli_timing_print(&tm);
    return rc;
}
