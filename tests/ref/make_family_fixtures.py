"""Write the tiny random fixtures of the families beyond LLaMA and GPT-2, with their PyTorch
reference outputs (same checks and expected.safetensors layout as make_model_fixtures.py).

    /usr/bin/python3 tests/ref/make_family_fixtures.py

Writes tests/data/<model>/{config.json, model.safetensors, expected.safetensors} for
tiny-llama3, tiny-mistral, tiny-qwen2, tiny-gptj, tiny-neox (parallel residual) and
tiny-neox-seq (use_parallel_residual false). The torch models are in family_ref.py; each one is
cross-checked against the independent numpy per-token implementation there, finite differences
and gradcheck before anything is written. Deterministic (fixed seeds).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import family_ref as fr  # noqa: E402
import make_model_fixtures as mf  # noqa: E402

MODELS = [  # (dir, family, config, seed)
    ("tiny-llama3", "llama3", fr.llama3_config(), 4000),
    ("tiny-mistral", "mistral", fr.mistral_config(), 5100),
    ("tiny-qwen2", "qwen2", fr.qwen2_config(), 6100),
    ("tiny-gptj", "gptj", fr.gptj_config(), 7100),
    ("tiny-neox", "neox", fr.neox_config(True), 8000),
    ("tiny-neox-seq", "neox", fr.neox_config(False), 9000),
]


def main():
    torch.set_default_dtype(torch.float64)
    only = sys.argv[1:]
    for name, fam, cfg, seed in MODELS:
        if only and name not in only:
            continue
        W = fr.random_weights(fam, cfg, seed)
        fwd = (lambda f: lambda P, c, i, l, h=None: fr.forward(f, P, c, i, l, h))(fam)
        npf = (lambda f: lambda W_, c, i, h=None: fr.np_tokens(f, W_, c, i, h))(fam)
        mf.build(name, fam, cfg, W, seed, fwd=fwd, npf=npf,
                 generator="tests/ref/make_family_fixtures.py")
    if mf.FAILS:
        print("FAILED CHECKS:", mf.FAILS)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
