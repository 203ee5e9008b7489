"""The priors (log-densities and closed-form KLs against scipy, numerical integration and
Monte Carlo), the networks' shapes, and the method table's validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from cg import losses, models
from mechind.core import training


def _gaussian_params():
    return {"mu": jnp.array([[0.0, 1.0], [2.0, -1.0]]), "log_var": jnp.log(jnp.array([[1.0, 4.0], [0.25, 1.0]]))}


def test_standard_prior_is_the_standard_normal():
    z = jnp.array([[0.3, -1.2], [2.0, 0.0]])
    lp = models.make_prior("standard", 2, 3).log_prob({}, z, jnp.array([0, 2]))
    np.testing.assert_allclose(lp, stats.norm.logpdf(np.asarray(z)).sum(-1), rtol=1e-6)


def test_gaussian_prior_matches_scipy_and_checks_domains():
    prior = models.make_prior("gaussian", 2, 2)
    params = _gaussian_params()
    z = jnp.array([[0.3, 0.2], [1.0, 1.0]])
    lp = prior.log_prob(params, z, jnp.array([0, 1]))
    ref = [
        stats.norm.logpdf(0.3, 0, 1) + stats.norm.logpdf(0.2, 1, 2),
        stats.norm.logpdf(1.0, 2, 0.5) + stats.norm.logpdf(1.0, -1, 1),
    ]
    np.testing.assert_allclose(lp, ref, rtol=1e-5)
    with pytest.raises(ValueError, match="domain index out of range"):
        prior.log_prob(params, z, jnp.array([0, 2]))


@pytest.mark.parametrize("flow_hidden", [1, 4])
def test_flow_prior_is_a_normalised_density_per_domain(flow_hidden):
    """exp(log p(z | u)) integrates to 1 over a 1-D grid, in every domain."""
    prior = models.make_prior("flow", 1, 3, embed_dim=4, flow_hidden=flow_hidden)
    params = prior.init(jax.random.PRNGKey(0))
    grid = jnp.linspace(-40.0, 40.0, 80_001)[:, None]
    for u in range(3):
        dens = jnp.exp(prior.log_prob(params, grid, jnp.full(len(grid), u, jnp.int32)))
        assert float(jnp.sum(dens) * (grid[1, 0] - grid[0, 0])) == pytest.approx(1.0, abs=2e-3)


def test_one_unit_flow_is_a_gaussian():
    """A 1-unit deep sigmoid flow is affine, so its log-density is a Gaussian's: its second
    differences in z are constant (a quadratic), the flexibility control of METHODS."""
    prior = models.make_prior("flow", 2, 2, embed_dim=4, flow_hidden=1)
    params = prior.init(jax.random.PRNGKey(3))
    z = jnp.stack([jnp.linspace(-2.0, 2.0, 9)] * 2, -1)
    lp = np.asarray(prior.log_prob(params, z, jnp.ones(9, jnp.int32)), np.float64)
    second = np.diff(lp, 2)
    np.testing.assert_allclose(second, second[0], atol=2e-3)
    assert second[0] < 0


def test_old_kl_formula_is_reproduced_bit_for_bit():
    """The KL through mechind.core.training.gaussian_kl equals the formula the priors had
    before (``0.5 * sum(lv - log_var + (var + (mu - m)^2) / exp(lv) - 1)``) exactly."""
    r = np.random.default_rng(0)
    mu, log_var = (jnp.asarray(r.normal(size=(64, 5)), jnp.float32) for _ in range(2))
    m, lv = (jnp.asarray(r.normal(size=(64, 5)), jnp.float32) for _ in range(2))
    tril = jnp.asarray(np.tril(r.normal(size=(64, 5, 5))), jnp.float32)

    def old(m, lv, mu, log_var, tril):
        var = jnp.exp(log_var) if tril is None else jnp.sum(tril**2, -1)
        return 0.5 * jnp.sum(lv - log_var + (var + (mu - m) ** 2) / jnp.exp(lv) - 1.0, -1)

    grad = lambda f: jax.grad(lambda *a: jnp.sum(f(*a)), argnums=(0, 1, 2, 3))  # noqa: E731
    for t in (None, tril):  # arrays as arguments: a jit of constants folds them on the host instead
        for a, b in ((old, models.gaussian_prior_kl), (grad(old), grad(models.gaussian_prior_kl))):
            for x, y in zip(
                jax.tree.leaves(jax.jit(a)(m, lv, mu, log_var, t)), jax.tree.leaves(jax.jit(b)(m, lv, mu, log_var, t))
            ):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # its terms are the core's per-coordinate Gaussian KL (summed there with the 1/2 outside)
    core = training.gaussian_kl(mu, jnp.exp(log_var), m, jnp.exp(lv), log_var_q=log_var, log_var_p=lv)
    np.testing.assert_allclose(models.gaussian_prior_kl(m, lv, mu, log_var), jnp.sum(core, -1), rtol=1e-6, atol=1e-6)


def test_diagonal_kl_matches_the_textbook_formula():
    prior = models.make_prior("gaussian", 2, 2)
    params = _gaussian_params()
    mu, log_var, u = jnp.array([[0.5, -0.2]]), jnp.array([[0.1, -0.7]]), jnp.array([1])
    kl = prior.kl(params, mu, log_var, u)
    m, v = np.array([2.0, -1.0]), np.array([0.25, 1.0])
    q_var = np.exp(np.asarray(log_var[0], np.float64))
    ref = 0.5 * np.sum(np.log(v / q_var) + (q_var + (np.asarray(mu[0]) - m) ** 2) / v - 1)
    assert float(kl[0]) == pytest.approx(ref, rel=1e-5)
    # the standard prior's is the beta-VAE closed form, zero at q = p
    std = models.make_prior("standard", 2, 1)
    closed = 0.5 * np.sum(q_var + np.asarray(mu[0]) ** 2 - 1 - np.log(q_var))
    assert float(std.kl({}, mu, log_var, u)[0]) == pytest.approx(closed, rel=1e-5)
    assert float(std.kl({}, jnp.zeros((1, 2)), jnp.zeros((1, 2)), u)[0]) == 0.0


def test_elbo_kl_estimate_matches_the_closed_form_on_average():
    """The single-sample KL of the ELBO, averaged over many samples, equals the prior's closed form."""
    prior = models.make_prior("standard", 2, 1)
    mu, log_var = jnp.array([[0.5, -1.0]]), jnp.array([[-0.3, 0.4]])
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(jax.random.PRNGKey(0), (200_000, 2))
    log_prior = prior.log_prob({}, z, jnp.zeros(len(z), jnp.int32))
    _, parts = losses.negative_elbo(jnp.zeros((1, 1)), jnp.zeros((1, 1)), z, mu, log_var, log_prior, 1.0, 1.0)
    assert float(parts["kl"]) == pytest.approx(float(prior.kl({}, mu, log_var, jnp.zeros(1, jnp.int32))[0]), abs=0.01)


