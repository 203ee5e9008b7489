"""Sufficient changes + sparse mixing, on a benchmark that can show the claim.

The CG paper (arXiv 2503.00639) claims that a sparse mixing, with an L1 penalty on the
decoder Jacobian, makes up for having few domains. Identification from domain changes
alone is proven from 2n + 1 domains. The data are :mod:`cg.sparse_data`:

* supports where Zheng et al.'s structural sparsity holds (arm ``structural``: no nested
  or identical columns), or is broken for one latent (arm ``nested``);
* edges bounded away from zero;
* a nonlinear mixing that keeps the support;
* Gaussian, Laplace or two-component-mixture sources whose means and variances change
  across domains;
* a mixing drawn from its own stream, so a domain sweep changes only the domains.

The design is prior {Gaussian, flow} x penalty {off, on}, plus two flow variants with the
penalty: the 1-unit flow (exactly a Gaussian) and the paper's finite-difference penalty.
Every method is trained by :func:`cg.fitting.fit`'s path (:mod:`experiments.cg_runs`).
The dataset of (setting, domains, seed) is the same for every method, so comparisons are
paired on the seed.

Reported:

* Pearson and Spearman MCC, with the raw observations' MCC as the floor;
* support AUROC (:func:`mechind.core.metrics.support_auroc`, no threshold), with the
  dense guess (0.5) as the floor and the true Jacobian's score as the ceiling;
* the held-out -ELBO;
* the latent scale beside the penalty;
* the decision of README's rule, with paired Wilcoxon tests over the seeds.

    python -m experiments.cg_benchmark --preset quick
    python -m experiments.cg_benchmark --preset sparsity_only     # one domain: can L1 alone identify?
    python -m experiments.cg_benchmark --preset paper --out results/cg_benchmark_paper   # GPU

Writes ``results.jsonl``, ``table.md``, ``table.csv`` and ``benchmark.png``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from pathlib import Path

import numpy as np

from cg import fitting, models, sparse_data
from cg import train as cg_train
from experiments import cg_runs, framework, sweep
from experiments.framework import default_of, setting
from mechind.core import metrics, report, rng

RECORD_VERSION = 1  # bump when a record gains or changes a field, so older results are not mixed in
FLOOR = "observations x (no model)"
CEILING = "true mixing"
DESIGN = ("cg_vae", "cg_vae_no_sparsity", "cg_vae_no_flow", "ivae", "cg_vae_flow1", "cg_vae_fd")
# the decision rule's comparisons (README): flow + L1 against flow alone, and against Gaussian + L1
CLAIM = (("cg_vae", "cg_vae_no_sparsity"), ("cg_vae", "cg_vae_no_flow"))
CLAIM_METRICS = ("mcc_spearman", "support_auroc")
SIGNIFICANCE = 0.05
BLOCK = ("family", "arm", "obs_dim", "mixing")  # the settings of one dataset family; domains vary inside


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of the experiment; presets are instances (validated on construction)."""

    domains: tuple[int, ...] = setting((1, 2, 3, 5, 8, 12), "numbers of domains (each must divide --total)")
    seeds: int = setting(10, "number of seeds (data and initialisation)")
    num_steps: int = setting(default_of(cg_train.CGConfig, "num_steps"), "training steps per run")
    latent_dim: int = setting(
        default_of(sparse_data.Spec, "latent_dim"), "number of latents n (2n + 1 domains identify without sparsity)"
    )
    obs_dims: tuple[int, ...] = setting((5, 10), "observed dimensions d_x >= n")
    families: tuple[str, ...] = setting(
        sparse_data.FAMILIES, "within-domain source families", choices=sparse_data.FAMILIES
    )
    arms: tuple[str, ...] = setting(
        sparse_data.ARMS,
        "support arms: structural sparsity holds, or is broken for one latent",
        choices=sparse_data.ARMS,
    )
    mixings: tuple[str, ...] = setting(("nonlinear",), "mixings", choices=sparse_data.MIXINGS)
    density: float = setting(default_of(sparse_data.Spec, "density"), "chance of an off-diagonal edge in the support")
    total: int = setting(6_000, "training samples per dataset, split evenly between the domains")
    heldout: int = setting(1_200, "held-out samples per dataset (held-out ELBO)")
    methods: tuple[str, ...] = setting(DESIGN, "methods to fit", choices=tuple(models.METHODS))
    alphas: tuple[float, ...] = setting(
        (),
        "extra penalty weights for every penalised method (an α sweep, "
        f"reported in full; each method's own α, {models.DEFAULT_ALPHA}, "
        "always runs)",
    )
    hidden: tuple[int, ...] = setting(default_of(cg_train.CGConfig, "hidden"), "encoder/decoder widths")
    preprocess: str = setting("whiten", "preprocessing of x (cg.fit's)", choices=fitting.PREPROCESS)
    chunk_steps: int = setting(2_000, "steps per compiled chunk (progress, NaN checks, checkpoints between)")

    def __post_init__(self):
        framework.validate(
            self,
            (min(self.domains) >= 1, f"--domains must be >= 1, got {self.domains}"),
            (len(set(self.domains)) == len(self.domains), f"--domains has a repeated value: {self.domains}"),
            (
                min(self.domains) < 1 or not [d for d in self.domains if self.total % d or self.heldout % d],
                f"--total {self.total} and --heldout {self.heldout} must be divisible by every number of domains "
                f"{self.domains}",
            ),
            (self.latent_dim >= 2, f"--latent-dim must be >= 2, got {self.latent_dim}"),
            (min(self.obs_dims) >= self.latent_dim, f"--obs-dims must be >= --latent-dim, got {self.obs_dims}"),
            (0 < self.density < 1, f"--density must lie in (0, 1), got {self.density}"),
            (self.heldout >= 2, f"--heldout must be >= 2, got {self.heldout}"),
            (all(a >= 0 for a in self.alphas), f"--alphas must be >= 0, got {self.alphas}"),
        )

    def spec(self, block: dict, domains: int) -> sparse_data.Spec:
        """The dataset of a block at ``domains`` domains (its draw of a seed is the same for every method)."""
        return sparse_data.Spec(
            self.latent_dim,
            block["obs_dim"],
            block["family"],
            block["arm"],
            block["mixing"],
            self.density,
            num_domains=domains,
            heldout=self.heldout,
        )

    def blocks(self) -> list[dict]:
        return [dict(zip(BLOCK, b)) for b in itertools.product(self.families, self.arms, self.obs_dims, self.mixings)]


