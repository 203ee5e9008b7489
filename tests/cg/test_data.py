import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cg import data
from mechind import graph
from mechind.core import derivatives


@pytest.mark.parametrize("density", [0.25, 0.5, 1.0])
def test_support_exact_and_density(density):
    d = data.make_domain_data(jax.random.PRNGKey(0), 3, 6, 200, density)
    support = np.asarray(d.support)
    assert support.sum() == d.spec.num_edges == int(np.clip(round(density * 36), 6, 36))
    assert support.diagonal().all()
    jac = derivatives.jacobian(d.mixing, d.z)
    realised = np.asarray(graph.support(jac)).any(axis=0)
    np.testing.assert_array_equal(realised, support)
    if (~support).any():
        assert float(jnp.abs(jac[:, ~support]).max()) == 0.0
    assert float(jnp.linalg.svd(jac, compute_uv=False)[:, -1].min()) > 0  # injective


def test_every_edge_is_a_real_edge_and_dense_mixing_mixes():
    """Weights on the support are bounded away from zero (off-diagonal |w| in [0.5, 1.5]),
    so the mixing is not close to element-wise: the observations alone are far from the
    latents (MCC well below 1) once the mixing is dense."""
    from mechind.core import metrics

    mccs = []
    for s in range(4):
        d = data.make_domain_data(jax.random.PRNGKey(s), 2, 6, 2000, 1.0)
        w = np.asarray(d.params["w"])
        off = ~np.eye(6, dtype=bool)
        assert np.all((np.abs(w[off]) >= 0.5) & (np.abs(w[off]) <= 1.5))
        assert np.all((np.abs(w.diagonal()) >= 1.0) & (np.abs(w.diagonal()) <= 2.0))
        mccs.append(float(metrics.mcc_from_corr(metrics.correlation_matrix(d.z, d.x))))
    assert np.mean(mccs) < 0.75


def test_domain_statistics():
    d = data.make_domain_data(jax.random.PRNGKey(1), 4, 3, 20_000, 0.5)
    u = np.asarray(d.u)
    assert np.bincount(u).tolist() == [20_000] * 4
    z = np.asarray(d.z)
    for k in range(4):
        np.testing.assert_allclose(z[u == k].mean(0), d.mu[k], atol=0.1)
        np.testing.assert_allclose(z[u == k].std(0), d.sigma[k], rtol=0.05)
    assert np.all((d.mu >= -2) & (d.mu <= 2)) and np.all((d.sigma >= 0.5) & (d.sigma <= 3))
    np.testing.assert_allclose(d.x, jax.vmap(d.mixing)(d.z), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(num_domains=0), "num_domains"),
        (dict(density=0.0), "density must lie in \\(0, 1\\]"),
        (dict(density=1.5), "density must lie in \\(0, 1\\]"),
        (dict(latent_dim=0), "latent_dim"),
        (dict(samples_per_domain=0), "samples_per_domain"),
    ],
)
def test_bad_input(kw, match):
    args = dict(num_domains=2, latent_dim=3, samples_per_domain=10, density=0.5)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        data.make_domain_data(jax.random.PRNGKey(0), **args)


def test_domain_index_check():
    data.check_domains(np.array([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="domain index out of range"):
        data.check_domains(np.array([0, 3]), 3)


@pytest.mark.parametrize("dist", data.LATENT_DISTS)
def test_latent_noise_has_unit_variance_and_its_shape(dist):
    eps = np.asarray(data.sample_noise(jax.random.PRNGKey(0), (200_000,), dist))
    assert abs(eps.mean()) < 0.01 and abs(eps.std() - 1.0) < 0.01
    kurt = np.mean(eps**4)
    assert {"gaussian": 2.9 < kurt < 3.1, "laplace": kurt > 5.0, "bimodal": kurt < 1.5}[dist]
    with pytest.raises(ValueError, match="latent_dist"):
        data.DomainSpec(2, 3, 0.5, "cauchy")


@pytest.mark.slow  # the registry and draw are tested on a toy dataset in tests/mechind/core/test_datasets.py
def test_domain_spec_is_the_registered_traceable_dataset():
    """datasets.make("cg_domains") draws make_domain_data's arrays, and draw() vmaps it per key."""
    from mechind.core import datasets

    ds = datasets.make("cg_domains", num_domains=3, latent_dim=4, density=0.5)
    assert isinstance(ds, data.DomainSpec) and ds.traceable and ds.version == data.GENERATOR_VERSION
    ref = data.make_domain_data(jax.random.PRNGKey(2), 3, 4, 10, 0.5)
    d = ds.sample(jax.random.PRNGKey(2), 30)
    for mine, theirs in ((d["x"], ref.x), (d["z"], ref.z), (d["u"], ref.u), (d["support"], ref.support)):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-5, atol=1e-6)
    both = datasets.draw(ds, jnp.stack([jax.random.PRNGKey(2), jax.random.PRNGKey(3)]), 30)
    assert both["x"].shape == (2, 30, 4) and both["support"].shape == (2, 4, 4)
    np.testing.assert_allclose(both["x"][0], d["x"], rtol=1e-5, atol=1e-6)
    assert ds.describe() == {
        "dataset": "cg_domains",
        "dataset_version": data.GENERATOR_VERSION,
        "num_domains": 3,
        "latent_dim": 4,
        "density": 0.5,
        "latent_dist": "gaussian",
    }
