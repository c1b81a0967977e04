"""Greedy reference for the real TinyStories-656K model.

    (cd tests/ref && npm install)       # once: @lenml/tokenizers into tests/ref/node_modules
    /usr/bin/python3 tests/ref/make_tinystories_fixture.py [model dir]

Default model dir: /work/shared/models/TinyStories-656K (or models/TinyStories-656K if present).
Writes tests/data/tinystories-656k-greedy.json:
  [{"prompt", "prompt_ids" (with BOS, as HF encodes), "greedy_ids" (40 new tokens, argmax, no
    EOS stop), "greedy_text" (greedy_ids decoded), "full_text" (prompt_ids + greedy_ids decoded)}]
The model runs in float64 in model_ref.llama_forward, recomputed from scratch every step; the script
checks that float32 gives the same tokens, that the independent numpy per-token implementation
agrees (logits and every argmax), that every argmax wins by a margin, and that a small
independent Python BPE over tokenizer.json gives the same prompt ids as the JS tokenizer.
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model_ref as mr  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "tinystories-656k-greedy.json")
PROMPTS = ["Once upon a time, there was a little girl named",
           "The cat sat on the",
           "One day, Tom went to the park and"]
N_NEW = 40


def model_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    for d in (os.path.join(ROOT, "models", "TinyStories-656K"), "/work/shared/models/TinyStories-656K"):
        if os.path.exists(os.path.join(d, "model.safetensors")):
            return d
    sys.exit("TinyStories-656K not found; pass its directory")


def js(mdir, req):
    r = subprocess.run(["node", os.path.join(HERE, "tokenize.mjs"), mdir], input=json.dumps(req),
                       capture_output=True, text=True, check=True, cwd=HERE)
    return json.loads(r.stdout)


def py_bpe_encode(tj, text):
    """Minimal BPE for this tokenizer.json: normalizer Prepend('▁') + Replace(' ', '▁'), no
    pre-tokenizer, BPE with byte fallback, post-processor = BOS + sequence."""
    m = tj["model"]
    vocab = m["vocab"]
    ranks = {}
    for i, mg in enumerate(m["merges"]):
        a, b = mg.split(" ") if isinstance(mg, str) else mg
        ranks[(a, b)] = i
    s = "▁" + text.replace(" ", "▁")
    syms = []
    for ch in s:
        if ch in vocab:
            syms.append(ch)
        else:
            syms.extend("<0x%02X>" % b for b in ch.encode("utf-8"))
    while True:
        best = None
        for i in range(len(syms) - 1):
            r = ranks.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        syms[i:i + 2] = [syms[i] + syms[i + 1]]
    assert tj["post_processor"]["single"][0]["SpecialToken"]["id"] == "<|start_story|>"
    return [1] + [vocab[t] for t in syms]


def main():
    torch.set_default_dtype(torch.float64)
    mdir = model_dir()
    cfg = json.load(open(os.path.join(mdir, "config.json")))
    W, meta = mr.st_read(os.path.join(mdir, "model.safetensors"))
    print("metadata:", meta)
    assert "model.embed_tokens.weight" in W, "embedding alias not resolved"
    assert W["model.embed_tokens.weight"] is W["lm_head.weight"]
    tj = json.load(open(os.path.join(mdir, "tokenizer.json")))

    enc = js(mdir, {"encode": PROMPTS})["encode"]
    for p, ids in zip(PROMPTS, enc):
        py = py_bpe_encode(tj, p)
        assert py == ids, (p, ids, py)
        assert ids[0] == cfg["bos_token_id"]

    P64 = {k: torch.tensor(v, dtype=torch.float64) for k, v in W.items()}
    P32 = {k: torch.tensor(v, dtype=torch.float32) for k, v in W.items()}
    recs = []
    for p, ids in zip(PROMPTS, enc):
        g64, margin = mr.greedy("llama", P64, cfg, ids, N_NEW)
        g32, _ = mr.greedy("llama", P32, cfg, ids, N_NEW)
        assert g32 == g64, (p, g32, g64)
        assert margin > 1e-3, (p, margin)
        if cfg["eos_token_id"] in g64:
            print("  note: EOS generated at", g64.index(cfg["eos_token_id"]))
        # independent numpy per-token implementation: same greedy choice at every step
        ref = mr.np_llama_tokens(W, cfg, ids + g64[:-1])
        assert list(np.argmax(ref[len(ids) - 1:], axis=-1)) == g64, p
        with torch.no_grad():
            lt = mr.llama_forward(P64, cfg, torch.tensor([ids + g64[:-1]]), [len(ids) + N_NEW - 1])[0].numpy()
        print("  numpy per-token vs torch logits: max abs %.2e" % np.abs(ref - lt).max())
        recs.append({"prompt": p, "prompt_ids": ids, "greedy_ids": g64, "min_margin": margin})
    dec = js(mdir, {"decode": [r["greedy_ids"] for r in recs] + [r["prompt_ids"] + r["greedy_ids"] for r in recs]})["decode"]
    out = []
    for i, r in enumerate(recs):
        print("%r -> %r   (min top1-top2 logit margin %.4f)" % (r["prompt"], dec[i], r["min_margin"]))
        out.append({"prompt": r["prompt"], "prompt_ids": r["prompt_ids"], "greedy_ids": r["greedy_ids"],
                    "greedy_text": dec[i], "full_text": dec[len(recs) + i]})
    with open(OUT, "w") as f:
        f.write("[\n" + ",\n".join("  " + json.dumps(o, ensure_ascii=False) for o in out) + "\n]\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
