#!/usr/bin/python3
"""Reference ids for llama2.c's tokenizer.bin (tok512.bin of stories260K): a line-by-line Python
rendering of encode() in karpathy/llama2.c run.c (bos=0, eos=0 here; the C test adds BOS=1):
dummy-prefix " ", UTF-8 characters looked up whole with byte fallback id = byte + 3, then
repeatedly merge the adjacent pair whose concatenation is in the vocabulary with the best score
(first such pair on ties). Writes tests/data/tokenizer/tok512_ids.txt.
Run: /usr/bin/python3 tests/ref/tok_llama2c_ref.py
"""
import os, struct, sys
from tok_common import SHARED, read_corpus, write_ids


def load(path):
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    pos, vocab, scores = 4, [], []
    while pos < len(data):
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        vocab.append(data[pos:pos + n])
        scores.append(score)
        pos += n
    return vocab, scores


def encode(vocab, scores, text: bytes):
    lookup = {}
    for i, v in enumerate(vocab):
        lookup.setdefault(v, i)
    tokens = []
    if len(text) > 0:
        tokens.append(lookup[b" "])
    buf = b""
    for i in range(len(text)):
        c = text[i]
        if (c & 0xC0) != 0x80:
            buf = b""
        buf += bytes([c])
        if i + 1 < len(text) and (text[i + 1] & 0xC0) == 0x80 and len(buf) < 4:
            continue
        if buf in lookup:
            tokens.append(lookup[buf])
        else:
            tokens.extend(b + 3 for b in buf)
        buf = b""
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            s = vocab[tokens[i]] + vocab[tokens[i + 1]]
            j = lookup.get(s, -1)
            if j != -1 and scores[j] > best_score:
                best_score, best_id, best_idx = scores[j], j, i
        if best_idx == -1:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    return tokens


if __name__ == "__main__":
    vocab, scores = load(os.path.join(SHARED, "models", "stories260K", "tok512.bin"))
    write_ids("tok512_ids.txt", [encode(vocab, scores, s) for s in read_corpus()])
    print("tok512_ids.txt written", file=sys.stderr)
