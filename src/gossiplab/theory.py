"""What the theory predicts, as plain functions; each docstring names its source.

Notation: T iterations, n samples per node, m nodes, step size eta_t = c/(t+1) (``inverse_t``),
beta the smoothness of the loss, L its Lipschitz constant, Q gossip rounds per iteration, W the
mixing matrix, lambda = max(|lambda_2(W)|, |lambda_m(W)|).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gossiplab.topology import Topology

SOURCE_PAPER = ("Unveiling the Power of Multiple Gossip Steps: A Stability-Based Generalization "
                "Analysis in Decentralized Training (NeurIPS 2025)")


# -- gossip ------------------------------------------------------------------------------------


def spectral_gap(topology: Topology) -> float:
    """1 - lambda, the spectral gap of W (per round; geometric mean over a period for
    time-varying graphs). Boyd, Ghosh, Prabhakar & Shah, "Randomized gossip algorithms", IEEE
    Trans. Inf. Theory 52(6), 2006; Xiao & Boyd, "Fast linear iterations for distributed
    averaging", Systems & Control Letters 53, 2004. Computed by :mod:`gossiplab.topology`."""
    return topology.gap


def gossip_contraction(topology: Topology, q: int, round0: int = 0) -> float:
    """||W_{r0+q-1} ... W_{r0} - J||_2: the factor by which q gossip rounds starting at round
    ``round0`` shrink the distance to the average; lambda^q for a static symmetric W (Xiao & Boyd,
    2004: ||W - J||_2 = lambda and (W - J)^q = W^q - J for doubly stochastic W)."""
    if q <= 0:
        return 1.0
    if not topology.time_varying:
        return topology.contraction(q)
    m = topology.nodes
    p = np.eye(m)
    for r in range(round0, round0 + q):
        p = topology.matrix(r) @ p
    val = float(np.linalg.norm(p - np.full((m, m), 1.0 / m), 2))
    return 0.0 if val < 1e-12 else val


# -- the source paper's rates ------------------------------------------------------------------


def centralized_rate(T: float, n: float, m: float, c: float, beta: float) -> float:
    """Order of the generalization bound of centralized mini-batch SGD on the union of m nodes'
    n samples each, step c/(t+1), beta-smooth loss: T^{c beta/(c beta + 1)} / (n m). Source: the
    abstract of "Unveiling the Power of Multiple Gossip Steps: A Stability-Based Generalization
    Analysis in Decentralized Training" (NeurIPS 2025); it is Hardt et al. (2016), Thm. 3.12,
    with nm samples. Constants omitted: compare exponents, not values."""
    cb = c * beta
    return float(T) ** (cb / (cb + 1.0)) / (n * m)


def decentralized_limit_rate(T: float, n: float, m: float, c: float, beta: float) -> float:
    """Order of the generalization bound of DSGD-MGS as Q grows:
    T^{2 c beta/(2 c beta + 2)} / (n m^{1/(2 c beta + 2)}). Source: the abstract of "Unveiling
    the Power of Multiple Gossip Steps" (NeurIPS 2025). Constants omitted."""
    cb = c * beta
    return float(T) ** (2 * cb / (2 * cb + 2.0)) / (n * float(m) ** (1.0 / (2 * cb + 2.0)))


def rate_exponents(c: float, beta: float) -> dict[str, dict[str, float]]:
    """Exponents of T, n and m in :func:`centralized_rate` and :func:`decentralized_limit_rate`
    (the paper's abstract). In T both equal c beta/(c beta + 1); they differ in m: -1 against
    -1/(2 c beta + 2)."""
    cb = c * beta
    return {
        "centralized": {"T": cb / (cb + 1.0), "n": -1.0, "m": -1.0},
        "decentralized": {"T": 2 * cb / (2 * cb + 2.0), "n": -1.0, "m": -1.0 / (2 * cb + 2.0)},
    }


# -- Hardt, Recht & Singer (2016) --------------------------------------------------------------


def hardt_nonconvex_stability(T: float, n: float, c: float, beta: float, L: float) -> float:
    """Uniform stability of SGD on a non-convex loss f(.; z) in [0, 1] that is L-Lipschitz and
    beta-smooth, with monotonically non-increasing steps eta_t <= c/t, after T steps on n samples:

        eps_stab <= (1 + 1/(beta c)) / (n - 1) * (2 c L^2)^{1/(beta c + 1)} * T^{beta c/(beta c + 1)}

    Hardt, Recht & Singer, "Train faster, generalize better: Stability of stochastic gradient
    descent", ICML 2016, Theorem 3.12. Bounds the expected generalization gap (Thm. 2.2)."""
    if n <= 1:
        raise ValueError("the bound needs n >= 2 samples")
    bc = beta * c
    return (1 + 1 / bc) / (n - 1) * (2 * c * L * L) ** (1 / (bc + 1)) * float(T) ** (bc / (bc + 1))