PRESETS = {
    # the main job's (about 3 minutes on a 2-core CPU): n = 4 (2n + 1 = 9), d_x = 2n, Laplace sources,
    # structural sparsity, the four arms of the design, 5 seeds, 3,000 steps on narrower nets
    "quick": Config(
        domains=(1, 2, 4, 9),
        seeds=5,
        num_steps=3_000,
        latent_dim=4,
        obs_dims=(8,),
        families=("laplace",),
        arms=("structural",),
        methods=DESIGN[:4],
        total=3_600,
        heldout=720,
        hidden=(32, 32),
        chunk_steps=1_000,
    ),
    # where sparsity alone identifies (one domain, structural sparsity), linear and nonlinear, d_x = n and 2n:
    # does Gaussian + L1 recover the mixing where the penalty-free model cannot?
    "sparsity_only": Config(
        domains=(1,),
        seeds=5,
        num_steps=6_000,
        obs_dims=(5, 10),
        families=("laplace",),
        arms=("structural",),
        mixings=("linear", "nonlinear"),
        methods=("cg_vae_no_flow", "ivae"),
        hidden=(64, 64),
        chunk_steps=2_000,
    ),
    # the decision on a 2-core CPU (about an hour): the claim's regime (non-Gaussian sources, structural sparsity,
    # d_x = 2n), every method of the design, 10 seeds, domains on both sides of 2n + 1 = 11
    "cpu": Config(
        domains=(1, 2, 3, 5, 12),
        num_steps=3_000,
        obs_dims=(10,),
        families=("laplace", "mixture"),
        arms=("structural",),
        hidden=(32, 32),
        chunk_steps=2_000,
    ),
    # the full design (meant for a GPU): every family, arm and d_x, 10 seeds, cg.fit's defaults, an α sweep
    "paper": Config(alphas=(0.03, 0.3), chunk_steps=10_000),
}


@functools.lru_cache(maxsize=None)
def _dataset(c: Config, family: str, arm: str, obs_dim: int, mixing: str, domains: int, seed: int):
    block = dict(family=family, arm=arm, obs_dim=obs_dim, mixing=mixing)
    return c.spec(block, domains).draw(rng.key(seed), c.total)


