"""Sweep files: a base config, grid axes (Cartesian product), zipped axes and seeds, expanded into
the list of runs to do. Each run is identified by the hash of its resolved config.

```toml
[sweep]
name = "q-vs-topology"
seeds = [0, 1, 2]          # or an int: range(seeds); each seed s sets seeds.data/init/sampling = s
baseline = true            # add the centralized run once per combination of the other axes

[base]                     # any config (same sections as `gossiplab run --config`)
train.iterations = 1500

[grid]                     # Cartesian product, in file order
"algorithm.gossip_steps" = [1, 2, 4, 8]
"topology.name" = ["ring", "torus"]

[[zip]]                    # keys that vary together (equal-length lists)
"optim.lr" = [0.1, 0.05]
"optim.batch_size" = [16, 32]
```

Inside a sweep every run trains one algorithm (``algorithm.compare_centralized = false``). A
centralized run does not depend on the topology (except the node count m) or on the gossip keys,
and DSGD-MGS with Q = 0 (local SGD) not on the topology, so those keys are reset to their defaults
for them: points that differ only there hash identically and run once.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gossiplab.config import (  # flatten, get_dotted, set_dotted: imported from here too
    BASELINE,
    CONFIG_FILE_LIMIT,
    AlgorithmConfig,
    Config,
    apply_override,
    check_keys,
    flatten,
    from_dict,
    get_dotted,
    merge,
    parse_value,
    read_toml,
    set_dotted,
    shown,
)
from gossiplab.errors import ConfigError

MAX_RUNS = 1_000_000  # checked before the grid is expanded (a run is a row in memory and the store)
SWEEP_KEYS = {"name", "description", "config", "seeds", "seed_keys", "baseline", "expected"}
# expected: free text, how long the sweep took where it was measured (`gossiplab packs` shows it)
TOP_LEVEL = {"sweep", "base", "grid", "zip"}
SEED_KEYS = ("data", "init", "sampling")

# Columns every results store indexes, whatever a sweep varies.
CORE_KEYS = ("algorithm.name", "data.dataset", "model.name", "topology.name", "topology.nodes",
             "algorithm.gossip_steps", "seeds.data", "seeds.init", "seeds.sampling")


def _algorithm(name: str) -> Any:
    """The algorithm class ``name`` (None if unknown). Imported here, not at the top: algorithms
    need torch, and parsing a sweep file should not."""
    from gossiplab.algorithms import ALGORITHMS

    return ALGORITHMS.get(name)


def baseline_ignores(key: str) -> bool:
    """True when ``key`` has no effect on a baseline (centralized) run: topology and gossip keys."""
    return _algorithm(BASELINE).ignores(key, {"algorithm": {"name": BASELINE}})


def ignores(config: dict[str, Any], key: str) -> bool:
    """True when ``key`` cannot change the run ``config`` describes (so it is normalised away);
    the algorithm says which keys (:meth:`~gossiplab.algorithms.Algorithm.ignores`)."""
    cls = _algorithm(get_dotted(config, "algorithm.name") or AlgorithmConfig().name)
    return cls is not None and cls.ignores(key, config)


def _drop(d: dict[str, Any], key: str) -> None:
    *parents, last = key.split(".")
    node: Any = d
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(last, None)


def normalise_baseline(raw: dict[str, Any]) -> dict[str, Any]:
    """The baseline (centralized) config of ``raw``, with the keys it ignores reset to defaults."""
    out = merge(raw, {})
    set_dotted(out, "algorithm.name", BASELINE)
    set_dotted(out, "algorithm.compare_centralized", False)
    return normalise(out)


def normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """Reset the keys a run ignores, so that runs which compute the same thing hash the same
    (e.g. centralized: topology and gossip keys; DSGD-MGS with Q = 0: topology keys)."""
    dropped = [k for k in flatten(raw) if ignores(raw, k)]
    if not dropped:
        return raw
    out = merge(raw, {})
    for k in dropped:
        _drop(out, k)
    return out


def param_value(config: dict[str, Any], key: str) -> Any:
    """The value of ``key`` for a run, None where the run ignores it (see :func:`ignores`)."""
    if ignores(config, key):
        return None
    return get_dotted(config, key)


@dataclass(frozen=True)
class SweepPoint:
    config: Config
    run_id: str
    params: dict[str, Any]  # swept key -> value (None where the run ignores the key)

    @property
    def algorithm(self) -> str:
        return self.config.algorithm.name

    @property
    def iterations(self) -> int:
        return self.config.train.iterations


@dataclass
class Expansion:
    points: list[SweepPoint]
    duplicates: int  # points that hashed to an earlier point (mostly normalised baselines)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.points:
            out[p.algorithm] = out.get(p.algorithm, 0) + 1
        return out


@dataclass
class SweepSpec:
    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    zips: list[dict[str, list[Any]]] = field(default_factory=list)
    seeds: list[int] | None = None
    seed_keys: tuple[str, ...] = SEED_KEYS
    baseline: bool = False
    description: str = ""
    source: str = ""  # the sweep file's text, kept with the results
    path: str | None = None

    @property
    def where(self) -> str:
        return f"sweep file {self.path}" if self.path else "sweep"

    def axes(self) -> list[str]:
        """Every key the sweep varies, seeds included."""
        keys = list(self.grid)
        for z in self.zips:
            keys += list(z)
        if self.seeds is not None:
            keys += [f"seeds.{k}" for k in self.seed_keys]
        return keys

    def indexed_keys(self) -> list[str]:
        return list(dict.fromkeys([*CORE_KEYS, *self.axes()]))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "base": self.base,
                "grid": self.grid, "zip": self.zips, "seeds": self.seeds,
                "seed_keys": list(self.seed_keys), "baseline": self.baseline}

    def spec_hash(self) -> str:
        import hashlib
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- command-line changes ------------------------------------------------------------------

    def narrowed(self, *, overrides: list[str] = (), seeds: int | None = None,
                 where: list[str] = ()) -> SweepSpec:
        """This sweep changed from the command line, without editing its file: ``overrides``
        (``key=value``, TOML values, as ``gossiplab run --set``) go into every run's base;
        ``seeds = N`` runs seeds 0..N-1; each ``where`` (``key=v1,v2``) keeps only those values of
        a grid or zip axis (for a zip, the positions where the key has one of them). The result
        is another sweep (its own spec hash); runs it shares with the full sweep keep their ids,
        so their stored results are reused."""
        import copy

        axes = set(self.grid) | {k for z in self.zips for k in z}
        base = copy.deepcopy(self.base)
        for assignment in overrides:
            key = assignment.split("=", 1)[0].strip()
            if key in axes:
                raise ConfigError(f"--set {key}: is an axis of this sweep; keep some of its values "
                                  f"with --where {key}=VALUE[,VALUE...]")
            if key.startswith("seeds.") and self.seeds is not None and key[6:] in self.seed_keys:
                raise ConfigError(f"--set {key}: the sweep sets the seeds; use --seeds N")
            apply_override(base, assignment)
        try:
            check_keys(base)
        except ConfigError as e:
            raise ConfigError(f"--set: {e}") from None
        grid = {k: list(v) for k, v in self.grid.items()}
        zips = [{k: list(v) for k, v in z.items()} for z in self.zips]
        for clause in where:
            if "=" not in clause:
                raise ConfigError(f"--where expects key=value[,value...], got '{shown(clause)}'")
            key, text = (t.strip() for t in clause.split("=", 1))
            wanted = [parse_value(v.strip()) for v in _split_values(text) if v.strip()]
            if key not in axes:
                listed = ", ".join(sorted(axes)) or "none"
                raise ConfigError(f"--where {shown(key)}: not an axis of this sweep (axes: {listed})")
            values = grid[key] if key in grid else next(z[key] for z in zips if key in z)
            missing = [w for w in wanted if not any(_same(w, v) for v in values)]
            if missing or not wanted:
                raise ConfigError(f"--where {key}: {', '.join(map(shown, missing)) or 'no value'} "
                                  f"not among its values {values}")
            if key in grid:
                grid[key] = [v for v in values if any(_same(w, v) for w in wanted)]
            else:
                z = next(z for z in zips if key in z)
                keep = [i for i, v in enumerate(z[key]) if any(_same(w, v) for w in wanted)]
                for k in z:
                    z[k] = [z[k][i] for i in keep]
        if seeds is not None and seeds < 1:
            raise ConfigError("--seeds must be >= 1")
        _count(seeds, f"--seeds {seeds}", self.where)
        if seeds is not None:  # before anything is expanded: the grid times the seeds
            _count(_grid_points(grid, zips) * seeds * (2 if self.baseline else 1),
                   f"--seeds {seeds} times the grid", self.where)
        return SweepSpec(name=self.name, base=base, grid=grid, zips=zips,
                         seeds=list(range(seeds)) if seeds is not None else self.seeds,
                         seed_keys=self.seed_keys, baseline=self.baseline,
                         description=self.description, source=self.source, path=self.path)

    # -- expansion -----------------------------------------------------------------------------

    def _assignments(self) -> list[dict[str, Any]]:
        """Axis values of every grid x zip combination, before seeds (file order, last fastest)."""
        blocks: list[list[dict[str, Any]]] = []
        for key, values in self.grid.items():
            blocks.append([{key: v} for v in values])
        for z in self.zips:
            n = len(next(iter(z.values())))
            blocks.append([{k: vs[i] for k, vs in z.items()} for i in range(n)])
        return [dict(kv for d in combo for kv in d.items()) for combo in itertools.product(*blocks)]

    def expand(self) -> Expansion:
        seeds: list[int | None] = list(self.seeds) if self.seeds is not None else [None]
        points: list[SweepPoint] = []
        seen: set[str] = set()
        duplicates = 0
        combos = self._assignments()
        for seed in seeds:  # seeds outermost: an interrupted sweep has whole grids for the first seeds
            for combo in combos:
                raw = merge(self.base, {})
                for k, v in combo.items():
                    set_dotted(raw, k, v)
                if seed is not None:
                    for k in self.seed_keys:
                        set_dotted(raw, f"seeds.{k}", seed)
                set_dotted(raw, "algorithm.compare_centralized", False)
                algo = get_dotted(raw, "algorithm.name") or AlgorithmConfig().name
                # the baseline first: its reference line exists as soon as any point is done
                variants = [normalise_baseline(raw), raw] if self.baseline and algo != BASELINE \
                    else [raw]
                for r in variants:
                    p = self._point(r, combo, seed)
                    if p.run_id in seen:
                        duplicates += 1
                        continue
                    seen.add(p.run_id)
                    points.append(p)
        return Expansion(points, duplicates)

    def _point(self, raw: dict[str, Any], combo: dict[str, Any], seed: int | None) -> SweepPoint:
        from gossiplab.setup import check_names

        raw = normalise(raw)
        try:
            cfg = from_dict(raw, strict=True)  # every value came from a file
            check_names(cfg)  # an unknown topology, model... is refused before anything runs
        except ConfigError as e:
            at = ", ".join(f"{k}={json.dumps(v)}" for k, v in combo.items())
            seed_s = f" seed={seed}" if seed is not None else ""
            raise ConfigError(f"{self.where}: point {{{at}}}{seed_s}: {e}") from None
        resolved = cfg.to_dict()
        params = {k: param_value(resolved, k) for k in self.axes()}
        return SweepPoint(config=cfg, run_id=cfg.config_hash(), params=params)


# -- parsing --------------------------------------------------------------------------------------


def _axis_table(raw: Any, where: str, what: str) -> dict[str, list[Any]]:
    """Flatten a grid/zip table to {dotted key: list of values}; check keys and lists."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [{what}] must be a table of key = [values]")
    out: dict[str, list[Any]] = {}

    def walk(d: dict[str, Any], prefix: str) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if key in out:  # "a.b" = [...] and a.b = [...] (or [grid.a] b = [...]) in one table
                raise ConfigError(f"{where}: {what} axis '{key}' appears more than once")
            if isinstance(v, dict):
                walk(v, f"{key}.")
            elif isinstance(v, list):
                if not v:
                    raise ConfigError(f"{where}: {what} axis '{key}' has no values")
                out[key] = v
            else:
                raise ConfigError(f"{where}: {what} axis '{key}' must be a list of values "
                                  f"(got {v!r}); put fixed values in [base]")

    walk(raw, "")
    for key, values in out.items():
        nested: dict[str, Any] = {}
        set_dotted(nested, key, values[0])
        try:
            check_keys(nested)
        except ConfigError as e:
            raise ConfigError(f"{where}: {what} axis: {e}") from None
        if key.count(".") != 1:
            raise ConfigError(f"{where}: {what} axis '{key}' must be 'section.key'")
    return out


