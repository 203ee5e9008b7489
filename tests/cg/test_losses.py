import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cg import losses, models
from tests.conftest import random_mlp


def test_fd_penalty_approaches_exact_penalty(x64):
    dec, _ = random_mlp(jax.random.PRNGKey(0), (4, 16, 5))
    z = jax.random.normal(jax.random.PRNGKey(1), (32, 4))
    exact = losses.sparse_mixing_penalty(dec, z, "exact", units="raw")
    errs = [abs(float(losses.sparse_mixing_penalty(dec, z, "fd", h, units="raw")) - float(exact))
            for h in (1e-2, 1e-3, 1e-4)]
    assert errs[2] < errs[1] < errs[0] and errs[2] < 1e-3 * float(exact)
    # and by hand: mean over samples of the sum of |J|
    jac = jax.vmap(jax.jacfwd(dec))(z)
    assert float(exact) == pytest.approx(float(jnp.mean(jnp.sum(jnp.abs(jac), (1, 2)))), rel=1e-12)


def test_standardized_penalty_is_jacobian_times_batch_std_and_fd_agrees(x64):
    dec, _ = random_mlp(jax.random.PRNGKey(0), (4, 16, 5))
    z = jax.random.normal(jax.random.PRNGKey(1), (64, 4)) * jnp.array([0.5, 1.0, 2.0, 4.0])
    jac = np.asarray(jax.vmap(jax.jacfwd(dec))(z))
    ref = np.mean(np.sum(np.abs(jac * np.std(np.asarray(z), axis=0)), axis=(1, 2)))
    assert float(losses.sparse_mixing_penalty(dec, z)) == pytest.approx(ref, rel=1e-12)
    assert float(losses.sparse_mixing_penalty(dec, z, "fd", 1e-6)) == pytest.approx(ref, rel=1e-4)


def test_standardized_penalty_is_blind_to_latent_rescaling_raw_is_not(x64):
    """Rescaling latent j by c (decoder reads z_j / c) leaves the same model; only the
    standardized norm sees it as the same, the raw norm falls as the latents grow."""
    dec, _ = random_mlp(jax.random.PRNGKey(2), (3, 16, 4))
    z = jax.random.normal(jax.random.PRNGKey(3), (128, 3))
    c = jnp.array([10.0, 0.2, 3.0])
    dec_scaled = lambda v: dec(v / c)  # noqa: E731
    std0 = losses.sparse_mixing_penalty(dec, z)
    std1 = losses.sparse_mixing_penalty(dec_scaled, z * c)
    assert float(std1) == pytest.approx(float(std0), rel=1e-10)
    big = jnp.array([10.0, 10.0, 10.0])
    raw0 = losses.sparse_mixing_penalty(dec, z, units="raw")
    raw1 = losses.sparse_mixing_penalty(lambda v: dec(v / big), z * big, units="raw")
    assert float(raw1) == pytest.approx(float(raw0) / 10, rel=1e-10)
    # and a sparser decoder scores lower at equal column scales: diagonal vs dense rotation
    rot = jnp.array([[0.6, -0.8], [0.8, 0.6]])
    zz = jax.random.normal(jax.random.PRNGKey(4), (256, 2))
    assert float(losses.sparse_mixing_penalty(lambda v: v, zz)) < float(losses.sparse_mixing_penalty(lambda v: rot @ v, zz))


def test_penalty_zero_for_constant_decoder_and_method_check():
    assert float(losses.sparse_mixing_penalty(lambda v: jnp.ones(3), jnp.ones((2, 4)))) == 0.0
    with pytest.raises(ValueError, match="method"):
        losses.sparse_mixing_penalty(lambda v: v, jnp.ones((2, 4)), "sideways")
    with pytest.raises(ValueError, match="units"):
        losses.sparse_mixing_penalty(lambda v: v, jnp.ones((2, 4)), units="metric")


def test_elbo_kl_estimate_matches_closed_form_on_average():
    """The single-sample KL averaged over many samples equals the Gaussian closed form."""
    key = jax.random.PRNGKey(0)
    mu, log_var = jnp.array([[0.5, -1.0]]), jnp.array([[-0.3, 0.4]])
    eps = jax.random.normal(key, (200_000, 2))
    z = mu + jnp.exp(0.5 * log_var) * eps
    log_prior = models.prior_log_prob("standard", {}, z, jnp.zeros(len(z), jnp.int32), 4)
    _, parts = losses.negative_elbo(jnp.zeros((1, 1)), jnp.zeros((1, 1)), z, mu, log_var, log_prior, 1.0, 1.0)
    closed = 0.5 * jnp.sum(jnp.exp(log_var) + mu ** 2 - 1 - log_var)
    assert float(parts["kl"]) == pytest.approx(float(closed), abs=0.01)


def test_gaussian_prior_matches_scipy_and_checks_domains():
    from scipy.stats import norm

    params = {"mu": jnp.array([[0.0, 1.0], [2.0, -1.0]]), "log_var": jnp.log(jnp.array([[1.0, 4.0], [0.25, 1.0]]))}
    z = jnp.array([[0.3, 0.2], [1.0, 1.0]])
    lp = models.prior_log_prob("gaussian", params, z, jnp.array([0, 1]), 4)
    ref = [norm.logpdf(0.3, 0, 1) + norm.logpdf(0.2, 1, 2), norm.logpdf(1.0, 2, 0.5) + norm.logpdf(1.0, -1, 1)]
    np.testing.assert_allclose(lp, ref, rtol=1e-5)
    with pytest.raises(ValueError, match="domain index out of range"):
        models.prior_log_prob("gaussian", params, z, jnp.array([0, 2]), 4)
    with pytest.raises(ValueError, match="prior must be one of"):
        models.init_prior(jax.random.PRNGKey(0), "laplace", 2, 2, 4, 4)


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
    f = cg.fit(jax.random.PRNGKey(1), d.x, d.u, method="laplace_vae", latent_dim=2, num_steps=5, hidden=(4,),
               batch_size=32, progress=False)
    assert np.isfinite(f.loss_history).all() and f.params["prior"]["log_b"].shape == (3, 2)
