"""PyTorch reference of ROME, R-ROME, FT-M and FT-L on the tiny LLaMA and GPT-2 fixtures (tests/data/tiny-llama,
tests/data/tiny-gpt2: Conv1D layout, biases, LayerNorm, learned positions), written
from EasyEdit's rome/compute_u.py, rome/compute_v.py, rome_main.py and ft/ft_main.py (target_new
branch), on fixed token ids (no tokenizer) and fixed context templates. Writes
tests/data/edit/edit_ref.safetensors, read by tests/test_edit_ref.c.

Run with Debian's interpreter: /usr/bin/python3 tests/ref/edit_ref.py

Computed in float64 from the float32 weights (ked computes in float32; the C test states its
tolerances). Deterministic: no randomness at all.
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

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DT = torch.float64

# ---------------------------------------------------------------------------- the case
# Sequences are token ids of tiny-llama (vocab 96) with BOS 1. ctx[0] is the bare prompt
# (template "{}"); ctx[1], ctx[2] have a 3- and a 2-token prefix before it. The "subject" is
# ids [20, 30]; its last token is at `lookup`.
PROMPT = [1, 10, 20, 30, 40, 50]
CTX = [
    (PROMPT, 3),
    ([1, 5, 6, 7] + PROMPT[1:], 6),
    ([1, 8, 9] + PROMPT[1:], 5),
]
KL = ([1, 20, 30, 60, 61], 2)          # "{subject} is a"
TARGET = [70, 71, 72]
LAYER = 0                              # ROME layer (of 2)
HP = dict(v_num_grad_steps=12, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=4.0,
          kl_factor=0.0625)
FT_LAYER = 1
FT = dict(num_steps=8, lr=1e-2)
FT_L = dict(num_steps=6, lr=1e-2, norm_constraint=2e-3)  # FT-L with gpt2-xl's kind of clamp


def llama(P, cfg, ids, lengths, layer_hooks=None):
    """tiny LLaMA forward (HF semantics, right padding). layer_hooks(l, name, x) may return a
    modified x for name in {"attn_out", "mlp_key", "mlp_out", "resid_out"}. Returns logits (B, T, V)."""
    B, T = ids.shape
    d, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps = d // H, cfg["rms_norm_eps"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(T, dtype=torch.float64).view(T, 1) * inv.view(1, -1)
    ang = torch.cat((ang, ang), -1)
    cos, sin = ang.cos().to(DT), ang.sin().to(DT)
    i = torch.arange(T).view(1, T, 1)
    j = torch.arange(T).view(1, 1, T)
    mask = ((j <= i) & (j < torch.as_tensor(lengths).view(-1, 1, 1))).unsqueeze(1)

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rot(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), -1)

    x = P["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = rms(x, P[p + "input_layernorm.weight"])
        q = (h @ P[p + "self_attn.q_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)
        k = (h @ P[p + "self_attn.k_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
        v = (h @ P[p + "self_attn.v_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        a = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v
        ao = a.transpose(1, 2).reshape(B, T, H * hd) @ P[p + "self_attn.o_proj.weight"].T
        if layer_hooks:
            ao = layer_hooks(l, "attn_out", ao)
        x = x + ao
        h = rms(x, P[p + "post_attention_layernorm.weight"])
        key = F.silu(h @ P[p + "mlp.gate_proj.weight"].T) * (h @ P[p + "mlp.up_proj.weight"].T)
        if layer_hooks:
            key = layer_hooks(l, "mlp_key", key)
        out = key @ P[p + "mlp.down_proj.weight"].T
        if layer_hooks:
            out = layer_hooks(l, "mlp_out", out)
        x = x + out
        if layer_hooks:
            x = layer_hooks(l, "resid_out", x)
    x = rms(x, P["model.norm.weight"])
    head = P["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else P["lm_head.weight"]
    return x @ head.T


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gpt2(P, cfg, ids, lengths, layer_hooks=None):
    """tiny GPT-2 forward (HF semantics: Conv1D weights (in, out), biases, gelu_new, tied head)"""
    B, T = ids.shape
    d, H = cfg["n_embd"], cfg["n_head"]
    hd, eps = d // H, cfg["layer_norm_epsilon"]
    i = torch.arange(T).view(1, T, 1)
    j = torch.arange(T).view(1, 1, T)
    mask = ((j <= i) & (j < torch.as_tensor(lengths).view(-1, 1, 1))).unsqueeze(1)
    x = P["wte.weight"][ids] + P["wpe.weight"][torch.arange(T)].unsqueeze(0)
    for l in range(cfg["n_layer"]):
        p = "h.%d." % l
        h = F.layer_norm(x, (d,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        q, k, v = (h @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]).split(d, -1)
        q, k, v = (t.view(B, T, H, hd).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        a = (torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v).transpose(1, 2).reshape(B, T, d)
        ao = a @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        if layer_hooks:
            ao = layer_hooks(l, "attn_out", ao)
        x = x + ao
        h = F.layer_norm(x, (d,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps)
        key = gelu_new(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"])
        if layer_hooks:
            key = layer_hooks(l, "mlp_key", key)
        out = key @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
        if layer_hooks:
            out = layer_hooks(l, "mlp_out", out)
        x = x + out
        if layer_hooks:
            x = layer_hooks(l, "resid_out", x)
    x = F.layer_norm(x, (d,), P["ln_f.weight"], P["ln_f.bias"], eps)
    return x @ P["wte.weight"].T


FAMILY = {"family": "llama"}


def model(P, cfg, ids, lengths, layer_hooks=None):
    f = llama if FAMILY["family"] == "llama" else gpt2
    return f(P, cfg, ids, lengths, layer_hooks)


def down_name(layer):
    """HF name of the MLP's output projection weight, and whether it is stored (in, out)"""
    if FAMILY["family"] == "llama":
        return "model.layers.%d.mlp.down_proj.weight" % layer, False
    return "h.%d.mlp.c_proj.weight" % layer, True


