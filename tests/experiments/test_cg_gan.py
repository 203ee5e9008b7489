"""The CG-GAN experiment: its settings, one paired group, bad input refused in one line
before anything compiles, and a tiny run end to end (slow)."""

import dataclasses
import json

import pytest

from experiments import cg_gan

TINY = dict(num_val=64, batch_size=8, inv_steps=3, feat_steps=3, height=8, width=8, size_range=(0.15, 0.3))


def test_one_group_pairs_methods_and_domains_on_the_seed():
    c = cg_gan.Config(**TINY, methods=("cg_gan", "cgan"), domains=(2, 4), seeds=2)
    (g,) = cg_gan.make_groups(c)
    assert len(g.runs) == 8 and g.runs[0] == {"method": "cg_gan", "domains": 2, "seed": 0}
    assert g.hparams.num_domains.tolist() == [2, 2, 4, 4, 2, 2, 4, 4]
    assert g.hparams.concat.tolist() == [0] * 4 + [1] * 4
    # the runs of one seed share its key: the same domain laws and initial weights
    assert (g.keys[0] == g.keys[4]).all() and not (g.keys[0] == g.keys[1]).all()
    other = cg_gan.make_groups(dataclasses.replace(c, lr=1e-4))
    assert g.id != other[0].id


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--methods", "stylegan"], "unknown method"),
        (["--domains", "9"], "num_domains"),
        (["--methods", "cg_gan", "cg_gan"], "twice"),
        (["--seeds", "0"], "seeds"),
        (["--r1", "-1"], "r1"),
    ],
)
def test_bad_input_is_one_line_before_any_work(argv, match, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cg_gan.main([*argv, "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert match in err
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_presets_are_valid():
    paper = cg_gan.PRESETS["paper"]
    assert paper.num_objects == 2 and max(paper.domains) <= paper.max_domains
    assert cg_gan.PRESETS["quick"].height == 16


@pytest.mark.slow
def test_end_to_end(tmp_path):
    args = ["--methods", "cg_gan", "cgan", "--domains", "2", "--seeds", "1", "--num-steps", "4"]
    args += ["--chunk-steps", "2", "--height", "8", "--width", "8", "--size-range", "0.15", "0.3"]
    args += ["--num-val", "64", "--batch-size", "8", "--inv-steps", "3", "--feat-steps", "3"]
    args += ["--no-progress", "--out", str(tmp_path)]
    out = cg_gan.main(args)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} == {"cg_gan", "cgan"} and not any(r["failed"] for r in records)
    cg = next(r for r in records if r["method"] == "cg_gan")
    assert 0 <= cg["mcc"] <= 1 and 0 <= cg["mask_precision"] <= 1 and cg["fd"] >= 0
    assert "mask_precision" not in next(r for r in records if r["method"] == "cgan")
    for name in ("table.md", "table.csv", "metrics_vs_domains.png", "samples.png"):
        assert (tmp_path / name).exists(), name
    assert "MCC" in out["markdown"]
