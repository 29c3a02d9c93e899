#!/usr/bin/env bash
# Issue "Trained, not sampled", point 2: the lr x warm-up sweeps of DASS-Small, AuM-Tiny and AST-Small on the
# embedded "gpu" dataset, one model per GPU job (about 6-8 minutes on one H100: 6 runs of 3 epochs, 3 at a
# time on the one GPU, with the per-stage gradient norms and activation statistics of
# dasslib.train.diagnostics every 25 steps):
#   scripts/gpu_lr_sweep.sh dass_small [OUT]     (then aum_tiny, ast_small)
# Writes OUT/<model>.csv (every run's history, a `collapsed` flag), OUT/<model>.png (the curves) and the log.
# The optimizer is the official one (Adam, betas 0.95 / 0.999, weight decay 5e-7: TrainConfig's defaults);
# EXTRA='{"optimizer": "adamw", "weight_decay": 0.05}' (TrainConfig fields) runs the same grid with other
# settings, e.g. the AdamW / weight-decay / drop-path questions of the issue, into OUT/<model>_<TAG>.* with TAG=...
# The runs' folders stay under runs/lr_sweep/ on the machine: the same command on the same warm machine
# resumes a cut run and returns finished ones as stored (docs/gpu_runs.md).
set -uo pipefail
model=${1:?usage: scripts/gpu_lr_sweep.sh dass_small|aum_tiny|ast_small [OUT]}
out=${2:-results/gpu/lr_sweep}
tag=${TAG:+_$TAG}
commit=${DASSLIB_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; date -u
  echo "commit $commit"; } > "$out/device_$model$tag.txt"
case $model in
    dass_small) lrs="1e-4 3e-4 1e-3" ;;
    aum_tiny) lrs="5e-5 2e-4 5e-4" ;;       # the AuM paper's AS-20K lr is 5e-5
    ast_small) lrs="1e-4 5e-4 1e-3" ;;
    *) echo "no lr grid for $model: dass_small, aum_tiny or ast_small" >&2; exit 2 ;;
esac
train=$(python3 -c "import json, sys; t = dict(epochs=3); t.update(json.loads(sys.argv[1])); print(json.dumps(t))" \
    "${EXTRA:-{\}}")
# shellcheck disable=SC2086
timeout 560 python3 -m benchmarks.lr_probe --model "$model" --lrs $lrs --warmups 100 1000 --batch 48 \
    --workers 4 --parallel 3 --size gpu --out "runs/lr_sweep/$model$tag" --train "$train" \
    --csv "$out/$model$tag.csv" --png "$out/$model$tag.png" > "$out/${model}${tag}_$commit.log" 2>&1
echo "lr sweep $model$tag: exit $? (log $out/${model}${tag}_$commit.log)"
sed -i "s#$PWD/##g" "$out/${model}${tag}_$commit.log" 2>/dev/null
