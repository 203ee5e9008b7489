"""One experiment framework: a typed config per experiment, and one driver for all of them.

An experiment supplies

* a frozen dataclass **config**: every setting of the experiment (``seeds``, ``steps`` and
  ``chunk_steps`` among them), each field with its
  ``help`` in ``metadata`` (and ``choices`` where the values are a closed set), validated
  in ``__post_init__``; its presets are instances of it;
* **groups** ``config -> [sweep.Group]``: the compiled groups, each with a key derived
  from everything that can change a number (a changed setting is a new group, never a
  reuse of old results);
* **report** ``(records, config, out, info) -> markdown``: its tables and figures,
  written under ``out``.

The driver (:func:`main`) owns the rest: the command line (one option per config field,
derived from the dataclass), the sweep, resume, the results file and the report. The
main job (``python -m experiments``) lists experiments in its registry, so a new
pipeline joins the report by adding one line there.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
import time
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from experiments import executors, sweep
from mechind.core import distributed, report, runner

DEBUG_ENV = report.DEBUG_ENV
debug_requested = report.debug_requested  # one definition, in the core: cg.fitting's command line uses it too


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {' '.join(str(message).split())}\n"


@contextlib.contextmanager
def command_line(debug: bool = False):
    """What a command line shows for what goes wrong, around its work:

    * a user's mistake (:class:`mechind.core.report.UserError`): ``error: <message>``, exit 2;
    * Ctrl-C: one line with where it stopped and that the same command resumes, exit 130;
    * warnings: one line each (``warning: ...``), orbax's absl log lines muted (the
      runner's own warning says what happened to a checkpoint in one line).

    With ``debug`` (or ``MECHIND_DEBUG=1``) everything is raised and logged in full."""
    if debug_requested(debug):
        yield
        return
    absl = logging.getLogger("absl")
    saved = warnings.formatwarning, absl.level
    warnings.formatwarning = _one_line_warning
    absl.setLevel(logging.CRITICAL)
    try:
        yield
    except report.UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt as e:
        where = f" ({e.describe()})" if isinstance(e, runner.Interrupted) else ""
        print(
            f"interrupted{where}; finished groups are saved: run the same command to resume"
            + (" from the last checkpoint" if isinstance(e, runner.Interrupted) and e.step else ""),
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(130) from None
    finally:
        warnings.formatwarning = saved[0]
        absl.setLevel(saved[1])


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--max-runs-per-call 0`` would train nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def setting(default, help: str, choices=None):  # noqa: A002 (the argparse name)
    """A config field with its command-line help (and closed set of values)."""
    meta = {"help": help} | ({"choices": tuple(choices)} if choices is not None else {})
    return dataclasses.field(default=default, metadata=meta)


def validate(config, *checks: tuple[bool, str]) -> None:
    """Raise ``ValueError`` with the message of the first failed check, after the checks
    every config shares (``seeds``, ``num_steps`` and ``chunk_steps``, where present, at least 1)."""
    common = [
        (getattr(config, f) >= 1, f"--{f.replace('_', '-')} must be >= 1, got {getattr(config, f)}")
        for f in ("seeds", "num_steps", "steps", "chunk_steps")
        if hasattr(config, f)
    ]
    for ok, msg in (*common, *checks):
        if not ok:
            raise ValueError(msg)


def default_of(pipeline_config: type, name: str):
    """A pipeline config's own default for its field ``name``: what an experiment's setting
    of the same name starts from (defaults live in the pipeline's config, nowhere else)."""
    for f in dataclasses.fields(pipeline_config):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise AttributeError(f"{pipeline_config.__name__}.{name} has no default")
    raise AttributeError(f"{pipeline_config.__name__} has no setting {name!r}")


def overrides(config, pipeline_config: type) -> dict:
    """The settings of an experiment's ``config`` that a pipeline's config class also has,
    by name: what the experiment overrides. A pipeline's config owns its defaults; an
    experiment declares only the fields it sweeps, sets differently or offers as options,
    under the pipeline's own names and starting from the pipeline's defaults
    (:func:`default_of`), and builds the pipeline's config with
    ``pipeline_config(**overrides(config, pipeline_config), **the rest)``."""
    names = {f.name for f in dataclasses.fields(pipeline_config)}
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name in names}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What an experiment supplies to the driver (module docstring)."""

    name: str  # results folder under the main job's --out, and the records' "experiment"
    title: str  # section title in the main job's report
    doc: str  # the module docstring: the command line's description
    config: type  # the frozen dataclass of its settings
    presets: Mapping[str, Any]  # preset name -> config instance
    groups: Callable[[Any], list[sweep.Group]]
    report: Callable[[list[dict], Any, Path, dict], str]
    main_job_args: tuple[str, ...] = ()  # options the main job adds for its quick preset (to bound its time)

    def main(self, argv=None) -> dict:
        return main(self, argv)


def _parser_type(tp):
    """``(argparse type, nargs)`` of a config field's annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        return args[0], "+"
    if origin in (typing.Union, types.UnionType):  # "int | None": the optional's own type
        inner = [a for a in args if a is not type(None)]
        return _parser_type(inner[0])
    return tp, None


