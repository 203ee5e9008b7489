"""The CG model, step and task (cg.train), alone and through the one training path (cg.fitting)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import cg
from cg import fitting, ivae_data
from cg import train as cg_train
from mechind.core import rng, runner, training


def _data(seed=0, segments=3, per=200, n=3):
    return ivae_data.generate(seed, num_segments=segments, per_segment=per, latent_dim=n, cond_draws=500)


def _flat(params) -> np.ndarray:
    return np.concatenate([np.ravel(v) for v in jax.tree.leaves(params)])


@pytest.mark.slow  # chunk equality is also tested on the runner's toy tasks (tests/mechind/core/test_runner.py)
def test_a_run_does_not_depend_on_how_its_steps_are_chunked():
    d = _data()
    p = fitting.prepare(
        d.x[None].repeat(2, 0),
        d.u[None].repeat(2, 0),
        method="cg_vae",
        latent_dim=3,
        num_steps=60,
        hidden=(16,),
        batch_size=64,
    )
    keys = rng.seed_keys([0, 1])
    a = runner.run_group(
        p.task(), keys, p.hparams(), chunk_steps=30, progress=False, given={**p.data, "z": d.s[None].repeat(2, 0)}
    )
    b = runner.run_group(
        p.task(), keys, p.hparams(), chunk_steps=60, progress=False, given={**p.data, "z": d.s[None].repeat(2, 0)}
    )
    assert not a.failed.any()
    np.testing.assert_allclose(a.metrics["corr"], b.metrics["corr"], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # 9 s; every sparse fit of the default suite trains through the warm-up (cg_vae fits)
def test_sparse_warmup_switches_the_penalty_on_at_its_step():
    """With the penalty switched on only for the last step, the parameters differ from the
    alpha = 0 run by one Adam step; with it on from the start they differ far more."""
    d = _data(1)
    kw = dict(method="cg_vae", latent_dim=3, num_steps=40, hidden=(16,), batch_size=64, lr=1e-3, lr_drop=1.0)
    # alpha is per-run data: alpha 0 and alpha 2 from step 0 are one compiled program
    p = fitting.prepare(np.stack([d.x, d.x]), np.stack([d.u, d.u]), sparse_warmup=0, **kw)
    res = runner.run_group(
        p.task(), rng.seed_keys([2, 2]), p.hparams([0.0, 2.0]), chunk_steps=40, progress=False, given=p.data
    )
    base, early = (_flat(jax.tree.map(lambda a, i=i: a[i], res.state.params)) for i in (0, 1))
    late = _flat(cg.fit(rng.key(2), d.x, d.u, alpha=2.0, sparse_warmup=39, progress=False, chunk_steps=40, **kw).params)
    one_step = np.abs(late - base).max()
    assert 0 < one_step <= 1.5 * 1e-3  # Adam moves each parameter by about lr per step
    assert np.abs(early - base).max() > 5 * one_step
    with pytest.raises(ValueError, match="sparse_warmup"):
        fitting.make_config("cg_vae", 3, num_steps=40, sparse_warmup=40)


def test_fd_penalty_method_trains():
    d = _data(2)
    f = cg.fit(
        rng.key(1), d.x, d.u, method="cg_vae_fd", latent_dim=3, num_steps=20, hidden=(8,), batch_size=64, progress=False
    )
    assert f.config.penalty == "fd" and np.isfinite(f.loss_history).all() and not f.failed


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(alpha=-0.1), "alpha"),
        (dict(prior="laplace"), "prior"),
        (dict(penalty="bwd"), "penalty"),
        (dict(penalty_units="metres"), "penalty_units"),
        (dict(num_steps=0), "num_steps must be a positive integer"),
        (dict(num_steps=20.5), "num_steps must be an integer"),
        (dict(hidden="abc"), "hidden must be a list of integers"),
        (dict(hidden=(0,)), "hidden must be a list of positive"),
        (dict(lr="fast"), "lr must be a number"),
        (dict(encoder_u=1), "encoder_u must be true or false"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        cg_train.CGConfig(**kw)


def test_optimizer_equals_the_adam_built_every_step():
    """The Adam built once (lr injected, /10 from lr_drop) moves the parameters exactly as
    ``optax.adam(lr if i < drop else lr / 10)`` rebuilt at every step i (the former step)."""
    c = cg_train.CGConfig(num_steps=10, lr_drop=0.5)
    lr, drop = jnp.float32(3e-3), int(c.lr_drop * c.num_steps)
    params = {"a": jnp.ones((3, 2)), "b": jnp.zeros(4)}
    grads = jax.random.normal(jax.random.PRNGKey(0), (c.num_steps, 10))
    tree = lambda g: {"a": g[:6].reshape(3, 2), "b": g[6:]}  # noqa: E731

    def old(p):
        opt = optax.adam(lr).init(p)
        for i in range(c.num_steps):
            upd, opt = optax.adam(jnp.where(i < drop, lr, 0.1 * lr)).update(tree(grads[i]), opt, p)
            p = optax.apply_updates(p, upd)
        return p

    def new(p):
        tx = cg_train.optimizer(c)
        state = training.init_state(tx, p, lr, jax.random.PRNGKey(0))
        for i in range(c.num_steps):
            state = training.apply_gradients(tx, state, tree(grads[i]))
        return state.params

    a, b = jax.jit(old)(params), jax.jit(new)(params)
    for k in params:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


@pytest.mark.slow  # step keys and the minibatch are tested in tests/mechind/core/test_training.py
def test_train_step_draws_its_minibatch_and_noise_from_the_step_keys():
    """Step i: minibatch rows from ``split(fold_in(key, i))[0]``, posterior noise from ``[1]``;
    its loss is :func:`cg.train.loss` of that minibatch, and Adam's first step moves every
    parameter by about lr against its gradient's sign."""
    d = _data(3, per=50)
    c = fitting.make_config("ivae", 3, num_steps=10, hidden=(8,), batch_size=16, lr=1e-3)
    nets = cg_train.make_nets(c, 3, 3)
    tx = cg_train.optimizer(c)
    hp = cg_train.HParams(jnp.float32(0.0), jnp.float32(1.0), jnp.float32(c.lr))
    state = cg_train.init_state(c, nets, tx, rng.key(5), hp)
    data = {"x": jnp.asarray(d.x), "u": jnp.asarray(d.u)}
    new, value = jax.jit(lambda s: cg_train.train_step(c, nets, tx, s, data, hp, jnp.int32(7)))(state)
    k_batch, k_noise = jax.random.split(jax.random.fold_in(state.key, 7))
    idx = jax.random.randint(k_batch, (16,), 0, len(d.x))
    by_hand = lambda p: cg_train.loss(c, nets, p, data["x"][idx], data["u"][idx], k_noise, hp, 0.0)  # noqa: E731
    loss, grads = jax.jit(jax.value_and_grad(by_hand))(state.params)
    assert float(value) == pytest.approx(float(loss), rel=1e-6)
    moved = jax.tree.map(lambda a, b: a - b, new.params, state.params)
    for m, g in zip(jax.tree.leaves(moved), jax.tree.leaves(grads)):
        big = np.abs(np.asarray(g)) > 1e-4  # Adam's eps blurs the sign of tiny gradients
        np.testing.assert_allclose(np.asarray(m)[big], -1e-3 * np.sign(np.asarray(g))[big], rtol=1e-3)