def hardt_convex_stability(lrs: Sequence[float], n: float, L: float) -> float:
    """Uniform stability of SGD on a convex, L-Lipschitz, beta-smooth loss with steps
    eta_t <= 2/beta: (2 L^2 / n) sum_t eta_t. Hardt, Recht & Singer (2016), Theorem 3.8."""
    return 2 * L * L / n * float(np.sum(lrs))


def hardt_strongly_convex_stability(n: float, L: float, gamma: float) -> float:
    """Uniform stability of SGD on a gamma-strongly convex, L-Lipschitz, beta-smooth loss with a
    constant step eta <= 1/beta: 2 L^2 / (gamma n), for any number of steps. Hardt, Recht & Singer
    (2016), Theorem 3.10."""
    return 2 * L * L / (gamma * n)


def weight_decay_step_contraction(lr: float, weight_decay: float, beta: float) -> float:
    """Expansiveness of one SGD step x -> (1 - eta mu) x - eta grad f_B(x) on a convex beta-smooth
    f_B with L2 weight decay mu: the step is (1 - eta mu)-Lipschitz when eta / (1 - eta mu) <=
    2/beta, because x -> x - a grad f_B(x) is 1-expansive for a <= 2/beta (Hardt, Recht & Singer
    2016, Sec. 3.1, expansiveness of gradient updates). So two runs that see the same batch get
    closer by at least this factor; the twin's extra distance enters only when the perturbed
    sample is drawn (their growth recursion)."""
    if lr * weight_decay >= 1:
        raise ValueError("needs eta * mu < 1")
    if lr / (1 - lr * weight_decay) > 2 / beta:
        raise ValueError(f"step {lr} too large for the contraction argument (beta = {beta})")
    return 1.0 - lr * weight_decay


# -- consensus of DSGD with Q gossip steps -------------------------------------------------------


def consensus_recursion(lrs: Sequence[float], grad_dev: Sequence[float],
                        contractions: Sequence[float] | float, r0: float = 0.0) -> np.ndarray:
    """Bound on the root consensus distance r_t = sqrt((1/m) sum_k ||x_k - xbar||^2) of
    DSGD-MGS, x <- W^Q (x - eta_t g_t):

        r_{t+1} <= kappa_t (r_t + eta_t zeta_t),

    kappa_t = ||W^Q - J||_2 (lambda^Q, :func:`gossip_contraction`) and zeta_t the root mean square
    deviation of the nodes' update directions from their mean (gradient heterogeneity plus
    sampling noise). Follows from (I - J) W^Q = (W^Q - J)(I - J) and the triangle inequality; the
    standard consensus step of decentralized SGD analyses (Lian et al., NeurIPS 2017, "Can
    decentralized algorithms outperform centralized algorithms?"; Koloskova et al., ICML 2020,
    "A unified theory of decentralized SGD with changing topology and local updates"),
    here with Q rounds per iteration. Returns r_0 .. r_T. On a time-varying graph kappa_t is the
    norm of the product of the iteration's Q rounds; with Q shorter than the period (a single
    one-peer matching has kappa = 1) the per-iteration recursion does not contract and is loose."""
    lrs = np.asarray(lrs, dtype=np.float64)
    z = np.asarray(grad_dev, dtype=np.float64)
    k = np.broadcast_to(np.asarray(contractions, dtype=np.float64), lrs.shape)
    r = np.empty(len(lrs) + 1)
    r[0] = r0
    for t in range(len(lrs)):
        r[t + 1] = k[t] * (r[t] + lrs[t] * z[t])
    return r


def consensus_steady_state(contraction: float, lr: float, zeta: float) -> float:
    """Fixed point of :func:`consensus_recursion` with constant eta, zeta and kappa < 1, as a
    squared consensus distance: (kappa eta zeta / (1 - kappa))^2. With kappa = lambda^Q the
    disagreement settles at O((lambda^Q / (1 - lambda^Q))^2 eta^2 zeta^2); for a slowly decaying
    eta_t the distance tracks this value. inf when kappa >= 1 (no gossip, Q = 0)."""
    if contraction >= 1:
        return float("inf")
    return (contraction * lr * zeta / (1.0 - contraction)) ** 2
