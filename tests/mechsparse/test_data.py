"""The synthetic generators: graphs, exact supports via the derivative core, the mixing,
the dataset interface."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mechind.core import datasets, derivatives, rng
from mechsparse import data as ms_data

CASES = [
    ("action", "identity"),
    ("action", "cyclic"),
    ("action", "random"),
    ("time", "identity"),
    ("time", "lower"),
    ("time", "random"),
]


def test_named_graphs():
    g = np.asarray(ms_data.make_graph(None, ms_data.Spec("action", "cyclic", latent_dim=4, obs_dim=4)))
    # the identity plus a cyclic sub-diagonal: latent i <- actions i and i - 1 (mod n), as theirs
    np.testing.assert_array_equal(g, [[1, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]])
    g = np.asarray(ms_data.make_graph(None, ms_data.Spec("time", "lower", latent_dim=3, obs_dim=3)))
    np.testing.assert_array_equal(g, np.tril(np.ones((3, 3))))
    assert ms_data.edges(ms_data.make_graph(None, ms_data.Spec("action", "cyclic"))) == 20


def test_random_graph_density_and_diagonal():
    spec_t = ms_data.Spec("time", "random", latent_dim=40, obs_dim=40, density=0.25)
    g = np.asarray(ms_data.make_graph(jax.random.PRNGKey(0), spec_t))
    assert np.all(np.diag(g) == 1)  # time graphs keep their self-loops
    off = g[~np.eye(40, dtype=bool)]
    assert abs(off.mean() - 0.25) < 0.04
    spec_a = ms_data.Spec("action", "random", latent_dim=40, obs_dim=40, density=0.25)
    assert abs(np.asarray(ms_data.make_graph(jax.random.PRNGKey(0), spec_a)).mean() - 0.25) < 0.04


@pytest.mark.parametrize("kind,graph", CASES)
@pytest.mark.parametrize("heteroscedastic", [False, True])
def test_mechanism_jacobian_support_is_the_graph(kind, graph, heteroscedastic):
    """Structural zeros: d mean_i / d parent_j (and d var_i / d parent_j) vanish exactly where
    G has no edge (time: the identity term adds the diagonal, which G^z always has), and
    are nonzero at almost every point where it has one."""
    spec = ms_data.Spec(kind, graph, latent_dim=6, obs_dim=12, density=0.4, heteroscedastic=heteroscedastic)
    g = ms_data.make_graph(jax.random.PRNGKey(1), spec)
    parents = jax.random.uniform(jax.random.PRNGKey(2), (32, 6), minval=-2, maxval=2)
    for out in (0, 1):
        jac = derivatives.jacobian(lambda p: ms_data.mechanism(p, g, spec)[out], parents)  # [B, d_z, d_p]
        if out == 1 and not heteroscedastic:
            np.testing.assert_array_equal(np.asarray(jac), 0.0)
            continue
        support = np.asarray(g) > 0
        assert np.all(np.asarray(jac)[:, ~support] == 0)
        assert np.all(np.abs(np.asarray(jac)[:, support]).max(0) > 1e-3)


def test_linear_variant_support():
    spec = ms_data.Spec("action", "cyclic", latent_dim=5, obs_dim=10, mean="linear")
    d = spec.sample(jax.random.PRNGKey(0), 16)
    jac = derivatives.jacobian(lambda p: ms_data.mechanism(p, d["graph"], spec, d["linear"])[0], d["a"])
    np.testing.assert_allclose(np.asarray(jac[0]), np.asarray(d["linear"]), rtol=1e-6)
    assert np.all((np.asarray(d["linear"]) != 0) == (np.asarray(d["graph"]) > 0))


@pytest.mark.parametrize("kind", ["action", "time"])
def test_sample_shapes_standardisation_and_mixing(kind):
    spec = ms_data.Spec(kind, "identity", latent_dim=4, obs_dim=8)
    d = spec.sample(jax.random.PRNGKey(0), 5000)
    t = spec.steps
    assert d["x"].shape == (5000, t, 8) and d["z"].shape == (5000, t, 4) and d["a"].shape == (5000, 4)
    flat = np.asarray(d["x"]).reshape(-1, 8)
    np.testing.assert_allclose(flat.mean(0), 0, atol=0.01)
    np.testing.assert_allclose(flat.std(0), 1, atol=0.01)
    # x is the standardised mixing of z plus N(0, 0.01²) noise
    clean = (ms_data.mix(d["weights"], d["z"]) - d["x_mean"]) / d["x_std"]
    np.testing.assert_allclose(np.std(np.asarray(d["x"] - clean)), ms_data.OBS_NOISE_STD, rtol=0.05)
    if kind == "action":  # z = sin(a) + N(0, 0.01²) for the identity graph
        np.testing.assert_allclose(
            np.std(np.asarray(d["z"][:, 0] - jnp.sin(d["a"] * 3 / jnp.pi + 0))[:, 0]), ms_data.LATENT_STD, rtol=0.1
        )


def test_mixing_weights_are_scaled_orthogonal():
    w = ms_data.sample_mixing(jax.random.PRNGKey(0), ms_data.Spec(latent_dim=4, obs_dim=8))
    gram = np.asarray(w[0] @ w[0].T)  # [4, 8]: orthogonal rows
    np.testing.assert_allclose(gram, gram[0, 0] * np.eye(4), atol=1e-5)
    np.testing.assert_allclose(gram[0, 0], 2 / (1 + 0.2**2) * 2 / 12, rtol=1e-5)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"graph": "lower"}, "graph must be one of"),  # a time graph for action data
        ({"graph": "nope"}, "graph must be one of"),
        ({"kind": "space"}, "kind must be one of"),
        ({"obs_dim": 5}, "obs_dim"),
        ({"density": 1.5}, "density"),
        ({"mean": "cubic"}, "mean must be one of"),
    ],
)
def test_bad_specs_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        ms_data.Spec(**kw)


@pytest.mark.slow  # mode-independent draws are tested on a toy dataset in tests/mechind/core/test_datasets.py
def test_registered_dataset_whose_draw_depends_on_the_key_alone():
    """Registered by name; ``draw`` stacks one draw per key; a draw is the one of the
    runner's random mode wherever it is traced (jax's default mode draws other numbers),
    so a host-side bound at a random graph's true edge count is the graph the run trains on."""
    assert "mechanism_sparsity" in datasets.names()
    ds = datasets.make("mechanism_sparsity", kind="action", graph="random", latent_dim=8, obs_dim=8)
    assert isinstance(ds, ms_data.Spec) and ds == ms_data.Spec("action", "random", latent_dim=8, obs_dim=8)
    assert ds.describe() == {
        "dataset": "mechanism_sparsity",
        "dataset_version": ms_data.GENERATOR_VERSION,
        "kind": "action",
        "graph": "random",
        "latent_dim": 8,
        "obs_dim": 8,
        "density": 0.3,
        "mean": "sin",
        "heteroscedastic": False,
    }
    assert ds.traceable
    keys = rng.seed_keys([0, 1])
    d = datasets.draw(ds, keys, 7)  # traced in jax's default random mode
    assert d["x"].shape == (2, 7, 1, 8) and d["a"].shape == (2, 7, 8) and d["graph"].shape == (2, 8, 8)
    for r in range(2):
        with rng.fast_compile():  # the runner's mode
            runner_graph = np.asarray(ms_data.make_graph(jax.random.split(keys[r], 6)[0], ds))
        default_graph = np.asarray(ms_data.make_graph(jax.random.split(keys[r], 6)[0], ds))
        assert not np.array_equal(runner_graph, default_graph)  # the modes differ...
        np.testing.assert_array_equal(np.asarray(d["graph"][r]), runner_graph)  # ...the draw is the runner's
        np.testing.assert_array_equal(np.asarray(ms_data.graph_of(keys[r], ds)), runner_graph)
