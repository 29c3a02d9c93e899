#!/usr/bin/env bash
# The speed work's GPU jobs (docs/speed.md, "Next"), one job per call, everything under OUT with the commit in
# the file names:
#   scripts/gpu_speed_check.sh dass [OUT]    DASS (items 0-1, about 9 minutes): the CUDA tests of the fused paths,
#       the stem kernel's tile variants, the whole-model A/B (the defaults against the whole-graph replay), the
#       scan backward variants (register cap, launch order, prefetch, two rows), and Nsight Compute's stall
#       reasons on the rows backward
#   scripts/gpu_speed_check.sh scan [OUT]    the scan bars (item 1, about 7 minutes): mamba-ssm's selective_scan
#       built from the sdist in .sdist/ (130-240 s), then our scan against it at the dass and dass_long shapes
#       (forward, forward+backward, fp32 and bf16) with the backward variants, in one run
#   scripts/gpu_speed_check.sh bars [OUT]    DASS's inference bars (about 6 minutes): the CUDA tests of the stem
#       kernel and the fast forward, then DASS-Small and -Medium at the defaults, DASS-Small with the whole
#       forward captured as one CUDA graph and with the stem kernel's first form, against AST-Base-SDPA in one
#       run (the scan's bars are the scan job: mamba-ssm's build alone took more than 170 s at 002c82d, so the
#       two do not fit one 10-minute job)
#   scripts/gpu_speed_check.sh mamba [OUT]   AuM / SSAM (item 2, about 9 minutes): B=32 inference and B=12
#       training against AST-Base-SDPA in the same run with kernel tables; before them AuM's scan variants
#       (forward and backward, bf16) at its model shape and the issue's, and Nsight Compute on its two kernels
#   scripts/gpu_speed_check.sh mamba_tune [OUT]   its first step alone (about 3.5 minutes)
#   scripts/gpu_speed_check.sh mamba_scan [OUT]   the N = 16 / 24 scans against mamba-ssm (about 8 minutes):
#       kernel tables and per-call timings with CUDA-graph replays at the aum, aum_model, ssam_model and long
#       shapes
# Kernel tables (profiles/) come back as profiles.tgz. Each step has its own time limit (together under one
# 10-minute job), so a slow step costs only itself. Do not
# wrap the script in another `timeout`: that stops bash, not the Python step it waits on, which then keeps
# the GPU busy under the next step's timings (2026-12-07: a scan benchmark timed beside a killed bench_models).
set -uo pipefail
scan_bwd_variants='{"dass": [{"bwd_maxnreg": 128}, {"rows_block": 128}, {"rows_block": 128, "bwd_prefetch": 2},
 {"bwd_prefetch": 2}],
 "dass_long": [{"bwd_chunks": 16}, {"bwd": "scan"}]}'
aum_fwd_variants='{"aum_model_pad": [{"seq_maxnreg": 128}, {"seq_maxnreg": 96}, {"seq_bc_prefetch": true},
 {"seq_widen": true}, {"seq_widen": true, "seq_maxnreg": 168}, {"seq_uniform": true, "seq_thread_rows": 2},
 {"seq_uniform": true, "seq_thread_rows": 2, "seq_widen": true}]}'
aum_bwd_variants='{"aum_model_pad": [{"bwd": "seq"}, {"bwd": "seq", "bwd_row_sum": 8}, {"bwd": "seq", "bwd_row_sum": 1},
 {"bwd_rows": 8, "bwd_warps": 8}], "aum": [{"bwd": "seq"}, {"bwd": "seq", "bwd_row_sum": 8}, {"bwd": "seq", "bwd_row_sum": 1}],
 "ssam_model_pad": [{"fwd": "seq", "n_chunks": 1, "prefetch": 1, "bwd": "seq", "bwd_row_sum": 8}]}'
