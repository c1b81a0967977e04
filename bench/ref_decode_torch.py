#!/usr/bin/python3
"""ref_decode_torch.py: the PyTorch (CPU) side of bench_decode: KV-cached greedy decoding on the
same random GPT-2-small model, read from the same model.safetensors (parsed here with numpy: no
safetensors or transformers package needed), in plain torch with a preallocated key/value cache
per layer. For each batch B (default 1 and 8): a prefill of a 16-token prompt per row (logits of
the last position only), then --decode steps of one token per row, greedy argmax per row; only
the steps are timed, after a 4-step warm-up, as bench_decode does. Weight bytes per step are
counted as bench_decode counts them (every matmul weight, f32, the tied 50257 x 768 head once);
the share divides by --bw (bench_decode's measured read bandwidth, GB/s) when given.

    /usr/bin/python3 bench/ref_decode_torch.py [--dir DIR] [--threads 2] [--decode 128]
                                               [--batches 1,8] [--bw GBS]
Prints `torch_key value` lines; "pytorch: not installed" (and exit 0) without torch.
"""
import argparse
import json
import math
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError:
    print("pytorch: not installed")
    sys.exit(0)


def load_safetensors(path):
    """{name: float32 tensor} of an F32 safetensors file (memory-mapped, then copied once)"""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + n
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise SystemExit(f"{path}: {name}: dtype {t['dtype']}, expected F32")
        b, e = t["data_offsets"]
        a = np.frombuffer(mm[base + b:base + e], dtype=np.float32).reshape(t["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out


class GPT2Cached:
    def __init__(self, w, cfg):
        self.L, self.C, self.H = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
        self.V, self.eps = cfg["vocab_size"], cfg["layer_norm_epsilon"]
        self.w = w
        g = lambda l, s: w[f"transformer.h.{l}.{s}"]  # noqa: E731
        # Conv1D (in, out) weights used as x @ W, as GPT-2 does
        self.layers = [dict(ln1=(g(l, "ln_1.weight"), g(l, "ln_1.bias")),
                            attn=(g(l, "attn.c_attn.weight"), g(l, "attn.c_attn.bias")),
                            proj=(g(l, "attn.c_proj.weight"), g(l, "attn.c_proj.bias")),
                            ln2=(g(l, "ln_2.weight"), g(l, "ln_2.bias")),
                            fc=(g(l, "mlp.c_fc.weight"), g(l, "mlp.c_fc.bias")),
                            mproj=(g(l, "mlp.c_proj.weight"), g(l, "mlp.c_proj.bias")))
                       for l in range(self.L)]
        self.wte, self.wpe = w["transformer.wte.weight"], w["transformer.wpe.weight"]
        self.lnf = (w["transformer.ln_f.weight"], w["transformer.ln_f.bias"])

    def new_cache(self, B, S):
        D = self.C // self.H
        return [(torch.zeros(B, self.H, S, D), torch.zeros(B, self.H, S, D))
                for _ in range(self.L)]

    def forward(self, ids, pos0, cache, last_only=True):
        B, T = ids.shape
        C, H = self.C, self.H
        D = C // H
        x = self.wte[ids] + self.wpe[pos0:pos0 + T]
        S = pos0 + T
        mask = None
        if T > 1:
            mask = torch.ones(T, S, dtype=torch.bool).triu(pos0 + 1)
        for ly, (kc, vc) in zip(self.layers, cache):
            h = F.layer_norm(x, (C,), *ly["ln1"], self.eps)
            qkv = torch.addmm(ly["attn"][1], h.view(B * T, C), ly["attn"][0]).view(B, T, 3 * C)
            q, k, v = qkv.split(C, dim=2)
            q = q.view(B, T, H, D).transpose(1, 2)
            kc[:, :, pos0:S] = k.view(B, T, H, D).transpose(1, 2)
            vc[:, :, pos0:S] = v.view(B, T, H, D).transpose(1, 2)
            att = (q @ kc[:, :, :S].transpose(-2, -1)) * (1.0 / math.sqrt(D))
            if mask is not None:
                att = att.masked_fill(mask, float("-inf"))
            y = (att.softmax(dim=-1) @ vc[:, :, :S]).transpose(1, 2).reshape(B * T, C)
            x = x + torch.addmm(ly["proj"][1], y, ly["proj"][0]).view(B, T, C)
            h = F.layer_norm(x, (C,), *ly["ln2"], self.eps).view(B * T, C)
            u = F.gelu(torch.addmm(ly["fc"][1], h, ly["fc"][0]), approximate="tanh")
            x = x + torch.addmm(ly["mproj"][1], u, ly["mproj"][0]).view(B, T, C)
        if last_only:
            x = x[:, -1]
        return F.layer_norm(x, (C,), *self.lnf, self.eps) @ self.wte.t()


def rng_prompts(B, P, V):
    """the prompts of bench_decode (its xorshift64*, same seed), so both decode the same ids"""
    s = 0x2545F4914F6CDD1D
    M = (1 << 64) - 1
    out = []
    for _ in range(B * P):
        s ^= s >> 12
        s ^= (s << 25) & M
        s ^= s >> 27
        out.append((((s * 0x2545F4914F6CDD1D) & M) >> 32) % V)
    return torch.tensor(out, dtype=torch.long).view(B, P)


def decode(model, B, P, steps):
    cache = model.new_cache(B, P + steps)
    ids = rng_prompts(B, P, model.V)
    with torch.no_grad():
        t0 = time.perf_counter()
        logits = model.forward(ids, 0, cache)
        pf = time.perf_counter() - t0
        first = []
        t0 = time.perf_counter()
        for s in range(steps):
            cur = logits.argmax(dim=-1)
            first.append(int(cur[0]))
            logits = model.forward(cur.view(B, 1), P + s, cache)
        dt = time.perf_counter() - t0
    return dt, pf, first[:8]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="build/bench/gpt2-small-random")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--bw", type=float, default=0.0, help="read bandwidth GB/s to divide by")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch_version {torch.__version__}\ntorch_threads {torch.get_num_threads()}")
    with open(f"{a.dir}/config.json") as f:
        cfg = json.load(f)
    model = GPT2Cached(load_safetensors(f"{a.dir}/model.safetensors"), cfg)
    L, C, V = model.L, model.C, model.V
    w_bytes = 4.0 * (L * 12 * C * C + V * C)
    print(f"torch_weight_bytes_per_step_mb {w_bytes / 1e6:.1f}", flush=True)
    for B in (int(x) for x in a.batches.split(",")):
        decode(model, B, a.prompt, 4)  # warm-up
        dt, pf, first = decode(model, B, a.prompt, a.decode)
        print(f"torch_decode_b{B}_prefill_s {pf:.3f}\ntorch_decode_b{B}_s {dt:.3f}")
        print(f"torch_decode_b{B}_steps_s {a.decode / dt:.2f}")
        print(f"torch_decode_b{B}_tok_s {B * a.decode / dt:.1f}")
        print(f"torch_decode_b{B}_ids {','.join(map(str, first))}")
        gbs = w_bytes * a.decode / dt * 1e-9
        print(f"torch_decode_b{B}_weight_gbs {gbs:.2f}")
        if a.bw > 0:
            print(f"torch_decode_b{B}_bw_share {gbs / a.bw:.3f}", flush=True)


if __name__ == "__main__":
    main()
