"""Gossip schemes: what Q rounds of neighbour-only communication compute.

A scheme sees the communication only through ``mix(x, r)``, one round of exchange with the
graph's neighbours weighted by W_r (a matrix product in the simulator, point-to-point messages in
the distributed engine), so every scheme runs unchanged on both engines. Each round of every
scheme is exactly one call of ``mix``; between calls a node only combines its own current and
previous values with scalar coefficients that every node knows (computed once from W's spectrum
when the scheme is built).

Every scheme computes x <- p(W) x for a polynomial p of degree Q with p(1) = 1, so the node
average is preserved, and the disagreement x - xbar shrinks by at most
``max |p(mu)|`` over the eigenvalues mu != 1 of W:

* ``plain``: p(t) = t^Q, factor lambda^Q.
* ``chebyshev``: p(t) = T_Q(t / lambda) / T_Q(1 / lambda), the polynomial of degree Q with p(1) = 1
  that is smallest on [-lambda, lambda]; factor 1 / T_Q(1 / lambda) = 2 rho^Q / (1 + rho^(2Q)) with
  rho = (1 - sqrt(1 - lambda^2)) / lambda. Run with the stable two-term recurrence
  y_{k+1} = omega_{k+1} W y_k + (1 - omega_{k+1}) y_{k-1} (omega bounded in [1, 2]), never with
  T_Q itself, which overflows for large Q.
* ``exact``: p(t) = prod_i (t - mu_i) / (1 - mu_i) over W's K - 1 distinct eigenvalues mu_i != 1,
  which vanishes on all of them: after K - 1 rounds every node holds the exact average. The
  factors run in Leja order; with fewer than K - 1 rounds the better of the Leja prefix and
  Chebyshev runs (see :class:`ExactGossip`).

The time-varying ``exp_onepeer`` has no single W to build a polynomial of, so ``chebyshev`` and
``exact`` refuse it with a :class:`ConfigError` (its plain rounds already give the exact average
after log2(m) rounds).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from gossiplab.errors import ConfigError, unknown
from gossiplab.topology import Topology, eigenvalues

Mix = Callable[[torch.Tensor, int], torch.Tensor]
"""One gossip round: ``mix(x, r)`` returns W_r x for the rows of ``x`` (one row per node)."""

EIGEN_TOL = 1e-8
"""Eigenvalues of W closer than this are one distinct eigenvalue for ``exact`` (a ring's come in
pairs equal up to ~1e-16; eigvalsh is accurate to ~m * 1e-16)."""

FLOAT_EPS = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}
"""Unit roundoff by dtype (half the machine epsilon)."""


class GossipScheme:
    """Base class: ``apply`` runs ``rounds()`` rounds starting at global round ``round0``."""

    name = "base"
    static_only = False
    """True when the scheme is a polynomial of one fixed W (refuses time-varying topologies)."""

    def __init__(self, topology: Topology, steps: int):
        if steps < 0:
            raise ConfigError(f"algorithm.gossip_steps must be >= 0, got {steps}")
        if self.static_only and topology.time_varying:
            raise ConfigError(
                f"algorithm.gossip = '{self.name}' needs a static topology, but '{topology.name}' "
                "changes W every round; use gossip 'plain' (on exp_onepeer it averages exactly "
                "every log2(m) rounds)"
            )
        self.topology = topology
        self.steps = steps

    def apply(self, x: torch.Tensor, mix: Mix, round0: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def rounds(self) -> int:
        """Communication rounds used per iteration."""
        return self.steps

    def bound(self) -> float:
        """Theoretical worst-case factor by which ``apply`` shrinks ||x - xbar||."""
        raise NotImplementedError

    def contraction(self) -> float:
        """Worst-case factor ||p(W) - J||_2 actually achieved, measured by running ``apply`` in
        float64 on W's eigenbasis (one row per eigenvalue; ``mix`` multiplies row i by mu_i), so
        it is this code's own polynomial, rounding included."""
        if self.topology.time_varying:
            return self.topology.contraction(self.rounds())
        ev = eigenvalues(self.topology.w)
        if len(ev) == 1:
            return 0.0
        mu = torch.tensor(ev[1:].copy(), dtype=torch.float64)[:, None]
        out = self.apply(torch.ones_like(mu), lambda x, r: mu * x)
        return float(out.abs().max())

    @classmethod
    def rounds_to(cls, topology: Topology, tol: float) -> int | None:
        """Fewest rounds after which the worst-case factor is <= ``tol`` (None: never)."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "steps": self.steps, "rounds": self.rounds(), "bound": self.bound()}

    def apply_(self, x: torch.Tensor, mix: Mix, round0: int = 0) -> torch.Tensor:
        """In-place ``apply``: x <- the scheme's rounds of x; returns x. Schemes may override it
        to use a faster in-place path of the engine's ``mix``."""
        out = self.apply(x, mix, round0)
        if out.data_ptr() != x.data_ptr():
            x.copy_(out)
        return x


