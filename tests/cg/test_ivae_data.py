"""cg.ivae_data: iVAE's synthetic protocol and the sparse variant."""

import numpy as np
import pytest

from cg import ivae_data


def test_layers_have_unit_columns_and_pass_the_condition_rule():
    d = ivae_data.generate(0, num_segments=4, per_segment=50, latent_dim=4, tied=False, cond_draws=2000)
    rng = np.random.default_rng(123)
    # an independent estimate of the 25th percentile from fresh draws
    ref = ivae_data.unit_columns(rng.uniform(-1, 1, (20000, 4, 4)))
    q25 = np.percentile(np.linalg.cond(ref), 25)
    for a in d.weights:
        np.testing.assert_allclose(np.linalg.norm(a, axis=0), 1.0, rtol=1e-5)
        assert np.linalg.cond(a) <= 1.15 * q25  # threshold from 2,000 draws: sampling error only
    assert len(d.weights) == 3


def test_tied_layers_share_one_matrix_and_mixing_matches_numpy():
    d = ivae_data.generate(1, num_segments=3, per_segment=20, latent_dim=3, act="xtanh", cond_draws=500)
    assert all(np.array_equal(d.weights[0], w) for w in d.weights)
    a = d.weights[0].astype(np.float64)
    f = lambda v: np.tanh(v) + 0.1 * v  # noqa: E731
    expect = f(f(d.s.astype(np.float64) @ a) @ a) @ a
    np.testing.assert_allclose(d.x, expect, rtol=1e-4, atol=1e-5)


def test_sources_follow_the_segment_scales_and_centres():
    d = ivae_data.generate(
        2, num_segments=3, per_segment=20000, latent_dim=2, centered=False, dist="lap", cond_draws=200
    )
    assert np.array_equal(d.u, np.repeat(np.arange(3), 20000))
    for m in range(3):
        s = d.s[d.u == m]
        np.testing.assert_allclose(s.mean(0), d.centers[m], atol=0.06)
        np.testing.assert_allclose(s.std(0), d.scales[m], rtol=0.03)
    assert np.all((d.scales >= 0.5) & (d.scales <= 3)) and np.all(np.abs(d.centers) <= 5)
    assert np.all(ivae_data.generate(2, 3, 10, 2, cond_draws=200).centers == 0)


def test_sparse_variant_has_structural_zeros_exactly_on_its_support():
    d = ivae_data.generate(3, num_segments=2, per_segment=200, latent_dim=5, density=0.4, cond_draws=500)
    assert d.support.sum() == round(0.4 * 25) and np.all(np.diag(d.support))
    z = d.s[:50].astype(np.float64)
    h = 1e-5
    jac = np.stack([(d.mix(z + h * e) - d.mix(z - h * e)) / (2 * h) for e in np.eye(5)], -1)  # [B, d_x, n]
    assert np.all(np.abs(jac[:, ~d.support]) < 1e-6)  # structural zeros
    assert np.all(np.abs(jac[:, d.support]) > 1e-4)  # every edge is real
    assert np.linalg.matrix_rank(d.weights[0]) == 5  # injective


def test_structural_sparsity_on_hand_built_supports():
    assert ivae_data.structural_sparsity(np.eye(3, dtype=bool)).all()
    # every row holds latents 0 and 1 together: neither can be singled out; 2 can
    s = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]], bool)
    assert ivae_data.structural_sparsity(s).tolist() == [False, False, True]
    # lower triangular: latent i's rows are i..n-1; their intersection is {0..i}, so only 0 passes
    assert ivae_data.structural_sparsity(np.tril(np.ones((3, 3), bool))).tolist() == [True, False, False]
    # dense: nothing passes; a latent no row depends on fails (latent 1 below)
    assert not ivae_data.structural_sparsity(np.ones((4, 4), bool)).any()
    assert ivae_data.structural_sparsity(np.array([[1, 0], [1, 0]], bool)).tolist() == [True, False]


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(obs_dim=3, latent_dim=5), "obs_dim"),
        (dict(act="relu"), "act"),
        (dict(dist="cauchy"), "dist"),
        (dict(density=0.0), "density"),
        (dict(num_segments=0), "num_segments"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        ivae_data.generate(0, **{"cond_draws": 100, **kw})


@pytest.mark.parametrize("act, density", [("xtanh", 1.0), ("lrelu", 1.0), ("none", 1.0), ("xtanh", 0.4)])
def test_mixing_jacobian_matches_central_differences(act, density):
    d = ivae_data.generate(
        1,
        num_segments=2,
        per_segment=60,
        latent_dim=4,
        obs_dim=6,
        act=act,
        density=density,
        cond_draws=200,
        dtype=np.float64,
    )
    s = d.s[:9]
    h = 1e-6
    fd = np.stack([(d.mix(s + h * e) - d.mix(s - h * e)) / (2 * h) for e in np.eye(4)], -1)
    jac = d.jacobian(s)
    assert jac.shape == (9, 6, 4)
    np.testing.assert_allclose(jac, fd, atol=1e-7)
    # the standardized L1, by hand from the finite differences: x z-scored over the dataset,
    # each latent in units of its std over the rows
    by_hand = np.mean(np.sum(np.abs(fd / d.x.std(0)[None, :, None] * s.std(0)[None, None, :]), axis=(1, 2)))
    np.testing.assert_allclose(d.standardized_l1(np.arange(9)), by_hand, rtol=1e-6)


def test_sparse_variant_with_more_observations_than_latents_has_no_constant_coordinate():
    d = ivae_data.generate(0, num_segments=2, per_segment=100, latent_dim=3, obs_dim=5, density=0.3, cond_draws=200)
    assert d.support.any(1).all() and np.diag(d.support[:3]).all()
    assert np.all(d.x.std(0) > 0) and np.isfinite(d.x).all()
    a = ivae_data.random_support(np.random.default_rng(5), 4, 4, 0.5)
    assert a.sum() == 8 and np.diag(a).all()


def test_protocol_is_the_registered_host_dataset():
    """datasets.make("ivae", ...) draws generate() of the key's seed, N / num_segments per segment."""
    import jax

    from mechind.core import datasets

    ds = datasets.make("ivae", num_segments=3, latent_dim=3, density=0.5, cond_draws=200)
    assert not ds.traceable and ds.version == ivae_data.GENERATOR_VERSION
    d = ds.sample(jax.random.PRNGKey(7), 60)
    ref = ivae_data.generate(7, 3, 20, 3, density=0.5, cond_draws=200)
    for name, v in (("x", ref.x), ("z", ref.s), ("u", ref.u), ("support", ref.support)):
        np.testing.assert_array_equal(d[name], v)
    with pytest.raises(ValueError, match="multiple of num_segments"):
        ds.sample(jax.random.PRNGKey(7), 61)
