"""The CG model, its training step and its runner task: one VAE, one Adam step, shared by
every CG experiment and by :func:`cg.fitting.fit` (the one training path: experiments
build their runs with :func:`cg.fitting.prepare`, whose :meth:`~cg.fitting.Prepared.task`
is :func:`make_task`).

:class:`CGConfig` holds what defines the model and its optimisation; which prior, which
penalty and which weights a *method* uses is :data:`cg.models.METHODS`; the data (and
their preprocessing) are the caller's. The step reads as every pipeline's does
(``docs/training_steps.md``): module-level pure functions of the config and the
:class:`Nets` (:func:`init_state`, :func:`loss`, :func:`train_step`, :func:`evaluate`),
bound in :func:`make_task`; the state is :class:`mechind.core.training.TrainState` and
the optimizer (:func:`optimizer`) is built once per task, its learning rate injected per
run.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cg import losses, models
from mechind.core import derivatives, metrics, runner, training

Array = jax.Array


def _is_int(v) -> bool:
    """An integer, not a bool or a float that happens to be whole (20.5 steps is a mistake)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


_KINDS = {
    "int": _is_int,
    "float": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "tuple[int, ...]": lambda v: isinstance(v, tuple) and all(_is_int(h) for h in v),
}


_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "tuple[int, ...]": "a list of integers",
}


def _check_types(config) -> None:
    """Each field against its annotation, first, so a value of the wrong type (``hidden=abc``,
    ``num_steps=20.5``) gets one line naming the field instead of a TypeError further on."""
    for f in dataclasses.fields(config):
        ok = _KINDS.get(f.type)
        v = getattr(config, f.name)
        if ok is not None and not ok(v):
            raise ValueError(f"{f.name} must be {_WORDS[f.type]}, got {v!r}")


