#!/bin/sh
# bench/run.sh BUILD: the benchmarks `make bench` runs, then one summary table.
#   1. BUILD/bench/bench_sgemm        the machine's sgemm peak (the denominator of every share)
#   2. BUILD/bench/bench_model        ked on a random GPT-2-small, B x T = 8 x 128, 2 threads:
#                                     load time and peak RSS, forward and forward+backward
#                                     tokens/s, GFLOP/s, share of peak; KV-cached decode tokens/s
#   3. bench/ref_model_torch.py       the same work in PyTorch (CPU), same threads, same peak
#   4. bench/bench_tokenizer.sh       when present
# Environment: BENCH_ITERS (timed iterations, default 3), BENCH_THREADS (default 2),
# BENCH_TORCH=0 skips PyTorch, BENCH_BREAKDOWN=N adds bench_model's per-kernel breakdown
# (N replays), BENCH_DECODE (new tokens to decode, default 128). OPENBLAS_CORETYPE and the
# like are left as the environment sets them.
# Full outputs go to BUILD/bench/*.log. Takes about 4 minutes on an idle 2-core machine (more
# when the machine is shared: the numbers then vary, see docs/performance.md).
set -u
BUILD=${1:-build}
B="$BUILD/bench"
ITERS=${BENCH_ITERS:-3}
THREADS=${BENCH_THREADS:-2}
PY=/usr/bin/python3
status=0

# value KEY FILE: the value of a `key value` line
value() { awk -v k="$1" '$1 == k { print $2; exit }' "$2"; }

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')," \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, load average $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== bench_sgemm"
"$B/bench_sgemm" | tee "$B/sgemm.log"
grep -q '^sgemm_peak_gflops ' "$B/sgemm.log" || { echo "bench_sgemm failed"; status=1; }
PEAK=$(value sgemm_peak_gflops "$B/sgemm.log")

echo "== bench_model (threads $THREADS, $ITERS iterations)"
set -- --peak "${PEAK:-0}" --iters "$ITERS" --threads "$THREADS" --dir "$B/gpt2-small-random" \
    --decode "${BENCH_DECODE:-128}"
[ -n "${BENCH_BREAKDOWN:-}" ] && set -- "$@" --breakdown "$BENCH_BREAKDOWN"
"$B/bench_model" "$@" | tee "$B/model.log"
grep -q '^fwd_bwd_tok_s ' "$B/model.log" || { echo "bench_model failed"; status=1; }
# the denominator bench_model used (the larger of bench_sgemm's and its own 2-thread sgemm)
PEAK_USED=$(value peak_gflops_used "$B/model.log")

: > "$B/torch.log"
if [ "${BENCH_TORCH:-1}" != 0 ]; then
    echo "== PyTorch reference ($PY)"
    if [ -x "$PY" ]; then
        "$PY" bench/ref_model_torch.py --peak "${PEAK_USED:-0}" --iters "$ITERS" \
            --threads "$THREADS" | tee "$B/torch.log" || status=1
    else
        echo "pytorch: not installed ($PY missing)" | tee "$B/torch.log"
    fi
fi

if [ -f bench/bench_tokenizer.sh ]; then
    echo "== bench_tokenizer.sh"
    sh bench/bench_tokenizer.sh "$BUILD" || status=1
fi

# ---- summary
M="$B/model.log"
Tl="$B/torch.log"
echo
echo "== summary: GPT-2-small shape, B x T = $(value batch "$M") x $(value seq "$M")," \
     "$THREADS threads, sgemm peak $PEAK_USED GFLOP/s (bench_sgemm $PEAK)"