def parse_sweep(raw: dict[str, Any], *, path: str | None = None, source: str = "") -> SweepSpec:
    where = f"sweep file {path}" if path else "sweep"
    unknown = set(raw) - TOP_LEVEL
    if unknown:
        raise ConfigError(f"{where}: unknown table(s) {sorted(unknown)}; a sweep file has "
                          "[sweep], [base], [grid] and [[zip]]")
    meta = raw.get("sweep", {})
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: [sweep] must be a table")
    bad = set(meta) - SWEEP_KEYS
    if bad:
        raise ConfigError(f"{where}: unknown [sweep] key(s) {sorted(bad)} "
                          f"(known: {', '.join(sorted(SWEEP_KEYS))})")
    for key in ("config", "name", "description", "expected"):
        if key in meta and not isinstance(meta[key], str):
            raise ConfigError(f"{where}: sweep.{key} must be a string")
    if not isinstance(raw.get("base", {}), dict):
        raise ConfigError(f"{where}: [base] must be a table")
    base: dict[str, Any] = {}
    if "config" in meta:
        cfg_path = Path(meta["config"])
        if path and not cfg_path.is_absolute():
            cfg_path = Path(path).parent / cfg_path
        base = read_toml(cfg_path)
    base = merge(base, raw.get("base", {}))
    try:
        check_keys(base)
    except ConfigError as e:
        raise ConfigError(f"{where}: [base]: {e}") from None

    grid = _axis_table(raw.get("grid", {}), where, "grid")
    zraw = raw.get("zip", [])
    zraw = [zraw] if isinstance(zraw, dict) else zraw
    if not isinstance(zraw, list):
        raise ConfigError(f"{where}: zip must be a table or an array of tables ([[zip]])")
    zips = [_axis_table(z, where, "zip") for z in zraw]
    if any(not z for z in zips):
        raise ConfigError(f"{where}: a [[zip]] table has no axes")
    seen = set(grid)
    if "algorithm.compare_centralized" in grid or any("algorithm.compare_centralized" in z for z in zips):
        raise ConfigError(f"{where}: algorithm.compare_centralized is false inside a sweep; "
                          "set sweep.baseline = true to add centralized runs")
    for z in zips:
        lengths = {k: len(v) for k, v in z.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"{where}: zipped axes need lists of equal length, got {lengths}")
        for k in z:
            if k in seen:
                raise ConfigError(f"{where}: axis '{k}' appears more than once")
            seen.add(k)

    seeds = meta.get("seeds")
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int | list):
            raise ConfigError(f"{where}: sweep.seeds must be an int (count) or a list of ints")
        if isinstance(seeds, int):
            if seeds < 1:
                raise ConfigError(f"{where}: sweep.seeds must be >= 1")
            _count(seeds, f"sweep.seeds = {seeds}", where)
            seeds = list(range(seeds))
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f"{where}: sweep.seeds must be a non-empty list of ints")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where}: sweep.seeds has repeated values")
    points = _grid_points(grid, zips)
    _count(points * (len(seeds) if seeds else 1) * (2 if meta.get("baseline") is True else 1),
           "the grid" + (" times the seeds" if seeds else ""), where)
    raw_keys = meta.get("seed_keys", list(SEED_KEYS))
    if not isinstance(raw_keys, list) or not all(isinstance(k, str) for k in raw_keys):
        raise ConfigError(f"{where}: sweep.seed_keys must be a list of names from {list(SEED_KEYS)}")
    seed_keys = tuple(raw_keys)
    if not seed_keys or any(k not in SEED_KEYS for k in seed_keys):
        raise ConfigError(f"{where}: sweep.seed_keys must be a subset of {list(SEED_KEYS)}")
    if seeds is not None:
        for k in seed_keys:
            if f"seeds.{k}" in seen:
                raise ConfigError(f"{where}: seeds.{k} is both an axis and set by sweep.seeds")
    baseline = meta.get("baseline", False)
    if not isinstance(baseline, bool):
        raise ConfigError(f"{where}: sweep.baseline must be true or false")
    name = meta.get("name") or (Path(path).stem if path else "sweep")
    return SweepSpec(name=str(name), base=base, grid=grid, zips=zips, seeds=seeds,
                     seed_keys=seed_keys, baseline=baseline,
                     description=str(meta.get("description", "")), source=source, path=path)


