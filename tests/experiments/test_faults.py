"""Faults and bad inputs at the command-line level.

Every case asserts the exit code, a one-line message, no traceback, that no file which
should not change did, and (where there is something to recover) the same records as an
uninterrupted run. Cases that need a process of their own (signals, a second process)
run one; the rest call the command's ``main(argv)`` in this process, which is the same
code path minus the interpreter start (about 3 s each with jax). Slow ones are marked.
"""

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import __main__ as main_job
from experiments import criteria_hierarchy, framework
from mechind.core import report
from tests.experiments.test_framework import TOY

ARGS = [
    "-m",
    "experiments.ivae_segments",
    "--segments",
    "2",
    "3",
    "--methods",
    "ivae",
    "--seeds",
    "2",
    "--num-steps",
    "400",
    "--chunk-steps",
    "4",
    "--no-progress",
]


def _cli(out: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *ARGS, "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        **kw,
    )


def _newer_checkpoint(folder: Path, since: float) -> bool:
    """A finished and verified checkpoint step (its checksums recorded) written after ``since``."""
    try:
        return any(p.stat().st_mtime > since for p in folder.rglob("checksums.json"))
    except FileNotFoundError:  # orbax replaced a folder while we looked
        return False


def _tables(md: str) -> str:
    return md[md.index("MCC (mean") :]  # the header holds wall times


@pytest.mark.slow  # about 40 s: three CLI invocations of two groups each
def test_sigkill_mid_chunk_then_rerun_gives_the_uninterrupted_table(tmp_path):
    clean = tmp_path / "clean"
    _cli(clean)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, *ARGS, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    # kill once the first group is in results.jsonl and the second has checkpointed a chunk:
    # the second group is then in the middle of its 100 chunks
    deadline = time.time() + 300
    results, ckpts = killed / "results.jsonl", killed / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and _newer_checkpoint(ckpts, results.stat().st_mtime):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be killed: make the chunks smaller"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(report.read_jsonl(results)) == 2  # the first group's two runs, nothing of the second

    again = _cli(killed)
    assert "already done, skipped" in again.stdout  # the finished group is not recomputed
    recs = report.read_jsonl(results)
    assert len(recs) == 4 and any(r["resumed_from"] > 0 for r in recs)
    assert _tables((killed / "table.md").read_text()) == _tables((clean / "table.md").read_text())


# --- in-process cases: a toy experiment (tests/experiments/test_framework.py) ---------------


def _toy_args(out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--no-progress", "--steps", "20", "--chunk-steps", "20", *extra]


def _snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (or the file itself) -> sha256, to show nothing changed."""
    if folder.is_file():
        return {folder: hashlib.sha256(folder.read_bytes()).hexdigest()}
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fails(capsys, main, argv, code: int = 2) -> str:
    """Run ``main(argv)``; it must exit with ``code`` and say why in one line on stderr
    (argparse prints its usage above that line). Returns the line."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == code, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, "no message"
    if "usage:" not in err:
        assert len(lines) == 1, err
    return lines[-1]


@pytest.fixture(scope="module")
def toy_done(tmp_path_factory) -> Path:
    """A finished toy sweep (4 runs), copied by the cases that damage it."""
    out = tmp_path_factory.mktemp("toy") / "done"
    TOY.main(_toy_args(out))
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "bad, says",
    [
        (["--max-runs-per-call", "0"], "--max-runs-per-call: must be >= 1, got 0"),
        (["--max-runs-per-call", "-1"], "--max-runs-per-call: must be >= 1, got -1"),
        (["--steps", "20.5"], "invalid int value: '20.5'"),
        (["--lrs", "-1"], "--lrs must be > 0"),
    ],
)
def test_bad_options_are_one_line_before_any_work(bad, says, tmp_path, capsys):
    line = _fails(capsys, TOY.main, [*_toy_args(tmp_path / "o"), *bad])
    assert says in line and not (tmp_path / "o").exists()


