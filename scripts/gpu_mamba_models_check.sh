#!/usr/bin/env bash
# One GPU job for the Mamba-block models (AuM, SSAM; docs/speed.md "Next", item 2): their B=32 inference and
# B=12 training against AST-Base-SDPA in the same run, with kernel tables, and the scan's forward variants at
# their model shapes. Everything goes under OUT (default: gpu_mamba_models_check/):
#   scripts/gpu_mamba_models_check.sh [OUT]
# About 9 minutes on an H100; each step has its own time limit.
set -uo pipefail
out=${1:-gpu_mamba_models_check}
commit=${DASSLIB_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
mkdir -p "$out/profiles"
{ nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader; date -u; echo "commit $commit"; } \
    > "$out/device.txt"

timeout 330 python3 -m benchmarks.bench_models --csv "$out/model_speed_${commit}_mamba_models.csv" \
    --models ast_base_sdpa,aum_base,ssam_base --skip-b1 --check-model '' --profile-dir "$out/profiles" \
    --commit "$commit" > "$out/bench_models_mamba_$commit.log" 2>&1
echo "bench_models: exit $?"

timeout 200 python3 -m benchmarks.bench_scan --csv "$out/scan_tune_mamba_models_$commit.csv" \
    --log "$out/scan_tune_mamba_models_$commit.log" --shapes aum,aum_model,ssam_model --no-torch --tune \
    --budget-s 170 > /dev/null 2>&1
echo "bench_scan: exit $?"

sed -i -e 's#/opt/torch/\.venv#<venv>#g' -e 's#/tmp/[^ ]*site#<site>#g' "$out"/*.log "$out"/*.txt 2>/dev/null
exit 0