def load_sweep(path: str | Path) -> SweepSpec:
    from gossiplab.fileio import read_text

    path = Path(path)
    raw = read_toml(path, "sweep file")
    # already checked by read_toml: a regular UTF-8 file of at most 1 MiB
    source = read_text(path, "sweep file", CONFIG_FILE_LIMIT)
    return parse_sweep(raw, path=str(path), source=source)


def _split_values(text: str) -> list[str]:
    """``v1,v2,...`` split at the commas outside brackets and quotes: ``[32,32],[64]`` is two
    values (model.hidden lists), ``"a,b"`` one."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _grid_points(grid: dict[str, list[Any]], zips: list[dict[str, list[Any]]]) -> int:
    """Points of grid x zips, before seeds and baseline (a zip counts its common length)."""
    return math.prod(len(v) for v in grid.values()) * math.prod(
        len(next(iter(z.values()))) if z else 1 for z in zips)


def _same(a: Any, b: Any) -> bool:
    """Equal as sweep values: 1 is not true (Python's 1 == True), 1 is 1.0."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _count(n: int | None, what: str, where: str) -> None:
    if n is not None and n > MAX_RUNS:
        raise ConfigError(f"{where}: {what} gives {n:,} runs, more than the {MAX_RUNS:,} a sweep may "
                          "hold; split it into several sweeps")

