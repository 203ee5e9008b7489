import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mechind import losses, models, train
from mechind.core import datasets, metrics, rng, runner, training

SMALL = train.SlotConfig(
    num_slots=2, overlap=0.0, hidden=(16, 16), num_train=512, num_val=100, num_steps=40, batch_size=32
)


def _group(cfg, seeds, lams, lrs=None, **kw):
    task = train.make_task(cfg, with_contrast=True)
    keys = rng.seed_keys(seeds)
    hp = train.hparams(lams, lrs if lrs is not None else [cfg.lr] * len(seeds))
    return runner.run_group(task, keys, hp, progress=False, **kw)


@pytest.mark.slow  # 11 s; resumed and chunked runs equal uninterrupted ones in tests/mechind/core/test_runner.py
def test_seed_determinism_and_seed_difference():
    """Same seeds, same numbers, also when the runs are given the arrays their keys would
    draw (the one data route: ``run_group(..., given=)``); other seeds, other numbers."""
    a = _group(SMALL, [0, 1], [1.0, 1.0], chunk_steps=20)
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(rng.seed_keys([0, 1]))
    b = _group(SMALL, [0, 1], [1.0, 1.0], chunk_steps=20, given=datasets.draw(SMALL.dataset, keys, 612))
    np.testing.assert_array_equal(a.metrics["sis_r2"], b.metrics["sis_r2"])
    np.testing.assert_array_equal(a.final_loss, b.final_loss)
    assert not np.allclose(a.metrics["sis_r2"][0], a.metrics["sis_r2"][1])


@pytest.mark.slow  # the runner's behaviour is tested on a toy task in test_runner.py
def test_resume_after_interruption_gives_identical_results(tmp_path):
    full = _group(SMALL, [0, 1], [0.0, 1.0], chunk_steps=10)
    part = _group(SMALL, [0, 1], [0.0, 1.0], chunk_steps=10, checkpoint_dir=tmp_path, max_chunks=2)
    assert part.resumed_from == 0
    resumed = _group(SMALL, [0, 1], [0.0, 1.0], chunk_steps=10, checkpoint_dir=tmp_path)
    assert resumed.resumed_from == 20
    np.testing.assert_array_equal(resumed.final_loss, full.final_loss)
    for k in full.metrics:
        np.testing.assert_array_equal(resumed.metrics[k], full.metrics[k])
    jax.tree.map(np.testing.assert_array_equal, resumed.state, full.state)


