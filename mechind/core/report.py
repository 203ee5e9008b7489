"""Results as data: atomic file writes, JSON lines, markdown and CSV tables.

Tables and figures are built from the JSON lines on disk, never from in-memory state,
so a table can be rebuilt from a finished (or resumed) sweep at any time.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import math
import os
import platform
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

DEBUG_ENV = "MECHIND_DEBUG"


def debug_requested(flag: bool = False) -> bool:
    """``--debug`` or ``MECHIND_DEBUG=1``: show full tracebacks instead of one line."""
    return flag or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


class UserError(Exception):
    """A mistake in what the user gave (an option, a path, a damaged file): a command line
    shows its message as one line and exits 2, with no traceback."""


class CorruptFile(UserError, ValueError):
    """A file of ours that does not parse where it must (a ``ValueError`` too, for callers)."""


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` can
    only be read by setting it, which races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write a file so that readers see either the old or the new content, never half.

    The file gets the mode a plain ``open`` would give it (0644 under the usual umask),
    not mkstemp's private 0600, so tables and reports read like ``results.jsonl``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)):
        return _jsonable(x.tolist())
    if hasattr(x, "shape") and hasattr(x, "dtype"):  # jax arrays
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no NaN; a failed metric is null
    return x


def _drop_cut_tail(path: Path) -> None:
    """Truncate an unterminated last line (a write cut short), so the next record starts
    on a line of its own."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        data = path.read_bytes()
        f.truncate(data.rfind(b"\n") + 1)


def jsonl_text(records: Iterable[dict]) -> str:
    """Records as JSON lines (keys sorted, NaN as null): what every results file holds."""
    return "".join(json.dumps(_jsonable(r), sort_keys=True) + "\n" for r in records)


def append_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Append records as JSON lines; the whole batch is one write, then fsync'd. A last
    line left unterminated by an earlier crash is removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = jsonl_text(records)
    if path.exists():
        _drop_cut_tail(path)
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All records of a JSON-lines file (a missing file is an empty list).

    An unterminated last line that does not parse (a crash in the middle of an append)
    is skipped with a warning, so the run that wrote it is simply redone; a bad line
    anywhere else is corruption and raises ``ValueError`` naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1 and not text.endswith("\n"):
                warnings.warn(f"{path}: last line cut short (an interrupted write); its runs will be redone")
                break
            # from None: the JSON parser's own traceback adds nothing to the line number
            raise CorruptFile(
                f"{path}, line {i + 1}: not a JSON record ({e.msg}); repair or delete that line, "
                "or start again with --fresh"
            ) from None
    return records


def probe_writable(folder: Path) -> None:
    """Create and remove a file in ``folder``: the only reliable test (``os.access`` is
    true for root on a read-only bind mount, false negatives on some network file systems)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-probe.")
    os.close(fd)
    os.unlink(tmp)


def check_output_folder(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create ``path`` (and its parents) if needed and check that it, its ``checkpoints``
    folder and its ``results.jsonl`` can be written, so that a bad output path is one
    line at startup instead of an error (or an orbax timeout) after training.

    Raises :class:`UserError` naming the problem."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder; pick a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{what} {path}: a part of that path is a file, not a folder; pick another {what}") from None
    except OSError as e:
        raise UserError(f"{what} {path} cannot be created ({e.strerror}); pick another {what}") from None
    # a partial run's checkpoint folders too: orbax waits minutes on one it cannot write
    ckpts = path / "checkpoints"
    targets = [path] + ([ckpts, *(p for p in ckpts.iterdir() if p.is_dir())] if ckpts.is_dir() else [])
    for folder in targets:
        try:
            probe_writable(folder)
        except OSError as e:
            name = f"{what} {folder}" if folder == path else f"{folder} (under {what})"
            raise UserError(f"{name} is not writable ({e.strerror}); make it writable or pick another {what}") from None
    results = path / "results.jsonl"
    if results.exists():
        try:
            open(results, "a").close()  # append mode opens without changing a byte
        except OSError as e:
            raise UserError(
                f"{results} is not writable ({e.strerror}); make it writable or pick another {what}"
            ) from None
    return path


LOCK_NAME = ".lock"


@contextlib.contextmanager
def locked_folder(path: str | os.PathLike, what: str = "--out", exclusive: bool = True):
    """Hold ``path`` (checked with :func:`check_output_folder`) for this process alone.

    The lock is ``fcntl.flock`` on ``path/.lock``: the kernel drops it when the process
    ends however it ends (SIGKILL included), so a crash never leaves the folder stuck;
    the file only holds the holder's pid, for the message a second process gets. With
    ``exclusive=False`` the folder is shared with other shared holders (drivers whose
    workers claim each group before training it) and refused to an exclusive one."""
    path = check_output_folder(path, what)
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(
                f"{path} is in use by another run (pid {pid}); wait for it or pick another {what}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock (if this process held it)


def unique_records(records: list[dict], key: str = "run_id") -> list[dict]:
    """Records with one per ``key`` value (the last written wins; records without the key
    are kept), in the order of first appearance."""
    out: dict = {}
    for i, r in enumerate(records):
        out[r.get(key, ("__row", i))] = r
    return list(out.values())


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and (population) std of the finite values, and how many there were."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std()), int(v.size)


def fmt_mean_std(values: Sequence[float]) -> str:
    m, s, n = mean_std(values)
    return "failed" if n == 0 else f"{m:.3f} ± {s:.3f}"


def device_info() -> dict:
    """Where a result was computed: backend, device kind and count, host."""
    import jax

    devs = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devs[0].device_kind,
        "device_count": len(devs),
        "host": platform.node(),
        "jax": jax.__version__,
    }


def scatter_panels(
    records: Sequence[dict],
    path: str | os.PathLike,
    *,
    x: str,
    y: str,
    panel: str,
    colour: str,
    marker: str,
    xlabel: str,
    ylabel: str,
    title: str = "",
    panel_fmt: str = "{}",
    colour_fmt: str = "{}",
    marker_fmt: str = "{}",
    vline: Callable[[Any], float] | None = None,
) -> None:
    """A scatter figure: a panel per value of ``panel``, a point per record at
    ``(r[x], r[y])``, coloured by ``r[colour]`` and shaped by ``r[marker]``;
    ``vline(panel_value)`` draws a dotted reference line. Writes ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = lambda key: sorted({r[key] for r in records})  # noqa: E731
    panels, colours, marks = values(panel), values(colour), values(marker)
    shapes = dict(zip(marks, "os^Dv<>p*h"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.9), sharey=True, squeeze=False)
    for ax, pv in zip(axes[0], panels):
        for ci, cv in enumerate(colours):
            for mv in marks:
                sel = [r for r in records if r[panel] == pv and r[colour] == cv and r[marker] == mv]
                ax.scatter(
                    [r[x] for r in sel],
                    [r[y] for r in sel],
                    color=f"C{ci}",
                    marker=shapes[mv],
                    s=32,
                    alpha=0.85,
                    edgecolor="k",
                    linewidth=0.3,
                )
        if vline is not None:
            ax.axvline(vline(pv), color="gray", lw=0.8, ls=":")
        ax.set_title(panel_fmt.format(pv))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    for ci, cv in enumerate(colours):
        axes[0][-1].scatter([], [], color=f"C{ci}", label=colour_fmt.format(cv))
    for mv in marks:
        axes[0][-1].scatter([], [], color="gray", marker=shapes[mv], label=marker_fmt.format(mv))
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
