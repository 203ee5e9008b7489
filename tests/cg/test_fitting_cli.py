"""``python -m cg.fitting`` against careless and hostile input: one line, exit code 2, no
traceback, no file changed, before any training (issue 20's cases)."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cg import fitting

ROOT = Path(__file__).resolve().parents[2]


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def data(tmp_path):
    r = np.random.default_rng(0)
    path = tmp_path / "victim.npz"
    np.savez(path, x=r.normal(size=(300, 2)), u=np.repeat([0, 1], 150), z=r.normal(size=(300, 2)))
    return path


def _save(tmp_path, **arrays) -> Path:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


def _fails(argv, capsys, monkeypatch, match: str):
    monkeypatch.setattr(fitting.runner, "run_group", lambda *a, **k: pytest.fail("trained before failing"))
    monkeypatch.delenv("MECHIND_DEBUG", raising=False)
    assert fitting.main([str(a) for a in argv] + ["--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and match in err, err


def test_the_input_file_is_never_overwritten(data, capsys, monkeypatch):
    before = _digest(data)
    _fails([data, "--steps", "5", "--out", data], capsys, monkeypatch, "is the input file")
    _fails([data, "--out", data.with_suffix("")], capsys, monkeypatch, "is the input file")  # np.savez adds .npz
    assert _digest(data) == before
    other = data.with_name("other.npz")
    np.savez(other, x=np.ones(3))
    _fails([data, "--out", other], capsys, monkeypatch, "not an earlier fit's output")


X2 = np.random.default_rng(1).normal(size=(300, 2))
HALF = np.repeat([0, 1], 150)


BAD = [
    (dict(x=X2, u=np.r_[np.zeros(150, np.int64), np.full(150, 2**32)]), [], "label 4294967296"),
    (dict(x=X2, u=np.full(300, 2**40)), [], "label 1099511627776"),
    (dict(x=X2, u=np.full(300, 2**63, np.uint64)), [], "label 9223372036854775808"),
    (dict(x=np.c_[X2[:, 0], np.full(300, 1e20)], u=HALF), [], "magnitude above"),
    (dict(x=np.c_[X2[:, 0], np.full(300, 1e39)], u=HALF), [], "magnitude above"),
    (dict(x=X2, u=HALF, z=np.ones((299, 2))), [], "z must be the true latents"),
    (dict(x=X2, u=HALF, z=np.ones(300)), [], "z must be the true latents"),
    (dict(x=X2[:, 0], u=HALF), [], "2-D"),
    (dict(x=np.zeros((0, 2)), u=np.zeros(0, int)), [], "x is empty"),
    (dict(x=X2, u=HALF), ["--set", "hidden=abc"], "hidden must be a list of integers"),
    (dict(x=X2, u=HALF), ["--set", "num_steps=abc"], "num_steps must be an integer"),
    (dict(x=X2, u=HALF), ["--set", "num_steps=20.5"], "num_steps must be an integer"),
    (dict(x=X2, u=HALF), ["--set", "hidden"], "FIELD=VALUE"),
    (dict(x=X2, u=HALF), ["--steps", "0"], "num_steps must be a positive integer"),
    (dict(x=X2, u=HALF), ["--latent-dim", "0"], "latent_dim must be a positive integer"),
    (dict(x=X2, u=HALF), ["--set", "prior=standard"], "set by the method"),
    (dict(x=X2, u=HALF), ["--set", "hidden=[0]"], "positive integer widths"),
]


@pytest.mark.parametrize("arrays, extra, match", BAD)
def test_bad_arrays_and_settings(tmp_path, capsys, monkeypatch, arrays, extra, match):
    _fails([_save(tmp_path, **arrays)] + extra, capsys, monkeypatch, match)


@pytest.mark.slow  # every case again through a real interpreter (~3 s each for the imports)
@pytest.mark.parametrize("arrays, extra, match", BAD)
def test_bad_arrays_and_settings_through_the_command_line(tmp_path, arrays, extra, match):
    path = _save(tmp_path, **arrays)
    before = _digest(path)
    p = subprocess.run(
        [sys.executable, "-m", "cg.fitting", str(path), "--no-progress"] + extra,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MECHIND_DEBUG": ""},
    )
    err = p.stderr.strip()
    assert p.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1 and match in err, err
    assert _digest(path) == before and sorted(x.name for x in tmp_path.iterdir()) == ["d.npz"]


def test_bad_paths(tmp_path, data, capsys, monkeypatch):
    _fails([tmp_path / "none.npz"], capsys, monkeypatch, "no such file")
    _fails([tmp_path], capsys, monkeypatch, "is a folder")
    text = tmp_path / "notes.npz"
    text.write_text("not arrays\n")
    _fails([text], capsys, monkeypatch, "not an .npz file numpy can read")
    np.save(tmp_path / "one.npy", np.ones(3))
    _fails([tmp_path / "one.npy"], capsys, monkeypatch, "holds one array")
    _fails([_save(tmp_path, x=X2)], capsys, monkeypatch, "lacks array(s) ['u']")
    _fails([data, "--out", tmp_path / "nodir" / "sub" / "o.npz"], capsys, monkeypatch, "does not exist")
    _fails([data, "--out", tmp_path], capsys, monkeypatch, "is a folder")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if not os.access(ro, os.W_OK):  # root writes anywhere: nothing to check then
            _fails([data, "--out", ro / "o.npz"], capsys, monkeypatch, "not writable")
    finally:
        ro.chmod(0o755)


def test_a_fit_writes_the_file_it_names_with_the_usual_mode(tmp_path, data, capsys):
    before = _digest(data)
    assert (
        fitting.main(
            [
                str(data),
                "--steps",
                "5",
                "--set",
                "batch_size=64",
                "hidden=[4]",
                "--no-progress",
                "--out",
                str(tmp_path / "o_noext"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    written = tmp_path / "o_noext.npz"
    assert f"wrote {written}" in out and written.exists()
    assert written.stat().st_mode & 0o777 == 0o666 & ~_umask()
    with np.load(written) as f:
        assert f["z_hat"].shape == (300, 2)
    assert _digest(data) == before
    # an earlier fit's output may be replaced; a file that is not one may not
    assert fitting._check_output(written, data) is None
    assert "not an earlier fit's output" in fitting._check_output(data.with_name("victim.npz"), tmp_path / "x.npz")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_command_line_shows_no_traceback(data):
    """Through a real interpreter: one line, exit code 2, the input untouched."""
    before = _digest(data)
    p = subprocess.run(
        [sys.executable, "-m", "cg.fitting", str(data), "--out", str(data), "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MECHIND_DEBUG": ""},
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert _digest(data) == before


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_writes_nothing(tmp_path, data):
    out = tmp_path / "o.npz"
    p = subprocess.Popen(
        [sys.executable, "-m", "cg.fitting", str(data), "--steps", "200000", "--no-progress", "--out", str(out)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(12)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130 and "Traceback" not in err and "interrupted" in err, err
    assert not out.exists()
