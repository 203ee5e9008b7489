"""Our PyTorch port (the timing benchmarks' other side) computes the same quantities as the
JAX pipeline (needs torch)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402

from experiments.bench import torch_port  # noqa: E402
from mechind import losses  # noqa: E402


def test_port_contrast_equals_ours():
    jac = np.random.default_rng(0).normal(size=(4, 7, 9)).astype(np.float32)
    ours = float(losses.compositional_contrast(jax.numpy.asarray(jac), (3, 3, 3)))
    port = float(torch_port.compositional_contrast(torch.as_tensor(jac), 3))
    assert port == pytest.approx(ours, rel=1e-5)


def test_port_jacobian_matches_jax_on_the_same_weights():
    dec, jac_fn, _ = torch_port.jacobian_fn(5, 4, (8, 8))
    z = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    jt = jac_fn(torch.as_tensor(z)).numpy()
    ws = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in dec if isinstance(m, torch.nn.Linear)]

    def f(v):
        for i, (w, b) in enumerate(ws):
            v = w @ v + b
            if i < len(ws) - 1:
                v = jax.numpy.where(v >= 0, v, 0.2 * v)
        return v

    np.testing.assert_allclose(jt, jax.vmap(jax.jacfwd(f))(z), rtol=1e-5, atol=1e-6)


def test_port_trains():
    port = torch_port.SlotAutoencoder(obs_dim=10, num_slots=2, lam=1.0, num_steps=20)
    x = np.random.default_rng(0).normal(size=(200, 10)).astype(np.float32)
    out = port.train(x, 20)
    assert np.isfinite(out["loss"]) and port.encode(x).shape == (200, 6)
