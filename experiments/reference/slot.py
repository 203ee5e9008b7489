"""Slot autoencoders side by side: Brady et al.'s own training code and ``mechind`` on
identical data, with the same diagnostics for both.

The reference is ``train_model.py`` of github.com/brendel-group/objects-identifiability,
run unchanged from a fetched copy (never vendored): its MLPs (3 layers of width 80,
leaky ReLU 0.2, PyTorch's default initialisation), Adam at its default lr 4e-4 divided
by 10 at half of training, batch 64 drawn by a fresh shuffled ``DataLoader`` iterator
each step, MSE + lambda * C_comp through ``torch.vmap(torch.func.jacfwd(decoder))``.
Shims, and nothing else (in :mod:`experiments.reference.checkouts`):

* imports it never uses on synthetic data (``wandb``, ``hydra``, ``omegaconf``,
  ``torchvision``, the sprite evaluator's ``lion_pytorch``) are empty stand-in modules,
  and ``np.VisibleDeprecationWarning`` (its warning filter; numpy 2 moved the class to
  ``np.exceptions``) is aliased;
* its data function ``utils.gen_synth_data`` returns the arrays given here, so both
  implementations train on exactly the same 72k and score on the same 8k samples
  (its own 90/10 split of 80k, which is ours too);
* its seed ``random.randint(0, 10000)`` comes from ``random.seed(seed)``, so a run is
  repeatable;
* its evaluation at iteration 1 is skipped (27 s of SIS on this CPU, no information);
  its final evaluation runs, and the trained model is kept for the diagnostics.

Data, either implementation's generator:

* ``mechind``: :meth:`mechind.data.SlotSpec.sample` (a different mixing per slot, the
  block structure of ``SlotSpec``, leaky ReLU 0.2 after both layers);
* ``brady``: their ``gen_synth_data`` called from the fetched copy (one 2-layer mixing
  shared by all slots, ``LeakyReLU()`` = slope 0.01, no last nonlinearity, weights
  U(-10, 10) with unit-norm columns and the condition-number rule), seeded with
  ``np.random.seed(seed)``.

Diagnostics: the project's own evaluation for both, :func:`mechind.train.evaluate` and
:func:`mechind.train.finish` (the reference's trained weights are copied into our MLPs of
the same layout, raw latents as it trains them): SIS and its R² matrix, reconstruction R²,
raw C_comp, C_comp in standardized units, the standardized cross-slot share, the latent
scale and the training objective on a fixed training subset.

    python -m experiments.reference.slot --repo /path/to/objects-identifiability \\
        --data mechind brady --seeds 0 1 2 --lams 0 0.01 1 --steps 20000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.reference import checkouts
from mechind.core import report


def reference_args(
    lam: float,
    steps: int,
    lr: float,
    num_slots: int = 2,
    slot_dim: int = 3,
    slot_x_dim: int = 20,
    nobs: int = 80_000,
    batch_size: int = 64,
) -> argparse.Namespace:
    """The reference's command line (its defaults, except those given)."""
    return argparse.Namespace(
        data="synth",
        encoder="MLP",
        decoder="MLP",
        num_slots=num_slots,
        inf_slot_dim=slot_dim,
        gt_slot_dim=slot_dim,
        lam=lam,
        batch_size=batch_size,
        lr=lr,
        num_iters=steps,
        eval_iter=steps,
        nobs=nobs,
        slot_x_dim=slot_x_dim,
        dependent=0,
    )


def brady_data(tree: Path, seed: int, num_slots: int = 2, nobs: int = 80_000) -> tuple[np.ndarray, np.ndarray]:
    """Their generator, from the fetched copy: ``x [nobs, 20 K]``, ``z [nobs, K, 3]``."""
    import torch

    checkouts.import_slot(tree)
    from data.generators.synth_data_gen import gen_synth_data  # noqa: PLC0415  (theirs)

    np.random.seed(seed)
    torch.manual_seed(seed)
    return gen_synth_data(reference_args(0.0, 1, 4e-4, num_slots=num_slots, nobs=nobs))


