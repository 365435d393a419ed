"""Test helpers: what of a run's output folder must be identical between an interrupted-and-resumed
run and an uninterrupted one (everything except wall-clock fields and resume provenance)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gossiplab.checkpoint import load_checkpoint

# Fields that measure wall-clock time or the machine, or say that a run was resumed.
VOLATILE = {"elapsed", "wall_seconds", "eval_seconds", "eval_fraction", "first_iteration_seconds",
            "environment",
            "resumed_from"}


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def metrics(out: Path) -> list[dict]:
    return [strip(json.loads(line)) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summary(out: Path) -> dict:
    return strip(json.loads((out / "summary.json").read_text()))


def final_states(out: Path) -> dict[str, dict]:
    return {p.stem: load_checkpoint(p) for p in sorted((out / "checkpoints").glob("*.pt"))}


def assert_same_run(a: Path, b: Path) -> None:
    """Bitwise-equal final models (and optimizer / sampler state), equal metrics and summary."""
    sa, sb = final_states(a), final_states(b)
    assert sorted(sa) == sorted(sb) and sa, (sorted(sa), sorted(sb))
    for name in sa:
        x, y = sa[name], sb[name]
        assert x["done"] and y["done"], name
        assert x["iteration"] == y["iteration"]
        assert torch.equal(x["sim"]["params"], y["sim"]["params"]), f"{name}: final models differ"
        bx, by = x["sim"]["optimizer"]["buf"], y["sim"]["optimizer"]["buf"]
        assert (bx is None and by is None) or torch.equal(bx, by)
        assert torch.equal(x["sim"]["sampler"]["generator"], y["sim"]["sampler"]["generator"])
        assert strip(x["result"]["history"]) == strip(y["result"]["history"])
    assert metrics(a) == metrics(b)
    assert summary(a) == summary(b)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}