class PlainGossip(GossipScheme):
    """Q multiplications by W: x <- W x. Disagreement shrinks like lambda^Q."""

    name = "plain"

    def apply(self, x: torch.Tensor, mix: Mix, round0: int = 0) -> torch.Tensor:
        for q in range(self.steps):
            x = mix(x, round0 + q)
        return x

    def bound(self) -> float:
        return self.topology.contraction(self.steps)

    def apply_(self, x: torch.Tensor, mix: Mix, round0: int = 0) -> torch.Tensor:
        # The simulator's MatrixMixer runs plain rounds in place (and fused into W^Q when cheaper).
        rounds_ = getattr(mix, "rounds_", None)
        if rounds_ is not None and x.dim() == 2:
            return rounds_(x, round0, self.steps)
        return super().apply_(x, mix, round0)

    @classmethod
    def rounds_to(cls, topology: Topology, tol: float) -> int | None:
        if topology.time_varying:
            for q in range(0, 64 * topology.period + 1):
                if topology.contraction(q) <= tol:
                    return q
            return None
        if topology.nodes == 1:
            return 0
        return _first_below(lambda q: topology.lam**q, _plain_guess(topology.lam, tol), tol)


def _plain_guess(lam: float, tol: float) -> int | None:
    if tol >= 1.0:
        return 0
    if lam <= 0.0:
        return 1
    if lam >= 1.0:
        return None
    return math.ceil(math.log(tol) / math.log(lam))


def _first_below(f: Callable[[int], float], guess: int | None, tol: float) -> int | None:
    """Smallest q >= 0 with f(q) <= tol, f non-increasing, starting from an analytic guess (which
    float rounding can put one off)."""
    if guess is None:
        return None
    q = max(0, guess)
    while f(q) > tol:
        q += 1
    while q > 0 and f(q - 1) <= tol:
        q -= 1
    return q


# --------------------------------------------------------------------------------------------
# Chebyshev acceleration
# --------------------------------------------------------------------------------------------


def chebyshev_weights(lam: float, steps: int) -> list[float]:
    """omega_2 .. omega_Q of the stable recurrence (y_1 = W y_0 needs none).

    With a_k = T_k(1 / lambda): omega_{k+1} = 2 a_k / (lambda a_{k+1}), which satisfies
    omega_2 = 2 / (2 - lambda^2), omega_{k+1} = 1 / (1 - lambda^2 omega_k / 4); it decreases to
    2 / (1 + sqrt(1 - lambda^2)) <= 2, so no quantity in the recurrence grows with Q.
    """
    weights: list[float] = []
    omega = 2.0  # omega_1 (unused: the first round is plain)
    for _ in range(1, steps):
        omega = 1.0 / (1.0 - lam * lam * omega / 4.0)
        weights.append(omega)
    return weights


