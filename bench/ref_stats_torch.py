#!/usr/bin/python3
"""ref_stats_torch.py: the PyTorch (CPU) side of bench_memit's statistics: the second moment of
the MLP keys (the input of h.L.mlp.c_proj) of the MEMIT layers over the same documents, computed
as EasyEdit's layer_stats does it (easyedit-reference.md 2.0; rome/layer_stats.py,
util/runningstats.py SecondMoment), one pass per layer:

  for each layer L: the documents in groups of 100 (EasyEdit's loader batch), each group sorted
  by length, longest first, cut into batches of at most batch_tokens = 3 * n_positions padded
  tokens (length_collation), left-padded with id 0 (make_padded_batch) with position ids and an
  attention mask; a forward under no_grad that stops at h.L.mlp.c_proj (Trace(stop=True): layers
  0..L-1, then layer L's attention, ln_2, c_fc and GELU); the key at every unmasked position
  (flatten_masked_batch), float32; mom2 += X^T X (a.t().mm(a)), count += rows.

The documents are bench_memit's token ids (--ids: GPT-2 tokenizer, each truncated to 1024), the
weights the same safetensors file (bench/ref_edit_torch.py's reader and GPT-2), so both sides sum
the same tokens; --check DIR compares C = mom2 / count with ked's .kstats files there (float64).
Prints `torch_stats_key value` lines. torch.set_num_threads(--threads).

    /usr/bin/python3 bench/ref_stats_torch.py --ids build/bench/memit_stats_ids.json \
        [--dir build/bench/gpt2-small-random] [--threads 2] [--check build/bench/memit-cache]
"""
import argparse
import glob
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import torch
    import torch.nn.functional as F
    import numpy as np
    from ref_edit_torch import GPT2, load_weights, loadavg, status_kb
except ImportError:
    print("pytorch: not installed")
    sys.exit(0)


def length_collation(items, token_size):
    """EasyEdit's length_collation: sorted longest first, batches of <= token_size padded tokens"""
    items = sorted(items, key=lambda x: -len(x))
    batches, batch, width = [], [], 0
    for it in items:
        if len(it) == 0:
            break
        if width * (len(batch) + 1) > token_size:
            batches.append(batch)
            batch, width = [], 0
        if not batch:
            width = len(it)
        batch.append(it)
    if batch:
        batches.append(batch)
    return batches


def padded(batch):
    """make_padded_batch: left padding with 0 for input_ids, attention_mask and position_ids"""
    T = max(len(d) for d in batch)
    ids = torch.tensor([[0] * (T - len(d)) + d for d in batch])
    mask = torch.tensor([[0] * (T - len(d)) + [1] * len(d) for d in batch])
    pos = torch.tensor([[0] * (T - len(d)) + list(range(len(d))) for d in batch])
    return ids, mask, pos


def layer_stats(model, docs, layer, batch_tokens, group=100):
    mom2, count = None, 0
    with torch.no_grad():
        for g in range(0, len(docs), group):
            for batch in length_collation(docs[g:g + group], batch_tokens):
                ids, mask, pos = padded(batch)
                key = model.forward(ids, mask, pos=pos, stop_layer=layer)  # stops at c_proj's input
                feats = key[mask.bool()].to(torch.float32)  # flatten_masked_batch
                if mom2 is None:
                    mom2 = feats.new_zeros(feats.shape[1], feats.shape[1])
                count += feats.shape[0]
                mom2 += feats.t().mm(feats)
    return mom2, count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", default="build/bench/memit_stats_ids.json")
    ap.add_argument("--dir", default="build/bench/gpt2-small-random")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check", default="", help="ked's cache directory (.kstats) to compare with")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    key = "torch_stats"
    t0 = time.perf_counter()
    P, cfg = load_weights(a.dir)
    model = GPT2(P, cfg)
    inp = json.load(open(a.ids))
    docs, layers = inp["docs"], inp["layers"]
    ntok = sum(len(d) for d in docs)
    batch_tokens = 3 * cfg["n_positions"]
    print("%s_threads %d (torch %s)" % (key, torch.get_num_threads(), torch.__version__))
    print("%s_load_s %.3f" % (key, time.perf_counter() - t0))
    print("%s_docs %d\n%s_tokens %d\n%s_batch_tokens %d" % (key, len(docs), key, ntok, key, batch_tokens))
    print("%s_loadavg_start %s" % (key, loadavg()))
    sys.stdout.flush()
    total, total_cpu, res = 0.0, 0.0, {}
    for layer in layers:
        c0, w0 = time.process_time(), time.perf_counter()
        mom2, count = layer_stats(model, docs, layer, batch_tokens)
        dt, dc = time.perf_counter() - w0, time.process_time() - c0
        total += dt
        total_cpu += dc
        res[layer] = (mom2, count)
        print("%s_L%d_s %.3f (cpu %.3f s, %d tokens, %.1f tok/s)" % (key, layer, dt, dc, count, count / dt))
        sys.stdout.flush()
    print("%s_loadavg_end %s" % (key, loadavg()))
    print("%s_seconds %.3f\n%s_cpu_seconds %.3f" % (key, total, key, total_cpu))
    print("%s_tok_s_per_layer_pass %.1f" % (key, ntok * len(layers) / total))
    print("%s_s_per_1000_tok_per_layer %.3f" % (key, 1000.0 * total / (ntok * len(layers))))
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("%s_peak_rss_mb %.1f" % (key, hwm * 1024 / 1e6))
    if a.check:
        worst = 0.0
        for layer in layers:
            files = glob.glob(os.path.join(a.check, "*-L%d-*.kstats" % layer))
            if not files:
                print("%s_check_L%d no .kstats file in %s" % (key, layer, a.check))
                continue
            f = max(files, key=os.path.getmtime)
            raw = np.fromfile(f, dtype=np.uint8)
            dim, cnt = np.frombuffer(raw[8:24].tobytes(), dtype=np.int64)
            ked = np.frombuffer(raw[32:].tobytes(), dtype=np.float64).reshape(dim, dim)
            mom2, count = res[layer]
            ref = mom2.double().numpy() / count
            rel = np.abs(ked - ref).max() / np.abs(ref).max()
            worst = max(worst, rel)
            print("%s_check_L%d count ked %d torch %d, max |C_ked - C_torch| / max |C| %.2e"
                  % (key, layer, cnt, count, rel))
        print("%s_check_max_rel %.2e" % (key, worst))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
