#!/usr/bin/python3
"""Builds tests/data/tokenizer/gpt2-llama3style/tokenizer.json: a byte-level BPE tokenizer.json
from the GPT-2 files (/work/shared/tokenizers/gpt2, MIT), written the way newer Hugging Face files
are (LLaMA-3 / Qwen2 style): NFC normalizer, Sequence[Split(LLaMA-3 pattern: Unicode classes,
case-insensitive group, lookahead), ByteLevel(use_regex=false)], merges as pairs, ByteLevel
decoder, <|endoftext|> as a special added token. Run: /usr/bin/python3 tests/ref/tok_build_json.py
"""
import json, os
from tok_common import DATA, SHARED

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
d = os.path.join(SHARED, "tokenizers", "gpt2")
vocab = json.load(open(os.path.join(d, "vocab.json"), encoding="utf-8"))
merges = [m.split(" ") for m in open(os.path.join(d, "merges.txt"), encoding="utf-8").read().split("\n")[1:-1]]
tok = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": vocab, "merges": merges},
}
out = os.path.join(DATA, "gpt2-llama3style")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
    json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))
with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
    json.dump({"add_bos_token": False, "add_eos_token": False, "bos_token": "<|endoftext|>",
               "eos_token": "<|endoftext|>", "tokenizer_class": "GPT2Tokenizer"}, f, indent=1)
print("wrote", out)
