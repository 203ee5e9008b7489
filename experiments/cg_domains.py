"""Sufficient changes + sparse mixing: MCC and support recovery against the number of domains.

The CG paper's claim (arXiv 2503.00639) tested on the estimator that identifies where
identification is proven (:func:`cg.fit`'s defaults, checked on iVAE's own protocol by
``experiments.ivae_segments``): with a *sparse* mixing, CG-VAE (deep-sigmoid-flow domain
prior + L1 penalty on the decoder Jacobian) should identify with fewer domains than
iVAE needs (2n + 1), and the no-sparsity ablation should fall below CG-VAE.

Data: the sparse variant of iVAE's protocol (:mod:`cg.ivae_data`, ``density < 1``): a
prescribed Jacobian support with structural zeros (first layer masked, later layers
diagonal: a post-nonlinear mixing), centred Gaussian sources with per-domain scales, a
fixed total number of samples split evenly between the domains (so more domains means
more changes, not more data). Methods: all five of :data:`cg.models.METHODS`; the
dataset of (domains, seed) is the same for every method, so every comparison is paired
on the seed. One compiled program per prior: the methods, domain counts and seeds that
share it are vmapped together (the prior's domain table is sized for the largest count).

Reported: MCC of the posterior means (the observations' own MCC is the floor), support
recovery (F1 of the learned decoder's thresholded |J| after the MCC permutation), the
standardized L1 of the decoder Jacobian over the true mixing's, the latent scale, and
each method minus CG-VAE paired on the seed.

    python -m experiments.cg_domains --preset quick
    python -m experiments.cg_domains --preset paper --out results/cg_paper   # GPU

Writes ``results.jsonl``, ``table.md`` / ``table.csv`` and ``mcc_vs_domains.png``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


from cg import fitting, ivae_data, models
from experiments import cg_runs, framework, sweep
from experiments.framework import setting
from mechind.core import metrics, report

# bump when a record gains or changes a field, so older results are not mixed in
RECORD_VERSION = 4
FLOOR = "observations x (no model)"

@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of the experiment; presets are instances (validated on construction)."""

    domains: tuple[int, ...] = setting((1, 2, 4, 8, 16), "numbers of domains (each must divide --total)")
    seeds: int = setting(5, "number of seeds (data and initialisation)")
    steps: int = setting(4_000, "training steps per run")
    latent_dim: int = setting(3, "number of latents n")
    obs_dim: int | None = setting(None, "observed dimension d_x >= n (None: n)")
    total: int = setting(4_800, "samples per dataset, split evenly between the domains")
    density: float = setting(0.67, "density of the mixing's Jacobian support in (0, 1] (1: dense iVAE protocol)")
    act: str = setting("xtanh", "mixing nonlinearity", choices=ivae_data.ACTIVATIONS)
    methods: tuple[str, ...] = setting(tuple(models.METHODS), "methods to fit", choices=tuple(models.METHODS))
    alphas: tuple[float, ...] = setting((), "extra sparsity weights for every penalised method (an α sweep; "
                                            f"α = {models.DEFAULT_ALPHA} is always run)")
    hidden: tuple[int, ...] = setting(fitting.FIT_DEFAULTS["hidden"], "encoder/decoder widths")
    chunk_steps: int = setting(2_000, "steps per compiled chunk (progress, NaN checks, checkpoints between)")

    def __post_init__(self):
        framework.validate(
            self,
            (min(self.domains) >= 1, f"--domains must be >= 1, got {self.domains}"),
            (min(self.domains) < 1 or not [d for d in self.domains if self.total % d],
             f"--total {self.total} must be divisible by every number of domains {self.domains}"),
            (0 < self.density <= 1, f"--density must lie in (0, 1], got {self.density}"),
            (1 <= self.latent_dim <= self.d_x, f"need 1 <= --latent-dim <= --obs-dim, got {self.latent_dim}, {self.d_x}"),
            (all(a >= 0 for a in self.alphas), f"--alphas must be >= 0, got {self.alphas}"),
        )

    @property
    def d_x(self) -> int:
        return self.latent_dim if self.obs_dim is None else self.obs_dim


