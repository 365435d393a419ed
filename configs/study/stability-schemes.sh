#!/usr/bin/env bash
# Stability of the gossip schemes (issue 9's study): on-average model stability of DSGD-MGS on
# digits (configs/stability-digits.toml: 16 nodes, n = 40, step 2/(t+1), T = 1000) for plain,
# chebyshev and exact gossip at 1-8 rounds per iteration, ring and torus, and centralized SGD.
# Finished runs are skipped, so the script can be resumed.
#   bash configs/study/stability-schemes.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-results/stability-schemes}
CFG=configs/stability-digits.toml
COMMON=(--set stability.perturbations=8 --set stability.repetitions=3 --set stability.hessian_points=0
        --set stability.reference_iterations=0 --set algorithm.compare_centralized=false)

run() {
  local name=$1
  shift
  if [ -f "$OUT/$name/summary.json" ]; then
    echo "skip $name (done)"
    return 0
  fi
  echo "run  $name"
  gossiplab stability --quiet -c "$CFG" --out "$OUT/$name" --overwrite "${COMMON[@]}" "$@"
}

run centralized --set 'algorithm.name="centralized"'
for topo in ring torus; do
  run "$topo-plain-q1" --set "topology.name=\"$topo\"" --set algorithm.gossip_steps=1
  for scheme in plain chebyshev exact; do
    for q in 2 4 8; do
      run "$topo-$scheme-q$q" --set "topology.name=\"$topo\"" --set "algorithm.gossip=\"$scheme\"" \
        --set "algorithm.gossip_steps=$q"
    done
  done
done