def pad(seqs):
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [s[0]] * (T - len(s)) for s in seqs])
    return ids, [len(s) for s in seqs]


def capture(P, cfg, seqs, lookups, layer, name):
    """the activation `name` of `layer` at each sequence's lookup token (n, width)"""
    ids, lens = pad(seqs)
    got = {}

    def hook(l, nm, x):
        if l == layer and nm == name:
            got["x"] = x[torch.arange(len(seqs)), torch.tensor(lookups)].detach().clone()
        return x
    model(P, cfg, ids, lens, hook)
    return got["x"]


def compute_v(P, cfg, layer):
    """EasyEdit rome/compute_v.py on token ids (rewriting prompts = ctx + target[:-1])"""
    target_ids = torch.tensor(TARGET)
    rewriting = [s + TARGET[:-1] for s, _ in CTX]
    all_seqs = rewriting + [KL[0]]
    ids, lens = pad(all_seqs)
    rewriting_targets = torch.full((len(rewriting), ids.shape[1]), -100)
    for i in range(len(rewriting)):
        ex_len = lens[i]
        rewriting_targets[i, ex_len - len(TARGET):ex_len] = target_ids
    lookup_idxs = [lk for _, lk in CTX] + [KL[1]]
    delta = torch.zeros(cfg.get("hidden_size", cfg.get("n_embd")), dtype=DT, requires_grad=True)
    state = {"target_init": None, "kl_init": None}

    def edit_output_fn(l, nm, cur_out):
        if l == layer and nm == "mlp_out":
            if state["target_init"] is None:
                state["target_init"] = cur_out[0, lookup_idxs[0]].detach().clone()
            cur_out = cur_out.clone()
            for i, idx in enumerate(lookup_idxs):
                cur_out[i, idx, :] += delta
        return cur_out

    opt = torch.optim.Adam([delta], lr=HP["v_lr"])
    losses = []
    for it in range(HP["v_num_grad_steps"]):
        opt.zero_grad()
        logits = model(P, cfg, ids, lens, edit_output_fn)
        kl_logits = torch.stack([logits[len(all_seqs) - 1, KL[1], :]], 0)
        kl_log_probs = F.log_softmax(kl_logits, dim=1)
        if state["kl_init"] is None:
            state["kl_init"] = kl_log_probs.detach().clone()
        log_probs = torch.log_softmax(logits, dim=2)
        loss = torch.gather(log_probs, 2,
                            torch.where(rewriting_targets != -100, rewriting_targets, 0).unsqueeze(2)).squeeze(2)
        mask = (rewriting_targets != -100).to(DT)
        nll_loss_each = -(loss * mask).sum(1) / target_ids.size(0)
        nll_loss = nll_loss_each.mean()
        kl_loss = HP["kl_factor"] * F.kl_div(state["kl_init"], kl_log_probs, log_target=True,
                                             reduction="batchmean")
        weight_decay = HP["v_weight_decay"] * (torch.norm(delta) / torch.norm(state["target_init"]) ** 2)
        loss = nll_loss + kl_loss + weight_decay
        losses.append(loss.item())
        if loss < 5e-2:
            break
        if it == HP["v_num_grad_steps"] - 1:
            break
        loss.backward()
        opt.step()
        max_norm = HP["clamp_norm_factor"] * state["target_init"].norm()
        if delta.norm() > max_norm:
            with torch.no_grad():
                delta[...] = delta * max_norm / delta.norm()
    return state["target_init"], delta.detach(), losses


