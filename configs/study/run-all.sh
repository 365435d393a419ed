#!/usr/bin/env bash
# Run every study sweep of docs/study.md into results/ (resumable: finished runs are skipped),
# then the stability measurements of the gossip schemes, then regenerate docs/study.md.
#   bash configs/study/run-all.sh [JOBS]
# About 2 hours on a 2-core machine with JOBS = 2 (measured: the seven claim sweeps about 50 min, the
# gossip-schemes sweep 74 min, its stability runs 6 min).
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${1:-2}
mkdir -p results
for s in q gap topology alpha lr batch scale schemes; do
  gossiplab sweep "configs/study/study-$s.toml" --jobs "$JOBS" --db "results/study-$s.sqlite" --quiet
done
bash configs/study/stability-schemes.sh results/stability-schemes
gossiplab study --results results --out docs/study.md
