"""CG-VAE, iVAE, beta-VAE and the ablations: one VAE, three priors.

* ``flow``: CG-VAE's ``log p(z|u) = log N(F_u(z); 0, I) + log|det dF_u/dz|``, F_u a
  component-wise deep sigmoid flow whose parameters come from an embedding of u.
* ``gaussian``: iVAE's conditional Gaussian ``N(mu_u, diag sigma_u^2)`` (learned per domain).
* ``standard``: ``N(0, I)`` (beta-VAE).

Each prior is a :class:`Prior` subclass registered by name in :data:`PRIOR_CLASSES`
(a new prior is one more subclass; the training code calls its ``init``, ``log_prob``
and, where it has one, its closed-form ``kl``). Which method uses which prior, and
whether the sparse-mixing penalty is on, with its weights and settings, is one
:class:`Method` entry of :data:`METHODS`; alpha and beta are per-run numbers (vmapped),
the prior and the penalty are structural.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from cg import flows, losses
from mechind.core import training
from mechind.core.nets import ACTIVATIONS as MLP_ACTIVATIONS
from mechind.core.nets import MLP

Array = jax.Array

ACTIVATIONS = tuple(MLP_ACTIVATIONS)


def make_nets(
    latent_dim: int, obs_dim: int, hidden: tuple[int, ...], activation: str = "lrelu", extra_outputs: int = 0
):
    """Gaussian encoder ``x -> (mu, log var[, off-diagonal Cholesky entries])`` and decoder
    ``z -> x``; ``extra_outputs`` widens the encoder's output (full covariances)."""
    return (MLP((*hidden, 2 * latent_dim + extra_outputs), activation), MLP((*hidden, obs_dim), activation))


class Prior:
    """The interface of a domain-conditional prior ``p(z | u)``: a new prior is a subclass
    registered in :data:`PRIOR_CLASSES`. Parameters are a dict pytree (vmapped per run)."""

    closed_form_kl = False  # whether :meth:`kl` exists (else the ELBO uses a one-sample KL)

    def __init__(self, latent_dim: int, max_domains: int, embed_dim: int = 16, flow_hidden: int = 8):
        self.latent_dim, self.max_domains = latent_dim, max_domains
        self.embed_dim, self.flow_hidden = embed_dim, flow_hidden

    def init(self, key: Array) -> dict:
        raise NotImplementedError

    def log_prob(self, params: dict, z: Array, u: Array) -> Array:
        """``log p(z | u)``: ``z [B, n]``, ``u int [B]`` -> ``[B]``."""
        raise NotImplementedError

    def kl(self, params: dict, mu: Array, log_var: Array, u: Array, tril: Array | None = None) -> Array:
        """``KL(q || p(z|u))`` in closed form, ``[B]``: ``q = N(mu, diag e^log_var)``, or
        ``N(mu, L L^T)`` when ``tril [B, n, n]`` is given (then ``log_var`` is ``log L_ii^2``).
        The one-sample estimate of :func:`cg.losses.negative_elbo` has the same expectation."""
        raise ValueError(f"no closed-form KL for the {type(self).__name__}")


class FlowPrior(Prior):
    """CG-VAE's: ``log N(F_u(z); 0, I) + log|det dF_u/dz|``, F_u a component-wise deep
    sigmoid flow whose parameters come from an embedding of u."""

    def init(self, key):
        k1, k2 = jax.random.split(key)
        out = 3 * self.latent_dim * self.flow_hidden
        return {
            "table": jax.random.normal(k1, (self.max_domains, self.embed_dim)),
            "proj": jax.random.normal(k2, (self.embed_dim, out)) * 0.1 / jnp.sqrt(self.embed_dim),
            "bias": jnp.zeros((out,)),
        }

    def log_prob(self, params, z, u):
        return flows.conditional_log_prob(params, z, u, self.flow_hidden)


def gaussian_prior_kl(mean_p: Array, log_var_p: Array, mu: Array, log_var: Array, tril: Array | None = None) -> Array:
    """``KL(q || N(mean_p, diag e^log_var_p))`` summed over the latents, ``[B]``, with ``q =
    N(mu, diag e^log_var)``, or ``N(mu, L L^T)`` when the Cholesky factor ``tril [B, n, n]``
    is given (then ``log_var`` is ``log L_ii^2``: the KL needs only the diagonal of the
    covariance and ``log det = sum log L_ii^2``).

    The core's :func:`mechind.core.training.gaussian_kl` summed over the latents (the factor
    1/2 after the sum: summing per-coordinate halves moved the Gaussian-prior methods'
    losses in the last bit inside the compiled sweeps)."""
    var = jnp.exp(log_var) if tril is None else jnp.sum(tril**2, -1)  # diag of L L^T
    return training.gaussian_kl(mu, var, mean_p, jnp.exp(log_var_p), log_var, log_var_p, axis=-1)


