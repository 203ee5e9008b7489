"""Mechanistic independence: SIS of slot autoencoders against Jacobian-support overlap.

Slot autoencoders trained with MSE + lambda * compositional contrast on data whose
generator Jacobian has a controlled support overlap between slots (``mechind.data``),
scored by SIS on held-out samples. One compiled group per (K, overlap); seeds and
lambda are vmapped inside it, so lambda comparisons are paired (same data, same init).

    python -m experiments.mechind_overlap --preset quick
    python -m experiments.mechind_overlap --preset paper --out results/mechind_paper   # GPU

Writes ``results.jsonl`` (one line per run), ``table.md`` / ``table.csv`` (SIS mean ± std,
rows K x lambda, columns overlap), ``criteria.md`` (which Types the generators satisfy at
each overlap), ``sis_vs_overlap.png`` and ``sis_vs_contrast.png`` (SIS against the
scale-free contrast share, one point a run, coloured by lambda). Every record carries
the diagnostics of the latent-scale loophole: raw and standardized contrast, contrast
share, and the latent scale per slot.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from experiments import framework, sweep
from experiments.framework import default_of, setting
from mechind import criteria, train
from mechind import data as slot_data
from mechind.core import report

# bump when a record gains or changes a field, so older results are not mixed in
RECORD_VERSION = 2


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of the experiment; presets are instances (validated on construction).

    ``ks``, ``lams`` and ``overlaps`` are the sweep's axes (K = ``num_slots``, ``lam`` and
    ``overlap`` of each group); the other settings that :class:`mechind.train.SlotConfig`
    also has (same names) override the pipeline's config (:func:`framework.overrides`);
    the rest of it keeps the pipeline's defaults.
    """

    ks: tuple[int, ...] = setting((2, 3), "numbers of slots K (num_slots)")
    lams: tuple[float, ...] = setting((0.0, 1e-2, 1.0), "compositional-contrast weights λ")
    overlaps: tuple[float, ...] = setting((0.0, 0.25, 0.5), "Jacobian-support overlaps")
    seeds: int = setting(3, "number of seeds (data and initialisation)")
    num_steps: int = setting(6_000, "training steps per run")
    num_train: int = setting(10_000, "training samples")
    num_val: int = setting(2_000, "validation samples (SIS)")
    restarts: int = setting(
        1, "initialisations per seed and λ on the same data; tables keep the one with the lowest training objective"
    )
    layout: str = setting(
        default_of(train.SlotConfig, "layout"),
        "chain: overlap shared with the neighbouring slot; shared: with all slots",
        choices=slot_data.LAYOUTS,
    )
    dependent: bool = setting(
        default_of(train.SlotConfig, "dependent"),
        "dependent latents z ~ N(0, Σ), Σ ~ Wishart (the density should not matter)",
    )
    decoder: str = setting(default_of(train.SlotConfig, "decoder"), "decoder architecture", choices=("mlp", "additive"))
    latent_norm: str = setting(
        default_of(train.SlotConfig, "latent_norm"),
        "batch: latents standardized over the batch (the contrast "
        "cannot be paid by inflating them); none: Brady et al.'s "
        "raw form",
        choices=train.LATENT_NORMS,
    )
    chunk_steps: int = setting(2_000, "steps per compiled chunk (progress, NaN checks, checkpoints between)")

    def __post_init__(self):
        framework.validate(self, (self.restarts >= 1, f"--restarts must be >= 1, got {self.restarts}"))
        for k in self.ks:  # every slot config is validated before anything compiles
            for ov in self.overlaps:
                for lam in self.lams:
                    self.slot_config().replace(num_slots=k, overlap=ov, lam=lam)

    def slot_config(self) -> train.SlotConfig:
        """The shared :class:`mechind.train.SlotConfig` (K and overlap set per group)."""
        return train.SlotConfig(**framework.overrides(self, train.SlotConfig))


PRESETS = {
    # minutes on a 2-core CPU: fewer K, overlaps, seeds and steps, a smaller validation set
    "quick": Config(),
    # Brady et al.'s protocol: 115,000 steps, batch 64, 72k/8k samples; MI paper's grid
    "paper": Config(
        ks=(2, 3, 5),
        overlaps=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
        seeds=5,
        num_steps=default_of(train.SlotConfig, "num_steps"),
        num_train=default_of(train.SlotConfig, "num_train"),
        num_val=default_of(train.SlotConfig, "num_val"),
        chunk_steps=5_000,
        restarts=3,
    ),
}


