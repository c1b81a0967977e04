#!/bin/sh
# Regenerates tests/data/tokenizer/ (corpus and reference ids). Needs Debian's /usr/bin/python3
# with python3-regex and python3-sentencepiece, Node.js 20 and `npm ci` in tests/ref.
# Run from the repository root: sh tests/ref/tok_make_fixtures.sh
set -e
cd "$(dirname "$0")"
[ -d node_modules/@lenml/tokenizers ] || npm ci --no-audit --no-fund
PY=/usr/bin/python3
$PY tok_corpus.py
$PY tok_build_json.py
$PY tok_gpt2_ref.py
$PY tok_sp_ref.py
$PY tok_llama2c_ref.py
$PY tok_split_ref.py
D=../data/tokenizer
node tok_hf_ref.mjs $D/vicuna-llama/tokenizer.json $D/corpus.txt $D/vicuna_ids.txt
node tok_hf_ref.mjs $D/tinystories-656k/tokenizer.json $D/corpus.txt $D/tinystories_ids.txt
node tok_hf_ref.mjs $D/gpt2-llama3style/tokenizer.json $D/corpus.txt $D/gpt2-llama3style_ids.txt
node tok_hf_ref.mjs $D/vicuna-llama/tokenizer.json $D/corpus.txt $D/vicuna_metaspace_ids.txt metaspace
