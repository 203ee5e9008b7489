"""One training-step style for every pipeline: a run's state, its optimizer, its
minibatches, its random streams, and the Gaussian KL.

A pipeline's step reads the same way in each pipeline (``docs/training_steps.md`` shows
them side by side)::

    tx = training.adam(drop_at=...)          # built once per task, static
    state = training.init_state(tx, params, lr=hp.lr, key=key)   # in Task.init
    k_batch, k_noise = training.step_keys(state.key, i)         # in Task.step
    batch = training.minibatch(k_batch, data, ("x", "u"), batch_size, num_train)
    loss, grads = jax.value_and_grad(objective)(state.params, batch, k_noise, hp)
    state = training.apply_gradients(tx, state, grads)

Per-run hyper-parameters (a pipeline's ``HParams`` NamedTuple, with a leading run axis in
a sweep) travel beside the state; the learning rate is the one the optimizer itself
needs, so :func:`init_state` injects it into the optimizer state
(``optax.inject_hyperparams``) and every step reads it from there: the optimizer is
built once, never per step, and a vmapped sweep over ``lr`` is one compiled program.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from mechind.core import rng

Array = jax.Array
PyTree = Any


class TrainState(NamedTuple):
    """One run's state (a pytree; the runner adds a leading run axis and checkpoints it).

    Attributes:
      params: the model's parameters.
      opt: the optimizer state (with the injected learning rate, :func:`init_state`).
      key: raw uint32 key data ``[2]``; step ``i`` draws from ``fold_in(key, i)``
        (:func:`step_keys`), so a resumed run draws what an uninterrupted one would.
      extra: whatever else a pipeline carries between steps (e.g. a Lagrange
        multiplier); ``()`` when nothing.
    """

    params: PyTree
    opt: optax.OptState
    key: Array
    extra: PyTree = ()


def adam(
    drop_at: int | None = None, drop: float = 0.1, scale_leaves: dict[str, float] | None = None
) -> optax.GradientTransformation:
    """Adam whose step size is a hyper-parameter held in its state (set per run by
    :func:`init_state`), multiplied by ``drop`` from update ``drop_at`` on (never when
    ``None``).

    ``scale_leaves``: top-level parameter names whose updates are further multiplied by a
    constant (a separate step size for one part of the model, e.g. mask logits).

    The arithmetic is that of ``optax.adam(lambda count: lr * where(count < drop_at, 1,
    drop))``, so a pipeline that used to build its Adam per step gets the same numbers.
    """

    def factory(learning_rate):
        if drop_at is None:
            sched = learning_rate
        else:
            sched = lambda count: learning_rate * jnp.where(count < drop_at, 1.0, drop)  # noqa: E731
        inner = optax.adam(sched)
        if not scale_leaves:
            return inner
        scales = [optax.masked(optax.scale(v), lambda p, k=k: _only(p, k)) for k, v in scale_leaves.items()]
        return optax.chain(inner, *scales)

    # the 1.0 is a placeholder: init_state replaces it by each run's learning rate
    return optax.inject_hyperparams(factory)(learning_rate=1.0)


def _only(params: PyTree, name: str) -> dict:
    """The mask that selects the top-level parameter ``name`` (a misspelt name is an error,
    not a scale silently applied to nothing)."""
    if not isinstance(params, dict) or name not in params:
        have = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"scale_leaves names {name!r}, which is not a top-level parameter (have {have})")
    return {n: n == name for n in params}


def init_state(
    tx: optax.GradientTransformation, params: PyTree, lr: Array, key: Array, extra: PyTree = ()
) -> TrainState:
    """A fresh :class:`TrainState`: ``tx``'s state for ``params`` with the learning rate
    ``lr`` (a scalar, per run) injected, and the run's step key ``key``."""
    opt = tx.init(params)
    opt = opt._replace(hyperparams={**opt.hyperparams, "learning_rate": jnp.asarray(lr, jnp.float32)})
    return TrainState(params, opt, rng.to_data(key), extra)


def learning_rate(state: TrainState) -> Array:
    """The learning rate injected into ``state``'s optimizer (before any drop)."""
    return state.opt.hyperparams["learning_rate"]


def apply_gradients(tx: optax.GradientTransformation, state: TrainState, grads: PyTree, **changes) -> TrainState:
    """``state`` after one optimizer step on ``grads`` (other fields replaced by ``changes``,
    e.g. ``extra=``)."""
    updates, opt = tx.update(grads, state.opt, state.params)
    return state._replace(params=optax.apply_updates(state.params, updates), opt=opt, **changes)


def step_key(key: Array, i: Array) -> Array:
    """The key of step ``i`` of a run whose state key is ``key``: ``fold_in(key, i)``."""
    return jax.random.fold_in(key, i)


def step_keys(key: Array, i: Array) -> tuple[Array, Array]:
    """``(minibatch key, noise key)`` of step ``i``: the two halves of ``split(fold_in(key,
    i))``. Pipelines whose step needs no noise draw their minibatch from :func:`step_key`."""
    k_batch, k_noise = jax.random.split(step_key(key, i))
    return k_batch, k_noise


def minibatch(key: Array, data: dict, names: Sequence[str], batch_size: int, num_samples: int) -> dict:
    """``{name: data[name][idx]}`` for ``names``, with ``idx [batch_size]`` drawn uniformly
    with replacement from ``0..num_samples - 1`` (the same rows of every array)."""
    idx = jax.random.randint(key, (batch_size,), 0, num_samples)
    return {n: data[n][idx] for n in names}


def gaussian_kl(
    mean_q: Array,
    var_q: Array,
    mean_p: Array,
    var_p: Array,
    log_var_q: Array | None = None,
    log_var_p: Array | None = None,
    axis: int | None = None,
) -> Array:
    """``KL(N(mean_q, var_q) || N(mean_p, var_p))`` per coordinate (broadcast shape), or
    summed over ``axis`` (diagonal Gaussians).

    Pass the log-variances too when the model holds them: ``log(exp(v))`` is not ``v`` in
    floating point, and a KL taken from the logs the model learned is the exact one. With
    ``axis`` the factor 1/2 is applied after the sum (one multiplication, not one per term;
    the two forms differ in the last bit).
    """
    log_var_q = jnp.log(var_q) if log_var_q is None else log_var_q
    log_var_p = jnp.log(var_p) if log_var_p is None else log_var_p
    terms = log_var_p - log_var_q + (var_q + (mean_q - mean_p) ** 2) / var_p - 1.0
    return 0.5 * (terms if axis is None else jnp.sum(terms, axis))
