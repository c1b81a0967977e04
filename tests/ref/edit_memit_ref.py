"""Reference for ked's second-moment statistics and the covariance-weighted updates
(tests/test_edit_memit_ref.c), written from EasyEdit's layer_stats / runningstats.SecondMoment,
memit_main.py, emmet_main.py, AlphaEdit_main.py and rome/compute_u.py (easyedit-reference.md
§2.0, §2.2, §2.4, §2.6, §2.8). Run with Debian's interpreter: /usr/bin/python3 tests/ref/edit_memit_ref.py

1. statistics: C = sum k k^T / count of mlp_key (the input of down_proj) at every token of a few
   id documents of different lengths on tests/data/tiny-llama, layers 0 and 1, float64 (torch).
2. the updates given the same keys K, residuals R and statistics C (layer 1's), in float64:
   ROME u = C^-1 k* / |C^-1 k*|; MEMIT dW = R (lambda C + K K^T)^-1 K)^T; EMMET
   dW = R D^-1 (C'^-1 K)^T, C' = lambda C + unl I, D = K^T C'^-1 K + emmet_lambda I;
   AlphaEdit dW^T = (P (K K^T + cache) + L2 I)^-1 P K R^T with P = U0 U0^T from the
   eigenvectors of C with eigenvalue < threshold.
3. an EasyEdit-layout .npz (np.savez: mom2.constructor, mom2.count, mom2.mom2, sample_size) of
   the layer-1 statistics as float32 sums, and the same with np.savez_compressed (an error in ked).
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_ref import st_read, st_write  # noqa: E402
import edit_ref  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
HP = dict(lam=7.5, emmet_lambda=0.1, unl=0.5, thr=0.05, L2=0.3)


def main():
    d = os.path.join(ROOT, "tests", "data", "tiny-llama")
    W, _ = st_read(os.path.join(d, "model.safetensors"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    P = {k: torch.tensor(v.astype(np.float64)) for k, v in W.items()}
    rng = np.random.RandomState(7)
    lens = [9, 1, 17, 64, 5, 30, 2]
    docs = [[1] + list(rng.randint(2, 96, size=n - 1)) for n in lens]
    F = cfg["intermediate_size"]
    sums = {0: torch.zeros(F, F, dtype=torch.float64), 1: torch.zeros(F, F, dtype=torch.float64)}
    count = 0
    for doc in docs:  # one document at a time: no padding at all
        keys = {}

        def hook(l, name, x):
            if name == "mlp_key":
                keys[l] = x[0].clone()
            return x
        edit_ref.llama(P, cfg, torch.tensor([doc]), [len(doc)], hook)
        for l in (0, 1):
            sums[l] += keys[l].T @ keys[l]
        count += len(doc)
    C = {l: sums[l] / count for l in (0, 1)}
    out = {}
    T = max(lens)
    out["docs.ids"] = np.array([x + [0] * (T - len(x)) for x in docs], np.int64)
    out["docs.len"] = np.array(lens, np.int64)
    out["stats.C0"] = C[0].numpy().astype(np.float32)
    out["stats.C1"] = C[1].numpy().astype(np.float32)
    out["stats.count"] = np.array([count], np.int64)

    # the updates, layer 1's C
    Cm = C[1]
    n, Cd = 3, cfg["hidden_size"]
    g = torch.Generator().manual_seed(3)
    K = torch.randn(F, n, generator=g, dtype=torch.float64) * Cm.diagonal().sqrt().view(F, 1)
    R = torch.randn(Cd, n, generator=g, dtype=torch.float64)
    kstar = K[:, 0].clone()
    cache_keys = torch.randn(F, 4, generator=g, dtype=torch.float64) * 0.5
    out["in.K"] = K.numpy().astype(np.float32)
    out["in.R"] = R.numpy().astype(np.float32)
    out["in.cache_keys"] = cache_keys.numpy().astype(np.float32)
    # recompute in float64 from the float32 values ked reads
    K = torch.tensor(out["in.K"].astype(np.float64))
    R = torch.tensor(out["in.R"].astype(np.float64))
    ck = torch.tensor(out["in.cache_keys"].astype(np.float64))
    Cm = torch.tensor(out["stats.C1"].astype(np.float64))
    kstar = K[:, 0]
    # ROME compute_u with mom2_adjustment
    u = torch.linalg.solve(Cm, kstar)
    out["rome.u"] = (u / u.norm()).numpy().astype(np.float32)
    # MEMIT
    adj = torch.linalg.solve(HP["lam"] * Cm + K @ K.T, K)
    out["memit.dW"] = (R @ adj.T).numpy().astype(np.float32)
    # EMMET
    Cp = HP["lam"] * Cm + HP["unl"] * torch.eye(F, dtype=torch.float64)
    Cinv = torch.linalg.inv(Cp)
    D = K.T @ Cinv @ K + HP["emmet_lambda"] * torch.eye(n, dtype=torch.float64)
    out["emmet.dW"] = (R @ torch.linalg.inv(D) @ K.T @ Cinv).numpy().astype(np.float32)
    # AlphaEdit
    Uf, S, _ = torch.linalg.svd(Cm)
    U0 = Uf[:, S < HP["thr"]]
    Pn = U0 @ U0.T
    dWt = torch.linalg.solve(Pn @ (K @ K.T + ck @ ck.T) + HP["L2"] * torch.eye(F, dtype=torch.float64),
                             Pn @ K @ R.T)
    out["alphaedit.dW"] = dWt.T.numpy().astype(np.float32)
    out["alphaedit.null_dim"] = np.array([U0.shape[1]], np.int64)
    print("count", count, "null space", U0.shape[1], "of", F, "eigen", S.min().item(), S.max().item())
    meta = {"generator": "tests/ref/edit_memit_ref.py", "precision": "float64, stored float32",
            "hp": json.dumps(HP)}
    path = os.path.join(ROOT, "tests", "data", "edit", "memit_ref.safetensors")
    st_write(path, out, meta)
    # EasyEdit's npz layout (float32 sums, as its SecondMoment holds them)
    mom2 = sums[1].numpy().astype(np.float32)
    npz = os.path.join(ROOT, "tests", "data", "edit", "stats_easyedit.npz")
    with open(npz, "wb") as f:
        np.savez(f, **{"mom2.constructor": np.array("util.runningstats.SecondMoment()"),
                       "mom2.count": np.array(count), "mom2.mom2": mom2,
                       "sample_size": np.array(len(docs))})
    with open(npz.replace(".npz", "_compressed.npz"), "wb") as f:
        np.savez_compressed(f, **{"mom2.count": np.array(count), "mom2.mom2": mom2[:4, :4]})
    print("wrote", os.path.normpath(path), os.path.normpath(npz))


if __name__ == "__main__":
    main()
