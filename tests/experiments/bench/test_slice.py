"""experiments.bench.slice: a smoke run with the tiniest options; the JSON's keys and the
extrapolation from the measured times."""

import json

import pytest

from experiments.bench import slice as slice_bench


@pytest.mark.slow  # compiles and evaluates a paper-sized (72k/8k samples, 15 runs) slot group
def test_smoke_run_json_and_extrapolation(tmp_path):
    out = slice_bench.main(["--out", str(tmp_path), "--steps", "2", "--Ks", "2"])
    d = json.loads((tmp_path / "slice.json").read_text())
    assert d["benchmark"] == "slice" and "machine" in d
    assert d["rows"] == out["rows"] and "extrapolated" in d["note"]
    (r,) = d["rows"]
    assert set(r) == {
        "K",
        "runs",
        "steps",
        "compile_s",
        "train_s",
        "eval_s",
        "group_step_ms",
        "paper_slice_train_s",
        "paper_slice_total_s",
    }
    assert (r["K"], r["runs"], r["steps"]) == (2, 15, 2)
    per_step = r["train_s"] / 2
    assert r["group_step_ms"] == pytest.approx(1e3 * per_step)
    assert r["paper_slice_train_s"] == pytest.approx(per_step * slice_bench.PAPER_STEPS)
    assert r["paper_slice_total_s"] == pytest.approx(r["paper_slice_train_s"] + r["compile_s"] + r["eval_s"])
    assert d["paper_grid_extrapolated_s"] == pytest.approx(slice_bench.OVERLAPS * r["paper_slice_total_s"])
