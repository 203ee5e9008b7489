"""mechind.core.report: atomic writes, JSON lines (and their cut tails), tables and summaries.
(The file mode of write_atomic is tested in tests/experiments/test_faults.py.)"""

import math
import warnings

import numpy as np
import pytest

from mechind.core import report


def test_write_atomic_writes_the_content_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "dir" / "a.md"  # parents are created
    assert report.write_atomic(path, "first\n") == path
    assert path.read_text() == "first\n"
    report.write_atomic(path, b"\x00second")  # bytes, and a replacement
    assert path.read_bytes() == b"\x00second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.md"]


def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "a.md"
    report.write_atomic(path, "old")
    with pytest.raises(TypeError):
        report.write_atomic(path, 3)  # not text: fails inside the write
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.md"]


def test_append_and_read_jsonl_round_trip(tmp_path):
    path = tmp_path / "r.jsonl"
    assert report.read_jsonl(path) == []  # a missing file
    report.append_jsonl(path, [{"b": 1, "a": np.float32(0.5)}, {"x": np.arange(3), "nan": float("nan")}])
    report.append_jsonl(path, [{"t": (1, 2)}])
    assert path.read_text() == '{"a": 0.5, "b": 1}\n{"nan": null, "x": [0, 1, 2]}\n{"t": [1, 2]}\n'
    assert report.read_jsonl(path) == [{"a": 0.5, "b": 1}, {"nan": None, "x": [0, 1, 2]}, {"t": [1, 2]}]


def test_read_jsonl_drops_a_cut_last_line_with_a_warning(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2')
    with pytest.warns(UserWarning, match="cut short"):
        assert report.read_jsonl(path) == [{"a": 1}]
    path.write_text('{"a": 1}\n{"a": 2}')  # unterminated but whole: kept, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert report.read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_read_jsonl_raises_on_corruption_inside_the_file(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(report.CorruptFile, match="line 2"):
        report.read_jsonl(path)
    # and an append after a cut tail starts on its own line
    path.write_text('{"a": 1}\n{"a": 2')
    report.append_jsonl(path, [{"a": 3}])
    assert path.read_text() == '{"a": 1}\n{"a": 3}\n'


def test_unique_records_last_wins_in_first_order():
    recs = [{"run_id": "x", "v": 1}, {"v": 9}, {"run_id": "y"}, {"run_id": "x", "v": 2}, {"v": 9}]
    assert report.unique_records(recs) == [{"run_id": "x", "v": 2}, {"v": 9}, {"run_id": "y"}, {"v": 9}]
    assert report.unique_records([{"k": 1, "n": 0}, {"k": 1, "n": 1}], key="k") == [{"k": 1, "n": 1}]


def test_markdown_table_exact_text():
    md = report.markdown_table(["a", "b"], [[1, 0.12345], ["x", 2.0]])
    assert md == "| a | b |\n|---|---|\n| 1 | 0.123 |\n| x | 2.000 |\n"


def test_csv_text_exact_text():
    assert report.csv_text(["a", "b"], [[1, "x,y"], [0.5, None]]) == 'a,b\n1,"x,y"\n0.5,\n'


def test_mean_std_is_numpys_population_std_of_the_finite_values():
    vals = [1.0, None, 2.0, float("nan"), 4.0, float("inf")]
    m, s, n = report.mean_std(vals)
    assert (m, n) == (pytest.approx(7 / 3), 3)
    assert s == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=0))
    m, s, n = report.mean_std([None, float("nan")])
    assert math.isnan(m) and math.isnan(s) and n == 0
    assert report.fmt_mean_std([1.0, 3.0]) == "2.000 ± 1.000" and report.fmt_mean_std([]) == "failed"
