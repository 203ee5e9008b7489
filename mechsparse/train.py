"""Training the mechanism-sparsity VAE on the shared runner.

One run = one seed and one (coeff, bound, learn_mask, lr). A seed draws the dataset
(mixing, actions, random graph) and the initialisation; runs of one seed that differ
only in their hyper-parameters see the same data, the same initial weights and the same
minibatches, so comparisons between regularisations are paired.

Sparsity, vmapped with the seeds (:class:`HParams`): ``coeff > 0`` adds
``coeff * sum sigmoid(log_alpha) / d_x``; ``bound < full`` constrains the expected
number of edges (the bound annealed linearly from the full graph, a Lagrange multiplier
by projected gradient ascent, reset when the constraint holds); ``learn_mask = 0``
freezes the mask at the full graph (their unregularised baseline, ``--freeze_gc``).

The step is the core's (:mod:`mechind.core.training`): a ``TrainState`` whose ``extra`` is
the Lagrange multiplier, one Adam per task (the mask logits' updates scaled by
``mask_lr_mult``) with each run's lr injected, step ``i``'s (minibatch, noise) keys
``split(fold_in(key, i))``.

    from mechsparse import train
    state, metrics = train.train(jax.random.PRNGKey(0), train.Config(num_steps=2000), bound=20.0)
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mechind.core import metrics as core_metrics
from mechind.core import runner, training
from mechind.core.nets import INITS
from mechsparse import data as ms_data
from mechsparse import losses, metrics, models

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run, validated on construction. Data and network sizes
    and the schedule are static (one compiled group); :class:`HParams` are per run."""

    data: ms_data.Spec = ms_data.Spec()
    num_train: int = 20_000  # training samples (theirs: 10^6 x 0.8)
    num_val: int = 4_000  # held-out samples for MCC
    hidden: tuple[int, ...] = (256, 256, 256)  # encoder and decoder widths (theirs: 6 x 512)
    transition_hidden: tuple[int, ...] = (64, 64)  # per-latent transition MLPs (theirs: 5 x 512)
    batch_size: int = 256  # theirs: 1024
    num_steps: int = 10_000  # theirs: 300k
    lr: float = 5e-4  # Adam (theirs), the default of a single run
    # Adam step size of the mask logits log_alpha, as a multiple of lr. Adam moves a
    # logit by about lr per step, so from its initial 5 an edge needs ~5 / lr steps to
    # switch off: 10k at theirs (over 300k steps); shorter runs need a larger multiple
    mask_lr_mult: float = 1.0
    beta: float = 1.0  # KL weight
    tau: float = 1.0  # Gumbel-sigmoid temperature
    hard: bool = False  # straight-through (hard forward, soft gradient) Gumbel masks
    anneal_frac: float = 0.5  # share of training over which the bound falls to its target (theirs 150k / 300k)
    dual_lr: float = 5e-4  # step size of the multiplier's ascent (theirs: = lr)
    dual_restarts: bool = True  # reset the multiplier to 0 when the constraint holds (theirs)
    decoder_log_var_init: float = -10.0  # theirs: a tiny decoder variance, reconstruction first
    init: str = "lecun"  # "lecun" (flax) or "torch" (PyTorch's nn.Linear: U(±1/sqrt(fan_in)), as theirs)

    def __post_init__(self):
        for msg in runner.whole_number_errors(self):  # before the comparisons, which 20.5 passes
            raise ValueError(msg)
        checks = [
            (isinstance(self.data, ms_data.Spec), "data must be a mechsparse.data.Spec"),
            (
                self.num_train >= self.batch_size >= 1,
                f"num_train ({self.num_train}) must be >= batch_size ({self.batch_size}) >= 1",
            ),
            (self.num_val >= 2 * self.data.latent_dim, f"num_val must be >= 2 d_z, got {self.num_val}"),
            (len(self.hidden) >= 1 and min(self.hidden) >= 1, f"hidden must be positive widths, got {self.hidden}"),
            (
                min(self.transition_hidden, default=1) >= 1,
                f"transition_hidden must be positive widths, got {self.transition_hidden}",
            ),
            (self.num_steps >= 1, f"num_steps must be >= 1, got {self.num_steps}"),
            (self.lr > 0 and self.dual_lr > 0, f"lr and dual_lr must be > 0, got {self.lr}, {self.dual_lr}"),
            (self.mask_lr_mult > 0, f"mask_lr_mult must be > 0, got {self.mask_lr_mult}"),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (self.tau > 0, f"tau must be > 0, got {self.tau}"),
            (0 <= self.anneal_frac <= 1, f"anneal_frac must lie in [0, 1], got {self.anneal_frac}"),
            (self.init in INITS, f"init must be one of {INITS}, got {self.init!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def full_edges(self) -> int:
        """Edges of the full graph, d_z * d_p: the bound that constrains nothing."""
        return self.data.latent_dim * self.data.parent_dim

    def replace(self, **kw) -> "Config":
        return dataclasses.replace(self, **kw)


class HParams(NamedTuple):
    """Per-run hyper-parameters (a pytree; a leading run axis in a sweep)."""

    coeff: Array  # penalty weight (0: none)
    bound: Array  # target of the edge-count constraint (full_edges: none)
    learn_mask: Array  # 1: learn the graph; 0: the full graph, frozen (no regularisation)
    lr: Array  # Adam step size (injected into the optimizer's state by init_state)


def hparams(config: Config, coeffs=(0.0,), bounds=None, learn_masks=None, lrs=None) -> HParams:
    """Per-run :class:`HParams` with a leading run axis; ``bounds`` default to the full graph,
    ``learn_masks`` to 1, ``lrs`` to ``config.lr``. Bad values raise before anything compiles."""
    n = len(coeffs)
    bounds = [float(config.full_edges)] * n if bounds is None else list(bounds)
    learn_masks = [1.0] * n if learn_masks is None else list(learn_masks)
    lrs = [config.lr] * n if lrs is None else list(lrs)
    if not (len(bounds) == len(learn_masks) == len(lrs) == n):
        raise ValueError("coeffs, bounds, learn_masks and lrs must have the same length")
    check_hparams(config, coeffs, bounds)
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return HParams(f(coeffs), f(bounds), f(learn_masks), f(lrs))


def check_hparams(config: Config, coeffs, bounds) -> None:
    """A clear error for a negative coefficient or a bound outside [0, full graph]."""
    if min(coeffs, default=0.0) < 0:
        raise ValueError(f"the sparsity coefficient must be >= 0, got {min(coeffs)}")
    if bounds and (min(bounds) < 0 or max(bounds) > config.full_edges):
        raise ValueError(
            f"the edge bound must lie in [0, {config.full_edges}] (the full graph), got "
            f"{min(bounds) if min(bounds) < 0 else max(bounds)}"
        )


def make_model(config: Config) -> models.Model:
    s = config.data
    return models.Model(
        s.obs_dim,
        s.latent_dim,
        s.parent_dim,
        tuple(config.hidden),
        tuple(config.transition_hidden),
        config.decoder_log_var_init,
        config.init,
    )


def optimizer(config: Config) -> optax.GradientTransformation:
    """Adam (each run's lr injected by :func:`init_state`), the mask logits' updates
    multiplied by ``mask_lr_mult``; built once per task."""
    return training.adam(scale_leaves={"log_alpha": config.mask_lr_mult})


def elbo_terms(
    model: models.Model, params: dict, x: Array, a: Array, mask: Array, key: Array, kind: str
) -> tuple[Array, Array]:
    """``(reconstruction, kl)`` of a minibatch, each per observed coordinate (theirs).

    ``x [B, T, d_x]``, ``a [B, d_p]`` (actions; unused for time data), ``mask [d_z, d_p]``.
    Action data (T = 1): ``KL(q(z|x) || p(z | mask * a))``. Time data (T = 2): the mean of
    ``KL(q(z¹|x¹) || p(z¹ | mask * z⁰))`` at a posterior sample z⁰ and ``KL(q(z⁰|x⁰) || p(z⁰))``.
    """
    v = {"params": params}
    mean_q, var_q = model.apply(v, x, method=models.Model.encode)  # [B, T, d_z]
    z = mean_q + jnp.sqrt(var_q) * jax.random.normal(key, mean_q.shape)
    x_hat = model.apply(v, z, method=models.Model.decode)
    rec = losses.reconstruction_nll(x, x_hat, model.apply(v, method=models.Model.obs_std))
    obs_dim = x.shape[-1]
    if kind == "action":
        mean_p, var_p = model.apply(v, a, mask, method=models.Model.transition)
        kl = training.gaussian_kl(mean_q[:, 0], var_q[:, 0], mean_p, var_p).sum(-1)
    else:
        mean_p, var_p = model.apply(v, z[:, 0], mask, method=models.Model.transition)
        kl1 = training.gaussian_kl(mean_q[:, 1], var_q[:, 1], mean_p, var_p).sum(-1)
        m0, v0 = model.apply(v, method=models.Model.initial)
        kl0 = training.gaussian_kl(mean_q[:, 0], var_q[:, 0], m0, v0).sum(-1)
        kl = 0.5 * (kl1 + kl0)
    return rec, jnp.mean(kl) / obs_dim


def objective(
    config: Config,
    model: models.Model,
    params: dict,
    batch: dict,
    hp: HParams,
    multiplier: Array,
    bound: Array,
    key: Array,
) -> tuple[Array, dict]:
    """The minimised Lagrangian ``rec + beta kl + penalty + multiplier * (edges - bound)``
    of a minibatch (``x_train``, ``a_train``) and its parts. The mask is one Gumbel-sigmoid
    sample for the whole minibatch (theirs); with ``learn_mask = 0`` it is the full graph."""
    k_mask, k_z = jax.random.split(key)
    sample = models.gumbel_sigmoid(k_mask, params["log_alpha"], config.tau, config.hard)
    mask = hp.learn_mask * sample + (1.0 - hp.learn_mask)
    rec, kl = elbo_terms(model, params, batch["x_train"], batch["a_train"], mask, k_z, config.data.kind)
    count = losses.edge_count(params["log_alpha"])
    penalty = losses.sparsity_penalty(params["log_alpha"], hp.coeff, config.data.obs_dim)
    defect = count - bound
    total = rec + config.beta * kl + penalty + jax.lax.stop_gradient(multiplier) * defect
    return total, {"rec": rec, "kl": kl, "edges": count, "defect": defect}


def train_step(
    config: Config,
    model: models.Model,
    tx: optax.GradientTransformation,
    state: training.TrainState,
    data: dict,
    hp: HParams,
    i: Array,
) -> tuple[training.TrainState, Array]:
    """One step: the primal Adam step on the Lagrangian and the multiplier's ascent
    (``state.extra``), from the same minibatch (simultaneous, as their cooper setup)."""
    k_batch, k_obj = training.step_keys(state.key, i)
    batch = training.minibatch(k_batch, data, ("x_train", "a_train"), config.batch_size, config.num_train)
    bound = losses.annealed_bound(i, float(config.full_edges), hp.bound, int(config.anneal_frac * config.num_steps))
    (loss, parts), grads = jax.value_and_grad(objective, argnums=2, has_aux=True)(
        config, model, state.params, batch, hp, state.extra, bound, k_obj
    )
    multiplier = losses.dual_update(state.extra, parts["defect"], config.dual_lr, config.dual_restarts)
    return training.apply_gradients(tx, state, grads, extra=multiplier), loss


def data_key(key: Array) -> Array:
    """The key of a run's dataset (its initialisation and minibatches use others)."""
    return jax.random.fold_in(key, 0)


GIVEN = ("x", "z", "a", "graph")  # what a given dataset holds (as Spec.sample returns them)


def make_data(config: Config, key: Array, given: dict | None = None) -> dict:
    """Training and validation arrays of one seed: the first ``num_train`` samples train,
    the next ``num_val`` score. Drawn from ``config.data`` with the seed's data key, or
    split from ``given`` (``x [N, T, d_x]``, ``z [N, T, d_z]``, ``a [N, d_p]``,
    ``graph [d_z, d_p]``, as :meth:`mechsparse.data.Spec.sample` returns them, N =
    ``num_train + num_val``: a host-drawn or a user's dataset). Pure; the runner
    regenerates it on resume."""
    n, total = config.num_train, config.num_train + config.num_val
    d = config.data.sample(data_key(key), total) if given is None else check_given(config, given)
    return {
        "x_train": d["x"][:n],
        "a_train": d["a"][:n],
        "x_val": d["x"][n:total],
        "z_val": d["z"][n:total],
        "a_val": d["a"][n:total],
        "graph": d["graph"],
    }


def check_given(config: Config, given: dict) -> dict:
    """``given`` if its arrays have the shapes ``config`` compiles for, else a clear error
    (shapes are static: this runs once, while tracing)."""
    s = config.data
    total = config.num_train + config.num_val
    want = {
        "x": (total, s.steps, s.obs_dim),
        "z": (total, s.steps, s.latent_dim),
        "a": (total, s.parent_dim),
        "graph": (s.latent_dim, s.parent_dim),
    }
    missing = [k for k in GIVEN if k not in given]
    if missing:
        raise ValueError(f"a given dataset needs {', '.join(GIVEN)}; missing {', '.join(missing)}")
    for k, shape in want.items():
        if tuple(given[k].shape) != shape:
            raise ValueError(
                f"given {k} has shape {tuple(given[k].shape)}; this config needs {shape} "
                f"(num_train + num_val = {total}, {s.kind} data)"
            )
    return given


def init_state(
    config: Config, model: models.Model, tx: optax.GradientTransformation, key: Array, data: dict, hp: HParams
) -> training.TrainState:
    """Initial weights from ``fold_in(key, 1)``, the step key ``fold_in(key, 2)``, the
    multiplier (``extra``) at 0."""
    x0 = data["x_train"][0, 0]
    params = model.init(jax.random.fold_in(key, 1), x0, jnp.zeros((config.data.parent_dim,)))["params"]
    return training.init_state(tx, params, hp.lr, jax.random.fold_in(key, 2), extra=jnp.zeros(()))


def evaluate(config: Config, model: models.Model, state: training.TrainState, data: dict, hp: HParams) -> dict:
    """Held-out metrics of one run: the |correlation| matrix of the posterior means with the
    true latents (every time step), the affine fit's R², the edge probabilities, the true
    graph, the ELBO terms at the learned graph's expected mask, the latent scale and the
    multiplier."""
    p = state.params
    s = config.data
    x = data["x_val"]
    mean_q, _ = model.apply({"params": p}, x, method=models.Model.encode)
    z_true, z_hat = data["z_val"].reshape(-1, s.latent_dim), mean_q.reshape(-1, s.latent_dim)
    probs = models.edge_probabilities(p["log_alpha"])
    mask = hp.learn_mask * probs + (1.0 - hp.learn_mask)
    rec, kl = elbo_terms(model, p, x, data["a_val"], mask, jax.random.PRNGKey(0), s.kind)
    return {
        "corr": core_metrics.correlation_matrix(z_true, z_hat),
        "linear_r2": metrics.linear_r2(z_true, z_hat),
        "edge_probs": probs,
        "graph": data["graph"],
        "val_rec": rec,
        "val_kl": kl,
        "latent_std": jnp.std(z_hat, 0).mean(),
        "multiplier": state.extra,
    }


def make_task(config: Config) -> runner.Task:
    """The :class:`~mechind.core.runner.Task` of ``config``: the module-level functions
    above bound to it, its model and its optimizer (built once). Per-run :class:`HParams`;
    ``given`` (``runner.run_group(..., given=...)``): see :func:`make_data`."""
    model = make_model(config)
    tx = optimizer(config)
    s = config.data
    return runner.Task(
        make_data=lambda key, given: make_data(config, key, given),
        init=lambda key, data, hp: init_state(config, model, tx, key, data, hp),
        step=lambda state, data, hp, i: train_step(config, model, tx, state, data, hp, i),
        evaluate=lambda state, data, hp: evaluate(config, model, state, data, hp),
        num_steps=config.num_steps,
        name=f"{s.kind}/{s.graph}",
    )


def finish(m: dict, kind: str) -> dict:
    """Host-side scalars of one run: MCC, the affine fit's R² (identification up to an
    affine map, what a dense graph can give), SHD of the learned graph (edges with probability
    > 0.5, permuted by the MCC matching), its edge count, the ELBO terms, the latent scale.
    Shared by :func:`train` and the experiment."""
    corr = np.asarray(m["corr"], float)
    perm = core_metrics.matched_permutation(corr)
    learned = np.asarray(m["edge_probs"]) > 0.5
    return {
        "mcc": core_metrics.mcc_from_corr(corr),
        "linear_r2": float(m["linear_r2"]),
        "shd": metrics.shd(np.asarray(m["graph"]) > 0.5, learned, perm, kind),
        "edges_learned": int(learned.sum()),
        "edges_true": int((np.asarray(m["graph"]) > 0.5).sum()),
        "val_rec": float(m["val_rec"]),
        "val_kl": float(m["val_kl"]),
        "latent_std": float(m["latent_std"]),
        "multiplier": float(m["multiplier"]),
    }


def train(
    key: Array, config: Config, coeff: float = 0.0, bound: float | None = None, learn_mask: bool = True
) -> tuple[training.TrainState, dict]:
    """One run as a pure function: ``(state, metrics)`` with ``mcc`` and ``shd``."""
    hp = jax.tree.map(lambda v: v[0], hparams(config, [coeff], None if bound is None else [bound], [float(learn_mask)]))
    state, m = jax.jit(runner.make_train(make_task(config)))(key, hp)
    m = jax.device_get(m)
    return state, {**finish(m, config.data.kind), "failed": bool(m["failed"]), "final_loss": float(m["final_loss"])}
