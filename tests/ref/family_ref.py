"""Reference definitions of the families beyond LLaMA and GPT-2 (run with /usr/bin/python3, torch 1.13).

Written from the published Hugging Face definitions (no `transformers` package here):
  - LLaMA-3   modeling_llama.py + modeling_rope_utils.py `_compute_llama3_parameters`
              (rope_scaling {"rope_type": "llama3", factor, low_freq_factor, high_freq_factor,
              original_max_position_embeddings}); also "linear" (inv_freq / factor)
  - Mistral   modeling_mistral.py: LLaMA + `sliding_window` W: query i attends key j iff
              i - W < j <= i (masking_utils.sliding_window_overlay: kv_idx > q_idx - W)
  - Qwen2     modeling_qwen2.py: LLaMA + q/k/v biases (no o_proj bias); `use_sliding_window`
              false (the default of every released Qwen2 config) means no window at all
  - GPT-J     modeling_gptj.py: one ln_1 shared by attention and MLP (parallel block),
              partial rotary `rotary_dim` with GPT-J pairing (rotate_every_two: pairs (2i, 2i+1)),
              no attention biases, fc_in/fc_out with biases, gelu_new, lm_head with bias
  - GPT-NeoX  modeling_gpt_neox.py: fused query_key_value (3C, C) viewed as (H, 3, D) per head,
              partial rotary `rotary_pct` with rotate-half pairing, `use_parallel_residual`
              (true: x + attn(ln1(x)) + mlp(ln2(x)); false: sequential), exact erf GELU
              ("gelu"), biases everywhere, untied embed_out
Each forward is a plain torch function of {HF tensor name: tensor}, with right padding and the
same hooks as model_ref.py (mlp_key = input of the MLP's output projection, resid_out). Also an
independent numpy per-token (KV-cache loop) implementation of all five, used only to cross-check.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import model_ref as mr

FAMILIES = ("llama3", "mistral", "qwen2", "gptj", "neox")

# ----------------------------------------------------------------------------- configs


def _llama_like(model_type, arch, **kw):
    c = {
        "architectures": [arch],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 56,
        "max_position_embeddings": 128,
        "model_type": model_type,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.45.0",
        "use_cache": True,
        "vocab_size": 96,
    }
    c.update(kw)
    return c


def llama3_config():
    """Llama-3.1-style config (transformers 4.45 keys) with tiny sizes. theta 100 and an original
    context of 64 put the 4 rotary frequencies of head_dim 8 in all three llama3 regions:
    wavelengths 6.3 (< 16: kept), 19.9 and 62.8 (between: smoothed), 199 (> 64: divided by 8)."""
    return _llama_like("llama", "LlamaForCausalLM", attention_bias=False, mlp_bias=False,
                       head_dim=8, pretraining_tp=1, rope_theta=100.0,
                       rope_scaling={"factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 64,
                                     "rope_type": "llama3"})


def mistral_config():
    """Mistral-7B-v0.1-style config (transformers 4.41 keys); sliding_window 4 so that the batch
    (9 positions) and greedy decoding (17) both reach past the window."""
    return _llama_like("mistral", "MistralForCausalLM", sliding_window=4)


def qwen2_config():
    """Qwen2-0.5B-style config: q/k/v biases, tied head, rope_theta 1e6, use_sliding_window false
    with sliding_window and max_window_layers set (they must then be ignored)."""
    return _llama_like("qwen2", "Qwen2ForCausalLM", bos_token_id=94, eos_token_id=95,
                       max_window_layers=2, rms_norm_eps=1e-06, rope_theta=1000000.0,
                       sliding_window=4, tie_word_embeddings=True, use_sliding_window=False)


def gptj_config():
    """GPT-J-6B-style config (transformers 4.41 keys), tiny; rotary_dim 4 of head_dim 8."""
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPTJForCausalLM"],
        "attn_pdrop": 0.0,
        "bos_token_id": 95,
        "embd_pdrop": 0.0,
        "eos_token_id": 95,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gptj",
        "n_embd": 32,
        "n_head": 4,
        "n_inner": None,
        "n_layer": 2,
        "n_positions": 64,
        "resid_pdrop": 0.0,
        "rotary_dim": 4,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "vocab_size": 96,
    }


def neox_config(parallel):
    """Pythia-style config (transformers 4.41 keys), tiny. parallel: use_parallel_residual."""
    return {
        "architectures": ["GPTNeoXForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "classifier_dropout": 0.1,
        "eos_token_id": 0,
        "hidden_act": "gelu",
        "hidden_dropout": 0.0,
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 64,
        "model_type": "gpt_neox",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "rope_scaling": None,
        "rotary_emb_base": 10000,
        "rotary_pct": 0.5 if parallel else 0.25,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "use_parallel_residual": bool(parallel),
        "vocab_size": 96,
    }


# ----------------------------------------------------------------------------- random weights


def random_weights(fam, cfg, seed):
    """HF-named float32 numpy weights: norm weights 1 + 0.1 randn, biases 0.1 randn, matrices
    randn * 0.1-0.5."""
    g = np.random.default_rng(seed)
    r = lambda *s, sc=0.15: (g.standard_normal(s) * sc).astype(np.float32)
    nw = lambda n: (1.0 + 0.1 * g.standard_normal(n)).astype(np.float32)
    W = {}
    if fam in ("llama3", "mistral", "qwen2"):
        d, ff, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
        H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        hd = cfg.get("head_dim") or d // H
        W["model.embed_tokens.weight"] = r(V, d, sc=0.3 if cfg["tie_word_embeddings"] else 0.5)
        for i in range(cfg["num_hidden_layers"]):
            p = "model.layers.%d." % i
            W[p + "input_layernorm.weight"] = nw(d)
            W[p + "self_attn.q_proj.weight"] = r(H * hd, d, sc=0.25)
            W[p + "self_attn.k_proj.weight"] = r(KV * hd, d, sc=0.25)
            W[p + "self_attn.v_proj.weight"] = r(KV * hd, d, sc=0.2)
            if fam == "qwen2":
                W[p + "self_attn.q_proj.bias"] = r(H * hd, sc=0.1)
                W[p + "self_attn.k_proj.bias"] = r(KV * hd, sc=0.1)
                W[p + "self_attn.v_proj.bias"] = r(KV * hd, sc=0.1)
            W[p + "self_attn.o_proj.weight"] = r(d, H * hd, sc=0.2)
            W[p + "post_attention_layernorm.weight"] = nw(d)
            W[p + "mlp.gate_proj.weight"] = r(ff, d, sc=0.2)
            W[p + "mlp.up_proj.weight"] = r(ff, d, sc=0.2)
            W[p + "mlp.down_proj.weight"] = r(d, ff, sc=0.15)
        W["model.norm.weight"] = nw(d)
        if not cfg["tie_word_embeddings"]:
            W["lm_head.weight"] = r(V, d, sc=0.2)
    elif fam == "gptj":
        d, V = cfg["n_embd"], cfg["vocab_size"]
        ff = cfg["n_inner"] or 4 * d
        W["transformer.wte.weight"] = r(V, d, sc=0.3)
        for i in range(cfg["n_layer"]):
            p = "transformer.h.%d." % i
            W[p + "ln_1.weight"] = nw(d)
            W[p + "ln_1.bias"] = r(d, sc=0.1)
            for n in ("q_proj", "k_proj", "v_proj"):
                W[p + "attn.%s.weight" % n] = r(d, d, sc=0.25)
            W[p + "attn.out_proj.weight"] = r(d, d, sc=0.2)
            W[p + "mlp.fc_in.weight"] = r(ff, d, sc=0.2)
            W[p + "mlp.fc_in.bias"] = r(ff, sc=0.1)
            W[p + "mlp.fc_out.weight"] = r(d, ff, sc=0.12)
            W[p + "mlp.fc_out.bias"] = r(d, sc=0.1)
        W["transformer.ln_f.weight"] = nw(d)
        W["transformer.ln_f.bias"] = r(d, sc=0.1)
        W["lm_head.weight"] = r(V, d, sc=0.2)
        W["lm_head.bias"] = r(V, sc=0.1)
    elif fam == "neox":
        d, ff, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
        W["gpt_neox.embed_in.weight"] = r(V, d, sc=0.3)
        for i in range(cfg["num_hidden_layers"]):
            p = "gpt_neox.layers.%d." % i
            W[p + "input_layernorm.weight"] = nw(d)
            W[p + "input_layernorm.bias"] = r(d, sc=0.1)
            W[p + "post_attention_layernorm.weight"] = nw(d)
            W[p + "post_attention_layernorm.bias"] = r(d, sc=0.1)
            W[p + "attention.query_key_value.weight"] = r(3 * d, d, sc=0.25)
            W[p + "attention.query_key_value.bias"] = r(3 * d, sc=0.1)
            W[p + "attention.dense.weight"] = r(d, d, sc=0.2)
            W[p + "attention.dense.bias"] = r(d, sc=0.1)
            W[p + "mlp.dense_h_to_4h.weight"] = r(ff, d, sc=0.2)
            W[p + "mlp.dense_h_to_4h.bias"] = r(ff, sc=0.1)
            W[p + "mlp.dense_4h_to_h.weight"] = r(d, ff, sc=0.12)
            W[p + "mlp.dense_4h_to_h.bias"] = r(d, sc=0.1)
        W["gpt_neox.final_layer_norm.weight"] = nw(d)
        W["gpt_neox.final_layer_norm.bias"] = r(d, sc=0.1)
        W["embed_out.weight"] = r(V, d, sc=0.2)
    else:
        raise ValueError(fam)
    return W


# ----------------------------------------------------------------------------- rotary frequencies


def inv_freq(cfg, dim, base):
    """HF _compute_default_rope_parameters, then rope_scaling ("linear" or "llama3"), float64."""
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    typ = rs.get("rope_type", rs.get("type"))
    if typ == "linear":
        return inv / rs["factor"]
    assert typ == "llama3", typ
    # _compute_llama3_parameters
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_freq_wavelen = old / lo
    high_freq_wavelen = old / hi
    wavelen = 2 * math.pi / inv
    inv_l = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(medium, smoothed, inv_l)


def _mask(lengths, T, window):
    m = mr._attn_mask(lengths, T)  # (B, T, T): j <= i and j < len
    if window:
        i = torch.arange(T).view(1, T, 1)
        j = torch.arange(T).view(1, 1, T)
        m = m & (j > i - window)
    return m.unsqueeze(1)


def _attend(q, k, v, mask):
    """q (B,H,T,D), k, v (B,H,T,D) -> (B,T,H*D)"""
    B, H, T, D = q.shape
    s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    s = s.masked_fill(~mask, float("-inf"))
    return (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, H * D)


def _window(fam, cfg):
    if fam == "mistral":
        return cfg.get("sliding_window") or 0
    return 0  # qwen2 with use_sliding_window false; the others have none


# ----------------------------------------------------------------------------- torch models


def llama_like_forward(fam, P, cfg, ids, lengths, hooks=None):
    """LLaMA-3 / Mistral / Qwen2 (modeling_llama.py, modeling_mistral.py, modeling_qwen2.py)."""
    B, T = ids.shape
    d = cfg["hidden_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or d // H
    eps = cfg["rms_norm_eps"]
    emb = P["model.embed_tokens.weight"]
    head = emb if cfg.get("tie_word_embeddings") else P["lm_head.weight"]
    dt = emb.dtype
    inv = inv_freq(cfg, hd, cfg["rope_theta"])
    ang = torch.arange(T, dtype=torch.float64).view(T, 1) * inv.view(1, -1)
    ang = torch.cat((ang, ang), dim=-1)
    cos, sin = ang.cos().to(dt), ang.sin().to(dt)
    mask = _mask(lengths, T, _window(fam, cfg))

    def lin(x, name):
        y = x @ P[name + ".weight"].T
        return y + P[name + ".bias"] if name + ".bias" in P else y

    x = emb[ids]
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = mr._rms_norm(x, P[p + "input_layernorm.weight"], eps)
        q = lin(h, p + "self_attn.q_proj").view(B, T, H, hd).transpose(1, 2)
        k = lin(h, p + "self_attn.k_proj").view(B, T, KV, hd).transpose(1, 2)
        v = lin(h, p + "self_attn.v_proj").view(B, T, KV, hd).transpose(1, 2)
        q = q * cos + mr._rotate_half(q) * sin
        k = k * cos + mr._rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        x = x + lin(_attend(q, k, v, mask), p + "self_attn.o_proj")
        h = mr._rms_norm(x, P[p + "post_attention_layernorm.weight"], eps)
        m = F.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj")
        m = mr._apply_hook(hooks, "mlp_key.%d" % l, m)
        x = x + lin(m, p + "mlp.down_proj")
        x = mr._apply_hook(hooks, "resid_out.%d" % l, x)
    x = mr._rms_norm(x, P["model.norm.weight"], eps)
    return x @ head.T


def _rotate_every_two(x):  # modeling_gptj.rotate_every_two
    x1 = x[..., ::2]
    x2 = x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def gptj_forward(P, cfg, ids, lengths, hooks=None):
    """GPT-J (modeling_gptj.py)."""
    B, T = ids.shape
    d, H = cfg["n_embd"], cfg["n_head"]
    hd = d // H
    rot = cfg["rotary_dim"] or hd
    eps = cfg["layer_norm_epsilon"]
    dt = P["transformer.wte.weight"].dtype
    # create_sinusoidal_positions: sin, cos of pos * inv_freq, each repeated twice (interleaved)
    inv = 1.0 / (10000 ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    sinusoid = torch.arange(T, dtype=torch.float64).view(T, 1) * inv.view(1, -1)
    sin = torch.repeat_interleave(sinusoid.sin(), 2, dim=-1).to(dt).view(1, T, 1, rot)
    cos = torch.repeat_interleave(sinusoid.cos(), 2, dim=-1).to(dt).view(1, T, 1, rot)
    mask = _mask(lengths, T, 0)

    def rope(t):  # t (B, T, H, hd): rotate the first rot dims
        tr, tp = t[..., :rot], t[..., rot:]
        return torch.cat((tr * cos + _rotate_every_two(tr) * sin, tp), dim=-1)

    x = P["transformer.wte.weight"][ids]
    for l in range(cfg["n_layer"]):
        p = "transformer.h.%d." % l
        h = F.layer_norm(x, (d,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        q = rope((h @ P[p + "attn.q_proj.weight"].T).view(B, T, H, hd)).transpose(1, 2)
        k = rope((h @ P[p + "attn.k_proj.weight"].T).view(B, T, H, hd)).transpose(1, 2)
        v = (h @ P[p + "attn.v_proj.weight"].T).view(B, T, H, hd).transpose(1, 2)
        attn = _attend(q, k, v, mask) @ P[p + "attn.out_proj.weight"].T
        m = mr.gelu_new(h @ P[p + "mlp.fc_in.weight"].T + P[p + "mlp.fc_in.bias"])
        m = mr._apply_hook(hooks, "mlp_key.%d" % l, m)
        mlp = m @ P[p + "mlp.fc_out.weight"].T + P[p + "mlp.fc_out.bias"]
        x = x + attn + mlp
        x = mr._apply_hook(hooks, "resid_out.%d" % l, x)
    x = F.layer_norm(x, (d,), P["transformer.ln_f.weight"], P["transformer.ln_f.bias"], eps)
    return x @ P["lm_head.weight"].T + P["lm_head.bias"]


def neox_forward(P, cfg, ids, lengths, hooks=None):
    """GPT-NeoX / Pythia (modeling_gpt_neox.py)."""
    B, T = ids.shape
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = d // H
    rot = int(hd * cfg["rotary_pct"])
    eps = cfg["layer_norm_eps"]
    dt = P["gpt_neox.embed_in.weight"].dtype
    inv = inv_freq(cfg, rot, cfg.get("rope_theta", cfg.get("rotary_emb_base", 10000)))
    ang = torch.arange(T, dtype=torch.float64).view(T, 1) * inv.view(1, -1)
    ang = torch.cat((ang, ang), dim=-1)
    cos, sin = ang.cos().to(dt), ang.sin().to(dt)  # (T, rot)
    mask = _mask(lengths, T, 0)

    def rope(t):  # t (B, H, T, hd)
        tr, tp = t[..., :rot], t[..., rot:]
        return torch.cat((tr * cos + mr._rotate_half(tr) * sin, tp), dim=-1)

    def ln(x, name):
        return F.layer_norm(x, (d,), P[name + ".weight"], P[name + ".bias"], eps)

    x = P["gpt_neox.embed_in.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = "gpt_neox.layers.%d." % l
        qkv = ln(x, p + "input_layernorm") @ P[p + "attention.query_key_value.weight"].T \
            + P[p + "attention.query_key_value.bias"]
        qkv = qkv.view(B, T, H, 3 * hd).permute(0, 2, 1, 3)  # (B, H, T, 3*hd)
        q, k, v = qkv[..., :hd], qkv[..., hd:2 * hd], qkv[..., 2 * hd:]
        a = _attend(rope(q), rope(k), v, mask)
        attn = a @ P[p + "attention.dense.weight"].T + P[p + "attention.dense.bias"]

        def mlp(hin):
            m = F.gelu(hin @ P[p + "mlp.dense_h_to_4h.weight"].T + P[p + "mlp.dense_h_to_4h.bias"])
            m = mr._apply_hook(hooks, "mlp_key.%d" % l, m)
            return m @ P[p + "mlp.dense_4h_to_h.weight"].T + P[p + "mlp.dense_4h_to_h.bias"]

        if cfg["use_parallel_residual"]:
            x = x + attn + mlp(ln(x, p + "post_attention_layernorm"))
        else:
            x = x + attn
            x = x + mlp(ln(x, p + "post_attention_layernorm"))
        x = mr._apply_hook(hooks, "resid_out.%d" % l, x)
    x = ln(x, "gpt_neox.final_layer_norm")
    return x @ P["embed_out.weight"].T


def forward(fam, P, cfg, ids, lengths, hooks=None):
    if fam in ("llama3", "mistral", "qwen2"):
        return llama_like_forward(fam, P, cfg, ids, lengths, hooks)
    if fam == "gptj":
        return gptj_forward(P, cfg, ids, lengths, hooks)
    if fam == "neox":
        return neox_forward(P, cfg, ids, lengths, hooks)
    return mr.forward(fam, P, cfg, ids, lengths, hooks)


# ----------------------------------------------------------------------------- numpy per-token


def np_tokens(fam, W, cfg, ids, hooks=None):
    """Independent per-token (KV-cache loop) implementation in float64 numpy of ONE unpadded row,
    for every family above. Rotations are explicit 2x2 rotations of index pairs; the llama3
    frequencies are recomputed here element by element from the published formula."""
    W = {k: np.asarray(v, dtype=np.float64) for k, v in W.items()}
    hooks = hooks or {}
    llama_like = fam in ("llama3", "mistral", "qwen2")
    if llama_like:
        d, L = cfg["hidden_size"], cfg["num_hidden_layers"]
        H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        hd = cfg.get("head_dim") or d // H
        rot, base, pairs = hd, cfg["rope_theta"], "half"
        pre = "model.layers.%d."
    elif fam == "gptj":
        d, L, H = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
        KV, hd = H, d // H
        rot, base, pairs = cfg["rotary_dim"] or hd, 10000.0, "two"
        pre = "transformer.h.%d."
    else:
        d, L, H = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
        KV, hd = H, d // H
        rot = int(hd * cfg["rotary_pct"])
        base, pairs = cfg.get("rope_theta", cfg.get("rotary_emb_base", 10000)), "half"
        pre = "gpt_neox.layers.%d."
    window = cfg.get("sliding_window") if fam == "mistral" else None

    freqs = []
    for i in range(rot // 2):
        f = base ** (-2.0 * i / rot)
        rs = cfg.get("rope_scaling")
        if rs:
            wl = 2 * math.pi / f
            lo_wl = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
            hi_wl = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
            if wl < hi_wl:
                pass
            elif wl > lo_wl:
                f = f / rs["factor"]
            else:
                s = (rs["original_max_position_embeddings"] / wl - rs["low_freq_factor"]) / \
                    (rs["high_freq_factor"] - rs["low_freq_factor"])
                f = (1 - s) * f / rs["factor"] + s * f
        freqs.append(f)

    def rope(vec, pos):
        out = vec.copy()
        for i in range(rot // 2):
            a, b = (i, i + rot // 2) if pairs == "half" else (2 * i, 2 * i + 1)
            c, s = math.cos(pos * freqs[i]), math.sin(pos * freqs[i])
            out[a] = vec[a] * c - vec[b] * s
            out[b] = vec[b] * c + vec[a] * s
        return out

    def rms(v, w):
        return v / np.sqrt(np.mean(v * v) + cfg["rms_norm_eps"]) * w

    def ln(v, name):
        eps = cfg.get("layer_norm_epsilon", cfg.get("layer_norm_eps"))
        mu = v.mean()
        return (v - mu) / np.sqrt(((v - mu) ** 2).mean() + eps) * W[name + ".weight"] + W[name + ".bias"]

    def lin(v, name):
        y = W[name + ".weight"] @ v
        return y + W[name + ".bias"] if name + ".bias" in W else y

    def erf_gelu(z):
        return np.array([0.5 * t * (1.0 + math.erf(t / math.sqrt(2.0))) for t in z])

    def tanh_gelu(z):
        return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))

    kc = [[] for _ in range(L)]
    vc = [[] for _ in range(L)]
    res = []
    for pos, tok in enumerate(ids):
        if llama_like:
            x = W["model.embed_tokens.weight"][tok].copy()
        elif fam == "gptj":
            x = W["transformer.wte.weight"][tok].copy()
        else:
            x = W["gpt_neox.embed_in.weight"][tok].copy()
        for l in range(L):
            p = pre % l
            if llama_like:
                h = rms(x, W[p + "input_layernorm.weight"])
                q, k, v = lin(h, p + "self_attn.q_proj"), lin(h, p + "self_attn.k_proj"), lin(h, p + "self_attn.v_proj")
            elif fam == "gptj":
                h = ln(x, p + "ln_1")
                q, k, v = lin(h, p + "attn.q_proj"), lin(h, p + "attn.k_proj"), lin(h, p + "attn.v_proj")
            else:
                h = ln(x, p + "input_layernorm")
                qkv = lin(h, p + "attention.query_key_value")
                q = np.concatenate([qkv[hh * 3 * hd: hh * 3 * hd + hd] for hh in range(H)])
                k = np.concatenate([qkv[hh * 3 * hd + hd: hh * 3 * hd + 2 * hd] for hh in range(H)])
                v = np.concatenate([qkv[hh * 3 * hd + 2 * hd: hh * 3 * hd + 3 * hd] for hh in range(H)])
            kc[l].append([rope(k[g * hd:(g + 1) * hd], pos) for g in range(KV)])
            vc[l].append([v[g * hd:(g + 1) * hd] for g in range(KV)])
            first = 0 if not window else max(0, pos - window + 1)
            att = np.zeros(H * hd)
            for hh in range(H):
                g = hh // (H // KV)
                qh = rope(q[hh * hd:(hh + 1) * hd], pos)
                ts = range(first, pos + 1)
                sc = np.array([qh @ kc[l][t][g] for t in ts]) / math.sqrt(hd)
                w = np.exp(sc - sc.max())
                w /= w.sum()
                att[hh * hd:(hh + 1) * hd] = sum(w[i] * vc[l][t][g] for i, t in enumerate(ts))
            key = "mlp_key.%d" % l
            if llama_like:
                x = x + lin(att, p + "self_attn.o_proj")
                h2 = rms(x, W[p + "post_attention_layernorm.weight"])
                gt = lin(h2, p + "mlp.gate_proj")
                m = gt / (1.0 + np.exp(-gt)) * lin(h2, p + "mlp.up_proj")
                if key in hooks and hooks[key][1] == pos:
                    m = m + hooks[key][0]
                x = x + lin(m, p + "mlp.down_proj")
            elif fam == "gptj":
                a_out = lin(att, p + "attn.out_proj")
                m = tanh_gelu(lin(h, p + "mlp.fc_in"))
                if key in hooks and hooks[key][1] == pos:
                    m = m + hooks[key][0]
                x = x + a_out + lin(m, p + "mlp.fc_out")
            else:
                a_out = lin(att, p + "attention.dense")
                if cfg["use_parallel_residual"]:
                    h2 = ln(x, p + "post_attention_layernorm")
                else:
                    x = x + a_out
                    h2 = ln(x, p + "post_attention_layernorm")
                m = erf_gelu(lin(h2, p + "mlp.dense_h_to_4h"))
                if key in hooks and hooks[key][1] == pos:
                    m = m + hooks[key][0]
                x = x + lin(m, p + "mlp.dense_4h_to_h") + (a_out if cfg["use_parallel_residual"] else 0)
            key = "resid_out.%d" % l
            if key in hooks and hooks[key][1] == pos:
                x = x + hooks[key][0]
        if llama_like:
            hf = rms(x, W["model.norm.weight"])
            head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
            res.append(head @ hf)
        elif fam == "gptj":
            res.append(lin(ln(x, "transformer.ln_f"), "lm_head"))
        else:
            res.append(W["embed_out.weight"] @ ln(x, "gpt_neox.final_layer_norm"))
    return np.array(res)