def test_full_covariance_kl_matches_monte_carlo():
    """Closed-form KL(N(mu, L L^T) || N(m, diag v)) against a numpy Monte Carlo estimate."""
    r = np.random.default_rng(0)
    n = 3
    mu, m, log_v = r.normal(size=n), r.normal(size=n), r.normal(size=n) * 0.3
    tril = np.tril(r.normal(size=(n, n)) * 0.4, -1) + np.diag(np.exp(r.normal(size=n) * 0.2))
    prior = models.make_prior("gaussian", n, 1)
    kl = prior.kl(
        {"mu": jnp.asarray(m[None]), "log_var": jnp.asarray(log_v[None])},
        jnp.asarray(mu[None]),
        jnp.asarray(2 * np.log(np.diag(tril))[None]),
        jnp.zeros(1, jnp.int32),
        jnp.asarray(tril[None]),
    )
    z = mu + r.normal(size=(400_000, n)) @ tril.T
    q = stats.multivariate_normal(mu, tril @ tril.T)
    log_p = stats.norm.logpdf(z, m, np.exp(0.5 * log_v)).sum(-1)
    assert float(kl[0]) == pytest.approx(np.mean(q.logpdf(z) - log_p), abs=0.01)


def test_flow_prior_has_no_closed_form_kl():
    prior = models.make_prior("flow", 2, 2)
    assert not prior.closed_form_kl
    with pytest.raises(ValueError, match="no closed-form KL"):
        prior.kl(prior.init(jax.random.PRNGKey(0)), jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.zeros(1, jnp.int32))


