"""The sparse-mixing benchmark's generator: every condition it promises, checked directly."""

import numpy as np
import pytest

from cg import ivae_data
from cg import sparse_data as sd

SPECS = [
    sd.Spec(5, dx, family=f, arm=a, mixing=mx)
    for dx in (5, 10)
    for a in sd.ARMS
    for f, mx in (("laplace", "nonlinear"), ("mixture", "linear"))
]


def _intersections(support: np.ndarray) -> list[set]:
    """For each latent j, the latents shared by every row that depends on j (by hand)."""
    out = []
    for j in range(support.shape[1]):
        rows = [set(np.flatnonzero(r)) for r in support if r[j]]
        out.append(set.intersection(*rows))
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.arm}-{s.obs_dim}-{s.mixing}")
def test_supports_satisfy_or_break_structural_sparsity_as_asked(spec):
    for seed in range(8):
        s = sd.draw_mixing(seed, spec).support
        assert s.any(0).all() and s.sum(1).min() >= spec.min_row_edges
        inter = _intersections(s)
        cols = [frozenset(np.flatnonzero(s[:, j])) for j in range(s.shape[1])]
        nested = {(j, k) for j in range(5) for k in range(5) if j != k and cols[j] <= cols[k]}
        if spec.arm == "structural":
            assert all(inter[j] == {j} for j in range(5))  # Zheng et al.'s condition, for every latent
            assert not nested and len(set(cols)) == 5  # no nested, no identical columns
        else:
            assert nested == {(0, 1)} and cols[0] < cols[1]  # strictly nested, only there
            assert inter[0] != {0} and all(inter[j] == {j} for j in range(1, 5))
        assert sd.nested_pairs(s) == sorted(nested)
        np.testing.assert_array_equal(ivae_data.structural_sparsity(s), [inter[j] == {j} for j in range(5)])


@pytest.mark.parametrize("spec", SPECS[:4], ids=lambda s: f"{s.arm}-{s.obs_dim}")
def test_jacobian_has_exactly_the_support_with_edges_bounded_away_from_zero(spec):
    d = sd.generate(3, 4, 800, spec)
    m = d.mixing
    jac = m.jacobian(d.z)
    h = 1e-5  # the closed form against central differences
    fd = np.stack([(m(d.z[:50] + h * e) - m(d.z[:50] - h * e)) / (2 * h) for e in np.eye(5)], -1)
    np.testing.assert_allclose(jac[:50], fd, atol=1e-6)
    assert np.all(jac[:, ~d.support] == 0)
    floor = sd.EDGE_RANGE[0] * (sd.OUT_SLOPE if m.nonlinear else 1.0)
    assert np.abs(jac[:, d.support]).min() >= floor
    # injective: the Jacobian has full column rank everywhere sampled
    assert np.linalg.svd(jac, compute_uv=False)[:, -1].min() > 0.05
    assert np.linalg.cond(m.a) <= sd.MAX_COND


def test_nonlinear_mixing_is_not_nearly_linear():
    d = sd.generate(0, 3, 3000, sd.Spec(5, 10, mixing="nonlinear"))
    design = np.c_[d.z, np.ones(len(d.z))]
    resid = d.x - design @ np.linalg.lstsq(design, d.x, rcond=None)[0]
    assert 1 - resid.var(0).sum() / d.x.var(0).sum() < 0.97  # a linear fit misses a real share
    lin = sd.generate(0, 3, 3000, sd.Spec(5, 10, mixing="linear"))
    np.testing.assert_allclose(lin.x, lin.z @ lin.mixing.a.T, atol=0.1 * lin.x.std())


def test_a_seed_has_one_mixing_whatever_the_number_of_domains():
    spec = sd.Spec(5, 10)
    datasets = [sd.generate(7, m, 1200, spec) for m in (1, 2, 3, 4, 12)]
    for d in datasets[1:]:
        np.testing.assert_array_equal(d.mixing.a, datasets[0].mixing.a)
        np.testing.assert_array_equal(d.support, datasets[0].support)
        np.testing.assert_array_equal(d.means[:1], datasets[0].means)  # domain 0 is domain 0
    np.testing.assert_array_equal(datasets[4].means[:4], datasets[3].means)
    assert not np.array_equal(sd.draw_mixing(8, spec).a, datasets[0].mixing.a)


