"""experiments.bench.derivatives: per-sample derivative timings, JAX vs torch.func (needs torch):
the rows' keys, and that throughputs and speed-ups are the quotients of the timings."""

import json

import pytest

pytest.importorskip("torch")

from experiments.bench import derivatives  # noqa: E402

KEYS = {
    "what",
    "d_z",
    "hidden",
    "d_x",
    "batch",
    "jax_s",
    "torch_s",
    "jax_samples_per_s",
    "torch_samples_per_s",
    "speedup",
}


def _check(rows, sizes, batch):
    assert [(r["what"], r["d_z"], r["hidden"], r["d_x"]) for r in rows] == [
        (what, *s) for s in sizes for what in ("jacobian", "hessian")
    ]
    for r in rows:
        assert set(r) == KEYS and r["batch"] == batch and r["jax_s"] > 0 and r["torch_s"] > 0
        assert r["jax_samples_per_s"] == pytest.approx(batch / r["jax_s"])
        assert r["torch_samples_per_s"] == pytest.approx(batch / r["torch_s"])
        assert r["speedup"] == pytest.approx(r["torch_s"] / r["jax_s"])


@pytest.mark.slow  # two small jitted derivative programs and torch.func's
def test_run_on_a_tiny_network():
    _check(derivatives.run(batch=2, repeats=1, sizes=((2, 4, 3),)), [(2, 4, 3)], 2)


@pytest.mark.slow  # the three benchmark sizes, hessians of a 15 -> 256 -> 256 -> 200 MLP included
def test_smoke_run_json(tmp_path):
    out = derivatives.main(["--out", str(tmp_path), "--batch", "2", "--repeats", "1"])
    d = json.loads((tmp_path / "derivatives.json").read_text())
    assert d["benchmark"] == "derivatives" and "machine" in d and d["rows"] == out["rows"]
    _check(d["rows"], derivatives.SIZES, 2)