class GaussianPrior(Prior):
    """iVAE's: ``N(mu_u, diag sigma_u^2)``, learned per domain."""

    closed_form_kl = True

    def init(self, key):
        return {
            "mu": 0.1 * jax.random.normal(key, (self.max_domains, self.latent_dim)),
            "log_var": jnp.zeros((self.max_domains, self.latent_dim)),
        }

    def log_prob(self, params, z, u):
        if not isinstance(u, jax.core.Tracer):
            from cg.data import check_domains

            check_domains(u, params["mu"].shape[0])
        return losses.gaussian_log_prob(z, params["mu"][u], params["log_var"][u])

    def kl(self, params, mu, log_var, u, tril=None):
        return gaussian_prior_kl(params["mu"][u], params["log_var"][u], mu, log_var, tril)


class StandardPrior(Prior):
    """beta-VAE's ``N(0, I)``, the same for every domain."""

    closed_form_kl = True

    def init(self, key):
        return {}

    def log_prob(self, params, z, u):
        return jnp.sum(flows.std_normal_log_prob(z), -1)

    def kl(self, params, mu, log_var, u, tril=None):
        return gaussian_prior_kl(jnp.zeros_like(mu), jnp.zeros_like(log_var), mu, log_var, tril)


PRIOR_CLASSES: dict[str, type[Prior]] = {"flow": FlowPrior, "gaussian": GaussianPrior, "standard": StandardPrior}
PRIORS = tuple(PRIOR_CLASSES)  # the built-in ones


def make_prior(prior: str, latent_dim: int, max_domains: int, embed_dim: int = 16, flow_hidden: int = 8) -> Prior:
    """The :class:`Prior` registered under ``prior``."""
    if prior not in PRIOR_CLASSES:
        raise ValueError(f"prior must be one of {tuple(PRIOR_CLASSES)}, got {prior!r}")
    return PRIOR_CLASSES[prior](latent_dim, max_domains, embed_dim, flow_hidden)


@dataclasses.dataclass(frozen=True)
class Method:
    """Everything that makes a method: its prior, its penalty, its weights, and any
    :class:`cg.train.CGConfig` field it sets (``settings``). A new method is one entry of
    :data:`METHODS`; :func:`cg.fitting.make_config` and the experiments read nothing else.

    Attributes:
      prior: a key of :data:`PRIOR_CLASSES`.
      penalty: ``None`` (no sparse-mixing term), ``"exact"`` (the L1 of the decoder's exact
        Jacobian) or ``"fd"`` (forward finite differences, the CG paper's choice).
      alpha: the penalty's default weight (0 without a penalty).
      beta: the KL weight.
      settings: ``((field, value), ...)``, config fields the method fixes.
      doc: one line for tables and ``--help``.
    """

    prior: str
    penalty: str | None = None
    alpha: float = 0.0
    beta: float = 1.0
    settings: tuple = ()
    doc: str = ""

    def __post_init__(self):
        if self.prior not in PRIOR_CLASSES:
            raise ValueError(f"prior must be one of {tuple(PRIOR_CLASSES)}, got {self.prior!r}")
        if self.penalty not in (None, "exact", "fd"):
            raise ValueError(f"penalty must be None, 'exact' or 'fd', got {self.penalty!r}")
        if (self.penalty is None) != (self.alpha == 0):
            raise ValueError("a method has alpha > 0 exactly when it has a penalty")

    @property
    def sparse(self) -> bool:
        return self.penalty is not None


# the CG reference code's lambda_sparse; the weight of every L1 method unless a sweep says otherwise
DEFAULT_ALPHA = 0.1
METHODS: dict[str, Method] = {
    "cg_vae": Method("flow", "exact", DEFAULT_ALPHA, doc="flow prior + L1 of the decoder Jacobian (CG-VAE)"),
    "cg_vae_no_sparsity": Method("flow", doc="flow prior, no penalty"),
    "cg_vae_no_flow": Method("gaussian", "exact", DEFAULT_ALPHA, doc="Gaussian prior + L1"),
    "ivae": Method("gaussian", doc="conditional Gaussian prior (iVAE)"),
    # beta > 1 with a *learned* decoder variance has a degenerate optimum (the variance explains all
    # the data, every latent switched off; measured on the sparse iVAE protocol, n = 3, 4 domains: 0
    # active latents, MCC 0.23-0.50), so beta-VAE keeps a fixed variance of 0.05 of the whitened unit
    # variance (3 of 3 latents active, MCC 0.70-0.81)
    "beta_vae": Method(
        "standard", beta=4.0, settings=(("learn_obs_var", False), ("obs_var", 0.05)), doc="N(0, I) prior, beta = 4"
    ),
    # a 1-unit deep sigmoid flow is logit(sigmoid(a z + b)) = a z + b: exactly iVAE's Gaussian, through
    # the flow's code path; it tells the flow's flexibility apart from everything else it brings
    "cg_vae_flow1": Method(
        "flow",
        "exact",
        DEFAULT_ALPHA,
        settings=(("flow_hidden", 1),),
        doc="1-unit flow (a Gaussian) + L1: the flexibility control",
    ),
    "cg_vae_fd": Method("flow", "fd", DEFAULT_ALPHA, doc="CG-VAE with the paper's finite-difference penalty"),
}
