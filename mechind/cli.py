"""The ``mechind`` command: every entry point of the project behind one installed name.

    mechind run <experiment> [--preset quick|paper] [options]   # one experiment, its own options
    mechind report [--preset quick|paper] [options]             # the main job: every part, one report
    mechind fit {slots,mechsparse,cg} data.npz [options]        # fit a pipeline to your arrays
    mechind criteria file.npz [--tol T] [--points B]            # Type D/M/S/H2 and G_D of a decoder or generator
    mechind example-data {slots,mechsparse,cg} out.npz          # small example input for `mechind fit`

``mechind <command> --help`` (and ``mechind run <experiment> --help``, ``mechind fit
<pipeline> --help``) shows each level's options. The experiments are discovered, not listed
here: the main job's parts (``experiments.__main__.PARTS``), then every module
``experiments.<name>`` whose ``EXPERIMENT`` is a :class:`experiments.framework.Experiment`.
The ``python -m`` forms (``python -m experiments``, ``python -m experiments.<name>``,
``python -m cg.fitting``) are the same code and keep working.

This module is the front door: the one place in the ``mechind`` package that imports the
other pipelines (``cg``, ``mechsparse``) and the experiments, each only when its command runs.
A mistake in what is given is one line on stderr and exit code 2 (``--debug`` or
``MECHIND_DEBUG=1`` for the traceback), before anything compiles.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import pkgutil
import sys
from pathlib import Path

import numpy as np

PIPELINES = {
    "slots": "slot autoencoder with compositional contrast (mechind.fit): x [N, d_x]",
    "mechsparse": "mechanism-sparsity VAE (mechsparse.fit): x [N, d_x] with actions a [N, d_a], "
    "or a time series x [T, d_x]",
    "cg": "CG-VAE / iVAE / beta-VAE (cg.fit): x [N, d_x] with domain labels u [N]",
}
COMMANDS = {
    "run": "run one experiment (its own options follow its name; `mechind run --help` lists them)",
    "report": "the main job: run every part of a preset and write one report (python -m experiments)",
    "fit": "fit a pipeline to your own arrays in an .npz",
    "criteria": "Type D, M, S, H2 and the G_D components of a fitted slot decoder or a saved generator",
    "example-data": "write a small example .npz that `mechind fit <pipeline>` takes",
}
DEBUG_ENV = "MECHIND_DEBUG"


class UsageError(ValueError):
    """A mistake on the command line (one line, exit code 2)."""


# ----------------------------------------------------------------------------- discovery


def experiments() -> dict:
    """``name -> (title, main(argv))`` of every runnable experiment: the main job's parts
    first, then each ``experiments.<module>`` whose ``EXPERIMENT`` is a framework experiment."""
    import experiments as pkg
    from experiments import __main__ as main_job
    from experiments import framework

    found = {p.name: (p.title, p.main) for p in main_job.PARTS}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"experiments.{info.name}")
        exp = getattr(mod, "EXPERIMENT", None)
        if isinstance(exp, framework.Experiment) and exp.name not in found:
            found[exp.name] = (exp.title, exp.main)
    return found


@contextlib.contextmanager
def _prog(name: str):
    """Parsers built inside take ``name`` as their program name (argparse reads sys.argv[0])."""
    saved = sys.argv[0] if sys.argv else ""
    if not sys.argv:
        sys.argv.append(name)
    sys.argv[0] = name
    try:
        yield
    finally:
        sys.argv[0] = saved


# ----------------------------------------------------------------------------- parsers


def parser() -> argparse.ArgumentParser:
    """The top level (for ``--help``); each command parses its own arguments."""
    ap = argparse.ArgumentParser(
        prog="mechind",
        description="Identifiable disentangled representation learning in JAX: run the experiments, "
        "fit the pipelines to your own data, evaluate the mechanistic-independence criteria.",
        epilog="`mechind <command> --help` for a command's options.",
    )
    sub = ap.add_subparsers(dest="command", metavar="command")
    for name, text in COMMANDS.items():
        sub.add_parser(name, help=text)
    return ap


def _help_flag(argv) -> bool:
    return not argv or argv[0] in ("-h", "--help")


def _run_help() -> str:
    lines = ["usage: mechind run <experiment> [--preset quick|paper] [options]", "", COMMANDS["run"] + ".", ""]
    lines += ["experiments:"] + [f"  {name:<22} {title}" for name, (title, _) in experiments().items()]
    lines += ["", "`mechind run <experiment> --help` shows the experiment's own options."]
    return "\n".join(lines)


def _fit_help() -> str:
    lines = ["usage: mechind fit <pipeline> data.npz [options]", "", COMMANDS["fit"] + ".", "", "pipelines:"]
    lines += [f"  {k:<11} {v}" for k, v in PIPELINES.items()]
    lines += [
        "",
        "`mechind fit <pipeline> --help` shows its options; `mechind example-data <pipeline> out.npz` writes an input.",
    ]
    return "\n".join(lines)


def _common(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--seed", type=int, default=0, help="seed of the initialisation and batches (default 0)")
    ap.add_argument("--num-steps", type=int, default=None, help="training steps (default: the pipeline's fit default)")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="any other setting of the pipeline's fit, e.g. --set lr=0.003 'hidden=[64,64]' (values parsed as JSON)",
    )
    ap.add_argument("--preprocess", default="standardize", choices=("standardize", "none"), help="z-score x (default)")
    ap.add_argument(
        "--out", type=Path, default=None, help="output .npz (default: <data>_<pipeline>_fit.npz); never the input"
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--debug", action="store_true", help=f"full tracebacks (also: {DEBUG_ENV}=1)")


def slots_parser() -> argparse.ArgumentParser:
    from mechind import fitting

    ap = argparse.ArgumentParser(
        prog="mechind fit slots",
        description="Fit a slot autoencoder with compositional contrast (mechind.fit) to an .npz holding x [N, d_x] "
        "(optionally the true latents z [N, K * s]: then MCC is reported), and evaluate Type D, M, S, H2 and the "
        "G_D components of the learned decoder at the encodings of the data. Writes the latents, the loss history "
        "and the model (`mechind criteria` reads it) to --out.",
    )
    ap.add_argument("data", type=Path, help=".npz file with array x (and optionally z)")
    ap.add_argument("--num-slots", type=int, required=True, help="K, the number of slots")
    ap.add_argument("--slot-dim", type=int, required=True, help="latents per slot")
    ap.add_argument("--lam", type=float, default=None, help=f"contrast weight (default {fitting.FIT_DEFAULTS['lam']})")
    ap.add_argument("--points", type=int, default=256, help="data points the criteria are evaluated at (default 256)")
    ap.add_argument("--tol", type=float, default=fitting.DEFAULT_TOL, help="relative zero of a derivative")
    ap.add_argument(
        "--only", nargs="+", default=None, metavar="NAME", help=f"criteria (default {list(fitting.CRITERIA)})"
    )
    _common(ap)
    return ap


def mechsparse_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mechind fit mechsparse",
        description="Fit the mechanism-sparsity VAE (mechsparse.fit) to an .npz holding x [N, d_x] and actions "
        "a [N, d_a], or (--time) a time series x [T, d_x] in time order, optionally with episode labels "
        "episode [T]; optionally the true latents z (then MCC is reported). Writes the latents, the learned "
        "graph and the loss history to --out.",
    )
    ap.add_argument("data", type=Path, help=".npz file with x and a (or x and, with --time, optionally episode)")
    ap.add_argument("--time", action="store_true", help="x is a time series (the graph is z^t -> z^t+1)")
    ap.add_argument("--latent-dim", type=int, default=None, help="number of latents (default: the width of z if given)")
    ap.add_argument("--coeff", type=float, default=1.0, help="sparsity penalty weight (default 1)")
    ap.add_argument("--max-edges", type=float, default=None, help="constrain the expected number of edges")
    ap.add_argument("--full-graph", action="store_true", help="freeze the full graph (no sparsity)")
    _common(ap)
    return ap


def _parse_settings(items) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set takes FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            pass
        out[k] = tuple(v) if isinstance(v, list) else v
    return out


# ----------------------------------------------------------------------------- files


def load_npz(path: Path, required: tuple, optional: tuple = ()) -> dict:
    """The named arrays of an ``.npz``; one-line ``UsageError`` for anything else."""
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give an .npz file")
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    try:
        f = np.load(path, allow_pickle=False)
        if not hasattr(f, "files"):
            raise UsageError(f"{path} holds one array, not an .npz (save with np.savez)")
        with f:
            missing = [k for k in required if k not in f.files]
            if missing:
                raise UsageError(f"{path} lacks array(s) {missing}; it has {f.files}")
            return {k: f[k] for k in f.files if k in required or k in optional or not (required or optional)}
    except UsageError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise UsageError(f"{path} is not an .npz file numpy can read (save the arrays with np.savez)") from None
        raise UsageError(f"{path} cannot be read as an .npz file: {e}") from None
    except (OSError, EOFError) as e:
        raise UsageError(f"{path} cannot be read as an .npz file: {e}") from None


def _output(args, pipeline: str) -> Path:
    from cg import fitting as cg_fitting  # one definition of the output rules for every fit command

    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a file name such as {args.out / 'fit.npz'}")
    out = cg_fitting._output_path(args.out or args.data.with_name(f"{args.data.stem}_{pipeline}_fit.npz"))
    problem = cg_fitting._check_output(out, args.data)
    if problem:
        raise UsageError(problem)
    return out


def _save(out: Path, arrays: dict) -> None:
    from mechind.core import report

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    report.write_atomic(out, buf.getvalue())


def _mcc(arrays: dict, z_hat: np.ndarray, n_latents: int) -> dict:
    if "z" not in arrays:
        return {}
    from mechind.core import metrics

    z = np.asarray(arrays["z"])
    z = z.reshape(len(z), -1)
    if len(z) != len(z_hat) or not np.all(np.isfinite(z)):
        raise UsageError(f"z must be the true latents with one finite row per row of x, got shape {z.shape}")
    return {"mcc": metrics.mcc(z, z_hat)} if z.shape[1] == n_latents else {}


# ----------------------------------------------------------------------------- commands


def fit_slots(argv) -> int:
    from mechind import fitting
    from mechind.core import rng

    args = slots_parser().parse_args(argv)
    with _errors(args.debug):
        arrays = load_npz(args.data, ("x",), ("z",))
        out = _output(args, "slots")
        settings = _parse_settings(args.set)
        if args.num_steps is not None:
            settings["num_steps"] = args.num_steps
        if args.lam is not None:
            settings["lam"] = args.lam
        if args.points < 1:
            raise UsageError(f"--points must be >= 1, got {args.points}")
        _check_names(args.only)
        x = arrays["x"]
        fitted = fitting.fit(
            rng.key(args.seed),
            x,
            num_slots=args.num_slots,
            slot_dim=args.slot_dim,
            preprocess=args.preprocess,
            progress=not args.no_progress,
            **settings,
        )
        z_hat = fitted.encode(x)
        crit = evaluate_points(fitted.decoder, z_hat[: args.points], fitted.slot_sizes, args.tol, args.only)
        summary = {
            "pipeline": "slots",
            "samples": int(len(x)),
            "num_slots": fitted.config.num_slots,
            "slot_dim": fitted.config.slot_dim,
            "lam": fitted.config.lam,
            "steps": fitted.config.num_steps,
            "final_loss": float(fitted.loss_history[-1]) if fitted.loss_history.size else None,
            "recon_r2": round(fitted.recon_r2, 4),
            "failed": fitted.failed,
            **_mcc(arrays, z_hat, z_hat.shape[1]),
            "decoder": crit.summary(),
        }
        _save(out, {"z_hat": z_hat, **fitted.to_arrays()})
        print(json.dumps(summary, indent=1))
        print(f"wrote {out}")
    return 0


def fit_mechsparse(argv) -> int:
    from mechind.core import rng
    from mechsparse import fitting

    args = mechsparse_parser().parse_args(argv)
    with _errors(args.debug):
        arrays = load_npz(args.data, ("x",), ("a", "z", "episode"))
        out = _output(args, "mechsparse")
        if args.time and "a" in arrays:
            raise UsageError(
                f"{args.data} holds actions a, and --time was given: pick one (drop --time for action data)"
            )
        if not args.time and "a" not in arrays:
            raise UsageError(f"{args.data} holds no actions a: for a time series pass --time")
        settings = _parse_settings(args.set)
        if args.num_steps is not None:
            settings["num_steps"] = args.num_steps
        latent_dim = args.latent_dim
        if latent_dim is None:
            if "z" not in arrays:
                raise UsageError("give --latent-dim (the file has no true latents z to take it from)")
            latent_dim = int(np.asarray(arrays["z"]).reshape(len(arrays["z"]), -1).shape[1])
        kw = {"time": arrays.get("episode", True)} if args.time else {"actions": arrays["a"]}
        fitted = fitting.fit(
            rng.key(args.seed),
            arrays["x"],
            latent_dim=latent_dim,
            coeff=args.coeff,
            max_edges=args.max_edges,
            learn_graph=not args.full_graph,
            preprocess=args.preprocess,
            progress=not args.no_progress,
            **kw,
            **settings,
        )
        z_hat = fitted.encode(arrays["x"])
        summary = {
            "pipeline": "mechsparse",
            "kind": fitted.kind,
            "samples": int(len(arrays["x"])),
            "latent_dim": latent_dim,
            "steps": fitted.config.num_steps,
            "final_loss": float(fitted.loss_history[-1]) if fitted.loss_history.size else None,
            "failed": fitted.failed,
            **_mcc(arrays, z_hat, latent_dim),
            "edges_learned": int(fitted.edges.sum()),
            "graph": fitted.edges.astype(int).tolist(),
        }
        _save(
            out,
            {
                "z_hat": z_hat,
                "graph": fitted.graph,
                "loss_history": fitted.loss_history,
                "x_mean": fitted.x_mean,
                "x_std": fitted.x_std,
            },
        )
        print(json.dumps(summary, indent=1))
        print(f"wrote {out}")
    return 0


def fit_cg(argv) -> int:
    from cg import fitting as cg_fitting

    return cg_fitting.main(argv, prog="mechind fit cg")


def _check_names(names) -> None:
    from mechind import criteria

    unknown = [n for n in names or () if n not in criteria.names()]
    if unknown:
        raise UsageError(f"unknown criterion {unknown[0]!r}; registered: {criteria.names()}")


def evaluate_points(fn, z, slot_sizes, tol, names=None):
    from mechind import fitting

    try:
        return fitting.evaluate_criteria(fn, z, slot_sizes, tol=tol, names=names or fitting.CRITERIA)
    except ValueError as e:
        raise UsageError(str(e)) from None


def criteria_command(argv) -> int:
    from mechind import criteria, fitting

    ap = argparse.ArgumentParser(
        prog="mechind criteria",
        description="Which of the criteria (Type D, M, S, H2 by default; any registered one with --only) a slot "
        "decoder or generator satisfies, and its G_D components, at B points. FILE is the output of `mechind fit "
        "slots` (the learned decoder, at the encodings of the data it was fitted to) or of `mechind example-data "
        "slots` (the true generator, at its latents). Prints the share of points where each holds.",
    )
    ap.add_argument("file", type=Path, help="a `mechind fit slots` output or a `mechind example-data slots` file")
    ap.add_argument("--points", type=int, default=256, help="points to evaluate at (default 256)")
    ap.add_argument(
        "--tol",
        type=float,
        default=None,
        help=f"relative zero of a derivative (default: {fitting.DEFAULT_TOL} for a learned decoder, "
        "1e-6 for a generator)",
    )
    ap.add_argument(
        "--only", nargs="+", default=None, metavar="NAME", help=f"criteria to evaluate, of {criteria.names()}"
    )
    ap.add_argument("--debug", action="store_true", help=f"full tracebacks (also: {DEBUG_ENV}=1)")
    args = ap.parse_args(argv)
    with _errors(args.debug):
        if args.points < 1:
            raise UsageError(f"--points must be >= 1, got {args.points}")
        arrays = load_npz(args.file, ())
        if "config" in arrays and "z_hat" in arrays:
            fitted = fitting.Fitted.from_arrays(arrays)
            what, fn, z, sizes, tol = (
                "learned decoder",
                fitted.decoder,
                arrays["z_hat"],
                fitted.slot_sizes,
                fitting.DEFAULT_TOL,
            )
        elif {"w1", "w2", "z", "num_slots", "slot_dim"} <= set(arrays):
            fn, sizes = fitting.generator_from_arrays(arrays)
            what, z, tol = "generator", np.asarray(arrays["z"]).reshape(len(arrays["z"]), -1), 1e-6
        else:
            raise UsageError(
                f"{args.file} is neither a `mechind fit slots` output (z_hat, config) nor a slot generator "
                "(w1, w2, z, num_slots, slot_dim, as `mechind example-data slots` writes)"
            )
        tol = args.tol if args.tol is not None else tol
        rep = evaluate_points(fn, np.asarray(z, np.float32)[: args.points], sizes, tol, args.only)
        print(json.dumps({"what": what, "points": int(min(args.points, len(z))), **rep.summary()}, indent=1))
    return 0


def example_data_command(argv) -> int:
    ap = argparse.ArgumentParser(
        prog="mechind example-data",
        description="Write a small example .npz for `mechind fit <pipeline>`: slots: x and the true latents z of a "
        "Type-D slot generator (overlap 0; --overlap for others) and its weights (`mechind criteria` reads them); "
        "mechsparse: x, actions a (or with --kind time a series x with episode labels), z and the true graph; "
        "cg: x, domain labels u and z.",
    )
    ap.add_argument("pipeline", choices=tuple(PIPELINES), help="which fit the file is for")
    ap.add_argument("out", type=Path, help="the .npz to write (an existing file is never overwritten)")
    ap.add_argument(
        "--samples", type=int, default=None, help="rows (default 1024; mechsparse 2048, what its default fit needs)"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    ap.add_argument("--overlap", type=float, default=0.0, help="slots: Jacobian-support overlap (default 0: Type D)")
    ap.add_argument(
        "--kind", choices=("action", "time"), default="action", help="mechsparse: action data or a time series"
    )
    ap.add_argument("--debug", action="store_true", help=f"full tracebacks (also: {DEBUG_ENV}=1)")
    args = ap.parse_args(argv)
    with _errors(args.debug):
        out = args.out if args.out.name.endswith(".npz") else args.out.with_name(args.out.name + ".npz")
        if out.exists():
            raise UsageError(f"{out} exists; pick another name (example data never overwrites a file)")
        if not out.parent.is_dir():
            raise UsageError(f"folder {out.parent} does not exist")
        if args.samples is None:
            args.samples = 2048 if args.pipeline == "mechsparse" else 1024
        if args.samples < 64:
            raise UsageError(f"--samples must be >= 64 (a batch and the held-out rows), got {args.samples}")
        arrays = example_arrays(args.pipeline, args.seed, args.samples, overlap=args.overlap, kind=args.kind)
        _save(out, arrays)
        print(f"wrote {out}: " + ", ".join(f"{k} {list(np.shape(v))}" for k, v in arrays.items()))
        print(f"fit it: {fit_example(args.pipeline, out, args.kind)}")
    return 0


def example_arrays(pipeline: str, seed: int, n: int, *, overlap: float = 0.0, kind: str = "action") -> dict:
    """Small example arrays of each pipeline (what ``mechind example-data`` writes)."""
    import jax

    from mechind.core import rng

    key = rng.key(seed)
    if pipeline == "slots":
        from mechind import fitting

        return fitting.example_data(key, n, overlap=overlap)
    if pipeline == "mechsparse":
        from mechsparse import fitting as ms_fitting

        return ms_fitting.example_data(key, n if kind == "action" else n // 2, kind=kind)
    from mechind.core import datasets

    spec = datasets.make("cg_domains", num_domains=4, latent_dim=3)
    d = jax.device_get(jax.jit(spec.sample, static_argnums=1)(key, n))  # one compile, not op by op
    return {"x": np.asarray(d["x"]), "u": np.asarray(d["u"]), "z": np.asarray(d["z"])}


def fit_example(pipeline: str, path: Path, kind: str = "action") -> str:
    """The command line that fits an example file of ``pipeline``."""
    return {
        "slots": f"mechind fit slots {path} --num-slots 2 --slot-dim 2",
        "mechsparse": f"mechind fit mechsparse {path}" + (" --time" if kind == "time" else ""),
        "cg": f"mechind fit cg {path} --method ivae",
    }[pipeline]


@contextlib.contextmanager
def _errors(debug: bool):
    """A user's mistake (``ValueError``) is one line and exit code 2; Ctrl-C one line, 130."""
    from mechind.core import report

    if report.debug_requested(debug):
        yield
        return
    try:
        yield
    except ValueError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


