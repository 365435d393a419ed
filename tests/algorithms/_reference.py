"""Independent float64 NumPy implementations of each algorithm's recursion, written from the
papers' equations (not from the library's code), for the tests to compare against.

Every function takes the mixing matrix ``w`` [m, m], a gradient oracle ``grad(t, X) -> G``
([m, d] rows = nodes; iteration t's stochastic gradient of every node at its own row), the
initial point ``x0`` [m, d], the step size ``lr(t)`` and the number of iterations ``T``, and
returns the iterates after every iteration: a list of T + 1 arrays [m, d].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Grad = Callable[[int, np.ndarray], np.ndarray]


def _power(w: np.ndarray, q: int) -> np.ndarray:
    return np.linalg.matrix_power(w, q)


def dsgd_mgs(w, grad: Grad, x0, lr, T: int, q: int = 1) -> list[np.ndarray]:
    """x <- W^Q (x - eta g(x))."""
    x, out, wq = x0.copy(), [x0.copy()], _power(w, q)
    for t in range(T):
        x = wq @ (x - lr(t) * grad(t, x))
        out.append(x.copy())
    return out


def gradient_tracking(w, grad: Grad, x0, lr, T: int, q: int = 1) -> list[np.ndarray]:
    """x_{t+1} = W^Q (x_t - eta y_t), y_{t+1} = W^Q y_t + g_{t+1}(x_{t+1}) - g_t(x_t), y_0 = g_0(x_0)."""
    wq = _power(w, q)
    x = x0.copy()
    out = [x.copy()]
    g = grad(0, x)
    y = g.copy()
    for t in range(T):
        x = wq @ (x - lr(t) * y)
        out.append(x.copy())
        if t + 1 < T:
            g_new = grad(t + 1, x)
            y = wq @ y + g_new - g
            g = g_new
    return out


def gossip_pga(w, grad: Grad, x0, lr, T: int, q: int = 1, period: int = 10) -> list[np.ndarray]:
    """Gossip-PGA (Chen et al. 2021): x <- avg(x - eta g) when (t + 1) % H == 0, else W^Q (x - eta g)."""
    x, out, wq = x0.copy(), [x0.copy()], _power(w, q)
    for t in range(T):
        half = x - lr(t) * grad(t, x)
        average = np.repeat(half.mean(0, keepdims=True), len(half), axis=0)
        x = average if (t + 1) % period == 0 else wq @ half
        out.append(x.copy())
    return out


def local_steps(w, grad: Grad, x0, lr, T: int, q: int = 1, period: int = 1) -> list[np.ndarray]:
    """H local SGD steps, then Q gossip rounds: x <- x - eta g; x <- W^Q x when (t + 1) % H == 0."""
    x, out, wq = x0.copy(), [x0.copy()], _power(w, q)
    for t in range(T):
        x = x - lr(t) * grad(t, x)
        if (t + 1) % period == 0:
            x = wq @ x
        out.append(x.copy())
    return out


def scheduled_q(w, grad: Grad, x0, lr, T: int, q_of_t: Callable[[int], int]) -> list[np.ndarray]:
    """x <- W^{Q_t} (x - eta g)."""
    x, out = x0.copy(), [x0.copy()]
    for t in range(T):
        x = _power(w, q_of_t(t)) @ (x - lr(t) * grad(t, x))
        out.append(x.copy())
    return out


def consensus_distance(x: np.ndarray) -> float:
    """(1/m) sum_k ||x_k - xbar||^2."""
    return float(((x - x.mean(0, keepdims=True)) ** 2).sum(1).mean())


def consensus_controlled(w, grad: Grad, x0, lr, T: int, target: float, cap: int
                         ) -> tuple[list[np.ndarray], list[int]]:
    """Kong et al. 2021: after the local step, gossip while the consensus distance exceeds
    ``target``, at most ``cap`` rounds. Returns the iterates and the rounds used per iteration."""
    x, out, used = x0.copy(), [x0.copy()], []
    for t in range(T):
        x = x - lr(t) * grad(t, x)
        q = 0
        while q < cap and consensus_distance(x) > target:
            x = w @ x
            q += 1
        used.append(q)
        out.append(x.copy())
    return out, used


# -- compressors (NumPy) -----------------------------------------------------------------------


def top_k(v: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros_like(v)
    idx = np.argsort(-np.abs(v), axis=1, kind="stable")[:, :k]
    np.put_along_axis(out, idx, np.take_along_axis(v, idx, axis=1), axis=1)
    return out


def random_k(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Keep the columns ``idx`` (the same random columns for every node), zero the rest."""
    out = np.zeros_like(v)
    out[:, idx] = v[:, idx]
    return out


def quantize8(v: np.ndarray) -> np.ndarray:
    """Per row: s = max |v_i|, v_i -> round(127 v_i / s) s / 127."""
    s = np.abs(v).max(axis=1, keepdims=True)
    safe = np.where(s > 0, s, 1.0)
    return np.clip(np.round(v / safe * 127), -127, 127) * (s / 127)


def choco_sgd(w, grad: Grad, x0, lr, T: int, compress: Callable[[np.ndarray, int], np.ndarray],
              gamma: float, q: int = 1) -> list[np.ndarray]:
    """CHOCO-SGD (Koloskova et al. 2019, Alg. 2), x_hat_0 = 0:
    x <- x - eta g; then Q times: c = C(x - x_hat); x_hat <- x_hat + c;
    x <- x + gamma (W x_hat - x_hat). ``compress(v, call)``, call = t * Q + step."""
    x, out = x0.copy(), [x0.copy()]
    xhat = np.zeros_like(x)
    for t in range(T):
        x = x - lr(t) * grad(t, x)
        for s in range(q):
            xhat = xhat + compress(x - xhat, t * q + s)
            x = x + gamma * (w @ xhat - xhat)
        out.append(x.copy())
    return out


# -- problems ----------------------------------------------------------------------------------


def least_squares(m: int, d: int, n: int, seed: int = 0, shift: float = 3.0):
    """Heterogeneous least squares: node k holds (A_k, b_k) with its own optimum; returns
    (A [m, n, d], b [m, n], full-gradient oracle, exact minimiser of the average loss)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(m, n, d))
    xs = rng.normal(size=(m, d)) * shift  # each node's own optimum: heterogeneity
    b = np.einsum("knd,kd->kn", a, xs) + 0.1 * rng.normal(size=(m, n))

    def grad(t: int, x: np.ndarray) -> np.ndarray:
        # f_k(x) = ||A_k x - b_k||^2 / (2 n)
        return np.einsum("knd,kn->kd", a, np.einsum("knd,kd->kn", a, x) - b) / n

    h = np.einsum("knd,kne->de", a, a) / (m * n)
    rhs = np.einsum("knd,kn->d", a, b) / (m * n)
    return a, b, grad, np.linalg.solve(h, rhs)


def softmax_grad(x: np.ndarray, feats: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Gradient of the mean cross-entropy of softmax regression; params = [W (C x D) | b (C)]
    flattened row-major (the layout of torch's Linear(D, C))."""
    D = feats.shape[1]
    W = x[:classes * D].reshape(classes, D)
    bias = x[classes * D:]
    z = feats @ W.T + bias
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1.0
    p /= len(labels)
    return np.concatenate([(p.T @ feats).ravel(), p.sum(0)])
