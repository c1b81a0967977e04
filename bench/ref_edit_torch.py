#!/usr/bin/python3
"""ref_edit_torch.py: the PyTorch (CPU) side of bench_edit: the same ROME and FT-M edit of the same
random GPT-2-small-shaped model, computed as EasyEdit computes it (easyedit-reference.md 2.0-2.2;
rome/compute_u.py, rome/compute_v.py, rome_main.py, ft/ft_main.py target_new branch):

  ROME: k* = mean over the 21 context templates of the input of h.L.mlp.c_proj at the subject's
        last token (a full forward of the 21 rows, logits included, under no_grad); v*: 20 steps
        of Adam (lr 0.5) on delta added in place to h.L.mlp's output at every row's lookup token,
        each step a full forward of the 22 rows (templates + prompt + target[:-1], and
        "{subject} is a") through all 12 layers with logits at every position, log_softmax over
        all of them, nll + KL + weight decay, backward, Adam, clamp; k0, v0 from a full forward of
        the bare prompt; right = (v* - v0) / (k0 . u); W += u right^T. (v_star, the v* loop, is
        also ref_memit_torch.py's compute_z, on the block's output with its own loss logits.)
  FT-M: Adam (lr 5e-4) on h.0.mlp.c_proj's weight and bias (EasyEdit's substring match), 25
        steps, each a full forward of prompt + target with every logit, shifted cross-entropy on
        the target positions, backward, step, clamp to w0 +- 5e-4 (norm_constraint).

Nothing is cached between steps and no positions are skipped: that is EasyEdit's cost. The
model is written out in torch (HF GPT-2 semantics: Conv1D addmm, gelu_new, HF's eager attention
with the causal mask and the additive padding mask), the weights are read from the same
safetensors file ked uses (a small reader below), and the inputs (token ids, lookup indices,
target ids, hyperparameters) come from bench_edit's --inputs JSON, so both sides edit with
identical inputs. torch.set_num_threads(--threads).

Each method runs in a fresh child process (this script re-run with --only METHOD) so that its
peak RSS (ru_maxrss) is its own: one warm-up, then --iters timed edits (wall and CPU time,
time.process_time: all threads). Prints `torch_key value` lines; "pytorch: not installed" (and
exit 0) without torch.

    /usr/bin/python3 bench/ref_edit_torch.py --inputs build/bench/edit_inputs.json \
        [--dir build/bench/gpt2-small-random] [--iters 3] [--warmup 1] [--threads 2] [--only rome|ftm|all]
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("pytorch: not installed")
    sys.exit(0)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


# ---------------------------------------------------------------------------- safetensors reader
def st_read(path):
    """{name: float32 tensor} viewing one bytearray holding the whole file (read once)"""
    with open(path, "rb") as f:  # readinto: no second copy of the file in memory
        buf = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(buf)
    n = int.from_bytes(buf[:8], "little")
    header = json.loads(bytes(buf[8:8 + n]))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit("%s: %s is %s, expected F32" % (path, name, info["dtype"]))
        a, b = info["data_offsets"]
        t = torch.frombuffer(buf, dtype=torch.float32, count=(b - a) // 4, offset=base + a)
        out[name[len("transformer."):] if name.startswith("transformer.") else name] = t.view(info["shape"])
    return out, buf


def load_weights(d):
    """the model directory d as ked reads it: (its weights (st_read), its config.json); the tensors
    keep the file's buffer alive (torch.frombuffer holds a reference)"""
    cfg = json.load(open(os.path.join(d, "config.json")))
    P, _ = st_read(os.path.join(d, "model.safetensors"))
    return P, cfg


