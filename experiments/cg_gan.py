"""CG-GAN (the sufficient-changes + sparse-mixing paper's image method) and its ablations
on multi-domain rendered scenes whose latents we know.

Scenes (``cg.scene_domains``): one or more objects with position, size and hue; size and
hue change their law across domains, position does not. Methods (``cg.gan_train.METHODS``),
paired on the seed (same domain laws, same initial weights):

* ``cg_gan``: the flow prior on the domain (the authors' dense sigmoid flow), mask
  learning (their importance vector, thresholded at 0.1, with an L1), and the exact L1 of
  the generator's Jacobian over the domain-specific latents;
* ``cg_gan_fd``: the same with the authors' finite-difference proxy of that term;
* ``cg_gan_m``: CG-GAN-M, no mask learning;
* ``no_sparsity``: no image sparsity (i-StyleGAN with the mask);
* ``no_flow``: a Gaussian per domain in place of the flow;
* ``cgan``: a plain domain-conditioned GAN (the domain concatenated to the mapping input).

Every method and number of domains trains in one vmapped program per image size.
Scored on held-out real scenes: MCC of an encoder that inverts the generator (Pearson,
Spearman; domain-specific and invariant latents apart; the PCA floor), the learned mask's
precision and recall against the truth (the dense guess as the floor), and Fréchet
distance and KID in the features of an encoder trained on real scenes (real-vs-real as
the floor; Inception weights cannot be loaded here).

    python -m experiments.cg_gan --preset quick
    python -m experiments.cg_gan --preset paper --out results/cg_gan_paper   # GPU

Writes ``results.jsonl``, ``table.md``/``table.csv``, ``metrics_vs_domains.png`` and
``samples.png`` (per-domain samples and latent traversals, seed 0).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cg import gan_train
from experiments import framework, sweep
from experiments.framework import default_of, setting
from mechind.core import report
from mechind.scene_train import unpack_images

RECORD_VERSION = 2  # 2: records carry latent_scale
C = gan_train.GanConfig


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of the experiment; presets are instances (validated on construction).
    ``methods`` and ``domains`` are the sweep's axes; the settings that
    :class:`cg.gan_train.GanConfig` also has override the pipeline's config."""

    methods: tuple[str, ...] = setting(tuple(gan_train.METHODS), "methods (see cg.gan_train.METHODS)")
    domains: tuple[int, ...] = setting((2, 8), "numbers of domains M (each <= max_domains)")
    seeds: int = setting(3, "number of seeds (domain laws and initialisation)")
    num_objects: int = setting(default_of(C, "num_objects"), "objects per scene K (4 latents each)")
    height: int = setting(default_of(C, "height"), "canvas height in pixels")
    width: int = setting(default_of(C, "width"), "canvas width in pixels")
    occlusion: float = setting(default_of(C, "occlusion"), "occlusion level (0: no shared pixel, 1: free)")
    size_range: tuple[float, ...] = setting(default_of(C, "size_range"), "(lo, hi) of an object's radius, canvas units")
    max_domains: int = setting(default_of(C, "max_domains"), "domains drawn per seed (M domains use the first M)")
    num_steps: int = setting(2_000, "training steps (one discriminator and one generator update each)")
    batch_size: int = setting(default_of(C, "batch_size"), "minibatch size")
    lr: float = setting(default_of(C, "lr"), "Adam learning rate, both networks")
    r1: float = setting(default_of(C, "r1"), "R1 weight on real images")
    lam_mask: float = setting(default_of(C, "lam_mask"), "L1 weight on the mask's importance (their lambda_sparse)")
    lam_img: float = setting(default_of(C, "lam_img"), "image-sparsity weight (their lambda_imgsparse x perturb_norm)")
    delta: float = setting(default_of(C, "delta"), "the proxy's perturbation, in latent standard deviations")
    synth_hidden: int = setting(default_of(C, "synth_hidden"), "width of the per-pixel synthesis MLP")
    num_val: int = setting(default_of(C, "num_val"), "held-out scenes and samples for every score")
    inv_steps: int = setting(default_of(C, "inv_steps"), "steps of the encoder that inverts the generator")
    feat_steps: int = setting(default_of(C, "feat_steps"), "steps of the feature encoder (FD, KID)")
    chunk_steps: int = setting(500, "steps per compiled chunk (progress, NaN checks, checkpoints between)")

    def __post_init__(self):
        framework.validate(
            self,
            (len(self.methods) >= 1 and len(self.domains) >= 1, "--methods and --domains need a value each"),
            (len(set(self.methods)) == len(self.methods), f"--methods lists one twice: {self.methods}"),
        )
        for m in self.methods:
            if m not in gan_train.METHODS:
                raise ValueError(f"--methods: unknown method {m!r}; choose among {sorted(gan_train.METHODS)}")
        for d in self.domains:
            gan_train.hparams(self.pipeline_config(), num_domains=d)

    def pipeline_config(self) -> gan_train.GanConfig:
        return gan_train.GanConfig(**framework.overrides(self, gan_train.GanConfig))


