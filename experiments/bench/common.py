"""Timing helpers shared by the benchmarks: medians of repeats, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax

from mechind.core import report


def median_time(fn, repeats: int = 5, warmup: int = 1) -> dict:
    """Median (and min/max) wall time of ``fn()`` over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def block(x):
    return jax.block_until_ready(x)


def machine() -> dict:
    info = report.device_info()
    info.update(cpu_count=os.cpu_count(), platform=platform.platform(), python=platform.python_version())
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def write(out: str | Path, name: str, payload: dict) -> Path:
    payload = {"benchmark": name, "machine": machine(), **payload}
    path = report.write_atomic(Path(out) / f"{name}.json", json.dumps(report._jsonable(payload), indent=2))
    print(f"wrote {path}")
    return path
