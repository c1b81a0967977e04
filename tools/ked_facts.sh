#!/bin/sh
# ked_facts.sh BUILD: rebuild models/ked-facts (`make ked-facts`). Deterministic for the seeds
# below; resumable: run it again after an interruption and training continues from the last
# checkpoint in $KF_RUN/run (bitwise as the uninterrupted run, for the same KF_THREADS).
# Inputs (override with the environment): KF_COUNTERFACT, KF_WIKITEXT. See docs/training.md.
set -e
BUILD=${1:-build}
KF_COUNTERFACT=${KF_COUNTERFACT:-data/counterfact_portability_gpt4.json}
KF_WIKITEXT=${KF_WIKITEXT:-data/wikitext2_raw_test.txt}
KF_RUN=${KF_RUN:-$BUILD/ked-facts}
KF_THREADS=${KF_THREADS:-2}
KF_OUT=${KF_OUT:-models/ked-facts}
mkdir -p "$KF_RUN"

# 1. corpus + manifest (516 of the 1031 records held out for paraphrase generalisation)
"$BUILD/tools/kf_corpus" --counterfact "$KF_COUNTERFACT" --wikitext "$KF_WIKITEXT" \
    --seed 1 --held-out 516 --copies 2 --wiki-lines 1500 \
    --corpus "$KF_RUN/corpus.txt" --tok-corpus "$KF_RUN/tok_corpus.txt" --manifest "$KF_RUN/manifest.jsonl"
# 2. byte-level BPE, 4096 tokens
"$BUILD/ked" tokenizer_train --vocab-size 4096 --out "$KF_RUN/tokenizer.json" "$KF_RUN/tok_corpus.txt"
# 3. train a fresh LLaMA (resumes from $KF_RUN/run/checkpoint-* when present): 2400 steps of
#    warmup + cosine from 2e-3 to 1e-4; d_ff 1792, wide enough for the MLP keys the
#    covariance-weighted editors need (docs/editing.md, "Quality on the fact model").
"$BUILD/ked" train --init --tokenizer "$KF_RUN/tokenizer.json" --data "$KF_RUN/corpus.txt" \
    --out "$KF_RUN/run" --threads "$KF_THREADS" \
    --layers 4 --d-model 256 --heads 8 --d-ff 1792 --max-pos 512 --init-seed 1 \
    --batch 16 --seq 128 --steps 2400 --warmup 100 --lr 2e-3 --min-lr 1e-4 --weight-decay 0.1 \
    --clip 1.0 --eval-frac 0.01 --eval-every 400 --ckpt-every 100 --keep 2 --seed 1 --log-every 10
# 4. install the last checkpoint as the model (HF directory, weights stored as f16 by `ked convert`:
#    15.2 MB; ked widens them to f32 on load) with its manifest
last=$(ls -d "$KF_RUN"/run/checkpoint-* | sed 's/.*checkpoint-//' | sort -n | tail -1)
"$BUILD/ked" convert --model "$KF_RUN/run/checkpoint-$last" --out "$KF_OUT" --dtype f16
cp "$KF_RUN/manifest.jsonl" "$KF_OUT/manifest.jsonl"
# 5. accuracy on the manifest
"$BUILD/tools/kf_eval" "$KF_OUT"
