"""The mechanistic-independence experiment: end to end, resume, restarts, its settings
(the pipeline's names and defaults) and its group keys (stable, so old results resume)."""

import pytest

from experiments import mechind_overlap
from mechind import train
from mechind.core import report


@pytest.mark.slow  # about 19 s (suite time; the framework end to end stays in test_framework, resume in test_faults)
def test_mechind_overlap_end_to_end_and_resume(tmp_path):
    args = [
        "--preset",
        "quick",
        "--ks",
        "2",
        "--overlaps",
        "0",
        "0.5",
        "--lams",
        "0.5",
        "1",
        "--seeds",
        "2",
        "--num-steps",
        "30",
        "--chunk-steps",
        "15",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    out = mechind_overlap.main(args)
    recs = report.read_jsonl(tmp_path / "results.jsonl")
    assert len(recs) == 2 * 2 * 2  # overlaps x lambdas x seeds
    for r in recs:
        assert {"sis", "c_comp", "recon_r2", "train_s", "device", "seed", "lam", "K", "overlap", "failed"} <= set(r)
        assert r["steps"] == 30 and r["device"]["backend"] == "cpu"
        # the run layout has a name of its own: the data's "layout" (a setting) is kept
        assert r["layout"] == "chain" and r["run_layout"]["runs_per_call"] == 4
    for f in ("table.md", "table.csv", "criteria.md", "sis_vs_overlap.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert "| K | lam | overlap 0.0 | overlap 0.5 |" in out["markdown"]
    # a second invocation finds every group done and trains nothing
    mechind_overlap.main(args)
    assert len(report.read_jsonl(tmp_path / "results.jsonl")) == 8
    # the table is rebuilt from the JSON lines alone
    mechind_overlap.main(args + ["--report-only"])
    for f in ("sis_vs_contrast.png",):
        assert (tmp_path / f).stat().st_size > 0
    assert all({"contrast_share", "c_comp_std", "latent_scale", "slot_scale"} <= set(r) for r in recs)

    # a crash in the middle of an append leaves a cut last line: the next run warns,
    # redoes that group's runs and ends with the identical table
    path = tmp_path / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    with pytest.warns(UserWarning, match="cut short"):
        again = mechind_overlap.main(args)
    tables = lambda md: md[md.index("SIS (mean") :]  # noqa: E731  (the header holds wall times)
    assert tables(again["markdown"]) == tables(out["markdown"])
    assert len(report.unique_records(report.read_jsonl(path))) == 8

    # a changed setting outside the old hand-written key (here the latent normalisation's
    # reference size) is a different group: nothing is reused
    base = mechind_overlap.build_groups([2], [0.0], [0.0], [0], mechind_overlap.train.SlotConfig(num_steps=30))
    other = mechind_overlap.build_groups(
        [2], [0.0], [0.0], [0], mechind_overlap.train.SlotConfig(num_steps=30, norm_ref=4096)
    )
    assert base[0].id != other[0].id


@pytest.mark.slow  # restart keys and selection are unit-tested in tests/mechind/test_train.py
def test_mechind_overlap_restarts_train_all_and_report_the_best(tmp_path):
    args = [
        "--preset",
        "quick",
        "--ks",
        "2",
        "--overlaps",
        "0",
        "--lams",
        "1",
        "--seeds",
        "2",
        "--restarts",
        "2",
        "--num-steps",
        "30",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    out = mechind_overlap.main(args)
    recs = report.read_jsonl(tmp_path / "results.jsonl")
    assert sorted((r["seed"], r["restart"]) for r in recs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    best = mechind_overlap.train.select_restarts(out["records"], ("K", "overlap", "lam", "seed"))
    assert len(best) == 2 and "Best of 2 initialisations" in out["markdown"]
    for chosen in best:
        same = [r for r in recs if r["seed"] == chosen["seed"]]
        assert chosen["objective"] == min(r["objective"] for r in same)


def test_bad_cli_values_fail_before_compiling(tmp_path):
    for bad in (["--ks", "0"], ["--overlaps", "1.2"], ["--lams", "-1"], ["--seeds", "0"]):
        with pytest.raises(SystemExit):
            mechind_overlap.main(["--out", str(tmp_path), "--no-progress"] + bad)
    assert not (tmp_path / "results.jsonl").exists()


def test_settings_override_the_pipeline_config_by_its_own_names():
    """The experiment declares what it sweeps or overrides; everything else is the
    pipeline's default. The paper preset is the pipeline's defaults (Brady et al.)."""
    quick, paper = mechind_overlap.PRESETS["quick"], mechind_overlap.PRESETS["paper"]
    assert quick.slot_config() == train.SlotConfig(num_steps=6_000, num_train=10_000, num_val=2_000)
    assert paper.slot_config() == train.SlotConfig()
    changed = mechind_overlap.Config(
        num_steps=40, layout="shared", dependent=True, decoder="additive", latent_norm="none"
    )
    assert changed.slot_config() == train.SlotConfig(
        num_steps=40,
        num_train=10_000,
        num_val=2_000,
        layout="shared",
        dependent=True,
        decoder="additive",
        latent_norm="none",
    )
    with pytest.raises(ValueError, match="--num-steps must be >= 1"):
        mechind_overlap.Config(num_steps=0)


def test_group_ids_are_those_of_earlier_results():
    """The group keys (whole pipeline config, K, steps_cfg, generator_version, ...) hash to
    the ids results were written under before the dataset interface, so they resume."""
    ids = [g.id for g in mechind_overlap.make_groups(mechind_overlap.PRESETS["quick"])]
    assert ids == ["9431635a1933", "6e0ee444a5c2", "a80d74afb95a", "a834ff8eb93f", "f1a5095cc14b", "786afeda3ce3"]
    group = mechind_overlap.make_groups(mechind_overlap.PRESETS["paper"])[0]
    assert group.id == "9332d911c5be" and group.key["generator_version"] == train.SlotConfig().dataset.version == 1
