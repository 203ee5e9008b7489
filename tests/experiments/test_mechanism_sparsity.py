import dataclasses

import numpy as np
import pytest

from experiments import __main__ as main_job
from experiments import mechanism_sparsity as ms
from mechind.core import report, rng

TINY = ["--latent-dim", "3", "--obs-dim", "6", "--num-train", "256", "--num-val", "64", "--hidden", "8",
        "--transition-hidden", "8", "--batch-size", "16", "--steps", "20", "--chunk-steps", "10", "--seeds", "2",
        "--no-progress"]


def test_end_to_end_tables_pairing_and_reuse(tmp_path):
    args = TINY + ["--out", str(tmp_path)]
    out = ms.main(args)
    recs = report.read_jsonl(tmp_path / "results.jsonl")
    # 2 kinds x 2 seeds x (none, penalty 1, bound 1x true)
    assert len(recs) == 12 and {"mcc", "shd", "linear_r2", "edges_learned", "regime", "kind"} <= set(recs[0])
    assert {r["regime"] for r in recs} == {"none", "penalty 1", "bound 1x true"}
    bounds = {r["kind"]: r["bound"] for r in recs if r["regime"] == "bound 1x true"}
    assert bounds == {"action": 6.0, "time": 6.0}  # the true graphs' edge counts (cyclic, lower)
    for f in ("table.md", "table.csv", "mcc_shd.png"):
        assert (tmp_path / f).stat().st_size > 0
    md = out["markdown"]
    assert "paired on the seed" in md and "| regularisation | action | time |" in md
    ms.main(args)  # everything done: nothing trains, no record added
    assert len(report.read_jsonl(tmp_path / "results.jsonl")) == 12
    cfg = out["config"]
    # runs of one seed share its key (data, init, minibatches): every comparison is paired
    for g in ms.build_groups(cfg):
        for run, key in zip(g.runs, g.keys):
            np.testing.assert_array_equal(np.asarray(key), np.asarray(rng.key(run["seed"])))
    # every field of the config is in the group keys: a changed width is a new group
    for change in ({"hidden": (12,)}, {"anneal_frac": 0.4}, {"density": 0.5}):
        other = dataclasses.replace(cfg, **change)
        assert {g.id for g in ms.build_groups(cfg)}.isdisjoint(g.id for g in ms.build_groups(other))


@pytest.mark.parametrize("bad", [["--coeffs", "-1"], ["--bound-ratios", "-0.5"], ["--action-graph", "lower"],
                                 ["--kinds", "space"], ["--seeds", "0"], ["--latent-dim", "30"]])
def test_bad_settings_fail_before_compiling(tmp_path, bad):
    with pytest.raises(SystemExit) as e:
        ms.main(TINY + ["--out", str(tmp_path)] + bad)
    assert e.value.code == 2
    assert not (tmp_path / "results.jsonl").exists()


def test_registered_in_the_main_job():
    assert ms.EXPERIMENT in main_job.PARTS
