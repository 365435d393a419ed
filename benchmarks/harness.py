"""Timing on a noisy machine: interleaved variants, medians over repeats, paired ratios.

Every comparison runs its variants in the same process, block after block, rotating their order
every repeat, so that a slow spell (another user's job) hits all of them alike. A block records the
median of its calls. A figure is the median over repeats, with the interquartile range as its
spread; a ratio is computed per repeat (variant A's block against variant B's block of the same
repeat) and then summarised the same way.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class Settings:
    repeats: int = 9  # blocks per variant
    block_s: float = 0.3  # a block runs a variant about this long (at least one call)
    warmup: int = 2  # untimed calls per variant first


@dataclass
class Timings:
    """Seconds per call of each variant, one value per repeat."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return float(np.median(self.seconds[name]))

    def spread(self, name: str) -> tuple[float, float]:
        lo, hi = np.percentile(self.seconds[name], [25, 75])
        return float(lo), float(hi)

    def ratios(self, a: str, b: str) -> list[float]:
        """Per-repeat time(a) / time(b)."""
        return [x / y for x, y in zip(self.seconds[a], self.seconds[b], strict=True)]

    def ratio(self, a: str, b: str) -> tuple[float, float, float]:
        """Median and interquartile range of the per-repeat ratios time(a) / time(b)."""
        r = self.ratios(a, b)
        lo, med, hi = np.percentile(r, [25, 50, 75])
        return float(med), float(lo), float(hi)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def compare(variants: dict[str, Callable[[], object]], settings: Settings) -> Timings:
    """Time each variant ``settings.repeats`` times, interleaved, rotating the order. A block runs
    a variant for about ``settings.block_s`` and records the median of its calls' times, so that
    a short burst of other work hits one call, not the block."""
    names = list(variants)
    calls = {}
    for name, fn in variants.items():
        one = 0.0
        for _ in range(max(1, settings.warmup)):  # warm up; slow variants warm up once
            t0 = time.perf_counter()
            fn()
            _sync()
            one = time.perf_counter() - t0
            if one > settings.block_s:
                break
        calls[name] = max(1, int(settings.block_s / max(one, 1e-6)))
    out = Timings({n: [] for n in names})
    for r in range(settings.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        if r % 2:
            order.reverse()
        for name in order:
            fn, times = variants[name], []
            for _ in range(calls[name]):
                t0 = time.perf_counter()
                fn()
                _sync()
                times.append(time.perf_counter() - t0)
            out.seconds[name].append(float(np.median(times)))
    return out


# -- formatting -------------------------------------------------------------------------------


def ms(t: Timings, name: str) -> str:
    lo, hi = t.spread(name)
    return f"{1e3 * t.median(name):.3g} ms ({1e3 * lo:.3g}–{1e3 * hi:.3g})"


def ratio(t: Timings, a: str, b: str, digits: int = 2) -> str:
    med, lo, hi = t.ratio(a, b)
    return f"{med:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- the machine ------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children)."""
    mine = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF,
               resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields]
        busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # all but idle, iowait
        return busy / os.sysconf("SC_CLK_TCK"), mine
    except (OSError, ValueError, IndexError):
        return float("nan"), mine


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "intra_op_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "libc": " ".join(platform.libc_ver()),
        "platform": platform.platform(),
        "gpu": gpu,
    }


# -- memory: one fresh process per measurement --------------------------------------------------


def probe(spec: dict, timeout: float = 900) -> dict:
    """Run ``benchmarks/probe.py`` with ``spec`` in a fresh interpreter; returns its JSON result."""
    script = Path(__file__).with_name("probe.py")
    proc = subprocess.run([sys.executable, str(script), json.dumps(spec)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise RuntimeError(f"probe {spec} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
