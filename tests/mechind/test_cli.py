"""The ``mechind`` command (issue 24): help at every level, the experiments discovered and
forwarded, and ``mechind fit slots|mechsparse|cg`` end to end on the files ``mechind
example-data`` writes, bad input included (one line, exit code 2, nothing trained)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import __main__ as main_job
from mechind import cli

ROOT = Path(__file__).resolve().parents[2]


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_installed_command_shows_its_help():
    script = Path(sys.executable).with_name("mechind")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "mechind.cli"]
    p = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    for command in cli.COMMANDS:
        assert command in p.stdout


@pytest.mark.parametrize(
    "argv, shows",
    [
        ([], "command"),
        (["run", "--help"], "experiments:"),
        (["fit", "--help"], "pipelines:"),
        (["fit", "slots", "--help"], "usage: mechind fit slots"),
        (["fit", "mechsparse", "--help"], "usage: mechind fit mechsparse"),
        (["fit", "cg", "--help"], "usage: mechind fit cg"),
        (["criteria", "--help"], "usage: mechind criteria"),
        (["example-data", "--help"], "usage: mechind example-data"),
        (["run", "mechind_overlap", "--help"], "usage: mechind run mechind_overlap"),
        (["report", "--help"], "usage: mechind report"),
    ],
)
def test_help_at_every_level(argv, shows, capsys):
    code, out, err = _run(argv, capsys)
    assert code == (2 if not argv else 0) and shows in out + err


def test_the_experiments_are_discovered_not_listed_twice(capsys):
    found = cli.experiments()
    assert [p.name for p in main_job.PARTS] == list(found)[: len(main_job.PARTS)]
    assert "ivae_segments" in found  # a framework experiment outside the main job
    code, out, _ = _run(["run", "--help"], capsys)
    assert all(name in out for name in found)


def test_run_and_report_forward_their_arguments(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(cli, "experiments", lambda: {"toy": ("A toy", lambda argv: seen.append(("toy", argv)))})
    monkeypatch.setattr(main_job, "main", lambda argv: seen.append(("report", argv)))
    assert _run(["run", "toy", "--preset", "paper", "--seeds", "2"], capsys)[0] == 0
    assert _run(["report", "--preset", "quick", "--only", "criteria_hierarchy"], capsys)[0] == 0
    assert seen == [
        ("toy", ["--preset", "paper", "--seeds", "2"]),
        ("report", ["--preset", "quick", "--only", "criteria_hierarchy"]),
    ]
    code, _, err = _run(["run", "nope"], capsys)
    assert code == 2 and "unknown experiment 'nope'; one of: toy" in err


@pytest.mark.parametrize(
    "argv, match", [(["frobnicate"], "unknown command"), (["fit", "pca", "x.npz"], "unknown pipeline")]
)
def test_unknown_commands_are_one_line(argv, match, capsys):
    code, _, err = _run(argv, capsys)
    assert code == 2 and match in err


def _example(tmp_path, capsys, pipeline, *extra) -> Path:
    path = tmp_path / f"{pipeline}.npz"
    code, out, err = _run(["example-data", pipeline, path, "--samples", "256", *extra], capsys)
    assert code == 0, err
    assert f"mechind fit {pipeline} {path}" in out
    return path


def _summary(out: str) -> dict:
    return json.loads(out[: out.rindex("}") + 1])


def test_fit_slots_end_to_end_then_criteria_on_the_fit_and_on_the_generator(tmp_path, capsys):
    data = _example(tmp_path, capsys, "slots")
    argv = ["fit", "slots", data, "--num-slots", "2", "--slot-dim", "2", "--num-steps", "50", "--no-progress"]
    code, out, err = _run([*argv, "--set", "hidden=[8]", "--points", "16", "--only", "type_d"], capsys)
    assert code == 0, err
    s = _summary(out)
    assert s["pipeline"] == "slots" and "mcc" in s and list(s["decoder"]["criteria"]) == ["type_d"]
    fit = tmp_path / "slots_slots_fit.npz"
    with np.load(fit) as f:
        assert f["z_hat"].shape == (256, 4) and "config" in f.files
    code, out, err = _run(["criteria", fit, "--points", "8", "--only", "type_d"], capsys)
    assert code == 0, err
    assert _summary(out)["what"] == "learned decoder" and list(_summary(out)["criteria"]) == ["type_d"]
    code, out, err = _run(["criteria", data, "--points", "8", "--only", "type_d"], capsys)
    assert code == 0, err
    gen = _summary(out)
    assert gen["what"] == "generator" and gen["criteria"] == {"type_d": 1.0}
    assert gen["g_d_components"] == [[0, 1], [2, 3]]


def test_fit_mechsparse_end_to_end(tmp_path, capsys):
    data = _example(tmp_path, capsys, "mechsparse")
    code, out, err = _run(
        [
            "fit",
            "mechsparse",
            data,
            "--num-steps",
            "20",
            "--no-progress",
            "--set",
            "hidden=[8]",
            "transition_hidden=[4]",
        ],
        capsys,
    )
    assert code == 0, err
    s = _summary(out)
    assert s["kind"] == "action" and s["latent_dim"] == 10 and np.shape(s["graph"]) == (10, 10) and "mcc" in s
    with np.load(tmp_path / "mechsparse_mechsparse_fit.npz") as f:
        assert f["z_hat"].shape == (256, 10) and f["graph"].shape == (10, 10)


def test_fit_cg_end_to_end(tmp_path, capsys):
    data = _example(tmp_path, capsys, "cg")
    code, out, err = _run(["fit", "cg", data, "--num-steps", "20", "--no-progress", "--set", "hidden=[8]"], capsys)
    assert code == 0, err
    s = _summary(out)
    assert s["method"] == "ivae" and s["domains"] == 4 and 0 <= s["mcc"] <= 1 and "mcc_observations" in s
    with np.load(tmp_path / "cg_ivae_fit.npz") as f:
        assert f["z_hat"].shape == (256, 3) and f["loss_history"].shape == (1,)


def _save(tmp_path, **arrays) -> Path:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


X = np.random.default_rng(0).normal(size=(256, 6))
A = np.random.default_rng(1).normal(size=(256, 2))
SLOTS = ["--num-slots", "2", "--slot-dim", "2"]

BAD = [
    ("slots", {"y": X}, SLOTS, "lacks array(s) ['x']"),
    ("slots", {"x": np.where(X > 2, np.nan, X)}, SLOTS, "NaN/inf"),
    ("slots", {"x": X[:, 0]}, SLOTS, "2-D array"),
    ("slots", {"x": X}, ["--num-slots", "0", "--slot-dim", "2"], "num_slots must be a positive integer"),
    ("slots", {"x": X}, [*SLOTS, "--set", "overlap=0.5"], "unknown setting(s) ['overlap']"),
    ("slots", {"x": X}, [*SLOTS, "--set", "lr"], "--set takes FIELD=VALUE"),
    ("slots", {"x": X}, [*SLOTS, "--points", "0"], "--points must be >= 1"),
    ("slots", {"x": X}, [*SLOTS, "--set", "lr=fast"], "wrong type"),
    ("mechsparse", {"x": X, "a": A}, ["--latent-dim", "3", "--set", "tau=hot"], "wrong type"),
    ("slots", {"x": X}, [*SLOTS, "--only", "type_x"], "unknown criterion 'type_x'"),
    ("mechsparse", {"x": X}, ["--latent-dim", "3"], "holds no actions a: for a time series pass --time"),
    ("mechsparse", {"x": X, "a": A}, ["--latent-dim", "3", "--time"], "pick one"),
    ("mechsparse", {"x": X, "a": A}, [], "give --latent-dim"),
    ("mechsparse", {"x": X, "a": A[:100]}, ["--latent-dim", "3"], "different lengths"),
    ("mechsparse", {"x": X}, ["--latent-dim", "3", "--time", "--coeff", "-1"], "coefficient must be >= 0"),
    ("mechsparse", {"x": X, "episode": np.arange(256)}, ["--latent-dim", "3", "--time"], "no two consecutive rows"),
    ("cg", {"x": X, "u": np.arange(256) % 3 - 1}, [], "negative label"),
    ("cg", {"x": X}, [], "lacks array(s) ['u']"),
]


@pytest.mark.parametrize("pipeline, arrays, extra, match", BAD)
def test_bad_input_to_each_fit_is_one_line_before_any_training(
    pipeline, arrays, extra, match, tmp_path, capsys, monkeypatch
):
    from cg import fitting as cg_fitting
    from mechind import fitting
    from mechsparse import fitting as ms_fitting

    for mod in (fitting, ms_fitting, cg_fitting):
        monkeypatch.setattr(mod.runner, "run_group", lambda *a, **k: pytest.fail("trained before failing"))
    monkeypatch.delenv("MECHIND_DEBUG", raising=False)
    path = _save(tmp_path, **arrays)
    code, out, err = _run(["fit", pipeline, path, *extra, "--no-progress"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err and match in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]  # nothing written


def test_bad_paths_and_files(tmp_path, capsys):
    data = _save(tmp_path, x=X)
    for argv, match in [
        (["fit", "slots", tmp_path / "none.npz", *SLOTS], "no such file"),
        (["fit", "slots", tmp_path, *SLOTS], "is a folder"),
        (["fit", "slots", data, *SLOTS, "--out", data], "is the input file"),
        (["fit", "mechsparse", data, "--time", "--out", tmp_path / "no" / "f.npz"], "does not exist"),
        (["criteria", data], "neither a `mechind fit slots` output"),
        (["example-data", "slots", data], "exists; pick another name"),
        (["example-data", "cg", tmp_path / "new.npz", "--samples", "8"], "--samples must be >= 64"),
    ]:
        code, _, err = _run(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and match in err, (argv, err)
    (tmp_path / "text.npz").write_text("not numpy")
    code, _, err = _run(["fit", "slots", tmp_path / "text.npz", *SLOTS], capsys)
    assert code == 2 and ("cannot be read" in err or "not an .npz" in err), err
