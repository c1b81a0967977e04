// main.c: the `ked` program: dispatch to a subcommand (cli/cmd_*.c).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    {
        char name[64];
        snprintf(name, sizeof name, "%s", commands[i].name);
        for (char *p = name; *p; p++)
            if (*p == '_') *p = '-';
        fprintf(f, "  %-16s %s\n", name, commands[i].help);
    }
    fprintf(f, "\n  --version  print the version\n");
}

int main(int argc, char **argv) {
    // OpenMP threads that spin while waiting make the many small parallel regions of an edit
    // (and OpenBLAS's) up to 15x slower when the cores are shared with anything else (measured:
    // a ROME edit of stories260K on 2 busy cores, 11.9 s spinning vs 0.8 s passive). The policy
    // is read when the OpenMP runtime loads, before main, so set it and re-execute once; a
    // user's own OMP_WAIT_POLICY is respected.
    if (!getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "passive", 1) == 0)
        execv("/proc/self/exe", argv); // returns only on failure: carry on with the default
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("ked %s\n", KED_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    // command names are written with '-' (tokenizer-train); the table spells them with '_'
    char name[64];
    snprintf(name, sizeof name, "%s", argv[1]);
    for (char *p = name; *p; p++)
        if (*p == '-') *p = '_';
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ked: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
