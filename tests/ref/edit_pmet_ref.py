"""PyTorch reference of PMET (tests/test_edit_pmet_ref.c) on the tiny LLaMA and GPT-2 fixtures,
written from EasyEdit's models/pmet/ (compute_zs.py compute_zs, compute_ks.py compute_ks,
pmet_main.py execute_pmet; easyedit-reference.md §2.7) on fixed token ids and templates.
Run with Debian's interpreter: /usr/bin/python3 tests/ref/edit_pmet_ref.py

1. compute_zs for two requests at layer ZL = 0 (of 2; at the last layer a delta at the lookup token
   reaches only the KL row): delta_mlp added to the MLP's
   output (EasyEdit mlp_module_tmp = down_proj) and delta_attn to the attention's output
   (attn_module_tmp = o_proj / c_proj) at every row's lookup token, one Adam over both; loss =
   nll_loss_factor NLL + kl_factor KL + v_weight_decay (|d_mlp|/|init_mlp|^2 + |d_attn|/|init_attn|^2);
   EasyEdit's rule "max_prob == prob" (every target token the argmax): NLL weight 0.1 x from the
   next step on, stop when kl_factor KL <= 0.01; each delta clamped to clamp |its init|.
2. execute_pmet's update for layers [0, 1] (zL = 1) given z (C, n) = the bare prompts' MLP
   output at zL plus a seeded random change (as stored, float32) and statistics C_l (float32 sums / count of mlp_key over id documents, written as EasyEdit's
   np.savez files under tests/data/edit/pmet_stats/ in its stats_dir layout): per layer i
   K = mlp_key at the lookup token averaged as compute_ks groups the templates ([ctx0], [ctx1..]),
   cur = down_proj output at zL at the bare prompt on the model edited so far,
   dW = ((z - cur) / sqrt(len(layers) - i)) K^T (K K^T + lambda C)^-1,  W_l = W_l0 + dW.
Float64 throughout (from the float32 weights); deterministic.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_ref import st_read, st_write  # noqa: E402
import edit_ref  # noqa: E402
from edit_ref import pad, DT  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

# two requests (ids of the tiny models' vocabulary of 96, BOS 1): templates (ids, lookup), the
# KL row "{subject} is a" and the target. ctx[0] is the bare prompt.
PA = [1, 10, 20, 30, 40, 50]
PB = [1, 11, 25, 35, 45]
REQS = [
    dict(ctx=[(PA, 3), ([1, 5, 6, 7] + PA[1:], 6), ([1, 8, 9] + PA[1:], 5)],
         kl=([1, 20, 30, 60, 61], 2), target=[70, 71, 72]),
    dict(ctx=[(PB, 3), ([1, 5, 6, 7] + PB[1:], 6), ([1, 8, 9] + PB[1:], 5)],
         kl=([1, 25, 35, 60, 61], 2), target=None),
]
# request 1's one-token target is the model's argmax after two of its three templates (tiny random
# models never make a target the argmax otherwise), so that PMET's rule comes into play
TARGET1 = {"llama": [65], "gpt2": [59]}
LAYERS = [0, 1]
ZL = 0
HP = dict(v_num_grad_steps=25, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=4.0,
          kl_factor=0.0625, nll_loss_factor=1.0, lam=7.5)


def compute_zs(P, cfg, req, layer):
    """EasyEdit pmet/compute_zs.py on token ids"""
    target = req["target"]
    target_ids = torch.tensor(target)
    rewriting = [s + target[:-1] for s, _ in req["ctx"]]
    all_seqs = rewriting + [req["kl"][0]]
    ids, lens = pad(all_seqs)
    rewriting_targets = torch.full((len(rewriting), ids.shape[1]), -100)
    for i in range(len(rewriting)):
        ex_len = lens[i]
        rewriting_targets[i, ex_len - len(target):ex_len] = target_ids
    lookup_idxs = [lk for _, lk in req["ctx"]] + [req["kl"][1]]
    C = cfg.get("hidden_size", cfg.get("n_embd"))
    delta_attn = torch.zeros(C, dtype=DT, requires_grad=True)
    delta_mlp = torch.zeros(C, dtype=DT, requires_grad=True)
    st = {"init_attn": None, "init_mlp": None, "kl_init": None}

    def edit_output_fn(l, nm, cur_out):
        if l == layer and nm in ("mlp_out", "attn_out"):
            key = "init_mlp" if nm == "mlp_out" else "init_attn"
            delta = delta_mlp if nm == "mlp_out" else delta_attn
            if st[key] is None:
                st[key] = cur_out[0, lookup_idxs[0]].detach().clone()
            cur_out = cur_out.clone()
            for i, idx in enumerate(lookup_idxs):
                cur_out[i, idx, :] += delta
        return cur_out

    opt = torch.optim.Adam([delta_mlp, delta_attn], lr=HP["v_lr"])
    nll_loss_factor = HP["nll_loss_factor"]
    losses, rule = [], []
    for it in range(HP["v_num_grad_steps"]):
        opt.zero_grad()
        logits = edit_ref.model(P, cfg, ids, lens, edit_output_fn)
        kl_logits = torch.stack([logits[len(all_seqs) - 1, req["kl"][1], :]], 0)
        kl_log_probs = F.log_softmax(kl_logits, dim=1)
        if st["kl_init"] is None:
            st["kl_init"] = kl_log_probs.detach().clone()
        log_probs = torch.log_softmax(logits[:len(rewriting)], dim=2)
        loss = torch.gather(log_probs, 2,
                            torch.where(rewriting_targets != -100, rewriting_targets, 0).unsqueeze(2)).squeeze(2)
        mask = (rewriting_targets != -100).to(DT)
        max_probs = torch.max(log_probs, dim=2)[0]
        max_prob = torch.exp((max_probs * mask).sum(1) / target_ids.size(0)).mean().item()
        nll_loss_each = -(loss * mask).sum(1) / target_ids.size(0)
        nll_loss = nll_loss_factor * nll_loss_each.mean()
        kl_loss = HP["kl_factor"] * F.kl_div(st["kl_init"], kl_log_probs, log_target=True,
                                             reduction="batchmean")
        mlp_wd = torch.norm(delta_mlp) / torch.norm(st["init_mlp"]) ** 2
        attn_wd = torch.norm(delta_attn) / torch.norm(st["init_attn"]) ** 2
        weight_decay = HP["v_weight_decay"] * (mlp_wd + attn_wd)
        loss = nll_loss + kl_loss + weight_decay
        prob = torch.exp(-nll_loss_each).mean().item()
        losses.append(loss.item())
        if loss < 5e-2:
            break
        if max_prob == prob:
            rule.append(it)
            nll_loss_factor = 0.1 * HP["nll_loss_factor"]
            if kl_loss <= 0.01:
                break
        else:
            nll_loss_factor = HP["nll_loss_factor"]
        if it == HP["v_num_grad_steps"] - 1:
            break
        loss.backward()
        opt.step()
        max_norm = HP["clamp_norm_factor"] * st["init_mlp"].norm()
        if delta_mlp.norm() > max_norm:
            with torch.no_grad():
                delta_mlp[...] = delta_mlp * max_norm / delta_mlp.norm()
        max_norm = HP["clamp_norm_factor"] * st["init_attn"].norm()
        if delta_attn.norm() > max_norm:
            with torch.no_grad():
                delta_attn[...] = delta_attn * max_norm / delta_attn.norm()
    return dict(init_mlp=st["init_mlp"], init_attn=st["init_attn"], delta_mlp=delta_mlp.detach(),
                delta_attn=delta_attn.detach(), losses=torch.tensor(losses, dtype=DT)), rule


def mlp_key_docs(P, cfg, F_):
    """C_l sums (float64) of mlp_key over a few id documents, one document per forward"""
    rng = np.random.RandomState(11)
    lens = [9, 1, 17, 40, 5, 30, 2, 25] + [64] * 8  # 641 tokens: C well conditioned for d_ff 128
    docs = [[1] + list(rng.randint(2, 96, size=n - 1)) for n in lens]
    sums = {l: torch.zeros(F_, F_, dtype=DT) for l in LAYERS}
    count = 0
    for doc in docs:
        keys = {}

        def hook(l, name, x):
            if name == "mlp_key":
                keys[l] = x[0].clone()
            return x
        edit_ref.model(P, cfg, torch.tensor([doc]), [len(doc)], hook)
        for l in LAYERS:
            sums[l] += keys[l].T @ keys[l]
        count += len(doc)
    return sums, count, len(docs)


def keys_at(P, cfg, req, layer):
    """compute_ks: mean over each template group, then over the groups"""
    seqs, lks = [s for s, _ in req["ctx"]], [lk for _, lk in req["ctx"]]
    k = edit_ref.capture(P, cfg, seqs, lks, layer, "mlp_key")
    return torch.stack([k[0:1].mean(0), k[1:].mean(0)], 0).mean(0)


def execute_pmet(P, cfg, z, C):
    """pmet_main.py execute_pmet with rewrite_module_tmps = [down projection]; z (C, n)"""
    zL = LAYERS[-1]
    P = dict(P)
    w0 = {}
    out = {}
    for i, l in enumerate(LAYERS):
        name, conv1d = edit_ref.down_name(l)
        w0.setdefault(name, P[name].clone())
        K = torch.stack([keys_at(P, cfg, r, l) for r in REQS], 1)           # (F, n)
        cur = torch.stack([edit_ref.capture(P, cfg, [r["ctx"][0][0]], [r["ctx"][0][1]], zL,
                                            "mlp_out")[0] for r in REQS], 1)  # (C, n)
        targets = z - cur
        upd = (targets / np.sqrt(len(LAYERS) - i)) @ K.T @ torch.inverse(K @ K.T + HP["lam"] * C[l])
        out[l] = upd                                                          # (out, in)
        P[name] = w0[name] + (upd.T if conv1d else upd)
    return out, P


def run(fam):
    edit_ref.FAMILY["family"] = fam
    REQS[1]["target"] = TARGET1[fam]
    d = os.path.join(ROOT, "tests", "data", "tiny-" + fam)
    W, _ = st_read(os.path.join(d, "model.safetensors"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    P = {k: torch.tensor(v.astype(np.float64)) for k, v in W.items()}
    out = {}
    for j, r in enumerate(REQS):
        res, rule = compute_zs(P, cfg, r, ZL)
        for k, v in res.items():
            out["%s.z%d.%s" % (fam, j, k)] = v.numpy().astype(np.float32)
        print(fam, "request", j, "losses", [round(x, 5) for x in res["losses"].tolist()],
              "argmax rule at steps", rule)
    # z for the update: the MLP output of zL at the bare prompts moved by a seeded random vector
    zL = LAYERS[-1]
    cur0 = torch.stack([edit_ref.capture(P, cfg, [r["ctx"][0][0]], [r["ctx"][0][1]], zL,
                                         "mlp_out")[0] for r in REQS], 1)
    g = torch.Generator().manual_seed(5)
    z = cur0 + torch.randn(cur0.shape, generator=g, dtype=DT) * cur0.norm(dim=0) / math.sqrt(cur0.shape[0])
    out[fam + ".z"] = z.numpy().astype(np.float32)
    z = torch.tensor(out[fam + ".z"].astype(np.float64))
    F_ = cfg.get("intermediate_size", 4 * cfg.get("n_embd", 0))
    sums, count, ndocs = mlp_key_docs(P, cfg, F_)
    C = {}
    sd = os.path.join(ROOT, "tests", "data", "edit", "pmet_stats", "tiny-" + fam, "wikipedia_stats")
    os.makedirs(sd, exist_ok=True)
    for l in LAYERS:
        name, _ = edit_ref.down_name(l)
        mod = ("transformer." + name if fam == "gpt2" else name)[:-len(".weight")]
        s32 = sums[l].numpy().astype(np.float32)
        with open(os.path.join(sd, "%s_float32_mom2_100000.npz" % mod), "wb") as f:
            np.savez(f, **{"mom2.constructor": np.array("util.runningstats.SecondMoment()"),
                           "mom2.count": np.array(count), "mom2.mom2": s32,
                           "sample_size": np.array(ndocs)})
        C[l] = torch.tensor(s32.astype(np.float64)) / count
    dW, P2 = execute_pmet(P, cfg, z, C)
    out[fam + ".r1.target"] = np.array(TARGET1[fam], np.int64)
    for l in LAYERS:
        out["%s.dW%d" % (fam, l)] = dW[l].numpy().astype(np.float32)
        print(fam, "layer", l, "|dW| %.5f" % dW[l].norm().item())
    return out


def main():
    out = {}
    for fam in ("llama", "gpt2"):
        out.update(run(fam))
    for j, r in enumerate(REQS):
        T = max(len(s) for s, _ in r["ctx"])
        out["r%d.ctx.ids" % j] = np.array([s + [0] * (T - len(s)) for s, _ in r["ctx"]], np.int64)
        out["r%d.ctx.len" % j] = np.array([len(s) for s, _ in r["ctx"]], np.int64)
        out["r%d.ctx.lookup" % j] = np.array([lk for _, lk in r["ctx"]], np.int64)
        out["r%d.kl.ids" % j] = np.array(r["kl"][0], np.int64)
        out["r%d.kl.lookup" % j] = np.array([r["kl"][1]], np.int64)
        if j == 0:
            out["r%d.target" % j] = np.array(r["target"], np.int64)
    meta = {"generator": "tests/ref/edit_pmet_ref.py", "precision": "float64, stored float32",
            "hp": json.dumps(dict(HP, layers=LAYERS, z_layer=ZL))}
    path = os.path.join(ROOT, "tests", "data", "edit", "pmet_ref.safetensors")
    st_write(path, out, meta)
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
