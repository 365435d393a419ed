"""Power iteration on Hessian-vector products, and the Lipschitz estimate."""

import pytest
import torch
import torch.nn.functional as F

from gossiplab.engine.nodestack import NodeStack
from gossiplab.models import build_model
from gossiplab.stability.smoothness import (
    max_sample_gradient_norm,
    model_loss,
    top_hessian_eigenvalue,
)


def quadratic(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T
    b = torch.randn(len(eigs), generator=g, dtype=torch.float64)
    return a, (lambda x: 0.5 * x @ a @ x + b @ x)


def test_power_iteration_on_a_quadratic_finds_the_largest_hessian_eigenvalue():
    a, f = quadratic([7.0, 3.0, 1.0, 0.5, -2.0, 0.1])
    x = torch.randn(6, dtype=torch.float64)
    res = top_hessian_eigenvalue(f, x, iterations=200, tol=1e-12)
    assert res.converged
    assert res.eigenvalue == pytest.approx(float(torch.linalg.eigvalsh(a).max()), rel=1e-8)


def test_power_iteration_returns_the_largest_modulus_with_its_sign():
    a, f = quadratic([1.0, -9.0, 2.0, 0.3])
    res = top_hessian_eigenvalue(f, torch.zeros(4, dtype=torch.float64), iterations=200, tol=1e-12)
    assert res.eigenvalue == pytest.approx(-9.0, rel=1e-8)


def test_power_iteration_on_a_model_matches_the_dense_hessian():
    torch.manual_seed(0)
    stack = NodeStack(build_model("logreg", (1, 3, 3), 4), 1, dtype=torch.float64)
    x = torch.randn(50, 1, 3, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (50,))
    f = model_loss(stack, x, y)
    w = stack.params[0] + 0.3 * torch.randn(stack.d, dtype=torch.float64)
    h = torch.autograd.functional.hessian(f, w)
    ev = torch.linalg.eigvalsh(h)
    expected = float(ev[ev.abs().argmax()])
    res = top_hessian_eigenvalue(f, w, iterations=500, tol=1e-12)
    assert res.eigenvalue == pytest.approx(expected, rel=1e-6)


def test_max_sample_gradient_norm_matches_a_loop():
    torch.manual_seed(0)
    stack = NodeStack(build_model("mlp", (1, 4, 4), 3, hidden=(5,)), 1)
    x = torch.randn(20, 1, 4, 4)
    y = torch.randint(0, 3, (20,))
    w = stack.params[0]
    got = max_sample_gradient_norm(stack.template, stack, w, x, y, chunk=7)
    f = model_loss(stack, x, y)
    best = 0.0
    for i in range(20):
        wi = w.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model_loss(stack, x[i:i + 1], y[i:i + 1])(wi), wi)
        best = max(best, float(g.norm()))
    assert got == pytest.approx(best, rel=1e-5)
    assert float(F.cross_entropy(stack.template(x), y).detach()) == pytest.approx(float(f(w).detach()),
                                                                          rel=1e-6)
