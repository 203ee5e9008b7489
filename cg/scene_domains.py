"""Multi-domain rendered scenes: some latents change their law across domains, the others
do not, and we know which (the data of CG-GAN, :mod:`cg.gan`).

The scenes are those of :mod:`mechind.scenes` (K objects, latents ``(x, y, size, hue)``
each, in canvas units). A domain ``u`` changes the law of the **changing** latents (by
default each object's size and hue): a uniform draw ``v`` in (0, 1) is warped by

    latent = lo + (hi - lo) * sigmoid(loc_u + scale_u * logit(v))

with a per-domain location ``loc_u`` and scale ``scale_u`` per changing latent (``loc =
0, scale = 1`` is the uniform law itself). So each domain has its own law on the same
support, and the domains differ in location and spread (the "sufficient changes" the CG
paper needs). Every other latent (by default the position) is uniform in every domain.
Occlusion is the scenes' knob (:class:`mechind.scenes.SceneLaw`): scenes are drawn by
rejection from each domain's law restricted to the valid placements, judged as if every
object had the largest size. The positions' law is then the same in every domain (judged
with the drawn sizes, domains of larger objects would push them further apart, and
position would not be domain-invariant).

The per-domain parameters are drawn from a key for ``max_domains`` domains; a dataset
with ``M`` domains uses the first ``M``, so a sweep over the number of domains keeps the
domains it already had (a sweep that redraws them measures the draw, not the number)::

    ds = datasets.make("domain_scenes", num_domains=4)
    d = ds.sample(key, 1000)   # {"x": [N, H, W, 3], "z": [N, K, 4], "u": [N], "changing": [K * 4]}
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mechind import scenes
from mechind.core import datasets

Array = jax.Array


def domain_params(key: Array, max_domains: int, num_changing: int, shift: float, spread: float) -> dict:
    """``{"loc": [M, c], "scale": [M, c]}``: per-domain warps of ``c`` changing latents,
    ``loc ~ U(-shift, shift)``, ``log scale ~ U(-spread, spread)``."""
    k1, k2 = jax.random.split(key)
    loc = jax.random.uniform(k1, (max_domains, num_changing), minval=-shift, maxval=shift)
    scale = jnp.exp(jax.random.uniform(k2, (max_domains, num_changing), minval=-spread, maxval=spread))
    return {"loc": loc, "scale": scale}


def warp(v: Array, loc: Array, scale: Array) -> Array:
    """``v`` in (0, 1) -> ``sigmoid(loc + scale * logit(v))`` in (0, 1) (monotone in v)."""
    v = jnp.clip(v, 1e-6, 1 - 1e-6)
    return jax.nn.sigmoid(loc + scale * jnp.log(v / (1 - v)))


@datasets.register("domain_scenes")
@dataclasses.dataclass(frozen=True)
class DomainScenesSpec(scenes.ScenesSpec):
    """Scenes of :class:`mechind.scenes.ScenesSpec` in ``num_domains`` domains (see the
    module docstring). ``sample(key, n)`` draws the domain laws from ``fold_in(key, 0)``,
    the domain labels uniformly, and the scenes."""

    version: ClassVar[int] = 1

    num_objects: int = 1
    occlusion: float = 1.0
    num_domains: int = 4
    max_domains: int = 8
    changing: tuple[str, ...] = ("size", "hue")
    shift: float = 1.5
    spread: float = 0.7

    def __post_init__(self):
        super().__post_init__()
        bad = [c for c in self.changing if c not in scenes.LATENT_NAMES]
        checks = [
            (not bad, f"changing names unknown latents {bad}; choose among {list(scenes.LATENT_NAMES)}"),
            (len(set(self.changing)) == len(self.changing), f"changing lists a latent twice: {self.changing}"),
            (
                1 <= self.num_domains <= self.max_domains,
                f"num_domains must lie in [1, max_domains={self.max_domains}], got {self.num_domains}",
            ),
            (self.shift >= 0 and self.spread >= 0, f"shift and spread must be >= 0, got {self.shift}, {self.spread}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def changing_index(self) -> tuple[int, ...]:
        """Which of an object's 4 latents change across domains."""
        return tuple(sorted(scenes.LATENT_NAMES.index(c) for c in self.changing))

    @property
    def changing_mask(self) -> np.ndarray:
        """bool ``[K * 4]``: the domain-specific latents (the truth mask learning recovers)."""
        m = np.zeros((self.num_objects, scenes.OBJECT_DIM), bool)
        m[:, list(self.changing_index)] = True
        return m.reshape(-1)

    def draw_domains(self, key: Array) -> dict:
        """The per-domain warps of every object's changing latents, ``[max_domains, K * c]``."""
        return domain_params(key, self.max_domains, self.num_objects * len(self.changing), self.shift, self.spread)

    def propose(self, params: dict, u: Array, key: Array, shape: tuple[int, int]) -> Array:
        """Proposals ``[N, C, K, 4]`` for scenes of domains ``u [N]``: the uniform proposals
        of the scenes' law with the changing latents warped by their domain's law."""
        law = self.law
        z = law.propose(key, shape)
        idx = jnp.asarray(self.changing_index)
        lo = jnp.array([0.0, 0.0, law.size_range[0], law.hue_range[0]])[idx]
        hi = jnp.array([1.0, 1.0, law.size_range[1], law.hue_range[1]])[idx]
        k, c = self.num_objects, len(idx)
        loc = params["loc"][u].reshape(-1, 1, k, c)
        scale = params["scale"][u].reshape(-1, 1, k, c)
        v = (z[..., idx] - lo) / (hi - lo)  # uniform in (0, 1)
        return z.at[..., idx].set(lo + (hi - lo) * warp(v, loc, scale))

    def valid(self, z: Array) -> Array:
        """``z [..., K, 4] -> bool [...]``: placements the occlusion level allows for objects
        of the largest size (so that whether a placement is kept never depends on the sizes)."""
        return self.law.valid(z.at[..., 2].set(self.law.size_range[1]))

    def sample_domains(self, params: dict, key: Array, u: Array) -> tuple[Array, Array]:
        """``(z [N, K, 4], accepted [N])`` for domain labels ``u [N]`` (rejection as in
        :meth:`mechind.scenes.SceneLaw.sample_with_acceptance`, with :meth:`valid`)."""
        return self.law.sample_with_acceptance(
            key, u.shape[0], lambda k, shape: self.propose(params, u, k, shape), self.valid
        )

    def labels(self, key: Array, num_samples: int, num_domains: Array | int | None = None) -> Array:
        """Domain labels ``[N]``, uniform over the first ``num_domains`` (may be traced)."""
        m = self.num_domains if num_domains is None else num_domains
        return jax.random.randint(key, (num_samples,), 0, m)

    def sample(self, key: Array, num_samples: int) -> dict:
        return _sample_jit(self, key, num_samples)

    def draw(self, key: Array, num_samples: int) -> dict:
        """:meth:`sample`'s draw, traceable (inside a compiled run)."""
        params = self.draw_domains(jax.random.fold_in(key, 0))
        u = self.labels(jax.random.fold_in(key, 1), num_samples)
        z, accepted = self.sample_domains(params, jax.random.fold_in(key, 2), u)
        return {
            "x": scenes.render_batch(self.renderer, z),
            "z": z,
            "u": u,
            "changing": jnp.asarray(self.changing_mask),
            "accepted": accepted,
        }


# one compiled draw per (spec, size): eagerly, the rejection rounds would run op by op
_sample_jit = jax.jit(lambda spec, key, n: spec.draw(key, n), static_argnums=(0, 2))
