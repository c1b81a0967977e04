#!/usr/bin/python3
"""Builds tests/data/tokenizer/corpus.txt (valid UTF-8, compared with the references) and
tests/data/tokenizer/invalid.txt (invalid UTF-8: round-trip and fuzz tests only).

Sources (see tests/data/tokenizer/README.md): WikiText-2 raw test split (CC BY-SA), EasyEdit's
CounterFact and ZsRE data (MIT), and hand-picked hard cases.
Run: /usr/bin/python3 tests/ref/tok_corpus.py
"""
import json, os
from tok_common import DATA, SHARED, escape

strings = []

# hand-picked hard cases
hard = [
    "", " ", "  ", "   ", "\n", "\n\n", "\r\n", " \r\n ", "\t", "\t\t x", "a  b", "a   b   ", "  leading",
    "trailing  ", "Hello world", "Hello, world!", "hello\nworld\n\n\nagain", "line1\r\nline2\r\n",
    "tab\tseparated\tvalues", "12345", "3.14159", "1,000,000 and 2024-11-25", "0x1F 0b1010 1e-9",
    "I'm you're he's we've they'll I'd can't won't", "DON'T SHOUT I'M HERE", "'s 't 're 've 'm 'll 'd",
    "café naïve résumé Zürich São Paulo", "e\u0301 (decomposed e-acute) and \u00e9", "Ångström ﬁ ligature ①②③",
    "日本語のテキスト", "中文字符测试，标点。", "한국어 텍스트", "Привет, мир!", "Γειά σου κόσμε",
    "مرحبا بالعالم", "שלום עולם", "हिन्दी पाठ", "ภาษาไทย",
    "emoji 😀😃 👍🏽 family 👨‍👩‍👧‍👦 flag 🇫🇷", "🙂", "😀😀😀", "math ∑∫√∞ ≤≥ ≠",
    "non-breaking\u00a0space and thin\u2009space", "zero\u200bwidth", "line\u2028separator",
    "▁already▁has▁metaspace", "<s>", "</s>", "<unk>", "a<s>b", "Hello</s> world", "<|endoftext|>",
    "before<|endoftext|>after", "The capital of France is", " Paris", "Paris", "  double lead",
    "!!!???...", "---===+++", "(parens) [brackets] {braces}", "path/to/file.txt", "user@example.com",
    "https://example.com/a?b=c&d=e#f", "C:\\Windows\\System32", "quote \"double\" 'single'",
    "x" * 300, "ab" * 200, " " * 40 + "x", "\n" * 10, "a\u0000b", "\u007f del", "\u00ad soft hyphen",
    "Once upon a time, there was a little girl named Lily.", "a" , "Z", "9", ".", "'", "\u2581",
]
strings += [h.encode("utf-8") for h in hard]

# WikiText-2: lines as they are (the file has CRLF endings), some with their CRLF kept
with open(os.path.join(SHARED, "corpora", "wikitext2_raw_test.txt"), "rb") as f:
    wlines = f.read().split(b"\n")
wlines = [l for l in wlines if l.strip()]
step = max(1, len(wlines) // 1100)
for k, l in enumerate(wlines[::step][:1100]):
    strings.append(l + b"\n" if k % 10 == 0 else l.rstrip(b"\r"))

# CounterFact prompts and targets
cf = json.load(open(os.path.join(SHARED, "data", "easyedit", "counterfact-edit.json")))
for r in cf[:250]:
    strings += [r["prompt"].encode(), (" " + r["target_new"]).encode(), r["subject"].encode(),
                r["rephrase_prompt"].encode()]
# ZsRE questions and answers
zs = json.load(open(os.path.join(SHARED, "data", "easyedit", "zsre_mend_eval_portability_gpt4.json")))
for r in zs[:250]:
    strings += [r["src"].encode(), (" " + r["alt"]).encode(), r["rephrase"].encode(), r["loc"].encode()]

with open(os.path.join(DATA, "corpus.txt"), "w", encoding="utf-8") as f:
    for s in strings:
        s.decode("utf-8")  # all valid
        f.write(escape(s) + "\n")

invalid = [b"\xff", b"\xc3", b"abc\xff\xfedef", b"\xe6\x97", b"\xe6\x97 tail", b"\xc3\x28", b"\xa0\xa1",
           b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80\xf0\x9f", b"\xed\xa0\x80 surrogate", b"\xc0\xaf overlong",
           b"ok \x80\x80\x80 bytes", b"\xf8\x88\x80\x80\x80", bytes(range(256)), b"\x00\x00\x00",
           "caf\u00e9".encode("latin-1") + b" latin-1", b"The capital of \xff is"]
with open(os.path.join(DATA, "invalid.txt"), "w", encoding="utf-8") as f:
    for s in invalid:
        f.write(escape(s) + "\n")
print("corpus.txt: %d strings, invalid.txt: %d strings" % (len(strings), len(invalid)))