# ---------------------------------------------------------------------------- GPT-2 (HF semantics)
class GPT2:
    def __init__(self, P, cfg):
        self.P, self.cfg = P, cfg
        self.L, self.C, self.H = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
        self.eps = cfg["layer_norm_epsilon"]
        n = cfg["n_positions"]
        self.bias = torch.tril(torch.ones((n, n), dtype=torch.bool)).view(1, 1, n, n)
        for t in P.values():
            t.requires_grad_(False)

    def conv1d(self, x, name):  # transformers' Conv1D: addmm(bias, x, W (in, out))
        W, b = self.P[name + ".weight"], self.P[name + ".bias"]
        size_out = x.size()[:-1] + (W.size(-1),)
        return torch.addmm(b, x.view(-1, x.size(-1)), W).view(size_out)

    @staticmethod
    def gelu_new(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))

    def forward(self, ids, attn_mask, hook=None, pos=None, stop_layer=None, with_last=False):
        """HF GPT-2's forward: logits (B, T, V) at every position (with_last: and the last block's
        output before ln_f). hook(layer, name, x) -> x for name in {"mlp_key" (input of c_proj),
        "mlp_out" (the MLP's output), "block_out" (the block's output)}; pos: position ids
        (B, T) (default 0..T-1); stop_layer: return that layer's mlp_key (Trace(stop=True))"""
        P, C, H = self.P, self.C, self.H
        B, T = ids.shape
        D = C // H
        pe = P["wpe.weight"][pos] if pos is not None else P["wpe.weight"][torch.arange(T)].unsqueeze(0)
        x = P["wte.weight"][ids] + pe
        fmin = torch.finfo(x.dtype).min
        amask = (1.0 - attn_mask[:, None, None, :].to(x.dtype)) * fmin
        causal = self.bias[:, :, :T, :T]
        for l in range(self.L):
            p = "h.%d." % l
            h = F.layer_norm(x, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], self.eps)
            q, k, v = self.conv1d(h, p + "attn.c_attn").split(C, dim=2)
            q, k, v = (t.view(B, T, H, D).permute(0, 2, 1, 3) for t in (q, k, v))
            w = torch.matmul(q, k.transpose(-1, -2)) / torch.full([], D ** 0.5, dtype=x.dtype)
            w = torch.where(causal, w, torch.full([], fmin, dtype=x.dtype))
            w = torch.softmax(w + amask, dim=-1)
            a = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous().view(B, T, C)
            x = x + self.conv1d(a, p + "attn.c_proj")
            h = F.layer_norm(x, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], self.eps)
            key = self.gelu_new(self.conv1d(h, p + "mlp.c_fc"))
            if hook:
                key = hook(l, "mlp_key", key)
            if l == stop_layer:
                return key
            out = self.conv1d(key, p + "mlp.c_proj")
            if hook:
                out = hook(l, "mlp_out", out)
            x = x + out
            if hook:
                x = hook(l, "block_out", x)
        last = x
        x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], self.eps)
        logits = F.linear(x, P["wte.weight"])  # lm_head (tied), every position
        return (logits, last) if with_last else logits


def pad(seqs):
    """right padding (EasyEdit's tokenizer padding side for ROME) with an attention mask"""
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [s[0]] * (T - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs])
    return ids, mask


# ---------------------------------------------------------------------------- ROME (EasyEdit)
def reprs_at(model, seqs, lookups, layer, names):
    """get_reprs_at_idxs: a full forward (logits included) under no_grad, capturing the hooked
    activations at the lookup tokens"""
    ids, mask = pad(seqs)
    got = {}

    def hook(l, nm, x):
        if l == layer and nm in names:
            got[nm] = x[torch.arange(len(seqs)), torch.tensor(lookups)].detach().clone()
        return x
    with torch.no_grad():
        model.forward(ids, mask, hook)
    return [got[n] for n in names]


