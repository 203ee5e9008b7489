"""experiments.bench.step: a smoke run with the tiniest options (needs torch): the JSON's keys,
and that per-step times and speed-ups are the quotients of what it measured."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from experiments.bench import step  # noqa: E402


@pytest.mark.slow  # compiles slot-training programs for both lambdas and a whole-run group
def test_smoke_run_json_and_ratios(tmp_path):
    out = step.main(
        [
            "--out",
            str(tmp_path),
            "--K",
            "2",
            "--scan-steps",
            "2",
            "--torch-steps",
            "2",
            "--repeats",
            "1",
            "--run-steps",
            "2",
            "--seeds",
            "2",
        ]
    )
    d = json.loads((tmp_path / "step.json").read_text())
    assert d["benchmark"] == "step" and "machine" in d
    assert d["steps"] == out["steps"] and [r["lam"] for r in d["steps"]] == [0.0, 1.0]
    for r in d["steps"]:
        assert set(r) == {"K", "lam", "jax_step_ms", "torch_step_ms", "scan_steps", "torch_steps", "repeats", "speedup"}
        assert (r["K"], r["scan_steps"], r["torch_steps"], r["repeats"]) == (2, 2, 2, 1)
        assert r["jax_step_ms"] > 0 and r["torch_step_ms"] > 0
        assert r["speedup"] == pytest.approx(r["torch_step_ms"] / r["jax_step_ms"])
    w = d["whole_run"]
    assert (w["K"], w["steps"], w["seeds"], w["lam"]) == (2, 2, 2, 1e-2)
    assert len(w["jax_sis"]) == len(w["torch_sis"]) == 2
    assert w["jax_sis_mean"] == pytest.approx(np.mean(w["jax_sis"]))
    assert w["torch_sis_std"] == pytest.approx(np.std(w["torch_sis"]))
    assert w["torch_all_seeds_sequential_s"] >= w["torch_one_run_train_s"] > 0
    spread = max(w["jax_sis_std"], w["torch_sis_std"])
    assert w["within_seed_spread"] == (abs(w["jax_sis_mean"] - w["torch_sis_mean"]) <= 2 * spread)
