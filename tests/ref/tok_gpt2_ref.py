#!/usr/bin/python3
"""Reference ids for GPT-2: the ORIGINAL encoder algorithm of OpenAI's gpt-2/src/encoder.py
(bytes_to_unicode, the split pattern, bpe() with merge ranks), rewritten here over Debian's
python3-regex, on /work/shared/tokenizers/gpt2 (vocab.json = encoder.json, merges.txt = vocab.bpe).
Writes tests/data/tokenizer/gpt2_ids.txt. Run: /usr/bin/python3 tests/ref/tok_gpt2_ref.py
"""
import json, os, sys
import regex as re
from tok_common import SHARED, read_corpus, write_ids


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    pairs = set()
    prev = word[0]
    for ch in word[1:]:
        pairs.add((prev, ch))
        prev = ch
    return pairs


class Encoder:
    def __init__(self, encoder, bpe_merges):
        self.encoder = encoder
        self.byte_encoder = bytes_to_unicode()
        self.bpe_ranks = dict(zip(bpe_merges, range(len(bpe_merges))))
        self.cache = {}
        self.pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    def encode(self, text):
        bpe_tokens = []
        for token in re.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            bpe_tokens.extend(self.encoder[bpe_token] for bpe_token in self.bpe(token).split(" "))
        return bpe_tokens


def load(d=os.path.join(SHARED, "tokenizers", "gpt2")):
    encoder = json.load(open(os.path.join(d, "vocab.json"), encoding="utf-8"))
    bpe_data = open(os.path.join(d, "merges.txt"), encoding="utf-8").read()
    bpe_merges = [tuple(m.split()) for m in bpe_data.split("\n")[1:-1]]
    return Encoder(encoder, bpe_merges)


if __name__ == "__main__":
    enc = load()
    write_ids("gpt2_ids.txt", [enc.encode(s.decode("utf-8")) for s in read_corpus()])
    print("gpt2_ids.txt written", file=sys.stderr)