def dataset(c: Config, run: dict) -> sparse_data.SparseData:
    """The dataset of a run's (block, domains, seed): the same for every method."""
    return _dataset(c, *(run[k] for k in BLOCK), run["domains"], run["seed"])


def build_groups(c: Config) -> list[sweep.Group]:
    """One group per (method, block), its domain counts, seeds and alphas vmapped."""
    cells = [{**b, "domains": int(d)} for b in c.blocks() for d in c.domains]
    runs = cg_runs.plan(c.methods, c.seeds, cells, alphas=c.alphas)
    key = {
        "record_version": RECORD_VERSION,
        "generator": {
            "version": sparse_data.GENERATOR_VERSION,
            "latent_dim": c.latent_dim,
            "density": c.density,
            "total": c.total,
            "heldout": c.heldout,
        },
    }
    return cg_runs.build_groups(
        runs,
        lambda r: dataset(c, r).arrays(),
        latent_dim=c.latent_dim,
        num_domains=max(c.domains),
        group_by=BLOCK,
        key=key,
        preprocess=c.preprocess,
        heldout=True,
        **cg_runs.overrides(c),
    )


def reference_records(c: Config) -> list[dict]:
    """Per (block, domains, seed): the raw observations' MCC (the floor) and the true
    mixing's support AUROC in the units the models are scored in (the ceiling)."""
    rows = cg_train.jacobian_rows(c.total)
    out = []
    for b in c.blocks():
        for d in c.domains:
            for s in range(c.seeds):
                ds = dataset(c, {**b, "domains": d, "seed": s})
                base = {**b, "domains": d, "seed": s, "alpha": 0.0, "failed": False}
                truth = sparse_data.true_jacobian_abs(ds, rows)
                out.append(
                    {
                        **base,
                        "method": FLOOR,
                        "mcc": metrics.mcc(ds.z, ds.x),
                        "mcc_spearman": metrics.mcc(ds.z, ds.x, method="spearman"),
                        "support_auroc": 0.5,
                    }
                )
                out.append(
                    {
                        **base,
                        "method": CEILING,
                        "mcc": 1.0,
                        "mcc_spearman": 1.0,
                        "support_auroc": metrics.support_auroc(truth, ds.support, np.arange(c.latent_dim)),
                    }
                )
    return out


def block_label(b: dict) -> str:
    return f"{b['family']}, {b['arm']}, d_x = {b['obs_dim']}, {b['mixing']}"


def seed_means(records: list[dict], method: str, value: str, keep) -> dict[int, float]:
    """``{seed: mean of value over the domain counts kept}`` of one method (failed runs
    make that seed missing)."""
    by: dict[int, list] = {}
    for r in records:
        if r["method"] == method and keep(r["domains"]) and cg_runs.is_default_alpha(r):
            by.setdefault(r["seed"], []).append(None if r["failed"] else r.get(value))
    return {s: float(np.mean(v)) for s, v in by.items() if all(x is not None and np.isfinite(x) for x in v)}


def decide(records: list[dict], keep) -> tuple[bool | None, list[list]]:
    """README's decision rule within one block, over the domain counts ``keep`` admits.

    The claim holds when flow + L1 beats flow alone (mean paired difference > 0, Wilcoxon
    p < 0.05) and is not significantly below Gaussian + L1. Both must hold on Spearman MCC
    and on support AUROC. Returns ``(holds or None when a method is missing, rows)``."""
    rows, verdicts = [], []
    for (a, b), value in itertools.product(CLAIM, CLAIM_METRICS):
        ma, mb = seed_means(records, a, value, keep), seed_means(records, b, value, keep)
        pairs = sorted(set(ma) & set(mb))
        if len(pairs) < 2:
            return None, rows
        mean, up, n, p = sweep.paired_summary([ma[s] - mb[s] for s in pairs])
        ok = (mean > 0 and p < SIGNIFICANCE) if b == "cg_vae_no_sparsity" else not (mean < 0 and p < SIGNIFICANCE)
        verdicts.append(ok)
        need = "> 0, p < 0.05" if b == "cg_vae_no_sparsity" else "not < 0 at p < 0.05"
        rows.append([f"{a} − {b}", value, f"{mean:+.4f}", f"{up}/{n}", f"{p:.4f}", need, "yes" if ok else "no"])
    return all(verdicts), rows


