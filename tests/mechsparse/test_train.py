"""The training task on a tiny problem: what each regularisation does to the graph,
one step by hand (Adam, the mask logits' step size, the step keys), the ELBO's KL in
closed form, the given-data route, pairing, resume through a checkpoint, and clear errors
for bad settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mechind.core import rng, runner, training
from mechsparse import data as ms_data
from mechsparse import models, train

TINY = train.Config(
    data=ms_data.Spec("action", "cyclic", latent_dim=3, obs_dim=6),
    num_train=512,
    num_val=64,
    hidden=(16,),
    transition_hidden=(8,),
    batch_size=32,
    num_steps=300,
    lr=3e-3,
    mask_lr_mult=20.0,
    anneal_frac=0.5,
    dual_lr=0.05,
)


@pytest.fixture(scope="module")
def tiny_runs():
    # one seed; none / penalty / bound at 3 edges (of 9) / a learned mask with no regularisation
    hp = train.hparams(TINY, coeffs=[0.0, 20.0, 0.0, 0.0], bounds=[9, 9, 3, 9], learn_masks=[0, 1, 1, 1])
    keys = rng.seed_keys([0] * 4)
    return runner.run_group(train.make_task(TINY), keys, hp, chunk_steps=150, progress=False), hp, keys


def test_regularisations_shape_the_graph(tiny_runs):
    res, hp, _ = tiny_runs
    fin = [train.finish(jax.tree.map(lambda v: np.asarray(v)[r], res.metrics), "action") for r in range(4)]
    assert not res.failed.any()
    np.testing.assert_array_equal(res.metrics["multiplier"], res.state.extra)  # extra: the multiplier
    np.testing.assert_array_equal(training.learning_rate(res.state), hp.lr)  # each run's lr, injected
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


@pytest.fixture(scope="module")
def tiny_start():
    task = train.make_task(TINY)
    key = rng.key(0)
    data = jax.jit(task.make_data)(key, None)
    hp = jax.tree.map(lambda v: v[0], train.hparams(TINY, coeffs=[2.0], bounds=[4.0], lrs=[1e-3]))
    return task, key, data, hp, jax.jit(task.init)(key, data, hp)


@pytest.mark.slow  # 8 s; the optimizer's arithmetic is tested on toy trees in tests/mechind/core/test_training.py
def test_one_step_is_adam_with_the_mask_logits_step_scaled(tiny_start):
    """Adam's first step moves each parameter by ``lr * g / (|g| + eps)``, the mask logits by
    ``mask_lr_mult`` times that; the minibatch and noise keys are ``split(fold_in(key, i))``
    and the multiplier ascends on the same minibatch's defect."""
    task, _, data, hp, state = tiny_start
    i = 7
    bound = 9.0 - (9.0 - 4.0) * i / (TINY.anneal_frac * TINY.num_steps)
    model = train.make_model(TINY)

    @jax.jit
    def by_hand(state):
        k_batch, k_obj = jax.random.split(jax.random.fold_in(state.key, i))
        idx = jax.random.randint(k_batch, (TINY.batch_size,), 0, TINY.num_train)
        batch = {"x_train": data["x_train"][idx], "a_train": data["a_train"][idx]}
        return jax.grad(train.objective, argnums=2, has_aux=True)(
            TINY, model, state.params, batch, hp, state.extra, jnp.float32(bound), k_obj
        )

    with rng.fast_compile():  # the runner traces every step in this random mode
        grads, parts = by_hand(state)
    new, _ = jax.jit(task.step)(state, data, hp, jnp.int32(i))
    for name in state.params:
        step = jax.tree.map(
            lambda p1, p0: np.asarray(p1, np.float64) - np.asarray(p0, np.float64), new.params[name], state.params[name]
        )
        mult = TINY.mask_lr_mult if name == "log_alpha" else 1.0
        want = jax.tree.map(
            lambda g: -1e-3 * mult * np.asarray(g, np.float64) / (np.abs(np.asarray(g)) + 1e-8), grads[name]
        )
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-9), step, want)
    # the constraint is violated (9 expected edges > bound): ascent by dual_lr * defect
    assert float(parts["defect"]) > 0
    np.testing.assert_allclose(float(new.extra), TINY.dual_lr * float(parts["defect"]), rtol=1e-5)


