"""The training task on a tiny problem: what each regularisation does to the graph,
pairing, determinism, resume through a checkpoint, and clear errors for bad settings."""

import jax
import numpy as np
import pytest

from mechind.core import rng, runner
from mechsparse import data as ms_data
from mechsparse import train

TINY = train.Config(data=ms_data.Spec("action", "cyclic", latent_dim=3, obs_dim=6), num_train=512, num_val=64,
                    hidden=(16,), transition_hidden=(8,), batch_size=32, num_steps=300, lr=3e-3,
                    mask_lr_mult=20.0, anneal_frac=0.5, dual_lr=0.05)


@pytest.fixture(scope="module")
def tiny_runs():
    # one seed; none / penalty / bound at 3 edges (of 9) / a learned mask with no regularisation
    hp = train.hparams(TINY, coeffs=[0.0, 20.0, 0.0, 0.0], bounds=[9, 9, 3, 9], learn_masks=[0, 1, 1, 1])
    keys = rng.seed_keys([0] * 4)
    return runner.run_group(train.make_task(TINY), keys, hp, chunk_steps=150, progress=False), hp, keys


def test_regularisations_shape_the_graph(tiny_runs):
    res, _, _ = tiny_runs
    fin = [train.finish(jax.tree.map(lambda v: np.asarray(v)[r], res.metrics), "action") for r in range(4)]
    assert not res.failed.any()
    assert fin[0]["edges_learned"] == 9  # frozen full graph: log_alpha never moves
    np.testing.assert_allclose(np.asarray(res.state.params["log_alpha"][0]), 5.0)
    assert fin[1]["edges_learned"] < 9  # the penalty removes edges
    # the bound (3 of 9 edges) is active at the end: a positive multiplier, and fewer
    # expected edges than a learned mask without regularisation keeps
    assert float(res.metrics["multiplier"][2]) > 0 and float(res.metrics["multiplier"][3]) == 0
    assert np.asarray(res.metrics["edge_probs"][2]).sum() < np.asarray(res.metrics["edge_probs"][3]).sum() - 2
    for f in fin:
        assert 0 <= f["mcc"] <= 1 and np.isfinite(f["val_rec"]) and f["edges_true"] == 6
        assert 0 <= f["shd"] <= 9


@pytest.mark.slow  # 7 s; the seed tiling itself is checked by the experiment's test
def test_runs_of_a_seed_share_data_and_initialisation(tiny_runs):
    _, hp, keys = tiny_runs
    task = train.make_task(TINY)
    d0, d1 = task.make_data(keys[0], None), task.make_data(keys[2], None)
    np.testing.assert_array_equal(np.asarray(d0["x_train"]), np.asarray(d1["x_train"]))
    h = lambda r: jax.tree.map(lambda v: v[r], hp)  # noqa: E731
    s0, s2 = task.init(keys[0], d0, h(0)), task.init(keys[2], d1, h(2))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), s0.params, s2.params)


@pytest.mark.slow  # 11 s; the runner's resume is tested on a toy task in tests/mechind/core/test_runner.py
def test_resume_through_a_checkpoint_gives_the_same_numbers(tiny_runs, tmp_path):
    full, hp, keys = tiny_runs
    task = train.make_task(TINY)
    part = runner.run_group(task, keys, hp, chunk_steps=150, progress=False, checkpoint_dir=tmp_path, max_chunks=1)
    assert part.resumed_from == 0
    resumed = runner.run_group(task, keys, hp, chunk_steps=150, progress=False, checkpoint_dir=tmp_path)
    assert resumed.resumed_from == 150
    np.testing.assert_array_equal(resumed.metrics["corr"], full.metrics["corr"])
    np.testing.assert_array_equal(resumed.metrics["edge_probs"], full.metrics["edge_probs"])


@pytest.mark.slow  # 4 s; the experiment's end-to-end test trains time data too
def test_time_data_trains():
    cfg = TINY.replace(data=ms_data.Spec("time", "lower", latent_dim=3, obs_dim=6), num_steps=50)
    _, m = train.train(rng.key(1), cfg, bound=6.0)
    assert not m["failed"] and np.isfinite(m["final_loss"]) and m["edges_true"] == 6


@pytest.mark.parametrize("call,match", [
    (lambda: train.hparams(TINY, coeffs=[-1.0]), "coefficient must be >= 0"),
    (lambda: train.hparams(TINY, coeffs=[0.0], bounds=[-2.0]), "bound must lie in"),
    (lambda: train.hparams(TINY, coeffs=[0.0], bounds=[10.0]), "bound must lie in"),
    (lambda: train.hparams(TINY, coeffs=[0.0, 1.0], bounds=[3.0]), "same length"),
    (lambda: TINY.replace(tau=0.0), "tau"),
    (lambda: TINY.replace(batch_size=1024), "num_train"),
    (lambda: TINY.replace(anneal_frac=2.0), "anneal_frac"),
    (lambda: ms_data.Spec("action", "lower"), "graph must be one of"),
])
def test_bad_settings_raise_before_compiling(call, match):
    with pytest.raises(ValueError, match=match):
        call()