PRESETS = {
    # a 2-core CPU: 16 x 16, one object, M in {2, 8}, 2,000 steps, 3 seeds (36 runs)
    "quick": Config(),
    # for a GPU: 32 x 32, two objects apart (four domain-specific latents), M from 2 to 16,
    # 30,000 steps, 5 seeds, wider networks
    "paper": Config(
        domains=(2, 4, 8, 16),
        seeds=5,
        num_objects=2,
        height=32,
        width=32,
        occlusion=0.0,
        size_range=(0.08, 0.16),
        max_domains=16,
        num_steps=30_000,
        batch_size=64,
        synth_hidden=64,
        num_val=4096,
        inv_steps=5_000,
        feat_steps=5_000,
        chunk_steps=5_000,
    ),
}


def make_groups(c: Config) -> list[sweep.Group]:
    """One group (one compiled program): runs = methods x domains x seeds."""
    cfg = c.pipeline_config()
    runs = [{"method": m, "domains": d, "seed": s} for m in c.methods for d in c.domains for s in range(c.seeds)]
    hps = [gan_train.hparams(cfg, r["method"], r["domains"]) for r in runs]
    truth = cfg.dataset.changing_mask
    key = {"config": dataclasses.asdict(cfg), "record_version": RECORD_VERSION, "data_version": cfg.dataset.version}
    return [
        sweep.Group(
            key=key,
            make_task=lambda: gan_train.make_task(cfg),
            keys=sweep.seed_keys([r["seed"] for r in runs]),
            hparams=jax.tree.map(lambda *x: jnp.stack(x), *hps),
            runs=runs,
            finish=lambda m: gan_train.finish(m, truth),
        )
    ]


COLUMNS = (
    ("mcc", "MCC (all latents)"),
    ("mcc_specific", "MCC, domain-specific latents"),
    ("mcc_invariant", "MCC, invariant latents"),
    ("mask_precision", "mask precision"),
    ("mask_recall", "mask recall"),
    ("fd", "Fréchet distance (encoder features)"),
    ("kid", "KID (encoder features)"),
)


def _has(value):
    return lambda r: value in r  # mask fields exist only for methods with a prior


def _floor(records, value) -> str:
    vals = [r[value] for r in records if not r["failed"] and value in r and np.isfinite(r[value])]
    return report.fmt_mean_std(vals) if vals else "n/a"


