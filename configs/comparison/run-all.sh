#!/usr/bin/env bash
# Run the comparison sweeps (docs/comparison.md) into one store (resumable: finished runs are
# skipped; centralized runs once, shared by every sweep), then regenerate docs/comparison.md.
#   bash configs/comparison/run-all.sh [JOBS]
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${1:-1}
mkdir -p results
for s in mgs schemes gt pga local schedules choco; do
  gossiplab sweep "configs/comparison/comparison-$s.toml" --jobs "$JOBS" --db results/comparison.sqlite --quiet
done
gossiplab compare --db results/comparison.sqlite --out docs/comparison.md
