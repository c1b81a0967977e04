"""Where a MEMIT batch on models/ked-facts loses its efficacy (docs/editing.md, "Quality on the
fact model"): an independent PyTorch re-computation of one MEMIT batch at one layer, then the
bare prompts scored with the weight update applied at chosen positions only.

    /usr/bin/python3 tools/kf_memit_positions.py STATS.kstats [--layer 0] [--lam 256] [--n 20]

STATS.kstats: ked's statistics of that layer (`ked stats --model models/ked-facts --layers 0
--corpus data/kedfacts_text_100k.txt --stats-tokens 100000`; `ked stats --list` shows the files).
Needs build/ked (for tokenising) and Debian's python3-torch. The requests are the first n of
tests/data/eval/counterfact_kedfacts_known200.json.

What it computes, as EasyEdit's MEMIT does (easyedit-reference.md §2.4), for a single layer l:
  z_j  = compute_z at the output of layer l (40 Adam steps, lr 0.5, weight decay 0.5, clamp 4,
         KL 0.0625; rows: "{}" and five fixed prefixes, teacher-forced target, "{subject} is a")
  K    = the mlp_key of layer l at the subject's last token, mean over the six templates
  dW   = (z - cur) K^T (K K^T + lam C)^-1        (float64)
and then the efficacy (P(new) > P(true), mean per-token NLL) of the bare prompts with dW added
to the MLP's output of layer l at: the subject's last token only ("lookup"), every position up to
it ("upto"), every position ("all"; what an edited model does), and the ROME scores ES / PS / NS
of the edited model. The templates are fixed texts, not sampled, so the figures differ from
`ked eval`'s by a case or two.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
from model_ref import st_read  # noqa: E402
import edit_ref  # noqa: E402

edit_ref.DT = torch.float32  # its rotary tables in the weights' dtype

MODEL = os.path.join(ROOT, "models", "ked-facts")
TEMPLATES = ["{}", "The first time I saw the film. {}", "Therefore, the city was. {}",
             "Because of this, he said. {}", "I think that the. {}", "You can see the. {}"]
_tok_cache = {}


def tok(text):
    """ids of text (no BOS), by ked's tokenizer of the model"""
    if text not in _tok_cache:
        out = subprocess.run([os.path.join(ROOT, "build", "ked"), "tokenize", "--model", MODEL, "--ids",
                              "--no-special", text], capture_output=True, text=True, check=True).stdout
        line = [s for s in out.split("\n") if s and not s.startswith("tokenizer")]
        _tok_cache[text] = [int(x) for x in line[0].split()] if line else []
    return _tok_cache[text]


def llama(P, cfg, seqs, hook=None):
    """logits (B, T, V) of right-padded id lists: tests/ref/edit_ref.py's LLaMA forward, in float32;
    hook(l, name, x) may return a new x for name in mlp_key, mlp_out, resid_out"""
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [s[0]] * (T - len(s)) for s in seqs])
    return edit_ref.llama(P, cfg, ids, [len(s) for s in seqs], hook)


def case_rows(rec):
    """the template rows of a request: (ids, index of the subject's last token)"""
    rr = rec["requested_rewrite"]
    pr, subj = rr["prompt"], rr["subject"]
    rows = []
    for t in TEMPLATES:
        pre = t[:t.index("{}")] + pr[:pr.index("{}")] + subj
        rows.append((tok(t.format(pr).format(subj)), len(tok(pre)) - 1))
    return dict(rows=rows, kl=(tok(subj + " is a"), len(tok(subj)) - 1), tgt=tok(" " + rr["target_new"]["str"]))


def at(P, cfg, rows, layer, name):
    """activation `name` of `layer` at each row's index (n, width)"""
    got = {}

    def hook(l, nm, x):
        if l == layer and nm == name:
            got["x"] = x[torch.arange(len(rows)), torch.tensor([r[1] for r in rows])].detach()
        return x
    llama(P, cfg, [r[0] for r in rows], hook)
    return got["x"]


