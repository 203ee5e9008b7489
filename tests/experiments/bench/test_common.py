"""experiments.bench.common: the median of timed repeats (on a fake clock) and the JSON it writes."""

import json
import types

import numpy as np
import pytest

from experiments.bench import common


def test_median_time_on_a_fake_clock(monkeypatch):
    ticks = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])  # three timed calls of 1, 3 and 2 s
    monkeypatch.setattr(common, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    calls = []
    out = common.median_time(lambda: calls.append(1), repeats=3, warmup=2)
    assert out == {"median_s": 2.0, "min_s": 1.0, "max_s": 3.0, "repeats": 3}
    assert len(calls) == 5  # the warm-up calls run but are not timed (the clock was read 6 times only)
    assert next(ticks, None) is None


def test_median_time_of_an_even_count_is_the_mean_of_the_middle_two(monkeypatch):
    ticks = iter([0.0, 4.0, 0.0, 1.0, 0.0, 2.0, 0.0, 8.0])
    monkeypatch.setattr(common, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    assert common.median_time(lambda: None, repeats=4, warmup=0)["median_s"] == pytest.approx(3.0)


def test_block_returns_its_argument():
    x = np.arange(3)
    assert common.block(x) is x


def test_write_adds_the_name_and_machine_and_writes_jsonable_values(tmp_path):
    path = common.write(
        tmp_path / "out", "demo", {"rows": [{"t": np.float32(0.5), "v": np.arange(2)}], "nan": float("nan")}
    )
    assert path == tmp_path / "out" / "demo.json"
    d = json.loads(path.read_text())
    assert list(d) == ["benchmark", "machine", "rows", "nan"]
    assert d["benchmark"] == "demo" and d["rows"] == [{"t": 0.5, "v": [0, 1]}] and d["nan"] is None
    assert {"backend", "device_kind", "device_count", "jax", "cpu_count", "platform", "python"} <= set(d["machine"])
