#!/usr/bin/env bash
# Run every study sweep of docs/study.md into results/ (resumable: finished runs are skipped), then
# the stability measurements of the gossip schemes, then regenerate docs/study.md.
#   bash configs/study/run-all.sh [JOBS]
# Order: the regime map (where Q = 1 costs accuracy), the seven claims in the informative regime
# chosen from it (configs/study/informative/), the map's CNN cells, then the "trained to overfit"
# contrast (configs/study/study-*.toml) and the gossip-schemes study. Wall time measured on the
# shared 2-core machine (load average 4-13 from other jobs) with JOBS = 2: regime map 35 min (144
# runs), the seven informative-regime claim sweeps 40 min (406 runs), the map's CNN cells about
# 30 min (12 runs); the overfit sweeps about 50 min, the gossip-schemes sweep 74 min, its
# stability runs 6 min. Finished runs are skipped, so a rerun only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${1:-2}
GL=${GOSSIPLAB:-gossiplab}
sweep() { $GL sweep "$1" --jobs "$JOBS" --threads 1 --db "$2" --quiet; }
mkdir -p results/informative
sweep configs/study/study-map.toml results/study-map.sqlite
for s in q gap topology batch lr alpha scale; do
  sweep "configs/study/informative/study-$s.toml" "results/informative/study-$s.sqlite"
done
sweep configs/study/study-map-cnn.toml results/study-map-cnn.sqlite
for s in q gap topology alpha lr batch scale schemes; do
  sweep "configs/study/study-$s.toml" "results/study-$s.sqlite"
done
bash configs/study/stability-schemes.sh results/stability-schemes
$GL study --results results --out docs/study.md
