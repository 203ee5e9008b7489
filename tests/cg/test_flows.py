import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cg import flows


def _params(seed, n=3, m=5, scale=1.0):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    return [scale * jax.random.normal(kk, (n, m)) for kk in k]


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 8))
def test_dsf_log_det_matches_autodiff(seed, m):
    pa, b, pw = _params(seed, m=m)
    x = 3.0 * jax.random.normal(jax.random.PRNGKey(seed + 1), (11, 3))
    _, log_det = flows.DeepSigmoidFlow(pa, b, pw).forward_and_log_det(x)
    # d y_i / d x_i by autodiff of the forward map, dimension by dimension
    dydx = jax.vmap(lambda xb: jnp.diag(jax.jacfwd(lambda v: flows.dsf_forward(v, pa, b, pw)[0])(xb)))(x)
    np.testing.assert_allclose(log_det, jnp.log(dydx), rtol=1e-4, atol=1e-4)


def test_dsf_matches_the_textbook_formula():
    """y = logit(sum_j w_j sigma(a_j x + b_j)) with a = softplus, w = softmax, in float64."""
    with jax.enable_x64(True):
        pa, b, pw = [jnp.asarray(p, jnp.float64) for p in _params(0)]
        x = jnp.linspace(-3, 3, 13)[:, None] * jnp.ones((1, 3))
        a, w = jax.nn.softplus(pa), jax.nn.softmax(pw, -1)
        s = jnp.sum(w * jax.nn.sigmoid(a * x[..., None] + b), -1)
        y, _ = flows.dsf_forward(x, pa, b, pw)
        np.testing.assert_allclose(y, jnp.log(s) - jnp.log1p(-s), rtol=1e-10)


def test_dsf_monotone_and_inverse_round_trip():
    f = flows.DeepSigmoidFlow(*_params(1, scale=2.0))
    x = jnp.linspace(-20, 20, 2001)[:, None] * jnp.ones((1, 3))
    y, log_det = f.forward_and_log_det(x)
    assert bool(jnp.all(jnp.diff(y, axis=0) > 0)) and bool(jnp.all(jnp.isfinite(y)))
    x_back, inv_log_det = f.inverse_and_log_det(y)
    np.testing.assert_allclose(x_back, x, atol=1e-3)
    np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-3)


def test_flow_density_integrates_to_one_in_1d():
    for seed in range(3):
        pa, b, pw = _params(seed, n=1, m=4, scale=1.5)
        grid = jnp.linspace(-80.0, 80.0, 400_001)
        lp = flows.flow_log_prob(flows.DeepSigmoidFlow(pa, b, pw), grid[:, None])
        assert float(jnp.trapezoid(jnp.exp(lp), grid)) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.slow  # 10 s; the DSF layer the priors use is tested in the default suite
def test_ddsf_monotone_inverse_and_density():
    layers = flows.init_ddsf(jax.random.PRNGKey(0), (2,), hidden=4, depth=3)
    g = flows.DenseDeepSigmoidFlow(layers)
    x = jnp.linspace(-6, 6, 601)[:, None] * jnp.ones((1, 2))
    y, log_det = g.forward_and_log_det(x)
    assert bool(jnp.all(jnp.diff(y, axis=0) > 0))
    x_back, _ = g.inverse_and_log_det(y)
    np.testing.assert_allclose(x_back, x, atol=1e-3)
    fd = (flows.ddsf_forward(x + 1e-3, layers) - flows.ddsf_forward(x - 1e-3, layers)) / 2e-3
    np.testing.assert_allclose(jnp.exp(log_det), fd, rtol=1e-2)
    one = flows.init_ddsf(jax.random.PRNGKey(1), (1,), hidden=3, depth=2)
    grid = jnp.linspace(-80.0, 80.0, 400_001)
    lp = flows.flow_log_prob(flows.DenseDeepSigmoidFlow(one), grid[:, None])
    assert float(jnp.trapezoid(jnp.exp(lp), grid)) == pytest.approx(1.0, abs=5e-3)


def test_conditional_prior_depends_on_domain_and_checks_range():
    n, m, e, d = 3, 4, 5, 4
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    params = {
        "table": jax.random.normal(k[0], (d, e)),
        "proj": jax.random.normal(k[1], (e, 3 * n * m)),
        "bias": jnp.zeros(3 * n * m),
    }
    z = jnp.ones((2, n))
    lp = flows.conditional_log_prob(params, z, jnp.array([0, 1]), m)
    assert lp.shape == (2,) and float(lp[0]) != float(lp[1])
    with pytest.raises(ValueError, match="domain index out of range"):
        flows.conditional_log_prob(params, z, jnp.array([0, 4]), m)
    with pytest.raises(ValueError, match="domain index out of range"):
        flows.conditional_log_prob(params, z, jnp.array([-1, 0]), m)


def test_bad_parameter_shapes():
    with pytest.raises(ValueError, match="share a shape"):
        flows.DeepSigmoidFlow(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones((2, 4)))
