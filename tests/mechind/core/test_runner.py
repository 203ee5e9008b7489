"""The shared runner on a toy task with a known answer: a linear regression by SGD."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mechind.core import rng, runner

DIM, N, BATCH = 3, 64, 16


def _toy_task(num_steps: int = 40) -> runner.Task:
    """Least squares ``y = X w*`` by SGD; per-run hparam ``lr``; loss NaN when lr < 0."""

    def make_data(key, given):
        k1, k2 = jax.random.split(key)
        x = jax.random.normal(k1, (N, DIM))
        w = jax.random.normal(k2, (DIM,))
        return {"x": x, "y": x @ w, "w": w}

    def init(key, data, hp):
        return {"w": jnp.zeros(DIM), "key": rng.to_data(key)}

    def step(state, data, hp, i):
        idx = jax.random.randint(jax.random.fold_in(state["key"], i), (BATCH,), 0, N)
        x, y = data["x"][idx], data["y"][idx]
        loss, g = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(state["w"])
        loss = jnp.where(hp["lr"] < 0, jnp.nan, loss)
        return {**state, "w": state["w"] - hp["lr"] * g}, loss

    def evaluate(state, data, hp):
        return {"err": jnp.linalg.norm(state["w"] - data["w"])}

    return runner.Task(make_data, init, step, evaluate, num_steps, "toy")


def _run(task, lrs, **kw):
    keys = rng.seed_keys(list(range(len(lrs))))
    return runner.run_group(task, keys, {"lr": jnp.asarray(lrs, jnp.float32)}, progress=False, **kw)


def test_sgd_converges_and_chunks_equal_one_scan():
    task = _toy_task()
    whole = jax.jit(jax.vmap(runner.make_train(task)))(rng.seed_keys([0, 1]), {"lr": jnp.asarray([0.1, 0.1])})
    chunked = _run(task, [0.1, 0.1], chunk_steps=7)  # 7 does not divide 40: a shorter last chunk
    np.testing.assert_allclose(chunked.metrics["err"], whole[1]["err"], rtol=1e-5, atol=1e-6)
    assert np.all(chunked.metrics["err"] < 0.05)  # noiseless least squares: w* recovered
    assert chunked.loss_history.shape == (2, 6)


def test_a_nan_run_is_marked_and_the_others_finish():
    res = _run(_toy_task(), [0.1, -1.0, 0.1], chunk_steps=10)
    assert res.failed.tolist() == [False, True, False]
    assert res.failed_at.tolist() == [-1, 10, -1]
    assert np.all(res.metrics["err"][[0, 2]] < 0.05)


def test_resume_after_interruption_and_a_corrupt_checkpoint_starts_afresh(tmp_path):
    task = _toy_task()
    full = _run(task, [0.1, 0.05], chunk_steps=10)
    part = _run(task, [0.1, 0.05], chunk_steps=10, checkpoint_dir=tmp_path / "a", max_chunks=2)
    assert part.resumed_from == 0
    resumed = _run(task, [0.1, 0.05], chunk_steps=10, checkpoint_dir=tmp_path / "a")
    assert resumed.resumed_from == 20
    np.testing.assert_array_equal(resumed.metrics["err"], full.metrics["err"])

    _run(task, [0.1, 0.05], chunk_steps=10, checkpoint_dir=tmp_path / "b", max_chunks=2)
    files = [p for p in (tmp_path / "b").rglob("*") if p.is_file()]
    assert files
    for p in files:  # every file of the checkpoint overwritten with garbage
        p.write_bytes(b"\x00garbage")
    with pytest.warns(RuntimeWarning, match="(unreadable|no readable checksums).*from step 0"):
        again = _run(task, [0.1, 0.05], chunk_steps=10, checkpoint_dir=tmp_path / "b")
    assert again.resumed_from == 0
    np.testing.assert_array_equal(again.metrics["err"], full.metrics["err"])


def test_slices_equal_one_call():
    task = _toy_task(20)
    one = _run(task, [0.1, 0.05, 0.2], chunk_steps=10)
    sliced = _run(task, [0.1, 0.05, 0.2], chunk_steps=10, max_runs_per_call=2)
    np.testing.assert_allclose(sliced.metrics["err"], one.metrics["err"], rtol=1e-6)


def _noisy_task(num_steps: int = 30, width: int = 4096) -> runner.Task:
    """A state of ``width`` random floats: large enough that orbax stores it in a data file
    whose bytes a flipped bit changes without breaking its decoding."""

    def make_data(key, given):
        return {"x": jax.random.normal(key, (width,))}

    def init(key, data, hp):
        return {"w": jax.random.normal(jax.random.fold_in(key, 1), (width,))}

    def step(state, data, hp, i):
        w = state["w"] - hp["lr"] * (state["w"] - data["x"]) + 1e-3 * jnp.sin(state["w"] * i)
        return {"w": w}, jnp.mean((w - data["x"]) ** 2)

    def evaluate(state, data, hp):
        return {"err": jnp.mean((state["w"] - data["x"]) ** 2)}

    return runner.Task(make_data, init, step, evaluate, num_steps, "noisy")


def test_a_flipped_byte_in_a_checkpoint_is_caught_by_its_checksum(tmp_path):
    task = _noisy_task()
    full = _run(task, [0.1, 0.05], chunk_steps=10)
    _run(task, [0.1, 0.05], chunk_steps=10, checkpoint_dir=tmp_path / "c", max_chunks=2)  # steps 10 and 20 kept
    step20 = [p for p in (tmp_path / "c" / "20").rglob("*") if p.is_file()]
    data = max(step20, key=lambda p: p.stat().st_size)  # the arrays' bytes
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match="step 20 fails its checksum.*resuming from step 10"):
        again = _run(task, [0.1, 0.05], chunk_steps=10, checkpoint_dir=tmp_path / "c")
    assert again.resumed_from == 10
    np.testing.assert_array_equal(again.metrics["err"], full.metrics["err"])


def test_a_checkpoint_of_another_layout_is_not_resumed(tmp_path):
    task = _toy_task()
    full = _run(task, [0.1, 0.05], chunk_steps=10)
    assert full.layout == runner.layout(2) and full.layout["devices"] == jax.local_device_count()
    _run(task, [0.1, 0.05], chunk_steps=10, checkpoint_dir=tmp_path, max_chunks=2)
    meta = tmp_path / "checksums.json"
    meta.write_text(meta.read_text().replace('"devices": 1', '"devices": 2'))  # as if written on 2 devices
    with pytest.warns(RuntimeWarning, match="another run layout.*from step 0"):
        again = _run(task, [0.1, 0.05], chunk_steps=10, checkpoint_dir=tmp_path)
    assert again.resumed_from == 0
    np.testing.assert_array_equal(again.metrics["err"], full.metrics["err"])


def test_ctrl_c_in_the_host_loop_says_where_it_stopped(tmp_path, monkeypatch):
    task = _toy_task()
    calls = []

    class StopAtSecondChunk:
        def __call__(self, step, length, carry):
            calls.append(step)
            if len(calls) == 2:
                raise KeyboardInterrupt

        def close(self):
            calls.append("closed")

    real = runner.host_loop
    monkeypatch.setattr(runner, "host_loop", lambda *a, **k: real(*a[:7], [*a[7], StopAtSecondChunk()], *a[8:], **k))
    with pytest.raises(runner.Interrupted) as e:
        _run(task, [0.1], chunk_steps=10, checkpoint_dir=tmp_path)
    assert (e.value.step, e.value.num_steps) == (20, 40) and calls == [10, 20, "closed"]
    assert e.value.describe() == "at step 20 of 40"
    monkeypatch.undo()
    resumed = _run(task, [0.1], chunk_steps=10, checkpoint_dir=tmp_path)  # the checkpoint of step 20 is there
    assert resumed.resumed_from == 20


def test_a_fractional_step_count_is_refused_not_rounded():
    import mechsparse.train as ms_train
    from mechind import train

    for cls in (train.SlotConfig, ms_train.Config):
        with pytest.raises(ValueError, match="num_steps must be a whole number, got 20.5"):
            cls(num_steps=20.5)
        with pytest.raises(ValueError, match=r"hidden must be whole numbers, got \(8.5,\)"):
            cls(hidden=(8.5,))
        assert cls(num_steps=np.int64(20)).num_steps == 20
    with pytest.raises(ValueError, match="num_steps must be a whole number >= 1, got 20.5"):
        _toy_task(20.5)