@dataclasses.dataclass(frozen=True)
class CGConfig:
    """The model and its optimisation; validated on construction. Per-run numbers (alpha,
    beta, lr) are defaults for a single run and vmapped data in a sweep. These defaults are
    ``cg.fit``'s and every CG experiment's (a method's entry of :data:`cg.models.METHODS`
    then sets its prior, penalty, weights and settings: :func:`cg.fitting.make_config`)."""

    latent_dim: int = 6  # n latents
    prior: str = "flow"  # "flow" (CG-VAE), "gaussian" (iVAE), "standard" (beta-VAE)
    sparse: bool = True  # compute the sparse-mixing penalty (alpha) at all
    penalty: str = "exact"  # "exact" Jacobian or "fd" forward differences
    penalty_units: str = "standardized"  # "standardized" (scale-invariant) or "raw" L1, see cg.losses
    fd_step: float = 1e-3  # h for penalty="fd"
    sparse_warmup: int = 0  # steps trained on the ELBO alone before the penalty is switched on
    alpha: float = 0.1  # sparse-mixing weight
    beta: float = 1.0  # KL weight
    obs_var: float = 0.5  # decoder variance (in preprocessed units); its initial value if learned
    learn_obs_var: bool = True  # learn one scalar decoder variance by maximum likelihood
    hidden: tuple[int, ...] = (128, 128)  # encoder/decoder widths
    flow_hidden: int = 8  # DSF sigmoid units per dimension
    embed_dim: int = 16  # domain embedding size
    batch_size: int = 256
    num_steps: int = 20_000
    lr: float = 2e-3
    lr_drop: float = 0.75  # fraction of training after which lr is divided by 10 (1: never)
    activation: str = "lrelu"  # encoder/decoder nonlinearity: "lrelu" (slope 0.2) or "xtanh"
    encoder_u: bool = True  # condition q(z | x, u) on the one-hot domain, as iVAE's encoder does
    posterior_cov: str = "full"  # q(z|x) covariance: "diagonal" (mean field) or "full" (Cholesky factor)
    kl: str = "analytic"  # "mc": one-sample KL for every prior; "analytic": closed form where it exists
    kl_warmup: int = 0  # steps over which the KL weight rises linearly from 0 to beta (against posterior collapse)
    log_var_min: float = -10.0  # posterior log-variance clip
    log_var_max: float = 10.0

    def __post_init__(self):
        _check_types(self)
        checks = [
            (
                _is_int(self.latent_dim) and self.latent_dim >= 1,
                f"latent_dim must be a positive integer, got {self.latent_dim!r}",
            ),
            (
                _is_int(self.num_steps) and self.num_steps >= 1,
                f"num_steps must be a positive integer, got {self.num_steps!r}",
            ),
            (
                _is_int(self.batch_size) and self.batch_size >= 1,
                f"batch_size must be a positive integer, got {self.batch_size!r}",
            ),
            (
                all(_is_int(h) and h >= 1 for h in self.hidden) and len(self.hidden) >= 1,
                f"hidden must be a list of positive integer widths, got {self.hidden!r}",
            ),
            (
                _is_int(self.flow_hidden) and self.flow_hidden >= 1,
                f"flow_hidden must be a positive integer, got {self.flow_hidden!r}",
            ),
            (
                self.prior in models.PRIOR_CLASSES,
                f"prior must be one of {tuple(models.PRIOR_CLASSES)}, got {self.prior!r}",
            ),
            (self.penalty in ("exact", "fd"), f"penalty must be 'exact' or 'fd', got {self.penalty!r}"),
            (
                self.penalty_units in losses.UNITS,
                f"penalty_units must be one of {losses.UNITS}, got {self.penalty_units!r}",
            ),
            (self.fd_step > 0, f"fd_step must be > 0, got {self.fd_step}"),
            (
                0 <= self.sparse_warmup < self.num_steps,
                f"sparse_warmup must lie in [0, num_steps={self.num_steps}), got {self.sparse_warmup}",
            ),
            (self.alpha >= 0, f"alpha must be >= 0, got {self.alpha}"),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (self.obs_var > 0, f"obs_var must be > 0, got {self.obs_var}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.lr_drop <= 1, f"lr_drop must lie in [0, 1], got {self.lr_drop}"),
            (
                self.activation in models.ACTIVATIONS,
                f"activation must be one of {models.ACTIVATIONS}, got {self.activation!r}",
            ),
            (
                self.posterior_cov in ("diagonal", "full"),
                f"posterior_cov must be 'diagonal' or 'full', got {self.posterior_cov!r}",
            ),
            (self.kl in ("mc", "analytic"), f"kl must be 'mc' or 'analytic', got {self.kl!r}"),
            (self.log_var_min < self.log_var_max, "need log_var_min < log_var_max"),
            (
                0 <= self.kl_warmup <= self.num_steps,
                f"kl_warmup must lie in [0, num_steps={self.num_steps}], got {self.kl_warmup}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    def replace(self, **kw) -> "CGConfig":
        return dataclasses.replace(self, **kw)


class HParams(NamedTuple):
    """Per-run numbers of a CG run (a pytree: a leading run axis in a sweep, vmapped)."""

    alpha: Array  # sparse-mixing weight
    beta: Array  # KL weight
    lr: Array  # Adam step size
    out_map: Array | None = None  # [d_x, d_x] decoder output -> the coordinates the penalty is about


def hparams(alphas, betas, lrs, out_map=None) -> HParams:
    """Per-run numbers with a leading run axis (``out_map [R, d_x, d_x]`` or None)."""
    return HParams(
        jnp.asarray(alphas, jnp.float32),
        jnp.asarray(betas, jnp.float32),
        jnp.asarray(lrs, jnp.float32),
        None if out_map is None else jnp.asarray(out_map, jnp.float32),
    )


JACOBIAN_SAMPLES = 1_000  # posterior means at which support recovery reads the decoder's Jacobian
HELDOUT_STREAM = 2**31 - 1  # fold_in data of the held-out ELBO's noise: no training step uses it


class Nets(NamedTuple):
    """The model of one config and data shape (static: closed over by the task).

    Attributes:
      enc: flax MLP ``x (+ one-hot u) -> (mu, log var[, strictly-lower Cholesky entries])``.
      dec: flax MLP ``z -> x``.
      prior: the :class:`cg.models.Prior` of ``config.prior``.
      obs_dim: d_x; num_domains: the prior's table size and the encoder's one-hot width.
    """

    enc: Any
    dec: Any
    prior: models.Prior
    obs_dim: int
    num_domains: int


def make_nets(c: CGConfig, obs_dim: int, num_domains: int) -> Nets:
    """Encoder, decoder and prior for ``obs_dim`` observed dimensions and ``num_domains``
    domain labels."""
    n = c.latent_dim
    n_off = n * (n - 1) // 2 if c.posterior_cov == "full" else 0
    enc, dec = models.make_nets(n, obs_dim, c.hidden, c.activation, extra_outputs=n_off)
    prior = models.make_prior(c.prior, n, num_domains, c.embed_dim, c.flow_hidden)
    return Nets(enc, dec, prior, obs_dim, num_domains)


def optimizer(c: CGConfig) -> optax.GradientTransformation:
    """Adam, its learning rate injected per run (:func:`init_state`) and divided by 10 from
    step ``int(lr_drop * num_steps)`` on (never when ``lr_drop = 1``)."""
    return training.adam(drop_at=int(c.lr_drop * c.num_steps))


def _enc_input(c: CGConfig, nets: Nets, x: Array, u: Array) -> Array:
    return jnp.concatenate([x, jax.nn.one_hot(u, nets.num_domains)], -1) if c.encoder_u else x


def q_params(c: CGConfig, nets: Nets, params: dict, x: Array, u: Array) -> tuple[Array, Array, Array | None]:
    """``(mu [B, n], log_diag [B, n], L [B, n, n] or None)``: q = N(mu, L L^T), with
    ``L_ii = exp(log_diag_i / 2)`` and, for a full covariance, free strictly-lower entries."""
    n = c.latent_dim
    out = nets.enc.apply({"params": params["enc"]}, _enc_input(c, nets, x, u))
    mu, log_diag = out[:, :n], jnp.clip(out[:, n : 2 * n], c.log_var_min, c.log_var_max)
    if c.posterior_cov != "full":
        return mu, log_diag, None
    rows, cols = jnp.tril_indices(n, -1)
    tril = jnp.zeros((x.shape[0], n, n)).at[:, rows, cols].set(out[:, 2 * n :])
    return mu, log_diag, tril + jax.vmap(jnp.diag)(jnp.exp(0.5 * log_diag))


def posterior(c: CGConfig, nets: Nets, params: dict, x: Array, u: Array) -> tuple[Array, Array]:
    """``(mean, log variance)`` of q(z | x[, u]), each ``[N, n]``."""
    mu, log_diag, tril = q_params(c, nets, params, x, u)
    return mu, log_diag if tril is None else jnp.log(jnp.sum(tril**2, -1))


def encode(c: CGConfig, nets: Nets, params: dict, x: Array, u: Array) -> Array:
    """Posterior means ``[N, n]``."""
    return posterior(c, nets, params, x, u)[0]


def decode(nets: Nets, params: dict, z: Array) -> Array:
    """Decoder mean ``[d_x]`` of one ``z [n]``."""
    return nets.dec.apply({"params": params["dec"]}, z)


def init_state(
    c: CGConfig, nets: Nets, tx: optax.GradientTransformation, key: Array, hp: HParams
) -> training.TrainState:
    """Parameters ``{"enc", "dec", "prior"}`` (+ ``"obs_log_var"`` when learned) from
    ``fold_in(key, 1)``, the optimizer state with ``hp.lr``, and the step key ``fold_in(key, 2)``."""
    ke, kd, kp = jax.random.split(jax.random.fold_in(key, 1), 3)
    in_dim = nets.obs_dim + (nets.num_domains if c.encoder_u else 0)
    params = {
        "enc": nets.enc.init(ke, jnp.zeros((in_dim,)))["params"],
        "dec": nets.dec.init(kd, jnp.zeros((c.latent_dim,)))["params"],
        "prior": nets.prior.init(kp),
    }
    if c.learn_obs_var:  # one scalar decoder log-variance, initialised at obs_var
        params["obs_log_var"] = jnp.log(jnp.float32(c.obs_var))
    return training.init_state(tx, params, hp.lr, jax.random.fold_in(key, 2))


def loss(c: CGConfig, nets: Nets, params: dict, x: Array, u: Array, key: Array, hp: HParams, alpha: Array) -> Array:
    """The minimised objective of a minibatch ``x [B, d_x]``, ``u int [B]``: the negative
    (beta-)ELBO (one posterior sample from ``key``) + ``alpha`` * the sparse-mixing penalty."""
    obs_var = jnp.exp(params["obs_log_var"]) if c.learn_obs_var else c.obs_var
    mu, log_var, tril = q_params(c, nets, params, x, u)
    eps = jax.random.normal(key, mu.shape)
    z = mu + (jnp.exp(0.5 * log_var) * eps if tril is None else jnp.einsum("bij,bj->bi", tril, eps))
    x_hat = jax.vmap(lambda v: decode(nets, params, v))(z)
    if c.kl == "analytic" and nets.prior.closed_form_kl:
        kl = nets.prior.kl(params["prior"], mu, log_var, u, tril)
        value = losses.negative_elbo_analytic(x, x_hat, kl, hp.beta, obs_var)
    else:
        log_prior = nets.prior.log_prob(params["prior"], z, u)
        if tril is None:
            value, _ = losses.negative_elbo(x, x_hat, z, mu, log_var, log_prior, hp.beta, obs_var)
        else:  # log q(z|x) = log N(eps; 0, I) - log|det L|, det L = prod_i L_ii
            log_q = losses.gaussian_log_prob(eps, 0.0, 0.0) - 0.5 * jnp.sum(log_var, -1)
            value = losses.negative_elbo_from_log_q(x, x_hat, log_q, log_prior, hp.beta, obs_var)
    if c.learn_obs_var:  # the Gaussian likelihood's normaliser, constant (and dropped) when obs_var is fixed
        value = value + 0.5 * x.shape[-1] * params["obs_log_var"]
    if c.sparse:
        # hp.out_map [d_x, d_x], when present, maps the decoder's (e.g. whitened) output to the
        # observed coordinates the sparsity is about (standardized), so the penalty is on their Jacobian
        out = (
            (lambda v: decode(nets, params, v) @ hp.out_map)
            if hp.out_map is not None
            else (lambda v: decode(nets, params, v))
        )
        value = value + alpha * losses.sparse_mixing_penalty(out, z, c.penalty, c.fd_step, c.penalty_units)
    return value


def train_step(
    c: CGConfig,
    nets: Nets,
    tx: optax.GradientTransformation,
    state: training.TrainState,
    data: dict,
    hp: HParams,
    i: Array,
) -> tuple[training.TrainState, Array]:
    """One Adam step on a minibatch of ``data {"x" [N, d_x], "u" [N]}``: ``(state, loss)``."""
    k_batch, k_noise = training.step_keys(state.key, i)
    batch = training.minibatch(k_batch, data, ("x", "u"), c.batch_size, data["x"].shape[0])
    # a warm-up fine-tunes with the penalty from an ELBO solution (as the CG GAN code does)
    alpha = jnp.where(i >= c.sparse_warmup, hp.alpha, 0.0)
    warm = jnp.minimum(1.0, (i + 1.0) / c.kl_warmup) if c.kl_warmup else 1.0
    hp_i = hp._replace(beta=hp.beta * warm)
    value, grads = jax.value_and_grad(loss, argnums=2)(
        c, nets, state.params, batch["x"], batch["u"], k_noise, hp_i, alpha
    )
    return training.apply_gradients(tx, state, grads), value


def jacobian_rows(num_samples: int) -> np.ndarray:
    """int ``[min(N, JACOBIAN_SAMPLES)]``: rows evenly spread over ``0..N-1`` at which the
    decoder's Jacobian is read (support recovery, its standardized L1)."""
    return np.unique(np.linspace(0, num_samples - 1, min(num_samples, JACOBIAN_SAMPLES)).astype(np.int64))


def heldout_negative_elbo(c: CGConfig, nets: Nets, params: dict, x: Array, u: Array, key: Array) -> Array:
    """``-ELBO`` per sample (nats, one posterior sample each, beta = 1, no penalty) of
    preprocessed ``x [N, d_x]``, the Gaussian likelihood's normaliser included, so models
    with a fixed and a learned decoder variance compare."""
    hp = HParams(jnp.float32(0.0), jnp.float32(1.0), jnp.float32(0.0))
    value = loss(dataclasses.replace(c, sparse=False), nets, params, x, u, key, hp, 0.0)
    log_var = params["obs_log_var"] if c.learn_obs_var else jnp.log(c.obs_var)
    # the loss drops 0.5 d log(2 pi) always, and 0.5 d log(obs_var) when the variance is fixed
    return value + 0.5 * x.shape[-1] * (jnp.log(2 * jnp.pi) + (0.0 if c.learn_obs_var else log_var))


def evaluate(c: CGConfig, nets: Nets, state: training.TrainState, data: dict, hp: HParams) -> dict:
    """One run's metrics (arrays; :func:`finish` turns them into scalars). From the data it
    is given (each optional but ``x``, ``u``):

    * ``"z" [N, n_true]``, the true latents: their Pearson and Spearman correlation matrices
      with the posterior means over the whole dataset (``"corr"``, ``"corr_spearman"``), each
      latent's share of variance carried by its posterior mean (``"active" [n]``, see
      :meth:`cg.fitting.Fitted.active_latents`) and the latents' scale (``"latent_std"``);
    * ``"support" [d_x, n_true]``: also the decoder's mean absolute Jacobian in z-scored
      observed coordinates per latent standard deviation, ``"jac_abs" [d_x, n]``, over the
      rows :func:`jacobian_rows` (its sum is the standardized L1 of
      :func:`cg.losses.sparse_mixing_penalty`);
    * ``"x_val" [V, d_x]``, ``"u_val" [V]`` (preprocessed alike) and ``"logdet"`` (the
      preprocessing's log |det proj|): ``"heldout_nelbo"``, nats per held-out sample in
      the data's original units (:func:`heldout_negative_elbo`).
    """
    out = {}
    if "x_val" in data:
        key = jax.random.fold_in(state.key, HELDOUT_STREAM)
        out["heldout_nelbo"] = (
            heldout_negative_elbo(c, nets, state.params, data["x_val"], data["u_val"], key) - data["logdet"]
        )
    if "z" not in data:
        return out
    mu, log_var = posterior(c, nets, state.params, data["x"], data["u"])
    signal = jnp.var(mu, 0)
    out.update(
        {
            "corr": metrics.correlation_matrix(data["z"], mu),
            "corr_spearman": metrics.correlation_matrix(data["z"], mu, method="spearman"),
            "active": signal / (signal + jnp.mean(jnp.exp(log_var), 0)),
            # a derivative penalty can be paid by inflating the latents: keep their scale in view
            "latent_std": jnp.mean(jnp.sqrt(signal)),
        }
    )
    if "support" in data:  # support recovery: the decoder's Jacobian in z-scored coordinates
        # evenly spread over the dataset (user data and the benchmarks come sorted by domain:
        # the first points would all be from one domain, with that domain's latent spread)
        m = mu[jacobian_rows(data["x"].shape[0])]
        dec = lambda v: decode(nets, state.params, v) @ hp.out_map  # noqa: E731
        jac = derivatives.jacobian(dec, m, mode="fwd")  # [B, d_x, n]
        out["jac_abs"] = jnp.mean(jnp.abs(jac), 0) * jnp.std(m, 0)[None, :]  # per latent std
        out["support"] = data["support"]
    return out


def make_task(c: CGConfig, obs_dim: int, num_domains: int) -> runner.Task:
    """The runner task of a CG fit: its data are the caller's arrays (run_group's ``given``,
    preprocessed by :func:`cg.fitting.prepare`): ``{"x" [N, d_x], "u" [N]}`` and whatever
    of ``"z"``, ``"support"``, ``"x_val"``, ``"u_val"``, ``"logdet"`` :func:`evaluate` reads."""
    nets = make_nets(c, obs_dim, num_domains)
    tx = optimizer(c)

    def make_data(key, given):  # the arrays themselves
        return given

    return runner.Task(
        make_data=make_data,
        init=lambda key, data, hp: init_state(c, nets, tx, key, hp),
        step=lambda state, data, hp, i: train_step(c, nets, tx, state, data, hp, i),
        evaluate=lambda state, data, hp: evaluate(c, nets, state, data, hp),
        num_steps=c.num_steps,
        name=f"fit {c.prior}",
    )


def finish(m: dict) -> dict:
    """Host-side scalars of one run's :func:`evaluate` metrics (numpy): Pearson and Spearman
    MCC, active latents, the latent scale, and with a true support its recovery (AUROC, and
    the older thresholded F1) and the standardized L1; the held-out -ELBO."""
    out = {}
    if "heldout_nelbo" in m:
        out["heldout_nelbo"] = float(m["heldout_nelbo"])
    if "corr" not in m:
        return out
    perm = metrics.matched_permutation(m["corr"])
    out.update(
        {
            "mcc": metrics.mcc_from_corr(m["corr"]),
            "mcc_spearman": metrics.mcc_from_corr(m["corr_spearman"]),
            "active_latents": int(np.sum(m["active"] > 0.5)),
            "latent_std": float(m["latent_std"]),
        }
    )
    if "jac_abs" in m:
        support = np.asarray(m["support"], bool)
        out.update(
            {
                "support_auroc": metrics.support_auroc(m["jac_abs"], support, perm),
                "support_f1": metrics.support_f1(m["jac_abs"], support, perm),
                "l1_model": float(np.sum(m["jac_abs"])),
            }
        )
    return out


def train(key: Array, c: CGConfig, data: dict, hp: HParams | None = None) -> tuple[training.TrainState, dict]:
    """One run on preprocessed arrays ``data`` (:func:`make_task`'s), as one compiled
    program: ``(state, metrics)``. ``hp``: one run's numbers (default: the config's alpha,
    beta and lr, no ``out_map``). :func:`cg.fit` is this for raw arrays, with the
    preprocessing, checks and the chunked runner."""
    hp = HParams(jnp.float32(c.alpha), jnp.float32(c.beta), jnp.float32(c.lr)) if hp is None else hp
    x = data["x"]
    task = make_task(c, x.shape[-1], int(np.max(np.asarray(data["u"]))) + 1)
    return jax.jit(runner.make_train(task))(key, hp, data)
