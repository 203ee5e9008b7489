"""Slot autoencoder training for the mechanistic-independence experiment.

One run = one seed and one (lambda, lr). A seed resamples the generator, the data and
the model initialisation; runs that share a seed and differ only in lambda see the same
data and the same initial weights, so lambda comparisons are paired.

    from mechind import train
    state, metrics = train.train(jax.random.PRNGKey(0), train.SlotConfig(num_slots=2, lam=1.0))

Many runs at once go through :mod:`mechind.core.runner` (see ``experiments/mechind_overlap.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mechind import data as slot_data
from mechind import losses, models
from mechind.core import derivatives, metrics, runner, training

Array = jax.Array


LATENT_NORMS = ("none", "batch")


def standardize(z: Array, ref: Array | None = None, eps: float = 1e-6) -> Array:
    """``z [N, d]`` with each latent standardized by the mean and std of ``ref [M, d]``
    (default: ``z`` itself, as batch normalization without an affine map)."""
    ref = z if ref is None else ref
    return (z - jnp.mean(ref, 0)) / (jnp.std(ref, 0) + eps)


def lam_ramp(lam: Array, step: Array, num_steps: int, warmup: float) -> Array:
    """lambda at ``step``: 0 -> lambda linearly over ``warmup * num_steps`` steps, then constant."""
    n = warmup * num_steps
    return lam if n <= 0 else lam * jnp.minimum(1.0, (step + 1) / n)


def encode(config, enc, params: dict, x: Array, ref: Array | None = None) -> Array:
    """Inferred latents ``[N, K*s]`` of ``x [N, d_x]``: the encoder output, standardized if
    ``config.latent_norm == "batch"`` (by the statistics of ``ref``'s encodings if given,
    else of ``x``'s own, as during training)."""
    z = enc.apply({"params": params["enc"]}, x)
    if config.latent_norm == "none":
        return z
    return standardize(z, None if ref is None else enc.apply({"params": params["enc"]}, ref))


def training_checks(c) -> list[tuple[bool, str]]:
    """``(ok, message)`` for the training settings every slot-autoencoder config shares (this
    module's :class:`SlotConfig`, the image pipeline's config): lambda, the optimizer and its
    schedule, the data sizes, SIS's split, the latent standardization."""
    return [
        (c.lam >= 0, f"lam must be >= 0, got {c.lam}"),
        (c.lr > 0, f"lr must be > 0, got {c.lr}"),
        (0 <= c.lr_drop <= 1, f"lr_drop must lie in [0, 1], got {c.lr_drop}"),
        (c.num_steps >= 1, f"num_steps must be >= 1, got {c.num_steps}"),
        (c.batch_size >= 1, f"batch_size must be >= 1, got {c.batch_size}"),
        (c.num_train >= c.batch_size, f"num_train ({c.num_train}) must be >= batch_size ({c.batch_size})"),
        (c.num_val >= 10, f"num_val must be >= 10 for a SIS fit/eval split, got {c.num_val}"),
        (0 < c.sis_fit_frac < 1, f"sis_fit_frac must lie in (0, 1), got {c.sis_fit_frac}"),
        (1 <= c.contrast_eval_samples, f"contrast_eval_samples must be >= 1, got {c.contrast_eval_samples}"),
        (c.latent_norm in LATENT_NORMS, f"latent_norm must be one of {LATENT_NORMS}, got {c.latent_norm!r}"),
        (c.norm_ref >= 2, f"norm_ref must be >= 2, got {c.norm_ref}"),
        (0 <= c.lam_warmup <= 1, f"lam_warmup must lie in [0, 1], got {c.lam_warmup}"),
    ]


@dataclasses.dataclass(frozen=True)
class SlotConfig:
    """Everything that defines a slot-autoencoder run; validated on construction.

    Shape-changing fields (K, overlap, layout, sizes, steps) define a compiled group;
    ``lam`` and ``lr`` are per-run data in a sweep (vmapped), defaults for a single run.
    The data settings (``num_slots`` to ``noise_std``) are those of the dataset,
    :attr:`dataset` (a :class:`mechind.data.SlotSpec`, registered as ``"slots"``).
    """

    num_slots: int = 2  # K: number of slots
    slot_dim: int = 3  # latents per slot
    obs_per_slot: int = 20  # observed coordinates each slot drives
    overlap: float = 0.0  # fraction of a slot's coordinates shared (Jacobian-support overlap)
    layout: str = "chain"  # "chain": shared with the neighbour; "shared": with all slots
    dependent: bool = False  # latents N(0, Sigma), Sigma ~ Wishart, instead of N(0, I)
    noise_std: float = 0.0  # observation noise std (0: x = g(z) exactly)
    decoder: str = "mlp"  # "mlp" (Brady et al.) or "additive" (sum of per-slot MLPs)
    hidden: tuple[int, ...] = (80, 80)  # hidden widths of encoder and decoder
    num_train: int = 72_000  # training samples (Brady et al.: 80,000 minus validation)
    num_val: int = 8_000  # held-out samples for SIS / R² (Brady et al.: 8,000)
    batch_size: int = 64
    num_steps: int = 115_000
    lr: float = 1e-3  # Adam learning rate, divided by 10 at lr_drop of training
    lr_drop: float = 0.5  # fraction of training after which lr is divided by 10
    lam: float = 0.0  # weight of compositional contrast
    sis_fit_frac: float = 0.8  # SIS: fraction of validation samples that fit the kernel ridge
    # "batch" (default): each latent is standardized over the batch (over the first norm_ref
    # training samples at evaluation), so the contrast cannot be paid by inflating the
    # latents; the model class is the same. "none": the encoder output is the latent, as in
    # Brady et al. (their raw form; the contrast then falls as 1/scale²)
    latent_norm: str = "batch"
    norm_ref: int = 8_192  # training samples whose statistics standardize latents at evaluation
    lam_warmup: float = 0.0  # fraction of training over which lambda ramps up linearly from 0
    init: str = "lecun"  # "lecun" (flax) or "torch" (PyTorch nn.Linear, as the reference code)
    contrast_eval_samples: int = 512  # validation samples on which C_comp is reported

    def __post_init__(self):
        self.dataset  # validates K, slot_dim, overlap, layout, obs_per_slot
        for msg in runner.whole_number_errors(self):  # before the comparisons, which 20.5 passes
            raise ValueError(msg)
        checks = [
            *training_checks(self),
            (self.decoder in ("mlp", "additive"), f"decoder must be 'mlp' or 'additive', got {self.decoder!r}"),
            (
                len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
                f"hidden must be a non-empty tuple of positive widths, got {self.hidden}",
            ),
            (self.init in models.INITS, f"init must be one of {models.INITS}, got {self.init!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def dataset(self) -> slot_data.SlotSpec:
        """The dataset these settings draw (its fields are this config's of the same names)."""
        return slot_data.SlotSpec(
            self.num_slots, self.slot_dim, self.obs_per_slot, self.overlap, self.layout, self.dependent, self.noise_std
        )

    def replace(self, **kw) -> "SlotConfig":
        return dataclasses.replace(self, **kw)


class Nets(NamedTuple):
    """The static parts of a config's runs, built once per task (no arrays): the encoder
    and decoder modules and the optimizer (Adam; the learning rate is each run's
    ``HParams.lr``, injected by :func:`init_state`)."""

    enc: Any
    dec: Any
    tx: optax.GradientTransformation


def make_nets(config: SlotConfig) -> Nets:
    """The networks of ``config`` and its Adam: lr, then lr / 10 from ``lr_drop * num_steps``
    on (Brady et al.)."""
    ds = config.dataset
    enc, dec = models.make_models(ds.obs_dim, ds.num_slots, ds.slot_dim, config.hidden, config.decoder, config.init)
    return Nets(enc, dec, training.adam(drop_at=int(config.lr_drop * config.num_steps)))


def make_data(config: SlotConfig, key: Array, given: dict | None = None) -> dict:
    """``x_train [N, d_x]``, ``x_val [M, d_x]``, ``z_val [M, K, s]`` of one run: the first
    ``num_train`` samples train, the next ``num_val`` validate.

    ``given``: the run's arrays (``{"x": [N + M, d_x], "z": [N + M, K, s] or [N + M, K * s]}``,
    e.g. a host-drawn dataset or a user's :class:`mechind.core.datasets.Arrays`); ``None``:
    :attr:`SlotConfig.dataset` drawn from ``fold_in(key, 0)``.
    """
    n, m = config.num_train, config.num_val
    ds = config.dataset
    if given is None:
        given = ds.sample(jax.random.fold_in(key, 0), n + m)
    if "z" not in given:
        raise ValueError("the slot pipeline needs the true latents z of its data (SIS is scored against them)")
    x, z = given["x"], given["z"]
    if x.shape != (n + m, ds.obs_dim) or z.size != (n + m) * ds.latent_dim:
        raise ValueError(
            f"data of shapes x {tuple(x.shape)}, z {tuple(z.shape)} do not fit the config: it needs "
            f"x [{n + m}, {ds.obs_dim}] (num_train + num_val samples) and z [{n + m}, "
            f"{ds.num_slots}, {ds.slot_dim}]"
        )
    z = z.reshape(n + m, ds.num_slots, ds.slot_dim)
    return {"x_train": x[:n], "x_val": x[n:], "z_val": z[n:]}


def init_state(config: SlotConfig, nets: Nets, key: Array, data: dict, hp: "HParams") -> training.TrainState:
    """Initial weights (restart r > 0: another initialisation on the same data and batches),
    ``nets.tx``'s state with ``hp.lr`` injected, and the run's step key."""
    ds = config.dataset
    k_init = jax.random.fold_in(key, 1)
    if hp.restart is not None:
        k_init = jnp.where(hp.restart > 0, jax.random.fold_in(k_init, hp.restart), k_init)
    params = models.init_autoencoder(k_init, nets.enc, nets.dec, ds.obs_dim, ds.latent_dim)
    return training.init_state(nets.tx, params, hp.lr, jax.random.fold_in(key, 2))


def loss(
    config: SlotConfig, nets: Nets, params: dict, x: Array, lam: Array, with_contrast: bool
) -> tuple[Array, tuple[Array, Array]]:
    """``(MSE + lam * C_comp, (MSE, C_comp))`` of a minibatch ``x [B, d_x]``; without the
    contrast (static) the decoder Jacobian is never computed and C_comp is 0."""
    z_hat = encode(config, nets.enc, params, x)
    decode = lambda z: nets.dec.apply({"params": params["dec"]}, z)  # noqa: E731
    rec = losses.mse(x, decode(z_hat))
    if not with_contrast:
        return rec, (rec, jnp.zeros(()))
    cc = losses.decoder_contrast(decode, z_hat, config.dataset.slot_sizes)
    return rec + lam * cc, (rec, cc)


def train_step(
    config: SlotConfig, nets: Nets, with_contrast: bool, state: training.TrainState, data: dict, hp: "HParams", i: Array
) -> tuple[training.TrainState, Array]:
    """One Adam step on a minibatch drawn from step ``i``'s key (no noise: the key is not
    split); lambda ramps up over ``lam_warmup`` of training."""
    batch = training.minibatch(training.step_key(state.key, i), data, ("x_train",), config.batch_size, config.num_train)
    lam = lam_ramp(hp.lam, i, config.num_steps, config.lam_warmup)
    (value, _), grads = jax.value_and_grad(loss, argnums=2, has_aux=True)(
        config, nets, state.params, batch["x_train"], lam, with_contrast
    )
    return training.apply_gradients(nets.tx, state, grads), value


def evaluate(config: SlotConfig, nets: Nets, state: training.TrainState, data: dict, hp: "HParams") -> dict:
    """Held-out metrics of one run: SIS's R² matrix, reconstruction, the contrast read three
    ways, the latent scale, and the training objective (what restarts are selected by)."""
    ds = config.dataset
    n_train, n_val = config.num_train, config.num_val
    sizes = ds.slot_sizes
    p = state.params
    x = data["x_val"]
    z_hat = encode(config, nets.enc, p, x, data["x_train"][: min(config.norm_ref, n_train)])
    x_hat = nets.dec.apply({"params": p["dec"]}, z_hat)
    ss_res = jnp.sum((x - x_hat) ** 2)
    ss_tot = jnp.sum((x - x.mean(0)) ** 2)
    m = min(config.contrast_eval_samples, n_val)
    decode = lambda z: nets.dec.apply({"params": p["dec"]}, z)  # noqa: E731
    # the training objective on a fixed training subset: what restarts are selected by
    # (it sees no latent truth and no validation data)
    x_ref = data["x_train"][: min(config.norm_ref, n_train)]
    z_ref = encode(config, nets.enc, p, x_ref, x_ref)
    objective = losses.mse(x_ref, nets.dec.apply({"params": p["dec"]}, z_ref)) + hp.lam * losses.decoder_contrast(
        decode, z_ref[:m], sizes
    )
    return {
        "sis_r2": metrics.sis_r2_matrix(
            data["z_val"], z_hat.reshape(n_val, ds.num_slots, ds.slot_dim), fit_frac=config.sis_fit_frac
        ),
        "recon_r2": 1.0 - ss_res / ss_tot,
        "val_mse": losses.mse(x, x_hat),
        "objective": objective,
        **contrast_diagnostics(decode, z_hat, x, sizes, m),
    }


def make_task(config: SlotConfig, with_contrast: bool | None = None) -> runner.Task:
    """The slot-autoencoder :class:`~mechind.core.runner.Task`: the module-level functions
    above, bound to ``config``.

    ``with_contrast`` (default: ``config.lam > 0``) is static: a group without it never
    computes the decoder Jacobian; a group with it vmaps any lambda >= 0.
    Per-run hparams: :class:`HParams` (``lam``, ``lr``, optionally ``restart``). Data: drawn
    from each run's key, or the runs' ``given`` arrays (:func:`make_data`).
    """
    if with_contrast is None:
        with_contrast = config.lam > 0
    nets = make_nets(config)  # the modules and the optimizer, once
    name = f"K={config.num_slots} overlap={config.overlap:g}" + (" +C_comp" if with_contrast else "")
    n_fit = int(round(config.sis_fit_frac * config.num_val))
    return runner.Task(
        make_data=lambda key, given: make_data(config, key, given),
        init=lambda key, data, hp: init_state(config, nets, key, data, hp),
        step=lambda state, data, hp, i: train_step(config, nets, with_contrast, state, data, hp, i),
        evaluate=lambda state, data, hp: evaluate(config, nets, state, data, hp),
        num_steps=config.num_steps,
        name=name,
        # SIS: one n_fit x n_fit kernel and its Cholesky factor per run at a time
        eval_bytes=2 * 4 * n_fit * n_fit,
    )


def contrast_diagnostics(decode, z_hat: Array, x: Array, slot_sizes, num_points: int) -> dict:
    """The contrast read three ways, and the latent scale that can fake it.

    ``decode: [d] -> [d_x]``, ``z_hat [N, d]`` inferred latents and ``x [N, d_x]`` the
    observations they came from; the Jacobian is taken at the first ``num_points``.

    Returns ``c_comp`` (raw, as trained and as in Brady et al.), ``c_comp_std`` (the same
    in standardized latent and observed units, so inflating the latents cannot lower it),
    ``contrast_share`` (the standardized cross-slot share of Jacobian energy, in
    ``[0, (K - 1) / 2K]``, comparable across data sets and implementations) and
    ``latent_std [d]`` (the spread of each inferred latent).
    """
    jac = derivatives.jacobian(decode, z_hat[:num_points], mode="fwd")
    z_std = jnp.std(z_hat, 0)
    jac_std = losses.standardize_jacobian(jac, z_std, jnp.maximum(jnp.std(x, 0), 1e-12))
    return {
        "c_comp": losses.compositional_contrast(jac, slot_sizes),
        "c_comp_std": losses.compositional_contrast(jac_std, slot_sizes),
        "contrast_share": losses.contrast_share(jac_std, slot_sizes),
        "latent_std": z_std,
    }


class HParams(NamedTuple):
    """Per-run hyper-parameters of the slot autoencoder (a pytree: a leading run axis in a
    sweep, vmapped by the runner)."""

    lam: Array  # compositional-contrast weight
    lr: Array  # Adam step size (injected into the optimizer's state by init_state)
    restart: Array | None = None  # int; r > 0: another initialisation on the same data and batches


def hparams(lams: Sequence[float], lrs: Sequence[float], restarts: Sequence[int] | None = None) -> HParams:
    """Per-run hyper-parameters as arrays with a leading run axis; ``restarts`` (default
    none) index further initialisations of a seed on the same data."""
    return HParams(
        jnp.asarray(lams, jnp.float32),
        jnp.asarray(lrs, jnp.float32),
        None if restarts is None else jnp.asarray(restarts, jnp.int32),
    )


def select_restarts(records: Sequence[dict], group_keys: Sequence[str], key: str = "objective") -> list[dict]:
    """Of the records that differ only in ``restart``, the one with the lowest training
    objective (``key``); records without a ``restart`` field pass through. ``group_keys``
    name what identifies a run apart from its restart (e.g. K, overlap, lam, seed).
    Failed runs are chosen only if every restart failed."""
    best: dict = {}  # group (or a unique marker for a record without restarts) -> (score, record)
    for i, r in enumerate(records):
        g = tuple(r[k] for k in group_keys) if "restart" in r else ("__single", i)
        score = (bool(r.get("failed", False)), r[key] if r.get(key) is not None else float("inf"))
        if g not in best or score < best[g][0]:
            best[g] = (score, r)
    return [r for _, r in best.values()]


def finish(m: dict) -> dict:
    """Host-side metrics of one run from :func:`make_task`'s evaluation (one run, no run
    axis): SIS and its R² matrix, reconstruction, the contrast raw and standardized, the
    contrast share, the latent scale (overall and per slot: mean std of its latents) and
    the training objective. Shared by :func:`train` and the sweeps."""
    z_std = np.asarray(m["latent_std"], float)
    k = len(m["sis_r2"])
    return {
        "sis": metrics.sis_from_r2(m["sis_r2"]),
        "sis_r2": np.asarray(m["sis_r2"]).tolist(),
        "recon_r2": float(m["recon_r2"]),
        "c_comp": float(m["c_comp"]),
        "c_comp_std": float(m["c_comp_std"]),
        "contrast_share": float(m["contrast_share"]),
        "slot_scale": z_std.reshape(k, -1).mean(1).tolist(),
        "latent_scale": float(z_std.mean()),
        "val_mse": float(m["val_mse"]),
        "objective": float(m["objective"]),
    }


def train(key: Array, config: SlotConfig) -> tuple[dict, dict]:
    """One run as a pure function: ``(state, metrics)``; metrics include ``sis``.

    ``key``: a key from :func:`mechind.core.rng.key` (fast to compile) or ``jax.random.PRNGKey``.
    """
    task = make_task(config)
    state, m = jax.jit(runner.make_train(task))(key, HParams(jnp.float32(config.lam), jnp.float32(config.lr)))
    return state, {**m, **finish(m)}
