"""A differentiable scene renderer: K objects on an H x W RGB canvas, with exact Jacobians.

Each object has ``OBJECT_DIM = 4`` latents, in canvas units (the canvas is [0, 1]^2, x to
the right, y down):

    (x, y)   its centre
    size     its radius (the Lp-ball radius of its shape)
    hue      its colour, on the smooth colour circle rgb_c = 0.5 + 0.45 cos 2pi(hue - c/3)

The shape is fixed per slot (object k gets ``shapes[k % len(shapes)]``: an Lp ball,
circle p = 2, rounded square p = 8, diamond p = 1). An object's coverage of a pixel
centre p is a sigmoid of the signed distance ``sd = ||p - centre||_p - size``:

    alpha = clip((sigmoid(-sd / w) - eps) / (1 - 2 eps), 0, 1),   w = edge_px pixels

the logistic edge of sharpness 1/w, truncated at ``eps`` so that an object's footprint is
compact: it moves *no* pixel beyond ``w * logit(1 - eps)`` of its boundary and is exactly
opaque inside, so the zeros of the Jacobian are exact, as the criteria's support tests
need (``edge_eps = 0``: the plain sigmoid, every object touching every pixel up to float
underflow; ``edge_px = 0``: a hard edge). Objects are alpha-composited over a grey
background in a fixed depth order, object 0 at the back: ``img = a_k c_k + (1 - a_k) img``,
so a front object occludes those behind. An optional cast shadow darkens, by ``shadow``,
everything but the casting object under a copy of its footprint moved by ``shadow_offset``.

Drawing the latents (:class:`SceneLaw`, the occlusion knob) is apart from rendering
(:func:`render`), so other latent laws (per-domain ones) reuse the renderer. The
dataset, registered as ``"scenes"`` (:class:`ScenesSpec`), joins the two::

    ds = datasets.make("scenes", num_objects=2, occlusion=0.0)
    d = ds.sample(key, 1000)     # {"x": [N, H, W, 3], "z": [N, K, 4]}
    g = ds.generator()           # [K * 4] -> [H * W * 3], for the criteria

The occlusion knob ``occlusion`` in [0, 1] sets the smallest distance allowed between
two objects' centres, ``(1 - occlusion) * (extent_i + extent_j)`` with ``extent`` an
object's radius plus its edge band: at 0 no pixel is touched by two objects (without a
shadow the generator is then Type D at every scene; a shadow is not kept apart, so it can
fall on another object: Type D's other named failure), at 1 placement is free. Scenes are drawn by
rejection: rounds of ``candidates`` uniform proposals until each scene has one that
satisfies the bound, so scenes are uniform on the valid set.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mechind.core import datasets

Array = jax.Array

OBJECT_DIM = 4  # (x, y, size, hue)
LATENT_NAMES = ("x", "y", "size", "hue")
SHAPES = {"circle": 2.0, "square": 8.0, "diamond": 1.0}  # the Lp exponent of each shape
BACKGROUND = 0.3  # grey level of the background (a shadow on it must be visible)


@dataclasses.dataclass(frozen=True)
class Renderer:
    """How scenes are drawn: canvas, shapes, edges, shadow (validated on construction).

    Attributes:
      num_objects: K (>= 1).
      height, width: the canvas in pixels (>= 4).
      shapes: the shape of each slot, cycled (names of :data:`SHAPES`).
      edge_px: edge width w in pixels (the sigmoid's 1/sharpness); 0 = a hard edge.
      edge_eps: truncation of the sigmoid's tails, in [0, 0.1) (see the module docstring).
      shadow: darkening of a cast shadow, in [0, 1) (0: no shadow).
      shadow_offset: the shadow's shift (dx, dy) in canvas units.
    """

    num_objects: int = 2
    height: int = 16
    width: int = 16
    shapes: tuple[str, ...] = ("circle", "square", "diamond")
    edge_px: float = 0.3
    edge_eps: float = 0.01
    shadow: float = 0.0
    shadow_offset: tuple[float, float] = (0.15, 0.1)

    def __post_init__(self):
        checks = [
            (isinstance(self.num_objects, (int, np.integer)) and self.num_objects >= 1, "num_objects must be >= 1"),
            (self.height >= 4 and self.width >= 4, "height and width must be >= 4 pixels"),
            (len(self.shapes) >= 1 and all(s in SHAPES for s in self.shapes), f"shapes must be names of {SHAPES}"),
            (self.edge_px >= 0, "edge_px must be >= 0"),
            (0 <= self.edge_eps < 0.1, "edge_eps must lie in [0, 0.1)"),
            (0 <= self.shadow < 1, "shadow must lie in [0, 1)"),
            (len(self.shadow_offset) == 2, "shadow_offset must be (dx, dy)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"{msg}; got {self}")

    @property
    def latent_dim(self) -> int:
        return self.num_objects * OBJECT_DIM

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def slot_sizes(self) -> tuple[int, ...]:
        return (OBJECT_DIM,) * self.num_objects

    @property
    def exponents(self) -> tuple[float, ...]:
        return tuple(SHAPES[self.shapes[k % len(self.shapes)]] for k in range(self.num_objects))

    @property
    def band(self) -> float:
        """How far beyond its boundary an object moves pixels, in canvas units (the larger
        side's pixel): ``w * logit(1 - eps)``; infinite for the plain sigmoid."""
        if self.edge_px == 0:
            return 0.0
        if self.edge_eps == 0:
            return math.inf
        return self.edge_px * math.log((1 - self.edge_eps) / self.edge_eps) / min(self.height, self.width)


def hue_to_rgb(hue: Array) -> Array:
    """``[...] -> [..., 3]``: a smooth, injective-on-[0, 1) colour circle."""
    phase = 2 * jnp.pi * (hue[..., None] - jnp.arange(3) / 3.0)
    return 0.5 + 0.45 * jnp.cos(phase)


def pixel_grid(height: int, width: int) -> tuple[Array, Array]:
    """Pixel centres ``(px [H, W], py [H, W])`` in canvas units."""
    py, px = jnp.meshgrid((jnp.arange(height) + 0.5) / height, (jnp.arange(width) + 0.5) / width, indexing="ij")
    return px, py


def lp_distance(dx: Array, dy: Array, p: float) -> Array:
    """``||(dx, dy)||_p``, exact, with a zero derivative where the norm has none (at 0; the
    double ``where`` keeps NaNs out of the gradient)."""
    if p == 1.0:
        return jnp.abs(dx) + jnp.abs(dy)
    s = jnp.abs(dx) ** p + jnp.abs(dy) ** p
    pos = s > 0
    return jnp.where(pos, jnp.where(pos, s, 1.0) ** (1.0 / p), 0.0)


def coverage(r: Renderer, px: Array, py: Array, obj: Array, p: float) -> Array:
    """Alpha ``[...]`` of one object ``obj [4]`` (x, y, size, hue) at points ``(px, py)``."""
    sd = lp_distance(px - obj[0], py - obj[1], p) - obj[2]
    if r.edge_px == 0:
        return jnp.where(sd < 0, 1.0, 0.0)
    w = r.edge_px / min(r.height, r.width)
    a = jax.nn.sigmoid(-sd / w)
    return jnp.clip((a - r.edge_eps) / (1 - 2 * r.edge_eps), 0.0, 1.0)


def layers(r: Renderer, z: Array) -> tuple[Array, Array]:
    """Each object's alpha ``[K, H, W]`` and colour ``[K, 3]`` from ``z [K * 4]``."""
    objs = jnp.reshape(z, (r.num_objects, OBJECT_DIM))
    px, py = pixel_grid(r.height, r.width)
    alphas = jnp.stack([coverage(r, px, py, objs[k], r.exponents[k]) for k in range(r.num_objects)])
    return alphas, hue_to_rgb(objs[:, 3])


def render(r: Renderer, z: Array) -> Array:
    """The scene of latents ``z [K * 4]`` (objects in depth order, 0 at the back):
    an image ``[H, W, 3]`` in [0, 1]."""
    alphas, colours = layers(r, z)
    img = jnp.full((r.height, r.width, 3), BACKGROUND)
    for k in range(r.num_objects):
        img = alphas[k][..., None] * colours[k] + (1 - alphas[k][..., None]) * img
    if r.shadow > 0:
        objs = jnp.reshape(z, (r.num_objects, OBJECT_DIM))
        px, py = pixel_grid(r.height, r.width)
        dx, dy = r.shadow_offset
        for k in range(r.num_objects):
            cast = coverage(r, px - dx, py - dy, objs[k], r.exponents[k])
            # the shadow darkens everything under it but the object that casts it
            img = img * (1 - r.shadow * (cast * (1 - alphas[k]))[..., None])
    return img


def generator(r: Renderer):
    """The renderer as a generator ``[K * 4] -> [H * W * 3]`` (what the criteria take)."""
    return lambda z: render(r, z).reshape(-1)


def render_batch(r: Renderer, z: Array) -> Array:
    """``z [N, K, 4]`` or ``[N, K * 4]`` -> images ``[N, H, W, 3]``."""
    return jax.vmap(lambda v: render(r, v.reshape(-1)))(z)


def footprints(r: Renderer, z: Array) -> Array:
    """Which pixels each object touches (alpha > 0, hidden or not): bool ``[K, H, W]``."""
    return layers(r, jnp.reshape(z, -1))[0] > 0


def pixel_overlap(r: Renderer, z: Array) -> Array:
    """Per scene, the fraction of the touched pixels that two or more objects touch:
    ``z [N, K * 4] -> [N]`` (0 when no object touches any pixel)."""
    fp = jax.vmap(lambda v: footprints(r, v))(jnp.reshape(z, (z.shape[0], -1))).sum(1)
    return jnp.sum(fp >= 2, (1, 2)) / jnp.maximum(jnp.sum(fp >= 1, (1, 2)), 1)


@dataclasses.dataclass(frozen=True)
class SceneLaw:
    """The law of the latents: uniform ranges, and the occlusion knob (see the module
    docstring). ``sample(key, n) -> z [n, K, 4]`` in canvas units.

    Attributes:
      renderer: the renderer the scenes are for (its canvas, K and edge band decide how far
        apart objects must be to share no pixel).
      occlusion: in [0, 1]; 0: no pixel touched by two objects, 1: free placement.
      size_range: (lo, hi) of the radius, canvas units.
      hue_range: (lo, hi) of the hue, inside [0, 1) (the colour circle closes at 1).
      candidates: proposals per scene and round of the rejection step.
      max_rounds: rounds of proposals before a scene is given up.
    """

    renderer: Renderer
    occlusion: float = 1.0
    size_range: tuple[float, float] = (0.1, 0.16)
    hue_range: tuple[float, float] = (0.05, 0.75)
    candidates: int = 64
    max_rounds: int = 64

    def __post_init__(self):
        lo, hi = self.size_range
        margin = hi + self.renderer.band
        checks = [
            (0 <= self.occlusion <= 1, f"occlusion must lie in [0, 1], got {self.occlusion}"),
            (0 < lo <= hi, f"size_range must be 0 < lo <= hi, got {self.size_range}"),
            (
                0 <= self.hue_range[0] <= self.hue_range[1] < 1,
                f"hue_range must satisfy 0 <= lo <= hi < 1, got {self.hue_range}",
            ),
            (self.candidates >= 1, f"candidates must be >= 1, got {self.candidates}"),
            (self.max_rounds >= 1, f"max_rounds must be >= 1, got {self.max_rounds}"),
            (
                math.isfinite(margin) and margin < 0.5,
                f"objects of radius up to {hi} with an edge band of {self.renderer.band:.3f} do not fit the canvas "
                "(edge_eps = 0 has an infinite band: no occlusion level can keep objects apart)",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        # can K objects of the smallest size be placed at all? Points at pairwise L-infinity
        # distance >= d in a square of side w: at most (floor(w / d) + 1)^2 of them (a grid)
        w = 1.0 - 2 * margin
        d = float(self.min_distance(lo, lo))
        fits = (math.floor(w / d) + 1) ** 2 if d > 0 else math.inf
        if fits < self.renderer.num_objects:
            raise ValueError(
                f"{self.renderer.num_objects} objects cannot be placed at occlusion {self.occlusion} on a "
                f"{self.renderer.height}x{self.renderer.width} canvas: centres must be {d:.3f} apart within a "
                f"square of side {w:.3f}; use a larger canvas, smaller objects or more occlusion"
            )

    @property
    def centre_range(self) -> tuple[float, float]:
        """Where centres may lie, so that every footprint stays on the canvas."""
        m = self.size_range[1] + self.renderer.band
        return m, 1.0 - m

    def min_distance(self, size_i: Array, size_j: Array) -> Array:
        """The closest two centres may be (L-infinity, canvas units) at this occlusion level."""
        band = self.renderer.band
        return (1.0 - self.occlusion) * (size_i + size_j + 2 * band)

    def valid(self, z: Array) -> Array:
        """``z [..., K, 4] -> bool [...]``: every pair of objects at least the allowed distance
        apart (in L-infinity, which bounds every Lp footprint's bounding box)."""
        k = z.shape[-2]
        ok = jnp.ones(z.shape[:-2], bool)
        for i in range(k):
            for j in range(i + 1, k):
                d = jnp.max(jnp.abs(z[..., i, :2] - z[..., j, :2]), -1)
                # strict for separation: two footprints whose boxes meet share no pixel only if
                # they do not touch; equality is measure zero anyway
                ok &= d >= self.min_distance(z[..., i, 2], z[..., j, 2])
        return ok

    def propose(self, key: Array, shape: tuple[int, ...]) -> Array:
        """Uniform proposals ``[*shape, K, 4]``."""
        k = self.renderer.num_objects
        lo, hi = self.centre_range
        keys = jax.random.split(key, 3)
        pos = jax.random.uniform(keys[0], (*shape, k, 2), minval=lo, maxval=hi)
        size = jax.random.uniform(keys[1], (*shape, k, 1), minval=self.size_range[0], maxval=self.size_range[1])
        hue = jax.random.uniform(keys[2], (*shape, k, 1), minval=self.hue_range[0], maxval=self.hue_range[1])
        return jnp.concatenate([pos, size, hue], -1)

    def sample_with_acceptance(self, key: Array, num_samples: int, propose=None, valid=None) -> tuple[Array, Array]:
        """``(z [N, K, 4], accepted bool [N])``: per scene, the first valid one of rounds of
        ``candidates`` uniform proposals (round r drawn from ``fold_in(key, r)``), so the
        scenes are uniform on the valid set; rounds repeat (at most ``max_rounds``) until
        every scene has one. A scene left without (``accepted`` False) keeps a proposal
        that violates the knob. ``propose``: ``(key, (N, C)) -> [N, C, K, 4]`` in place of
        :meth:`propose` (another law, e.g. per-domain ones, restricted to the valid set);
        ``valid``: ``[..., K, 4] -> bool [...]`` in place of :meth:`valid`."""
        propose, valid = propose or self.propose, valid or self.valid

        def one_round(r, z, ok):
            props = propose(jax.random.fold_in(key, r), (num_samples, self.candidates))
            good = valid(props)  # [N, C]
            first = jnp.argmax(good, axis=1)
            new = jnp.take_along_axis(props, first[:, None, None, None], axis=1)[:, 0]
            return jnp.where(ok[:, None, None], z, new), ok | jnp.any(good, axis=1)

        z, ok = one_round(
            0, jnp.zeros((num_samples, self.renderer.num_objects, OBJECT_DIM)), jnp.zeros(num_samples, bool)
        )
        _, z, ok = jax.lax.while_loop(
            lambda c: (c[0] < self.max_rounds) & ~jnp.all(c[2]),
            lambda c: (c[0] + 1, *one_round(c[0], c[1], c[2])),
            (jnp.int32(1), z, ok),
        )
        return z, ok

    def sample(self, key: Array, num_samples: int) -> Array:
        """``z [N, K, 4]``; raises if a scene found no valid proposal in ``max_rounds`` rounds
        (raise ``candidates`` or shrink the objects), when called eagerly."""
        z, accepted = _sample_jit(self, key, num_samples)
        if not isinstance(accepted, jax.core.Tracer) and not bool(jnp.all(accepted)):
            raise ValueError(
                f"{int(jnp.sum(~accepted))} of {num_samples} scenes found no placement at occlusion "
                f"{self.occlusion} among {self.max_rounds} x {self.candidates} proposals; raise candidates "
                "or shrink size_range"
            )
        return z


# one compiled sampler per (law, size): eagerly, the rounds would run op by op
_sample_jit = jax.jit(lambda law, key, n: law.sample_with_acceptance(key, n), static_argnums=(0, 2))


@datasets.register("scenes")
@dataclasses.dataclass(frozen=True)
class ScenesSpec(datasets.Dataset):
    """Rendered scenes with known latents: ``sample(key, n)`` returns ``x [n, H, W, 3]`` and
    ``z [n, K, 4]`` (in canvas units; see the module docstring). The fields are those of
    :class:`Renderer` and :class:`SceneLaw`."""

    version: ClassVar[int] = 1  # bump when a change to this module changes any drawn number

    num_objects: int = 2
    height: int = 16
    width: int = 16
    occlusion: float = 1.0
    shapes: tuple[str, ...] = ("circle", "square", "diamond")
    edge_px: float = 0.3
    edge_eps: float = 0.01
    shadow: float = 0.0
    shadow_offset: tuple[float, float] = (0.15, 0.1)
    size_range: tuple[float, float] = (0.1, 0.16)
    hue_range: tuple[float, float] = (0.05, 0.75)
    candidates: int = 64
    max_rounds: int = 64

    def __post_init__(self):
        self.law  # validates both parts

    @property
    def renderer(self) -> Renderer:
        return Renderer(
            self.num_objects,
            self.height,
            self.width,
            tuple(self.shapes),
            self.edge_px,
            self.edge_eps,
            self.shadow,
            tuple(self.shadow_offset),
        )

    @property
    def law(self) -> SceneLaw:
        return SceneLaw(
            self.renderer,
            self.occlusion,
            tuple(self.size_range),
            tuple(self.hue_range),
            self.candidates,
            self.max_rounds,
        )

    @property
    def slot_sizes(self) -> tuple[int, ...]:
        return self.renderer.slot_sizes

    def generator(self):
        """``[K * 4] -> [H * W * 3]``: the true generator, for the criteria."""
        return generator(self.renderer)

    def sample(self, key: Array, num_samples: int) -> dict:
        z = self.law.sample(key, num_samples)
        return {"x": render_batch(self.renderer, z), "z": z}
