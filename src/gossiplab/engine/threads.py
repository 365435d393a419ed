"""How many threads a run uses when ``engine.threads = 0`` (the default).

A parallel region of N OpenMP threads finishes only when its slowest thread does; on a shared
machine one of them is often descheduled for a whole scheduler tick, so many small regions per
step make a run 10-30x slower with 2 threads than with 1 (docs/benchmarks.md, "Default thread
count"). Extra threads only pay when each step carries enough work to hide that, and only on
cores that nobody else is using. So the default is one thread unless the per-step work is large
(:data:`PARALLEL_MIN_FLOPS`) and more than one core is free, and then at most the free cores.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import torch
from torch import nn

# Work per training step (forward + backward, all models) below which one thread is at least as
# fast as two even on an idle machine: a 784-64-10 MLP on 16 nodes at batch 32 is ~0.16 GFLOP
# (a few ms on one core), and a parallel region costs tens of microseconds idle and up to a tick
# (4 ms) under load. Small CNNs on 16 nodes (fashion-mnist, quick-fmnist-cnn) are above it.
PARALLEL_MIN_FLOPS = 2e9


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str
    step_gflops: float | None = None
    cores: int | None = None
    free_cores: float | None = None

    def record(self) -> dict:
        """What the run's config.json/summary.json record (setup.threads)."""
        return {"threads": self.threads, "reason": self.reason,
                "step_gflops": None if self.step_gflops is None else round(self.step_gflops, 4),
                "cores": self.cores,
                "free_cores": None if self.free_cores is None else round(self.free_cores, 2)}


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask; a cgroup/taskset restriction counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _proc_stat_busy(window: float) -> float | None:
    """Cores busy over ``window`` seconds from /proc/stat (all processes, this one included)."""
    def read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    a = read()
    if a is None:
        return None
    time.sleep(window)
    b = read()
    if b is None or b[0] == a[0]:
        return None
    total, idle = b[0] - a[0], b[1] - a[1]
    return (total - idle) / total * (os.cpu_count() or 1)


def busy_cores(window: float = 0.05) -> float:
    """Cores other work occupies: the larger of the 1-minute load average and the busy share of
    the CPUs over a short window (the load average lags, the window is noisy; erring high costs
    at most a second thread, erring low can cost 10x)."""
    estimates = []
    with contextlib.suppress(AttributeError, OSError):
        estimates.append(os.getloadavg()[0])
    now = _proc_stat_busy(window)
    if now is not None:
        estimates.append(now)
    return max(estimates, default=0.0)


def step_flops(template: nn.Module, input_shape: tuple[int, ...], samples: int) -> float | None:
    """Forward + backward FLOPs of one step over ``samples`` samples (all models' batches
    together), from a one-sample forward pass: 2 x the multiply-adds of its linear and
    convolution layers (what torch's flop counter counts; counted with hooks here because that
    counter imports torch._dynamo, a second of start-up); None if the pass fails."""
    counted = [0]

    def hook(mod: nn.Module, inputs, out) -> None:
        if not torch.is_tensor(out):
            return
        if isinstance(mod, nn.Linear):
            counted[0] += 2 * out.numel() * mod.in_features
        else:  # convolution: every output value is a dot product over (C_in / groups) x kernel
            k = 1
            for v in mod.kernel_size:
                k *= v
            counted[0] += 2 * out.numel() * (mod.in_channels // mod.groups) * k

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    handles = [m.register_forward_hook(hook) for m in template.modules() if isinstance(m, kinds)]
    try:
        p = next(template.parameters())
        with torch.no_grad():
            template(torch.zeros(1, *input_shape, dtype=p.dtype, device=p.device))
    except Exception:  # an exotic model: fall back on 1 thread
        return None
    finally:
        for h in handles:
            h.remove()
    forward = counted[0]
    if not forward:  # no counted op (elementwise-only model): the parameters give a lower bound
        forward = 2 * sum(p.numel() for p in template.parameters())
    return 3.0 * forward * samples  # backward ~ twice the forward


def choose_threads(explicit: int, flops: float | None, *, cap: int | None = None,
                   device: str = "cpu") -> ThreadChoice:
    """The intra-op thread count for a run: ``explicit`` when > 0, else one thread unless a step
    carries at least :data:`PARALLEL_MIN_FLOPS` and more than one core is free; then the free
    cores (at most ``cap``, e.g. a sweep worker's fair share of the machine)."""
    if explicit > 0:
        return ThreadChoice(explicit, "engine.threads")
    gflops = None if flops is None else flops / 1e9
    if device != "cpu":
        return ThreadChoice(1, "accelerator: the host thread only launches kernels", gflops)
    cores = usable_cores()
    if cap:
        cores = min(cores, cap)
    if flops is None or flops < PARALLEL_MIN_FLOPS:
        why = "unknown work per step" if flops is None else (
            f"{gflops:.2g} GFLOP per step is below {PARALLEL_MIN_FLOPS / 1e9:g}")
        return ThreadChoice(1, why, gflops, cores)
    free = usable_cores() - busy_cores()
    threads = max(1, min(cores, int(free + 0.25)))  # a core at most 75% busy elsewhere counts
    return ThreadChoice(threads, f"{gflops:.2g} GFLOP per step; {max(free, 0):.1f} core(s) free",
                        gflops, cores, free)


def apply_threads(choice: ThreadChoice) -> None:
    """Set torch's intra-op threads to the choice (the process-wide default for new threads)."""
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
