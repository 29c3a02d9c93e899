#!/usr/bin/env bash
# Execute notebooks with a params profile, resumably, e.g. on a GPU machine:
#   scripts/run_profile.sh gpu 04_niah [01_distill ...]
# Each notebook runs as
#   papermill notebooks/NB.ipynb runs/<profile>/NB/NB.ipynb -f params/<profile>/NB.yaml -p out_dir runs/<profile>/NB
# in the scratch folder runs/<profile>/NB (git-ignored). A run cut short (a time limit, a kill) is continued by
# running the same command again on the same machine: the dataset and its statistics are cached, finished
# training runs are returned as stored and an interrupted one resumes from its checkpoints/last.pt
# (docs/gpu_runs.md). When a notebook completes, its results (executed notebook, CSV, PNG, JSON; no weights)
# replace results/<profile>/NB/ and the scratch folder stays for later reruns.
# RESULTS_ONLY=1 skips the execution and only copies a finished scratch folder.
set -euo pipefail
profile=$1; shift
for nb in "$@"; do
    work=runs/$profile/$nb
    dest=results/$profile/$nb
    mkdir -p "$work"
    if [ "${RESULTS_ONLY:-0}" != 1 ]; then
        start=$(date +%s)
        python3 -m papermill "notebooks/$nb.ipynb" "$work/$nb.ipynb" -f "params/$profile/$nb.yaml" \
            -p out_dir "$work" --no-progress-bar --execution-timeout 3600 2>&1 \
            | grep -v "Kernel is running over TCP" || { echo "$nb FAILED or cut short: rerun to resume"; exit 1; }
        echo "$nb: $(( $(date +%s) - start )) s in this call"
    fi
    # results only: everything but weights and checkpoints, staged then swapped in
    mkdir -p "results/$profile"
    stage=$(mktemp -d "$PWD/results/$profile/.$nb.XXXX")
    (cd "$work" && find . -type f ! -name '*.pt' ! -name '*.pth' ! -path '*/checkpoints/*' -print0 \
        | xargs -0 -r cp --parents -t "$stage")
    rm -rf "$dest.old" && { [ ! -e "$dest" ] || mv "$dest" "$dest.old"; } && mv "$stage" "$dest" && rm -rf "$dest.old"
    echo "$nb: results in $dest"
done
