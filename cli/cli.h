// cli.h: what the subcommands of the `ked` program share: the command table entry, option
// parsing helpers, error reporting and the closing timing block. Only cli/ prints and exits.
#ifndef KED_CLI_H
#define KED_CLI_H

#include <stdio.h>
#include "ked.h"

// every subcommand: int cmd_NAME(int argc, char **argv), argv[0] is the command name.
// It returns the process exit code (0 ok, 1 failure, 2 usage error).
typedef int (*cli_cmd_fn)(int argc, char **argv);

// one line per command; each is defined in cli/cmd_NAME.c
#define KED_COMMANDS(X)                                                                    \
    X(generate, "generate text from a prompt")                                             \
    X(inspect, "print a model's family, config, parameters, dtypes and memory")            \
    X(convert, "copy a Hugging Face model directory with its weights in f32, f16 or bf16") \
    X(edit, "edit a fact in a model (rome, r-rome, ft-l, ft-m, memit, emmet, alphaedit)")    \
    X(eval, "evaluate an editing method on ZsRE/CounterFact/KnowEdit data as EasyEdit does") \
    X(tokenize, "print the token ids, pieces and byte offsets of a text")                  \
    X(hparams, "print the hyperparameters an edit method will use on a model")             \
    X(train, "train a model from scratch or a checkpoint (AdamW, resumable checkpoints)")  \
    X(tokenizer_train, "learn a byte-level BPE tokenizer.json from text")                \
    X(stats, "second-moment statistics of the MLP keys over a corpus (cached), for MEMIT etc.")

#define DECLARE(name, help) int cmd_##name(int argc, char **argv);
KED_COMMANDS(DECLARE)
#undef DECLARE


// cli_die_err: print "ked CMD: MESSAGE" from a library error to stderr; returns 1.
int cli_report(const char *cmd, const ked_error *err);
// cli_human_bytes: "14.5 MiB" (binary units, one decimal) into buf
void cli_human_bytes(char *buf, size_t n, double bytes);
// cli_usage_error: print "ked CMD: MESSAGE (see ked CMD --help)" and return 2.
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// option parsing: cli_opt_value(argc, argv, &i, "--model") returns the value of "--model X"
// or "--model=X" at argv[i] (advancing i past it), or NULL if argv[i] is not that option.
const char *cli_opt_value(int argc, char **argv, int *i, const char *name);
int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *s, double lo, double hi, double *out);

// the timing block every command ends with (on stderr, so stdout stays machine-readable)
typedef struct {
    double t_start, load_s, compute_s;
    long tokens; // tokens processed or generated during compute (0: not printed)
} cli_timing;
double ked_time_s_cli(void); // monotonic seconds
void cli_timing_start(cli_timing *t);
void cli_timing_print(const cli_timing *t);

// cli_print_hparams: the resolved values of an edit method's hyperparameters, one block
void cli_print_hparams(const ked_hparams *hp);

#endif
