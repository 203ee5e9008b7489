"""iVAE side by side: the authors' PyTorch code and ``cg.fit`` on identical data.

The reference is Khemakhem et al.'s own training code (github.com/ilkhem/iVAE), run
unchanged from a fetched copy (never vendored): its ``runners.ivae.runner`` with its
``configs/ivae.yaml`` (cleanIVAE, 3-layer xtanh MLPs of width 100, decoder variance 0.1,
loss weights a=100 b=1 c=0 d=10, Adam lr 0.01 with ReduceLROnPlateau, batch 64,
20 epochs). Shims, and nothing else:

* the dataset is ours (:mod:`cg.ivae_data`, the same protocol), written in the file
  format its ``SyntheticDataset`` loads (``s``, ``x``, one-hot ``u``, ``m``, ``L``) at
  the path it looks for, so it trains on exactly the arrays ``cg.fit`` sees;
* ``ReduceLROnPlateau(verbose=...)`` is accepted and ignored (the argument was removed
  in torch 2.x; :func:`experiments.reference.checkouts.import_ivae`);
* the YAML config is read with ``yaml.safe_load`` (their ``yaml.load`` without a loader
  fails on PyYAML 6); ``--epochs`` may shorten it.

Both score MCC (Pearson, Hungarian matching) of the posterior means on the whole
dataset, as the reference's runner does. Needs the ``bench`` extra (torch, PyYAML).

    python -m experiments.reference.ivae --repo /path/to/iVAE --seeds 0 1 2 3 4 --acts xtanh lrelu
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cg import ivae_data
from experiments.reference import checkouts
from mechind.core import report


def write_reference_dataset(data: ivae_data.IVAEData, root: Path, cfg: dict) -> None:
    """Our arrays at the path and in the format the reference's ``SyntheticDataset`` loads."""
    name = "tcl_" + "_".join(str(cfg[k]) for k in ("nps", "ns", "dl", "dd", "nl", "s", "p", "act"))
    m = int(data.u.max()) + 1
    np.savez_compressed(
        root / f"{name}.npz", s=data.s, x=data.x, u=np.eye(m, dtype=np.float32)[data.u], m=data.centers, L=data.scales
    )


def run_reference(tree: Path, data: ivae_data.IVAEData, seed: int, act: str, epochs: int | None, work: Path) -> dict:
    """Train the reference once on ``data``; ``{"mcc", "seconds", "loss_history"}``."""
    import argparse as ap

    import torch
    import yaml

    runner = checkouts.import_ivae(tree)
    cfg = yaml.safe_load((tree / "configs" / "ivae.yaml").read_text())
    n_seg = int(data.u.max()) + 1
    cfg.update(
        nps=len(data.u) // n_seg,
        ns=n_seg,
        dl=data.s.shape[1],
        dd=data.x.shape[1],
        nl=len(data.weights),
        s=seed,
        act=act,
        p="gauss",
    )
    if epochs is not None:
        cfg["epochs"] = epochs
    cfg = ap.Namespace(**cfg, device=torch.device("cpu"))
    root = work / f"seed{seed}_{act}"
    root.mkdir(parents=True, exist_ok=True)
    write_reference_dataset(data, root, vars(cfg))
    np.random.seed(seed)
    torch.manual_seed(seed)
    args = ap.Namespace(data_path=str(root) + "/", seed=seed, n_sims=1)
    t = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints every epoch
            perfs, loss_hists, _ = runner(args, cfg)
    except ValueError as e:  # its MCC raises on NaN output: the run diverged
        return {"mcc": float("nan"), "seconds": time.perf_counter() - t, "failure": f"{type(e).__name__}: {e}"}
    return {"mcc": float(perfs[0]), "seconds": time.perf_counter() - t, "loss_history": loss_hists[0]}