def _cells(records, value):
    return sweep.mean_std_table(records, ("method",), "domains", value, col_fmt="{} domains")


def penalty_table(records: list[dict], value: str) -> str:
    """Markdown: each penalised method minus the method that differs only by having no
    penalty (:func:`experiments.cg_runs.penalty_pairs`), paired on the seed, per domain count."""
    cols = sorted({r["domains"] for r in records})
    body = []
    for on, off in cg_runs.penalty_pairs(sorted({r["method"] for r in records})):
        cells = sweep.paired_differences(
            [r for r in records if r["method"] in (on, off)], "method", "domains", value, off
        )
        body.append([f"{on} − {off}", *[sweep.format_paired(cells[(on, c)]) if (on, c) in cells else "" for c in cols]])
    return report.markdown_table(["penalty on − off", *[f"{c} domains" for c in cols]], body) if body else "(none)\n"


def block_text(records: list[dict], refs: list[dict], b: dict, two_n1: int) -> tuple[str, list[list], str]:
    """Markdown of one block, its decision rows, and its CSV."""
    mine = [r for r in records if all(r[k] == v for k, v in b.items())]
    ref = [r for r in refs if all(r[k] == v for k, v in b.items())]
    main = [r for r in mine if cg_runs.is_default_alpha(r)]
    md_p, csv = _cells(main + ref, "mcc")
    md_s, _ = _cells(main + ref, "mcc_spearman")
    md_a, _ = _cells(main + ref, "support_auroc")
    md_e, _ = _cells(main, "heldout_nelbo")
    md_l, _ = _cells(main, "latent_std")
    md_act, _ = _cells(main, "active_latents")
    pair_s, pair_a = (penalty_table(main, v) for v in ("mcc_spearman", "support_auroc"))
    decisions = []
    for label, keep in ((f"< {two_n1} domains", lambda d: d < two_n1), (f">= {two_n1} domains", lambda d: d >= two_n1)):
        holds, rows = decide(mine, keep)
        decisions += [[block_label(b), label, *r] for r in rows]
        if holds is not None:
            decisions.append(
                [block_label(b), label, "**claim holds**" if holds else "**claim fails**", "", "", "", "", "", ""]
            )
    sweep_md = ""
    if len({r["alpha"] for r in mine if models.METHODS[r["method"]].sparse}) > 1:  # an α sweep ran
        pen = [r for r in mine if models.METHODS[r["method"]].sparse]
        sweep_md = "".join(
            f"\nα sweep, {v} (mean ± std over seeds):\n\n"
            + sweep.mean_std_table(pen, ("method", "alpha"), "domains", v, col_fmt="{} domains")[0]
            for v in ("mcc_spearman", "support_auroc", "heldout_nelbo")
        )
    text = (
        f"\n## {block_label(b)}\n\nPearson MCC (floor: the observations themselves):\n\n{md_p}"
        f"\nSpearman MCC:\n\n{md_s}\nSupport AUROC (floor: the dense guess, 0.5; ceiling: the true mixing):\n\n"
        f"{md_a}\nHeld-out -ELBO (nats per sample, original units; lower is better):\n\n{md_e}"
        f"\nThe penalty's own effect, prior held fixed: Spearman MCC with it minus without, paired on the seed"
        f" (mean, seeds up, Wilcoxon p):\n\n{pair_s}\nThe same for support AUROC:\n\n{pair_a}"
        f"\nLatent scale (std of the posterior means; a derivative penalty could be paid by inflating it):"
        f"\n\n{md_l}\nActive latents:\n\n{md_act}{sweep_md}"
    )
    return text, decisions, csv


