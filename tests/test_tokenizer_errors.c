// test_tokenizer_errors.c: malformed tokenizer files get an error that names the file and the
// field (missing model, bad merges, wrong types, unknown component types, bad regex, ...), with
// the right status, and never a crash or a leak.
#include <sys/stat.h>
#include <unistd.h>

#include "ked.h"
#include "test.h"

static char dir[] = "/tmp/ked_tok_errXXXXXX";

static const char *write_tmp(const char *name, const char *text, size_t len) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fwrite(text, 1, len, f);
    fclose(f);
    return path;
}

// a tokenizer.json with a small valid model, where `model`, `norm`, `pre`, `dec`, `added` replace
// the parts (NULL: the valid default)
static void check_json(const char *what, const char *model, const char *norm, const char *pre,
                       const char *dec, const char *added, ked_status want, const char *field) {
    const char *vm = "{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,"
                     "\"vocab\":{\"<unk>\":0,\"a\":1,\"b\":2,\"ab\":3},\"merges\":[\"a b\"]}";
    char buf[4096];
    int n =
        snprintf(buf, sizeof buf,
                 "{\"version\":\"1.0\",\"added_tokens\":%s,\"normalizer\":%s,\"pre_tokenizer\":%s,"
                 "\"decoder\":%s%s%s}",
                 added ? added : "[]", norm ? norm : "null", pre ? pre : "null", dec ? dec : "null",
                 model && !strcmp(model, "-") ? "" : ",\"model\":",
                 model && !strcmp(model, "-") ? "" : (model ? model : vm));
    const char *path = write_tmp("tokenizer.json", buf, (size_t)n);
    ked_tokenizer *t = NULL;
    ked_error err = {0};
    ked_status st = ked_tokenizer_load(path, &t, &err);
    if (want == KED_OK) {
        CHECK(st == KED_OK && t, "%s: should load: %s", what, err.msg);
    } else {
        CHECK(st == want, "%s: status %s, want %s (%s)", what, ked_status_name(st),
              ked_status_name(want), err.msg);
        CHECK(t == NULL, "%s: no tokenizer on failure", what);
        CHECK(strstr(err.msg, path) != NULL, "%s: message names the file: %s", what, err.msg);
        CHECK(strstr(err.msg, field) != NULL, "%s: message names %s: %s", what, field, err.msg);
        printf("%-34s -> %s\n", what, err.msg + strlen(dir) + 1);
    }
    ked_tokenizer_free(t);
}