@pytest.mark.parametrize("family", sd.FAMILIES)
def test_sources_have_the_domain_means_and_scales(family):
    d = sd.generate(1, 2, 40_000, sd.Spec(5, 5, family=family))
    for u in range(2):
        z = d.z[d.u == u]
        np.testing.assert_allclose(z.mean(0), d.means[u], atol=0.05 * d.scales[u].max())
        np.testing.assert_allclose(z.std(0), d.scales[u], rtol=0.03)
    eps = (d.z - d.means[d.u]) / d.scales[d.u]
    kurt = np.mean(eps**4, 0).mean()  # Gaussian 3, Laplace 6, the +-0.9 mixture about 1.6
    assert {"gaussian": 2.8 < kurt < 3.2, "laplace": 5 < kurt < 7, "mixture": kurt < 2}[family]
    assert np.all(np.bincount(d.u) == 20_000)
    assert np.abs(d.means).max() <= 2 and 0.5 <= d.scales.min() and d.scales.max() <= 2


def test_heldout_draws_are_new_samples_of_the_same_domains():
    d = sd.generate(0, 3, 600, sd.Spec(4, 8), heldout=300)
    assert d.x_val.shape == (300, 8) and np.all(np.bincount(d.u_val) == 100)
    np.testing.assert_allclose(d.x_val, d.mixing(d.z_val), atol=0.1 * d.x.std())
    assert not np.allclose(d.z_val[:10], d.z[:10])
    np.testing.assert_array_equal(sd.generate(0, 3, 600, sd.Spec(4, 8)).x, d.x)  # held-out draws leave x alone


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(latent_dim=1), "latent_dim"),
        (dict(obs_dim=3), "obs_dim"),
        (dict(family="cauchy"), "family"),
        (dict(arm="dense"), "arm"),
        (dict(density=1.0), "density"),
        (dict(mixing="mlp"), "mixing"),
    ],
)
def test_bad_spec(kw, match):
    with pytest.raises(ValueError, match=match):
        sd.Spec(**kw)
    with pytest.raises(ValueError, match="multiple"):
        sd.generate(0, 7, 100)


def test_spec_is_the_registered_host_dataset():
    """datasets.make("cg_sparse", ...) draws generate()'s dataset of the key's seed, with its
    own number of domains and held-out samples."""
    import jax

    from mechind.core import datasets

    ds = datasets.make("cg_sparse", latent_dim=3, obs_dim=6, num_domains=2, heldout=10)
    assert not ds.traceable and ds.version == sd.GENERATOR_VERSION
    d = ds.sample(jax.random.PRNGKey(4), 40)
    ref = sd.generate(4, 2, 40, sd.Spec(3, 6), heldout=10)
    for name, v in (
        ("x", ref.x),
        ("z", ref.z),
        ("u", ref.u),
        ("support", ref.support),
        ("x_val", ref.x_val),
        ("u_val", ref.u_val),
        ("z_val", ref.z_val),
    ):
        np.testing.assert_array_equal(d[name], v)
    assert set(ds.sample(jax.random.PRNGKey(4), 40)) >= {"x", "z", "u", "support"}
    assert "x_val" not in sd.Spec(3, 6).sample(jax.random.PRNGKey(4), 40)
    both = datasets.draw(ds, jax.numpy.stack([jax.random.PRNGKey(4), jax.random.PRNGKey(5)]), 40)
    np.testing.assert_array_equal(both["x"][0], ref.x)
    for kw, match in ((dict(num_domains=0), "num_domains"), (dict(num_domains=3, heldout=10), "heldout")):
        with pytest.raises(ValueError, match=match):
            sd.Spec(**kw)