def main(argv=None) -> int:
    """``mechind <command> ...``: the exit status (0 done, 2 a user's mistake, 130 Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if _help_flag(argv):
        parser().print_help()
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        if _help_flag(rest):
            print(_run_help())
            return 0 if rest else 2
        found = experiments()
        if rest[0] not in found:
            print(f"error: unknown experiment {rest[0]!r}; one of: {', '.join(found)}", file=sys.stderr)
            return 2
        with _prog(f"mechind run {rest[0]}"):
            found[rest[0]][1](rest[1:])
        return 0
    if cmd == "report":
        from experiments import __main__ as main_job

        with _prog("mechind report"):
            main_job.main(rest)
        return 0
    if cmd == "fit":
        if _help_flag(rest):
            print(_fit_help())
            return 0 if rest else 2
        commands = {"slots": fit_slots, "mechsparse": fit_mechsparse, "cg": fit_cg}
        if rest[0] not in commands:
            print(f"error: unknown pipeline {rest[0]!r}; one of: {', '.join(commands)}", file=sys.stderr)
            return 2
        return commands[rest[0]](rest[1:])
    if cmd == "criteria":
        return criteria_command(rest)
    if cmd == "example-data":
        return example_data_command(rest)
    parser().print_usage(sys.stderr)
    print(f"mechind: error: unknown command {cmd!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


def entry() -> None:
    """The console script: ``sys.exit(main())``."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