@pytest.mark.slow  # 8 s; the runner's own equality of make_train and run_group is tested on its toy tasks
def test_train_is_one_run_of_the_task():
    """cg.train.train (one run as one program) and the runner's group agree."""
    d = _data(4, per=60)
    p = fitting.prepare(d.x[None], d.u[None], method="ivae", latent_dim=3, num_steps=30, hidden=(8,), batch_size=32)
    given = {**p.data, "z": jnp.asarray(d.s[None])}
    res = runner.run_group(p.task(), rng.seed_keys([0]), p.hparams(), chunk_steps=15, progress=False, given=given)
    _, m = cg_train.train(
        rng.key(0), p.config, jax.tree.map(lambda a: a[0], given), jax.tree.map(lambda a: a[0], p.hparams())
    )
    np.testing.assert_allclose(m["corr"], res.metrics["corr"][0], atol=1e-5)
    assert cg_train.finish({k: np.asarray(v) for k, v in m.items()})["mcc"] == pytest.approx(
        cg_train.finish({k: v[0] for k, v in res.metrics.items()})["mcc"], abs=1e-5
    )


def test_jacobian_rows_spread_over_every_domain():
    rows = cg_train.jacobian_rows(40_000)
    assert len(rows) == cg_train.JACOBIAN_SAMPLES and rows[0] == 0 and rows[-1] == 39_999
    assert len(np.unique(rows // 1_000)) == 40  # every segment of 40 x 1,000 is read
    np.testing.assert_array_equal(cg_train.jacobian_rows(5), np.arange(5))


def test_finish_scores_a_known_answer():
    """A permuted identity |correlation| (evaluate's): MCC 1; a Jacobian on the true support: AUROC 1."""
    corr = np.array([[0.0, 1.0], [1.0, 0.0]])
    support = np.array([[True, False], [False, True], [True, True]])
    jac = np.array([[0.0, 2.0], [1.0, 0.0], [1.0, 1.0]])  # columns swapped, like corr
    out = cg_train.finish(
        {
            "corr": corr,
            "corr_spearman": corr,
            "active": np.array([0.9, 0.1]),
            "latent_std": np.float32(1.5),
            "jac_abs": jac,
            "support": support,
            "heldout_nelbo": np.float32(3.0),
        }
    )
    assert out["mcc"] == 1.0 and out["mcc_spearman"] == 1.0 and out["active_latents"] == 1
    assert out["support_auroc"] == 1.0 and out["l1_model"] == 5.0 and out["heldout_nelbo"] == 3.0
    assert cg_train.finish({}) == {}
