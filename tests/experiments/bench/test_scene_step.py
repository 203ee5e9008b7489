"""experiments.bench.scene_step: the PyTorch port of the scene decoder has our Jacobian
(needs torch), the interleaved timing on a fake clock, and an end-to-end run at a tiny size:
its files, rows and that ratios are the quotients of what it measured."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench import scene_step
from mechind import scene_models


def _params(k, hidden, seed=0):
    kp, kb, k0 = jax.random.split(jax.random.PRNGKey(seed), 3)
    p = scene_models.init_decoder(kp, k, 4, hidden)
    p["background"] = jax.random.uniform(kb, (3,))
    p["b_0"] = 0.3 * jax.random.normal(k0, p["b_0"].shape)  # nonzero biases: both leaky branches
    return p


@pytest.mark.parametrize("composition", scene_models.COMPOSITIONS)
def test_torch_port_jacobian_equals_ours(composition):
    torch = pytest.importorskip("torch")
    from experiments.bench import torch_port

    k, h, w = 3, 5, 7  # non-square: rows and columns of the coordinates not swapped
    p = _params(k, (6, 5))
    z = np.array(jax.random.normal(jax.random.PRNGKey(1), (4, 4 * k)))
    ours = np.asarray(jax.vmap(lambda v: scene_models.jacobian(p, v, k, h, w, composition))(z))
    theirs = torch_port.scene_jacobian_fn(p, k, h, w, composition)(torch.from_numpy(z)).numpy()
    assert theirs.shape == ours.shape == (4, h * w * 3, 4 * k)
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)
    img = torch_port.scene_decoder(p, k, h, w, composition)(torch.from_numpy(z[0])).numpy()
    np.testing.assert_allclose(img, scene_models.decode(p, jnp.asarray(z[0]), k, h, w, composition), atol=1e-6)


def test_interleaved_rotates_the_order_and_times_each_call(monkeypatch):
    calls, clock = [], iter(float(t) for t in range(100))
    monkeypatch.setattr(scene_step, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    fns = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    times = scene_step.interleaved(fns, repeats=4, warmup=1)
    assert calls == list("abcabcbcacababc")  # warm-up round, then rotated rounds
    assert {n: len(t) for n, t in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(t == 1.0 for ts in times.values() for t in ts)  # two clock reads per timed call
    assert scene_step.paired_ratio([2.0, 9.0, 3.0], [1.0, 3.0, 1.0]) == 3.0  # median of 2, 3, 3


@pytest.mark.slow  # compiles the three training-step scans (10-25 s on a shared 2-core machine)
def test_end_to_end_at_a_tiny_size(tmp_path):
    argv = ["--sizes", "8", "--batch", "3", "--scan-steps", "1", "--repeats", "1", "--contrast-batch", "2"]
    out = scene_step.main(argv + ["--out", str(tmp_path)])
    d = json.loads((tmp_path / "scene_step.json").read_text())
    assert d["benchmark"] == "scene_step" and "machine" in d
    assert d["steps"] == out["steps"] and d["jacobian"] == out["jacobian"]
    assert tuple(r["variant"] for r in d["steps"]) == scene_step.VARIANTS
    assert [(r["variant"], r["contrast_scenes"]) for r in d["steps"]] == [
        ("plain", 0),
        ("contrast", 3),
        ("contrast_subset", 2),
    ]
    for r in d["steps"]:
        assert (r["size"], r["K"], r["batch"], r["scan_steps"], r["repeats"]) == (8, 2, 3, 1, 1)
        assert 0 < r["step_ms_min"] <= r["step_ms"] <= r["step_ms_max"]
    plain = d["steps"][0]["step_ms"]
    for r in d["steps"]:  # one round: the paired ratio is the quotient of the two times
        assert r["ratio_to_plain"] == pytest.approx(r["step_ms"] / plain)
    methods = [r["method"] for r in d["jacobian"]]
    assert methods[:2] == ["ours", "jacfwd"] and methods[2:] in ([], ["torch.func"])
    ours = d["jacobian"][0]["ms_per_batch"]
    for r in d["jacobian"]:
        assert r["ratio_to_ours"] == pytest.approx(r["ms_per_batch"] / ours) and r["max_abs_err"] <= 1e-5
    assert (tmp_path / "scene_step.md").read_text() == scene_step.table(d)
