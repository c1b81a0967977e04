#!/usr/bin/python3
"""Reference ids for LLaMA-2: Debian's python3-sentencepiece on
/work/shared/tokenizers/llama2/tokenizer.model, without BOS (the C test adds BOS=1 itself).
Writes tests/data/tokenizer/llama2_ids.txt. Run: /usr/bin/python3 tests/ref/tok_sp_ref.py
"""
import os, sys
import sentencepiece as spm
from tok_common import SHARED, read_corpus, write_ids

sp = spm.SentencePieceProcessor(model_file=os.path.join(SHARED, "tokenizers", "llama2", "tokenizer.model"))
write_ids("llama2_ids.txt", [sp.encode(s.decode("utf-8")) for s in read_corpus()])
print("llama2_ids.txt written", file=sys.stderr)