def chebyshev_bound(lam: float, steps: int) -> float:
    """1 / T_Q(1 / lambda) = 2 rho^Q / (1 + rho^(2Q)), rho = lambda / (1 + sqrt(1 - lambda^2))."""
    if steps == 0:
        return 1.0
    if lam >= 1.0:
        return 1.0
    rho = lam / (1.0 + math.sqrt(1.0 - lam * lam))
    rq = rho**steps
    return 2.0 * rq / (1.0 + rq * rq)


def chebyshev_rounds_to(lam: float, tol: float) -> int | None:
    if tol >= 1.0:
        return 0
    if lam <= 0.0:
        return 1
    if lam >= 1.0:
        return None
    guess = math.ceil(math.acosh(1.0 / tol) / math.acosh(1.0 / lam))
    return _first_below(lambda q: chebyshev_bound(lam, q), guess, tol)


class ChebyshevGossip(GossipScheme):
    """Chebyshev-accelerated gossip: x <- T_Q(W / lambda) x / T_Q(1 / lambda), lambda = the
    topology's spectral bound max(|lambda_2|, |lambda_m|). Round 1 is plain; round k + 1 is
    y_{k+1} = omega_{k+1} W y_k + (1 - omega_{k+1}) y_{k-1} (a node keeps its previous value)."""

    name = "chebyshev"
    static_only = True

    def __init__(self, topology: Topology, steps: int):
        super().__init__(topology, steps)
        self.lam = float(topology.lam)
        self.weights = chebyshev_weights(self.lam, steps)

    def apply(self, x: torch.Tensor, mix: Mix, round0: int = 0) -> torch.Tensor:
        if self.steps == 0:
            return x
        prev, cur = x, mix(x, round0)
        for k, omega in enumerate(self.weights, start=1):
            # (1 - omega) prev + omega W cur, as one fused op
            prev, cur = cur, torch.lerp(prev, mix(cur, round0 + k), omega)
        return cur

    def bound(self) -> float:
        return chebyshev_bound(self.lam, self.steps)

    @classmethod
    def rounds_to(cls, topology: Topology, tol: float) -> int | None:
        return 0 if topology.nodes == 1 else chebyshev_rounds_to(float(topology.lam), tol)


# --------------------------------------------------------------------------------------------
# Finite-time exact averaging
# --------------------------------------------------------------------------------------------


def distinct_eigenvalues(w: np.ndarray, tol: float = EIGEN_TOL) -> np.ndarray:
    """W's eigenvalues, clustered: sorted ascending, a gap > ``tol`` starts a new cluster; each
    cluster is represented by its mean. Returned descending (the first is 1 for a valid W)."""
    ev = np.sort(np.linalg.eigvalsh(np.asarray(w, dtype=np.float64)))
    clusters: list[list[float]] = [[float(ev[0])]]
    for v in ev[1:]:
        if v - clusters[-1][-1] <= tol:
            clusters[-1].append(float(v))
        else:
            clusters.append([float(v)])
    return np.array([np.mean(c) for c in clusters])[::-1]