def add_config_args(ap: argparse.ArgumentParser, cls) -> None:
    """One option per field of the config dataclass ``cls``; the default ``None`` means
    "the preset's value", which the help shows."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help", "") + " (default: the preset's)"
        if hints[f.name] is bool:  # --name / --no-name
            ap.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
            continue
        kind, nargs = _parser_type(hints[f.name])
        choices = f.metadata.get("choices")
        ap.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=kind,
            nargs=nargs,
            default=None,
            choices=choices,
            metavar=None if choices else f.name.upper(),
            help=help_text,
        )


def config_from_args(args: argparse.Namespace, preset) -> Any:
    """The preset with every option that was given replaced (lists become tuples);
    the config's ``__post_init__`` validates the result."""
    given = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(preset) if getattr(args, f.name, None) is not None
    }
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return dataclasses.replace(preset, **given)


def describe(config) -> str:
    """Every setting of a config as ``name value`` pairs, for report headers."""
    return ", ".join(f"{f.name} {getattr(config, f.name)}" for f in dataclasses.fields(config))


def common_args(ap: argparse.ArgumentParser, exp: Experiment) -> None:
    ap.add_argument(
        "--preset",
        choices=tuple(exp.presets),
        default="quick",
        help="quick: minutes on a 2-core CPU, same qualitative picture; "
        "paper: the published protocol (meant for a GPU)",
    )
    ap.add_argument("--out", default=f"results/{exp.name}", help="output folder (results.jsonl, tables, figures)")
    ap.add_argument(
        "--max-runs-per-call",
        type=positive_int,
        default=None,
        help="train at most this many runs at once (to bound device memory); part of the run "
        "layout recorded with every result",
    )
    ap.add_argument("--fresh", action="store_true", help="discard earlier results and checkpoints in --out")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--report-only", action="store_true", help="rebuild tables and figures from results.jsonl")
    ap.add_argument(
        "--debug", action="store_true", help=f"full tracebacks instead of one-line errors (also: {DEBUG_ENV}=1)"
    )
    executors.add_args(ap)


def _holding(args, out: str):
    """The results folder held for this sweep: alone for ``--executor local``; shared by
    drivers whose workers claim every group (ray, slurm); under ``jax.distributed`` by
    process 0 for all (the others only check it)."""
    if not distributed.is_writer():
        return contextlib.nullcontext(report.check_output_folder(out))
    # --fresh deletes what other drivers on a shared folder may be training from: alone too
    return report.locked_folder(out, exclusive=args.executor == "local" or bool(getattr(args, "fresh", False)))


def main(exp: Experiment, argv=None) -> dict:
    """Parse the command line, run every group not already done, and write the report.

    Returns ``{"records", "markdown", "wall_s", "config"}``. Every mistake in what the user
    gave ends before anything compiles, in one line: bad settings in an argparse error
    (exit 2), a bad ``--out`` (a file, not writable) or one in use by another run, a
    damaged ``results.jsonl`` or results of another run layout in ``error: ...`` (exit 2).
    Ctrl-C is one line and exit 130 (see :func:`command_line`)."""
    ap = argparse.ArgumentParser(description=exp.doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap, exp)
    add_config_args(ap, exp.config)
    args = ap.parse_args(argv)
    with command_line(args.debug):
        executors.check(args)  # a bad executor option or a missing package: one line, before any work
        # before the groups are built: they touch the jax backend, which must start distributed
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    try:
        config = config_from_args(args, exp.presets[args.preset])
        groups = exp.groups(config)  # settings only the groups can judge fail here, before any work
    except (ValueError, TypeError) as e:
        if debug_requested(args.debug):
            raise
        ap.error(str(e))
    with command_line(args.debug), _holding(args, args.out) as out:
        return _run(exp, args, config, groups, out)


def _run(exp: Experiment, args, config, groups: list[sweep.Group], out: Path) -> dict:
    t0 = time.perf_counter()
    if not args.report_only:
        sweep.run_sweep(
            groups,
            out,
            experiment=exp.name,
            preset=args.preset,
            chunk_steps=config.chunk_steps,
            progress=not args.no_progress,
            fresh=args.fresh,
            max_runs_per_call=args.max_runs_per_call,
            executor=executors.from_args(args, out),
            lease_s=args.claim_lease,
        )
    ids = sweep.run_ids(groups)
    if not distributed.is_writer():  # process 0 writes the report
        records = [r for r in sweep.read_results(out) if r.get("run_id") in ids]
        return {"records": records, "markdown": "", "wall_s": time.perf_counter() - t0, "config": config}
    sweep.merge_results(out)  # group files a stopped driver left unmerged (--report-only too)
    records = [r for r in report.unique_records(report.read_jsonl(out / "results.jsonl")) if r.get("run_id") in ids]
    if not records:
        raise report.UserError(f"no results in {out}/results.jsonl for these settings")
    info = {"preset": args.preset, "wall_s": time.perf_counter() - t0, "device": records[0]["device"]}
    text = exp.report(records, config, out, info)
    print(text)
    return {"records": records, "markdown": text, "wall_s": info["wall_s"], "config": config}
