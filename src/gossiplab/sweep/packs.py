"""Packs: the sweep files and study configs that ship with gossiplab (``gossiplab packs``,
``gossiplab sweep --pack NAME``).

The files live in the repository's ``configs/`` folder (the one source of truth: the study and the
docs name them there); ``src/gossiplab/packs`` is a link to it, so a checkout and an installed
wheel (``gossiplab/packs/`` as package data, see pyproject.toml) find the same files. A pack's
name is its path under that folder without ``.toml`` (``quick-digits-q``, ``study/study-q``);
files whose name starts with ``_`` are bases other files include, not packs.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from gossiplab.errors import UserError, did_you_mean

# Per-step cost model for the time estimate: a fixed overhead (python, small kernels) plus the
# arithmetic at a single core's rate. Calibrated on this project's 2-core machine (default run:
# ~2 ms per step; small CNN at m = 16: ~6.5 GFLOP in ~0.16 s on one core). An estimate, said so.
STEP_OVERHEAD_S = 0.002
CORE_FLOPS = 40e9
# Input shape and class count of the built-in datasets, so an estimate needs no data on disk.
DATA_SHAPES = {"digits": ((1, 8, 8), 10), "fashion_mnist": ((1, 28, 28), 10),
               "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100)}


def packs_dir() -> Path:
    """The folder holding the packs (inside the installed package, or the checkout's configs/)."""
    return Path(str(resources.files("gossiplab") / "packs"))


@dataclass(frozen=True)
class Pack:
    name: str
    path: Path
    kind: str  # "sweep" (a [sweep] file) or "config" (one run's config: gossiplab run --config)
    description: str
    expected: str  # declared in the file ([sweep] expected), or "" (then estimated)


def _describe(path: Path) -> tuple[str, str, str]:
    raw = tomllib.loads(path.read_text())
    meta = raw.get("sweep")
    if isinstance(meta, dict):
        return "sweep", str(meta.get("description", "")), str(meta.get("expected", ""))
    first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines()
                  if ln.startswith("#")), "")
    return "config", first, ""


def list_packs() -> list[Pack]:
    root = packs_dir()
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*.toml")):
        if path.name.startswith("_"):
            continue
        name = path.relative_to(root).with_suffix("").as_posix()
        try:
            kind, desc, expected = _describe(path)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise UserError(f"pack {name}: unreadable ({type(e).__name__})") from None
        out.append(Pack(name, path, kind, desc, expected))
    return out


def find_pack(name: str, kind: str | None = None) -> Pack:
    """The pack called ``name`` (``.toml`` optional), else a one-line error naming close ones."""
    packs = [p for p in list_packs() if kind is None or p.kind == kind]
    wanted = name.removesuffix(".toml")
    exact = [p for p in packs if p.name == wanted]
    if exact:
        return exact[0]
    by_base = [p for p in packs if p.name.rsplit("/", 1)[-1] == wanted]
    if len(by_base) == 1:
        return by_base[0]
    if by_base:
        raise UserError(f"'{name}' names several packs ({', '.join(p.name for p in by_base)}); "
                        "give the full name")
    names = [p.name for p in packs]
    hint = did_you_mean(wanted, names)
    what = f"{kind} pack" if kind else "pack"
    raise UserError(f"no {what} named '{name}'{hint}; `gossiplab packs` lists them")


@cache
def _step_flops(model: str, shape: tuple[int, ...], classes: int, hidden: tuple[int, ...],
                width: int, gn_groups: int, samples: int) -> float | None:
    import torch

    from gossiplab.engine.threads import step_flops
    from gossiplab.models import build_model

    try:
        with torch.random.fork_rng(devices=[]):
            template = build_model(model, shape, classes, hidden=hidden, width=width,
                                   gn_groups=gn_groups)
    except Exception:
        return None
    return step_flops(template, shape, samples)


def run_step_flops(cfg) -> float | None:
    """Estimated flops of one training step of a run (all its nodes' forward/backward); None if
    its model or data shape is unknown."""
    d = cfg.data
    if d.dataset == "synthetic":
        shape, classes = tuple(d.synthetic_shape), d.synthetic_classes
    elif d.dataset in DATA_SHAPES:
        shape, classes = DATA_SHAPES[d.dataset]
    else:
        return None
    m = cfg.model
    return _step_flops(m.name, shape, classes, tuple(m.hidden), m.width, m.gn_groups,
                       cfg.topology.nodes * cfg.optim.batch_size)


def estimate_seconds(points) -> float | None:
    """Single-core time of a sweep's runs by :data:`STEP_OVERHEAD_S` + flops / :data:`CORE_FLOPS`
    per step (evaluation not counted); None if a run's model or data shape is unknown."""
    total = 0.0
    for p in points:
        flops = run_step_flops(p.config)
        if flops is None:
            return None
        total += p.config.train.iterations * (STEP_OVERHEAD_S + flops / CORE_FLOPS)
    return total


def human_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"
