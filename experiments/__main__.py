"""The main job: run every reproduction of a preset and write one report.

    python -m experiments --preset quick            # minutes on a 2-core CPU
    python -m experiments --preset paper --out results/paper   # the published protocols (GPU)

Each part is also a module of its own (``python -m experiments.<name> --help``); this
runs them in turn with their defaults for the preset, then joins their tables into
``<out>/report.md``. Finished groups are kept in each part's ``results.jsonl``, so
re-running after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Callable

from experiments import cg_benchmark, criteria_hierarchy, framework, mechanism_sparsity, mechind_overlap, mechind_scenes
from mechind.core import report


@dataclasses.dataclass(frozen=True)
class Part:
    """A part of the main job: its folder name, its section title, and its ``main(argv)``.

    Every part takes ``--out``, ``--preset``, ``--fresh``, ``--no-progress`` and ``--debug``, and
    returns a dict (with ``"markdown"``, or it writes ``table.md``). An experiment on the
    framework (:class:`experiments.framework.Experiment`) is a part as it is."""

    name: str
    title: str
    main: Callable[[list[str]], dict]
    main_job_args: tuple[str, ...] = ()  # options the main job adds for its quick preset


# the registry: a new pipeline joins the report by adding its line here
PARTS = (
    Part("criteria_hierarchy", "Criteria hierarchy on generators of known structure", criteria_hierarchy.main),
    mechind_overlap.EXPERIMENT,
    mechind_scenes.EXPERIMENT,
    cg_benchmark.EXPERIMENT,
    mechanism_sparsity.EXPERIMENT,
)


def figure_links(out: Path, name: str) -> str:
    """Markdown images of every figure a part wrote, relative to ``out`` (report.md's folder)."""
    pngs = sorted((out / name).glob("*.png"))
    return "".join(f"\n![{p.stem.replace('_', ' ')}]({name}/{p.name})\n" for p in pngs)


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--preset",
        choices=("quick", "paper"),
        default="quick",
        help="quick: minutes on a 2-core CPU; paper: the published protocols (GPU)",
    )
    ap.add_argument("--out", default="results", help="output folder; each part writes a subfolder")
    ap.add_argument("--only", nargs="+", choices=[p.name for p in PARTS], default=None, help="run only these parts")
    ap.add_argument("--fresh", action="store_true", help="discard earlier results in --out")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument(
        "--debug",
        action="store_true",
        help=f"full tracebacks instead of one-line errors (also: {framework.DEBUG_ENV}=1)",
    )
    args = ap.parse_args(argv)
    # --out is checked and held for the whole job before the first part starts; each part
    # then holds its own subfolder
    with framework.command_line(args.debug), report.locked_folder(args.out) as out:
        return _run(args, out)


def _run(args, out: Path) -> Path:
    parts = [p for p in PARTS if not args.only or p.name in args.only]
    for part in parts:  # a part's bad folder is found now, not after the parts before it ran
        report.check_output_folder(out / part.name, what="part folder")
    sections, t0 = [], time.perf_counter()
    for part in parts:
        print(f"\n=== {part.title} ===\n", flush=True)
        t = time.perf_counter()
        argv_part = (
            ["--out", str(out / part.name), "--preset", args.preset]
            + (["--fresh"] if args.fresh else [])
            + (["--no-progress"] if args.no_progress else [])
            + (["--debug"] if args.debug else [])
            + (list(part.main_job_args) if args.preset == "quick" else [])
        )
        res = part.main(argv_part)
        text = (
            res.get("markdown")
            if isinstance(res, dict) and res.get("markdown")
            else (out / part.name / "table.md").read_text()
        )
        sections.append(
            f"## {part.title}\n\n_{time.perf_counter() - t:.0f}s; files in `{out / part.name}`_\n\n"
            + text.replace("\n# ", "\n### ").lstrip("# ")
            + figure_links(out, part.name)
        )
    dev = report.device_info()
    head = (
        f"# mechind report ({args.preset} preset)\n\nDevice: {dev['backend']} ({dev['device_kind']} "
        f"x{dev['device_count']}), jax {dev['jax']}. Total wall time {time.perf_counter() - t0:.0f}s.\n\n"
    )
    path = report.write_atomic(out / "report.md", head + "\n\n".join(sections))
    print(f"\nreport: {path}")
    return path


if __name__ == "__main__":
    main()