def v_star(model, req, hp, layer, module, loss_logits=None):
    """the v* optimisation that EasyEdit's rome/compute_v.py and memit/compute_z.py share
    (easyedit-reference.md 2.0), for req (bench_edit's / bench_memit's inputs: ctx, kl, target_ids):
    delta added to the output of `module` of `layer` (ROME: "mlp_out", mlp_module_tmp; MEMIT:
    "block_out", layer_module_tmp) at every row's lookup token, target_init the bare prompt's
    output there; each step a full forward of the rows (templates + prompt + target[:-1], and
    "{subject} is a") with the model's logits at every position (the KL term reads the KL row),
    the nll over log_softmax(loss_logits(logits, last, n_rewriting)) (last: the last block's
    output before ln_f; default: the model's logits, every row, as ROME reads them), nll + KL +
    weight decay, backward, Adam (v_lr), clamp (clamp_norm_factor). Returns v* = target_init +
    delta, the losses and each loss's perf_counter stamp."""
    target = req["target_ids"]
    target_ids = torch.tensor(target)
    rewriting = [c["ids"] + target[:-1] for c in req["ctx"]]
    kl_prompts = [req["kl"]["ids"]]
    all_seqs = rewriting + kl_prompts
    ids, mask = pad(all_seqs)
    rewriting_targets = torch.tensor(-100).repeat(len(rewriting), ids.shape[1])
    for i in range(len(rewriting)):
        ex_len = int(mask[i].sum())
        rewriting_targets[i, ex_len - len(target):ex_len] = target_ids
    lookup_idxs = [c["lookup"] for c in req["ctx"]] + [req["kl"]["lookup"]]
    delta = torch.zeros((model.C,), requires_grad=True)
    state = {"target_init": None, "kl_init": None}

    def edit_output_fn(l, nm, cur_out):
        if l == layer and nm == module:
            if state["target_init"] is None:
                state["target_init"] = cur_out[0, lookup_idxs[0]].detach().clone()
            for i, idx in enumerate(lookup_idxs):  # in place, as EasyEdit: both outputs are fresh tensors
                cur_out[i, idx, :] += delta
        return cur_out

    opt = torch.optim.Adam([delta], lr=hp["v_lr"])
    losses, stamps = [], []
    for it in range(hp["v_num_grad_steps"]):
        opt.zero_grad()
        logits, last = model.forward(ids, mask, edit_output_fn, with_last=True)
        kl_logits = torch.stack([logits[i - len(kl_prompts), idx, :]
                                 for i, idx in enumerate(lookup_idxs[-len(kl_prompts):])], dim=0)
        kl_log_probs = F.log_softmax(kl_logits, dim=1)
        if state["kl_init"] is None:
            state["kl_init"] = kl_log_probs.detach().clone()
        log_probs = torch.log_softmax(loss_logits(logits, last, len(rewriting)) if loss_logits else logits,
                                      dim=2)
        loss = torch.gather(log_probs, 2, torch.where(rewriting_targets != -100, rewriting_targets,
                                                      0).unsqueeze(2)).squeeze(2)
        m = (rewriting_targets != -100).float()
        nll_loss_each = -(loss * m).sum(1) / target_ids.size(0)
        nll_loss = nll_loss_each.mean()
        kl_loss = hp["kl_factor"] * F.kl_div(state["kl_init"], kl_log_probs, log_target=True,
                                             reduction="batchmean")
        weight_decay = hp["v_weight_decay"] * (torch.norm(delta) / torch.norm(state["target_init"]) ** 2)
        loss = nll_loss + kl_loss + weight_decay
        losses.append(loss.item())
        stamps.append(time.perf_counter())
        if loss < 5e-2:
            break
        if it == hp["v_num_grad_steps"] - 1:
            break
        loss.backward()
        opt.step()
        max_norm = hp["clamp_norm_factor"] * state["target_init"].norm()
        if delta.norm() > max_norm:
            with torch.no_grad():
                delta[...] = delta * max_norm / delta.norm()
    return state["target_init"] + delta.detach(), losses, stamps


