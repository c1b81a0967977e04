// main.c: the `ked` program: dispatch to a subcommand (cli/cmd_*.c).
#include <stdio.h>
#include <string.h>

#include "cli.h"


static const struct {
    const char *name;
    cli_cmd_fn fn;
    const char *help;
} commands[] = {
#define ENTRY(name, help) {#name, cmd_##name, help},
    KED_COMMANDS(ENTRY)
#undef ENTRY
};

static void usage(FILE *f) {
    fprintf(f, "usage: ked COMMAND [options]   (ked COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n  --version  print the version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("ked %s\n", KED_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ked: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