awk -v peak="$PEAK_USED" '
    FNR == 1 { f++ }
    f == 1 { k[$1] = $2 }
    f == 2 { t[$1] = $2 }
    function row(name, key) {
        kt = k[key "_tok_s"]; tt = t["torch_" key "_tok_s"]
        ks = k[key "_share_of_peak"]; ts = t["torch_" key "_share_of_peak"]
        printf "%-18s %10s %8s %7s | %10s %8s %7s | %7s\n", name,
            kt == "" ? "-" : kt, k[key "_gflops"] == "" ? "-" : k[key "_gflops"],
            ks == "" ? "-" : sprintf("%.0f%%", 100 * ks),
            tt == "" ? "-" : tt, t["torch_" key "_gflops"] == "" ? "-" : t["torch_" key "_gflops"],
            ts == "" ? "-" : sprintf("%.0f%%", 100 * ts),
            (kt != "" && tt != "" && tt > 0) ? sprintf("%.2fx", kt / tt) : "-"
    }
    END {
        printf "%-18s %10s %8s %7s | %10s %8s %7s | %7s\n", "", "ked tok/s", "GFLOP/s", "%peak",
            "torch tok/s", "GFLOP/s", "%peak", "ked/torch"
        row("forward", "fwd")
        row("forward+backward", "fwd_bwd")
        printf "%-18s %10s tok/s (batch 1, greedy, KV cache)\n", "decode", k["decode_tok_s"]
        printf "%-18s %10s s; peak RSS %s MB for %s MB of weights (x%s)\n", "load",
            k["load_s"], k["load_peak_rss_mb"], k["weight_mb"], k["load_peak_rss_over_weights"]
        printf "%-18s %10s MB (activations + scratch of the B x T run)\n", "run", k["run_mb"]
        s = k["fwd_bwd_share_of_peak"]
        if (s != "") printf "target: forward+backward >= 60%% of peak: %s (%.0f%%)\n",
            (s >= 0.6) ? "met" : "NOT met", 100 * s
    }' "$M" "$Tl"
[ -s "$Tl" ] && grep -q "not installed" "$Tl" && echo "pytorch: not installed"

# ==== editing (issue 5; bench/bench_edit.c, bench/ref_edit_torch.py) ===========================
# Seconds per edit for ROME and FT-M on the random GPT-2-small model above with EasyEdit's
# gpt2-xl hyperparameters adapted to 12 layers (bench/hparams/), ked then PyTorch (EasyEdit's
# computation) back to back, each method in a fresh process (peak RSS). BENCH_EDIT=0 skips it;
# BENCH_EDIT_ITERS timed edits (default 3) after BENCH_EDIT_WARMUP warm-ups (default 1).
# OMP_WAIT_POLICY=passive is
# exported unless set (the ked CLI sets it itself); PyTorch runs under the same environment.
if [ "${BENCH_EDIT:-1}" != 0 ] && [ -x "$B/bench_edit" ]; then
    export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
    EI=${BENCH_EDIT_ITERS:-3}
    EW=${BENCH_EDIT_WARMUP:-1}
    echo "== bench_edit (threads $THREADS, $EW warm-up + $EI timed edits," \
         "OMP_WAIT_POLICY=$OMP_WAIT_POLICY, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    "$B/bench_edit" --dir "$B/gpt2-small-random" --threads "$THREADS" --iters "$EI" \
        --warmup "$EW" --inputs "$B/edit_inputs.json" \
        | tee "$B/edit.log"
    grep -q '^ftm_seconds ' "$B/edit.log" || { echo "bench_edit failed"; status=1; }
    : > "$B/edit_torch.log"
    if [ "${BENCH_TORCH:-1}" != 0 ]; then
        echo "== PyTorch edit reference ($PY, EasyEdit's computation)"
        if [ -x "$PY" ]; then
            "$PY" bench/ref_edit_torch.py --inputs "$B/edit_inputs.json" \
                --dir "$B/gpt2-small-random" --threads "$THREADS" --iters "$EI" --warmup "$EW" \
                | tee "$B/edit_torch.log" || status=1
        else
            echo "pytorch: not installed ($PY missing)" | tee "$B/edit_torch.log"
        fi
    fi
    echo
    echo "== summary: seconds per edit (median), GPT-2-small shape, $THREADS threads," \
         "load average $(cut -d' ' -f1-3 /proc/loadavg)"
    awk 'FNR == 1 { f++ }
        f == 1 { k[$1] = $2 }
        f == 2 { t[$1] = $2 }
        function r(a, b) { return (a != "" && b != "" && a > 0) ? sprintf("%.1fx", b / a) : "-" }
        function v(x) { return x == "" ? "-" : x }
        END {
            printf "%-5s %8s %8s | %8s %8s | %6s %6s | %-17s | %s\n", "", "ked s", "cpu s",
                "torch s", "cpu s", "ratio", "cpu", "peak RSS/weights", "target"
            split("rome ftm", ms, " "); split("4 2", tg, " ")
            for (i = 1; i <= 2; i++) {
                m = ms[i]; ks = k[m "_seconds"]; ts = t["torch_" m "_seconds"]
                printf "%-5s %8s %8s | %8s %8s | %6s %6s | ked %5s torch %5s | <= %s s: %s\n", m,
                    v(ks), v(k[m "_cpu_seconds"]), v(ts), v(t["torch_" m "_cpu_seconds"]),
                    r(ks, ts), r(k[m "_cpu_seconds"], t["torch_" m "_cpu_seconds"]),
                    v(k[m "_peak_rss_over_weights"]), v(t["torch_" m "_peak_rss_over_weights"]),
                    tg[i], ks == "" ? "-" : (ks <= tg[i] ? "met" : "NOT met")
            }
        }' "$B/edit.log" "$B/edit_torch.log"
