"""Write tiny random model fixtures and their PyTorch reference outputs.

    /usr/bin/python3 tests/ref/make_model_fixtures.py

Writes, for each of tiny-llama, tiny-llama-tied, tiny-gpt2 under tests/data/<model>/:
  config.json, model.safetensors (HF tensor names), expected.safetensors (see tests/ref/README.md).
Everything is computed in float64 from the stored float32 weights and stored as float32.
Before writing it cross-checks the torch code against an independent numpy per-token
implementation, finite differences and torch.autograd.gradcheck, and fails loudly if they disagree.
Deterministic: fixed seeds, so rerunning reproduces the same bytes.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref as mr  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data")

T = 9
LENGTHS = [9, 6]
HOOK_MLP_AT = (0, 4)    # (row, pos) for hook.mlp_key.1
HOOK_RESID_AT = (1, 2)  # (row, pos) for hook.resid_out.0
# scored positions (targets = next token); none in the padding (row 1: t + 1 < 6)
SCORED = {0: [1, 3, 4, 5, 7], 1: [0, 2, 3, 4]}
N_GREEDY_PROMPT, N_GREEDY_NEW = 5, 12
KL_AT = HOOK_MLP_AT     # (row, pos) where kl is measured

FAILS = []


def check(what, ok, detail=""):
    print("  [%s] %s %s" % ("ok" if ok else "FAIL", what, detail))
    if not ok:
        FAILS.append(what)


def make_inputs(V, seed):
    g = np.random.default_rng(seed)
    ids = g.integers(1, V, size=(2, T)).astype(np.int64)
    ids[1, LENGTHS[1]:] = 0
    tg = np.full((2, T), -100, dtype=np.int64)
    for b, ps in SCORED.items():
        for t in ps:
            assert t + 1 < LENGTHS[b]
            tg[b, t] = ids[b, t + 1]
    return ids, tg


def build(name, family, cfg, W, seed, fwd=None, npf=None, generator="tests/ref/make_model_fixtures.py"):
    """fwd(P, cfg, ids, lengths, hooks) and npf(W, cfg, ids, hooks) default to model_ref's LLaMA
    and GPT-2 (make_family_fixtures.py passes the other families')."""
    print("== %s" % name)
    if fwd is None:
        fwd = lambda P_, c_, i_, l_, h_=None: mr.forward(family, P_, c_, i_, l_, h_)
    if npf is None:
        npf = mr.np_llama_tokens if family == "llama" else mr.np_gpt2_tokens
    out_dir = os.path.join(DATA, name)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    mr.st_write(os.path.join(out_dir, "model.safetensors"), W, {"format": "pt"})
    W2, _ = mr.st_read(os.path.join(out_dir, "model.safetensors"))
    check("safetensors round trip", sorted(W2) == sorted(W) and all(np.array_equal(W[k], W2[k]) for k in W))

    V = cfg["vocab_size"]
    d = cfg.get("hidden_size", cfg.get("n_embd"))
    ff = cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * d
    ids_np, tg_np = make_inputs(V, seed + 1)
    g = np.random.default_rng(seed + 2)
    hk_mlp = (g.standard_normal(ff) * 0.1).astype(np.float32)
    hk_res = (g.standard_normal(d) * 0.1).astype(np.float32)

    ids = torch.from_numpy(ids_np)
    tg = torch.from_numpy(tg_np)
    names = sorted(W)

    def params():
        return {k: torch.tensor(W[k], dtype=torch.float64, requires_grad=True) for k in names}

    def hookset(vm, vr):
        return {"mlp_key.1": (vm, HOOK_MLP_AT[0], HOOK_MLP_AT[1]),
                "resid_out.0": (vr, HOOK_RESID_AT[0], HOOK_RESID_AT[1])}

    # ---- main forward + backward (float64)
    P = params()
    vm = torch.tensor(hk_mlp, dtype=torch.float64, requires_grad=True)
    vr = torch.tensor(hk_res, dtype=torch.float64, requires_grad=True)
    logits = fwd(P, cfg, ids, LENGTHS, hookset(vm, vr))
    loss = F.cross_entropy(logits.reshape(-1, V), tg.reshape(-1), ignore_index=-100)
    loss.backward()
    print("  loss %.6f" % loss.item())

    with torch.no_grad():
        P0 = {k: v.detach() for k, v in P.items()}
        logits_nohook = fwd(P0, cfg, ids, LENGTHS)
        row1 = ids[1:, :LENGTHS[1]]
        logits_row1 = fwd(P0, cfg, row1, [LENGTHS[1]])

    # ---- KL(p || q) at KL_AT, p = no-hook (constant), q = hooked.  KL_AT is the mlp_key.1 hook's
    # own position: layer 1 is the last layer, so that hook changes no later position and a KL at
    # row 0's last position would be identically 0 (and so would its gradient).
    r0, t0 = KL_AT
    p = torch.softmax(logits_nohook[r0, t0], -1).detach()
    vm2 = torch.tensor(hk_mlp, dtype=torch.float64, requires_grad=True)
    vr2 = torch.tensor(hk_res, dtype=torch.float64)
    lq = torch.log_softmax(fwd(P0, cfg, ids, LENGTHS, hookset(vm2, vr2))[r0, t0], -1)
    kl = (p * (torch.log(p) - lq)).sum()
    kl.backward()
    print("  kl %.3e" % kl.item())

    # ---- greedy
    prompt = ids_np[0, :N_GREEDY_PROMPT]
    gout, margin = mr.greedy(family, P0, cfg, prompt, N_GREEDY_NEW, fwd)
    P32 = {k: torch.tensor(W[k]) for k in names}
    gout32, _ = mr.greedy(family, P32, cfg, prompt, N_GREEDY_NEW, fwd)
    check("greedy float32 == float64", gout32 == gout, "min top1-top2 margin %.4f, out %s" % (margin, gout))
    check("greedy margin >= 1e-3", margin >= 1e-3)

    # ================= sanity checks
    ref0 = npf(W, cfg, ids_np[0, :LENGTHS[0]], {"mlp_key.1": (hk_mlp.astype(np.float64), HOOK_MLP_AT[1])})
    ref1 = npf(W, cfg, ids_np[1, :LENGTHS[1]], {"resid_out.0": (hk_res.astype(np.float64), HOOK_RESID_AT[1])})
    lg = logits.detach().numpy()
    e = max(np.abs(ref0 - lg[0, :LENGTHS[0]]).max(), np.abs(ref1 - lg[1, :LENGTHS[1]]).max())
    check("numpy per-token vs torch (hooked logits, valid positions)", e < 1e-10, "max abs %.2e" % e)
    ref0n = npf(W, cfg, ids_np[0, :LENGTHS[0]])
    e = np.abs(ref0n - logits_nohook.numpy()[0]).max()
    check("numpy per-token vs torch (no-hook logits row 0)", e < 1e-10, "max abs %.2e" % e)
    e = np.abs(logits_row1.numpy()[0] - logits_nohook.numpy()[1, :LENGTHS[1]]).max()
    check("padding invariance (row 1 alone vs padded)", e < 1e-12, "max abs %.2e" % e)
    # float32 torch forward vs float64: how much float32 rounding moves things (for C tolerances)
    with torch.no_grad():
        lg32 = fwd(P32, cfg, ids, LENGTHS, hookset(torch.tensor(hk_mlp), torch.tensor(hk_res)))
    e = np.abs(lg32.double().numpy() - lg)[0].max()
    print("  info: float32 torch vs float64 logits max abs diff %.2e (logit scale %.2f)" % (e, np.abs(lg).max()))

    # hooks actually matter where they should, and nowhere before
    dl = np.abs(lg - logits_nohook.numpy())
    check("hooks change only later positions", dl[0, :HOOK_MLP_AT[1]].max() == 0 and dl[1, :HOOK_RESID_AT[1]].max() == 0
          and dl[0, HOOK_MLP_AT[1]:].max() > 1e-4 and dl[1, HOOK_RESID_AT[1]:LENGTHS[1]].max() > 1e-4)

    # finite differences on a few entries of every parameter tensor and every hook entry
    def loss_at(Pd, hm, hr):
        with torch.no_grad():
            lo = fwd(Pd, cfg, ids, LENGTHS, hookset(hm, hr))
            return F.cross_entropy(lo.reshape(-1, V), tg.reshape(-1), ignore_index=-100).item()

    gfd = np.random.default_rng(seed + 3)
    h = 1e-6
    worst = 0.0
    hm0 = torch.tensor(hk_mlp, dtype=torch.float64)
    hr0 = torch.tensor(hk_res, dtype=torch.float64)
    for k in names:
        flat = P0[k].reshape(-1)
        gr = P[k].grad.reshape(-1)
        idxs = gfd.choice(flat.numel(), size=min(4, flat.numel()), replace=False)
        for i in idxs:
            old = flat[i].item()
            flat[i] = old + h
            lp = loss_at(P0, hm0, hr0)
            flat[i] = old - h
            lm = loss_at(P0, hm0, hr0)
            flat[i] = old
            fd = (lp - lm) / (2 * h)
            err = abs(fd - gr[i].item()) / max(1e-4, abs(fd))
            worst = max(worst, err)
    check("finite differences, 4 entries of every parameter", worst < 1e-5, "worst rel err %.2e" % worst)
    # every parameter gradient is non-trivial
    nz = min(float(P[k].grad.abs().max()) for k in names)
    check("every parameter gradient non-zero", nz > 1e-6, "smallest max|grad| %.2e" % nz)

    # gradcheck: loss as a function of both hook vectors + a few whole weight tensors
    sel = [n for n in names if n.endswith(("k_proj.weight", "input_layernorm.weight", "c_attn.bias",
                                           "ln_1.weight", "model.norm.weight", "ln_f.bias",
                                           "query_key_value.weight", "q_proj.bias"))][:4]

    def fn(hm, hr, *ws):
        Pd = dict(P0)
        Pd.update(dict(zip(sel, ws)))
        lo = fwd(Pd, cfg, ids, LENGTHS, hookset(hm, hr))
        return F.cross_entropy(lo.reshape(-1, V), tg.reshape(-1), ignore_index=-100)

    ins = [hm0.clone().requires_grad_(), hr0.clone().requires_grad_()] + \
          [P0[n].clone().requires_grad_() for n in sel]
    ok = torch.autograd.gradcheck(fn, ins, eps=1e-6, atol=1e-7, rtol=1e-5)
    check("torch.autograd.gradcheck (hooks + %s)" % ", ".join(sel), ok)

    def fkl(hm):
        lo = fwd(P0, cfg, ids, LENGTHS, hookset(hm, hr0))[r0, t0]
        return (p * (torch.log(p) - torch.log_softmax(lo, -1))).sum()

    check("KL and its gradient non-trivial", kl.item() > 1e-6 and float(vm2.grad.abs().max()) > 1e-6)
    ok = torch.autograd.gradcheck(fkl, [hm0.clone().requires_grad_()], eps=1e-6, atol=1e-8, rtol=1e-5)
    check("gradcheck KL wrt hook.mlp_key.1", ok)

    # ================= write expected.safetensors
    f32 = lambda t: np.asarray(t.detach().numpy() if torch.is_tensor(t) else t, dtype=np.float32)
    E = {
        "input_ids": ids_np, "lengths": np.array(LENGTHS, dtype=np.int64), "targets": tg_np,
        "hook.mlp_key.1": hk_mlp, "hook.mlp_key.1.at": np.array(HOOK_MLP_AT, dtype=np.int64),
        "hook.resid_out.0": hk_res, "hook.resid_out.0.at": np.array(HOOK_RESID_AT, dtype=np.int64),
        "logits": f32(logits), "loss": f32(loss.reshape(1)),
        "grad.hook.mlp_key.1": f32(vm.grad), "grad.hook.resid_out.0": f32(vr.grad),
        "logits_nohook": f32(logits_nohook), "logits_row1_alone": f32(logits_row1),
        "kl": f32(kl.reshape(1)), "kl.at": np.array(KL_AT, dtype=np.int64), "grad_kl.hook.mlp_key.1": f32(vm2.grad),
        "greedy_prompt": np.array(prompt, dtype=np.int64), "greedy_out": np.array(gout, dtype=np.int64),
    }
    for k in names:
        E["grad." + k] = f32(P[k].grad)
        assert E["grad." + k].shape == W[k].shape
    mr.st_write(os.path.join(out_dir, "expected.safetensors"), E,
                {"generator": generator,
                 "precision": "computed in float64 from the float32 weights, stored float32",
                 "family": family})
    print("  wrote %s (%d tensors)" % (out_dir, len(E)))


def main():
    torch.set_default_dtype(torch.float64)
    build("tiny-llama", "llama", mr.llama_config(False), mr.llama_random_weights(mr.llama_config(False), 1000), 1000)
    build("tiny-llama-tied", "llama", mr.llama_config(True), mr.llama_random_weights(mr.llama_config(True), 2000), 2000)
    build("tiny-gpt2", "gpt2", mr.gpt2_config(), mr.gpt2_random_weights(mr.gpt2_config(), 3000), 3000)
    if FAILS:
        print("FAILED CHECKS:", FAILS)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