def metrics_figure(records, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("mcc", "mcc_specific", "mask_precision", "mask_recall", "fd")
    fig, axes = plt.subplots(1, len(shown), figsize=(3.3 * len(shown), 3.2))
    for ax, value in zip(axes, shown):
        rows, cols, cells = sweep.pivot(records, ("method",), "domains", value, _has(value))
        for i, (meth,) in enumerate(rows):
            stats = [report.mean_std([x for x in cells.get(((meth,), c), []) if x is not None]) for c in cols]
            m, s = np.array([x[0] for x in stats]), np.array([x[1] for x in stats])
            ax.errorbar(np.array(cols) * (1 + 0.03 * (i - 2.5)), m, yerr=s, marker="o", capsize=3, label=meth)
        ax.set_xscale("log", base=2)
        ax.set_xticks(cols, [str(c) for c in cols])
        ax.set_xlabel("domains M")
        ax.set_title(dict(COLUMNS)[value], fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _image_rows(axes, r0: int, images, labels: list[str]) -> int:
    """Draw ``images [rows, cols, H, W, 3]`` from row ``r0`` of ``axes``, one label per row;
    the next free row."""
    for i, label in enumerate(labels):
        for j in range(images.shape[1]):
            axes[r0 + i, j].imshow(images[i, j], interpolation="nearest")
        axes[r0 + i, 0].text(-0.1, 0.5, label, transform=axes[r0 + i, 0].transAxes, ha="right", va="center", fontsize=6)
    return r0 + len(labels)


def samples_figure(records, path: Path, title: str, seed: int = 0) -> None:
    """Per method (seed ``seed``, the most domains): samples with the same noise in each
    domain (rows), then CG-GAN's traversal of each latent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max(r["domains"] for r in records)
    rows = [r for r in records if r["seed"] == seed and r["domains"] == top and "examples" in r and not r["failed"]]
    if not rows:
        return
    grids = [(r["method"], unpack_images(r["examples"]["domains"])) for r in rows]
    trav = [(r["method"], unpack_images(r["examples"]["traversals"])) for r in rows if r["method"] == "cg_gan"]
    nd, ne = grids[0][1].shape[:2]
    nrows = len(grids) * nd + sum(t.shape[0] for _, t in trav)
    ncols = max(ne, max((t.shape[1] for _, t in trav), default=0))
    fig, axes = plt.subplots(nrows, ncols, figsize=(0.8 * ncols + 1.6, 0.8 * nrows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    r0 = 0
    for meth, g in grids:
        r0 = _image_rows(axes, r0, g, [f"{meth}\ndomain {d}" for d in range(nd)])
    for meth, t in trav:
        r0 = _image_rows(axes, r0, t, [f"{meth}\ntraverse z{i}" for i in range(t.shape[0])])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_all(records: list[dict], c: Config, out: Path, info: dict) -> str:
    """Tables and figures from the JSON lines."""
    dev, cfg = info["device"], c.pipeline_config()
    title = f"CG-GAN on multi-domain scenes ({info['preset']} preset)"
    ds = cfg.dataset
    header = (
        f"# {title}\n\n"
        f"{c.height}x{c.width} scenes, {c.num_objects} object(s), changing latents {list(ds.changing)} per object, "
        f"{c.num_steps} steps, batch {c.batch_size}, lr {c.lr}, R1 {c.r1}, λ_mask {c.lam_mask}, λ_img {c.lam_img}, "
        f"{c.seeds} seeds; device {dev['backend']} ({dev['device_kind']} x{dev['device_count']}). "
        f"Train time {sum(r['train_s_per_run'] for r in records):.0f}s over {len(records)} runs; "
        f"this invocation {info['wall_s']:.0f}s.\n\n"
        f"Floors: MCC of the raw images' principal components {_floor(records, 'mcc_pca')}; the dense mask guess "
        f"(every latent domain-specific) has precision {_floor(records, 'mask_precision_dense')} and recall "
        f"{_floor(records, 'mask_recall_dense')}; real-vs-real Fréchet distance {_floor(records, 'fd_real')}, "
        f"KID {_floor(records, 'kid_real')}. The inversion encoder's R² on the generator's own samples: "
        f"{_floor(records, 'inversion_r2')}.\n"
    )
    text, csv_all = header, ""
    for value, what in COLUMNS:
        md, csv = sweep.mean_std_table(records, ("method",), "domains", value, _has(value), col_fmt="M = {}")
        text += f"\n{what} (mean ± std over seeds):\n\n" + md
        csv_all += f"# {value}\n" + csv
    base = "cg_gan"
    if base in c.methods and len(c.methods) > 1:
        for value in ("mcc", "mcc_specific", "mask_precision", "fd"):
            text += f"\n{value}(method) − {value}(cg_gan), paired on the seed (Wilcoxon):\n\n"
            sub = [r for r in records if value in r]
            text += sweep.paired_table(sub, "method", "domains", value, base, col_fmt="M = {}")
    failed = [r for r in records if r["failed"]]
    if failed:
        text += (
            f"\n{len(failed)} run(s) failed: "
            + ", ".join(f"{r['method']} M={r['domains']} seed={r['seed']}" for r in failed)
            + "\n"
        )
    report.write_atomic(out / "table.md", text)
    report.write_atomic(out / "table.csv", csv_all)
    metrics_figure(records, out / "metrics_vs_domains.png", title)
    samples_figure(records, out / "samples.png", title)
    return text


EXPERIMENT = framework.Experiment(
    name="cg_gan",
    title="CG-GAN on multi-domain rendered scenes, against its ablations",
    doc=__doc__,
    config=Config,
    presets=PRESETS,
    groups=make_groups,
    report=report_all,
)


def main(argv=None) -> dict:
    return EXPERIMENT.main(argv)


if __name__ == "__main__":
    main()