@pytest.mark.slow  # 12 s; chunks = one scan is tested on a toy task (tests/mechind/core/test_runner.py)
def test_chunked_runner_equals_pure_train():
    """make_train (one scan) and run_group (chunks + host loop) compute the same run.

    Raw latents: dividing by a batch std (latent_norm="batch") amplifies the last-bit
    differences between two differently fused programs to ~1e-3 after 40 steps, which
    would hide a real difference of that size; the two paths are the same code either way.
    """
    cfg = SMALL.replace(latent_norm="none")
    task = train.make_task(cfg, with_contrast=True)
    hp = train.HParams(jnp.float32(1.0), jnp.float32(cfg.lr))
    _, m = jax.jit(runner.make_train(task))(rng.key(3), hp)
    res = _group(cfg, [3], [1.0], chunk_steps=15)  # 40 = 15 + 15 + 10: uneven chunks
    np.testing.assert_allclose(res.metrics["sis_r2"][0], m["sis_r2"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.final_loss[0], m["final_loss"], rtol=1e-4)
    _, m2 = train.train(rng.key(3), cfg.replace(lam=1.0))
    assert m2["sis"] == pytest.approx(metrics.sis_from_r2(m["sis_r2"]), abs=1e-4)


@pytest.mark.slow  # the runner's behaviour is tested on a toy task in test_runner.py
def test_nan_in_one_run_does_not_stop_the_others():
    res = _group(SMALL, [0, 1, 2], [1.0, 1.0, 1.0], lrs=[1e-3, float("nan"), 1e-3], chunk_steps=20)
    np.testing.assert_array_equal(res.failed, [False, True, False])
    assert res.failed_at[1] == 20 and res.failed_at[0] == -1
    assert np.all(np.isfinite(res.metrics["sis_r2"][[0, 2]]))
    # the healthy runs are exactly what they are without the failing neighbour
    alone = _group(SMALL, [0, 2], [1.0, 1.0], chunk_steps=20)
    np.testing.assert_allclose(res.final_loss[[0, 2]], alone.final_loss, rtol=1e-5)


@pytest.mark.slow  # 8 s; the contrast's effect on training: test_compositional_contrast_improves_sis_at_zero_overlap
# and tests/mechind/test_fitting.py (it takes a fitted decoder's cross-slot derivatives below 5 % of the largest)
def test_contrast_lowers_c_comp():
    res = _group(SMALL.replace(num_steps=300), [0, 0], [0.0, 1.0], chunk_steps=300)
    assert res.metrics["c_comp"][1] < 0.5 * res.metrics["c_comp"][0]


@pytest.mark.slow  # about 13 s (suite time)
def test_compositional_contrast_improves_sis_at_zero_overlap():
    """The experiment's core claim at small scale: lambda > 0 raises SIS at overlap 0."""
    cfg = train.SlotConfig(num_slots=2, overlap=0.0, num_train=5000, num_val=1000, num_steps=3000)
    seeds = [0, 1, 2]
    res = _group(cfg, seeds * 2, [0.0] * 3 + [1e-2] * 3, chunk_steps=3000)
    sis = np.array([metrics.sis_from_r2(r) for r in res.metrics["sis_r2"]])
    assert sis[3:].mean() > sis[:3].mean() + 0.2, sis


@pytest.mark.slow  # the runner's behaviour is tested on a toy task in test_runner.py
def test_max_runs_per_call_splits_without_changing_results():
    whole = _group(SMALL, [0, 1, 2], [1.0, 1.0, 1.0], chunk_steps=40)
    split = _group(SMALL, [0, 1, 2], [1.0, 1.0, 1.0], chunk_steps=40, max_runs_per_call=2)
    np.testing.assert_allclose(split.final_loss, whole.final_loss, rtol=1e-5)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(num_slots=0), "num_slots"),
        (dict(overlap=1.0), "overlap must lie in"),
        (dict(overlap=-0.2), "overlap must lie in"),
        (dict(lam=-1.0), "lam must be >= 0"),
        (dict(obs_per_slot=2), "too small for an invertible generator"),
        (dict(lr=0.0), "lr must be > 0"),
        (dict(num_train=10, batch_size=64), "num_train"),
        (dict(decoder="conv"), "decoder"),
        (dict(latent_norm="layer"), "latent_norm"),
        (dict(lam_warmup=1.5), "lam_warmup"),
    ],
)
def test_bad_config_raises_before_compiling(kw, match):
    with pytest.raises(ValueError, match=match):
        train.SlotConfig(**kw)


SHARD_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from mechind.core import rng, runner
    from mechind import train
    cfg = train.SlotConfig(num_slots=2, overlap=0.2, hidden=(16, 16), num_train=512, num_val=100,
                           num_steps=30, batch_size=32, latent_norm="none")  # why: see test_chunked_runner
    task = train.make_task(cfg, with_contrast=True)
    res = runner.run_group(task, rng.seed_keys(range(6)), train.hparams([0.0, 1.0] * 3, [1e-3] * 6),
                           chunk_steps=15, progress=False)
    import jax
    print(json.dumps({"devices": jax.local_device_count(), "loss": res.final_loss.tolist(),
                      "r2": res.metrics["sis_r2"].tolist(), "recon": res.metrics["recon_r2"].tolist()}))