def leja_order(points: np.ndarray) -> np.ndarray:
    """Leja ordering of distinct points: the largest |z| first, then each next point maximises the
    product of its distances to the points already chosen (Reichel, BIT 30, 1990)."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) == 0:
        return pts
    chosen = np.zeros(len(pts), dtype=bool)
    j = int(np.argmax(np.abs(pts)))
    order = [j]
    chosen[j] = True
    logprod = np.zeros(len(pts))
    with np.errstate(divide="ignore"):
        for _ in range(len(pts) - 1):
            logprod += np.log(np.abs(pts - pts[j]))
            j = int(np.argmax(np.where(chosen, -np.inf, logprod)))
            order.append(j)
            chosen[j] = True
    return pts[order]


def exact_factors(w: np.ndarray, tol: float = EIGEN_TOL) -> np.ndarray:
    """The eigenvalues mu_i != 1 of W, one per cluster, in the order ``exact`` applies them: Leja
    order of the shifted roots s_i = 1 - mu_i (the product is then prod (1 - s / s_i), normalised
    at s = 0, the form Leja ordering is known to keep stable). In practice this starts with the
    most negative eigenvalue and interleaves the rest so that the partial products stay small."""
    d = distinct_eigenvalues(w, tol)
    return 1.0 - leja_order(1.0 - d[1:])


def error_amplification(ev: np.ndarray, factors: np.ndarray) -> float:
    """kappa = sum_k ||P_{k-1}(W)|| ||R_k(W)|| (1 + |mu_k|) / (1 - mu_k), where P_{k-1} is the
    product of the factors before the k-th and R_k of those after it: a rounding error of relative
    size u made in round k reaches the result amplified at most about this much, so the exact
    scheme returns the average to about kappa * u relative to ||x|| (u = 2^-24 in float32)."""
    ev = np.asarray(ev, dtype=np.float64)
    vals = (ev[:, None] - factors[None, :]) / (1.0 - factors[None, :])  # [eigs, factors]
    absv = np.abs(vals)
    kappa = 0.0
    before = np.ones(len(ev))
    for k, mu in enumerate(factors):
        after = np.prod(absv[:, k + 1:], axis=1)
        kappa += before.max() * after.max() * (1.0 + abs(mu)) / (1.0 - mu)
        before = before * absv[:, k]
    return float(kappa)


def prefix_bounds(ev: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """max |P_q(mu)| over the eigenvalues ``ev`` (those != 1) for q = 0 .. len(factors), where P_q
    is the product of the first q factors (t - mu_i) / (1 - mu_i): the worst-case factor after q
    rounds of ``exact``'s product."""
    ev = np.asarray(ev, dtype=np.float64)
    out = np.empty(len(factors) + 1)
    p = np.ones(len(ev))
    out[0] = 1.0 if len(ev) else 0.0
    for q, mu in enumerate(factors, start=1):
        p = p * (ev - mu) / (1.0 - mu)
        out[q] = np.abs(p).max() if len(ev) else 0.0
    return out


class ExactGossip(GossipScheme):
    """Finite-time exact averaging: with K distinct eigenvalues of W, the K - 1 rounds
    x <- (W x - mu_i x) / (1 - mu_i) over the mu_i != 1 (in Leja order) give every node the exact
    average; DSGD-MGS then is centralized mini-batch SGD.

    * Q >= K - 1 (``mode = "exact"``): K - 1 rounds; the Q - (K - 1) further rounds would be no-ops
      and are skipped, so ``rounds()`` = K - 1 counts only the communication that happens.
    * Q < K - 1: the better, in worst case over W's actual spectrum (computed when the scheme is
      built), of the first Q factors of the Leja-ordered product (``mode = "leja_prefix"``) and
      Chebyshev gossip with Q rounds (``mode = "chebyshev"``). Neither dominates: on rings and tori
      a prefix leaves the slow eigenvalues nearly untouched and can even amplify some components
      (ring m=64, Q=2: factor 103), so Chebyshev's 1 / T_Q(1 / lambda) wins; on graphs with spread
      spectra (Erdos-Renyi) the prefix is often smaller once Q is a fair fraction of K - 1.
      Either way ``bound()`` is the factor of the variant that runs, never worse than Chebyshev.
    """

    name = "exact"
    static_only = True

    def __init__(self, topology: Topology, steps: int):
        super().__init__(topology, steps)
        self.factors = exact_factors(topology.w)
        self.exact_rounds = len(self.factors)
        self._eigs = eigenvalues(topology.w)[1:]
        self.fallback: ChebyshevGossip | None = None
        self.mode = "exact"
        self.plan = self.factors
        self._bound = 0.0
        if steps < self.exact_rounds:
            cheb = ChebyshevGossip(topology, steps)
            prefix = float(prefix_bounds(self._eigs, self.factors[:steps])[-1])
            if prefix < cheb.bound():
                self.mode, self.plan, self._bound = "leja_prefix", self.factors[:steps], prefix
            else:
                self.mode, self.plan, self.fallback, self._bound = "chebyshev", None, cheb, cheb.bound()

    @property
    def is_exact(self) -> bool:
        return self.mode == "exact"

    def apply(self, x: torch.Tensor, mix: Mix, round0: int = 0) -> torch.Tensor:
        if self.fallback is not None:
            return self.fallback.apply(x, mix, round0)
        for k, mu in enumerate(self.plan):
            # (W x - mu x) / (1 - mu) = x + (W x - x) / (1 - mu), as one fused op
            x = torch.lerp(x, mix(x, round0 + k), float(1.0 / (1.0 - mu)))
        return x

    def rounds(self) -> int:
        return self.exact_rounds if self.is_exact else self.steps

    def bound(self) -> float:
        return self._bound

    def error_amplification(self) -> float:
        """kappa of the product that runs (see :func:`error_amplification`; 0 for Chebyshev)."""
        if self.plan is None or len(self.plan) == 0:
            return 0.0
        return error_amplification(eigenvalues(self.topology.w), self.plan)

    @classmethod
    def rounds_to(cls, topology: Topology, tol: float) -> int:
        factors = exact_factors(topology.w)
        k1 = len(factors)
        cheb = chebyshev_rounds_to(float(topology.lam), tol)
        below = np.flatnonzero(prefix_bounds(eigenvalues(topology.w)[1:], factors)[:k1] <= tol)
        candidates = [k1] + ([cheb] if cheb is not None else []) + ([int(below[0])] if len(below) else [])
        return min(candidates)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "mode": self.mode,
            "exact_rounds": self.exact_rounds,
            "distinct_eigenvalues": self.exact_rounds + 1,
            "order": "leja(1 - mu)",
        }


