"""iVAE and CG-VAE on iVAE's own protocol: MCC against the number of segments.

The regime where identification is *proven* (Khemakhem et al. 2020: 2n + 1 segments
suffice for conditionally Gaussian sources), checked before any claim of the CG paper
is tested. Data: :mod:`cg.ivae_data` (n = d_x = 5, 1,000 points per segment, 3-layer
tied xtanh mixing, centred Gaussian sources). Models: :func:`cg.fit`'s defaults
(whitened x), one vmapped program per (segments, method) over the seeds; the dataset of
seed s is the same for every method, so comparisons are paired on the seed. The floor
is the MCC of the raw observations themselves.

    python -m experiments.ivae_segments --preset quick
    python -m experiments.ivae_segments --segments 40 --methods ivae --seeds 5

Writes ``results.jsonl``, ``table.md`` / ``table.csv`` (rows method, columns segments)
and ``mcc_vs_segments.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from cg import fitting, ivae_data, models
from experiments import sweep
from mechind import metrics, report, rng

PRESETS = {
    # CPU, about 30 minutes: cg.fit's defaults in full, iVAE and CG-VAE, 5 seeds
    "quick": dict(segments=(2, 5, 10, 20, 40), seeds=5, steps=20_000, methods=("ivae", "cg_vae"),
                  latent_dim=5, per_segment=1_000, act="xtanh", density=1.0, chunk=5_000),
    # cg.fit's defaults in full, every method, 10 seeds (meant for a GPU)
    "paper": dict(segments=(2, 5, 10, 20, 40), seeds=10, steps=fitting.FIT_DEFAULTS["num_steps"],
                  methods=tuple(models.METHODS), latent_dim=5, per_segment=1_000, act="xtanh", density=1.0,
                  chunk=10_000),
}
FLOOR = "observations x (no model)"


def datasets(p: dict, seeds: list[int], segments: int) -> list[ivae_data.IVAEData]:
    return [ivae_data.generate(s, segments, p["per_segment"], p["latent_dim"], act=p["act"], density=p["density"])
            for s in seeds]


def finish(mt: dict) -> dict:
    """Host-side scalars of one run: MCC, active latents, and support F1 for sparse data."""
    out = {"mcc": metrics.mcc_from_corr(mt["corr"]), "active_latents": int(np.sum(mt["active"] > 0.5)),
           "latent_std": float(mt["latent_std"])}
    if "jac_abs" in mt:
        perm = metrics.matched_permutation(mt["corr"])
        out["support_f1"] = metrics.support_f1(mt["jac_abs"], np.asarray(mt["support"], bool), perm)
        out["structural_sparsity"] = int(ivae_data.structural_sparsity(np.asarray(mt["support"], bool)).sum())
    return out


def build_groups(p: dict, seeds: list[int], steps: int) -> list[sweep.Group]:
    """One group per (segments, method); its key is the whole fit config and the generator's
    settings and version, so a changed setting never reuses old results."""
    groups = []
    for m in p["segments"]:
        data = datasets(p, seeds, m)
        xs, us = np.stack([d.x for d in data]), np.stack([d.u for d in data])
        s = jnp.asarray(np.stack([d.s for d in data]))
        truth = {"s": s}
        if p["density"] < 1:
            truth["support"] = jnp.asarray(np.stack([d.support for d in data]))
        for method in p["methods"]:
            prep = fitting.prepare(xs, us, method=method, latent_dim=p["latent_dim"], num_steps=steps)
            key = {"segments": m, "method": method, "config": dataclasses.asdict(prep.config),
                   "generator": {"version": ivae_data.GENERATOR_VERSION, "act": p["act"],
                                 "per_segment": p["per_segment"], "latent_dim": p["latent_dim"],
                                 **({"density": p["density"]} if p["density"] < 1 else {})},
                   "preprocess": "whiten"}
            n_samples, obs_dim = prep.data["x"].shape[1:]
            groups.append(sweep.Group(
                key=key, keys=rng.seed_keys(seeds), hparams=prep.hparams(),
                make_task=lambda c=prep.config, d=obs_dim, n=n_samples: fitting.make_fit_task(c, d, n, p["latent_dim"]),
                runs=[{"seed": sd} for sd in seeds], data={**prep.data, **truth}, finish=finish))
    return groups


def floor_records(p: dict, seeds: list[int]) -> list[dict]:
    """MCC of the raw observations against the sources, per (segments, seed)."""
    out = []
    for m in p["segments"]:
        for sd, d in zip(seeds, datasets(p, seeds, m)):
            out.append({"method": FLOOR, "segments": m, "seed": sd, "mcc": metrics.mcc(d.s, d.x), "failed": False})
    return out


def figure(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in records}):
        rs = [r for r in records if r["method"] == method and not r["failed"]]
        segs = sorted({r["segments"] for r in rs})
        mean = [np.mean([r["mcc"] for r in rs if r["segments"] == s]) for s in segs]
        std = [np.std([r["mcc"] for r in rs if r["segments"] == s]) for s in segs]
        style = dict(ls="--", color="gray") if method == FLOOR else dict(marker="o")
        ax.errorbar(segs, mean, yerr=std, label=method, capsize=3, **style)
    ax.axhline(0.9, color="k", lw=0.5, ls=":")
    ax.set_xscale("log")
    ticks = sorted({r["segments"] for r in records})
    ax.minorticks_off()
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("segments (log scale)")
    ax.set_ylabel("MCC (mean ± std over seeds)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_common_args(ap, "results/ivae_segments")
    ap.add_argument("--segments", type=int, nargs="+", default=None, help="numbers of segments (default: the preset's)")
    ap.add_argument("--methods", nargs="+", default=None, choices=sorted(models.METHODS),
                    help="methods to fit (default: the preset's)")
    ap.add_argument("--act", choices=("xtanh", "lrelu"), default=None, help="mixing nonlinearity (default xtanh)")
    ap.add_argument("--density", type=float, default=None,
                    help="below 1: the sparse variant (Jacobian support of this density, structural zeros); "
                         "adds support recovery (F1 of the learned decoder's thresholded |J|) to the report")
    args = ap.parse_args(argv)
    p = dict(PRESETS[args.preset])
    for k in ("segments", "methods", "act", "density"):
        if getattr(args, k) is not None:
            p[k] = tuple(getattr(args, k)) if k in ("segments", "methods") else getattr(args, k)
    try:
        n_seeds, steps = sweep.seeds_and_steps(args, p)
        if min(p["segments"]) < 1:
            raise ValueError(f"--segments must be >= 1, got {p['segments']}")
        if not 0 < p["density"] <= 1:
            raise ValueError(f"--density must lie in (0, 1], got {p['density']}")
    except ValueError as e:
        ap.error(str(e))
    seeds = list(range(n_seeds))
    out = Path(args.out)
    t0 = time.perf_counter()
    groups = build_groups(p, seeds, steps)
    if not args.report_only:
        sweep.run_sweep(groups, out, experiment="ivae_segments", preset=args.preset,
                        chunk_steps=args.chunk_steps or p["chunk"], progress=not args.no_progress,
                        fresh=args.fresh, max_runs_per_call=args.max_runs_per_call)
    ids = {g.id for g in groups}
    records = [r for r in report.unique_records(report.read_jsonl(out / "results.jsonl")) if r.get("group") in ids]
    if not records:
        raise SystemExit(f"no results in {out}/results.jsonl for these settings")
    records = records + floor_records(p, seeds)
    dev = next(r["device"] for r in records if "device" in r)
    md, csv = sweep.mean_std_table(records, ("method",), "segments", "mcc", col_fmt="{} segments")
    md_a, _ = sweep.mean_std_table([r for r in records if r["method"] != FLOOR], ("method",), "segments",
                                   "active_latents", col_fmt="{} segments")
    models_only = [r for r in records if r["method"] != FLOOR]
    md_f = sweep.mean_std_table(models_only, ("method",), "segments", "support_f1", col_fmt="{} segments")[0] \
        if p["density"] < 1 else ""
    md_p = sweep.paired_table(models_only, "method", "segments", "mcc", "ivae", col_fmt="{} segments") \
        if "ivae" in p["methods"] and len(p["methods"]) > 1 else ""
    wall = time.perf_counter() - t0
    cfg = groups[0].key["config"]
    mixing = (f"3-layer tied {p['act']} mixing" if p["density"] == 1 else
              f"sparse variant (support density {p['density']:g}, first layer masked, later layers diagonal, {p['act']})")
    header = (f"# iVAE's protocol: MCC vs number of segments ({args.preset} preset)\n\n"
              f"n = d_x = {p['latent_dim']}, {p['per_segment']} points per segment, {mixing} "
              f"(cg.ivae_data v{ivae_data.GENERATOR_VERSION}); cg.fit defaults: whitened x, hidden {cfg['hidden']}, "
              f"{cfg['posterior_cov']}-covariance posterior" + (" conditioned on u" if cfg["encoder_u"] else "")
              + f", decoder variance {'learned from ' if cfg['learn_obs_var'] else ''}{cfg['obs_var']}, "
              f"batch {cfg['batch_size']}, Adam {cfg['lr']} (/ 10 at {cfg['lr_drop']:.0%}), {steps} steps; {n_seeds} seeds "
              f"(data and init), MCC of the posterior means on the whole dataset; device {dev['backend']} "
              f"({dev['device_kind']} x{dev['device_count']}); this invocation {wall:.0f}s. "
              f"Identification is proven from 2n + 1 = {2 * p['latent_dim'] + 1} segments.")
    text = (header + "\n\nMCC (mean ± std over seeds):\n\n" + md
            + "\nActive latents (posterior mean carries > half the latent's variance; a collapsed latent carries"
              " none), mean ± std:\n\n" + md_a
            + ("\nSupport recovery: F1 of the learned decoder's Jacobian support (mean |J| in z-scored coordinates"
               " per latent std, columns matched to the true latents by the MCC assignment, an entry an edge above"
               " 10 % of its column's largest) against the true support, mean ± std:\n\n" + md_f if md_f else "")
            + ("\nMCC difference to iVAE, paired on the seed (same data): mean, seeds up, two-sided Wilcoxon p"
               f" (with {n_seeds} seeds p cannot go below {2 / 2 ** n_seeds:.4f}):\n\n" + md_p if md_p else ""))
    report.write_atomic(out / "table.md", text)
    report.write_atomic(out / "table.csv", csv)
    figure(records, out / "mcc_vs_segments.png", header.splitlines()[0].lstrip("# "))
    print(text)
    print(f"wrote {out}/table.md, table.csv, mcc_vs_segments.png")
    return {"records": records, "markdown": text, "wall_s": wall}


if __name__ == "__main__":
    main()
