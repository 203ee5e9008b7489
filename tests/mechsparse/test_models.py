"""Gumbel-sigmoid masks and the masked transition prior."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

from mechsparse import models


def _soft_mean(c: float, tau: float) -> float:
    """E sigmoid((c + L) / tau), L standard logistic, by quadrature (independent of the sampler)."""
    dens = lambda t: special.expit(t) * special.expit(-t)  # noqa: E731  (logistic density)
    return integrate.quad(lambda t: special.expit((c + t) / tau) * dens(t), -60, 60)[0]


@pytest.mark.parametrize("log_alpha,tau", [(0.0, 1.0), (1.5, 1.0), (-2.0, 1.0), (5.0, 1.0), (1.0, 0.5)])
def test_soft_samples_mean_and_edge_probability(log_alpha, tau):
    n = 200_000
    la = jnp.full((n,), log_alpha)
    y = np.asarray(models.gumbel_sigmoid(jax.random.PRNGKey(0), la, tau))
    assert y.min() >= 0 and y.max() <= 1
    # the soft sample's mean, against the quadrature of its law
    np.testing.assert_allclose(y.mean(), _soft_mean(log_alpha, tau), atol=4 / np.sqrt(n))
    # it exceeds 1/2 with the edge probability sigmoid(log_alpha), at any temperature
    np.testing.assert_allclose((y > 0.5).mean(), special.expit(log_alpha), atol=4 / np.sqrt(n))
    if log_alpha == 0.0:
        np.testing.assert_allclose(y.mean(), 0.5, atol=4 / np.sqrt(n))


def test_straight_through_is_hard_forward_with_the_soft_gradient():
    key = jax.random.PRNGKey(3)
    la = jnp.linspace(-3.0, 3.0, 64)
    hard = models.gumbel_sigmoid(key, la, 1.0, hard=True)
    soft = models.gumbel_sigmoid(key, la, 1.0, hard=False)
    assert set(np.unique(np.asarray(hard))) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.asarray(hard), np.asarray(soft > 0.5, np.float32))
    w = jnp.arange(64.0)
    g_hard = jax.grad(lambda a: jnp.sum(w * models.gumbel_sigmoid(key, a, 1.0, hard=True)))(la)
    g_soft = jax.grad(lambda a: jnp.sum(w * models.gumbel_sigmoid(key, a, 1.0, hard=False)))(la)
    np.testing.assert_allclose(np.asarray(g_hard), np.asarray(g_soft), rtol=1e-6)
    assert np.all(np.asarray(g_soft)[1:] > 0)


def test_transition_prior_ignores_masked_parents():
    """Latent i's prior mean moves with parent j iff mask[i, j] = 1 (exact zeros otherwise)."""
    d_z, d_p = 4, 3
    prior = models.TransitionPrior(d_z, (8,))
    mask = jnp.asarray(np.random.default_rng(0).integers(0, 2, (d_z, d_p)), jnp.float32)
    params = prior.init(jax.random.PRNGKey(0), jnp.zeros(d_p), mask)
    jac = jax.jacfwd(lambda a: prior.apply(params, a, mask)[0])(jnp.array([0.3, -1.2, 0.7]))
    assert jac.shape == (d_z, d_p)
    np.testing.assert_array_equal(np.asarray(jac)[np.asarray(mask) == 0], 0.0)
    mean, var = prior.apply(params, jnp.zeros((5, d_p)), mask)
    assert mean.shape == var.shape == (5, d_z)
    np.testing.assert_allclose(np.asarray(var), models.PRIOR_VAR_INIT + models.PRIOR_VAR_FLOOR, rtol=1e-4)


def test_model_initial_values():
    m = models.Model(obs_dim=6, latent_dim=3, parent_dim=3, hidden=(8,), transition_hidden=(8,))
    params = m.init(jax.random.PRNGKey(0), jnp.zeros(6), jnp.zeros(3))["params"]
    np.testing.assert_allclose(
        np.asarray(models.edge_probabilities(params["log_alpha"])), special.expit(5.0), rtol=1e-6
    )
    mean0, var0 = m.apply({"params": params}, method=models.Model.initial)
    np.testing.assert_allclose(np.asarray(mean0), 0.0)
    np.testing.assert_allclose(np.asarray(var0), 1.0, rtol=1e-5)
    mean, var = m.apply({"params": params}, jnp.ones((2, 6)), method=models.Model.encode)
    assert mean.shape == (2, 3) and np.all(np.asarray(var) >= models.POSTERIOR_VAR_FLOOR)


def test_torch_init_scheme_matches_pytorch_linear_bounds():
    """init_scheme="torch": every weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as
    PyTorch's nn.Linear (the reference's) in the encoder, decoder and transition MLPs."""
    m = models.Model(
        obs_dim=20, latent_dim=10, parent_dim=10, hidden=(64,), transition_hidden=(32,), init_scheme="torch"
    )
    p = m.init(jax.random.PRNGKey(0), jnp.zeros(20), jnp.zeros(10))["params"]
    w_enc = np.asarray(p["encoder"]["Dense_0"]["kernel"])  # fan_in 20
    w_tr = np.asarray(p["prior"]["ParallelMLP_0"]["w0"])  # [10, 10, 32], fan_in 10
    for w, fan_in in ((w_enc, 20), (w_tr, 10)):
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
        np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.1)
    with pytest.raises(ValueError, match="init must be one of"):
        models.ParallelMLP(2, (4,), 1, "xavier").init(jax.random.PRNGKey(0), jnp.zeros((2, 3)))
