#!/bin/sh
# tok_train_ref.sh: the fixture of the BPE trainer's test (tests/test_train.c).
#  1. `ked tokenizer_train` learns 1000 tokens from tests/data/tokenizer/corpus.txt (its lines
#     read as they are, escapes and all) into tests/data/train/bpe_tokenizer.json;
#  2. @lenml/tokenizers (an independent implementation of HF's pipeline, tok_hf_ref.mjs) encodes
#     every (unescaped) corpus line with it into tests/data/train/bpe_corpus_ids.txt.
# test_train retrains (the file must come out byte-identical) and checks that ked's encoder
# gives the same ids. usage: sh tests/ref/tok_train_ref.sh [BUILD]   (npm install in tests/ref)
set -e
BUILD=${1:-build}
"$BUILD/ked" tokenizer_train --vocab-size 1000 --out tests/data/train/bpe_tokenizer.json \
    tests/data/tokenizer/corpus.txt
rm -f tests/data/train/tokenizer_config.json
node tests/ref/tok_hf_ref.mjs tests/data/train/bpe_tokenizer.json tests/data/tokenizer/corpus.txt \
    tests/data/train/bpe_corpus_ids.txt
