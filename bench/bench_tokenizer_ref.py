#!/usr/bin/python3
"""The Python side of bench/bench_tokenizer.sh: encoding throughput (MB/s, single-threaded, line
by line) on WikiText-2 of the GPT-2 reference encoder (tests/ref/tok_gpt2_ref.py: OpenAI's
encoder.py algorithm over python3-regex, with its word cache) and of SentencePiece
(CPU time of the process, as bench_tokenizer.c measures)
(python3-sentencepiece, C++) on LLaMA-2's tokenizer.model. Prints "key: value" lines.
usage: /usr/bin/python3 bench/bench_tokenizer_ref.py [WIKITEXT_PATH]
"""
import os, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
from tok_gpt2_ref import load as load_gpt2  # noqa: E402
from tok_common import SHARED  # noqa: E402

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SHARED, "corpora", "wikitext2_raw_test.txt")
data = open(path, "rb").read()
lines = [l.decode("utf-8", errors="replace") for l in data.split(b"\n")]
print("wikitext_bytes: %d" % len(data))

enc = load_gpt2()
for name in ("first_pass_", ""):
    t0 = time.process_time()
    n = sum(len(enc.encode(l)) for l in lines)
    s = time.process_time() - t0
    print("py_gpt2_tokens: %d" % n) if name else None
    print("py_gpt2_%smb_s: %.2f" % (name, len(data) / s / 1e6))

try:
    import sentencepiece as spm
    model = os.path.join(SHARED, "tokenizers", "llama2", "tokenizer.model")
    t0 = time.process_time()
    sp = spm.SentencePieceProcessor(model_file=model)
    print("sentencepiece_load_ms: %.1f" % ((time.process_time() - t0) * 1e3))
    best = 1e9
    for r in range(2):
        t0 = time.process_time()
        n = sum(len(sp.encode(l)) for l in lines)
        best = min(best, time.process_time() - t0)
    print("sentencepiece_tokens: %d" % n)
    print("sentencepiece_mb_s: %.2f" % (len(data) / best / 1e6))
except (ImportError, OSError) as e:
    print("sentencepiece: unavailable (%s)" % e, file=sys.stderr)