def compute_z(P, cfg, cases, layer, steps=40, lr=0.5, wd=0.5, clamp=4.0, klf=0.0625):
    """EasyEdit's compute_z for each request (a delta each, in one batch): z = init + delta"""
    seqs, lks, owner = [], [], []
    for j, c in enumerate(cases):
        for ids, lk in c["rows"]:
            seqs.append(ids + c["tgt"][:-1]); lks.append(lk); owner.append(j)
    klrow0 = len(seqs)
    for j, c in enumerate(cases):
        seqs.append(c["kl"][0]); lks.append(c["kl"][1]); owner.append(j)
    n, R = len(cases), len(seqs)
    first = torch.tensor([owner.index(j) for j in range(n)])
    # the loss's gather: (row, position, token, weight) of every target token of the template rows
    gr, gp, gt, gw = [], [], [], torch.zeros(n, 0)
    Wl = []
    for r in range(klrow0):
        c = cases[owner[r]]
        T, L = len(c["tgt"]), len(seqs[r])
        for q in range(T):
            gr.append(r); gp.append(L - T + q); gt.append(c["tgt"][q])
            w = torch.zeros(n); w[owner[r]] = 1.0 / (T * len(c["rows"])); Wl.append(w)
    gw = torch.stack(Wl, 1)
    delta = torch.zeros(n, cfg["hidden_size"], requires_grad=True)
    rows_t, lks_t, own_t = torch.arange(R), torch.tensor(lks), torch.tensor(owner)
    st = {}

    def hook(l, nm, x):
        if l == layer and nm == "resid_out":
            if "init" not in st:
                st["init"] = x[rows_t, lks_t].detach()[first]
            x = x.clone()
            x[rows_t, lks_t] += delta[own_t]
        return x
    opt = torch.optim.Adam([delta], lr=lr)
    done = torch.zeros(n, dtype=torch.bool)
    klr = torch.arange(klrow0, R)
    for it in range(steps):
        opt.zero_grad()
        lp = torch.log_softmax(llama(P, cfg, seqs, hook), -1)
        nll = -(gw @ lp[torch.tensor(gr), torch.tensor(gp), torch.tensor(gt)])
        klp = lp[klr, lks_t[klr]]
        if it == 0:
            st["kl0"] = klp.detach()
        kl = klf * (klp.exp() * (klp - st["kl0"])).sum(1)
        loss = nll + kl + wd * delta.norm(dim=1) / st["init"].norm(dim=1) ** 2
        done = done | (loss.detach() < 5e-2)
        if it == steps - 1 or done.all():
            break
        (loss * (~done).float()).sum().backward()
        keep = delta.detach().clone()
        opt.step()
        with torch.no_grad():
            delta[done] = keep[done]
            mx, nn_ = clamp * st["init"].norm(dim=1), delta.norm(dim=1)
            delta *= torch.where(nn_ > mx, mx / nn_, torch.ones_like(nn_)).unsqueeze(1)
    return (st["init"] + delta).detach()


def nll(P, cfg, prompt_ids, tgt, layer=None, dW=None, where=None, lk=None):
    """mean per-token NLL of tgt after prompt_ids; dW added at `where` positions of layer"""
    seq = prompt_ids + tgt[:-1]
    hook = None
    if dW is not None:
        m = torch.zeros(len(seq), 1)
        if where == "lookup":
            m[lk] = 1
        elif where == "upto":
            m[:lk + 1] = 1
        else:
            m[:] = 1
        st = {}

        def hook(l, nm, x):
            if l == layer and nm == "mlp_key":
                st["k"] = x
            if l == layer and nm == "mlp_out":
                x = x + m * (st["k"] @ dW.T)
            return x
    lp = torch.log_softmax(llama(P, cfg, [seq], hook), -1)[0]
    pos = torch.arange(len(prompt_ids) - 1, len(seq))
    return -lp[pos, torch.tensor(tgt)].mean().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stats")
    ap.add_argument("--layer", type=int, default=0)
    ap.add_argument("--lam", type=float, default=256.0)
    ap.add_argument("--n", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(1)
    W, _ = st_read(os.path.join(MODEL, "model.safetensors"))
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    P = {k: torch.tensor(v.astype(np.float32)) for k, v in W.items()}
    raw = open(a.stats, "rb").read()
    Fd = int(np.frombuffer(raw[8:16], dtype=np.int64)[0])
    C = torch.tensor(np.frombuffer(raw[32:], dtype=np.float64).reshape(Fd, Fd).copy())
    recs = json.load(open(os.path.join(ROOT, "tests", "data", "eval", "counterfact_kedfacts_known200.json")))[:a.n]
    cases = [case_rows(r) for r in recs]
    z = compute_z(P, cfg, cases, a.layer)
    K = torch.stack([at(P, cfg, c["rows"], a.layer, "mlp_key").mean(0) for c in cases]).double()  # (n, F)
    cur = at(P, cfg, [c["rows"][0] for c in cases], a.layer, "resid_out").double()              # (n, C)
    dW = ((z.double() - cur).T @ torch.linalg.solve(a.lam * C + K.T @ K, K.T).T).float()         # (C, F)
    print("layer %d, lambda %g, %d requests, statistics %s" % (a.layer, a.lam, a.n, os.path.basename(a.stats)))
    for where in ("lookup", "upto", "all"):
        ok = []
        for r, c in zip(recs, cases):
            ids, lk = c["rows"][0]
            tt = tok(" " + r["requested_rewrite"]["target_true"]["str"])
            ok.append(nll(P, cfg, ids, c["tgt"], a.layer, dW, where, lk) <
                      nll(P, cfg, ids, tt, a.layer, dW, where, lk))
        print("  efficacy with dW at %-6s positions: %.1f" % (where, 100 * np.mean(ok)))
    Pe = dict(P)
    name = "model.layers.%d.mlp.down_proj.weight" % a.layer
    Pe[name] = Pe[name] + dW
    es, ps, ns = [], [], []
    for r in recs:
        rr = r["requested_rewrite"]
        tn, tt = tok(" " + rr["target_new"]["str"]), tok(" " + rr["target_true"]["str"])
        win = [nll(Pe, cfg, tok(p), tn) < nll(Pe, cfg, tok(p), tt)
               for p in [rr["prompt"].format(rr["subject"])] + r["paraphrase_prompts"] + r["neighborhood_prompts"]]
        np_ = len(r["paraphrase_prompts"])
        es.append(win[0]); ps.append(np.mean(win[1:1 + np_])); ns.append(1 - np.mean(win[1 + np_:]))
    print("  edited model: ES %.1f  PS %.1f  NS %.1f" % (100 * np.mean(es), 100 * np.mean(ps), 100 * np.mean(ns)))


if __name__ == "__main__":
    main()
