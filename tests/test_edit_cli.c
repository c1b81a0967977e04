// test_edit_cli.c: `ked edit` end to end on models/stories260K (the binary $BUILD/ked, built by
// `make all` before the tests run): an edit written as a patch file and as an edited directory;
// that directory loads with `ked generate` and says the new answer; a second edit on top; --log
// lists both; --revert 0 writes a directory whose weights equal a fresh single edit's; --apply of
// the patch file reproduces the first directory's weights; usage errors exit 2, library errors 1.
#include "test.h"

#include <sys/wait.h>

#include "ked.h"

static char ked[512];

static float *weights(const char *dir, size_t *n) {
    ked_error err;
    ked_model *m = NULL;
    if (ked_model_load(dir, &m, &err)) { fprintf(stderr, "%s\n", err.msg); return NULL; }
    size_t total = 0;
    for (int i = 0; i < ked_model_n_tensors(m); i++) {
        int64_t s[2] = {0, 1};
        int nd = ked_model_tensor_shape(m, ked_model_tensor_name(m, i), s);
        total += (size_t)(s[0] * (nd == 2 ? s[1] : 1));
    }
    float *w = malloc(sizeof(float) * total), *p = w;
    for (int i = 0; i < ked_model_n_tensors(m); i++) {
        const char *name = ked_model_tensor_name(m, i);
        int64_t s[2] = {0, 1};
        int nd = ked_model_tensor_shape(m, name, s);
        ked_model_tensor_read(m, name, 0, p, &err);
        p += s[0] * (nd == 2 ? s[1] : 1);
    }
    *n = total;
    ked_model_free(m);
    return w;
}

static int same_weights(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    float *wa = weights(a, &na), *wb = weights(b, &nb);
    int same = wa && wb && na == nb && !memcmp(wa, wb, sizeof(float) * na);
    free(wa);
    free(wb);
    return same;
}

int main(void) {
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(ked, sizeof ked, "%s/ked", build);
    static char out[1 << 16];
    char cmd[4096];
    const char *req = "--prompt 'Once upon a time, there was a little girl named' "
                      "--subject 'little girl' --target ' Sue' --threads 1";
    const char *d1 = "build/tests/cli_ed1", *d2 = "build/tests/cli_ed2", *d3 = "build/tests/cli_ed3";
    const char *d4 = "build/tests/cli_ed4", *d5 = "build/tests/cli_ed5";
    snprintf(cmd, sizeof cmd, "rm -rf %s %s %s %s %s", d1, d2, d3, d4, d5);
    CHECK(system(cmd) == 0, "rm");

    // 0. ked hparams: the defaults derived from the model, an EasyEdit file, and errors
    snprintf(cmd, sizeof cmd, "%s hparams --model models/stories260K --method rome", ked);
    CHECK(test_run(cmd, out, sizeof out) == 0, "ked hparams: %s", out);
    CHECK(strstr(out, "source   defaults") && strstr(out, "layers   1") &&
          strstr(out, "v_num_grad_steps 40"), "ked hparams defaults: %s", out);
    snprintf(cmd, sizeof cmd, "%s hparams --model models/TinyStories-656K --hparams "
             "tests/data/hparams/ROME-llama-7b.yaml", ked);
    CHECK(test_run(cmd, out, sizeof out) == 1 && strstr(out, "line 5") && strstr(out, "layer 5"),
          "ked hparams with a layer the model lacks: %s", out);
    snprintf(cmd, sizeof cmd, "%s hparams --model models/stories260K --method bogus", ked);
    CHECK(test_run(cmd, out, sizeof out) == 2 && strstr(out, "unknown method 'bogus'"),
          "ked hparams with an unknown method: %s", out);

    // 1. ROME, the patch file and an edited directory
    snprintf(cmd, sizeof cmd, "%s edit --model models/stories260K --method rome %s "
             "--patch build/tests/cli_sue.safetensors --out %s", ked, req, d1);
    int rc = test_run(cmd, out, sizeof out);
    CHECK(rc == 0, "ked edit exited %d:\n%s", rc, out);
    CHECK(strstr(out, "after    Once upon a time, there was a little girl named Sue"),
          "no Sue after the edit:\n%s", out);
    CHECK(strstr(out, "rewrite accuracy  0.667 -> 1.000") && strstr(out, "key      token 12"),
          "summary lines missing:\n%s", out);
    CHECK(strstr(out, "-- timing:"), "no timing block");
    // the directory is a model
    snprintf(cmd, sizeof cmd, "%s generate --model %s --max-new 4 'Once upon a time, there was a "
             "little girl named'", ked, d1);
    rc = test_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "named Sue"), "generate on the edited directory:\n%s", out);

    // 2. a second edit on top, then the list
    snprintf(cmd, sizeof cmd, "%s edit --model %s --method ft-m --prompt 'One day, a big dog named' "
             "--subject 'big dog' --target ' Tom' --threads 1 --out %s", ked, d1, d2);
    rc = test_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "patch id 1 of 2"), "second edit (%d):\n%s", rc, out);
    snprintf(cmd, sizeof cmd, "%s edit --model %s --log", ked, d2);
    rc = test_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "  0 applied  rome") && strstr(out, "  1 applied  ft-m") &&
          strstr(out, "[big dog] -> Tom"), "--log:\n%s", out);

    // 3. edit 0 out: equal to the second edit alone on the base
    snprintf(cmd, sizeof cmd, "%s edit --model %s --revert 0 --out %s", ked, d2, d3);
    rc = test_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "2 patches, 1 applied"), "--revert (%d):\n%s", rc, out);
    snprintf(cmd, sizeof cmd, "%s edit --model models/stories260K --apply %s/patches/001-ft-m.safetensors "
             "--out %s", ked, d2, d4);
    rc = test_run(cmd, out, sizeof out);
    CHECK(rc == 0, "--apply (%d):\n%s", rc, out);
    CHECK(same_weights(d3, d4), "revert 0 of [rome, ft-m] differs from ft-m alone on the base");

    // 4. the patch file reproduces the first directory
    snprintf(cmd, sizeof cmd, "%s edit --model models/stories260K --apply build/tests/cli_sue.safetensors "
             "--out %s", ked, d5);
    rc = test_run(cmd, out, sizeof out);
    CHECK(rc == 0, "--apply of the patch file (%d):\n%s", rc, out);
    CHECK(same_weights(d1, d5), "--apply of the patch file differs from the edit that wrote it");

    // 5. errors
    snprintf(cmd, sizeof cmd, "%s edit --model models/stories260K --method rome", ked);
    CHECK(test_run(cmd, out, sizeof out) == 2 && strstr(out, "are required"), "usage error:\n%s", out);
    snprintf(cmd, sizeof cmd, "%s edit --model models/stories260K --method nope %s", ked, req);
    CHECK(test_run(cmd, out, sizeof out) == 2 && strstr(out, "unknown method"), "bad method:\n%s", out);
    snprintf(cmd, sizeof cmd, "%s edit --model models/stories260K --method rome --hparams "
             "tests/data/hparams/ROME-gpt2-xl.yaml %s", ked, req);
    CHECK(test_run(cmd, out, sizeof out) == 1 && strstr(out, "rewrite_module_tmp"), "bad hparams:\n%s", out);
    snprintf(cmd, sizeof cmd, "%s edit --model %s --revert 5", ked, d2);
    CHECK(test_run(cmd, out, sizeof out) == 1 && strstr(out, "no patch 5"), "bad revert:\n%s", out);
    return test_finish("test_edit_cli");
}
