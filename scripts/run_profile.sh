#!/usr/bin/env bash
# Execute notebooks with a params profile, e.g. on a GPU machine:
#   scripts/run_profile.sh gpu 04_niah [01_distill ...]
# Each notebook runs as  papermill notebooks/NB.ipynb results/<profile>/NB/NB.ipynb -f params/<profile>/NB.yaml
# (the yaml's out_dir should be results/<profile>/NB so the executed notebook sits next to its CSV/PNG).
set -euo pipefail
profile=$1; shift
for nb in "$@"; do
    dest=results/$profile/$nb
    mkdir -p "$dest"
    start=$(date +%s)
    python3 -m papermill "notebooks/$nb.ipynb" "$dest/$nb.ipynb" -f "params/$profile/$nb.yaml" --no-progress-bar \
        --execution-timeout 3600 2>&1 | grep -v "Kernel is running over TCP" || { echo "$nb FAILED"; exit 1; }
    echo "$nb: $(( $(date +%s) - start )) s"
done