def compute_v(model, inp, hp):
    """EasyEdit rome/compute_v.py: v* on h.layer.mlp's output, the loss on the model's logits"""
    return v_star(model, inp, hp, hp["layer"], "mlp_out")


def rome_edit(model, inp, hp):
    layer = hp["layer"]
    ctx = [c["ids"] for c in inp["ctx"]]
    lks = [c["lookup"] for c in inp["ctx"]]
    t0 = time.perf_counter()
    (kstar,) = reprs_at(model, ctx, lks, layer, ["mlp_key"])
    u = kstar.mean(0)
    u = u / u.norm()
    t1 = time.perf_counter()
    vstar, losses, stamps = compute_v(model, inp, hp)
    t2 = time.perf_counter()
    k0, v0 = reprs_at(model, [inp["bare"]["ids"]], [inp["bare"]["lookup"]], layer, ["mlp_key", "mlp_out"])
    right = (vstar - v0[0]) / torch.dot(k0[0], u)
    upd = u.unsqueeze(1) @ right.unsqueeze(0)  # Conv1D layout (in = d_ff, out = d_model)
    W = model.P["h.%d.mlp.c_proj.weight" % layer]
    with torch.no_grad():
        orig = W.detach().clone()
        W[...] += upd
    t3 = time.perf_counter()
    phases = {"kstar": t1 - t0, "vstar": t2 - t1, "k0v0_update": t3 - t2,
              "vstar_until_first_loss": stamps[0] - t1,
              "vstar_per_step_after_first": (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)}
    return orig, W, losses, phases


# ---------------------------------------------------------------------------- FT-M (EasyEdit)
def ftm_edit(model, inp, hp):
    names = ["h.%d.mlp.c_proj.weight" % hp["layer"]]
    if hp.get("bias", 1):
        names.append("h.%d.mlp.c_proj.bias" % hp["layer"])
    t0 = time.perf_counter()
    weights = {n: model.P[n] for n in names}
    weights_copy = {k: v.detach().clone() for k, v in weights.items()}
    opt = torch.optim.Adam([v for _, v in weights.items()], lr=hp["lr"], weight_decay=hp["weight_decay"])
    for n, w in model.P.items():
        w.requires_grad = n in weights
    prompt = inp["bare"]["ids"]
    ids, mask = pad([prompt + inp["target_ids"]])
    prompt_len = [len(prompt)]
    T = ids.size(1)
    label_mask = torch.tensor([[False] * n + [True] * (T - n) for n in prompt_len])
    losses, stamps = [], []
    for it in range(hp["num_steps"]):
        opt.zero_grad()
        logits = model.forward(ids, mask)
        shift_logits = logits[..., :-1, :].contiguous()
        shift_labels = ids[..., 1:].contiguous()
        loss = F.cross_entropy(shift_logits.view(-1, shift_logits.size(-1)), shift_labels.view(-1),
                               reduction="none").view(1, -1)
        loss = ((loss * label_mask[:, 1:]).sum(1) / label_mask[:, 1:].sum(1)).mean()
        losses.append(loss.item())
        stamps.append(time.perf_counter())
        if loss.item() >= 1e-2:
            loss.backward()
            opt.step()
        if hp["norm_constraint"] > 0:
            eps = hp["norm_constraint"]
            with torch.no_grad():
                for k, v in weights.items():
                    v[...] = torch.clamp(v, min=weights_copy[k] - eps, max=weights_copy[k] + eps)
        if loss.item() < 1e-2:  # the epoch's mean loss (one batch)
            break
    deltas = {k: (weights[k] - weights_copy[k]).detach() for k in weights}
    with torch.no_grad():
        for k, v in weights.items():
            v[...] = weights_copy[k]
    for w in model.P.values():
        w.requires_grad = False
    t1 = time.perf_counter()
    phases = {"until_first_loss": stamps[0] - t0,
              "per_step_after_first": (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)}
    return deltas, losses, phases


