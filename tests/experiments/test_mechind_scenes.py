"""The image experiment: the true renderer's criteria table (Type D exactly at zero
occlusion, failing with it), its settings and groups, and a tiny run end to end (slow)."""

import dataclasses

import pytest

from experiments import mechind_scenes
from mechind.core import report

TINY = dict(height=16, width=16, num_train=64, num_val=20, batch_size=8, contrast_batch=4, criteria_scenes=8)


def test_renderer_criteria_type_d_exactly_at_zero_occlusion_and_failing_with_it():
    c = mechind_scenes.Config(**{**TINY, "occlusions": (0.0, 1.0), "criteria_scenes": 16})
    free, apart = (mechind_scenes.renderer_criteria(c, 2, occ) for occ in (1.0, 0.0))
    assert apart["overlap"] == 0.0 and apart["type_d"] == 1.0 and apart["type_h2"] == 1.0
    assert apart["components"] == 2.0  # one component per object
    assert free["overlap"] > 0.0 and free["type_d"] < 1.0 and free["type_h2"] < 1.0
    # Type D => M and S: wherever D holds they do; they may hold without it
    assert free["type_m"] >= free["type_d"] and free["type_s"] >= free["type_d"]


def test_groups_pair_lambda_and_seeds_within_a_group():
    c = mechind_scenes.Config(**TINY, ks=(2,), lams=(0.0, 1e-3), occlusions=(0.0, 0.5), seeds=2)
    groups = mechind_scenes.make_groups(c)
    assert [(g.key["K"], g.key["occlusion"]) for g in groups] == [(2, 0.0), (2, 0.5)]
    assert [r for r in groups[0].runs] == [{"seed": s, "lam": lam} for lam in (0.0, 1e-3) for s in (0, 1)]
    # the whole pipeline config is the group's identity: any changed setting is a new group
    other = mechind_scenes.make_groups(dataclasses.replace(c, lr=1e-4))
    assert groups[0].id != other[0].id


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(occlusions=(1.5,)), "occlusion"),
        (dict(criteria_scenes=0), "criteria-scenes"),
        (dict(contrast_batch=99), "contrast_batch"),
        (dict(seeds=0), "seeds"),
        (dict(height=8, width=8, occlusions=(0.0,)), "cannot be placed"),
    ],
)
def test_bad_settings_fail_before_anything_compiles(bad, match):
    with pytest.raises(ValueError, match=match):
        mechind_scenes.Config(**{**TINY, **bad})


def test_presets_are_valid_and_paper_is_the_published_protocol():
    paper = mechind_scenes.PRESETS["paper"]
    assert paper.height == paper.width == 64 and paper.ks == (2, 3) and paper.num_steps == 115_000
    assert mechind_scenes.PRESETS["quick"].height <= 32


@pytest.mark.slow
def test_end_to_end(tmp_path):
    args = ["--occlusions", "0", "1", "--seeds", "1", "--num-steps", "6", "--chunk-steps", "3"]
    args += ["--height", "16", "--width", "16", "--num-train", "64", "--num-val", "20", "--batch-size", "8"]
    args += ["--contrast-batch", "4", "--criteria-scenes", "4", "--no-progress", "--out", str(tmp_path)]
    out = mechind_scenes.main(args)
    recs = report.read_jsonl(tmp_path / "results.jsonl")
    assert len(recs) == 2 * 2 and all("examples" in r and "sis_scene" in r for r in recs)
    assert all(r["scenes_placed"] == 1.0 for r in recs)
    for name in ("table.md", "table.csv", "criteria.md", "sis_vs_occlusion.png", "scenes.png"):
        assert (tmp_path / name).is_file()
    assert "type_d" in out["markdown"]
