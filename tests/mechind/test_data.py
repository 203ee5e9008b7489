import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mechind import criteria, data, graph
from mechind.core import datasets, derivatives


@pytest.mark.parametrize(
    "layout, k, overlap",
    [("chain", 2, 0.0), ("chain", 3, 0.25), ("chain", 5, 0.5), ("shared", 3, 0.2), ("shared", 2, 0.5)],
)
def test_realised_support_is_exactly_the_prescribed_one(layout, k, overlap):
    d = data.make_slot_data(jax.random.PRNGKey(k), data.SlotSpec(k, 3, 20, overlap, layout=layout), 64)
    jac = derivatives.jacobian(d.generator, d.z.reshape(64, -1))
    by_slot = np.asarray(criteria.slot_supports(jac, d.spec.slot_sizes, graph.DEFAULT_TOL))  # [B, K, d_x]
    realised = by_slot.any(axis=0).T  # rows any point moves, per slot
    np.testing.assert_array_equal(realised, d.support)
    # structural zeros are exactly zero, not merely small
    mask = data.latent_mask(d.spec)
    assert float(jnp.abs(jac[:, ~mask]).max()) == 0.0
    # a jitted draw against an eager one: jax 0.12's XLA fuses the float32 mixing differently (4e-6 relative)
    np.testing.assert_allclose(d.x, jax.vmap(d.generator)(d.z.reshape(64, -1)), rtol=1e-5, atol=1e-7)


def test_chain_overlap_counts():
    spec = data.SlotSpec(3, 3, 20, 0.3, "chain")
    s = spec.support
    assert s.shape == (3 * 20 - 2 * 6, 3)
    assert s.sum(0).tolist() == [20, 20, 20]
    assert int((s[:, 0] & s[:, 1]).sum()) == 6 and int((s[:, 0] & s[:, 2]).sum()) == 0
    assert data.realised_overlap(s) == pytest.approx(0.3)
    shared = data.SlotSpec(3, 3, 20, 0.25, "shared").support
    assert shared.shape == (3 * 15 + 5, 3) and int(shared.all(1).sum()) == 5
    assert data.realised_overlap(data.SlotSpec(2, 3, 20, 0.0).support) == 0.0


def test_overlap_zero_is_type_d_and_positive_is_not():
    for ov, expect_d in [(0.0, True), (0.2, False)]:
        d = data.make_slot_data(jax.random.PRNGKey(0), data.SlotSpec(3, 3, 20, ov), 32)
        res = criteria.evaluate_all(d.generator, d.z.reshape(32, -1), d.spec.slot_sizes, only=("type_d", "type_m"))
        assert res["type_d"].fraction() == float(expect_d)
        assert res["type_m"].fraction() == 1.0  # chain with overlap < 1 never nests supports


def test_generator_is_injective_and_well_conditioned():
    d = data.make_slot_data(jax.random.PRNGKey(1), data.SlotSpec(3, 3, 20, 0.5), 256)
    jac = derivatives.jacobian(d.generator, d.z.reshape(256, -1))
    sv = jnp.linalg.svd(jac, compute_uv=False)
    assert float(sv[:, -1].min()) > 0  # full column rank at every point
    assert float(d.params["cond"]) < 1e3


def test_dependent_latents_are_correlated_and_standardised():
    ind = data.make_slot_data(jax.random.PRNGKey(2), data.SlotSpec(2, 3, 20, 0.0), 20000)
    dep = data.make_slot_data(jax.random.PRNGKey(2), data.SlotSpec(2, 3, 20, 0.0, dependent=True), 20000)
    c_ind = np.corrcoef(np.asarray(ind.z.reshape(20000, -1)).T)
    c_dep = np.corrcoef(np.asarray(dep.z.reshape(20000, -1)).T)
    off = ~np.eye(6, dtype=bool)
    assert np.abs(c_ind[off]).max() < 0.05 and np.abs(c_dep[off]).max() > 0.2
    np.testing.assert_allclose(np.asarray(dep.z.reshape(20000, -1)).std(0), 1.0, atol=0.05)


def test_seed_determinism_and_difference():
    a = data.make_slot_data(jax.random.PRNGKey(3), data.SlotSpec(2, 3, 20, 0.1), 100)
    b = data.make_slot_data(jax.random.PRNGKey(3), data.SlotSpec(2, 3, 20, 0.1), 100)
    c = data.make_slot_data(jax.random.PRNGKey(4), data.SlotSpec(2, 3, 20, 0.1), 100)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.allclose(a.x, c.x)