PRESETS = {
    # about 4 minutes on a 2-core CPU (240 s in the main job): n = 3 (2n + 1 = 7), narrower nets and a fifth of
    # cg.fit's steps, 5 seeds; density 0.67 is the diagonal and 3 more edges (at 0.5, one more
    # edge, the observations alone score MCC 0.89: nearly unmixed data measure nothing)
    "quick": Config(hidden=(32, 32)),
    # cg.fit's defaults in full, n = 5 (2n + 1 = 11), 10 seeds, an alpha sweep (meant for a GPU)
    "paper": Config(domains=(1, 2, 3, 5, 8, 12, 16, 24), seeds=10, steps=fitting.FIT_DEFAULTS["num_steps"],
                    latent_dim=5, total=24_000, density=0.4, alphas=(0.01, 1.0), chunk_steps=10_000),
}


def dataset(c: Config, seed: int, domains: int) -> ivae_data.IVAEData:
    """The (domains, seed) dataset: ``c.total`` samples split evenly between the domains."""
    return ivae_data.generate(seed, domains, c.total // domains, c.latent_dim, obs_dim=c.d_x, act=c.act,
                              density=c.density)


def build_groups(c: Config) -> list[sweep.Group]:
    """One group per method (:mod:`experiments.cg_runs`), its domain counts and seeds vmapped;
    its key is the whole fit config, the generator's settings and version, and the record
    version, so a changed setting never reuses old results."""
    data = {(d, s): dataset(c, s, d) for d in c.domains for s in range(c.seeds)}
    rows = fitting.jacobian_rows(c.total)
    runs = cg_runs.plan(c.methods, c.seeds, [{"domains": int(d)} for d in c.domains], alphas=c.alphas)
    key = {"record_version": RECORD_VERSION,
           "generator": {"version": ivae_data.GENERATOR_VERSION, "act": c.act, "total": c.total,
                         "latent_dim": c.latent_dim, "obs_dim": c.d_x, "density": c.density}}
    # the true mixing's standardized L1 travels with the run, for the ratio in the tables
    extra = lambda r, d: {"l1_true": round(d.standardized_l1(rows), 6),  # noqa: E731
                          "structural_sparsity": int(d.structural_sparsity.sum())}
    return cg_runs.build_groups(runs, lambda r: data[(r["domains"], r["seed"])], latent_dim=c.latent_dim,
                                num_domains=max(c.domains), group_by=(), key=key, extra=extra,
                                num_steps=c.steps, hidden=tuple(c.hidden))


def floor_records(c: Config) -> list[dict]:
    """MCC of the raw observations against the sources, per (domains, seed)."""
    return [{"method": FLOOR, "alpha": 0.0, "domains": d, "seed": s, "failed": False,
             "mcc": metrics.mcc(ds.s, ds.x)}
            for d in c.domains for s in range(c.seeds) for ds in [dataset(c, s, d)]]


is_main = cg_runs.is_default_alpha


def sparsity_table(records: list[dict], value: str) -> str:
    """Markdown: the penalty's effect on ``value`` within each prior, paired on the seed."""
    cols = sorted({r["domains"] for r in records})
    body = []
    for on, off in cg_runs.penalty_pairs(sorted({r["method"] for r in records})):
        label = f"{on} minus {off}"
        cells = sweep.paired_differences([r for r in records if r["method"] in (on, off)], "method", "domains",
                                         value, off)
        if cells:
            body.append([label, *[sweep.format_paired(cells[(on, c)]) if (on, c) in cells else "" for c in cols]])
    return report.markdown_table(["penalty on minus off", *[f"{c} domains" for c in cols]], body) if body else ""


def _style(method: str) -> dict:
    if method == FLOOR:
        return {"color": "grey", "linestyle": "--"}
    return {"color": f"C{list(models.METHODS).index(method) % 10}", "marker": "o"}