def mechind_data(seed: int, num_slots: int = 2, nobs: int = 80_000) -> tuple[np.ndarray, np.ndarray]:
    """Ours, as ``mechind.train.make_data`` draws it for this seed (overlap 0: Type D):
    ``x [nobs, 20 K]``, ``z [nobs, K, 3]``."""
    import jax

    from mechind import data as slot_data
    from mechind import train
    from mechind.core import rng

    spec = train.SlotConfig(num_slots=num_slots).dataset
    draw = slot_data.make_slot_data(jax.random.fold_in(rng.key(seed), 0), spec, nobs)
    return np.asarray(draw.x, np.float32), np.asarray(draw.z, np.float32)


def torch_mlp_params(mlp) -> dict:
    """The reference's ``MLP`` (``fc``: ``nn.Linear`` layers, leaky ReLU 0.2 between them,
    linear output) as the parameters of our :class:`mechind.models.MLP` of the same widths:
    ``{"Dense_i": {"kernel" [d_in, d_out], "bias" [d_out]}}`` (torch keeps ``weight [d_out, d_in]``)."""
    return {
        f"Dense_{i}": {"kernel": np.asarray(fc.weight.detach().numpy()).T, "bias": np.asarray(fc.bias.detach().numpy())}
        for i, fc in enumerate(mlp.fc)
    }


def diagnostics(config, params: dict, data: dict, lam: float) -> dict:
    """One run's diagnostics by the project's own evaluation, :func:`mechind.train.evaluate`
    then :func:`mechind.train.finish`, for either implementation: ``params`` ``{"enc", "dec"}``
    of ``config``'s networks; ``data``: ``x_train [N, d_x]``, ``x_val [M, d_x]``,
    ``z_val [M, K, s]``; ``lam`` weighs the contrast in the reported training objective."""
    import jax

    from mechind import train
    from mechind.core import training

    state = training.TrainState(params, None, None)  # evaluate reads the parameters only
    hp = train.HParams(np.float32(lam), np.float32(config.lr))
    return train.finish(jax.device_get(train.evaluate(config, train.make_nets(config), state, data, hp)))


def run_reference(
    tree: Path,
    x: np.ndarray,
    z: np.ndarray,
    seed: int,
    lam: float,
    steps: int,
    lr: float,
    work: Path,
    own_eval: bool = True,
) -> dict:
    """Train the reference once on ``x [N, d_x], z [N, K, s]`` (90/10 split as it does);
    diagnostics on its validation part, plus its own final evaluation (recon, C_comp, SIS)
    for a cross-check."""
    import torch

    from mechind import train

    tm, utils = checkouts.import_slot(tree)
    torch.set_num_threads(1)
    random.seed(seed)  # its seed is random.randint(0, 10000)
    t = time.perf_counter()
    with checkouts.slot_training(tm, utils, x, z, work, own_eval) as kept, contextlib.redirect_stdout(io.StringIO()):
        tm.train_model(reference_args(lam, steps, lr, num_slots=z.shape[1], nobs=len(x)))
    secs = time.perf_counter() - t
    model = kept["model"].eval()
    n_train = int(0.9 * len(x))
    # our MLPs of its layout, on its raw latents (no standardization), as it trains them
    cfg = train.SlotConfig(num_slots=z.shape[1], num_train=n_train, num_val=len(x) - n_train, lr=lr, latent_norm="none")
    params = {"enc": torch_mlp_params(model.encoder), "dec": torch_mlp_params(model.decoder)}
    out = diagnostics(cfg, params, {"x_train": x[:n_train], "x_val": x[n_train:], "z_val": z[n_train:]}, lam)
    out["seconds"] = secs
    if "own" in kept:
        out["own_recon"], out["own_c_comp"], out["own_sis"] = map(float, kept["own"])
    return out