""")


def _run_with_devices(n):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", SHARD_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # 13 s: four host devices in a subprocess
def test_sharded_sweep_on_4_devices_matches_one_device():
    one, four = _run_with_devices(1), _run_with_devices(4)
    assert one["devices"] == 1 and four["devices"] == 4
    # 6 runs padded to 8 over 4 devices; same numbers up to float reassociation
    np.testing.assert_allclose(four["loss"], one["loss"], rtol=1e-4)
    np.testing.assert_allclose(four["r2"], one["r2"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(four["recon"], one["recon"], rtol=1e-4)


@pytest.mark.slow  # 13 s; slicing itself is tested on a toy task (tests/mechind/core/test_runner.py)
def test_auto_runs_per_call_fits_memory(monkeypatch):
    task = train.make_task(SMALL, with_contrast=True)
    keys, hp = rng.seed_keys(range(4)), train.hparams([1.0] * 4, [1e-3] * 4)
    per_run = runner.bytes_per_run(task, keys[0], jax.tree.map(lambda a: a[0], hp))
    assert per_run > 2 * 4 * 80 * 80  # includes the SIS kernel of 80 fit points
    # pretend the device holds 2.5 runs' worth at 50 %: the group is sliced by 2
    monkeypatch.setattr(runner, "device_memory_bytes", lambda: int(5 * per_run))
    assert runner.auto_runs_per_call(task, keys, hp) == 2
    sliced = runner.run_group(task, keys, hp, chunk_steps=40, progress=False)
    whole = runner.run_group(task, keys, hp, chunk_steps=40, progress=False, max_runs_per_call=4)
    np.testing.assert_allclose(sliced.final_loss, whole.final_loss, rtol=1e-5)


def test_standardize_and_lambda_ramp_known_values():
    z = jnp.array([[1.0, 10.0], [3.0, 30.0]])
    np.testing.assert_allclose(train.standardize(z, eps=0.0), [[-1, -1], [1, 1]], rtol=1e-6)
    ref = jnp.array([[0.0, 0.0], [2.0, 4.0]])  # mean (1, 2), std (1, 2)
    np.testing.assert_allclose(train.standardize(z, ref, eps=0.0), [[0, 4], [2, 14]], rtol=1e-6)
    ramp = [float(train.lam_ramp(2.0, jnp.int32(i), 100, 0.1)) for i in (0, 4, 9, 50)]
    np.testing.assert_allclose(ramp, [0.2, 1.0, 2.0, 2.0], rtol=1e-6)
    assert float(train.lam_ramp(2.0, jnp.int32(0), 100, 0.0)) == 2.0


@pytest.mark.slow  # 9 s; the scale-free contrast is tested on hand-built decoders in test_losses.py
def test_batch_latent_norm_fixes_the_scale_the_contrast_would_inflate():
    """Raw: lambda inflates the latents; with latent_norm="batch" they stay standardized,
    and the raw and standardized contrasts then agree up to the x units."""
    cfg = SMALL.replace(num_steps=600, lr=5e-3)
    raw = _group(cfg.replace(latent_norm="none"), [0, 0], [0.0, 1.0], chunk_steps=600)
    normed = _group(cfg.replace(latent_norm="batch"), [0, 0], [0.0, 1.0], chunk_steps=600)
    scale_raw = raw.metrics["latent_std"].mean(1)
    assert scale_raw[1] > 2 * scale_raw[0]  # the loophole, measured
    # standardized by training statistics, read on 100 held-out points of a 512-sample fit
    np.testing.assert_allclose(normed.metrics["latent_std"], 1.0, atol=0.25)
    assert normed.metrics["contrast_share"][1] < normed.metrics["contrast_share"][0]


def test_torch_init_matches_pytorch_linear_statistics():
    """init="torch": weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as nn.Linear."""
    from mechind import models

    enc, _ = models.make_models(400, 2, 3, hidden=(300,), init="torch")
    p = enc.init(jax.random.PRNGKey(0), jnp.zeros(400))["params"]
    w, b = np.asarray(p["Dense_0"]["kernel"]), np.asarray(p["Dense_0"]["bias"])
    bound = 1 / np.sqrt(400)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.02)
    w2 = np.asarray(p["Dense_1"]["kernel"])  # fan_in 300
    assert np.abs(w2).max() <= 1 / np.sqrt(300) and np.abs(w2).max() > 0.95 / np.sqrt(300)
    with pytest.raises(ValueError, match="init"):
        train.SlotConfig(init="xavier")


@pytest.mark.slow  # about 11 s (suite time)
def test_restarts_share_data_and_batches_and_selection_takes_the_lowest_objective():
    task = train.make_task(SMALL, with_contrast=True)
    res = runner.run_group(
        task, rng.seed_keys([0, 0, 0]), train.hparams([1.0] * 3, [SMALL.lr] * 3, [0, 1, 2]), progress=False
    )
    plain = _group(SMALL, [0], [1.0])
    # restart 0 is the plain run; restarts 1, 2 start elsewhere on the same data
    np.testing.assert_allclose(res.final_loss[0], plain.final_loss[0], rtol=1e-5)
    assert len(set(np.round(res.final_loss, 6))) == 3
    np.testing.assert_array_equal(res.metrics["objective"] > 0, True)
    recs = [
        {"seed": 0, "lam": 1.0, "restart": r, "objective": o, "failed": f, "sis": r}
        for r, o, f in ((0, 0.3, False), (1, 0.1, False), (2, 0.05, True))
    ]
    recs.append({"seed": 1, "lam": 1.0, "restart": 0, "objective": 0.9, "failed": False, "sis": 9})
    best = train.select_restarts(recs, ("seed", "lam"))
    assert [r["sis"] for r in best] == [1, 9]  # the failed run is not chosen despite its objective


def test_loss_is_testable_alone():
    """The module-level loss: MSE without the contrast; with it, MSE + lam * C_comp of the
    decoder at the encoded batch (computed here independently from the nets)."""
    cfg = train.SlotConfig(num_slots=2, hidden=(8,), latent_norm="none")
    nets = train.make_nets(cfg)
    params = models.init_autoencoder(
        jax.random.PRNGKey(0), nets.enc, nets.dec, cfg.dataset.obs_dim, cfg.dataset.latent_dim
    )
    x = jax.random.normal(jax.random.PRNGKey(1), (5, cfg.dataset.obs_dim))
    z = nets.enc.apply({"params": params["enc"]}, x)
    decode = lambda v: nets.dec.apply({"params": params["dec"]}, v)  # noqa: E731
    mse = float(jnp.mean((x - decode(z)) ** 2))
    value, (rec, cc) = train.loss(cfg, nets, params, x, 0.5, with_contrast=False)
    assert float(value) == pytest.approx(mse, rel=1e-5) and float(cc) == 0.0
    value, (rec, cc) = train.loss(cfg, nets, params, x, 0.5, with_contrast=True)
    expected_cc = float(losses.decoder_contrast(decode, z, cfg.dataset.slot_sizes))
    assert float(cc) == pytest.approx(expected_cc, rel=1e-5)
    assert float(value) == pytest.approx(mse + 0.5 * expected_cc, rel=1e-5)


TINY = train.SlotConfig(
    num_slots=2, hidden=(8,), num_train=64, num_val=20, num_steps=10, batch_size=8, lr_drop=0.3, contrast_eval_samples=8
)


def test_make_data_draws_the_dataset_or_takes_the_given_arrays():
    """The task's one data route: the dataset drawn from ``fold_in(key, 0)``, or the same
    arrays given (z flat or by slot) give the same training data; misfitting arrays are refused."""
    key = rng.key(4)
    drawn = jax.jit(lambda k: train.make_data(TINY, k))(key)
    d = jax.jit(TINY.dataset.sample, static_argnums=1)(jax.random.fold_in(key, 0), 84)
    np.testing.assert_array_equal(drawn["x_train"], d["x"][:64])
    np.testing.assert_array_equal(drawn["x_val"], d["x"][64:])
    np.testing.assert_array_equal(drawn["z_val"], d["z"][64:])
    given = train.make_data(TINY, rng.key(99), {"x": d["x"], "z": d["z"].reshape(84, 6)})
    jax.tree.map(np.testing.assert_array_equal, given, drawn)
    with pytest.raises(ValueError, match="do not fit the config"):
        train.make_data(TINY, key, {"x": d["x"][:80], "z": d["z"][:80]})
    with pytest.raises(ValueError, match="true latents"):
        train.make_data(TINY, key, {"x": d["x"]})


@pytest.mark.slow  # Adam with a drop is tested bit for bit in tests/mechind/core/test_training.py
def test_train_step_is_adam_with_a_dropped_lr_on_a_fold_in_minibatch():
    """Written out independently: the minibatch indices from ``randint(fold_in(key, i))``
    and ``optax.adam`` with lr, then lr / 10 from ``int(lr_drop * num_steps)`` (= 3) on;
    the pipeline's step (its Adam built once, the lr injected) gives the same numbers.
    Raw latents: standardizing them leaves the encoder's output bias a gradient of pure
    round-off, which Adam's normalisation turns into steps of any sign."""
    cfg = TINY.replace(latent_norm="none")
    nets = train.make_nets(cfg)
    data = jax.jit(lambda k: train.make_data(cfg, k))(rng.key(0))
    hp = train.HParams(jnp.float32(0.5), jnp.float32(3e-3))
    state = jax.jit(lambda k: train.init_state(cfg, nets, k, data, hp))(rng.key(0))
    assert float(training.learning_rate(state)) == pytest.approx(3e-3)
    np.testing.assert_array_equal(state.key, jax.random.fold_in(rng.key(0), 2))
    tx = optax.adam(lambda c: hp.lr * jnp.where(c < 3, 1.0, 0.1))

    @jax.jit
    def reference(params, opt, i):
        idx = jax.random.randint(jax.random.fold_in(jax.random.fold_in(rng.key(0), 2), i), (8,), 0, 64)
        value, grads = jax.value_and_grad(lambda p: train.loss(cfg, nets, p, data["x_train"][idx], 0.0, False)[0])(
            params
        )
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, value

    params, opt = state.params, tx.init(state.params)
    step = jax.jit(lambda s, i: train.train_step(cfg, nets, False, s, data, hp, i))
    for i in range(5):
        state, value = step(state, jnp.int32(i))
        params, opt, want = reference(params, opt, i)
        np.testing.assert_allclose(value, want, rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), state.params, params)
