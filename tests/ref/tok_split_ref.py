#!/usr/bin/python3
"""Reference pre-tokenizer splits: the byte spans of the matches of the GPT-2 / GPT-J / GPT-NeoX
pattern (all three use GPT-2's), Qwen2's and LLaMA-3's split patterns on every corpus string,
by Debian's python3-regex (the engine these patterns were written for). Writes
tests/data/tokenizer/split_<name>.txt: per corpus line, "start:end" byte spans, space-separated.
Run: /usr/bin/python3 tests/ref/tok_split_ref.py
"""
import os
import regex
from tok_common import DATA, read_corpus

PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "qwen2": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "llama3": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}

if __name__ == "__main__":
    corpus = [s.decode("utf-8") for s in read_corpus()]
    with open(os.path.join(DATA, "split_patterns.txt"), "w", encoding="utf-8") as f:
        for name, pat in PATTERNS.items():
            f.write("%s\t%s\n" % (name, pat))
    for name, pat in PATTERNS.items():
        rx = regex.compile(pat)
        with open(os.path.join(DATA, "split_%s.txt" % name), "w") as f:
            for s in corpus:
                spans = []
                for m in rx.finditer(s):
                    a = len(s[:m.start()].encode("utf-8"))
                    b = a + len(m.group(0).encode("utf-8"))
                    spans.append("%d:%d" % (a, b))
                f.write(" ".join(spans) + "\n")
    print("split fixtures written")