def figure(records: list[dict], refs: list[dict], blocks: list[dict], path: Path, two_n1: int) -> None:
    """Pearson MCC, Spearman MCC and support AUROC against the number of domains, one column
    per block, one line per method; floor and ceiling dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = (("mcc", "Pearson MCC"), ("mcc_spearman", "Spearman MCC"), ("support_auroc", "support AUROC"))
    fig, axes = plt.subplots(3, len(blocks), figsize=(3.6 * len(blocks), 8.4), squeeze=False)
    for j, b in enumerate(blocks):
        recs = [r for r in records + refs if all(r[k] == v for k, v in b.items()) and cg_runs.is_default_alpha(r)]
        for i, (value, name) in enumerate(values):
            ax = axes[i, j]
            rows, cols, cells = sweep.pivot(recs, ("method",), "domains", value)
            for (m,) in rows:
                st = [report.mean_std(cells.get(((m,), c), [])) for c in cols]
                ref = m in (FLOOR, CEILING)
                style = (
                    dict(color="grey", ls="--" if m == FLOOR else ":")
                    if ref
                    else dict(marker="o", ms=3, color=f"C{list(models.METHODS).index(m) % 10}")
                )
                ax.errorbar(
                    cols, [s[0] for s in st], yerr=None if ref else [s[1] for s in st], capsize=2, label=m, **style
                )
            ax.axvline(two_n1, color="k", lw=0.6, ls=":")
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(cols, [str(c) for c in cols])
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(name)
            if i == 0:
                ax.set_title(block_label(b), fontsize=8)
            if i == 2:
                ax.set_xlabel(f"domains (dotted: 2n + 1 = {two_n1})")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(records: list[dict], c: Config, out: Path, info: dict) -> str:
    """Tables (markdown + CSV), the decision and the figure under ``out``; returns the markdown."""
    two_n1 = 2 * c.latent_dim + 1
    refs = reference_records(c)
    cfg = records[0]["config"]
    dev = info["device"]
    head = (
        f"# Sufficient changes + sparse mixing: the benchmark ({info['preset']} preset)\n\n"
        f"cg.sparse_data v{sparse_data.GENERATOR_VERSION}: n = {c.latent_dim}, support density {c.density:g}"
        f" off the diagonal, edges ±U(0.5, 1.5), sources whose means and scales change across domains,"
        f" {c.total} training and {c.heldout} held-out samples split evenly between the domains; the mixing"
        f" of a seed is the same at every number of domains. cg.fit's estimator ({c.preprocess} x, hidden"
        f" {tuple(cfg['hidden'])}, {c.num_steps} steps, the penalty on after"
        f" {fitting.SPARSE_WARMUP_FRACTION:.0%} of them, α = {models.DEFAULT_ALPHA}); {c.seeds} seeds;"
        f" device {dev['backend']} ({dev['device_kind']} x{dev['device_count']}); train time"
        f" {sum(r['train_s_per_run'] for r in records):.0f}s over {len(records)} runs, this invocation"
        f" {info['wall_s']:.0f}s.\n\nMethods: "
        + "; ".join(f"`{m}` {models.METHODS[m].doc}" for m in c.methods)
        + f".\n\nSettings: {framework.describe(c)}.\n"
    )
    parts, decisions, csvs = [], [], []
    for b in c.blocks():
        text, dec, csv = block_text(records, refs, b, two_n1)
        parts.append(text)
        decisions += dec
        csvs.append(f"# {block_label(b)}\n{csv}")
    dec_md = (
        report.markdown_table(
            ["setting", "domains", "comparison", "metric", "mean diff", "seeds up", "Wilcoxon p", "needed", "met"],
            decisions,
        )
        if decisions
        else ""
    )
    failed = [r for r in records if r.get("failed")]
    text = (
        head + "\n## Decision\n\nREADME's rule, per setting: per seed, each metric is averaged over the"
        " domain counts on one side of 2n + 1; the flow + L1 minus flow-alone difference must be positive"
        " with a two-sided Wilcoxon signed-rank p < 0.05, and flow + L1 minus Gaussian + L1 must not be"
        f" negative at p < 0.05, on Spearman MCC and on support AUROC. With {c.seeds} seeds p cannot go"
        f" below {2 / 2**c.seeds:.4f}.\n\n"
        + (dec_md or "(the design's methods were not all run)\n")
        + "".join(parts)
        + (f"\n{len(failed)} run(s) failed.\n" if failed else "")
    )
    report.write_atomic(out / "table.md", text)
    report.write_atomic(out / "table.csv", "\n".join(csvs))
    figure(records, refs, c.blocks(), out / "benchmark.png", two_n1)
    return text


EXPERIMENT = framework.Experiment(
    name="cg_benchmark",
    title="Sufficient changes + sparse mixing: the benchmark that can show the claim",
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