job=${1:?usage: scripts/gpu_speed_check.sh dass|scan|bars|mamba|mamba_tune|mamba_scan [OUT]}
out=${2:-gpu_speed_check_$job}
commit=${DASSLIB_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
mkdir -p "$out/profiles"
{ nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader; date -u; echo "commit $commit"; } \
    > "$out/device.txt"

# mamba-ssm's selective_scan for the scan jobs, into $ext: a module built earlier and carried in .mamba_ext/
# (same image: Python 3.12, torch 2.11+cu130, sm_90), else built from the sdist in .sdist/ (130-240 s; the
# module, 37 MB gzipped, is too large to come back from a job, so each job builds it)
build_mamba() {
    ext="$out/mamba_build"
    if ls .mamba_ext/selective_scan_cuda*.so > /dev/null 2>&1; then
        ext=.mamba_ext
        echo "mamba build: carried module"
        return
    fi
    sdist=$(ls .sdist/mamba_ssm-*.tar.gz 2>/dev/null | head -1)
    if [ -z "$sdist" ]; then
        echo "no mamba_ssm sdist under .sdist/ (download it from PyPI and carry it)" >&2
        exit 2
    fi
    timeout 240 python3 -m scripts.build_mamba_scan --sdist "$sdist" --out "$ext" \
        --jobs "$(nproc)" > "$out/mamba_build_$commit.log" 2>&1
    echo "mamba build: exit $?"
}

if [ "$job" = dass ]; then
    timeout 150 python3 -m pytest -q -p no:cacheprovider tests/gpu -k "stem or merge or dtproj or graph" \
        > "$out/gpu_tests_$commit.log" 2>&1
    echo "gpu tests: $(tail -1 "$out/gpu_tests_$commit.log")"
    timeout 75 python3 -m benchmarks.bench_stem --tune --commit "$commit" --csv "$out/stem_tune_$commit.csv" \
        > "$out/stem_tune_$commit.log" 2>&1
    echo "bench_stem: exit $?"
    models=ast_base_sdpa,dass_small,dass_small_whole_graph,dass_medium,dass_medium_whole_graph
    timeout 200 python3 -m benchmarks.bench_models --csv "$out/model_speed_${commit}_inference.csv" \
        --models "$models" --skip-b1 --skip-train --check-model '' --profile-dir "$out/profiles" \
        --commit "$commit" > "$out/bench_models_$commit.log" 2>&1
    echo "bench_models: exit $?"
    timeout 80 python3 -m benchmarks.bench_scan --csv "$out/scan_tune_dass_bwd_$commit.csv" \
        --log "$out/scan_tune_dass_bwd_$commit.log" --shapes dass --no-torch --budget-s 60 \
        --bwd-variants '{"dass": [{"bwd_maxnreg": 128}, {"bwd_spread": false}, {"bwd_maxnreg": 128, "bwd_prefetch": 2}, {"bwd_rows": 2}]}' \
        > /dev/null 2>&1
    echo "bench_scan: exit $?"
    timeout 55 ncu --clock-control none --kernel-name regex:rows_bwd --launch-skip 2 --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
        python3 -m benchmarks.profile_scan --shape dass --dtype bf16 --backward --warmup 2 \
        > "$out/ncu_rows_bwd_dass_bf16_$commit.txt" 2>&1
    echo "ncu: exit $?"
elif [ "$job" = bars ]; then
    timeout 100 python3 -m pytest -q -p no:cacheprovider tests/gpu -k "stem_kernel or whole_graph or (fast_forward and dass)" \
        > "$out/gpu_tests_$commit.log" 2>&1
    echo "gpu tests: $(tail -1 "$out/gpu_tests_$commit.log")"
    timeout 260 python3 -m benchmarks.bench_models --csv "$out/model_speed_${commit}_inference.csv" \
        --models ast_base_sdpa,dass_small,dass_small_whole_graph,dass_medium,dass_small_stem_first \
        --skip-b1 --skip-train \
        --check-model '' --profile-dir "$out/profiles" --commit "$commit" > "$out/bench_models_$commit.log" 2>&1
    echo "bench_models: exit $?"
elif [ "$job" = scan ]; then
    build_mamba
    # where each call's time goes, kernel by kernel (ours and mamba-ssm's, forward and forward+backward)
    timeout 90 python3 -m benchmarks.scan_kernels --shapes dass,dass_long --mamba-ext "$ext" \
        --out "$out/scan_kernels_$commit.txt" --csv "$out/scan_kernels_$commit.csv" > /dev/null 2>&1
    echo "scan_kernels: exit $?"
    # variants beside the default: a register cap of 128 (16 warps per SM instead of 12), 128-step backward
    # tiles (96 registers offline: 21 warps per SM) with and without B / C / state prefetch; at dass_long
    # 16 chained chunks instead of 64, and the tile kernel (the default until f128b0c)
    timeout 200 python3 -m benchmarks.bench_scan --csv "$out/scan_vs_mamba_$commit.csv" \
        --log "$out/scan_vs_mamba_$commit.log" --shapes dass,dass_long --no-torch --mamba-ext "$ext" \
        --budget-s 180 --bwd-variants "${SCAN_BWD_VARIANTS:-$scan_bwd_variants}" > /dev/null 2>&1
    echo "bench_scan: exit $?"
    rm -rf "$out/mamba_build"
elif [ "$job" = mamba_scan ]; then
    # the Mamba-block scans (issue "Speed II") against mamba-ssm: AuM (12 x 1536 x 513 and AuM-Base's Fo-Bi call
    # at B=32), SSAM-Base (32 x 2304 x 801, N 24) and long (1 x 768 x 524288, N 16), each default call also
    # replayed as a CUDA graph; at long the rows backward in chained chunks beside the tile backward
    build_mamba
    timeout 100 python3 -m benchmarks.scan_kernels --shapes aum,ssam_model,long --mamba-ext "$ext" \
        --out "$out/scan_kernels_mamba_$commit.txt" --csv "$out/scan_kernels_mamba_$commit.csv" > /dev/null 2>&1
    echo "scan_kernels: exit $?"
    timeout 220 python3 -m benchmarks.bench_scan --csv "$out/scan_vs_mamba_N16_$commit.csv" \
        --log "$out/scan_vs_mamba_N16_$commit.log" --shapes aum,aum_model,ssam_model,long --no-torch \
        --mamba-ext "$ext" --budget-s 200 --bwd-variants '{"long": [{"bwd": "rows", "bwd_chunks": 64}]}' \
        > /dev/null 2>&1
    echo "bench_scan: exit $?"
    rm -rf "$out/mamba_build"
elif [ "$job" = mamba ] || [ "$job" = mamba_tune ]; then
    # AuM's scan as the compiled model calls it (B=32, padded) and the issue's shape (12 x 1536 x 513), bf16:
    # forward variants (register caps, B / C prefetch) and backward variants (the seq backward with dB / dC
    # summed over 32 / 8 / 1 rows, the rows backward with 8 rows per program); SSAM-Base's on seq / seq
    timeout 190 python3 -m benchmarks.bench_scan --csv "$out/scan_tune_mamba_models_$commit.csv" \
        --log "$out/scan_tune_mamba_models_$commit.log" --shapes aum_model_pad,aum,ssam_model_pad --dtypes bf16 --no-torch --tune \
        --budget-s 170 --variants "$aum_fwd_variants" --bwd-variants "$aum_bwd_variants" > /dev/null 2>&1
    echo "bench_scan: exit $?"
    [ "$job" = mamba_tune ] && exit 0      # the scan variants only (about 3.5 minutes)
    # where the N = 16 kernels stall: the rows backward at the issue's shape, the sequential forward at AuM-Base's
    # (NCU=0 skips both, about 100 s, when little device time is left)
    [ "${NCU:-1}" = 0 ] || timeout 50 ncu --clock-control none --kernel-name regex:rows_bwd --launch-skip 2 --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
        --section MemoryWorkloadAnalysis python3 -m benchmarks.profile_scan --shape aum --dtype bf16 --backward \
        --warmup 2 > "$out/ncu_rows_bwd_aum_bf16_$commit.txt" 2>&1
    echo "ncu rows_bwd: exit $?"
    [ "${NCU:-1}" = 0 ] || timeout 50 ncu --clock-control none --kernel-name regex:seq_fwd --launch-skip 2 --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
        --section MemoryWorkloadAnalysis python3 -m benchmarks.profile_scan --shape aum_model_pad --dtype bf16 \
        --warmup 2 > "$out/ncu_seq_fwd_aum_model_pad_bf16_$commit.txt" 2>&1
    echo "ncu seq_fwd: exit $?"
    # the models last (rows are written as they are timed, so a cut run keeps the first ones)
    timeout 290 python3 -m benchmarks.bench_models --csv "$out/model_speed_${commit}_mamba_models.csv" \
        --models "${MODELS:-ast_base_sdpa,aum_base,aum_base_seq_bwd,ssam_base}" --skip-b1 --check-model '' --profile-dir "$out/profiles" \
        --commit "$commit" > "$out/bench_models_mamba_$commit.log" 2>&1
    echo "bench_models: exit $?"
else
    echo "unknown job $job: dass, scan, bars, mamba, mamba_tune or mamba_scan" >&2
    exit 2
fi

# install paths out of the logs (the machine's Python, the carried wheels)
sed -i -e 's#[^ ]*/site-packages/#<site-packages>/#g' -e "s#$PWD/##g" "$out"/*.log "$out"/*.txt 2>/dev/null
pp=${PYTHONPATH:-}
for p in ${pp//:/ }; do
    sed -i -e "s#$p/#<pythonpath>/#g" "$out"/*.log "$out"/*.txt 2>/dev/null
done
# the kernel tables as one archive (a call brings back at most 8 files), or no folder when there are none
if [ -n "$(ls -A "$out/profiles" 2>/dev/null)" ]; then
    sed -i -e 's#[^ ]*/site-packages/#<site-packages>/#g' -e "s#$PWD/##g" "$out"/profiles/* 2>/dev/null
    tar czf "$out/profiles.tgz" -C "$out" profiles && rm -rf "$out/profiles"
else
    rm -rf "$out/profiles"
fi
exit 0