fi

# ==== decoding and a 7B-shaped model (issue 4; bench/bench_decode.c, bench/ref_decode_torch.py,
# bench/bench_7b.c) =============================================================================
# bench_decode: KV-cached greedy decoding of BENCH_DECODE tokens (default 128) at batch 1 and 8
# on the random GPT-2-small model above, and the share of the read bandwidth (measured in the
# same run, 1 GB, THREADS threads) that the weight reads use; then ref_decode_torch.py, the same
# in PyTorch on the same file. BENCH_DECODE_BENCH=0 skips both.
# bench_7b: a LLaMA-2-7B-shaped layer stack in bf16 (BENCH_7B_LAYERS layers, default 8: a 3.8 GB
# file written into BUILD/bench and removed afterwards; skipped with less than 12 GB free on
# disk): load time, RSS, seconds per token of a decode step and a 128-token prefill,
# extrapolated to 32 layers; one layer f32 against bf16. BENCH_7B=0 skips it.
# OMP_WAIT_POLICY=passive is exported unless set.
if [ "${BENCH_DECODE_BENCH:-1}" != 0 ] && [ -x "$B/bench_decode" ]; then
    export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
    echo "== bench_decode (threads $THREADS, OMP_WAIT_POLICY=$OMP_WAIT_POLICY," \
         "load average $(cut -d' ' -f1-3 /proc/loadavg))"
    "$B/bench_decode" --dir "$B/gpt2-small-random" --threads "$THREADS" \
        --decode "${BENCH_DECODE:-128}" | tee "$B/decode.log"
    grep -q '^decode_b8_bw_share ' "$B/decode.log" || { echo "bench_decode failed"; status=1; }
    : > "$B/decode_torch.log"
    if [ "${BENCH_TORCH:-1}" != 0 ] && [ -x "$PY" ]; then
        echo "== PyTorch decode reference ($PY)"
        "$PY" bench/ref_decode_torch.py --dir "$B/gpt2-small-random" --threads "$THREADS" \
            --decode "${BENCH_DECODE:-128}" --bw "$(value bw_read_gbs "$B/decode.log")" \
            | tee "$B/decode_torch.log" || status=1
    fi
    echo
    echo "== summary: KV-cached greedy decode, GPT-2-small shape, $THREADS threads, read" \
         "bandwidth $(value bw_read_gbs "$B/decode.log") GB/s, load average" \
         "$(cut -d' ' -f1-3 /proc/loadavg)"
    awk 'FNR == 1 { f++ }
        f == 1 { k[$1] = $2 }
        f == 2 { t[$1] = $2 }
        function v(x) { return x == "" ? "-" : x }
        function pc(x) { return x == "" ? "-" : sprintf("%.0f%%", 100 * x) }
        END {
            printf "%-6s %10s %8s | %10s %8s | %9s\n", "", "ked tok/s", "bw use",
                "torch tok/s", "bw use", "ked/torch"
            for (b = 1; b <= 8; b += 7) {
                kt = k["decode_b" b "_tok_s"]; tt = t["torch_decode_b" b "_tok_s"]
                printf "%-6s %10s %8s | %10s %8s | %9s\n", "B=" b, v(kt),
                    pc(k["decode_b" b "_bw_share"]), v(tt), pc(t["torch_decode_b" b "_bw_share"]),
                    (kt != "" && tt != "" && tt > 0) ? sprintf("%.2fx", kt / tt) : "-"
            }
        }' "$B/decode.log" "$B/decode_torch.log"
