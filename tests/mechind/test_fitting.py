"""``mechind.fit``: a slot autoencoder on a user's arrays (no latents), its bad-input rules,
and the criteria on the learned decoder (issue 24)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mechind
from mechind import fitting
from mechind import train as slot_train

X = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)

# the settings of the criteria tests: 1000 steps of 32-32 nets, about 5 s a fit on 2 cores
QUICK = dict(num_steps=1000, lam=0.3, lr=3e-3, hidden=(32, 32), progress=False)


@pytest.mark.parametrize(
    "x, kw, match",
    [
        (X[:, 0], {}, "2-D array"),
        (np.where(np.arange(6) == 2, np.nan, X), {}, "NaN/inf"),
        (X.astype(str), {}, "real numbers"),
        (X * 1e16, {}, "magnitude"),
        (np.c_[X, np.ones(200)], {}, "constant"),
        (X[:60], {}, "fewer than one batch"),
        (X, {"num_slots": 0}, "num_slots must be a positive integer"),
        (X, {"slot_dim": 1.5}, "slot_dim must be a positive integer"),
        (X, {"overlap": 0.5}, "unknown setting(s) ['overlap']"),
        (X, {"lam": -1.0}, "lam must be >= 0"),
        (X, {"decoder": "conv"}, "decoder must be"),
        (X, {"preprocess": "whiten"}, "preprocess must be one of"),
        (X, {"val_fraction": 1.5}, "val_fraction"),
        (X, {"chunk_steps": 0}, "chunk_steps"),
    ],
)
def test_bad_input_is_one_line_before_anything_compiles(x, kw, match, monkeypatch):
    monkeypatch.setattr(fitting.runner, "run_group", lambda *a, **k: pytest.fail("trained before failing"))
    kw = {"num_slots": 2, "slot_dim": 2, **kw}
    with pytest.raises(ValueError, match=None) as e:
        mechind.fit(jax.random.PRNGKey(0), x, **kw)
    assert match in str(e.value) and "\n" not in str(e.value)


def test_a_bad_key_is_named(monkeypatch):
    monkeypatch.setattr(fitting.runner, "run_group", lambda *a, **k: pytest.fail("trained before failing"))
    with pytest.raises(ValueError, match="PRNG key"):
        mechind.fit(0, X, num_slots=2, slot_dim=2)


def test_the_fit_config_is_the_slot_pipelines_with_the_users_shape():
    c = fitting.make_config(1000, 7, num_slots=3, slot_dim=2, hidden=[16])
    assert isinstance(c, slot_train.SlotConfig) and c.hidden == (16,)
    assert (c.dataset.obs_dim, c.dataset.latent_dim, c.dataset.slot_sizes) == (7, 6, (2, 2, 2))
    assert (c.num_train, c.num_val) == (900, 100) and c.lam == fitting.FIT_DEFAULTS["lam"]
    # the same networks as the experiments' for that shape
    enc, dec = slot_train.make_nets(c)[:2]
    assert dec.features == (16, 7) and enc.features == (16, 6)


def test_a_fit_on_type_d_data_finds_type_d_on_its_learned_decoder():
    """Must show (issue 24): Type-D generator (overlap 0) -> the fitted decoder is Type D at
    most points, and its G_D components are the learned slots."""
    d = fitting.example_data(jax.random.PRNGKey(0), 512, overlap=0.0)
    g, sizes = fitting.generator_from_arrays(d)
    assert fitting.evaluate_criteria(g, d["z"][:64], sizes, tol=1e-6).fractions["type_d"] == 1.0
    f = mechind.fit(jax.random.PRNGKey(1), d["x"], num_slots=2, slot_dim=2, **QUICK)
    rep = f.criteria(d["x"], points=128)
    assert f.recon_r2 > 0.9
    assert rep.fractions["type_d"] > 0.5, rep.summary()  # measured 0.93
    assert rep.partition == ((0, 1), (2, 3)) and rep.partition_share > 0.5
    assert set(rep.results) == set(fitting.CRITERIA) and rep.tol == fitting.DEFAULT_TOL
    # the fitted model: latents standardized as in training, decoding in original units, saved and reloaded
    z = f.encode(d["x"])
    assert z.shape == (512, 4) and [s.tolist() for s in f.slots] == [[0, 1], [2, 3]] and not f.failed
    np.testing.assert_allclose(z.mean(0), 0, atol=0.2)
    x_hat = f.decode(z)
    assert 1 - ((x_hat - d["x"]) ** 2).sum() / ((d["x"] - d["x"].mean(0)) ** 2).sum() > 0.8
    g = fitting.Fitted.from_arrays(f.to_arrays())
    np.testing.assert_array_equal(g.encode(d["x"]), z)
    np.testing.assert_array_equal(g.decode(z), x_hat)
    np.testing.assert_array_equal(g.loss_history, f.loss_history)
    with pytest.raises(ValueError, match="columns"):
        f.encode(d["x"][:, :5])


def test_on_an_entangled_generator_type_d_fails_on_the_learned_decoder():
    """Must show (issue 24): x holds products z1_i * z2_j of the two slots' latents; no slot
    alone explains any of their variance, so a decoder that reconstructs x cannot be Type D."""
    z = np.random.default_rng(0).normal(size=(512, 4)).astype(np.float32)

    def generator(v):
        return jnp.concatenate([v, (v[:2, None] * v[None, 2:]).reshape(-1)])

    x = np.asarray(jax.vmap(generator)(z))
    assert fitting.evaluate_criteria(generator, z[:64], (2, 2), tol=1e-6).fractions["type_d"] == 0.0
    f = mechind.fit(jax.random.PRNGKey(1), x, num_slots=2, slot_dim=2, **QUICK)
    rep = f.criteria(x, points=128, names=("type_d",))
    assert f.recon_r2 > 0.8
    assert rep.fractions["type_d"] < 0.5, rep.summary()  # measured 0.0
    assert rep.partition_share < 1.0 or len(rep.partition) == 1


def test_criteria_of_a_generator_with_overlap_and_unknown_names():
    d = fitting.example_data(jax.random.PRNGKey(0), 64, overlap=0.5)
    g, sizes = fitting.generator_from_arrays(d)
    rep = fitting.evaluate_criteria(g, d["z"], sizes, tol=1e-6, names=("type_d", "type_m"))
    assert rep.fractions == {"type_d": 0.0, "type_m": 1.0}
    assert rep.partition == ((0, 1, 2, 3),) and rep.components.shape == (64, 4)
    with pytest.raises(ValueError, match="unknown criterion 'type_x'"):
        fitting.evaluate_criteria(g, d["z"], sizes, names=("type_x",))
    with pytest.raises(ValueError, match="do not fit"):
        fitting.generator_from_arrays({**d, "num_slots": np.asarray(3)})