def run_ours(
    xs: np.ndarray,
    zs: np.ndarray,
    seeds: list[int],
    lams: list[float],
    steps: int,
    lr: float,
    restarts: int = 1,
    **overrides,
) -> list[dict]:
    """``mechind`` training on the given arrays ``xs [S, N, d_x]``, ``zs [S, N, K, s]``, every
    (lambda, seed, restart) in one vmapped group, scored by its own evaluation;
    ``overrides`` are :class:`mechind.train.SlotConfig` fields."""
    import jax
    import jax.numpy as jnp

    from mechind import train
    from mechind.core import rng, runner

    n_train = int(0.9 * xs.shape[1])
    cfg = train.SlotConfig(
        num_slots=zs.shape[2],
        num_train=n_train,
        num_val=xs.shape[1] - n_train,
        num_steps=steps,
        lr=lr,
        lam=max(lams),
        **overrides,
    )
    task = train.make_task(cfg, with_contrast=any(lam > 0 for lam in lams))
    runs = [(lam, s, r) for lam in lams for s in seeds for r in range(restarts)]
    idx = [seeds.index(s) for _, s, _ in runs]
    given = {"x": jnp.asarray(xs[idx]), "z": jnp.asarray(zs[idx])}  # trained on these, not its own draw
    keys = rng.seed_keys([s for _, s, _ in runs])
    t = time.perf_counter()
    res = runner.run_group(
        task,
        keys,
        train.hparams([lam for lam, _, _ in runs], [lr] * len(runs), [r for _, _, r in runs]),
        chunk_steps=min(2000, steps),
        given=given,
        progress=False,
    )
    secs = (time.perf_counter() - t) / len(runs)
    metrics = jax.device_get(res.metrics)
    return [
        {
            "lam": lam,
            "seed": s,
            "restart": rs,
            "seconds": secs,
            "failed": bool(res.failed[i]),
            **train.finish(jax.tree.map(lambda a, i=i: a[i], metrics)),
        }
        for i, (lam, s, rs) in enumerate(runs)
    ]


COLUMNS = ("sis", "contrast_share", "c_comp", "latent_scale", "recon_r2")


def summary_table(rows: list[dict]) -> str:
    """Markdown: mean (min–max) over seeds per data x implementation x lambda (of runs with
    restarts, the one with the lowest training objective)."""
    from mechind import train

    rows = train.select_restarts(rows, ("data", "impl", "lam", "seed"))
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["data"], r["impl"], r["lam"]), []).append(r)
    body = []
    for (dname, impl, lam), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        cells = []
        for c in COLUMNS:
            v = np.array([r[c] for r in rs], float)
            cells.append(f"{np.mean(v):.3g} ({np.min(v):.3g}–{np.max(v):.3g})")
        body.append([dname, impl, f"{lam:g}", len(rs), *cells])
    return report.markdown_table(["data", "implementation", "λ", "seeds", *COLUMNS], body)


