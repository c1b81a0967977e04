// model_io.h: how the subcommands find and load a model and its tokenizer.
#ifndef KED_CLI_MODEL_IO_H
#define KED_CLI_MODEL_IO_H
#include "ked.h"

// cli_load_tokenizer: --tokenizer PATH when given; otherwise the tokenizer beside the model
// (the model directory, or the directory of a model file). Returns 0 on success.
int cli_load_tokenizer(const char *cmd, const char *model_path, const char *tok_path,
                       ked_tokenizer **out);
#endif
