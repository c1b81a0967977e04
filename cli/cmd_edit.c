// cmd_edit.c: `ked edit`: one edit of a model (ROME, R-ROME, FT-L, FT-M), showing the greedy
// answer and the rewrite token accuracy before and after, the optimisation's loss per step, and
// optionally writing the patch to a file.
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_io.h"

static const char *usage =
    "usage: ked edit --model PATH --method M --prompt P --subject S --target T [options]\n"
    "       ked edit --model EDITED_DIR [--log] [--revert N]... [--apply PATCH]... [--out DIR]\n"
    "\n"
    "Edits the model so that PROMPT (which contains SUBJECT) continues with TARGET, and prints\n"
    "the greedy answer and EasyEdit's rewrite accuracy (teacher-forced token accuracy) before\n"
    "and after. The model files are not changed: --patch writes the edit as a patch file, --out\n"
    "an edited model directory (merged weights + the base's record + the ordered patches), on\n"
    "which later runs can edit further, --revert an edit exactly, or --log the list.\n"
    "\n"
    "  --model PATH        Hugging Face directory, llama2.c checkpoint, or an edited directory\n"
    "  --tokenizer PATH    tokenizer (default: the one beside the model)\n"
    "  --method M          rome, r-rome, ft-l, ft-m (ft = ft-l), memit, emmet, alphaedit, pmet\n"
    "  --hparams YAML      an EasyEdit hparams file (ROME, R-ROME, FT, MEMIT, EMMET, AlphaEdit,\n"
    "                      PMET);\n"
    "                      default: values derived\n"
    "                      from the model (docs/editing.md)\n"
    "  --prompt P          the prompt; it contains the subject (or \"{}\" standing for it)\n"
    "  --subject S         the subject\n"
    "  --target T          the new answer (a leading space is added when missing)\n"
    "  --rephrase R        a paraphrase of the prompt, also scored before and after\n"
    "  --layer N           edit layer N instead of the hparams' layers\n"
    "  --templates FILE    context templates, one per line, each with \"{}\" (default: sampled)\n"
    "  --seed S            seed of the sampled context templates (default 0)\n"
    "  --max-new N         tokens of the greedy answers (default 16)\n"
    "  --patch FILE        write the new edit's patch (safetensors) to FILE\n"
    "  --apply FILE        apply a patch file first (repeatable, in order)\n"
    "  --revert N          take patch N of the list out (repeatable; see --log)\n"
    "  --log               print the list of patches (applied and reverted)\n"
    "  --out DIR           write the edited model directory\n"
    "  --stats-corpus FILE second-moment statistics (memit, emmet, alphaedit, pmet, ROME with\n"
    "                      mom2_adjustment) are computed from FILE when not cached (ked stats)\n"
    "  --stats-tokens N    token budget of the statistics (default: mom2_n_samples documents)\n"
    "  --stats-docs N      document budget of the statistics\n"
    "  --doc-split S       line (default), blank or jsonl: what a document of the corpus is\n"
    "  --threads N         threads (default: all cores)\n";

static void on_step(int step, float loss, void *user) {
    (void)user;
    printf("  step %3d  loss %.4f\n", step, loss);
    fflush(stdout);
}

// the greedy continuation of prompt as text (malloc'd), NULL on failure (reported)
static char *greedy(const ked_model *m, const ked_tokenizer *tok, const char *prompt, int max_new) {
    ked_error err;
    int *ids = NULL, n = 0, n_out = 0;
    char *text = NULL;
    if (ked_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, NULL, &n, &err)) {
        cli_report("edit", &err);
        return NULL;
    }
    int *out = malloc(sizeof(int) * (size_t)(n + max_new));
    ked_generate_opts o = ked_generate_defaults();
    o.max_new = max_new;
    char *head = NULL;
    // decode prompt + answer and cut the prompt's text off, so the answer keeps its leading space
    if (!out || ked_generate(m, ids, n, &o, out, n + max_new, &n_out, NULL, NULL, &err) ||
        ked_tokenizer_decode(tok, out, n_out, 1, &text, &err) ||
        ked_tokenizer_decode(tok, ids, n, 1, &head, &err)) {
        if (out) cli_report("edit", &err);
        free(text);
        text = NULL;
    } else if (!strncmp(text, head, strlen(head))) {
        memmove(text, text + strlen(head), strlen(text) - strlen(head) + 1);
    }
    free(head);
    free(ids);
    free(out);
    return text;
}

