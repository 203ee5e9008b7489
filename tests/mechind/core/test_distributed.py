"""jax.distributed set-up: its options, its no-ops with one process, and one group across
two real local CPU processes (gloo collectives) giving the numbers of one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from mechind.core import distributed, report

ROOT = Path(__file__).resolve().parents[3]
TOY_CMD = [sys.executable, "-c", "from tests.experiments.test_framework import TOY; TOY.main()"]


@pytest.mark.parametrize(
    "opts, says",
    [
        (("h:1", None, None), "go together"),
        ((None, 2, 0), "go together"),
        (("h", 2, 0), "HOST:PORT"),
        (("h:p", 2, 0), "HOST:PORT"),
        (("h:1", 0, 0), "--num-processes must be >= 1"),
        (("h:1", 2, -1), "--process-id must be in 0..1"),
    ],
)
def test_option_errors(opts, says):
    errors = distributed.option_errors(*opts)
    assert errors and says in errors[0]


def test_one_process_is_left_alone(monkeypatch):
    assert distributed.option_errors(None, None, None) == [] and distributed.option_errors("h:1", 1, 0) == []
    monkeypatch.delenv("SLURM_STEP_ID", raising=False)
    assert not distributed.in_slurm_step() and distributed.initialize() is False
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")  # one task: nothing to distribute
    assert not distributed.in_slurm_step()
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert distributed.in_slurm_step()
    assert distributed.is_writer() and distributed.agree(True) and not distributed.agree(False)
    assert distributed.agree_mask([True, False]) == [True, False] and distributed.agree_mask([]) == []
    distributed.barrier("nothing to wait for")
    np.testing.assert_array_equal(distributed.to_host(jnp.arange(3)), [0, 1, 2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toy(out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    args = ["--out", str(out), "--no-progress", "--steps", "40", "--chunk-steps", "5", *extra]
    return subprocess.Popen(
        [*TOY_CMD, *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})},
    )


def _ok(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


def _numbers(out: Path) -> dict:
    return {r["run_id"]: (r["err"], r["final_loss"]) for r in report.read_jsonl(out / "results.jsonl")}


@pytest.mark.slow  # three interpreters: about 20 s
def test_two_processes_under_jax_distributed_give_the_metrics_of_one(tmp_path):
    dist = tmp_path / "dist"
    coord = f"127.0.0.1:{_free_port()}"
    procs = [_toy(dist, "--coordinator", coord, "--num-processes", "2", "--process-id", str(i)) for i in range(2)]
    logs = [_ok(p) for p in procs]
    assert "# toy (quick)" in logs[0] and "# toy" not in logs[1]  # process 0 reports
    recs = report.read_jsonl(dist / "results.jsonl")
    assert len(recs) == 4 == len({r["run_id"] for r in recs})  # written once, by process 0
    assert {r["run_layout"]["devices"] for r in recs} == {2} and {r["run_layout"]["processes"] for r in recs} == {2}
    assert not (dist / "checkpoints").exists() or not list((dist / "checkpoints").iterdir())
    # one process with two devices runs the same sharded program: the same bits
    two = tmp_path / "two"
    _ok(_toy(two, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}))
    assert _numbers(dist) == _numbers(two)
    # one process, one device: another layout, the same numbers to float32 rounding
    one = tmp_path / "one"
    _ok(_toy(one))
    a, b = _numbers(dist), _numbers(one)
    np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=1e-5, atol=1e-6)
    table = lambda out: (out / "table.md").read_text()  # noqa: E731
    assert table(dist) == table(two)