def target_logprob(P, cfg):
    """sum_j log p(target_j | prompt, target_<j)"""
    seq = PROMPT + TARGET[:-1]
    ids, lens = pad([seq])
    lp = torch.log_softmax(model(P, cfg, ids, lens), -1)[0]
    return sum(lp[len(PROMPT) - 1 + j, t].item() for j, t in enumerate(TARGET))


def rome(P, cfg):
    seqs, lks = [s for s, _ in CTX], [lk for _, lk in CTX]
    kstar = capture(P, cfg, seqs, lks, LAYER, "mlp_key").mean(0)
    u = kstar / kstar.norm()
    target_init, delta, losses = compute_v(P, cfg, LAYER)
    k0 = capture(P, cfg, [PROMPT], [CTX[0][1]], LAYER, "mlp_key")[0]
    v0 = capture(P, cfg, [PROMPT], [CTX[0][1]], LAYER, "mlp_out")[0]
    vstar = target_init + delta
    right = (vstar - v0) / torch.dot(k0, u)
    dW = right.unsqueeze(1) @ u.unsqueeze(0)  # down_proj (out = d_model, in = d_ff)
    # R-ROME (enable_random_prefix_keys): k0, v0 averaged over the context templates
    k0m = capture(P, cfg, seqs, lks, LAYER, "mlp_key").mean(0)
    v0m = capture(P, cfg, seqs, lks, LAYER, "mlp_out").mean(0)
    rright = (vstar - v0m) / torch.dot(k0m, u)
    return dict(kstar=kstar, u=u, target_init=target_init, delta=delta, vstar=vstar, k0=k0, v0=v0,
                right=right, dW=dW, losses=torch.tensor(losses, dtype=DT), rrome_k0=k0m,
                rrome_v0=v0m, rrome_right=rright)


def ft_m(P, cfg):
    """EasyEdit ft_main.py, objective target_new, batch of one, Adam(lr), no norm constraint.
    Trained: every parameter whose name contains rewrite_module_tmp.format(layer): for LLaMA
    (template model.layers.{}.mlp.down_proj.weight) the weight, for GPT-2 (template
    transformer.h.{}.mlp.c_proj) the weight and the bias."""
    name, _ = down_name(FT_LAYER)
    names = [name] + ([name.replace(".weight", ".bias")] if FAMILY["family"] == "gpt2" else [])
    w0 = {n: P[n].detach().clone() for n in names}
    W = {n: w0[n].clone().requires_grad_(True) for n in names}
    Q = dict(P)
    Q.update(W)
    opt = torch.optim.Adam(list(W.values()), lr=FT["lr"], weight_decay=0)
    seq = PROMPT + TARGET
    ids, lens = pad([seq])
    prompt_len = len(PROMPT)
    label_mask = torch.tensor([[False] * prompt_len + [True] * len(TARGET)])
    losses = []
    for it in range(FT["num_steps"]):
        opt.zero_grad()
        logits = model(Q, cfg, ids, lens)
        shift_logits = logits[..., :-1, :]
        shift_labels = ids[..., 1:]
        loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                               reduction="none").view(1, -1)
        loss = ((loss * label_mask[:, 1:]).sum(1) / label_mask[:, 1:].sum(1)).mean()
        losses.append(loss.item())
        if loss.item() >= 1e-2:
            loss.backward()
            opt.step()
        if loss.item() < 1e-2:  # the epoch's mean loss (one batch)
            break
    d = {n: (W[n] - w0[n]).detach() for n in names}
    P2 = dict(P)
    P2.update({n: w0[n] + d[n] for n in names})
    out = dict(dW=d[name], losses=torch.tensor(losses, dtype=DT), post=target_logprob(P2, cfg))
    if len(names) > 1:
        out["dB"] = d[names[1]]
    return out