int main(void) {
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return test_finish("test_tokenizer_errors");
    }
    check_json("valid", NULL, NULL, NULL, NULL, NULL, KED_OK, "");
    check_json("missing model", "-", NULL, NULL, NULL, NULL, KED_ERR_FORMAT, "model");
    check_json("model not an object", "[1,2]", NULL, NULL, NULL, NULL, KED_ERR_FORMAT, "model");
    check_json("model.type WordPiece", "{\"type\":\"WordPiece\",\"vocab\":{}}", NULL, NULL, NULL,
               NULL, KED_ERR_UNSUPPORTED, "model.type");
    check_json("model.type not a string", "{\"type\":7,\"vocab\":{},\"merges\":[]}", NULL, NULL,
               NULL, NULL, KED_ERR_FORMAT, "model.type");
    check_json("missing vocab", "{\"type\":\"BPE\",\"merges\":[]}", NULL, NULL, NULL, NULL,
               KED_ERR_FORMAT, "model.vocab");
    check_json("vocab not an object", "{\"type\":\"BPE\",\"vocab\":[1],\"merges\":[]}", NULL, NULL,
               NULL, NULL, KED_ERR_FORMAT, "model.vocab");
    check_json("vocab id a string", "{\"type\":\"BPE\",\"vocab\":{\"a\":\"1\"},\"merges\":[]}",
               NULL, NULL, NULL, NULL, KED_ERR_FORMAT, "model.vocab[\"a\"]");
    check_json("vocab id negative", "{\"type\":\"BPE\",\"vocab\":{\"a\":-4},\"merges\":[]}", NULL,
               NULL, NULL, NULL, KED_ERR_FORMAT, "model.vocab[\"a\"]");
    check_json("missing merges", "{\"type\":\"BPE\",\"vocab\":{\"a\":0}}", NULL, NULL, NULL, NULL,
               KED_ERR_FORMAT, "model.merges");
    check_json("merges not an array", "{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":\"a b\"}",
               NULL, NULL, NULL, NULL, KED_ERR_FORMAT, "model.merges");
    check_json(
        "merge without space",
        "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\",\"ab\"]}", NULL,
        NULL, NULL, NULL, KED_ERR_FORMAT, "model.merges[1]");
    check_json("merge a number", "{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[3]}", NULL,
               NULL, NULL, NULL, KED_ERR_FORMAT, "model.merges[0]");
    check_json("merge pair of 3",
               "{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\",\"a\",\"a\"]]}", NULL,
               NULL, NULL, NULL, KED_ERR_FORMAT, "model.merges[0]");
    check_json("merge of unknown token",
               "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}", NULL, NULL,
               NULL, NULL, KED_ERR_FORMAT, "model.merges[0]");
    check_json("byte_fallback not bool",
               "{\"type\":\"BPE\",\"byte_fallback\":\"yes\",\"vocab\":{},\"merges\":[]}", NULL,
               NULL, NULL, NULL, KED_ERR_FORMAT, "model.byte_fallback");
    check_json("unk_token not in vocab",
               "{\"type\":\"BPE\",\"unk_token\":\"<u>\",\"vocab\":{\"a\":0},\"merges\":[]}", NULL,
               NULL, NULL, NULL, KED_ERR_FORMAT, "model.unk_token");
    check_json("continuing_subword_prefix",
               "{\"type\":\"BPE\",\"continuing_subword_prefix\":\"##\",\"vocab\":{},\"merges\":[]}",
               NULL, NULL, NULL, NULL, KED_ERR_UNSUPPORTED, "model.continuing_subword_prefix");
    check_json("added_tokens not an array", NULL, NULL, NULL, NULL, "{}", KED_ERR_FORMAT,
               "added_tokens");
    check_json("added token without id", NULL, NULL, NULL, NULL, "[{\"content\":\"<s>\"}]",
               KED_ERR_FORMAT, "added_tokens[0]");
    check_json("normalizer unknown type", NULL, "{\"type\":\"BertNormalizer\"}", NULL, NULL, NULL,
               KED_ERR_UNSUPPORTED, "normalizer.type");
    check_json("normalizer in Sequence unknown", NULL,
               "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Nope\"}]}",
               NULL, NULL, NULL, KED_ERR_UNSUPPORTED, "normalizer.normalizers[1].type");
    check_json("normalizer without type", NULL, "{\"prepend\":\"x\"}", NULL, NULL, NULL,
               KED_ERR_FORMAT, "normalizer.type");
    check_json("normalizer not an object", NULL, "\"NFC\"", NULL, NULL, NULL, KED_ERR_FORMAT,
               "normalizer");
    check_json("Prepend without prepend", NULL, "{\"type\":\"Prepend\"}", NULL, NULL, NULL,
               KED_ERR_FORMAT, "normalizer.prepend");
    check_json("Replace pattern wrong type", NULL,
               "{\"type\":\"Replace\",\"pattern\":\" \",\"content\":\"x\"}", NULL, NULL, NULL,
               KED_ERR_FORMAT, "normalizer.pattern");
    check_json("Sequence normalizers not array", NULL, "{\"type\":\"Sequence\",\"normalizers\":{}}",
               NULL, NULL, NULL, KED_ERR_FORMAT, "normalizer.normalizers");
    check_json("pre_tokenizer unknown type", NULL, NULL, "{\"type\":\"BertPreTokenizer\"}", NULL,
               NULL, KED_ERR_UNSUPPORTED, "pre_tokenizer.type");
    check_json("Split bad regex", NULL, NULL,
               "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{"
               "\"Regex\":\"(a\"},"
               "\"behavior\":\"Isolated\",\"invert\":false}]}",
               NULL, NULL, KED_ERR_FORMAT, "pre_tokenizer.pretokenizers[0].pattern");
    check_json("Split bad behavior", NULL, NULL,
               "{\"type\":\"Split\",\"pattern\":{\"String\":\" "
               "\"},\"behavior\":\"Sideways\",\"invert\":false}",
               NULL, NULL, KED_ERR_FORMAT, "pre_tokenizer.behavior");
    check_json("ByteLevel use_regex not bool", NULL, NULL,
               "{\"type\":\"ByteLevel\",\"use_regex\":1}", NULL, NULL, KED_ERR_FORMAT,
               "pre_tokenizer");
    check_json("Metaspace bad prepend_scheme", NULL, NULL,
               "{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"sometimes\"}",
               NULL, NULL, KED_ERR_FORMAT, "pre_tokenizer.prepend_scheme");
    check_json("Metaspace replacement missing", NULL, NULL, "{\"type\":\"Metaspace\"}", NULL, NULL,
               KED_ERR_FORMAT, "pre_tokenizer.replacement");
    check_json("decoder unknown type", NULL, NULL, NULL,
               "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"WordPiece\"}]}", NULL,
               KED_ERR_UNSUPPORTED, "decoder.decoders[0].type");
    check_json("Strip decoder bad start", NULL, NULL, NULL,
               "{\"type\":\"Strip\",\"content\":\" \",\"start\":\"1\",\"stop\":0}", NULL,
               KED_ERR_FORMAT, "decoder");
    check_json("decoder not an object", NULL, NULL, NULL, "[]", NULL, KED_ERR_FORMAT, "decoder");

    // not JSON at all, and truncated JSON: the parser's line and column
    ked_tokenizer *t = NULL;
    ked_error err;
    const char *p =
        write_tmp("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0", 40);
    CHECK(ked_tokenizer_load(p, &t, &err) == KED_ERR_FORMAT && strstr(err.msg, "line"),
          "truncated: %s", err.msg);
    printf("%-34s -> %s\n", "truncated JSON", err.msg + strlen(dir) + 1);
    // a directory with nothing in it
    char sub[600];
    snprintf(sub, sizeof sub, "%s/empty", dir);
    CHECK(mkdir(sub, 0700) == 0, "mkdir");
    CHECK(ked_tokenizer_load(sub, &t, &err) == KED_ERR_IO && strstr(err.msg, "no tokenizer found"),
          "%s", err.msg);
    CHECK(ked_tokenizer_load("/nonexistent/tok", &t, &err) == KED_ERR_IO, "%s", err.msg);
    // GPT-2 merges.txt naming a token that is not in vocab.json
    write_tmp("vocab.json", "{\"a\": 0, \"b\": 1, \"ab\": 2}", 25);
    p = write_tmp("merges.txt", "#version: 0.2\na b\nab c\n", 23);
    char vp[600];
    snprintf(vp, sizeof vp, "%s/vocab.json", dir);
    snprintf(sub, sizeof sub, "%s/tokenizer.json", dir);
    remove(sub);
    CHECK(ked_tokenizer_load(dir, &t, &err) == KED_ERR_FORMAT &&
              strstr(err.msg, "merges.txt: line 3"),
          "gpt2 merges: %s", err.msg);
    printf("%-34s -> %s\n", "merges.txt unknown token", err.msg + strlen(dir) + 1);
    write_tmp("vocab.json", "{\"a\": \"zero\"}", 13);
    CHECK(ked_tokenizer_load(vp, &t, &err) == KED_ERR_FORMAT && strstr(err.msg, "\"a\""),
          "gpt2 vocab: %s", err.msg);
    // a truncated llama2.c tokenizer: not recognised as one
    unsigned char bin[64] = {16, 0, 0, 0, 0, 0, 0x80, 0x3f, 5, 0, 0, 0, 'h', 'e'};
    p = write_tmp("tokenizer.bin", (const char *)bin, 14);
    CHECK(ked_tokenizer_load(p, &t, &err) == KED_ERR_FORMAT && strstr(err.msg, "tokenizer.bin"),
          "%s", err.msg);
    printf("%-34s -> %s\n", "truncated tokenizer.bin", err.msg + strlen(dir) + 1);
    CHECK(t == NULL, "no tokenizer");
    // tokenizer_config.json of the wrong type
    snprintf(sub, sizeof sub, "%s/cfg", dir);
    CHECK(mkdir(sub, 0700) == 0, "mkdir");
    char tj[700], tc[700];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", sub);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", sub);
    FILE *f = fopen(tj, "w");
    fputs("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", f);
    fclose(f);
    f = fopen(tc, "w");
    fputs("{\"add_bos_token\": \"yes\"}", f);
    fclose(f);
    CHECK(ked_tokenizer_load(sub, &t, &err) == KED_ERR_FORMAT && strstr(err.msg, "add_bos_token") &&
              strstr(err.msg, "tokenizer_config.json"),
          "config: %s", err.msg);
    printf("%-34s -> %s\n", "tokenizer_config.json bad type", err.msg + strlen(dir) + 1);
    // decode of an id out of range
    f = fopen(tc, "w");
    fputs("{}", f);
    fclose(f);
    CHECK_OK(ked_tokenizer_load(sub, &t, &err), &err);
    int bad[2] = {0, 7};
    char *text = NULL;
    CHECK(ked_tokenizer_decode(t, bad, 2, 0, &text, &err) == KED_ERR_ARG &&
              strstr(err.msg, "ids[1] = 7"),
          "%s", err.msg);
    CHECK(text == NULL, "no text on failure");
    ked_tokenizer_free(t);
    // clean up
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "rm");
    return test_finish("test_tokenizer_errors");
}