def test_out_that_is_a_file_or_under_one_is_one_line_and_the_file_is_untouched(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file")
    before = _snapshot(victim)
    assert "is a file, not a folder" in _fails(capsys, TOY.main, _toy_args(victim))
    assert "a part of that path is a file" in _fails(capsys, TOY.main, _toy_args(victim / "sub"))
    assert "is a file, not a folder" in _fails(capsys, criteria_hierarchy.main, ["--out", str(victim)])
    assert "is a file, not a folder" in _fails(
        capsys, main_job.main, ["--only", "criteria_hierarchy", "--out", str(victim)]
    )
    assert _snapshot(victim) == before
    # the main job checks every part's folder before the first part runs
    job = tmp_path / "job"
    job.mkdir()
    (job / "mechind_overlap").write_text("in the way")
    line = _fails(capsys, main_job.main, ["--only", "criteria_hierarchy", "mechind_overlap", "--out", str(job)])
    assert line == f"error: part folder {job / 'mechind_overlap'} is a file, not a folder; pick a folder"
    assert not (job / "criteria_hierarchy" / "table.md").exists()


def test_an_unwritable_out_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    # as root nothing is unwritable to chmod, so the probe sees a read-only file system
    # (EROFS, as on a read-only mount); test_a_read_only_out_after_a_partial_run_* uses chmod
    def read_only(folder):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    real = report.probe_writable
    monkeypatch.setattr(report, "probe_writable", read_only)
    line = _fails(capsys, TOY.main, _toy_args(tmp_path / "o"))
    assert "is not writable (Read-only file system)" in line
    assert not (tmp_path / "o" / "results.jsonl").exists()
    # only a partial run's group checkpoint folder is read-only: still found at startup
    group = tmp_path / "p" / "checkpoints" / "0123abcd"
    group.mkdir(parents=True)
    monkeypatch.setattr(report, "probe_writable", lambda f: read_only(f) if f == group else real(f))
    assert (
        _fails(capsys, TOY.main, _toy_args(tmp_path / "p"))
        == f"error: {group} (under --out) is not writable (Read-only file system); "
        "make it writable or pick another --out"
    )
    if os.geteuid() == 0:  # a folder that cannot be created at all (only root sees /sys so)
        assert "cannot be created" in _fails(capsys, TOY.main, _toy_args(Path("/sys/mechind-test/o")))


def test_a_garbage_line_inside_results_is_one_line_and_the_file_is_kept(toy_done, tmp_path, capsys):
    out = _copy(toy_done, tmp_path / "o")
    path = out / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "garbage\n" + "".join(lines[1:]))
    before = _snapshot(out)
    line = _fails(capsys, TOY.main, _toy_args(out))
    assert line.startswith(f"error: {path}, line 2: not a JSON record") and "--fresh" in line
    assert _snapshot(out) == before


def test_a_folder_in_use_is_refused_with_the_holders_pid(toy_done, tmp_path, capsys):
    out = _copy(toy_done, tmp_path / "o")
    before = _snapshot(out)
    # flock locks belong to an open file, so this process holding the lock is another run
    with report.locked_folder(out):
        line = _fails(capsys, TOY.main, _toy_args(out))
        assert line == (f"error: {out} is in use by another run (pid {os.getpid()}); wait for it or pick another --out")
    assert {p: h for p, h in _snapshot(out).items() if p.name != ".lock"} == {
        p: h for p, h in before.items() if p.name != ".lock"
    }
    TOY.main(_toy_args(out))  # released: the folder is usable again