SCHEMES: dict[str, type[GossipScheme]] = {
    "plain": PlainGossip,
    "chebyshev": ChebyshevGossip,
    "exact": ExactGossip,
}
"""Gossip schemes by name. Adding one is one subclass registered here."""


def build_gossip(name: str, topology: Topology, steps: int) -> GossipScheme:
    try:
        cls = SCHEMES[name]
    except KeyError:
        raise ConfigError(unknown("gossip scheme", name, SCHEMES, "algorithm.gossip")) from None
    return cls(topology, steps)


def compare_schemes(topology: Topology, steps: tuple[int, ...] | list[int],
                    tolerances: tuple[float, ...] | list[float]) -> dict[str, dict]:
    """Per scheme: measured contraction and theoretical bound after each Q in ``steps``, rounds
    per iteration actually used, and rounds needed to reach each tolerance (``exact`` also: K - 1,
    which variant runs at each Q, and its float32 error estimate). Schemes that cannot run on the
    topology get ``available: false`` and the reason."""
    out: dict[str, dict] = {}
    for name, cls in SCHEMES.items():
        try:
            cls(topology, 0)
        except ConfigError as e:
            out[name] = {"available": False, "reason": str(e)}
            continue
        entry: dict = {"available": True, "contraction": {}, "bound": {}, "rounds": {}}
        if cls is ExactGossip:
            entry["mode"] = {}
        for q in steps:
            s = cls(topology, q)
            entry["contraction"][str(q)] = s.contraction()
            entry["bound"][str(q)] = s.bound()
            entry["rounds"][str(q)] = s.rounds()
            if isinstance(s, ExactGossip):
                entry["mode"][str(q)] = s.mode
        entry["rounds_to"] = {f"{t:g}": cls.rounds_to(topology, t) for t in tolerances}
        if cls is ExactGossip:
            full = ExactGossip(topology, len(exact_factors(topology.w)))
            kappa = full.error_amplification()
            entry.update({
                "exact_rounds": full.exact_rounds,
                "distinct_eigenvalues": full.exact_rounds + 1,
                "order": "leja(1 - mu)",
                "residual": full.contraction(),
                "error_amplification": kappa,
                "float32_error": kappa * FLOAT_EPS[torch.float32],
            })
        out[name] = entry
    return out
