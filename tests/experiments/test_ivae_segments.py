import pytest

from cg import ivae_data
from experiments import ivae_segments
from mechind.core import metrics, report


@pytest.mark.slow  # 18 s; whole-config keys and resume are also tested on mechind_overlap (test_mechind_overlap.py)
def test_end_to_end_resume_and_a_changed_setting_is_not_reused(tmp_path):
    args = [
        "--segments",
        "2",
        "3",
        "--methods",
        "ivae",
        "--seeds",
        "2",
        "--num-steps",
        "40",
        "--chunk-steps",
        "20",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    out = ivae_segments.main(args)
    recs = report.read_jsonl(tmp_path / "results.jsonl")
    assert len(recs) == 2 * 2 and {"mcc", "active_latents", "latent_std", "seed", "segments"} <= set(recs[0])
    for f in ("table.md", "table.csv", "mcc_vs_segments.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert "| method | 2 segments | 3 segments |" in out["markdown"]
    # the floor row is the observations' own MCC, recomputed here independently
    d = ivae_data.generate(1, 3, 1000, 5, act="xtanh")
    floor = [r for r in ivae_segments.floor_records(out["config"]) if r["segments"] == 3 and r["seed"] == 1]
    assert floor[0]["mcc"] == pytest.approx(metrics.mcc(d.s, d.x), abs=1e-6)
    ivae_segments.main(args)  # everything done: nothing trains, no record added
    assert len(report.read_jsonl(tmp_path / "results.jsonl")) == 4
    # a changed model setting (steps) is a new group: trained, not read from the old records
    ivae_segments.main([a if a != "40" else "20" for a in args])
    recs = report.read_jsonl(tmp_path / "results.jsonl")
    assert len(recs) == 8 and sorted({r["steps"] for r in recs}) == [20, 40]


def test_bad_cli_values_fail_before_compiling(tmp_path):
    for bad in (["--segments", "0"], ["--seeds", "0"], ["--methods", "pca"]):
        with pytest.raises(SystemExit):
            ivae_segments.main(["--out", str(tmp_path), "--no-progress"] + bad)
    assert not (tmp_path / "results.jsonl").exists()


@pytest.mark.slow  # 20 s; support_f1 itself is unit-tested in tests/mechind/test_metrics.py
def test_sparse_variant_reports_support_recovery(tmp_path):
    out = ivae_segments.main(
        [
            "--segments",
            "3",
            "--methods",
            "ivae",
            "cg_vae",
            "--seeds",
            "2",
            "--num-steps",
            "20",
            "--density",
            "0.5",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    recs = out["records"]
    assert all(0 <= r["support_f1"] <= 1 and 0 <= r["structural_sparsity"] <= 5 for r in recs)
    assert "Support recovery" in out["markdown"] and "paired on the seed" in out["markdown"]