def figure(rows: list[dict], path: Path) -> None:
    """SIS against the standardized contrast share, a panel per data set, colour = λ,
    marker = implementation: where each implementation's runs land."""
    report.scatter_panels(
        rows,
        path,
        x="contrast_share",
        y="sis",
        panel="data",
        colour="lam",
        marker="impl",
        xlabel="contrast share, standardized units",
        ylabel="SIS",
        panel_fmt="data: {}",
        colour_fmt="λ = {:g}",
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--repo",
        type=Path,
        default=None,
        help="the reference: a checkout of brendel-group/objects-identifiability, or its bare "
        "git directory (required unless --skip-reference and --data mechind)",
    )
    ap.add_argument(
        "--data",
        nargs="+",
        default=["mechind", "brady"],
        choices=["mechind", "brady"],
        help="whose generator draws the arrays both implementations train on",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data and init seeds")
    ap.add_argument("--lams", type=float, nargs="+", default=[0.0, 0.01, 1.0], help="contrast weights λ")
    ap.add_argument(
        "--num-steps",
        "--steps",
        dest="steps",
        type=int,
        default=20_000,
        help="training steps of both (lr / 10 at half)",
    )
    ap.add_argument("--lr-reference", type=float, default=4e-4, help="the reference's lr (its default 4e-4)")
    ap.add_argument("--lr-ours", type=float, default=None, help="our lr (default: SlotConfig's)")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="SlotConfig fields for ours, e.g. --set latent_norm=batch lam_warmup=0.25 "
        "(values parsed as JSON, else kept as text)",
    )
    ap.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="our initialisations per (seed, λ) on the same data; tables keep the one with "
        "the lowest training objective (the .jsonl keeps all)",
    )
    ap.add_argument("--skip-reference", action="store_true", help="run ours only")
    ap.add_argument("--skip-ours", action="store_true", help="run the reference only")
    ap.add_argument(
        "--no-reference-eval",
        action="store_true",
        help="skip the reference's own final evaluation (27 s of SIS a run on a CPU)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("results/bench/slot_reference.json"),
        help="results: .json, one line a run in .jsonl (kept on interruption), table .md, figure .png",
    )
    ap.add_argument(
        "--from-jsonl",
        type=Path,
        nargs="+",
        default=None,
        help="train nothing: rebuild the table and figure from these .jsonl files",
    )
    args = ap.parse_args(argv)
    if args.from_jsonl:
        rows = [r for f in args.from_jsonl for r in report.read_jsonl(f)]
        md = summary_table(rows)
        report.write_atomic(args.out.with_suffix(".md"), md)
        figure(rows, args.out.with_suffix(".png"))
        print(md)
        return 0
    if args.repo is None and (not args.skip_reference or "brady" in args.data):
        ap.error("--repo is needed for the reference and for its data generator")
    from mechind import train

    lr_ours = args.lr_ours if args.lr_ours is not None else train.SlotConfig().lr
    overrides = {}
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set takes FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    try:
        train.SlotConfig(**overrides)
    except (TypeError, ValueError) as e:
        ap.error(str(e))
    impl = (
        "mechind"
        + "".join(f" {k}={v}" for k, v in overrides.items())
        + (f" best of {args.restarts}" if args.restarts > 1 else "")
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = checkouts.checkout(args.repo, Path(tmp) / "ref", checkouts.SLOT_MARKER) if args.repo else None
        for dname in args.data:
            arrays = [brady_data(tree, s) if dname == "brady" else mechind_data(s) for s in args.seeds]
            xs, zs = np.stack([a[0] for a in arrays]), np.stack([a[1] for a in arrays])
            new = []
            if not args.skip_ours:
                for r in run_ours(xs, zs, args.seeds, args.lams, args.steps, lr_ours, args.restarts, **overrides):
                    new.append({"data": dname, "impl": impl, "lr": lr_ours, "steps": args.steps, **r})
                    print(json.dumps(new[-1]), flush=True)
                    report.append_jsonl(args.out.with_suffix(".jsonl"), [new[-1]])
            if not args.skip_reference:
                for lam in args.lams:
                    for i, s in enumerate(args.seeds):
                        r = run_reference(
                            tree,
                            xs[i],
                            zs[i],
                            s,
                            lam,
                            args.steps,
                            args.lr_reference,
                            Path(tmp) / "work",
                            own_eval=not args.no_reference_eval,
                        )
                        new.append(
                            {
                                "data": dname,
                                "impl": "reference",
                                "lr": args.lr_reference,
                                "steps": args.steps,
                                "lam": lam,
                                "seed": s,
                                **r,
                            }
                        )
                        print(json.dumps(new[-1]), flush=True)
                        report.append_jsonl(args.out.with_suffix(".jsonl"), [new[-1]])
            rows += new
    args.out.write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=1))
    md = summary_table(rows)
    report.write_atomic(args.out.with_suffix(".md"), md)
    figure(rows, args.out.with_suffix(".png"))
    print(md)
    print(f"wrote {args.out} (.jsonl, .md, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
