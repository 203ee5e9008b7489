"""Executors on the real engines: a local Ray cluster of two workers, submitit's local and
debug executors, against ``--executor local`` on the same toy sweep (four groups).

Compared for equality: the tables and every run's metrics and final loss, which are
bitwise the same because every executor here trains a group with the same layout (one
CPU device, all runs of a group in one call). The engine tests skip without the
``cluster`` extra; those that start a cluster or processes are marked slow.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax.numpy as jnp
import pytest

from experiments import executors, framework, sweep
from mechind.core import report, rng
from tests.experiments.test_framework import ToyConfig, toy_report
from tests.mechind.core.test_runner import _toy_task

ROOT = Path(__file__).resolve().parents[2]
TRAINED_LOG = "MECHIND_TEST_TRAINED_LOG"


def _task(steps: int, lr: float):
    """The toy task; with ``$MECHIND_TEST_TRAINED_LOG`` set, each group trained adds a line
    to that file, so a test can count how often a group was trained, over processes."""
    if os.environ.get(TRAINED_LOG):
        with open(os.environ[TRAINED_LOG], "a") as f:
            f.write(f"{lr}\n")
    return _toy_task(steps)


def lr_groups(c: ToyConfig) -> list[sweep.Group]:
    """One group per step size (the toy of test_framework has one group in all)."""
    groups = []
    for lr in c.lrs:
        runs = [{"lr": lr, "seed": s} for s in range(c.seeds)]
        groups.append(
            sweep.Group(
                key={"toy": dataclasses.asdict(c) | {"chunk_steps": None, "lrs": None}, "lr": lr},
                make_task=lambda lr=lr: _task(c.steps, lr),
                keys=rng.seed_keys([r["seed"] for r in runs]),
                hparams={"lr": jnp.full((len(runs),), lr, jnp.float32)},
                runs=runs,
                finish=lambda m: {"err": float(m["err"])},
            )
        )
    return groups


MULTI = framework.Experiment(
    "toy_groups",
    "A toy experiment of four groups",
    "toy doc",
    ToyConfig,
    {"quick": ToyConfig(lrs=(0.02, 0.05, 0.1, 0.2)), "paper": ToyConfig(steps=60)},
    lr_groups,
    toy_report,
)
CMD = [sys.executable, "-c", "from tests.experiments.test_executors import MULTI; MULTI.main()"]


def _main(out: Path, *extra: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [*CMD, "--out", str(out), "--no-progress", *extra],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), **(env or {})},
        **kw,
    )


def _done(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def _numbers(out: Path) -> dict:
    """run id -> what training computed (not wall times or hosts)."""
    recs = report.read_jsonl(out / "results.jsonl")
    ids = [r["run_id"] for r in recs]
    assert len(ids) == len(set(ids)), "a run id written twice"
    return {r["run_id"]: (r["err"], r["final_loss"], r["failed"], r["run_layout"]) for r in recs}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "o"
    MULTI.main(["--out", str(out), "--no-progress"])
    return out


def _same_as_local(out: Path, local: Path) -> None:
    assert (out / "table.md").read_text() == (local / "table.md").read_text()
    assert _numbers(out) == _numbers(local) and len(_numbers(out)) == 8
    assert not list((out / "claims").iterdir())  # every claim released


# --- options and missing packages: one line, before any work -------------------------------


def _fails(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        MULTI.main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert e.value.code == 2 and "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("executor, package", [("ray", "ray"), ("slurm", "submitit")])
def test_a_missing_package_is_one_line_before_any_work(executor, package, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    line = _fails(capsys, ["--out", str(tmp_path / "o"), "--executor", executor])
    assert line == (
        f'error: --executor {executor} needs the {package} package, which is not installed: pip install -e ".[cluster]"'
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "bad, says",
    [
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["--slurm-partition", "gpu"], "--slurm-partition needs --executor slurm"),
        (["--coordinator", "localhost:1234"], "go together (all three, or none)"),
        (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "must be HOST:PORT"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "--process-id must be in 0..1"),
        (["--claim-lease", "0"], "--claim-lease must be > 0"),
        (
            ["--executor", "slurm", "--coordinator", "h:1", "--num-processes", "2", "--process-id", "0"],
            "runs with --executor local",
        ),
    ],
)
def test_bad_executor_options_are_one_line_before_any_work(bad, says, tmp_path, capsys):
    assert says in _fails(capsys, ["--out", str(tmp_path / "o"), *bad])
    assert not (tmp_path / "o").exists()


def test_every_executor_option_has_its_help(capsys):
    with pytest.raises(SystemExit):
        MULTI.main(["--help"])
    text = capsys.readouterr().out
    for opt in (
        "--executor {local,ray,slurm}",
        "--ray-address",
        "--workers",
        "--cpus-per-group",
        "--gpus-per-group",
        "--retries",
        "--slurm-partition",
        "--slurm-time",
        "--slurm-array-parallelism",
        "--slurm-cluster {slurm,local,debug}",
        "--claim-lease",
        "--coordinator",
        "--num-processes",
        "--process-id",
    ):
        assert opt in text


def test_a_local_folder_is_refused_to_a_cluster_driver_and_cluster_drivers_share_one(tmp_path):
    out = report.check_output_folder(tmp_path / "o")
    with report.locked_folder(out):  # a local sweep holds it alone
        with pytest.raises(report.UserError, match="in use by another run"):
            with report.locked_folder(out, exclusive=False):
                pass
    with report.locked_folder(out, exclusive=False), report.locked_folder(out, exclusive=False):
        with pytest.raises(report.UserError, match="in use by another run"):
            with report.locked_folder(out):
                pass


# --- the engines --------------------------------------------------------------------------


@pytest.mark.slow  # a whole sweep through submitit: about 8 s (suite time)
def test_slurm_path_through_submitits_debug_executor_gives_the_local_table(tmp_path):
    pytest.importorskip("submitit")
    one = ["--no-progress", "--lrs", "0.1", "--seeds", "3"]  # one group: one compile each, about 5 s in all
    local = MULTI.main(["--out", str(tmp_path / "local"), *one])
    res = MULTI.main(["--out", str(tmp_path / "o"), *one, "--executor", "slurm", "--slurm-cluster", "debug"])
    assert (tmp_path / "o" / "table.md").read_text() == (tmp_path / "local" / "table.md").read_text()
    assert _numbers(tmp_path / "o") == _numbers(tmp_path / "local") and len(res["records"]) == 3
    assert [r["run_id"] for r in res["records"]] == [r["run_id"] for r in local["records"]]
    assert len(list((tmp_path / "o" / "groups").glob("*.jsonl"))) == 1


@pytest.mark.slow  # a local Ray cluster: about 20 s
def test_ray_local_cluster_of_two_workers_gives_the_local_table(local_run, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "o"
    log = _done(_main(out, "--executor", "ray", "--workers", "2"))
    assert log.count("runs, compile") == 4
    _same_as_local(out, local_run)
    again = _done(_main(out, "--executor", "ray", "--workers", "2"))  # every group done: none trained
    assert again.count("already done, skipped") == 4 and len(_numbers(out)) == 8


@pytest.mark.slow  # submitit's local executor: a process per group, about 15 s
def test_slurm_path_through_submitits_local_executor_gives_the_local_table(local_run, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "o"
    _done(_main(out, "--executor", "slurm", "--slurm-cluster", "local"))
    _same_as_local(out, local_run)
    assert list((out / "slurm_logs").glob("*_result.pkl"))


def _kill_first_worker_mid_group(out: Path, stop: threading.Event, killed: list) -> None:
    """SIGKILL the process holding the first claim, once its group has checkpointed a chunk."""
    while not stop.is_set():
        for claim in sorted((out / "claims").glob("*.*")) if (out / "claims").is_dir() else []:
            gid = claim.name.split(".")[0]
            if list((out / "checkpoints" / gid).rglob("checksums.json")):
                try:
                    pid = json.loads(claim.read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                except (OSError, ValueError, KeyError):
                    continue
                killed.append(gid)
                return
        time.sleep(0.02)


def _with_killer(out: Path, proc: subprocess.Popen) -> tuple[str, str]:
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_worker_mid_group, args=(out, stop, killed))
    killer.start()
    try:
        log = _done(proc)
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was killed: the groups finished too fast"
    return log, killed[0]


# 200 chunks of 2 steps, a checkpoint each: a group takes seconds, so the kill lands mid-group
SLOW_GROUPS = ("--steps", "400", "--chunk-steps", "2", "--retries", "2")


@pytest.fixture(scope="module")
def local_slow(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "slow"
    MULTI.main(["--out", str(out), "--no-progress", *SLOW_GROUPS[:4]])
    return out


def _retried_and_same(out: Path, local: Path, killed: str, trained: Path) -> None:
    _same_as_local(out, local)
    recs = [r for r in report.read_jsonl(out / "results.jsonl") if r["group"] == killed]
    assert recs and all(r["resumed_from"] > 0 for r in recs)  # the retry resumed from the checkpoint
    lrs = trained.read_text().split()
    assert len(lrs) == 5 and len(set(lrs)) == 4  # four groups, the killed one started twice


@pytest.mark.slow  # a local Ray cluster and a killed worker: about 40 s
def test_ray_worker_killed_mid_group_is_retried_and_the_table_is_the_same(local_slow, tmp_path):
    pytest.importorskip("ray")
    out, trained = tmp_path / "o", tmp_path / "trained.log"
    proc = _main(out, "--executor", "ray", "--workers", "2", *SLOW_GROUPS, env={TRAINED_LOG: str(trained)})
    _, killed = _with_killer(out, proc)
    _retried_and_same(out, local_slow, killed, trained)


@pytest.mark.slow  # submitit's local executor and a killed job: about 40 s
def test_slurm_job_killed_mid_group_is_resubmitted_and_the_table_is_the_same(local_slow, tmp_path):
    pytest.importorskip("submitit")
    out, trained = tmp_path / "o", tmp_path / "trained.log"
    proc = _main(out, "--executor", "slurm", "--slurm-cluster", "local", *SLOW_GROUPS, env={TRAINED_LOG: str(trained)})
    _, killed = _with_killer(out, proc)
    _retried_and_same(out, local_slow, killed, trained)


@pytest.mark.slow  # two drivers (Ray and submitit) on one folder at once: about 40 s
def test_two_executors_on_one_folder_never_train_a_group_twice(local_slow, tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("submitit")
    out, trained = tmp_path / "o", tmp_path / "trained.log"
    env = {TRAINED_LOG: str(trained)}
    procs = [
        _main(out, "--executor", "ray", "--workers", "2", *SLOW_GROUPS, env=env),
        _main(out, "--executor", "slurm", "--slurm-cluster", "local", *SLOW_GROUPS, env=env),
    ]
    for p in procs:
        _done(p)
    lrs = trained.read_text().split()
    assert sorted(lrs) == sorted(set(lrs)) and len(lrs) == 4  # each group trained once, by one of them
    _same_as_local(out, local_slow)


def test_executor_from_args_builds_the_asked_one(tmp_path):
    import argparse

    ap = argparse.ArgumentParser()
    executors.add_args(ap)
    assert isinstance(executors.from_args(ap.parse_args([]), tmp_path), executors.LocalExecutor)
    ray = executors.from_args(ap.parse_args(["--executor", "ray", "--gpus-per-group", "1"]), tmp_path)
    assert isinstance(ray, executors.RayExecutor) and (ray.gpus, ray.cpus, ray.retries) == (1, 1, 2)
    slurm = executors.from_args(
        ap.parse_args(["--executor", "slurm", "--slurm-partition", "gpu", "--slurm-time", "30"]), tmp_path
    )
    assert (slurm.partition, slurm.time_min, slurm.folder) == ("gpu", 30, tmp_path / "slurm_logs")
