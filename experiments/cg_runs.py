"""The CG experiments' one way to turn datasets and methods into sweep groups.

Every CG experiment (``cg_benchmark``, ``ivae_segments``) plans runs as
dicts ``{"method", "alpha", "seed", ...}`` and hands them here. They are then fitted
exactly as :func:`cg.fitting.fit` fits: the same :func:`~cg.fitting.prepare`, the same
task (:func:`cg.train.make_task`), the same defaults, the same finish
(:func:`cg.train.finish`). A method is read only from
:data:`cg.models.METHODS`, so a new method needs no change in any experiment.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np

from cg import fitting, models
from cg import train as cg_train
from cg.train import CGConfig
from experiments import framework, sweep
from mechind.core import rng


def plan(methods, seeds: int, cells: list[dict], alphas=()) -> list[dict]:
    """``[run]``: every method at its own alpha, and each penalised method at every extra
    alpha of ``alphas`` too, for every cell (e.g. ``{"domains": 4}``) and seed."""
    runs = []
    for method in methods:
        m = models.METHODS[method]
        weights = [m.alpha] + ([a for a in alphas if a != m.alpha] if m.sparse else [])
        runs += [
            {"method": method, "alpha": float(a), **cell, "seed": s}
            for a in weights
            for cell in cells
            for s in range(seeds)
        ]
    return runs


def overrides(config) -> dict:
    """The :class:`cg.train.CGConfig` fields an experiment's ``config`` sets, by their
    pipeline names (:func:`experiments.framework.overrides`), but ``latent_dim``, which
    :func:`build_groups` takes by itself: the rest of the fit's config is
    :func:`cg.fitting.make_config`'s defaults."""
    out = framework.overrides(config, CGConfig)
    out.pop("latent_dim", None)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}


def is_default_alpha(r: dict) -> bool:
    """The run is its method at the method's own weight (not an alpha-sweep run); records
    that are no method (a floor) count as default."""
    m = models.METHODS.get(r["method"])
    return m is None or r["alpha"] == m.alpha


def penalty_pairs(methods) -> list[tuple[str, str]]:
    """``(with, without)``: each penalised method with the method that differs from it only
    by having no penalty (same prior, same settings), when both are in ``methods``."""
    out = []
    for on in methods:
        m = models.METHODS[on]
        for off in methods:
            o = models.METHODS[off]
            if m.sparse and not o.sparse and (o.prior, o.beta, o.settings) == (m.prior, m.beta, m.settings):
                out.append((on, off))
    return out


def build_groups(
    runs: list[dict],
    dataset: Callable[[dict], dict],
    *,
    latent_dim: int,
    num_domains: int | None,
    group_by: tuple[str, ...],
    key: dict,
    preprocess: str = "whiten",
    heldout: bool = False,
    with_support: bool = True,
    extra: Callable[[dict, dict], dict] | None = None,
    **overrides,
) -> list[sweep.Group]:
    """One :class:`~experiments.sweep.Group` (one compiled program) per method and value of
    ``group_by`` (the fields that change array shapes); seeds, domain counts and alphas of
    one method are vmapped runs of it.

    Args:
      runs: from :func:`plan`.
      dataset: ``run -> arrays`` (a dataset's draw, :meth:`mechind.core.datasets.Dataset.sample`)
        with ``"x" [N, d_x]``, ``"u" [N]``, the true latents ``"z" [N, n]``, and ``"support"
        [d_x, n]`` (read when ``with_support``: support recovery is then scored); with
        ``heldout``, also ``"x_val"``, ``"u_val"``.
      num_domains: the prior's table size (the largest count, so counts share a program;
        None: each group's largest label + 1).
      key: settings of the data (generator, version) and records, in every group's key with
        the whole fit config, so a changed setting never reuses old results.
      extra: ``(run, arrays) -> dict`` of per-run fields for the records (e.g. a floor).
      overrides: :class:`cg.train.CGConfig` fields an experiment sets (``num_steps``,
        ``hidden``, ...; :func:`overrides`), passed to :func:`cg.fitting.prepare`.
    """
    buckets: dict[tuple, list[dict]] = {}
    for r in runs:
        buckets.setdefault((r["method"], *[r[k] for k in group_by]), []).append(r)
    groups = []
    for (method, *cell), rs in buckets.items():
        ds = [dataset(r) for r in rs]
        stack = lambda name: np.stack([d[name] for d in ds])  # noqa: E731
        val = dict(xs_val=stack("x_val"), us_val=stack("u_val")) if heldout else {}
        prep = fitting.prepare(
            stack("x"),
            stack("u"),
            method=method,
            latent_dim=latent_dim,
            preprocess=preprocess,
            num_domains=num_domains,
            **val,
            **overrides,
        )
        truth = {"z": jnp.asarray(stack("z"))}
        if with_support:
            truth["support"] = jnp.asarray(stack("support"))
        gkey = {
            "method": method,
            **dict(zip(group_by, cell)),
            "config": dataclasses.asdict(prep.config),
            "preprocess": preprocess,
            **key,
        }
        groups.append(
            sweep.Group(
                key=gkey,
                keys=rng.seed_keys([r["seed"] for r in rs]),
                hparams=prep.hparams([r["alpha"] for r in rs]),
                make_task=prep.task,
                runs=[{**r, **(extra(r, d) if extra else {})} for r, d in zip(rs, ds)],
                given={**prep.data, **truth},
                finish=cg_train.finish,
            )
        )
    return groups