def build_groups(ks, lams, overlaps, seeds, base: train.SlotConfig, restarts: int = 1) -> list[sweep.Group]:
    """One group per (K, overlap); runs = lambdas x seeds x restarts (restart r > 0: another
    initialisation on the seed's data, see :func:`mechind.train.select_restarts`)."""
    groups = []
    for k in ks:
        for ov in overlaps:
            cfg = base.replace(num_slots=k, overlap=ov)
            # the whole config is the group's identity: a changed setting never reuses old runs
            key = {
                "K": k,
                "overlap": ov,
                "layout": cfg.layout,
                "dependent": cfg.dependent,
                "decoder": cfg.decoder,
                "num_train": cfg.num_train,
                "num_val": cfg.num_val,
                "batch_size": cfg.batch_size,
                "lr": cfg.lr,
                "steps_cfg": cfg.num_steps,
                "config": dataclasses.asdict(cfg),
                "record_version": RECORD_VERSION,
                "generator_version": cfg.dataset.version,
            }
            runs = [{"seed": s, "lam": lam, "restart": r} for lam in lams for s in seeds for r in range(restarts)]
            groups.append(
                sweep.Group(
                    key=key,
                    make_task=lambda cfg=cfg: train.make_task(cfg, with_contrast=any(lam > 0 for lam in lams)),
                    keys=sweep.seed_keys([r["seed"] for r in runs]),
                    hparams=train.hparams([r["lam"] for r in runs], [cfg.lr] * len(runs), [r["restart"] for r in runs]),
                    runs=runs,
                    finish=train.finish,
                )
            )
    return groups


def generator_criteria(ks, overlaps, base: train.SlotConfig, points: int = 64) -> str:
    """Markdown: fraction of points at which each Type holds, per (K, overlap) generator."""
    names = ("type_d", "type_m", "type_s", "type_h2")
    rows = []
    for k in ks:
        for ov in overlaps:
            ds = base.replace(num_slots=k, overlap=ov).dataset
            d = slot_data.make_slot_data(jax.random.PRNGKey(0), ds, points)
            z = d.z.reshape(points, -1)
            res = criteria.evaluate_all(d.generator, z, ds.slot_sizes, only=names)
            rows.append(
                [
                    k,
                    ov,
                    ds.obs_dim,
                    f"{slot_data.realised_overlap(ds.support):.2f}",
                    *[f"{res[n].fraction():.2f}" for n in names],
                ]
            )
    return report.markdown_table(["K", "overlap", "d_x", "realised overlap", *names], rows)


def figure(records, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({r["K"] for r in records})
    fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.6), sharey=True, squeeze=False)
    for ax, k in zip(axes[0], ks):
        rows, cols, cells = sweep.pivot(records, ("lam",), "overlap", "sis", lambda r: r["K"] == k)
        for (lam,) in rows:
            stats = [report.mean_std(cells.get(((lam,), c), [])) for c in cols]
            m, s = np.array([x[0] for x in stats]), np.array([x[1] for x in stats])
            ax.errorbar(cols, m, yerr=s, marker="o", capsize=3, label=f"λ = {lam:g}")
        ax.set_title(f"K = {k}")
        ax.set_xlabel("Jacobian-support overlap")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("SIS (mean ± std over seeds)")
    axes[0][-1].legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scatter_figure(records, path: Path, title: str) -> None:
    """SIS against the scale-free contrast share, one point a run, coloured by λ, a panel
    per K (the form of Brady et al.'s figure, with the contrast read in standardized units
    so that inflating the latents cannot move a point left); the dotted line is the
    share when every slot drives every coordinate equally, (K - 1) / 2K."""
    report.scatter_panels(
        [r for r in records if not r["failed"]],
        path,
        x="contrast_share",
        y="sis",
        panel="K",
        colour="lam",
        marker="overlap",
        xlabel="contrast share, standardized units",
        ylabel="SIS",
        title=title,
        panel_fmt="K = {}",
        colour_fmt="λ = {:g}",
        marker_fmt="overlap {:g}",
        vline=lambda k: (k - 1) / (2 * k),
    )