def figure(records: list[dict], path: Path, title: str, two_n1: int, f1_floor: float | None = None) -> None:
    """MCC and support F1 against the number of domains, one line per method (the F1 of
    calling every entry an edge, ``f1_floor``, dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, value in zip(axes, ("mcc", "support_f1")):
        rows, cols, cells = sweep.pivot([r for r in records if is_main(r) and value in r], ("method",), "domains", value)
        for (m,) in rows:
            st = [report.mean_std(cells.get(((m,), c), [])) for c in cols]
            ax.errorbar(cols, [s[0] for s in st], yerr=[s[1] for s in st], capsize=3, label=m, **_style(m))
        ax.axvline(two_n1, color="k", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(cols, [str(c) for c in cols])
        ax.set_xlabel(f"number of domains (log scale; dotted: 2n + 1 = {two_n1})")
        ax.set_ylabel(("MCC" if value == "mcc" else "support F1") + " (mean ± std over seeds)")
        ax.grid(alpha=0.3)
    if f1_floor is not None:
        axes[1].axhline(f1_floor, color="grey", ls="--", lw=1, label="every entry an edge")
        axes[1].legend(fontsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def header(records: list[dict], c: Config, info: dict) -> str:
    """What was run, on what, for how long: the report's first lines."""
    fit = records[0]["config"]
    dev = info["device"]
    return (f"# Sufficient changes + sparse mixing: MCC vs number of domains ({info['preset']} preset)\n\n"
            f"Sparse variant of iVAE's protocol (cg.ivae_data v{ivae_data.GENERATOR_VERSION}): n = {c.latent_dim}"
            f" latents, d_x = {c.d_x}, support density {c.density:g} (structural zeros; first layer masked,"
            f" later layers diagonal), {c.act}, centred Gaussian sources with per-domain scales, {c.total}"
            f" samples split evenly between the domains. cg.fit's estimator: whitened x, hidden {tuple(fit['hidden'])},"
            f" {fit['posterior_cov']}-covariance posterior" + (" conditioned on u" if fit["encoder_u"] else "")
            + f", decoder variance {'learned from ' if fit['learn_obs_var'] else ''}{fit['obs_var']},"
            f" batch {fit['batch_size']}, Adam {fit['lr']} (/ 10 at {fit['lr_drop']:.0%}), {c.steps} steps;"
            f" CG-VAE α = {models.DEFAULT_ALPHA} (standardized L1 of the Jacobian in z-scored coordinates, on after"
            f" {fitting.SPARSE_WARMUP_FRACTION:.0%} of the steps), β-VAE β = 4 with a fixed decoder variance"
            f" {dict(models.METHODS['beta_vae'].settings)['obs_var']}; {c.seeds} seeds (data and init);"
            f" MCC of the posterior means on the whole dataset; device {dev['backend']} ({dev['device_kind']}"
            f" x{dev['device_count']}); train time {sum(r['train_s_per_run'] for r in records):.0f}s over"
            f" {len(records)} runs, this invocation {info['wall_s']:.0f}s.\n\nSettings: {framework.describe(c)}.")


def dense_guess_f1(c: Config) -> float:
    """Support F1 of calling every entry an edge: ``2 e / (e + d_x n)`` with e true edges."""
    edges = int(dataset(c, 0, 1).support.sum())
    return 2 * edges / (edges + c.d_x * c.latent_dim)


