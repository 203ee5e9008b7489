"""Faults at the command-line level: a sweep killed with SIGKILL mid-chunk, then re-run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mechind.core import report

ARGS = ["-m", "experiments.ivae_segments", "--segments", "2", "3", "--methods", "ivae", "--seeds", "2",
        "--steps", "400", "--chunk-steps", "4", "--no-progress"]


def _cli(out: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *ARGS, "--out", str(out)], capture_output=True, text=True, check=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, **kw)


def _newer_checkpoint(folder: Path, since: float) -> bool:
    """A finished checkpoint step (a folder named by its step) written after ``since``."""
    try:
        return any(p.name.isdigit() and p.stat().st_mtime > since for p in folder.rglob("*"))
    except FileNotFoundError:  # orbax replaced a folder while we looked
        return False


def _tables(md: str) -> str:
    return md[md.index("MCC (mean"):]  # the header holds wall times


@pytest.mark.slow  # about 40 s: three CLI invocations of two groups each
def test_sigkill_mid_chunk_then_rerun_gives_the_uninterrupted_table(tmp_path):
    clean = tmp_path / "clean"
    _cli(clean)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *ARGS, "--out", str(killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "JAX_PLATFORMS": "cpu"})
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