def test_noise_is_explicit():
    clean = data.make_slot_data(jax.random.PRNGKey(5), data.SlotSpec(2, 3, 20, 0.0), 500)
    noisy = data.make_slot_data(jax.random.PRNGKey(5), data.SlotSpec(2, 3, 20, 0.0, noise_std=0.1), 500)
    resid = np.asarray(noisy.x - clean.x)
    assert 0.08 < resid.std() < 0.12


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(num_slots=0), "num_slots"),
        (dict(overlap=1.0), "overlap must lie in \\[0, 1\\)"),
        (dict(overlap=-0.1), "overlap must lie in \\[0, 1\\)"),
        (dict(overlap=0.6), "<= 0.5 for layout='chain'"),
        (dict(obs_per_slot=2), "too small for an invertible generator"),
        (dict(layout="ring"), "layout"),
        (dict(noise_std=-1.0), "noise_std"),
        (dict(num_slots=3, layout="shared", overlap=0.75, obs_per_slot=4), "too small for an invertible generator"),
    ],
)
def test_bad_spec(kw, match):
    args = dict(num_slots=2, slot_dim=3, obs_per_slot=20, overlap=0.0, layout="chain")
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        data.SlotSpec(**args)


@pytest.mark.slow  # the registry and draw are tested on a toy dataset in tests/mechind/core/test_datasets.py
def test_slots_is_a_registered_dataset_whose_draw_is_the_mixing_of_its_latents():
    """``datasets.make("slots", ...)`` is a SlotSpec; ``sample`` returns x, z and the
    latent-level support, with x the mixing (written out here in numpy) of z; the same
    numbers as the draw that also returns the mixing, eagerly or compiled."""
    ds = datasets.make("slots", num_slots=2, overlap=0.25)
    assert isinstance(ds, data.SlotSpec) and ds == data.SlotSpec(2, overlap=0.25)
    assert "slots" in datasets.names() and ds.name == "slots" and ds.traceable and ds.version == 1
    assert ds.describe() == {
        "dataset": "slots",
        "dataset_version": 1,
        "num_slots": 2,
        "slot_dim": 3,
        "obs_per_slot": 20,
        "overlap": 0.25,
        "layout": "chain",
        "dependent": False,
        "noise_std": 0.0,
    }
    key = jax.random.PRNGKey(11)
    d = jax.jit(ds.sample, static_argnums=1)(key, 50)
    assert set(d) == {"x", "z", "support"}
    assert d["x"].shape == (50, ds.obs_dim) == (50, 35) and d["z"].shape == (50, 2, 3)
    np.testing.assert_array_equal(d["support"], np.repeat(ds.support, 3, axis=1))
    drawn = data.make_slot_data(key, ds, 50)
    np.testing.assert_array_equal(drawn.x, d["x"])
    np.testing.assert_array_equal(drawn.z, d["z"])
    eager = ds.sample(key, 50)  # the same random stream outside jit
    np.testing.assert_array_equal(eager["z"], d["z"])
    np.testing.assert_allclose(eager["x"], d["x"], rtol=1e-5, atol=1e-6)
    both = datasets.draw(ds, jnp.stack([jax.random.PRNGKey(3), key]), 50)  # one dataset per key, stacked
    assert both["x"].shape == (2, 50, 35) and both["support"].shape == (2, 35, 6)
    np.testing.assert_allclose(both["x"][1], d["x"], rtol=1e-6)
    assert not np.allclose(both["x"][0], d["x"])
    with pytest.raises(ValueError, match="num_samples"):
        ds.sample(key, 0)
    w1, w2 = np.asarray(drawn.params["w1"], np.float64), np.asarray(drawn.params["w2"], np.float64)
    leaky = lambda a: np.where(a > 0, a, 0.2 * a)  # noqa: E731
    x = leaky(leaky(np.asarray(d["z"], np.float64).reshape(50, 6) @ w1.T) @ w2.T)
    np.testing.assert_allclose(d["x"], x, rtol=1e-5, atol=1e-6)
    # zeros of the mixing weights are exactly the prescribed structure
    np.testing.assert_array_equal(w2 != 0, d["support"])
    np.testing.assert_array_equal(w1 != 0, np.kron(np.eye(2), np.ones((3, 3))) > 0)
