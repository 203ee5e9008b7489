"""The objective's pieces on hand-built cases with known answers (the Gaussian KL is the
core's, tested in tests/mechind/core/test_training.py and, inside the ELBO, in test_train.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mechsparse import losses


def test_reconstruction_nll_is_the_gaussian_nll_per_coordinate():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 2, 3)), jnp.float32)
    x_hat = x + 0.1
    nll = float(losses.reconstruction_nll(x, x_hat, jnp.float32(0.5)))
    np.testing.assert_allclose(nll, -stats.norm.logpdf(0.1, 0, 0.5), rtol=1e-5)


def test_penalty_is_the_expected_edge_count_over_d_x():
    la = jnp.array([[0.0, 0.0], [np.log(3.0), -np.log(3.0)]], jnp.float32)  # probabilities 1/2, 1/2, 3/4, 1/4
    np.testing.assert_allclose(float(losses.edge_count(la)), 2.0, rtol=1e-6)
    np.testing.assert_allclose(float(losses.sparsity_penalty(la, 3.0, 20)), 3.0 * 2.0 / 20, rtol=1e-6)
    g = jax.grad(lambda a: losses.sparsity_penalty(a, 1.0, 1))(la)  # d sigmoid = p (1 - p)
    np.testing.assert_allclose(np.asarray(g), [[0.25, 0.25], [0.1875, 0.1875]], rtol=1e-5)


def test_annealed_bound_is_linear_then_flat():
    f = lambda s: float(losses.annealed_bound(jnp.float32(s), 100.0, jnp.float32(20.0), 1000))  # noqa: E731
    assert f(0) == 100.0 and f(500) == pytest.approx(60.0) and f(1000) == 20.0 and f(5000) == 20.0
    assert float(losses.annealed_bound(jnp.float32(3), 100.0, jnp.float32(20.0), 0)) == 20.0


def test_dual_update_ascends_projects_and_restarts():
    up = lambda m, d, restart=True: float(losses.dual_update(jnp.float32(m), jnp.float32(d), 0.1, restart))  # noqa: E731
    assert up(0.0, 5.0) == pytest.approx(0.5)  # violated: ascent by lr * defect
    assert up(1.0, 2.0) == pytest.approx(1.2)
    assert up(1.0, -2.0) == 0.0  # satisfied: reset to 0 (their dual restarts)
    assert up(1.0, -2.0, restart=False) == pytest.approx(0.8)  # plain projected ascent
    assert up(0.1, -5.0, restart=False) == 0.0  # projected onto >= 0
