"""CG-VAE, iVAE, beta-VAE and the ablations: one VAE, three priors.

* ``flow``: CG-VAE's ``log p(z|u) = log N(F_u(z); 0, I) + log|det dF_u/dz|``, F_u a
  component-wise deep sigmoid flow whose parameters come from an embedding of u.
* ``gaussian``: iVAE's conditional Gaussian ``N(mu_u, diag sigma_u^2)`` (learned per domain).
* ``standard``: ``N(0, I)`` (beta-VAE).

Which method uses which prior, and whether the sparse-mixing penalty is on, is in
:data:`METHODS`; alpha and beta are per-run numbers (vmapped), the prior is structural.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cg import flows, losses
from mechind.models import ACTIVATIONS as MLP_ACTIVATIONS, MLP

Array = jax.Array

PRIORS = ("flow", "gaussian", "standard")

METHODS = {
    "cg_vae": dict(prior="flow", sparse=True, beta=1.0),
    "cg_vae_no_sparsity": dict(prior="flow", sparse=False, beta=1.0),
    "cg_vae_no_flow": dict(prior="gaussian", sparse=True, beta=1.0),
    "ivae": dict(prior="gaussian", sparse=False, beta=1.0),
    "beta_vae": dict(prior="standard", sparse=False, beta=4.0),
}


ACTIVATIONS = tuple(MLP_ACTIVATIONS)


def make_nets(latent_dim: int, obs_dim: int, hidden: tuple[int, ...], activation: str = "lrelu",
              extra_outputs: int = 0):
    """Gaussian encoder ``x -> (mu, log var[, off-diagonal Cholesky entries])`` and decoder
    ``z -> x``; ``extra_outputs`` widens the encoder's output (full covariances)."""
    return (MLP((*hidden, 2 * latent_dim + extra_outputs), activation),
            MLP((*hidden, obs_dim), activation))


def init_prior(key: Array, prior: str, max_domains: int, latent_dim: int, embed_dim: int, flow_hidden: int) -> dict:
    """Prior parameters (an empty dict for the standard normal)."""
    if prior == "flow":
        k1, k2 = jax.random.split(key)
        out = 3 * latent_dim * flow_hidden
        return {"table": jax.random.normal(k1, (max_domains, embed_dim)),
                "proj": jax.random.normal(k2, (embed_dim, out)) * 0.1 / jnp.sqrt(embed_dim),
                "bias": jnp.zeros((out,))}
    if prior == "gaussian":
        return {"mu": 0.1 * jax.random.normal(key, (max_domains, latent_dim)),
                "log_var": jnp.zeros((max_domains, latent_dim))}
    if prior == "standard":
        return {}
    raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")


def prior_log_prob(prior: str, params: dict, z: Array, u: Array, flow_hidden: int) -> Array:
    """``log p(z | u)``: ``z [B, n]``, ``u int [B]`` -> ``[B]``."""
    if prior == "flow":
        return flows.conditional_log_prob(params, z, u, flow_hidden)
    if prior == "gaussian":
        if not isinstance(u, jax.core.Tracer):
            from cg.data import check_domains

            check_domains(u, params["mu"].shape[0])
        return losses.gaussian_log_prob(z, params["mu"][u], params["log_var"][u])
    if prior == "standard":
        return jnp.sum(flows.std_normal_log_prob(z), -1)
    raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")


def prior_kl(prior: str, params: dict, mu: Array, log_var: Array, u: Array, tril: Array | None = None) -> Array:
    """``KL(q || p(z|u))`` in closed form: ``[B, n]`` -> ``[B]``, with ``q = N(mu, diag
    e^log_var)``, or ``N(mu, L L^T)`` when the Cholesky factor ``tril [B, n, n]`` is given
    (then ``log_var`` is ``log L_ii^2``).

    For the Gaussian priors only (a flow prior has no closed form); the one-sample
    estimate of :func:`cg.losses.negative_elbo` has the same expectation, more variance.
    """
    if prior == "gaussian":
        m, lv = params["mu"][u], params["log_var"][u]
    elif prior == "standard":
        m, lv = jnp.zeros_like(mu), jnp.zeros_like(log_var)
    else:
        raise ValueError(f"no closed-form KL for prior {prior!r}")
    var = jnp.exp(log_var) if tril is None else jnp.sum(tril ** 2, -1)  # diag of L L^T
    return 0.5 * jnp.sum(lv - log_var + (var + (mu - m) ** 2) / jnp.exp(lv) - 1.0, -1)