def ft_l(P, cfg):
    """EasyEdit ft_main.py, objective prompt_last (FT-L): every target token's log-prob read at the
    prompt's last position, averaged; Adam(lr); weights clamped to w0 +- norm_constraint"""
    name, _ = down_name(FT_LAYER)
    names = [name] + ([name.replace(".weight", ".bias")] if FAMILY["family"] == "gpt2" else [])
    w0 = {n: P[n].detach().clone() for n in names}
    W = {n: w0[n].clone().requires_grad_(True) for n in names}
    Q = dict(P)
    Q.update(W)
    opt = torch.optim.Adam(list(W.values()), lr=FT_L["lr"], weight_decay=0)
    ids, lens = pad([PROMPT])
    target_ids = torch.tensor([TARGET])
    last_token_inds = torch.tensor(lens) - 1
    eps = FT_L["norm_constraint"]
    losses = []
    for it in range(FT_L["num_steps"]):
        opt.zero_grad()
        probs = F.log_softmax(model(Q, cfg, ids, lens)[torch.arange(1), last_token_inds], dim=-1)
        loss = (-(torch.gather(probs, 1, target_ids)).sum(1) / target_ids.size(1)).mean()
        losses.append(loss.item())
        if loss.item() >= 1e-2:
            loss.backward()
            opt.step()
        with torch.no_grad():
            for n in names:
                W[n][...] = torch.clamp(W[n], min=w0[n] - eps, max=w0[n] + eps)
        if loss.item() < 1e-2:
            break
    out = dict(dW=(W[name] - w0[name]).detach(), losses=torch.tensor(losses, dtype=DT))
    if len(names) > 1:
        out["dB"] = (W[names[1]] - w0[names[1]]).detach()
    return out


def run(fam):
    FAMILY["family"] = fam
    d = os.path.join(ROOT, "tests", "data", "tiny-" + fam)
    W, _ = st_read(os.path.join(d, "model.safetensors"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    P = {k: torch.tensor(v.astype(np.float64)) for k, v in W.items()}
    out = {}
    r = rome(P, cfg)
    for k, v in r.items():
        out[fam + ".rome." + k] = v.numpy().astype(np.float32)  # dW in ked's (out, in) layout
    nm, conv1d = down_name(LAYER)
    P2 = dict(P)
    P2[nm] = P[nm] + (r["dW"].T if conv1d else r["dW"])
    out[fam + ".rome.pre_logprob"] = np.array([target_logprob(P, cfg)], np.float32)
    out[fam + ".rome.post_logprob"] = np.array([target_logprob(P2, cfg)], np.float32)
    f = ft_m(P, cfg)
    out[fam + ".ft_m.dW"] = (f["dW"].T if conv1d else f["dW"]).numpy().astype(np.float32)
    if "dB" in f:
        out[fam + ".ft_m.dB"] = f["dB"].numpy().astype(np.float32)
    out[fam + ".ft_m.losses"] = f["losses"].numpy().astype(np.float32)
    out[fam + ".ft_m.post_logprob"] = np.array([f["post"]], np.float32)
    g = ft_l(P, cfg)
    out[fam + ".ft_l.dW"] = (g["dW"].T if conv1d else g["dW"]).numpy().astype(np.float32)
    if "dB" in g:
        out[fam + ".ft_l.dB"] = g["dB"].numpy().astype(np.float32)
    out[fam + ".ft_l.losses"] = g["losses"].numpy().astype(np.float32)
    print(fam, "ft-l losses", [round(x, 5) for x in g["losses"].tolist()])
    print(fam, "rome losses", [round(x, 5) for x in r["losses"].tolist()])
    print(fam, "rome |delta| %.5f |right| %.5f logprob %.5f -> %.5f" % (
        r["delta"].norm(), r["right"].norm(), out[fam + ".rome.pre_logprob"][0],
        out[fam + ".rome.post_logprob"][0]))
    print(fam, "ft-m losses", [round(x, 5) for x in f["losses"].tolist()], "post logprob %.5f" % f["post"])
    return out


def main():
    out = {}
    for fam in ("llama", "gpt2"):
        out.update(run(fam))
    # the inputs, so the C test reads rather than repeats them
    T = max(len(s) for s, _ in CTX)
    out["ctx.ids"] = np.array([s + [0] * (T - len(s)) for s, _ in CTX], np.int64)
    out["ctx.len"] = np.array([len(s) for s, _ in CTX], np.int64)
    out["ctx.lookup"] = np.array([lk for _, lk in CTX], np.int64)
    out["kl.ids"] = np.array(KL[0], np.int64)
    out["kl.lookup"] = np.array([KL[1]], np.int64)
    out["target"] = np.array(TARGET, np.int64)
    meta = {"generator": "tests/ref/edit_ref.py", "precision": "float64, stored float32",
            "rome": json.dumps(dict(HP, layer=LAYER)), "ft_m": json.dumps(dict(FT, layer=FT_LAYER)),
            "ft_l": json.dumps(dict(FT_L, layer=FT_LAYER))}
    path = os.path.join(ROOT, "tests", "data", "edit", "edit_ref.safetensors")
    st_write(path, out, meta)
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
