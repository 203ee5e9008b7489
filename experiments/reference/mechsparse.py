"""Mechanism sparsity side by side: the authors' PyTorch model and ``mechsparse`` on
identical data (action sparsity, the non-trivial graph).

The reference is Lachapelle et al.'s own model code
(github.com/slachapelle/disentanglement_via_mechanism_sparsity), imported from a fetched
copy (never vendored): its ``ILCM_VAE`` (ELBO, Gaussian encoder/decoder, learned decoder
variance) and ``FCGaussianLatentModel`` (Gumbel-sigmoid masks, per-latent transition
MLPs, independent prior variance). Shims, and nothing else:

* the data are ours (:meth:`mechsparse.data.Spec.sample`, the same protocol), so both fit
  exactly the same arrays;
* ``numpy.product`` (removed in numpy 2, called by their ELBO) is ``numpy.prod``
  (:func:`experiments.reference.checkouts.import_mechsparse`);
* their encoder and decoder are their own ``MLP`` class at our preset's width and depth
  (their constructor fixes width 512 and at least 3 layers);
* the optimisation loop is written here, as in their ``train.py`` minus ``cooper`` and
  ``ignite`` (not installable here): Adam on every parameter (the mask logits at
  ``mask_lr_mult`` x lr, as ours), the Lagrangian ``-ELBO + multiplier * (Σσ(log α) -
  bound)`` with the bound annealed linearly, projected dual ascent with restarts, or the
  penalty ``coeff Σσ(log α) / d_x``; minibatches drawn uniformly with replacement.

Both score MCC (Pearson, Hungarian) of the posterior means on the same held-out samples
and the SHD of the learned G^a under that matching. Needs the ``bench`` extra (torch).

``--their-init`` also trains ours from their initial weights (mapped onto our parameter
tree), to tell a difference of initialisation from one of training.

    python -m experiments.reference.mechsparse --repo /path/to/checkout --seeds 0 1 2 [--their-init]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import types
from pathlib import Path

import jax
import numpy as np

from experiments.reference import checkouts
from mechind.core import metrics as core_metrics
from mechind.core import report, rng
from mechsparse import metrics as ms_metrics
from mechsparse import train

REGIMES = {
    "none": dict(coeff=0.0, bound=None, learn=False),
    "penalty 1": dict(coeff=1.0, bound=None, learn=True),
    "bound 1x true": dict(coeff=0.0, bound="true", learn=True),
}


def our_data(config: train.Config, seed: int) -> dict:
    """The arrays our run of ``seed`` trains and is scored on (host numpy)."""
    return jax.device_get(jax.jit(lambda k: train.make_data(config, k))(rng.key(seed)))


def build_reference(tree: Path, config: train.Config, learn_mask: bool):
    """Their ``ILCM_VAE`` and latent model at our preset's sizes, initialised by their code
    (under the caller's ``torch.manual_seed``)."""
    ref = checkouts.import_mechsparse(tree)
    s = config.data
    latent = ref.FCGaussianLatentModel(
        s.latent_dim,
        s.parent_dim,
        0,
        [],
        "MLP",
        n_lag=0,
        n_layers=len(config.transition_hidden),
        hid_dim=config.transition_hidden[0],
        freeze_m=True,
        freeze_g=True,
        freeze_gc=not learn_mask,
        freeze_dummies=True,
        no_drawhard=not config.hard,
        output_delta=False,
        var_p_mode="independent",
        gumbel_temperature=config.tau,
        one_gumbel_sample=True,
    )
    opt = types.SimpleNamespace(
        z_max_dim=s.latent_dim,
        n_lag=0,
        beta=config.beta,
        learn_decoder_var=True,
        full_seq=False,
        encoder="tabular",
        decoder="tabular",
        encoder_depth_multiplier=1,
        decoder_depth_multiplier=1,
        bn_enc_dec=False,
        freeze_dummies=True,
        init_decoder_var=None,
    )
    model = ref.ILCM_VAE(latent, (s.obs_dim,), s.parent_dim, 0, [], opt)
    width, depth = config.hidden[0], len(config.hidden)
    model.encoder = ref.MLP(s.obs_dim, 2 * s.latent_dim, width, depth, batch_norm=False)
    model.decoder = ref.MLP(s.latent_dim, s.obs_dim, width, depth, batch_norm=False)
    return model, latent


def their_initial_params(model, latent, ours: dict) -> dict:
    """Our parameter tree holding their initial weights (``ours``: a tree of the same
    config, for the parameters theirs does not have: mask logits, decoder variance).
    Their encoder interleaves (mean, log-variance) per latent; ours puts the means first."""
    import jax.numpy as jnp

    t = lambda x: jnp.asarray(x.detach().numpy())  # noqa: E731
    layers = lambda m: [getattr(m, f"linear{i}") for i in range(m.nlayers)] + [m.linear_out]  # noqa: E731
    dense = lambda m: {
        f"Dense_{i}": {"kernel": t(lin.weight).T, "bias": t(lin.bias)}  # noqa: E731
        for i, lin in enumerate(layers(m))
    }
    enc = dense(model.encoder)
    last = f"Dense_{model.encoder.nlayers}"
    w, b = enc[last]["kernel"], enc[last]["bias"]
    enc[last] = {"kernel": jnp.concatenate([w[:, 0::2], w[:, 1::2]], 1), "bias": jnp.concatenate([b[0::2], b[1::2]])}
    dec = dense(model.decoder)
    pm = latent.parallel_mlp
    n, hid = latent.num_z_blocks, latent.hid_dim
    mlp = {"w0": jnp.transpose(t(latent.linear_cont_c.weight), (0, 2, 1)), "b0": t(latent.input_bias)}
    for i in range(pm.nlayers):  # their hidden parallel layers have no bias
        mlp[f"w{i + 1}"] = jnp.transpose(t(getattr(pm, f"linear{i}").weight), (0, 2, 1))
        mlp[f"b{i + 1}"] = jnp.zeros((n, hid))
    k = pm.nlayers + 1
    mlp[f"w{k}"] = jnp.transpose(t(pm.linear_out.weight)[:, 0:1, :], (0, 2, 1))  # their output 0 is the mean
    mlp[f"b{k}"] = t(pm.linear_out.bias)[:, 0:1]
    prior = {"ParallelMLP_0": mlp, "raw_var": t(latent.logvar).reshape(n)}
    return {**ours, "encoder": enc, "decoder": dec, "prior": prior}


def run_ours_from_their_init(tree: Path, config: train.Config, seed: int, regime: str) -> dict:
    """Our training loop (``mechsparse.train``) started from their initial weights: if this
    closes the gap to the reference, the difference is the initialisation, not the training."""
    import jax.numpy as jnp
    import torch

    from mechind.core import runner, training

    reg = REGIMES[regime]
    task = train.make_task(config)
    key = rng.key(seed)
    data = jax.jit(task.make_data)(key, None)  # the task draws its own
    bound = float(np.asarray(data["graph"]).sum()) if reg["bound"] == "true" else float(config.full_edges)
    hp = train.HParams(
        jnp.float32(reg["coeff"]), jnp.float32(bound), jnp.float32(float(reg["learn"])), jnp.float32(config.lr)
    )
    ours = task.init(key, data, hp)
    torch.manual_seed(seed)
    params = their_initial_params(*build_reference(tree, config, reg["learn"]), ours.params)
    if jax.tree.map(jnp.shape, params) != jax.tree.map(jnp.shape, ours.params):
        raise RuntimeError("their parameters do not map onto ours at these sizes")
    state = training.init_state(train.optimizer(config), params, hp.lr, ours.key, extra=ours.extra)
    final, _ = jax.jit(lambda st: runner.scan_steps(task, st, data, hp, jnp.int32(0), config.num_steps))(state)
    fin = train.finish(jax.device_get(task.evaluate(final, data, hp)), "action")
    return {"seed": seed, "regime": regime, "mcc": fin["mcc"], "shd": fin["shd"], "edges": fin["edges_learned"]}


def run_reference(tree: Path, config: train.Config, data: dict, seed: int, regime: str, steps: int) -> dict:
    """Their model trained on ``data``; MCC and SHD on our held-out samples."""
    import torch

    torch.manual_seed(seed)
    s = config.data
    reg = REGIMES[regime]
    model, latent = build_reference(tree, config, learn_mask=reg["learn"])
    mask_params = [p for n, p in model.named_parameters() if "log_alpha" in n]
    others = [p for n, p in model.named_parameters() if "log_alpha" not in n and p.requires_grad]
    optim = torch.optim.Adam(
        [{"params": others, "lr": config.lr}, {"params": mask_params, "lr": config.lr * config.mask_lr_mult}]
    )
    x = torch.tensor(np.asarray(data["x_train"]), dtype=torch.float32)
    a = torch.tensor(np.asarray(data["a_train"]), dtype=torch.float32)
    graph = np.asarray(data["graph"]) > 0.5
    full, target = float(config.full_edges), float(graph.sum())
    anneal = int(config.anneal_frac * config.num_steps)
    gen = torch.Generator().manual_seed(seed)
    multiplier, t0 = 0.0, time.perf_counter()
    for i in range(steps):
        idx = torch.randint(0, x.shape[0], (config.batch_size,), generator=gen)
        elbo, _, _, _ = model.elbo(x[idx], a[idx], None)
        loss = -elbo.mean()
        edges = latent.gc_regularizer()
        if reg["coeff"] > 0:
            loss = loss + reg["coeff"] * edges / s.obs_dim
        defect = 0.0
        if reg["bound"] == "true":
            bound = full + (target - full) * min(1.0, i / anneal) if anneal > 0 else target
            defect = edges.item() - bound
            loss = loss + multiplier * (edges - bound)
        optim.zero_grad()
        loss.backward()
        optim.step()
        if reg["bound"] == "true":  # projected ascent, reset when the constraint holds (--dual_restarts)
            multiplier = 0.0 if defect <= 0 else max(0.0, multiplier + config.dual_lr * defect)
        if not np.isfinite(loss.item()):
            return {"failed": True, "mcc": float("nan"), "shd": -1, "train_s": time.perf_counter() - t0}
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        xv = torch.tensor(np.asarray(data["x_val"]).reshape(-1, s.obs_dim), dtype=torch.float32)
        mean, _ = latent.transform_q_params(model.encode(xv))
        z_hat = mean.reshape(xv.shape[0], -1).numpy()
        probs = latent.gc.get_proba().numpy()
    z_val = np.asarray(data["z_val"]).reshape(-1, s.latent_dim)
    corr = np.asarray(core_metrics.correlation_matrix(z_val, z_hat))
    perm = core_metrics.matched_permutation(corr)
    return {
        "failed": False,
        "mcc": core_metrics.mcc_from_corr(corr),
        "shd": ms_metrics.shd(graph, probs > 0.5, perm, "action"),
        "edges": int((probs > 0.5).sum()),
        "train_s": train_s,
        "ms_per_step": 1e3 * train_s / steps,
    }


def run_ours(config: train.Config, seeds: list[int]) -> list[dict]:
    """Our quick-preset runs of ``seeds`` (one vmapped program over seeds x regimes)."""
    from mechind.core import runner

    rows, keys, coeffs, bounds, learn = [], [], [], [], []
    for seed in seeds:
        true_edges = float(np.asarray(our_data(config, seed)["graph"]).sum())
        for name, reg in REGIMES.items():
            rows.append({"seed": seed, "regime": name})
            keys.append(rng.key(seed))
            coeffs.append(reg["coeff"])
            bounds.append(true_edges if reg["bound"] == "true" else float(config.full_edges))
            learn.append(1.0 if reg["learn"] else 0.0)
    hp = train.hparams(config, coeffs, bounds, learn)
    t0 = time.perf_counter()
    res = runner.run_group(
        train.make_task(config), jax.numpy.stack(keys), hp, chunk_steps=config.num_steps, progress=False
    )
    train_s = time.perf_counter() - t0
    out = []
    for r, row in enumerate(rows):
        fin = train.finish(jax.tree.map(lambda v: np.asarray(v)[r], res.metrics), "action")
        out.append(
            {
                **row,
                "mcc": fin["mcc"],
                "shd": fin["shd"],
                "edges": fin["edges_learned"],
                "failed": bool(res.failed[r]),
                "train_s_all_runs": train_s,
            }
        )
    return out


def main(argv=None) -> dict:
    from experiments import mechanism_sparsity

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--repo",
        type=Path,
        required=True,
        help="their repository: a checkout or the bare git directory the fetch tool brings",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data (and init) seeds")
    ap.add_argument(
        "--num-steps",
        "--steps",
        dest="steps",
        type=int,
        default=None,
        help="training steps (default: the quick preset's)",
    )
    ap.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    ap.add_argument(
        "--their-init",
        action="store_true",
        help="also train ours from their initial weights (is a gap the init or the training?)",
    )
    ap.add_argument("--out", type=Path, default=Path("results/bench/mechsparse_reference.json"))
    args = ap.parse_args(argv)
    config = mechanism_sparsity.PRESETS["quick"].train_config("action")
    if args.steps:
        config = config.replace(num_steps=args.steps)
    tree = checkouts.checkout(
        args.repo, Path(tempfile.mkdtemp()) / "ref", checkouts.MECHSPARSE_MARKER, checkouts.MECHSPARSE_PATHS
    )
    ours = run_ours(config, args.seeds)
    theirs = []
    for seed in args.seeds:
        data = our_data(config, seed)
        for regime in args.regimes:
            r = run_reference(tree, config, data, seed, regime, config.num_steps)
            theirs.append({"seed": seed, "regime": regime, **r})
            mine = next(o["mcc"] for o in ours if o["seed"] == seed and o["regime"] == regime)
            print(
                f"seed {seed} {regime}: reference MCC {r['mcc']:.3f} SHD {r['shd']} "
                f"({r['train_s']:.0f}s); ours {mine:.3f}",
                flush=True,
            )
    transplanted = (
        [run_ours_from_their_init(tree, config, seed, regime) for seed in args.seeds for regime in args.regimes]
        if args.their_init
        else []
    )
    summary = {
        "config": {
            "steps": config.num_steps,
            "hidden": config.hidden,
            "transition_hidden": config.transition_hidden,
            "batch": config.batch_size,
            "lr": config.lr,
            "mask_lr_mult": config.mask_lr_mult,
            "num_train": config.num_train,
        },
        "device": report.device_info(),
        "ours": ours,
        "reference": theirs,
        "ours_from_their_init": transplanted,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report.write_atomic(args.out, json.dumps(summary, indent=1, default=str))
    for regime in args.regimes:
        o = [r["mcc"] for r in ours if r["regime"] == regime]
        t = [r["mcc"] for r in theirs if r["regime"] == regime]
        x = [r["mcc"] for r in transplanted if r["regime"] == regime]
        print(
            f"{regime}: ours {np.mean(o):.3f} ({' '.join(f'{v:.3f}' for v in o)}), "
            f"reference {np.nanmean(t):.3f} ({' '.join(f'{v:.3f}' for v in t)})"
            + (f", ours from their init {np.mean(x):.3f} ({' '.join(f'{v:.3f}' for v in x)})" if x else "")
        )
    return summary


if __name__ == "__main__":
    main()
