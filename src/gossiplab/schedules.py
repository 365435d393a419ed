"""Learning-rate schedules lr(t), t = 0, 1, ... . ``inverse_t`` is the c/(t+1) the theory assumes."""

from __future__ import annotations

import math
from collections.abc import Callable

from gossiplab.errors import ConfigError, unknown

Schedule = Callable[[int], float]


def constant(lr: float, **_: object) -> Schedule:
    return lambda t: lr


def inverse_t(lr: float, t0: int = 0, **_: object) -> Schedule:
    """eta_t = c / (t + 1 + t0) <= c / (t + 1): the step size of the stability bounds."""
    return lambda t: lr / (t + 1 + t0)


def cosine(lr: float, iterations: int = 1, **_: object) -> Schedule:
    return lambda t: 0.5 * lr * (1.0 + math.cos(math.pi * min(t, iterations) / iterations))


def step(lr: float, step_every: int = 1000, gamma: float = 0.1, **_: object) -> Schedule:
    return lambda t: lr * gamma ** (t // step_every)


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "inverse_t": inverse_t,
    "cosine": cosine,
    "step": step,
}


def build_schedule(name: str, **options: object) -> Schedule:
    if name not in SCHEDULES:
        raise ConfigError(unknown("schedule", name, SCHEDULES, "optim.schedule"))
    return SCHEDULES[name](**options)