def test_results_of_another_run_layout_are_not_mixed(tmp_path, capsys):
    out = tmp_path / "o"
    first = TOY.main(_toy_args(out, "--max-runs-per-call", "1", "--seeds", "1"))
    assert {r["run_layout"]["runs_per_call"] for r in first["records"]} == {1}
    assert all(
        r["run_layout"]["devices"] >= 1 and r["run_layout"]["backend"] and r["run_layout"]["jax"]
        for r in first["records"]
    )
    before = _snapshot(out)
    line = _fails(capsys, TOY.main, _toy_args(out, "--seeds", "1"))  # default: both runs in one call
    assert "computed under another layout" in line and "1 runs per call" in line and "2 runs per call" in line
    assert {p: h for p, h in _snapshot(out).items() if p.name != ".lock"} == {
        p: h for p, h in before.items() if p.name != ".lock"
    }
    again = TOY.main(_toy_args(out, "--max-runs-per-call", "1", "--seeds", "1"))  # the same layout reuses them
    assert again["records"] == first["records"]


def test_a_cut_last_line_is_redone_and_no_run_is_written_twice(toy_done, tmp_path):
    out = _copy(toy_done, tmp_path / "o")
    path = out / "results.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # a crash in the middle of the last record
    with pytest.warns(UserWarning, match="cut short"):
        again = TOY.main(_toy_args(out))
    ids = [r["run_id"] for r in report.read_jsonl(path)]
    assert len(ids) == len(set(ids)) == 4
    clean = {r["run_id"]: r["err"] for r in report.read_jsonl(toy_done / "results.jsonl")}
    assert {r["run_id"]: r["err"] for r in again["records"]} == clean


def test_settings_that_repeat_a_run_are_refused(tmp_path, capsys):
    line = _fails(capsys, TOY.main, _toy_args(tmp_path / "o", "--lrs", "0.1", "0.1"))
    assert "more than once" in line and not (tmp_path / "o" / "results.jsonl").exists()


def test_criteria_hierarchy_bad_tolerance_is_one_line(tmp_path, capsys):
    for tol in ("-1", "nan", "inf", "0"):
        line = _fails(capsys, criteria_hierarchy.main, ["--tol", tol, "--out", str(tmp_path / "c")])
        assert "--tol: tol must be a positive finite number" in line
    assert not (tmp_path / "c").exists()


def test_debug_shows_the_full_error(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    with pytest.raises(report.UserError, match="is a file"):
        TOY.main([*_toy_args(victim), "--debug"])
    monkeypatch.setenv(framework.DEBUG_ENV, "1")
    with pytest.raises(report.UserError, match="is a file"):
        TOY.main(_toy_args(victim))


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o027)
    try:
        assert (report.write_atomic(tmp_path / "a.md", "x").stat().st_mode & 0o777) == 0o640
    finally:
        os.umask(old)
    assert (report.write_atomic(tmp_path / "b.md", b"x").stat().st_mode & 0o777) == 0o666 & ~old


# --- cases that need a process of their own --------------------------------------------------

TOY_CMD = [sys.executable, "-c", "from tests.experiments.test_framework import TOY; TOY.main()"]
ROOT = Path(__file__).resolve().parents[2]


def _toy_proc(out: Path, *extra: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [*TOY_CMD, "--out", str(out), "--no-progress", *extra],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        **kw,
    )


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        # checksums.json is written once a step is complete: from then on it resumes
        if any((out / "checkpoints").rglob("checksums.json")):
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint appeared (exit {proc.poll()}): {proc.stderr.read() if proc.poll() else ''}")


def test_ctrl_c_is_one_line_and_the_same_command_resumes(tmp_path):
    # 20 chunks of one step, a checkpoint each (about 0.1 s, orbax's own pace): the
    # signal, sent at the first checkpoint, lands seconds before the end
    args = ("--steps", "20", "--chunk-steps", "1")
    out = tmp_path / "o"
    proc = _toy_proc(out, *args)
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("interrupted (toy, group 1/1: id ") and " of 20); " in lines[0]
    assert "run the same command to resume" in lines[0]
    assert not (out / "results.jsonl").exists()
    resumed = TOY.main(_toy_args(out, *args))
    assert resumed["records"][0]["resumed_from"] > 0
    clean = TOY.main(_toy_args(tmp_path / "clean", *args))
    keep = lambda recs: [(r["run_id"], r["err"], r["final_loss"]) for r in recs]  # noqa: E731
    assert keep(resumed["records"]) == keep(clean["records"])


