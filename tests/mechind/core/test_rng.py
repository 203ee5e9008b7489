"""mechind.core.rng: keys of seeds, raw key data, and the random mode the pipelines trace in."""

import jax
import jax.numpy as jnp
import numpy as np

from mechind.core import rng


def test_key_and_seed_keys_are_jax_prng_keys():
    np.testing.assert_array_equal(rng.key(7), jax.random.PRNGKey(7))
    assert rng.key(np.int64(7)).dtype == jnp.uint32 and rng.key(7).shape == (2,)
    keys = rng.seed_keys([3, 0, 3])
    assert keys.shape == (3, 2)
    np.testing.assert_array_equal(keys, np.stack([jax.random.PRNGKey(s) for s in (3, 0, 3)]))
    assert not np.array_equal(keys[0], keys[1])


def test_to_data_of_typed_and_raw_keys():
    raw = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(rng.to_data(jax.random.key(5)), raw)  # typed: its uint32 data
    assert rng.to_data(raw) is raw  # raw: as it is
    typed = jax.random.split(jax.random.key(1), 3)
    assert rng.to_data(typed).shape == (3, 2) and rng.to_data(typed).dtype == jnp.uint32


def test_traced_in_fast_mode_draws_as_non_partitionable_threefry():
    key = jax.random.PRNGKey(11)
    draw = lambda k: jax.random.bits(k, (4,))  # noqa: E731
    with jax.threefry_partitionable(False):
        want = np.asarray(jax.jit(draw)(key))
    with jax.threefry_partitionable(True):
        other = np.asarray(jax.jit(lambda k: jax.random.bits(k, (4,)))(key))
        got = np.asarray(jax.jit(rng.traced_in_fast_mode(draw))(key))
    assert not np.array_equal(want, other)  # the two modes do give different numbers
    np.testing.assert_array_equal(got, want)
    assert draw.__name__ == rng.traced_in_fast_mode(draw).__name__  # functools.wraps
    with rng.fast_compile():
        np.testing.assert_array_equal(np.asarray(draw(key)), want)
