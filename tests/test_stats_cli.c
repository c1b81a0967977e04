// test_stats_cli.c: `ked stats` and `ked edit --method memit|emmet|alphaedit` end to end on
// models/stories260K (the binary $BUILD/ked): statistics of two layers computed in one pass with a
// progress line, listed, reused (no recomputation), read back (--read, EasyEdit's .npz too);
// edits find them in the cache or compute them from --stats-corpus; without statistics or corpus
// the error names mom2_dataset and --stats-corpus; --clear empties the cache; usage errors exit 2.
#include "test.h"

#include <sys/wait.h>

static char ked[512];

// every command with the test's own statistics cache
static int run(const char *cmd, char *out, size_t cap) {
    char full[4096];
    snprintf(full, sizeof full, "KED_CACHE=build/tests/stats_cli_cache %s", cmd);
    return test_run(full, out, cap);
}

int main(void) {
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(ked, sizeof ked, "%s/ked", build);
    static char out[1 << 16];
    char cmd[2048];
    const char *model = "--model models/stories260K --tokenizer models/stories260K/tok512.bin --threads 1";
    const char *edit = "--prompt 'Once upon a time, there was a little girl named' --subject 'little girl' "
                       "--target ' Sue' --layer 1";
    // a small corpus: 80 lines of the tokenizer corpus
    FILE *in = fopen("tests/data/tokenizer/corpus.txt", "rb"), *co = fopen("build/tests/stats_cli.txt", "wb");
    char line[8192];
    for (int i = 0; in && co && i < 80 && fgets(line, sizeof line, in); i++) fputs(line, co);
    if (in) fclose(in);
    if (co) fclose(co);
    snprintf(cmd, sizeof cmd, "%s stats --clear", ked);
    CHECK(run(cmd, out, sizeof out) == 0, "%s", out);
    // no statistics, no corpus: the error names what to give
    snprintf(cmd, sizeof cmd, "%s edit %s --method memit %s", ked, model, edit);
    int rc = run(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "mom2_dataset") && strstr(out, "--stats-corpus"), "rc %d: %s", rc, out);
    // ked stats: layers 1-2 in one pass
    snprintf(cmd, sizeof cmd, "%s stats %s --layers 1,2 --corpus build/tests/stats_cli.txt", ked, model);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "layer  1") && strstr(out, "layer  2") && strstr(out, "tokens/s") &&
          strstr(out, "computed from"), "rc %d: %s", rc, out);
    // again: from the cache
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, ".kstats") && !strstr(out, "computed from"), "rc %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "%s stats --list", ked);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "-L1-") && strstr(out, "-L2-"), "rc %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "%s stats --read tests/data/edit/stats_easyedit.npz", ked);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "dim 56, count 128"), "rc %d: %s", rc, out);
    // edits find the cached statistics (layer 1)
    const char *methods[3] = {"memit", "emmet", "alphaedit"};
    for (int k = 0; k < 3; k++) {
        snprintf(cmd, sizeof cmd, "%s edit %s --method %s %s --patch build/tests/stats_cli_%s.safetensors",
                 ked, model, methods[k], edit, methods[k]);
        rc = run(cmd, out, sizeof out);
        CHECK(rc == 0 && strstr(out, "stats    build/tests/stats_cli_cache/") && strstr(out, "(rank 1)") &&
              (k != 2 || strstr(out, "null     space of C kept")), "%s: rc %d: %s", methods[k], rc, out);
        const char *acc = strstr(out, "rewrite accuracy");
        printf("  %-9s %.*s\n", methods[k], acc ? 30 : 1, acc ? acc : "?");
    }
    // computed on first use from --stats-corpus (layer 3 is not cached)
    snprintf(cmd, sizeof cmd, "%s edit %s --method memit --prompt 'Once upon a time, there was a little girl "
             "named' --subject 'little girl' --target ' Sue' --layer 3 --stats-corpus build/tests/stats_cli.txt "
             "--stats-tokens 500", ked, model);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "-L3-") && strstr(out, "t500.kstats"), "rc %d: %s", rc, out);
    // usage errors
    snprintf(cmd, sizeof cmd, "%s stats %s --corpus build/tests/stats_cli.txt", ked, model);
    CHECK(run(cmd, out, sizeof out) == 2 && strstr(out, "--layers"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s stats %s --layers 1 --corpus x --doc-split para", ked, model);
    CHECK(run(cmd, out, sizeof out) == 2, "%s", out);
    snprintf(cmd, sizeof cmd, "%s stats %s --layers 9 --corpus build/tests/stats_cli.txt", ked, model);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "layer 9"), "rc %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "%s stats --clear", ked);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "removed"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s stats --list", ked);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && !strstr(out, ".kstats"), "after --clear: %s", out);
    return test_finish("test_stats_cli");
}