static void show(const char *label, const char *prompt, const char *answer) {
    printf("%-8s %s%s\n", label, prompt, answer ? answer : "?");
}

int cmd_edit(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *method = NULL, *hp_path = NULL, *v;
    const char *prompt = NULL, *subject = NULL, *target = NULL, *rephrase = NULL;
    const char *patch_path = NULL, *tmpl_path = NULL, *out_dir = NULL;
    ked_stats_opts so = ked_stats_defaults();
    long sv = 0;
    const char *apply[64];
    long revert[64];
    int n_apply = 0, n_revert = 0, log = 0;
    long threads = 0, layer = -1, max_new = 16, lv, seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); return 0; }
        else if ((v = cli_opt_value(argc, argv, &i, "--model"))) model_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--tokenizer"))) tok_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--method"))) method = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--hparams"))) hp_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--prompt"))) prompt = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--subject"))) subject = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--target"))) target = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--rephrase"))) rephrase = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--patch"))) patch_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--templates"))) tmpl_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--out"))) out_dir = v;
        else if (!strcmp(argv[i], "--log")) log = 1;
        else if ((v = cli_opt_value(argc, argv, &i, "--stats-corpus"))) so.corpus = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--stats-tokens"))) {
            if (!cli_parse_int(v, 1, 0x7fffffffffffffffL, &sv)) return cli_usage_error("edit", "bad --stats-tokens '%s'", v);
            so.max_tokens = sv;
        } else if ((v = cli_opt_value(argc, argv, &i, "--stats-docs"))) {
            if (!cli_parse_int(v, 1, 0x7fffffffffffffffL, &sv)) return cli_usage_error("edit", "bad --stats-docs '%s'", v);
            so.max_docs = sv;
        } else if ((v = cli_opt_value(argc, argv, &i, "--doc-split"))) {
            if (!strcmp(v, "line")) so.doc_split = KED_DOC_LINE;
            else if (!strcmp(v, "blank")) so.doc_split = KED_DOC_BLANK;
            else if (!strcmp(v, "jsonl")) so.doc_split = KED_DOC_JSONL;
            else return cli_usage_error("edit", "--doc-split: line, blank or jsonl");
        }
        else if ((v = cli_opt_value(argc, argv, &i, "--apply"))) {
            if (n_apply == 64) return cli_usage_error("edit", "at most 64 --apply");
            apply[n_apply++] = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--revert"))) {
            if (n_revert == 64 || !cli_parse_int(v, 0, 1 << 20, &revert[n_revert]))
                return cli_usage_error("edit", "bad --revert '%s'", v);
            n_revert++;
        }
        else if ((v = cli_opt_value(argc, argv, &i, "--layer"))) {
            if (!cli_parse_int(v, 0, 1 << 20, &layer)) return cli_usage_error("edit", "bad --layer '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--seed"))) {
            if (!cli_parse_int(v, 0, 0x7fffffffffffffffL, &seed)) return cli_usage_error("edit", "bad --seed '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--max-new"))) {
            if (!cli_parse_int(v, 1, 4096, &max_new)) return cli_usage_error("edit", "bad --max-new '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--threads"))) {
            if (!cli_parse_int(v, 1, 1024, &threads)) return cli_usage_error("edit", "bad --threads '%s'", v);
        } else return cli_usage_error("edit", "unknown argument '%s'", argv[i]);
    }
    if (!model_path) return cli_usage_error("edit", "--model PATH is required");
    int editing = prompt || subject || target || method || hp_path;
    if (!editing && !log && !n_revert && !n_apply && !out_dir)
        return cli_usage_error("edit", "nothing to do: give --method and --prompt/--subject/--target, "
                               "or --log, --revert, --apply, --out");
    if (editing && !method && !hp_path) return cli_usage_error("edit", "--method M is required (%s)", ked_edit_methods());
    if (method && !ked_edit_method_known(method))
        return cli_usage_error("edit", "unknown method '%s' (known: %s)", method, ked_edit_methods());
    if (editing && (!prompt || !subject || !target))
        return cli_usage_error("edit", "--prompt, --subject and --target are required");
    if (threads) ked_set_threads((int)threads);
    (void)lv;

    cli_timing tm;
    cli_timing_start(&tm);
    ked_error err;
    ked_model *m = NULL;
    ked_tokenizer *tok = NULL;
    ked_editor *ed = NULL;
    ked_patch *p = NULL;
    char **tmpl = NULL;
    int n_tmpl = 0, rc = 0;
    char *b_ans = NULL, *a_ans = NULL, *b_reph = NULL, *a_reph = NULL, *shown = NULL;
    if (ked_edit_dir_is(model_path)) { // base + recorded patches
        if (ked_editor_open_dir(model_path, &m, &ed, &err)) return cli_report("edit", &err);
    } else if (ked_model_load(model_path, &m, &err) || ked_editor_new(m, &ed, &err)) {
        ked_model_free(m);
        return cli_report("edit", &err);
    }
    if (cli_load_tokenizer("edit", model_path, tok_path, &tok)) { ked_editor_free(ed); ked_model_free(m); return 1; }
    for (int i = 0; i < n_apply; i++) {
        ked_patch *q = NULL;
        if (ked_patch_load(m, apply[i], &q, &err) || ked_editor_apply(ed, q, NULL, &err)) {
            rc = cli_report("edit", &err);
            goto done;
        }
    }
    for (int i = 0; i < n_revert; i++)
        if (ked_editor_revert(ed, (int)revert[i], &err)) { rc = cli_report("edit", &err); goto done; }
    tm.load_s = ked_time_s_cli() - tm.t_start;
    double t0 = ked_time_s_cli();
    if (log) {
        printf("base     %s (hash %016llx)\n", ked_model_path(m), (unsigned long long)ked_editor_base_hash(ed));
        for (int i = 0; i < ked_editor_n_patches(ed); i++) {
            const ked_patch *q = ked_editor_patch(ed, i);
            printf("%3d %-8s %-7s", i, ked_editor_is_active(ed, i) ? "applied" : "reverted",
                   ked_patch_method(q));
            for (int k = 0; k < ked_patch_n_entries(q); k++) {
                int rank = 0;
                const char *nm = ked_patch_entry(q, k, &rank);
                printf(" %s%s", nm, rank ? "(low rank)" : "");
            }
            printf("  %s\n", ked_patch_note(q));
        }
    }
    if (!editing) goto save;

    ked_hparams hp;
    if (hp_path ? ked_hparams_load(m, hp_path, method, &hp, &err)
                : ked_hparams_defaults(m, method, &hp, &err)) { rc = cli_report("edit", &err); goto done; }
    if (method && strcmp(method, hp.method) && strcmp(method, "ft")) snprintf(hp.method, sizeof hp.method, "%s", method);
    if (layer >= 0) {
        if (layer >= ked_model_config(m)->n_layer) {
            rc = cli_usage_error("edit", "--layer %ld: the model has layers 0..%d", layer,
                                 ked_model_config(m)->n_layer - 1);
            goto done;
        }
        hp.layers[0] = (int)layer;
        hp.n_layers = 1;
    }
    ked_edit_opts eo = ked_edit_defaults();
    eo.seed = (uint64_t)seed;
    eo.on_step = on_step;
    if (so.corpus) {
        size_t cl = strlen(so.corpus);
        if (cl > 6 && !strcmp(so.corpus + cl - 6, ".jsonl")) so.doc_split = KED_DOC_JSONL;
    }
    eo.stats = &so;
    eo.editor = ed;
    if (tmpl_path) {
        if (ked_edit_templates_read(tmpl_path, &tmpl, &n_tmpl, &err)) { rc = cli_report("edit", &err); goto done; }
        eo.templates = (const char *const *)tmpl;
        eo.n_templates = n_tmpl;
    }
    // the prompt as shown (the subject in place of "{}")
    const char *ph = strstr(prompt, "{}");
    if (ph) {
        size_t pre = (size_t)(ph - prompt);
        shown = malloc(strlen(prompt) + strlen(subject) + 1);
        if (shown) { memcpy(shown, prompt, pre); strcpy(shown + pre, subject); strcat(shown, ph + 2); }
    } else shown = strdup(prompt);
    if (!shown) { rc = 1; goto done; }

    printf("model    %s (%s, %d layers)\n", ked_model_path(m), ked_model_config(m)->family,
           ked_model_config(m)->n_layer);
    printf("method   %s, layer", hp.method);
    for (int i = 0; i < hp.n_layers; i++) printf(" %d", hp.layers[i]);
    printf(", hparams: %s\n", hp.source);
    cli_print_hparams(&hp);
    b_ans = greedy(m, tok, shown, (int)max_new);
    if (!b_ans) { rc = 1; goto done; } // reported
    show("before", shown, b_ans);
    if (rephrase) { b_reph = greedy(m, tok, rephrase, (int)max_new); show("", rephrase, b_reph); }
    float acc0 = 0, acc1 = 0, racc0 = 0, racc1 = 0;
    if (ked_edit_token_accuracy(m, tok, shown, target, &acc0, NULL, NULL, &err) ||
        (rephrase && ked_edit_token_accuracy(m, tok, rephrase, target, &racc0, NULL, NULL, &err))) {
        rc = cli_report("edit", &err);
        goto done;
    }

    ked_request req = {0};
    req.prompt = prompt;
    req.subject = subject;
    req.target_new = target;
    req.rephrase = rephrase;
    ked_edit_info info;
    printf("%s loss per step:\n", hp.method[0] == 'f' ? "FT" : "v*");
    if (ked_edit(m, tok, &hp, &req, &eo, &p, &info, &err)) { rc = cli_report("edit", &err); goto done; }
    printf("edit     %s at layer %d: %d steps, loss %.4f -> %.4f, %.3f s\n", info.method, info.layer,
           info.n_steps, info.n_steps ? info.loss[0] : 0.0f,
           info.n_steps ? info.loss[info.n_steps < 256 ? info.n_steps - 1 : 255] : 0.0f, info.seconds);
    if (info.stats_source[0]) printf("stats    %s\n", info.stats_source);
    if (!strcmp(info.method, "alphaedit"))
        printf("null     space of C kept: %d of %d dimensions (layer %d)\n", info.null_space_dim,
               ked_model_config(m)->d_ff, info.layer);
    { // which token the edit keyed on (the subject's last, docs/editing.md)
        int *ids = NULL, n = 0;
        if (info.subject_token >= 0 && info.method[0] != 'f' &&
            !ked_tokenizer_encode(tok, shown, strlen(shown), 1, &ids, NULL, &n, &err) && info.subject_token < n) {
            const char *piece = ked_tokenizer_piece(tok, ids[info.subject_token]);
            printf("key      token %d of the prompt, '%s'\n", info.subject_token, piece ? piece : "?");
        }
        free(ids);
    }
    if (patch_path) {
        if (ked_patch_save(p, m, patch_path, &err)) { rc = cli_report("edit", &err); goto done; }
        printf("patch    %s:", patch_path);
        for (int i = 0; i < ked_patch_n_entries(p); i++) {
            int rank = 0;
            const char *nm = ked_patch_entry(p, i, &rank);
            if (rank) printf(" %s (rank %d)", nm, rank);
            else printf(" %s (dense)", nm);
        }
        printf("\n");
    }
    int new_id = -1;
    ked_status ast = ked_editor_apply(ed, p, &new_id, &err);
    p = NULL; // the editor owns it, also on failure
    if (ast) { rc = cli_report("edit", &err); goto done; }
    a_ans = greedy(m, tok, shown, (int)max_new);
    show("after", shown, a_ans);
    if (rephrase) { a_reph = greedy(m, tok, rephrase, (int)max_new); show("", rephrase, a_reph); }
    if (ked_edit_token_accuracy(m, tok, shown, target, &acc1, NULL, NULL, &err) ||
        (rephrase && ked_edit_token_accuracy(m, tok, rephrase, target, &racc1, NULL, NULL, &err))) {
        rc = cli_report("edit", &err);
        goto done;
    }
    printf("rewrite accuracy  %.3f -> %.3f\n", acc0, acc1);
    if (rephrase) printf("rephrase accuracy %.3f -> %.3f\n", racc0, racc1);
    printf("patch id %d of %d in the list\n", new_id, ked_editor_n_patches(ed));
save:
    if (out_dir) {
        if (ked_editor_save_dir(ed, out_dir, &err)) { rc = cli_report("edit", &err); goto done; }
        int applied = 0;
        for (int i = 0; i < ked_editor_n_patches(ed); i++) applied += ked_editor_is_active(ed, i);
        printf("wrote    %s (%d patches, %d applied)\n", out_dir, ked_editor_n_patches(ed), applied);
    }
    tm.compute_s = ked_time_s_cli() - t0;
done:
    ked_edit_templates_free(tmpl, n_tmpl);
    free(b_ans); free(a_ans); free(b_reph); free(a_reph); free(shown);
    ked_patch_free(p);
    ked_editor_free(ed);
    ked_tokenizer_free(tok);
    ked_model_free(m);
    fflush(stdout);
    cli_timing_print(&tm);
    return rc;
}
