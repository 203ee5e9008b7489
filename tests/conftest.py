"""Shared test helpers."""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def x64():
    """Run a test in float64, for comparisons against finite differences."""
    with jax.enable_x64(True):
        yield


def random_mlp(key, sizes, act=None):
    """A random MLP ``[sizes[0]] -> [sizes[-1]]`` with smooth activations (closure over params)."""
    import jax.numpy as jnp

    act = act or jnp.tanh
    params = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, k1, k2 = jax.random.split(key, 3)
        params.append((jax.random.normal(k1, (b, a)) / np.sqrt(a), 0.1 * jax.random.normal(k2, (b,))))

    def fn(x, params=params):
        for i, (w, b) in enumerate(params):
            x = w @ x + b
            if i < len(params) - 1:
                x = act(x)
        return x

    return fn, params
