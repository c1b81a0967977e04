// cmd_hparams.c: `ked hparams`: the hyperparameters an edit method will use on a model, from an
// EasyEdit YAML file or derived from the model (design.md §3b).
#include <string.h>

#include "cli.h"

static const char *usage =
    "usage: ked hparams --model PATH --method M [--hparams YAML]\n"
    "\n"
    "Prints the values `ked edit` and `ked eval` will use for method M on this model: those of\n"
    "an EasyEdit hparams file (--hparams), or, without one, defaults derived from the model.\n"
    "\n"
    "  --model PATH     Hugging Face directory or llama2.c checkpoint\n"
    "  --method M       an editing method (see ked edit --help)\n"
    "  --hparams YAML   an EasyEdit hparams file\n";

int cmd_hparams(int argc, char **argv) {
    const char *model_path = NULL, *method = NULL, *hp_path = NULL, *v;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); return 0; }
        else if ((v = cli_opt_value(argc, argv, &i, "--model"))) model_path = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--method"))) method = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--hparams"))) hp_path = v;
        else return cli_usage_error("hparams", "unknown argument '%s'", argv[i]);
    }
    if (!model_path) return cli_usage_error("hparams", "--model PATH is required");
    if (!method && !hp_path) return cli_usage_error("hparams", "--method M (or --hparams YAML) is required");
    if (method && !ked_edit_method_known(method))
        return cli_usage_error("hparams", "unknown method '%s' (known: %s)", method, ked_edit_methods());
    cli_timing tm;
    cli_timing_start(&tm);
    ked_error err;
    ked_model *m = NULL;
    if (ked_model_load(model_path, &m, &err)) return cli_report("hparams", &err);
    tm.load_s = ked_time_s_cli() - tm.t_start;
    ked_hparams hp;
    int rc = 0;
    if (hp_path ? ked_hparams_load(m, hp_path, method, &hp, &err)
                : ked_hparams_defaults(m, method, &hp, &err)) {
        rc = cli_report("hparams", &err);
    } else {
        const ked_config *c = ked_model_config(m);
        printf("model    %s (%s, %d layers)\n", model_path, c->family, c->n_layer);
        printf("method   %s\n", hp.method);
        printf("source   %s\n", hp.source);
        printf("layers  ");
        for (int i = 0; i < hp.n_layers; i++) printf(" %d", hp.layers[i]);
        printf("\n");
        cli_print_hparams(&hp);
    }
    ked_model_free(m);
    cli_timing_print(&tm);
    return rc;
}