# ---------------------------------------------------------------------------- driver
def child(a):
    key = {"rome": "torch_rome", "ftm": "torch_ftm"}[a.only]
    torch.set_num_threads(a.threads)
    rss0 = status_kb("VmRSS")
    t0 = time.perf_counter()
    P, cfg = load_weights(a.dir)
    load_s = time.perf_counter() - t0
    wbytes = sum(t.numel() * 4 for t in P.values())
    hwm_load = status_kb("VmHWM")
    model = GPT2(P, cfg)
    inp = json.load(open(a.inputs))
    hp = inp["rome" if a.only == "rome" else "ftm"]
    print("%s_threads %d (torch %s, interop %d)" % (key, torch.get_num_threads(), torch.__version__,
                                                     torch.get_num_interop_threads()))
    print("%s_load_s %.3f" % (key, load_s))
    print("%s_loadavg_start %s" % (key, loadavg()))
    sys.stdout.flush()
    wall, cpu, ph = [], [], []
    n = a.warmup + a.iters
    for k in range(n):
        c0, w0 = time.process_time(), time.perf_counter()
        if a.only == "rome":
            orig, W, losses, phases = rome_edit(model, inp, hp)
            dt, dc = time.perf_counter() - w0, time.process_time() - c0
            with torch.no_grad():
                W[...] = orig  # restore the weights, outside the timing
            del orig
        else:
            deltas, losses, phases = ftm_edit(model, inp, hp)
            dt, dc = time.perf_counter() - w0, time.process_time() - c0
            del deltas
        warm = k < a.warmup
        print("%s_%s_%d_s %.3f (cpu %.3f s, %d steps)" % (key, "warmup" if warm else "iter",
                                                          k if warm else k - a.warmup, dt, dc, len(losses)))
        sys.stdout.flush()
        if not warm:
            wall.append(dt)
            cpu.append(dc)
            ph.append(phases)
    print("%s_loadavg_end %s" % (key, loadavg()))
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB
    print("%s_seconds %.3f" % (key, statistics.median(wall)))
    print("%s_seconds_min %.3f" % (key, min(wall)))
    print("%s_cpu_seconds %.3f" % (key, statistics.median(cpu)))
    print("%s_timed_edits %d" % (key, len(wall)))
    print("%s_steps %d" % (key, len(losses)))
    print("%s_loss_first %.4f\n%s_loss_last %.4f" % (key, losses[0], key, losses[-1]))
    for p in ph[0]:
        print("%s_phase_%s_s %.4f" % (key, p, statistics.median(x[p] for x in ph)))
    print("%s_weight_mb %.1f" % (key, wbytes / 1e6))
    print("%s_rss_before_load_mb %.1f" % (key, rss0 * 1024 / 1e6))
    print("%s_load_peak_rss_mb %.1f" % (key, hwm_load * 1024 / 1e6))
    print("%s_peak_rss_mb %.1f" % (key, hwm * 1024 / 1e6))
    print("%s_peak_rss_over_weights %.3f" % (key, hwm * 1024 / wbytes))
    print("%s_edit_rss_growth_over_weights %.3f" % (key, (hwm - hwm_load) * 1024 / wbytes))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", default="build/bench/edit_inputs.json")
    ap.add_argument("--dir", default="build/bench/gpt2-small-random")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="all", choices=["rome", "ftm", "all"])
    a = ap.parse_args()
    if a.only != "all":
        child(a)
        return
    print("ref_edit_torch: torch %s, %d threads, inputs %s, model %s" % (torch.__version__, a.threads,
                                                                        a.inputs, a.dir))
    sys.stdout.flush()
    status = 0
    for m in ("rome", "ftm"):
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--inputs", a.inputs, "--dir", a.dir,
                            "--iters", str(a.iters), "--warmup", str(a.warmup), "--threads",
                            str(a.threads), "--only", m])
        status |= r.returncode
    sys.exit(status)


if __name__ == "__main__":
    main()
