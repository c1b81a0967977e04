#!/bin/sh
# Tokenizer benchmark: ked (build/bench/bench_tokenizer) against the Python references on the
# same WikiText-2 text, single-threaded, and the ratios.
# usage: sh bench/bench_tokenizer.sh [BUILD_DIR] [WIKITEXT_PATH]    (from the repository root;
#        builds BUILD_DIR/bench/bench_tokenizer first; BUILD_DIR defaults to build)
BUILD=${1:-build}
WT=${2:-/work/shared/corpora/wikitext2_raw_test.txt}
make --no-print-directory BUILD="$BUILD" "$BUILD/bench/bench_tokenizer" >/dev/null || exit 1
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (times are CPU seconds of one thread; a loaded machine still slows them)"
C=$("$BUILD/bench/bench_tokenizer" "$WT") || exit 1
echo "$C" | sed 's/^/ked  /'
PY=/usr/bin/python3
P=$($PY bench/bench_tokenizer_ref.py "$WT" 2>/dev/null)
if [ -z "$P" ]; then echo "python references unavailable (need /usr/bin/python3 with python3-regex, python3-sentencepiece)"; exit 0; fi
echo "$P" | sed 's/^/py   /'
get() { echo "$1" | sed -n "s/^$2: //p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }'; }
echo "ratio gpt2 BPE (ked / encoder.py):                  $(ratio "$(get "$C" gpt2_bpe_mb_s)" "$(get "$P" py_gpt2_mb_s)")  (first pass $(ratio "$(get "$C" gpt2_bpe_first_pass_mb_s)" "$(get "$P" py_gpt2_first_pass_mb_s)"))"
echo "ratio llama2 (ked tokenizer.json / sentencepiece):   $(ratio "$(get "$C" llama2_tokenizer_json_mb_s)" "$(get "$P" sentencepiece_mb_s)")"
echo "check: token counts gpt2 $(get "$C" gpt2_bpe_tokens) vs $(get "$P" py_gpt2_tokens), llama2 $(get "$C" llama2_tokenizer_json_tokens) vs $(get "$P" sentencepiece_tokens)"
echo "targets: gpt2 >= 10 MB/s, 32k tokenizer.json load <= 50 ms"
