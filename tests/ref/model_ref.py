"""Shared reference code for ked's test fixtures (run with Debian's /usr/bin/python3, torch 1.13).

Contents
  - safetensors read/write (numpy), including the `__metadata__` tensor-alias quirk of
    TinyStories-656K (metadata entry "model.embed_tokens.weight": "lm_head.weight").
  - LLaMA (HF modeling_llama.py semantics: RMSNorm, rotate-half RoPE, grouped-query attention,
    gated SiLU MLP, optional tied head) and GPT-2 (HF modeling_gpt2.py semantics: LayerNorm,
    learned positions, Conv1D weights stored (in, out), gelu_new, tied head) as plain torch
    functions of a dict {HF tensor name: tensor}.
  - Hooks (design.md section 2): `mlp_key` (input of the MLP output projection, d_ff wide) and
    `resid_out` (residual stream after a layer) at chosen (row, position) pairs, where a vector
    is added.
  - Independent numpy per-token implementations of both families (a KV-cache loop, written
    separately) used only to cross-check the torch code.

Batches are right-padded: row b holds lengths[b] real tokens; positions are 0..T-1 (so real
tokens get 0..len-1); attention is causal and never attends to keys at j >= lengths[b].
Logits at padded positions are whatever this masking gives and are not meant to be compared.
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- safetensors

_NP_OF = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_ST_OF = {np.dtype(v).str: k for k, v in _NP_OF.items()}


def st_write(path, tensors, metadata=None):
    """Write {name: np.ndarray} (tensors in sorted name order) with optional str->str metadata."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dt = np.dtype(a.dtype).newbyteorder("<")
        a = a.astype(dt, copy=False)
        st = _ST_OF[np.dtype(a.dtype).str]
        b = a.tobytes(order="C")
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def st_read(path, resolve_aliases=True):
    """Read a safetensors file -> (dict name -> np.ndarray, metadata dict).

    With resolve_aliases, a metadata entry whose key is not a stored tensor and whose value is
    a stored tensor's name is treated as an alias (TinyStories-656K ties its embedding this way:
    "__metadata__": {"format": "pt", "model.embed_tokens.weight": "lm_head.weight"})."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
        data = f.read()
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        a = np.frombuffer(data[b:e], dtype=np.dtype(_NP_OF[h["dtype"]]).newbyteorder("<"))
        out[name] = a.reshape(h["shape"]).copy()
    if resolve_aliases:
        for k, v in meta.items():
            if k not in out and isinstance(v, str) and v in out:
                out[k] = out[v]
    return out, meta


# ----------------------------------------------------------------------------- configs

def llama_config(tied):
    """config.json as transformers 4.41 writes it for LlamaForCausalLM (tiny sizes)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 56,
        "max_position_embeddings": 64,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 500000.0,
        "tie_word_embeddings": bool(tied),
        "torch_dtype": "float32",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "vocab_size": 96,
    }


def gpt2_config():
    """config.json as transformers 4.41 writes it for GPT2LMHeadModel (tiny sizes).
    bos/eos are set to 95 (the last id) since the GPT-2 default 50256 is out of range."""
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": 95,
        "embd_pdrop": 0.1,
        "eos_token_id": 95,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": 64,
        "n_embd": 32,
        "n_head": 4,
        "n_inner": None,
        "n_layer": 2,
        "n_positions": 64,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": "float32",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "vocab_size": 96,
    }


# ----------------------------------------------------------------------------- random weights