def write_report(records: list[dict], out: Path, header: str) -> str:
    """Build table.md/csv and the figure from the JSON lines; returns the markdown."""
    md, csv = sweep.mean_std_table(records, ("K", "lam"), "overlap", "sis", col_fmt="overlap {}")
    r2_md, _ = sweep.mean_std_table(records, ("K", "lam"), "overlap", "recon_r2", col_fmt="overlap {}")
    share_md, _ = sweep.mean_std_table(records, ("K", "lam"), "overlap", "contrast_share", col_fmt="overlap {}")
    scale_md, _ = sweep.mean_std_table(records, ("K", "lam"), "overlap", "latent_scale", col_fmt="overlap {}")
    failed = [r for r in records if r["failed"]]
    text = (
        header
        + "\n\nSIS (mean ± std over seeds):\n\n"
        + md
        + "\nReconstruction R² on held-out data:\n\n"
        + r2_md
        + "\nContrast share in standardized units (scale-free; 0 = every observed coordinate "
        "depends on one slot, 0.25 at K = 2 = all equally):\n\n"
        + share_md
        + "\nLatent scale (mean std of the inferred latents; the raw contrast falls as 1/scale²):\n\n"
        + scale_md
        + (
            f"\n{len(failed)} run(s) failed: "
            + ", ".join(f"K={r['K']} ov={r['overlap']} λ={r['lam']} seed={r['seed']} ({r['failure']})" for r in failed)
            + "\n"
            if failed
            else ""
        )
    )
    report.write_atomic(out / "table.md", text)
    report.write_atomic(out / "table.csv", csv)
    figure(records, out / "sis_vs_overlap.png", header.splitlines()[0].lstrip("# "))
    scatter_figure(records, out / "sis_vs_contrast.png", header.splitlines()[0].lstrip("# "))
    return text


def report_all(records: list[dict], c: Config, out: Path, info: dict) -> str:
    """The best restart of each run, then the tables, figures and the generators' criteria."""
    trained = len(records)
    records = train.select_restarts(records, ("K", "overlap", "lam", "seed"))
    dev, base = info["device"], c.slot_config()
    header = (
        f"# Mechanistic independence: SIS vs Jacobian-support overlap ({info['preset']} preset)\n\n"
        f"Preset {info['preset']}: {c.num_steps} steps, batch {base.batch_size}, {c.seeds} seeds, "
        f"{c.num_train} train / {c.num_val} validation samples, layout {c.layout}, "
        f"{'dependent (Wishart)' if c.dependent else 'independent'} latents, {c.decoder} decoder, "
        f"latents {'standardized over the batch' if c.latent_norm == 'batch' else 'raw (paper form)'}; "
        f"device {dev['backend']} ({dev['device_kind']} x{dev['device_count']}). "
        + (
            f"Best of {c.restarts} initialisations per seed and λ, chosen by the training objective "
            f"(MSE + λ·C_comp on training data; no latent truth). "
            if c.restarts > 1
            else ""
        )
        + f"Train time {sum(r['train_s_per_run'] for r in records) * trained / len(records):.0f}s "
        f"over {trained} runs; this invocation {info['wall_s']:.0f}s."
    )
    text = write_report(records, out, header)
    crit = generator_criteria(c.ks, c.overlaps, base)
    report.write_atomic(out / "criteria.md", "Which Types the generators satisfy (fraction of 64 points):\n\n" + crit)
    return text + "\nGenerators (fraction of points where each Type holds):\n\n" + crit


def make_groups(c: Config) -> list[sweep.Group]:
    """The groups of a config (see :func:`build_groups`)."""
    return build_groups(c.ks, c.lams, c.overlaps, list(range(c.seeds)), c.slot_config(), c.restarts)


EXPERIMENT = framework.Experiment(
    name="mechind_overlap",
    title="Mechanistic independence: SIS vs Jacobian-support overlap",
    doc=__doc__,
    config=Config,
    presets=PRESETS,
    groups=make_groups,
    report=report_all,
    # the main job's budget: 2 seeds of the quick preset's 3 (room for the image experiment)
    main_job_args=("--seeds", "2"),
)


def main(argv=None) -> dict:
    return EXPERIMENT.main(argv)


if __name__ == "__main__":
    main()