fi
if [ "${BENCH_7B:-1}" != 0 ] && [ -x "$B/bench_7b" ]; then
    export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
    free_kb=$(df -Pk "$B" | awk 'NR == 2 { print $4 }')
    if [ "${free_kb:-0}" -lt 12000000 ]; then
        echo "== bench_7b skipped: less than 12 GB free on $B"
    else
        echo "== bench_7b (${BENCH_7B_LAYERS:-8} LLaMA-2-7B-shaped layers in bf16, threads" \
             "$THREADS, load average $(cut -d' ' -f1-3 /proc/loadavg))"
        "$B/bench_7b" --dir "$B/llama7b-shape" --layers "${BENCH_7B_LAYERS:-8}" \
            --threads "$THREADS" | tee "$B/7b.log"
        grep -q '^x32_decode_step_s ' "$B/7b.log" || { echo "bench_7b failed"; status=1; }
        S="$B/7b.log"
        echo
        echo "== summary: LLaMA-2-7B shape, $(value layers "$S") layers in bf16 (keep_half)," \
             "$THREADS threads, load average $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "load $(value load_s "$S") s (cold, mapped) + first forward" \
             "$(value first_fwd_s "$S") s;" \
             "RSS $(value after_load_rss_mb "$S") MB after load," \
             "$(value after_first_fwd_rss_mb "$S") MB after the first forward"
        echo "decode step $(value decode_step_s "$S") s, 128-token prefill" \
             "$(value prefill_s_per_token "$S") s/token;" \
             "32 layers (extrapolated): decode $(value x32_decode_step_s "$S") s/token," \
             "prefill $(value x32_prefill_s_per_token "$S") s/token"
        echo "one layer f32 vs bf16: decode step $(value l1_f32_layer_decode_step_s "$S") vs" \
             "$(value l1_bf16_layer_decode_step_s "$S") s, prefill" \
             "$(value l1_f32_layer_prefill_s "$S") vs $(value l1_bf16_layer_prefill_s "$S") s"
    fi
