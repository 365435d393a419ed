#!/usr/bin/env bash
# The stability study of docs/stability.md on digits (CPU, one thread per run, one run at a time):
#   Q in {0, 1, 2, 4, 8, 16} on a ring and on a torus (16 nodes), then n in {10, 20, 80} and
#   m in {4, 8, 32} on the ring with Q = 1 (n = 40, m = 16 come from the Q sweep), then
#   `gossiplab theory` over all of them. Finished runs are skipped, so the script can be resumed.
# Usage: bash configs/stability-digits.sh [OUT_DIR] [extra --set options for every run ...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/stability-digits}
shift || true
CFG=configs/stability-digits.toml

run() {
  local name=$1
  shift
  if [ -f "$OUT/$name/summary.json" ]; then
    echo "skip $name (done)"
    return 0
  fi
  echo "run  $name"
  gossiplab stability --quiet -c "$CFG" --out "$OUT/$name" --overwrite "$@" "${EXTRA[@]}"
}

EXTRA=()
for a in "$@"; do EXTRA+=("$a"); done

for topo in ring torus; do
  for q in 0 1 2 4 8 16; do
    run "$topo-q$q" --set "topology.name=\"$topo\"" --set "algorithm.gossip_steps=$q"
  done
done
for n in 10 20 80; do
  run "ring-q1-n$n" --set "topology.name=\"ring\"" --set "algorithm.gossip_steps=1" \
    --set "data.samples_per_node=$n"
done
for m in 4 8 32; do
  run "ring-q1-m$m" --set "topology.name=\"ring\"" --set "algorithm.gossip_steps=1" \
    --set "topology.nodes=$m"
done
gossiplab theory "$OUT" --out "$OUT/theory" --overwrite