def run_ours(datasets: list[ivae_data.IVAEData], seeds: list[int], method: str, **overrides) -> list[dict]:
    """``cg.fit`` with its defaults on the same datasets (all seeds as one vmapped program)."""
    from cg import fitting as cg_fit
    from mechind.core import metrics, rng

    t = time.perf_counter()
    fits = cg_fit.fit_many(
        rng.seed_keys(seeds),
        np.stack([d.x for d in datasets]),
        np.stack([d.u for d in datasets]),
        method=method,
        latent_dim=datasets[0].s.shape[1],
        progress=False,
        **overrides,
    )
    secs = (time.perf_counter() - t) / len(seeds)
    return [
        {"mcc": metrics.mcc(d.s, f.encode(d.x, d.u)), "seconds": secs, "failed": f.failed}
        for d, f in zip(datasets, fits)
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--repo",
        type=Path,
        required=True,
        help="the reference: a checkout of github.com/ilkhem/iVAE, or its bare git directory",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="dataset (and init) seeds")
    ap.add_argument(
        "--acts",
        nargs="+",
        default=["xtanh", "lrelu"],
        choices=["xtanh", "lrelu"],
        help="mixing nonlinearities (the reference's encoder/decoder use its config's xtanh)",
    )
    ap.add_argument("--segments", type=int, default=40, help="M segments (default 40)")
    ap.add_argument("--per-segment", type=int, default=1000, help="N points per segment (default 1000)")
    ap.add_argument("--latent-dim", type=int, default=5, help="n = d_x (default 5)")
    ap.add_argument("--epochs", type=int, default=None, help="reference epochs (default: its config's 20)")
    ap.add_argument("--methods", nargs="+", default=["ivae"], help="our methods to run beside it")
    ap.add_argument("--skip-reference", action="store_true", help="run ours only")
    ap.add_argument("--out", type=Path, default=Path("results/bench/ivae_reference.json"))
    args = ap.parse_args(argv)

    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tree = None if args.skip_reference else checkouts.checkout(args.repo, Path(tmp) / "ivae", checkouts.IVAE_MARKER)
        for act in args.acts:
            datasets = [
                ivae_data.generate(s, args.segments, args.per_segment, args.latent_dim, act=act) for s in args.seeds
            ]
            floor = [ivae_data_mcc(d) for d in datasets]
            ours = {m: run_ours(datasets, args.seeds, m) for m in args.methods}
            for i, (seed, d) in enumerate(zip(args.seeds, datasets)):
                row = {"act": act, "seed": seed, "mcc_observations": floor[i]}
                for m in args.methods:
                    row[f"{m}_mcc"] = ours[m][i]["mcc"]
                    row[f"{m}_seconds"] = ours[m][i]["seconds"]
                if tree is not None:
                    ref = run_reference(tree, d, seed, act, args.epochs, Path(tmp) / "data")
                    row["reference_mcc"] = ref["mcc"]
                    row["reference_seconds"] = ref["seconds"]
                    row["reference_failure"] = ref.get("failure")
                rows.append(row)
                print(json.dumps(row), flush=True)
                report.append_jsonl(args.out.with_suffix(".jsonl"), [row])  # survives an interruption
    args.out.write_text(
        json.dumps(
            {"segments": args.segments, "per_segment": args.per_segment, "latent_dim": args.latent_dim, "rows": rows},
            indent=1,
        )
    )
    cols = ["reference"] * (not args.skip_reference) + list(args.methods)
    print("\n| mixing | seed | observations | " + " | ".join(cols) + " |")
    print("|---" * (3 + len(cols)) + "|")
    for r in rows:
        print(
            f"| {r['act']} | {r['seed']} | {r['mcc_observations']:.3f} | "
            + " | ".join(f"{r[c + '_mcc']:.3f}" for c in cols)
            + " |"
        )
    for act in args.acts:
        sel = [r for r in rows if r["act"] == act]
        print(
            f"| {act} | mean | {np.mean([r['mcc_observations'] for r in sel]):.3f} | "
            + " | ".join(f"{np.nanmean([r[c + '_mcc'] for r in sel]):.3f}" for c in cols)
            + " |"
        )
    print("(mean over the runs that finished; a reference run whose output went NaN is shown as nan)")
    print(f"wrote {args.out}")
    return 0


def ivae_data_mcc(d: ivae_data.IVAEData) -> float:
    """MCC of the observations themselves against the sources (the floor)."""
    from mechind.core import metrics

    return metrics.mcc(d.s, d.x)


if __name__ == "__main__":
    sys.exit(main())
