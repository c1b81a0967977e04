// model_io.c: finding a model's tokenizer for the subcommands (see model_io.h).
#include "model_io.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

int cli_load_tokenizer(const char *cmd, const char *model_path, const char *tok_path,
                       ked_tokenizer **out) {
    ked_error err;
    if (tok_path) {
        if (ked_tokenizer_load(tok_path, out, &err)) return cli_report(cmd, &err);
        return 0;
    }
    struct stat sb;
    char *dir = strdup(model_path);
    if (!dir) return 1;
    const char *where = dir;
    if (stat(model_path, &sb) == 0 && !S_ISDIR(sb.st_mode)) where = dirname(dir);
    ked_status st = ked_tokenizer_load(where, out, &err);
    if (st) {
        fprintf(stderr, "ked %s: no tokenizer found beside the model in %s (%s); pass "
                "--tokenizer PATH\n", cmd, where, err.msg);
        free(dir);
        return 1;
    }
    free(dir);
    return 0;
}