def llama_random_weights(cfg, seed):
    """HF-named float32 numpy weights. Norm weights 1 + 0.1*randn, others randn * scale."""
    g = np.random.default_rng(seed)
    d, ff, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // H
    r = lambda *s, sc=0.15: (g.standard_normal(s) * sc).astype(np.float32)
    nw = lambda n: (1.0 + 0.1 * g.standard_normal(n)).astype(np.float32)
    W = {"model.embed_tokens.weight": r(V, d, sc=0.5)}
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        W[p + "input_layernorm.weight"] = nw(d)
        W[p + "self_attn.q_proj.weight"] = r(H * hd, d, sc=0.25)
        W[p + "self_attn.k_proj.weight"] = r(KV * hd, d, sc=0.25)
        W[p + "self_attn.v_proj.weight"] = r(KV * hd, d, sc=0.2)
        W[p + "self_attn.o_proj.weight"] = r(d, H * hd, sc=0.2)
        W[p + "post_attention_layernorm.weight"] = nw(d)
        W[p + "mlp.gate_proj.weight"] = r(ff, d, sc=0.2)
        W[p + "mlp.up_proj.weight"] = r(ff, d, sc=0.2)
        W[p + "mlp.down_proj.weight"] = r(d, ff, sc=0.15)
    W["model.norm.weight"] = nw(d)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = r(V, d, sc=0.2)
    return W


def gpt2_random_weights(cfg, seed):
    """HF-named float32 numpy weights without the "transformer." prefix; Conv1D weights (in, out)."""
    g = np.random.default_rng(seed)
    d, V, P = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    ff = cfg["n_inner"] or 4 * d
    r = lambda *s, sc=0.15: (g.standard_normal(s) * sc).astype(np.float32)
    nw = lambda n: (1.0 + 0.1 * g.standard_normal(n)).astype(np.float32)
    W = {"wte.weight": r(V, d, sc=0.3), "wpe.weight": r(P, d, sc=0.1)}
    for i in range(cfg["n_layer"]):
        p = "h.%d." % i
        W[p + "ln_1.weight"] = nw(d)
        W[p + "ln_1.bias"] = r(d, sc=0.1)
        W[p + "attn.c_attn.weight"] = r(d, 3 * d, sc=0.25)
        W[p + "attn.c_attn.bias"] = r(3 * d, sc=0.1)
        W[p + "attn.c_proj.weight"] = r(d, d, sc=0.2)
        W[p + "attn.c_proj.bias"] = r(d, sc=0.1)
        W[p + "ln_2.weight"] = nw(d)
        W[p + "ln_2.bias"] = r(d, sc=0.1)
        W[p + "mlp.c_fc.weight"] = r(d, ff, sc=0.2)
        W[p + "mlp.c_fc.bias"] = r(ff, sc=0.1)
        W[p + "mlp.c_proj.weight"] = r(ff, d, sc=0.12)
        W[p + "mlp.c_proj.bias"] = r(d, sc=0.1)
    W["ln_f.weight"] = nw(d)
    W["ln_f.bias"] = r(d, sc=0.1)
    return W


# ----------------------------------------------------------------------------- torch models

def _apply_hook(hooks, name, x):
    """hooks: {name: (vec tensor, row, pos)}; adds vec to x[row, pos, :]."""
    if hooks and name in hooks:
        vec, row, pos = hooks[name]
        B, T, _ = x.shape
        sel = torch.zeros(B, T, 1, dtype=x.dtype)
        sel[row, pos, 0] = 1.0
        x = x + sel * vec.view(1, 1, -1)
    return x


def _attn_mask(lengths, T):
    i = torch.arange(T).view(1, T, 1)
    j = torch.arange(T).view(1, 1, T)
    L = torch.as_tensor(lengths).view(-1, 1, 1)
    return (j <= i) & (j < L)  # (B, T, T) True = may attend


