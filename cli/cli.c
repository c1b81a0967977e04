// cli.c: shared helpers of the subcommands (see cli.h).
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_human_bytes(char *buf, size_t n, double bytes) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4) { bytes /= 1024; i++; }
    snprintf(buf, n, "%.1f %s", bytes, u[i]);
}

int cli_report(const char *cmd, const ked_error *err) {
    fprintf(stderr, "ked %s: %s\n", cmd, err->msg);
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "ked %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see ked %s --help)\n", cmd);
    return 2;
}

const char *cli_opt_value(int argc, char **argv, int *i, const char *name) {
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) return NULL;
    if (*i + 1 >= argc) return NULL;
    *i += 1;
    return argv[*i];
}

int cli_parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int cli_parse_float(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

double ked_time_s_cli(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_timing_start(cli_timing *t) {
    memset(t, 0, sizeof *t);
    t->t_start = ked_time_s_cli();
}

void cli_timing_print(const cli_timing *t) {
    fflush(stdout);
    double total = ked_time_s_cli() - t->t_start;
    fprintf(stderr, "\n-- timing: load %.3f s, compute %.3f s, total %.3f s", t->load_s,
            t->compute_s, total);
    if (t->tokens > 0 && t->compute_s > 0)
        fprintf(stderr, ", %ld tokens, %.1f tokens/s", t->tokens, (double)t->tokens / t->compute_s);
    fprintf(stderr, "\n");
}
