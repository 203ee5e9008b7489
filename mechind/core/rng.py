"""PRNG keys and the random-number mode the pipelines trace under.

Keys are ordinary threefry keys. Every :class:`mechind.core.runner.Task` function is traced
with ``jax.threefry_partitionable(False)``:

* on CPU, jax 0.10's default (partitionable) threefry costs ~1.9 s of XLA compile time
  per random call site of a few thousand numbers, the non-partitionable one ~0.3 s, and
  a training group has a dozen such sites (data, initialisation, batches);
* threefry stays vmap-consistent: a run gives the same numbers whichever position it has
  in the batch of runs, alone or sharded. (``rbg`` compiles fast too, but its streams
  under ``vmap`` differ from per-key draws, so a run's result would depend on its
  neighbours; we measured that and rejected it.)

The random values differ from those of the partitionable mode, never between our runs.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp


def key(seed: int) -> jax.Array:
    """The key of an integer seed (raw uint32 [2], checkpointable)."""
    return jax.random.PRNGKey(int(seed))


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """``[S, 2]`` keys, one per seed."""
    return jnp.stack([key(s) for s in seeds])


def to_data(k: jax.Array) -> jax.Array:
    """Raw uint32 key data (checkpointable) from a raw or typed key."""
    return jax.random.key_data(k) if jnp.issubdtype(k.dtype, jax.dtypes.prng_key) else k


def fast_compile():
    """Context in which random draws are traced in the pipelines' mode."""
    return jax.threefry_partitionable(False)


def traced_in_fast_mode(fn):
    """Wrap ``fn`` so that whatever traces it does so in :func:`fast_compile` mode."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with fast_compile():
            return fn(*args, **kwargs)

    return wrapped