def _rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llama_forward(P, cfg, ids, lengths, hooks=None):
    """P: {HF name: tensor}; ids (B, T) long; returns logits (B, T, V) in P's dtype."""
    B, T = ids.shape
    d = cfg["hidden_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // H
    eps = cfg["rms_norm_eps"]
    emb = P["model.embed_tokens.weight"]
    head = emb if cfg.get("tie_word_embeddings") else P["lm_head.weight"]
    dt = emb.dtype
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(T, dtype=torch.float64).view(T, 1) * inv_freq.view(1, -1)
    ang = torch.cat((ang, ang), dim=-1)
    cos, sin = ang.cos().to(dt), ang.sin().to(dt)  # (T, hd)
    mask = _attn_mask(lengths, T).unsqueeze(1)  # (B,1,T,T)
    x = emb[ids]
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = _rms_norm(x, P[p + "input_layernorm.weight"], eps)
        q = (h @ P[p + "self_attn.q_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)
        k = (h @ P[p + "self_attn.k_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
        v = (h @ P[p + "self_attn.v_proj.weight"].T).view(B, T, KV, hd).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)  # HF repeat_kv: query head i uses kv head i // (H/KV)
        v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~mask, float("-inf"))
        a = torch.softmax(s, dim=-1) @ v  # (B,H,T,hd)
        a = a.transpose(1, 2).reshape(B, T, H * hd)
        x = x + a @ P[p + "self_attn.o_proj.weight"].T
        h = _rms_norm(x, P[p + "post_attention_layernorm.weight"], eps)
        m = F.silu(h @ P[p + "mlp.gate_proj.weight"].T) * (h @ P[p + "mlp.up_proj.weight"].T)
        m = _apply_hook(hooks, "mlp_key.%d" % l, m)
        x = x + m @ P[p + "mlp.down_proj.weight"].T
        x = _apply_hook(hooks, "resid_out.%d" % l, x)
    x = _rms_norm(x, P["model.norm.weight"], eps)
    return x @ head.T


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gpt2_forward(P, cfg, ids, lengths, hooks=None):
    B, T = ids.shape
    d, H = cfg["n_embd"], cfg["n_head"]
    hd = d // H
    eps = cfg["layer_norm_epsilon"]
    mask = _attn_mask(lengths, T).unsqueeze(1)
    x = P["wte.weight"][ids] + P["wpe.weight"][torch.arange(T)].unsqueeze(0)
    for l in range(cfg["n_layer"]):
        p = "h.%d." % l
        h = F.layer_norm(x, (d,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        qkv = h @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(d, dim=-1)
        q = q.view(B, T, H, hd).transpose(1, 2)
        k = k.view(B, T, H, hd).transpose(1, 2)
        v = v.view(B, T, H, hd).transpose(1, 2)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~mask, float("-inf"))
        a = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, d)
        x = x + a @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (d,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps)
        m = gelu_new(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"])
        m = _apply_hook(hooks, "mlp_key.%d" % l, m)
        x = x + m @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
        x = _apply_hook(hooks, "resid_out.%d" % l, x)
    x = F.layer_norm(x, (d,), P["ln_f.weight"], P["ln_f.bias"], eps)
    return x @ P["wte.weight"].T


def forward(family, P, cfg, ids, lengths, hooks=None):
    return (llama_forward if family == "llama" else gpt2_forward)(P, cfg, ids, lengths, hooks)


def greedy(family, P, cfg, prompt, n_new, fwd=None):
    """Greedy argmax continuation by full recomputation (no cache). Returns (ids, min top1-top2 margin).
    fwd(P, cfg, ids, lengths) replaces forward(family, ...) when given."""
    ids = list(int(t) for t in prompt)
    margin = float("inf")
    for _ in range(n_new):
        x = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            lg = (fwd(P, cfg, x, [len(ids)]) if fwd else forward(family, P, cfg, x, [len(ids)]))[0, -1]
        top = torch.topk(lg, 2).values
        margin = min(margin, float(top[0] - top[1]))
        ids.append(int(torch.argmax(lg)))
    return ids[len(prompt):], margin


# ----------------------------------------------------------------------------- numpy per-token reference

def np_llama_tokens(W, cfg, ids, hooks=None):
    """Independent per-token (KV-cache loop) LLaMA in float64 numpy for ONE unpadded row.
    hooks: {name: (vec, pos)}. Returns logits (len, V)."""
    d = cfg["hidden_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // H
    half = hd // 2
    eps = cfg["rms_norm_eps"]
    L = cfg["num_hidden_layers"]
    W = {k: np.asarray(v, dtype=np.float64) for k, v in W.items()}
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    hooks = hooks or {}

    def rms(v, w):
        return v / np.sqrt(np.mean(v * v) + eps) * w

    def rope(vec, pos):  # vec (hd,): pairs (j, j+half) rotated by pos * theta^(-2j/hd)
        out = np.empty_like(vec)
        for j in range(half):
            th = pos * cfg["rope_theta"] ** (-2.0 * j / hd)
            c, s = math.cos(th), math.sin(th)
            a, b = vec[j], vec[j + half]
            out[j] = a * c - b * s
            out[j + half] = b * c + a * s
        return out

    kc = [[] for _ in range(L)]
    vc = [[] for _ in range(L)]
    res = []
    for pos, tok in enumerate(ids):
        x = W["model.embed_tokens.weight"][tok].copy()
        for l in range(L):
            p = "model.layers.%d." % l
            h = rms(x, W[p + "input_layernorm.weight"])
            q = W[p + "self_attn.q_proj.weight"] @ h
            k = W[p + "self_attn.k_proj.weight"] @ h
            v = W[p + "self_attn.v_proj.weight"] @ h
            kc[l].append([rope(k[g * hd:(g + 1) * hd], pos) for g in range(KV)])
            vc[l].append([v[g * hd:(g + 1) * hd] for g in range(KV)])
            att = np.zeros(H * hd)
            for hh in range(H):
                g = hh // (H // KV)
                qh = rope(q[hh * hd:(hh + 1) * hd], pos)
                sc = np.array([qh @ kc[l][t][g] for t in range(pos + 1)]) / math.sqrt(hd)
                w = np.exp(sc - sc.max())
                w /= w.sum()
                att[hh * hd:(hh + 1) * hd] = sum(w[t] * vc[l][t][g] for t in range(pos + 1))
            x = x + W[p + "self_attn.o_proj.weight"] @ att
            h = rms(x, W[p + "post_attention_layernorm.weight"])
            gt = W[p + "mlp.gate_proj.weight"] @ h
            m = gt / (1.0 + np.exp(-gt)) * (W[p + "mlp.up_proj.weight"] @ h)
            key = "mlp_key.%d" % l
            if key in hooks and hooks[key][1] == pos:
                m = m + hooks[key][0]
            x = x + W[p + "mlp.down_proj.weight"] @ m
            key = "resid_out.%d" % l
            if key in hooks and hooks[key][1] == pos:
                x = x + hooks[key][0]
        res.append(head @ rms(x, W["model.norm.weight"]))
    return np.array(res)


def np_gpt2_tokens(W, cfg, ids, hooks=None):
    """Independent per-token GPT-2 in float64 numpy for ONE unpadded row."""
    d, H = cfg["n_embd"], cfg["n_head"]
    hd = d // H
    eps = cfg["layer_norm_epsilon"]
    L = cfg["n_layer"]
    W = {k: np.asarray(v, dtype=np.float64) for k, v in W.items()}
    hooks = hooks or {}

    def ln(v, w, b):
        mu = v.mean()
        var = ((v - mu) ** 2).mean()
        return (v - mu) / np.sqrt(var + eps) * w + b

    def gelu(z):
        return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))

    kc = [[] for _ in range(L)]
    vc = [[] for _ in range(L)]
    res = []
    for pos, tok in enumerate(ids):
        x = W["wte.weight"][tok] + W["wpe.weight"][pos]
        for l in range(L):
            p = "h.%d." % l
            h = ln(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"])
            qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
            q, k, v = qkv[:d], qkv[d:2 * d], qkv[2 * d:]
            kc[l].append(k)
            vc[l].append(v)
            att = np.zeros(d)
            for hh in range(H):
                sl = slice(hh * hd, (hh + 1) * hd)
                sc = np.array([q[sl] @ kc[l][t][sl] for t in range(pos + 1)]) / math.sqrt(hd)
                w = np.exp(sc - sc.max())
                w /= w.sum()
                att[sl] = sum(w[t] * vc[l][t][sl] for t in range(pos + 1))
            x = x + att @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
            h = ln(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"])
            m = gelu(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
            key = "mlp_key.%d" % l
            if key in hooks and hooks[key][1] == pos:
                m = m + hooks[key][0]
            x = x + m @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
            key = "resid_out.%d" % l
            if key in hooks and hooks[key][1] == pos:
                x = x + hooks[key][0]
        res.append(W["wte.weight"] @ ln(x, W["ln_f.weight"], W["ln_f.bias"]))
    return np.array(res)
