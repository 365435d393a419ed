#!/usr/bin/env bash
# Run every study sweep of docs/study.md into results/ (resumable: finished runs are skipped),
# then the stability measurements of the gossip schemes, then regenerate docs/study.md.
#   bash configs/study/run-all.sh [JOBS]
# About 1.5 hours on an idle 2-core machine with JOBS = 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${1:-2}
mkdir -p results
for s in q gap topology alpha lr batch scale schemes; do
  gossiplab sweep "configs/study/study-$s.toml" --jobs "$JOBS" --db "results/study-$s.sqlite" --quiet
done
bash configs/study/stability-schemes.sh results/stability-schemes
gossiplab study --results results --out docs/study.md
