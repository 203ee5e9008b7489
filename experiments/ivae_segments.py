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

import dataclasses
from pathlib import Path

import numpy as np

from cg import ivae_data, models
from cg import train as cg_train
from experiments import cg_runs, framework, sweep
from experiments.framework import default_of, setting
from mechind.core import metrics, report, rng


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of the experiment; presets are instances (validated on construction)."""

    segments: tuple[int, ...] = setting((2, 5, 10, 20, 40), "numbers of segments")
    seeds: int = setting(5, "number of seeds (data and initialisation)")
    num_steps: int = setting(default_of(cg_train.CGConfig, "num_steps"), "training steps per run")
    methods: tuple[str, ...] = setting(("ivae", "cg_vae"), "methods to fit", choices=tuple(models.METHODS))
    latent_dim: int = setting(5, "number of sources n (= d_x)")
    per_segment: int = setting(1_000, "points per segment")
    act: str = setting("xtanh", "mixing nonlinearity", choices=("xtanh", "lrelu"))
    density: float = setting(
        1.0,
        "below 1: the sparse variant (Jacobian support of this density, structural "
        "zeros); adds support recovery to the report",
    )
    chunk_steps: int = setting(5_000, "steps per compiled chunk (progress, NaN checks, checkpoints between)")

    def __post_init__(self):
        framework.validate(
            self,
            (min(self.segments) >= 1, f"--segments must be >= 1, got {self.segments}"),
            (0 < self.density <= 1, f"--density must lie in (0, 1], got {self.density}"),
            (self.latent_dim >= 1 and self.per_segment >= 1, "--latent-dim and --per-segment must be >= 1"),
        )


PRESETS = {
    # CPU, about 30 minutes: cg.fit's defaults in full, iVAE and CG-VAE, 5 seeds
    "quick": Config(),
    # every method, 10 seeds (meant for a GPU)
    "paper": Config(seeds=10, methods=tuple(models.METHODS), chunk_steps=10_000),
}
FLOOR = "observations x (no model)"
RECORD_VERSION = 2  # bump when a record gains or changes a field, so older results are not mixed in


def dataset(c: Config, segments: int) -> ivae_data.Protocol:
    """The dataset of ``segments`` segments (its draw of a seed is the same for every method)."""
    return ivae_data.Protocol(segments, c.latent_dim, act=c.act, density=c.density)


def datasets(c: Config, segments: int) -> list[dict]:
    """The arrays of each seed for ``segments`` segments (:meth:`ivae_data.Protocol.sample`)."""
    return [dataset(c, segments).sample(rng.key(s), segments * c.per_segment) for s in range(c.seeds)]


def build_groups(c: Config) -> list[sweep.Group]:
    """One group per (segments, method) over the seeds (:mod:`experiments.cg_runs`); its key
    is the whole fit config and the generator's settings and version, so a changed setting
    never reuses old results."""
    data = {m: datasets(c, m) for m in c.segments}
    sparse = c.density < 1
    runs = cg_runs.plan(c.methods, c.seeds, [{"segments": m} for m in c.segments])
    extra = (
        (lambda r, d: {"structural_sparsity": int(ivae_data.structural_sparsity(d["support"]).sum())})
        if sparse
        else None
    )
    key = {
        "record_version": RECORD_VERSION,
        "generator": {
            "version": ivae_data.GENERATOR_VERSION,
            "act": c.act,
            "per_segment": c.per_segment,
            "latent_dim": c.latent_dim,
            **({"density": c.density} if sparse else {}),
        },
    }
    return cg_runs.build_groups(
        runs,
        lambda r: data[r["segments"]][r["seed"]],
        latent_dim=c.latent_dim,
        num_domains=None,
        group_by=("segments",),
        key=key,
        with_support=sparse,
        extra=extra,
        **cg_runs.overrides(c),
    )


def floor_records(c: Config) -> list[dict]:
    """MCC of the raw observations against the sources, per (segments, seed)."""
    out = []
    for m in c.segments:
        for sd, d in enumerate(datasets(c, m)):
            out.append(
                {"method": FLOOR, "segments": m, "seed": sd, "mcc": metrics.mcc(d["z"], d["x"]), "failed": False}
            )
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


def write_report(records: list[dict], c: Config, out: Path, info: dict) -> str:
    """Tables (markdown + CSV) and the figure under ``out``; returns the markdown."""
    records = records + floor_records(c)
    dev = info["device"]
    md, csv = sweep.mean_std_table(records, ("method",), "segments", "mcc", col_fmt="{} segments")
    md_a, _ = sweep.mean_std_table(
        [r for r in records if r["method"] != FLOOR], ("method",), "segments", "active_latents", col_fmt="{} segments"
    )
    models_only = [r for r in records if r["method"] != FLOOR]
    md_f = (
        sweep.mean_std_table(models_only, ("method",), "segments", "support_f1", col_fmt="{} segments")[0]
        if c.density < 1
        else ""
    )
    md_p = (
        sweep.paired_table(models_only, "method", "segments", "mcc", "ivae", col_fmt="{} segments")
        if "ivae" in c.methods and len(c.methods) > 1
        else ""
    )
    cfg = next(r["config"] for r in models_only if r["method"] == c.methods[0])
    mixing = (
        f"3-layer tied {c.act} mixing"
        if c.density == 1
        else f"sparse variant (support density {c.density:g}, first layer masked, later layers diagonal, {c.act})"
    )
    header = (
        f"# iVAE's protocol: MCC vs number of segments ({info['preset']} preset)\n\n"
        f"n = d_x = {c.latent_dim}, {c.per_segment} points per segment, {mixing} "
        f"(cg.ivae_data v{ivae_data.GENERATOR_VERSION}); cg.fit defaults: whitened x, "
        f"hidden {tuple(cfg['hidden'])}, "
        f"{cfg['posterior_cov']}-covariance posterior"
        + (" conditioned on u" if cfg["encoder_u"] else "")
        + f", decoder variance {'learned from ' if cfg['learn_obs_var'] else ''}{cfg['obs_var']}, "
        f"batch {cfg['batch_size']}, Adam {cfg['lr']} (/ 10 at {cfg['lr_drop']:.0%}), {c.num_steps} steps; "
        f"{c.seeds} "
        f"seeds (data and init), MCC of the posterior means on the whole dataset; device {dev['backend']} "
        f"({dev['device_kind']} x{dev['device_count']}); train time "
        f"{sum(r['train_s_per_run'] for r in models_only):.0f}s over {len(models_only)} runs, this invocation "
        f"{info['wall_s']:.0f}s. Identification is proven from 2n + 1 = {2 * c.latent_dim + 1} segments."
    )
    text = (
        header
        + "\n\nMCC (mean ± std over seeds):\n\n"
        + md
        + "\nActive latents (posterior mean carries > half the latent's variance; a collapsed latent carries"
        " none), mean ± std:\n\n"
        + md_a
        + (
            "\nSupport recovery: F1 of the learned decoder's Jacobian support (mean |J| in z-scored coordinates"
            " per latent std, columns matched to the true latents by the MCC assignment, an entry an edge above"
            " 10 % of its column's largest) against the true support, mean ± std:\n\n" + md_f
            if md_f
            else ""
        )
        + (
            "\nMCC difference to iVAE, paired on the seed (same data): mean, seeds up, two-sided Wilcoxon p"
            f" (with {c.seeds} seeds p cannot go below {2 / 2**c.seeds:.4f}):\n\n" + md_p
            if md_p
            else ""
        )
    )
    report.write_atomic(out / "table.md", text)
    report.write_atomic(out / "table.csv", csv)
    figure(records, out / "mcc_vs_segments.png", header.splitlines()[0].lstrip("# "))
    return text


EXPERIMENT = framework.Experiment(
    name="ivae_segments",
    title="iVAE's protocol: MCC vs number of segments",
    doc=__doc__,
    config=Config,
    presets=PRESETS,
    groups=build_groups,
    report=write_report,
)


def main(argv=None) -> dict:
    return EXPERIMENT.main(argv)


if __name__ == "__main__":
    main()
