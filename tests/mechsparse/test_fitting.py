"""``mechsparse.fit``: the mechanism-sparsity VAE on a user's actions or time series (issue 24)."""

import jax
import numpy as np
import pytest

import mechsparse
from mechind.core import metrics as core_metrics
from mechsparse import fitting
from mechsparse import metrics as ms_metrics
from mechsparse import train as ms_train

R = np.random.default_rng(0)
X = R.normal(size=(200, 5)).astype(np.float32)
A = R.normal(size=(200, 2)).astype(np.float32)
TINY = dict(num_steps=20, hidden=(8,), transition_hidden=(4,), batch_size=16, progress=False)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({}, "give either actions"),
        ({"actions": A, "time": True}, "give either actions"),
        ({"actions": A[:150]}, "different lengths"),
        ({"actions": np.where(A > 2, np.inf, A)}, "actions holds"),
        ({"actions": A, "latent_dim": 6}, "exceeds the observed dimension"),
        ({"actions": A, "latent_dim": 1}, "latent_dim must be >= 2"),
        ({"actions": A, "lr": -1.0}, "lr and dual_lr must be > 0"),
        ({"actions": A, "graph": "cyclic"}, "unknown setting(s) ['graph']"),
        ({"actions": A, "coeff": -1.0}, "coefficient must be >= 0"),
        ({"actions": A, "max_edges": 100.0}, "edge bound must lie in [0, 6]"),
        ({"time": np.arange(200) // 1}, "no two consecutive rows"),
        ({"time": np.arange(150)}, "episode labels [T]"),
        ({"time": np.zeros(200)}, "episode labels must be integers"),
        ({"time": True, "batch_size": 256}, "fewer than one batch"),
    ],
)
def test_bad_input_is_one_line_before_anything_compiles(kw, match, monkeypatch):
    monkeypatch.setattr(fitting.runner, "run_group", lambda *a, **k: pytest.fail("trained before failing"))
    kw = {"latent_dim": 3, **kw}
    with pytest.raises(ValueError) as e:
        mechsparse.fit(jax.random.PRNGKey(0), X, **kw)
    assert match in str(e.value) and "\n" not in str(e.value)


def test_example_time_series_are_episodes_of_two_steps():
    d = fitting.example_data(jax.random.PRNGKey(0), 64, kind="time", latent_dim=3, obs_dim=6)
    assert d["x"].shape == (128, 6) and (d["episode"][::2] == d["episode"][1::2]).all()
    assert fitting.pairs(d["x"], d["episode"]).shape == (64, 2, 6)


def test_time_pairs_never_span_two_episodes():
    x = np.arange(6.0)[:, None]
    np.testing.assert_array_equal(fitting.pairs(x, True)[:, :, 0], [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    np.testing.assert_array_equal(fitting.pairs(x, np.array([0, 0, 0, 1, 1, 2]))[:, :, 0], [[0, 1], [1, 2], [3, 4]])


def test_the_fit_config_is_the_pipelines_with_the_users_shape():
    xs, a, c, kind = fitting.check_inputs(X, actions=A, latent_dim=3)
    assert isinstance(c, ms_train.Config) and kind == "action" and xs.shape == (200, 1, 5)
    assert (c.data.obs_dim, c.data.latent_dim, c.data.parent_dim, c.full_edges) == (5, 3, 2, 6)
    xs, a, c, kind = fitting.check_inputs(X, time=True, latent_dim=3)
    assert kind == "time" and xs.shape == (199, 2, 5) and c.data.parent_dim == 3 and a.shape == (199, 3)


@pytest.mark.slow  # 9 s; the time path's arrays are tested above without training, its step is the action data's
def test_a_fit_of_a_time_series_encodes_decodes_and_learns_a_graph():
    d = fitting.example_data(jax.random.PRNGKey(0), 128, kind="time", latent_dim=3, obs_dim=6)  # 128 episodes
    assert d["x"].shape == (256, 6) and (d["episode"][::2] == d["episode"][1::2]).all()
    f = mechsparse.fit(jax.random.PRNGKey(0), d["x"] * 2 + 1, time=d["episode"], latent_dim=3, **TINY)
    assert f.kind == "time" and not f.failed and f.loss_history.shape == (1,) and f.config.num_train == 128 - 13
    assert f.graph.shape == (3, 3) and ((0 <= f.graph) & (f.graph <= 1)).all() and f.edges.dtype == bool
    z = f.encode(d["x"] * 2 + 1)
    assert z.shape == (256, 3) and f.decode(z).shape == (256, 6)
    assert abs(f.decode(z).mean() - (2 * d["x"].mean() + 1)) < 1  # original units


@pytest.mark.slow  # the action path runs end to end in tests/mechind/test_cli.py (mechind fit mechsparse)
def test_a_fit_with_actions_learns_an_action_graph():
    f = mechsparse.fit(jax.random.PRNGKey(0), X, actions=A, latent_dim=3, **TINY)
    assert f.kind == "action" and f.graph.shape == (3, 2) and f.encode(X).shape == (200, 3)


@pytest.mark.slow  # 20,000 steps: about 15 s (suite time)
def test_the_default_fit_prunes_a_sparse_action_graph():
    """The defaults recover the graph where it is sparse and identified: Lachapelle et al.'s action
    data (d_z = 10, d_x = 20: identity + cyclic sub-diagonal, 20 of 100 edges) as `mechind example-data
    mechsparse` draws it. The dense guess (what the old 5,000-step default learned: every edge) is the
    floor: SHD 80, edge F1 0.33. Measured: 16 edges, SHD 6, F1 0.83 (seeds 1 and 2: SHD 9 and 11)."""
    d = fitting.example_data(jax.random.PRNGKey(0))
    f = mechsparse.fit(jax.random.PRNGKey(0), d["x"], actions=d["a"], latent_dim=10, progress=False)
    truth = d["graph"] > 0.5
    perm = core_metrics.matched_permutation(np.asarray(core_metrics.correlation_matrix(d["z"], f.encode(d["x"]))))
    learned = ms_metrics.permute_graph(f.edges, perm, "action")
    f1 = lambda g: 2 * (g & truth).sum() / (g.sum() + truth.sum())  # noqa: E731
    dense = np.ones_like(truth)
    assert truth.sum() == 20 and not f.failed
    assert ms_metrics.shd(truth, f.edges, perm, "action") <= 20 < ms_metrics.shd(truth, dense, perm, "action") == 80
    assert f1(learned) >= 0.6 > f1(dense) + 0.25
