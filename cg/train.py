"""The CG model and its training step: one VAE, one Adam step, shared by every CG
experiment and by :func:`cg.fitting.fit` (the one training path: experiments build their
runs with :func:`cg.fitting.prepare` and :func:`cg.fitting.make_fit_task`).

:class:`CGConfig` holds what defines the model and its optimisation; which prior, which
penalty and which weights a *method* uses is :data:`cg.models.METHODS`; the data (and
their preprocessing) are the caller's.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from cg import losses, models
from mechind.core import rng

Array = jax.Array


def _is_int(v) -> bool:
    """An integer, not a bool or a float that happens to be whole (20.5 steps is a mistake)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


_KINDS = {"int": _is_int, "float": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
          "tuple[int, ...]": lambda v: isinstance(v, tuple) and all(_is_int(h) for h in v)}


_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
          "tuple[int, ...]": "a list of integers"}


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
    beta, lr) are defaults for a single run and vmapped data in a sweep. The defaults are
    :func:`cg.fitting.make_config`'s business (``FIT_DEFAULTS``), not these."""

    latent_dim: int = 6  # n latents
    prior: str = "flow"  # "flow" (CG-VAE), "gaussian" (iVAE), "standard" (beta-VAE)
    sparse: bool = True  # compute the sparse-mixing penalty (alpha) at all
    penalty: str = "exact"  # "exact" Jacobian or "fd" forward differences
    penalty_units: str = "standardized"  # "standardized" (scale-invariant) or "raw" L1, see cg.losses
    fd_step: float = 1e-3  # h for penalty="fd"
    sparse_warmup: int = 0  # steps trained on the ELBO alone before the penalty is switched on
    alpha: float = 0.1  # sparse-mixing weight
    beta: float = 1.0  # KL weight
    obs_var: float = 0.01  # decoder variance (in preprocessed units); its initial value if learned
    learn_obs_var: bool = False  # learn one scalar decoder variance by maximum likelihood
    hidden: tuple[int, ...] = (32, 32)  # encoder/decoder widths
    flow_hidden: int = 8  # DSF sigmoid units per dimension
    embed_dim: int = 16  # domain embedding size
    batch_size: int = 256
    num_steps: int = 3_000
    lr: float = 1e-3
    lr_drop: float = 1.0  # fraction of training after which lr is divided by 10 (1: never)
    activation: str = "lrelu"  # encoder/decoder nonlinearity: "lrelu" (slope 0.2) or "xtanh"
    encoder_u: bool = False  # condition q(z | x, u) on the one-hot domain, as iVAE's encoder does
    posterior_cov: str = "diagonal"  # q(z|x) covariance: "diagonal" (mean field) or "full" (Cholesky factor)
    kl: str = "mc"  # "mc": one-sample KL for every prior; "analytic": closed form where it exists
    kl_warmup: int = 0  # steps over which the KL weight rises linearly from 0 to beta (against posterior collapse)
    log_var_min: float = -10.0  # posterior log-variance clip
    log_var_max: float = 10.0

    def __post_init__(self):
        _check_types(self)
        checks = [
            (_is_int(self.latent_dim) and self.latent_dim >= 1,
             f"latent_dim must be a positive integer, got {self.latent_dim!r}"),
            (_is_int(self.num_steps) and self.num_steps >= 1,
             f"num_steps must be a positive integer, got {self.num_steps!r}"),
            (_is_int(self.batch_size) and self.batch_size >= 1,
             f"batch_size must be a positive integer, got {self.batch_size!r}"),
            (all(_is_int(h) and h >= 1 for h in self.hidden) and len(self.hidden) >= 1,
             f"hidden must be a list of positive integer widths, got {self.hidden!r}"),
            (_is_int(self.flow_hidden) and self.flow_hidden >= 1,
             f"flow_hidden must be a positive integer, got {self.flow_hidden!r}"),
            (self.prior in models.PRIOR_CLASSES,
             f"prior must be one of {tuple(models.PRIOR_CLASSES)}, got {self.prior!r}"),
            (self.penalty in ("exact", "fd"), f"penalty must be 'exact' or 'fd', got {self.penalty!r}"),
            (self.penalty_units in losses.UNITS,
             f"penalty_units must be one of {losses.UNITS}, got {self.penalty_units!r}"),
            (self.fd_step > 0, f"fd_step must be > 0, got {self.fd_step}"),
            (0 <= self.sparse_warmup < self.num_steps,
             f"sparse_warmup must lie in [0, num_steps={self.num_steps}), got {self.sparse_warmup}"),
            (self.alpha >= 0, f"alpha must be >= 0, got {self.alpha}"),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (self.obs_var > 0, f"obs_var must be > 0, got {self.obs_var}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.lr_drop <= 1, f"lr_drop must lie in [0, 1], got {self.lr_drop}"),
            (self.activation in models.ACTIVATIONS,
             f"activation must be one of {models.ACTIVATIONS}, got {self.activation!r}"),
            (self.posterior_cov in ("diagonal", "full"),
             f"posterior_cov must be 'diagonal' or 'full', got {self.posterior_cov!r}"),
            (self.kl in ("mc", "analytic"), f"kl must be 'mc' or 'analytic', got {self.kl!r}"),
            (self.log_var_min < self.log_var_max, "need log_var_min < log_var_max"),
            (0 <= self.kl_warmup <= self.num_steps,
             f"kl_warmup must lie in [0, num_steps={self.num_steps}], got {self.kl_warmup}"),
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
    return HParams(jnp.asarray(alphas, jnp.float32), jnp.asarray(betas, jnp.float32), jnp.asarray(lrs, jnp.float32),
                   None if out_map is None else jnp.asarray(out_map, jnp.float32))


class TrainState(NamedTuple):
    """One run's state (a pytree)."""

    params: dict  # {"enc", "dec", "prior"} (+ "obs_log_var" when learned)
    opt: optax.OptState
    key: Array  # raw key data; step i draws from fold_in(key, i)


class Model(NamedTuple):
    """The VAE of one config as pure single-run functions (the fit task of
    :func:`cg.fitting.make_fit_task` steps and evaluates through them).

    Attributes:
      init: ``(key, hp) -> TrainState``.
      update: ``(state, x [B, d_x], u int [B], hp, step) -> (state, loss)``, one Adam step.
      loss: ``(params, x, u int, key, hp, alpha) -> scalar``, the minimised objective of a
        minibatch (negative (beta-)ELBO + alpha * sparse-mixing penalty), testable alone.
      encode: ``(params, x [N, d_x], u int [N]) -> [N, n]`` posterior means.
      posterior: ``(params, x, u) -> (mean, log variance)``, each ``[N, n]``.
      decode: ``(params, z [n]) -> [d_x]``.
      enc, dec: the flax modules.
    """

    init: Callable
    update: Callable
    loss: Callable
    encode: Callable
    posterior: Callable
    decode: Callable
    enc: Any
    dec: Any


def lr_schedule(c: CGConfig, lr: Array) -> Callable[[Array], Array]:
    """``step -> learning rate``: ``lr`` until ``lr_drop`` of training, then ``lr / 10``."""
    drop = int(c.lr_drop * c.num_steps)
    return lambda i: jnp.where(i < drop, lr, 0.1 * lr)


def make_model(c: CGConfig, obs_dim: int, num_domains: int) -> Model:
    """Encoder, decoder, prior and optimiser step for ``obs_dim`` observed dimensions and
    ``num_domains`` domain labels (the prior's table size; the encoder's one-hot width)."""
    n = c.latent_dim
    full = c.posterior_cov == "full"
    n_off = n * (n - 1) // 2 if full else 0
    enc, dec = models.make_nets(n, obs_dim, c.hidden, c.activation, extra_outputs=n_off)
    in_dim = obs_dim + (num_domains if c.encoder_u else 0)
    rows, cols = jnp.tril_indices(n, -1)
    prior = models.make_prior(c.prior, n, num_domains, c.embed_dim, c.flow_hidden)

    def enc_input(x, u):
        return jnp.concatenate([x, jax.nn.one_hot(u, num_domains)], -1) if c.encoder_u else x

    def q_params(params, x, u):
        """``(mu [B, n], log_diag [B, n], L [B, n, n] or None)``: q = N(mu, L L^T), with
        ``L_ii = exp(log_diag_i / 2)`` and, for a full covariance, free strictly-lower entries."""
        out = enc.apply({"params": params["enc"]}, enc_input(x, u))
        mu, log_diag = out[:, :n], jnp.clip(out[:, n:2 * n], c.log_var_min, c.log_var_max)
        if not full:
            return mu, log_diag, None
        tril = jnp.zeros((x.shape[0], n, n)).at[:, rows, cols].set(out[:, 2 * n:])
        return mu, log_diag, tril + jax.vmap(jnp.diag)(jnp.exp(0.5 * log_diag))

    def posterior(params, x, u):
        mu, log_diag, tril = q_params(params, x, u)
        return mu, log_diag if tril is None else jnp.log(jnp.sum(tril ** 2, -1))

    def encode(params, x, u):
        return posterior(params, x, u)[0]

    def decode(params, z):
        return dec.apply({"params": params["dec"]}, z)

    def init(key, hp):
        ke, kd, kp = jax.random.split(jax.random.fold_in(key, 1), 3)
        params = {"enc": enc.init(ke, jnp.zeros((in_dim,)))["params"],
                  "dec": dec.init(kd, jnp.zeros((n,)))["params"],
                  "prior": prior.init(kp)}
        if c.learn_obs_var:  # one scalar decoder log-variance, initialised at obs_var
            params["obs_log_var"] = jnp.log(jnp.float32(c.obs_var))
        return TrainState(params, optax.adam(hp.lr).init(params), rng.to_data(jax.random.fold_in(key, 2)))

    def loss_fn(params, x, u, key, hp, alpha):
        obs_var = jnp.exp(params["obs_log_var"]) if c.learn_obs_var else c.obs_var
        mu, log_var, tril = q_params(params, x, u)
        eps = jax.random.normal(key, mu.shape)
        z = mu + (jnp.exp(0.5 * log_var) * eps if tril is None else jnp.einsum("bij,bj->bi", tril, eps))
        x_hat = jax.vmap(lambda v: decode(params, v))(z)
        if c.kl == "analytic" and prior.closed_form_kl:
            kl = prior.kl(params["prior"], mu, log_var, u, tril)
            loss = losses.negative_elbo_analytic(x, x_hat, kl, hp.beta, obs_var)
        else:
            log_prior = prior.log_prob(params["prior"], z, u)
            if tril is None:
                loss, _ = losses.negative_elbo(x, x_hat, z, mu, log_var, log_prior, hp.beta, obs_var)
            else:  # log q(z|x) = log N(eps; 0, I) - log|det L|, det L = prod_i L_ii
                log_q = losses.gaussian_log_prob(eps, 0.0, 0.0) - 0.5 * jnp.sum(log_var, -1)
                loss = losses.negative_elbo_from_log_q(x, x_hat, log_q, log_prior, hp.beta, obs_var)
        if c.learn_obs_var:  # the Gaussian likelihood's normaliser, constant (and dropped) when obs_var is fixed
            loss = loss + 0.5 * x.shape[-1] * params["obs_log_var"]
        if c.sparse:
            # hp.out_map [d_x, d_x], when present, maps the decoder's (e.g. whitened) output to the
            # observed coordinates the sparsity is about (standardized), so the penalty is on their Jacobian
            out = (lambda v: decode(params, v) @ hp.out_map) if hp.out_map is not None else (lambda v: decode(params, v))
            loss = loss + alpha * losses.sparse_mixing_penalty(out, z, c.penalty,
                                                               c.fd_step, c.penalty_units)
        return loss

    def update(state, x, u, hp, i):
        kz = jax.random.fold_in(rng.from_data(state.key), i)
        kz = jax.random.split(kz)[1]
        # a warm-up fine-tunes with the penalty from an ELBO solution (as the CG GAN code does)
        alpha = jnp.where(i >= c.sparse_warmup, hp.alpha, 0.0)
        warm = jnp.minimum(1.0, (i + 1.0) / c.kl_warmup) if c.kl_warmup else 1.0
        loss, grads = jax.value_and_grad(loss_fn)(state.params, x, u, kz, hp._replace(beta=hp.beta * warm), alpha)
        opt_def = optax.adam(lr_schedule(c, hp.lr)(i))
        updates, opt = opt_def.update(grads, state.opt, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt, state.key), loss

    return Model(init, update, loss_fn, encode, posterior, decode, enc, dec)
