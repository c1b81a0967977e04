#!/usr/bin/python3
"""ref_model_torch.py: the PyTorch (CPU) side of bench_model: the same GPT-2-small-shaped model
(12 layers, width 768, 12 heads, vocab 50257, 1024 positions, tied head, random weights), the
same B x T, the same thread count, forward (all logits, no autograd) and forward + cross-entropy
over every position + backward (every parameter's gradient), in plain torch: nn.Linear,
nn.LayerNorm, GELU (tanh), causal attention written out (no transformers package, and torch 1.13
has no scaled_dot_product_attention). One warm-up, then --iters timed iterations; best and median
are printed, the best is used for GFLOP/s. Gradients are zeroed outside the timing, as in
bench_model. FLOPs are counted exactly as bench_model counts them (see bench/bench_model.c):

    P_mm = L * 12 * C^2 + V * C;  attn = L * 2 * C * B * T * (T + 1)
    fwd  = 2 * B*T * P_mm + attn;  fwd+bwd = 3 * fwd

Run with Debian's /usr/bin/python3 (torch 1.13 lives there):
    /usr/bin/python3 bench/ref_model_torch.py --peak GFLOPS [--iters N] [--threads N]
Prints `torch_key value` lines; "pytorch: not installed" (and exit 0) without torch.
"""
import argparse
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("pytorch: not installed")
    sys.exit(0)

L, C, H, V, P = 12, 768, 12, 50257, 1024


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x, mask):
        B, T, _ = x.shape
        D = C // H
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, H, D).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(P, C)
        self.h = nn.ModuleList([Block() for _ in range(L)])
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        self.register_buffer("mask", torch.ones(P, P, dtype=torch.bool).triu(1), persistent=False)
        for name, p in self.named_parameters():  # GPT-2's init, as bench_model writes it
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif "ln_" in name:
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, std=0.01 if name.startswith("wpe") else 0.02)

    def forward(self, ids):
        B, T = ids.shape
        x = self.wte(ids) + self.wpe(torch.arange(T))
        for blk in self.h:
            x = blk(x, self.mask)
        return self.ln_f(x) @ self.wte.weight.t()  # tied head: (B, T, V)


def mm_peak():
    """torch.mm GFLOP/s on bench_sgemm's shapes (information: the BLAS torch itself uses)"""
    best_g = 0.0
    for M, N, K in ((1024, 3072, 768), (2048, 2048, 2048)):
        a, b = torch.randn(M, K), torch.randn(N, K)
        torch.mm(a, b.t())
        best, spent, rep = 1e30, 0.0, 0
        while rep < 50 and (rep < 3 or spent < 0.25):
            t0 = time.perf_counter()
            torch.mm(a, b.t())
            dt = time.perf_counter() - t0
            spent += dt
            best = min(best, dt)
            rep += 1
        best_g = max(best_g, 2.0 * M * N * K / best * 1e-9)
    return best_g


def timed(fn, iters, name):
    t0 = time.perf_counter()
    fn()
    print(f"torch_{name}_warmup_s {time.perf_counter() - t0:.3f}", flush=True)
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peak", type=float, default=0.0, help="sgemm peak GFLOP/s to divide by")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--only", choices=("fwd", "bwd", "all"), default="all")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, T = a.batch, a.seq
    print(f"torch_version {torch.__version__}")
    print(f"torch_threads {torch.get_num_threads()}")
    model = GPT2()
    ids = torch.randint(0, V, (B, T))
    tgt = torch.cat([ids[:, 1:], torch.randint(0, V, (B, 1))], dim=1)
    N = B * T
    p_mm = L * 12 * C * C + V * C
    f_fwd = 2 * N * p_mm + L * 2 * C * B * T * (T + 1)
    peak_mm = mm_peak()
    print(f"torch_mm_peak_gflops {peak_mm:.1f}")
    peak = a.peak if a.peak > 0 else peak_mm
    print(f"torch_peak_gflops_used {peak:.1f}")

    def report(name, best, med, flops):
        print(f"torch_{name}_s_best {best:.3f}\ntorch_{name}_s_median {med:.3f}")
        print(f"torch_{name}_tok_s {N / best:.1f}\ntorch_{name}_tok_s_median {N / med:.1f}")
        print(f"torch_{name}_gflops {flops / best * 1e-9:.1f}")
        print(f"torch_{name}_share_of_peak {flops / best * 1e-9 / peak:.3f}", flush=True)

    if a.only != "bwd":
        def fwd():
            with torch.no_grad():
                model(ids)
        report("fwd", *timed(fwd, a.iters, "fwd"), f_fwd)
    if a.only != "fwd":
        def fwd_bwd():
            loss = F.cross_entropy(model(ids).view(-1, V), tgt.view(-1))
            loss.backward()
        ts = []
        for it in range(a.iters + 1):  # zero_grad outside the timing, as bench_model does
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.zero_()
            t0 = time.perf_counter()
            fwd_bwd()
            dt = time.perf_counter() - t0
            if it == 0:
                print(f"torch_fwd_bwd_warmup_s {dt:.3f}", flush=True)
            else:
                ts.append(dt)
        report("fwd_bwd", min(ts), statistics.median(ts), 3 * f_fwd)


if __name__ == "__main__":
    main()