def test_nets_shapes():
    enc, dec = models.make_nets(3, 5, (8, 8), extra_outputs=3)
    pe = enc.init(jax.random.PRNGKey(0), jnp.zeros((5,)))["params"]
    pd = dec.init(jax.random.PRNGKey(1), jnp.zeros((3,)))["params"]
    assert enc.apply({"params": pe}, jnp.zeros((4, 5))).shape == (4, 2 * 3 + 3)
    assert dec.apply({"params": pd}, jnp.zeros((4, 3))).shape == (4, 5)


def test_unknown_prior():
    with pytest.raises(ValueError, match="prior must be one of"):
        models.make_prior("laplace", 2, 2)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(prior="laplace"), "prior must be one of"),
        (dict(prior="flow", penalty="bwd", alpha=0.1), "penalty must be"),
        (dict(prior="flow", penalty="exact"), "alpha > 0 exactly when"),
        (dict(prior="flow", alpha=0.1), "alpha > 0 exactly when"),
    ],
)
def test_method_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        models.Method(**kw)


def test_method_table():
    assert models.Method("flow", "fd", 0.1).sparse and not models.Method("gaussian").sparse
    for name, m in models.METHODS.items():
        assert m.prior in models.PRIOR_CLASSES and m.doc, name
    assert models.METHODS["ivae"].prior == "gaussian" and not models.METHODS["ivae"].sparse
    assert models.METHODS["cg_vae"].alpha == models.DEFAULT_ALPHA
    assert dict(models.METHODS["cg_vae_flow1"].settings) == {"flow_hidden": 1}


def test_a_new_prior_is_a_registered_subclass(monkeypatch):
    """A Laplace prior with a learned per-domain scale, added without touching the training code."""

    class LaplacePrior(models.Prior):
        def init(self, key):
            return {"log_b": jnp.zeros((self.max_domains, self.latent_dim))}

        def log_prob(self, params, z, u):
            b = jnp.exp(params["log_b"][u])
            return jnp.sum(-jnp.abs(z) / b - jnp.log(2 * b), -1)

    monkeypatch.setitem(models.PRIOR_CLASSES, "laplace", LaplacePrior)
    p = models.make_prior("laplace", 2, 3)
    params = p.init(jax.random.PRNGKey(0))
    z = jnp.array([[0.5, -1.0]])
    assert float(p.log_prob(params, z, jnp.array([1]))[0]) == pytest.approx(-1.5 - 2 * np.log(2), rel=1e-6)
    # and a method that uses it is one entry; cg.fit trains it through the shared step
    import cg
    from cg import ivae_data

    monkeypatch.setitem(models.METHODS, "laplace_vae", models.Method("laplace"))
    d = ivae_data.generate(0, num_segments=3, per_segment=100, latent_dim=2, cond_draws=200)
    f = cg.fit(
        jax.random.PRNGKey(1),
        d.x,
        d.u,
        method="laplace_vae",
        latent_dim=2,
        num_steps=5,
        hidden=(4,),
        batch_size=32,
        progress=False,
    )
    assert np.isfinite(f.loss_history).all() and f.params["prior"]["log_b"].shape == (3, 2)