@pytest.mark.parametrize("kind", ["action", pytest.param("time", marks=pytest.mark.slow)])  # 3 s each
def test_elbo_kl_is_the_gaussian_closed_form(kind):
    """The ELBO's KL against the closed form in float64 from the model's own Gaussians."""
    cfg = TINY if kind == "action" else TINY.replace(data=ms_data.Spec("time", "lower", latent_dim=3, obs_dim=6))
    model = train.make_model(cfg)
    mask = jnp.asarray([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    key = rng.key(4)

    @jax.jit
    def run():
        d = cfg.data.sample(rng.key(2), 16)
        params = model.init(rng.key(3), d["x"][0, 0], jnp.zeros(3))["params"]
        _, kl = train.elbo_terms(model, params, d["x"], d["a"], mask, key, kind)
        v = {"params": params}
        mq, vq = model.apply(v, d["x"], method=models.Model.encode)
        if kind == "action":
            return kl, (mq[:, 0], vq[:, 0], *model.apply(v, d["a"], mask, method=models.Model.transition)), ()
        z0 = (mq + jnp.sqrt(vq) * jax.random.normal(key, mq.shape))[:, 0]
        return (
            kl,
            (mq[:, 1], vq[:, 1], *model.apply(v, z0, mask, method=models.Model.transition)),
            (mq[:, 0], vq[:, 0], *model.apply(v, method=models.Model.initial)),
        )

    kl, q1, q0 = run()

    def closed(mq, vq, mp, vp):
        mq, vq, mp, vp = (np.asarray(a, np.float64) for a in (mq, vq, mp, vp))
        return 0.5 * (np.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1).sum(-1)

    want = closed(*q1) if kind == "action" else 0.5 * (closed(*q1) + closed(*q0))
    np.testing.assert_allclose(float(kl), want.mean() / 6, rtol=1e-5)


def test_a_given_dataset_is_split_into_training_and_validation():
    given = jax.jit(lambda k: TINY.data.sample(k, TINY.num_train + TINY.num_val))(rng.key(5))
    split = train.make_data(TINY, rng.key(0), given)  # the key is not used: the data are given
    n = TINY.num_train
    want = {
        "x_train": given["x"][:n],
        "a_train": given["a"][:n],
        "x_val": given["x"][n:],
        "z_val": given["z"][n:],
        "a_val": given["a"][n:],
        "graph": given["graph"],
    }
    assert set(split) == set(want)
    for k in want:
        np.testing.assert_array_equal(np.asarray(split[k]), np.asarray(want[k]))
    with pytest.raises(ValueError, match="missing graph"):
        train.make_data(TINY, rng.key(0), {k: given[k] for k in ("x", "z", "a")})
    with pytest.raises(ValueError, match=r"given x has shape \(100, 1, 6\); this config needs \(576, 1, 6\)"):
        train.make_data(TINY, rng.key(0), {**given, "x": given["x"][:100]})


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


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: train.hparams(TINY, coeffs=[-1.0]), "coefficient must be >= 0"),
        (lambda: train.hparams(TINY, coeffs=[0.0], bounds=[-2.0]), "bound must lie in"),
        (lambda: train.hparams(TINY, coeffs=[0.0], bounds=[10.0]), "bound must lie in"),
        (lambda: train.hparams(TINY, coeffs=[0.0, 1.0], bounds=[3.0]), "same length"),
        (lambda: TINY.replace(tau=0.0), "tau"),
        (lambda: TINY.replace(batch_size=1024), "num_train"),
        (lambda: TINY.replace(anneal_frac=2.0), "anneal_frac"),
        (lambda: ms_data.Spec("action", "lower"), "graph must be one of"),
    ],
)
def test_bad_settings_raise_before_compiling(call, match):
    with pytest.raises(ValueError, match=match):
        call()
