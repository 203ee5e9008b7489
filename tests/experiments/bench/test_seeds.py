"""experiments.bench.seeds: a smoke run with the tiniest options; the JSON's keys and ratios."""

import json

import pytest

from experiments.bench import seeds


@pytest.mark.slow  # ~1 min on 2 CPU cores: two slot-training programs compiled, twice
def test_smoke_run_json_and_ratios(tmp_path):
    out = seeds.main(["--out", str(tmp_path), "--K", "2", "--steps", "2", "--S", "1", "2", "--repeats", "1"])
    d = json.loads((tmp_path / "seeds.json").read_text())
    assert d["benchmark"] == "seeds" and "machine" in d
    assert {k: d[k] for k in ("K", "steps", "lam")} == {"K": 2, "steps": 2, "lam": 1.0}
    assert d["rows"] == out["rows"] and [r["S"] for r in d["rows"]] == [1, 2]
    t1 = d["rows"][0]["vmapped_s"]
    for r in d["rows"]:
        assert set(r) == {
            "S",
            "vmapped_s",
            "runner_s",
            "sequential_s",
            "ratio_vmapped_over_sequential",
            "ratio_runner_over_sequential",
            "ratio_vmapped_over_one_seed",
        }
        assert r["vmapped_s"] > 0 and r["runner_s"] > 0
        assert r["sequential_s"] == pytest.approx(r["S"] * t1)  # S times the one-seed run
        assert r["ratio_vmapped_over_sequential"] == pytest.approx(r["vmapped_s"] / r["sequential_s"])
        assert r["ratio_runner_over_sequential"] == pytest.approx(r["runner_s"] / r["sequential_s"])
        assert r["ratio_vmapped_over_one_seed"] == pytest.approx(r["vmapped_s"] / t1)
    assert d["rows"][0]["ratio_vmapped_over_sequential"] == 1.0