@pytest.mark.slow  # two processes started together: about 10 s
def test_two_processes_on_one_out_one_runs_the_other_is_refused(tmp_path):
    out = tmp_path / "o"
    procs = [_toy_proc(out, "--steps", "200", "--chunk-steps", "5") for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    err = next(e for rc, e in results if rc == 2)
    assert f"{out} is in use by another run (pid " in err and len(err.strip().splitlines()) == 1
    ids = [r["run_id"] for r in report.read_jsonl(out / "results.jsonl")]
    assert len(ids) == len(set(ids)) == 4


def _without_root_powers() -> list[str]:
    """A command prefix under which file modes bind: nothing for a user; for root, root
    without its capabilities (CAP_DAC_OVERRIDE lets root write to read-only folders)."""
    if os.geteuid() != 0:
        return []
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: read-only folders are writable")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]


@pytest.mark.slow  # about 10 s
def test_a_read_only_out_after_a_partial_run_is_one_line_at_once(tmp_path):
    prefix = _without_root_powers()
    out = tmp_path / "o"
    proc = _toy_proc(out, "--steps", "400", "--chunk-steps", "1")
    _wait_for_checkpoint(proc, out)
    proc.kill()
    proc.wait()
    for p in [out, *out.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        before = _snapshot(out)
        t0 = time.time()
        done = subprocess.run(
            [*prefix, *TOY_CMD, "--out", str(out), "--no-progress", "--steps", "400", "--chunk-steps", "1"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert time.time() - t0 < 60 and done.returncode == 2, done.stderr  # not orbax's 5-minute timeout
        assert (
            done.stderr == f"error: --out {out} is not writable (Permission denied); make it writable or "
            "pick another --out\n"
        )
        assert _snapshot(out) == before
    finally:
        for p in [out, *out.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


@pytest.mark.slow  # one interpreter per command (about 3 s each)
@pytest.mark.parametrize(
    "argv, says",
    [
        (["-m", "experiments.criteria_hierarchy", "--tol", "-1"], "--tol: tol must be a positive"),
        (["-m", "experiments.mechind_overlap", "--max-runs-per-call", "0"], "must be >= 1, got 0"),
        (["-m", "experiments.mechanism_sparsity", "--num-steps", "20.5"], "invalid int value"),
        (["-m", "experiments", "--only", "criteria_hierarchy", "--out", "{file}"], "is a file, not a folder"),
        (["-m", "experiments.criteria_hierarchy", "--out", "{file}"], "is a file, not a folder"),
        (["-m", "experiments.mechind_overlap", "--out", "{file}/sub"], "a part of that path is a file"),
    ],
)
def test_command_lines_say_what_is_wrong_in_one_line(argv, says, tmp_path):
    victim = tmp_path / "victim.npz"
    victim.write_bytes(b"the user's data")
    argv = [a.replace("{file}", str(victim)) for a in argv]
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert says in done.stderr.strip().splitlines()[-1], done.stderr
    assert victim.read_bytes() == b"the user's data"


@pytest.mark.slow  # a second interpreter with two host devices: about 5 s
def test_results_of_another_device_count_are_not_mixed(toy_done, tmp_path):
    out = _copy(toy_done, tmp_path / "o")
    before = _snapshot(out)
    two = subprocess.run(
        [*TOY_CMD, *_toy_args(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert two.returncode == 2 and "Traceback" not in two.stderr, two.stderr
    line = two.stderr.strip()
    assert "\n" not in line and "computed under another layout (1 cpu device(s)" in line
    assert "this run: 2 cpu device(s)" in line
    assert {p: h for p, h in _snapshot(out).items() if p.name != ".lock"} == {
        p: h for p, h in before.items() if p.name != ".lock"
    }