fi
# ==== the MEMIT family (issue 7; bench/bench_memit.c, bench/ref_stats_torch.py,
# bench/ref_memit_torch.py): on the random GPT-2-small model above, each part in a fresh process,
# ked then PyTorch (EasyEdit's computation) back to back:
#   statistics of the five MEMIT layers (3-7) over the first BENCH_MEMIT_STATS_TOKENS (default
#   3000) tokens of data/wikitext2_raw_test.txt: ked in one pass, PyTorch one pass per layer
#   (EasyEdit's layer_stats), the two C compared; tokens/s per layer-pass and the ratio;
#   a MEMIT batch of BENCH_MEMIT_N (default 100) ZsRE requests (tests/data/eval zsre_eval_50 +
#   knowedit_zsre_50) with bench/hparams/MEMIT-gpt2-small.yaml and the statistics just cached:
#   ked_edit_batch's time and peak RSS; PyTorch runs BENCH_MEMIT_TORCH_Z (default 3) z
#   optimisations and the key forwards of BENCH_MEMIT_TORCH_K (default 10) requests and scales
#   them to the batch (the solves at full size);
#   the memory of statistics and projectors of a BENCH_MEMIT_MEM_DIM-wide layer (default 11008).
# BENCH_MEMIT=0 skips it. OMP_WAIT_POLICY=passive is exported unless set.
if [ "${BENCH_MEMIT:-1}" != 0 ] && [ -x "$B/bench_memit" ]; then
    export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
    set -- --dir "$B/gpt2-small-random" --threads "$THREADS" --cache "$B/memit-cache" \
        --inputs "$B/memit_inputs.json" --stats-ids "$B/memit_stats_ids.json" \
        --stats-tokens "${BENCH_MEMIT_STATS_TOKENS:-3000}" --n "${BENCH_MEMIT_N:-100}" \
        --mem-dim "${BENCH_MEMIT_MEM_DIM:-11008}"
    echo
    echo "== bench_memit statistics (threads $THREADS, OMP_WAIT_POLICY=$OMP_WAIT_POLICY," \
         "load average $(cut -d' ' -f1-3 /proc/loadavg))"
    "$B/bench_memit" "$@" --only stats | tee "$B/memit_stats.log"
    grep -q '^stats_seconds ' "$B/memit_stats.log" || { echo "bench_memit stats failed"; status=1; }
    : > "$B/memit_stats_torch.log"
    if [ "${BENCH_TORCH:-1}" != 0 ] && [ -x "$PY" ]; then
        echo "== PyTorch statistics reference ($PY, EasyEdit's layer_stats: one pass per layer)"
        "$PY" bench/ref_stats_torch.py --ids "$B/memit_stats_ids.json" --dir "$B/gpt2-small-random" \
            --threads "$THREADS" --check "$B/memit-cache" | tee "$B/memit_stats_torch.log" || status=1
    fi
    echo "== bench_memit MEMIT batch (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    "$B/bench_memit" "$@" --only memit | tee "$B/memit.log"
    grep -q '^memit_seconds ' "$B/memit.log" || { echo "bench_memit memit failed"; status=1; }
    : > "$B/memit_torch.log"
    if [ "${BENCH_TORCH:-1}" != 0 ] && [ -x "$PY" ]; then
        echo "== PyTorch MEMIT reference ($PY, EasyEdit's execute_memit)"
        "$PY" bench/ref_memit_torch.py --inputs "$B/memit_inputs.json" --dir "$B/gpt2-small-random" \
            --threads "$THREADS" --n-z "${BENCH_MEMIT_TORCH_Z:-3}" --n-k "${BENCH_MEMIT_TORCH_K:-10}" \
            | tee "$B/memit_torch.log" || status=1
    fi
    echo "== bench_memit memory of a ${BENCH_MEMIT_MEM_DIM:-11008}-wide layer"
    "$B/bench_memit" "$@" --only mem | tee "$B/memit_mem.log"
    echo
    echo "== summary: MEMIT family, GPT-2-small shape, $THREADS threads, load average" \
         "$(cut -d' ' -f1-3 /proc/loadavg)"
    cat "$B/memit_stats.log" "$B/memit_stats_torch.log" "$B/memit.log" "$B/memit_torch.log" | awk '
        { v[$1] = $2 }
        function x(a) { return a == "" ? "-" : a }
        END {
            k = v["stats_tok_s_per_layer_pass"]; t = v["torch_stats_tok_s_per_layer_pass"]
            r = (k != "" && t != "" && t > 0) ? k / t : ""
            printf "stats_tokens %s\nstats_ked_tok_s_per_layer_pass %s\n", x(v["stats_tokens"]), x(k)
            printf "stats_torch_tok_s_per_layer_pass %s\n", x(t)
            printf "stats_ked_over_torch %s\n", r == "" ? "-" : sprintf("%.2f", r)
            printf "stats_target_2x %s\n", r == "" ? "-" : (r >= 2 ? "met" : "NOT_met")
            kc = v["stats_cpu_seconds"]; tc = v["torch_stats_cpu_seconds"]
            printf "stats_ked_over_torch_cpu %s\n", (kc != "" && tc != "" && kc > 0) ? sprintf("%.2f", tc / kc) : "-"
            printf "stats_c_max_rel_diff %s\n", x(v["torch_stats_check_max_rel"])
            ks = v["memit_seconds"]; ts = v["torch_memit_seconds_extrapolated"]
            r = (ks != "" && ts != "" && ks > 0) ? ts / ks : ""
            printf "memit_requests %s\nmemit_ked_seconds %s\n", x(v["memit_requests"]), x(ks)
            printf "memit_torch_seconds_extrapolated %s\n", x(ts)
            printf "memit_ked_speedup %s\n", r == "" ? "-" : sprintf("%.1f", r)
            kc = v["memit_cpu_seconds"]; tc = v["torch_memit_cpu_seconds_extrapolated"]
            printf "memit_ked_speedup_cpu %s\n", (kc != "" && tc != "" && kc > 0) ? sprintf("%.1f", tc / kc) : "-"
            printf "memit_target_10x_torch %s\n", r == "" ? "-" : (r >= 10 ? "met" : "NOT_met")
            printf "memit_target_279s %s\n", (ks == "" || v["memit_requests"] != 100) ? "-" : (ks <= 279 ? "met" : "NOT_met")
            p32 = v["memit_peak_rss_over_weights_plus_stats_fp32"]
            printf "memit_peak_rss_mb %s\nmemit_peak_over_weights_plus_stats %s\n",
                x(v["memit_peak_rss_mb"]), x(p32)
            printf "memit_target_memory_1.2x %s\n", p32 == "" ? "-" : (p32 <= 1.2 ? "met" : "NOT_met")
        }'
fi
# ==== training throughput (issue 6; bench/bench_train.c): tokens/s of ked train's step on a
# ked-facts-shaped LLaMA and its share of the sgemm peak. BENCH_TRAIN=0 skips it.
if [ "${BENCH_TRAIN:-1}" != 0 ] && [ -x "$B/bench_train" ]; then
    echo
    echo "== training (bench_train, $THREADS threads, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    "$B/bench_train" "$THREADS" 12 | tee "$B/train.log" || status=1
fi
exit $status