def write_report(records: list[dict], c: Config, out: Path, info: dict) -> str:
    """Tables (markdown + CSV) and the figure under ``out``; returns the markdown."""
    two_n1 = 2 * c.latent_dim + 1
    head = header(records, c, info)
    records = records + floor_records(c)
    main_recs = [r for r in records if is_main(r)]
    models_only = [r for r in main_recs if r["method"] != FLOOR]
    for r in models_only:
        if "l1_model" in r:
            r["l1_ratio"] = r["l1_model"] / r["l1_true"]
    cols = "{} domains"
    md, csv = sweep.mean_std_table(main_recs, ("method",), "domains", "mcc", col_fmt=cols)
    md_f, _ = sweep.mean_std_table(models_only, ("method",), "domains", "support_f1", col_fmt=cols)
    md_l, _ = sweep.mean_std_table(models_only, ("method",), "domains", "l1_ratio", col_fmt=cols)
    md_s, _ = sweep.mean_std_table(models_only, ("method",), "domains", "latent_std", col_fmt=cols)
    md_act, _ = sweep.mean_std_table(models_only, ("method",), "domains", "active_latents", col_fmt=cols)
    md_p = sweep.paired_table(models_only, "method", "domains", "mcc", "cg_vae", col_fmt=cols)
    md_pf = sweep.paired_table(models_only, "method", "domains", "support_f1", "cg_vae", col_fmt=cols)
    sweep_recs = [r for r in records if r["method"] in ("cg_vae", "cg_vae_no_sparsity")]  # the α sweep's rows
    alphas = sorted({r["alpha"] for r in sweep_recs})
    md_a = ""
    if len(alphas) > 2:  # an alpha sweep was run
        for r in sweep_recs:
            r["l1_ratio"] = r["l1_model"] / r["l1_true"]
        md_a = ("\nCG-VAE against the sparsity weight α (α = 0 is the no-sparsity ablation), MCC / support F1:\n\n"
                + sweep.mean_std_table(sweep_recs, ("alpha",), "domains", "mcc", col_fmt=cols)[0] + "\n"
                + sweep.mean_std_table(sweep_recs, ("alpha",), "domains", "support_f1", col_fmt=cols)[0])
    n_seeds = len({r["seed"] for r in models_only})
    ss = sorted({(r["domains"], r["seed"], r["structural_sparsity"]) for r in models_only})
    n_ss = sum(1 for _, _, k in ss if k == max(k2 for *_, k2 in ss))
    failed = [r for r in records if r.get("failed")]
    text = (head
            + f"\n\nIdentification from the changes alone is proven from 2n + 1 = {two_n1} domains (iVAE);"
              " the sparse-mixing claim is about fewer.\n\nMCC (mean ± std over seeds):\n\n" + md
            + "\nSupport recovery: F1 of the learned decoder's Jacobian support (mean |J| in z-scored observed"
              " coordinates per latent std, columns matched to the true latents by the MCC assignment, an entry"
              " an edge above 10 % of its column's largest) against the true support. Guessing every entry an"
              f" edge scores {dense_guess_f1(c):.3f}: that is the floor here.\n\n" + md_f
            + "\nMCC of each method minus CG-VAE's, paired on the seed (same data): mean, seeds up, two-sided"
              f" Wilcoxon p (with {n_seeds} seeds p cannot go below {2 / 2 ** n_seeds:.4f}; no correction for the"
              " number of cells). Negative: CG-VAE is better.\n\n" + md_p
            + "\nSupport F1 minus CG-VAE's, paired on the seed:\n\n" + md_pf
            + "\nThe sparsity penalty's own effect, with the prior held fixed (same data and initialisation):"
              " MCC, then support F1; positive: the penalty helps.\n\n" + sparsity_table(models_only, "mcc")
            + "\n" + sparsity_table(models_only, "support_f1")
            + "\nStandardized L1 of the learned decoder's Jacobian over the true mixing's (same units, same rows"
              " of the data); 1 is the truth's, below 1 with MCC below 1 means the penalty is lowered by"
              " something other than the true mixing:\n\n" + md_l
            + "\nLatent scale (std of the posterior means, averaged over latents; a derivative penalty could be"
              " paid by inflating it):\n\n" + md_s
            + "\nActive latents (posterior mean carries > half the latent's variance):\n\n" + md_act
            + md_a
            + f"\nZheng et al.'s structural sparsity holds for every latent in {n_ss} of {len(ss)} datasets"
              " (the rest: for some latents).\n"
            + (f"\n{len(failed)} run(s) failed.\n" if failed else ""))
    report.write_atomic(out / "table.md", text)
    report.write_atomic(out / "table.csv", csv)
    figure(records, out / "mcc_vs_domains.png", head.splitlines()[0].lstrip("# "), two_n1, dense_guess_f1(c))
    return text


EXPERIMENT = framework.Experiment(
    name="cg_domains", title="Sufficient changes + sparse mixing: MCC and support recovery vs number of domains",
    doc=__doc__, config=Config, presets=PRESETS, groups=build_groups, report=write_report)


def main(argv=None) -> dict:
    return EXPERIMENT.main(argv)


if __name__ == "__main__":
    main()
