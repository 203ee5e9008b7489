"""The CG model and step (cg.train), exercised through the one training path (cg.fitting)."""

import jax
import numpy as np
import pytest

import cg
from cg import fitting, ivae_data, train as cg_train
from mechind.core import rng, runner


def _data(seed=0, segments=3, per=200, n=3):
    return ivae_data.generate(seed, num_segments=segments, per_segment=per, latent_dim=n, cond_draws=500)


def _flat(params) -> np.ndarray:
    return np.concatenate([np.ravel(v) for v in jax.tree.leaves(params)])


@pytest.mark.slow  # chunk equality is also tested on the runner's toy tasks (tests/mechind/core/test_runner.py)
def test_a_run_does_not_depend_on_how_its_steps_are_chunked():
    d = _data()
    p = fitting.prepare(d.x[None].repeat(2, 0), d.u[None].repeat(2, 0), method="cg_vae", latent_dim=3,
                        num_steps=60, hidden=(16,), batch_size=64)
    keys = rng.seed_keys([0, 1])
    a = runner.run_group(p.task(3), keys, p.hparams(), chunk_steps=30, progress=False,
                         given={**p.data, "s": d.s[None].repeat(2, 0)})
    b = runner.run_group(p.task(3), keys, p.hparams(), chunk_steps=60, progress=False,
                         given={**p.data, "s": d.s[None].repeat(2, 0)})
    assert not a.failed.any()
    np.testing.assert_allclose(a.metrics["corr"], b.metrics["corr"], rtol=1e-4, atol=1e-5)


def test_sparse_warmup_switches_the_penalty_on_at_its_step():
    """With the penalty switched on only for the last step, the parameters differ from the
    alpha = 0 run by one Adam step; with it on from the start they differ far more."""
    d = _data(1)
    kw = dict(method="cg_vae", latent_dim=3, num_steps=40, hidden=(16,), batch_size=64, lr=1e-3, lr_drop=1.0)
    # alpha is per-run data: alpha 0 and alpha 2 from step 0 are one compiled program
    p = fitting.prepare(np.stack([d.x, d.x]), np.stack([d.u, d.u]), sparse_warmup=0, **kw)
    res = runner.run_group(p.task(), rng.seed_keys([2, 2]), p.hparams([0.0, 2.0]), chunk_steps=40,
                           progress=False, given=p.data)
    base, early = (_flat(jax.tree.map(lambda a, i=i: a[i], res.state.params)) for i in (0, 1))
    late = _flat(cg.fit(rng.key(2), d.x, d.u, alpha=2.0, sparse_warmup=39, progress=False, chunk_steps=40,
                        **kw).params)
    one_step = np.abs(late - base).max()
    assert 0 < one_step <= 1.5 * 1e-3  # Adam moves each parameter by about lr per step
    assert np.abs(early - base).max() > 5 * one_step
    with pytest.raises(ValueError, match="sparse_warmup"):
        fitting.make_config("cg_vae", 3, num_steps=40, sparse_warmup=40)


def test_fd_penalty_method_trains():
    d = _data(2)
    f = cg.fit(rng.key(1), d.x, d.u, method="cg_vae_fd", latent_dim=3, num_steps=20, hidden=(8,), batch_size=64,
               progress=False)
    assert f.config.penalty == "fd" and np.isfinite(f.loss_history).all() and not f.failed


@pytest.mark.parametrize("kw, match", [
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
])
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        cg_train.CGConfig(**kw)
