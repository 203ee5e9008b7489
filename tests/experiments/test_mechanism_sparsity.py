import dataclasses

import numpy as np
import pytest

from experiments import __main__ as main_job
from experiments import mechanism_sparsity as ms
from mechind.core import report, rng
from mechsparse import data as ms_data
from mechsparse import train

TINY = [
    "--latent-dim",
    "3",
    "--obs-dim",
    "6",
    "--num-train",
    "256",
    "--num-val",
    "64",
    "--hidden",
    "8",
    "--transition-hidden",
    "8",
    "--batch-size",
    "16",
    "--num-steps",
    "20",
    "--chunk-steps",
    "10",
    "--seeds",
    "2",
    "--no-progress",
]


@pytest.mark.slow  # about 15 s (suite time)
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


@pytest.mark.parametrize(
    "bad",
    [
        ["--coeffs", "-1"],
        ["--bound-ratios", "-0.5"],
        ["--action-graph", "lower"],
        ["--kinds", "space"],
        ["--seeds", "0"],
        ["--latent-dim", "30"],
    ],
)
def test_bad_settings_fail_before_compiling(tmp_path, bad):
    with pytest.raises(SystemExit) as e:
        ms.main(TINY + ["--out", str(tmp_path)] + bad)
    assert e.value.code == 2
    assert not (tmp_path / "results.jsonl").exists()


def test_defaults_live_in_the_pipeline():
    """The experiment's settings are the pipeline's, by name and default; its presets
    override some, and the quick preset trains exactly the configuration its README
    numbers come from."""
    assert ms.Config().train_config("action") == train.Config(data=ms_data.Spec("action", "cyclic"))
    assert ms.Config().train_config("time") == train.Config(data=ms_data.Spec("time", "lower"))
    quick = ms.PRESETS["quick"].train_config("action")
    assert quick == train.Config(
        data=ms_data.Spec("action", "cyclic"),
        num_steps=20_000,
        hidden=(128, 128),
        transition_hidden=(32, 32),
        batch_size=32,
        lr=3e-3,
        mask_lr_mult=2.0,
    )
    fields = {f.name for f in dataclasses.fields(ms.Config)}
    pipeline = {f.name for f in dataclasses.fields(train.Config)} | {f.name for f in dataclasses.fields(ms_data.Spec)}
    own = {"kinds", "action_graph", "time_graph", "coeffs", "bound_ratios", "seeds", "chunk_steps"}
    assert fields - own <= pipeline  # every other setting is the pipeline's, under its name


def test_registered_in_the_main_job():
    assert ms.EXPERIMENT in main_job.PARTS
