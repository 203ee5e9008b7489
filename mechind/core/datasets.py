"""The dataset interface every generator implements, a registry of named datasets, and
user arrays as a dataset.

A :class:`Dataset` is a frozen dataclass of its settings that draws a dataset from a key
and a size::

    ds = datasets.make("slots", num_slots=2, overlap=0.5)
    d = ds.sample(key, 10_000)          # {"x": [N, d_x], "z": [N, ...], ...}

What a draw returns, by name (only ``x`` is required; the rest where known):

==============  ===============================================================
``x``           observations ``[N, d_x]`` (or ``[N, T, d_x]`` for sequences)
``z``           the true latents ``[N, d_z]`` (or ``[N, K, s]``, ``[N, T, d_z]``)
``u``           int domain labels ``[N]``
``a``           auxiliary variables ``[N, d_a]`` (e.g. actions)
``support``     bool ``[d_x, d_z]``, the true Jacobian's support
``graph``       ``[d_z, d_p]``, a true causal graph
==============  ===============================================================

Arrays that are the same for every sample (``support``, ``graph``) have no sample axis.

``traceable`` datasets draw with ``jax`` (inside the compiled run, per run key; always in
the random mode the runner traces in, :mod:`mechind.core.rng`, so a key draws the same
data inside and outside a run);
the others draw on the host with numpy (seeded from the key, :func:`numpy_seed`) and
reach the runner as arrays, through the same route (:func:`draw`,
``runner.run_group(..., given=...)``). ``version`` is bumped whenever the same key would
draw different data, and experiments put it in their group keys, so results of two
versions never mix in one results file.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mechind.core import rng

Array = jax.Array

# What :meth:`Dataset.sample` may return; anything else must be documented by the dataset.
FIELDS = ("x", "z", "u", "a", "support", "graph")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Base class of every dataset: subclass it as a frozen dataclass of the settings,
    implement :meth:`sample`, and :func:`register` it under a name."""

    name: ClassVar[str] = ""  # set by register()
    version: ClassVar[int] = 1  # bump when the same key draws different data
    traceable: ClassVar[bool] = True  # sample() is pure jax (False: numpy on the host)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # a traceable draw is the same wherever it is made: in a run (which the runner traces
        # in the pipelines' random mode), under draw(), or eagerly in a notebook
        if cls.traceable and "sample" in cls.__dict__:
            cls.sample = rng.traced_in_fast_mode(cls.__dict__["sample"])

    def sample(self, key: Array, num_samples: int) -> dict:
        """``{"x": [N, d_x], ...}`` (see the module docstring): ``num_samples`` draws."""
        raise NotImplementedError

    def describe(self) -> dict:
        """The settings, the name and the version, for records and group keys."""
        out = {"dataset": self.name, "dataset_version": self.version}
        for f in dataclasses.fields(self):
            if f.repr:
                v = getattr(self, f.name)
                out[f.name] = v.describe() if isinstance(v, Dataset) else v
        return out


_REGISTRY: dict[str, type[Dataset]] = {}


def register(name: str) -> Callable[[type[Dataset]], type[Dataset]]:
    """Class decorator: register a :class:`Dataset` subclass under ``name``."""

    def deco(cls: type[Dataset]) -> type[Dataset]:
        if not (isinstance(cls, type) and issubclass(cls, Dataset)):
            raise TypeError(f"{cls!r} is not a Dataset subclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a dataset named {name!r} is already registered ({_REGISTRY[name].__qualname__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


# The pipeline modules that register the built-in datasets when imported. The core imports
# no pipeline when it is imported; a lookup in the registry imports these first.
BUILTIN_PROVIDERS = ("mechind.data", "mechind.scenes", "mechsparse.data", "cg.data", "cg.sparse_data", "cg.ivae_data")


def _load_builtin() -> None:
    import importlib

    for module in BUILTIN_PROVIDERS:
        importlib.import_module(module)


def names() -> tuple[str, ...]:
    """Every registered dataset name, sorted."""
    _load_builtin()
    return tuple(sorted(_REGISTRY))


def make(name: str, **settings) -> Dataset:
    """The dataset registered under ``name`` with ``settings`` (its dataclass fields). A
    dataset registers when its module is imported: the built-in ones are imported here
    (:data:`BUILTIN_PROVIDERS`); import your own module first."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    cls = _REGISTRY[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(
            f"dataset {name!r} has no setting {', '.join(unknown)}; its settings: {', '.join(sorted(known))}"
        )
    return cls(**settings)


# float32 holds magnitudes to ~3.4e38 and its squares (a variance) to ~1.8e19: a user's values
# beyond this overflow the preprocessing's statistics (cg's penalty map became zeros: issue 20)
MAX_ABS = 1e15


def check_user_array(v, name: str = "x", ndim: int = 2, obs_dim: int | None = None) -> np.ndarray:
    """A user's array as float32, or one ``ValueError`` line naming what is wrong with it:
    the number of dimensions, a non-real dtype, emptiness, NaN/inf (and the first row with
    one), magnitudes float32 statistics cannot hold, or (``obs_dim``) the wrong number of
    columns. Shared by every pipeline's ``fit`` so that they reject bad input alike, before
    anything compiles."""
    v = np.asarray(v)
    if v.ndim != ndim:
        hint = " [N, d_x]" if ndim == 2 and name == "x" else ""
        raise ValueError(f"{name} must be a {ndim}-D array{hint}, got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {v.dtype}")
    if v.size == 0:
        raise ValueError(f"{name} is empty (shape {v.shape})")
    v = v.astype(np.float64) if not np.issubdtype(v.dtype, np.floating) else v
    bad = ~np.isfinite(v)
    if bad.any():
        first = np.argwhere(bad)[0][0]
        raise ValueError(f"{name} holds {int(bad.sum())} NaN/inf value(s), first in row {first}")
    big = np.abs(v) > MAX_ABS
    if big.any():
        raise ValueError(
            f"{name} holds {int(big.sum())} value(s) of magnitude above {MAX_ABS:.0e} (largest "
            f"{np.abs(v).max():.3g}), beyond what float32 statistics hold; rescale {name} first"
        )
    if obs_dim is not None and v.shape[1] != obs_dim:
        raise ValueError(f"{name} has {v.shape[1]} columns, the model was fitted to {obs_dim}")
    return v.astype(np.float32)


def numpy_seed(key: Array) -> int:
    """The numpy seed of a host dataset's draw: the key's low word, so that
    ``PRNGKey(s)`` seeds ``s`` (the integer seeds the host generators always took)."""
    return int(np.asarray(rng.to_data(key)).reshape(-1)[-1])


def draw(dataset: Dataset, keys: Array, num_samples: int) -> dict:
    """One dataset per key, stacked: every array gets a leading run axis ``[R, ...]``."""
    keys = jnp.asarray(keys)
    if dataset.traceable:
        try:
            return jax.jit(jax.vmap(lambda k: dataset.sample(k, num_samples)))(keys)
        except jax.errors.TracerArrayConversionError:
            raise TypeError(
                f"{type(dataset).__name__}.sample draws with numpy: set `traceable = False` on the class "
                "(it is then drawn on the host)"
            ) from None
    parts = [dataset.sample(k, num_samples) for k in keys]
    return {n: np.stack([np.asarray(p[n]) for p in parts]) for n in parts[0]}


@register("arrays")
@dataclasses.dataclass(frozen=True, eq=False)
class Arrays(Dataset):
    """The caller's own arrays as a dataset: ``x [N, d_x]`` and whatever of ``z``, ``u``,
    ``a`` (per sample) and ``support``, ``graph`` (per dataset) is known.

    ``sample(key, n)`` returns the first ``n`` samples in their order when ``n`` is all of
    them, else ``n`` rows drawn without replacement with the key's numpy seed.
    """

    traceable: ClassVar[bool] = False
    x: Any = dataclasses.field(repr=False, default=None)
    z: Any = dataclasses.field(repr=False, default=None)
    u: Any = dataclasses.field(repr=False, default=None)
    a: Any = dataclasses.field(repr=False, default=None)
    support: Any = dataclasses.field(repr=False, default=None)
    graph: Any = dataclasses.field(repr=False, default=None)

    def __post_init__(self):
        if self.x is None:
            raise ValueError("Arrays needs x [N, d_x]")
        x = np.asarray(self.x)
        if x.ndim < 2 or len(x) < 1:
            raise ValueError(f"x must be [N, d_x] with N >= 1, got shape {x.shape}")
        for n in ("z", "u", "a"):
            v = getattr(self, n)
            if v is not None and len(np.asarray(v)) != len(x):
                raise ValueError(f"{n} has {len(np.asarray(v))} samples, x has {len(x)}")

    def sample(self, key: Array, num_samples: int) -> dict:
        n = len(np.asarray(self.x))
        if not 1 <= num_samples <= n:
            raise ValueError(f"asked for {num_samples} samples of {n} given")
        rows = (
            np.arange(n)
            if num_samples == n
            else np.sort(np.random.default_rng(numpy_seed(key)).choice(n, num_samples, replace=False))
        )
        out = {}
        for f in FIELDS:
            v = getattr(self, f)
            if v is not None:
                out[f] = np.asarray(v)[rows] if f in ("x", "z", "u", "a") else np.asarray(v)
        return out

    def describe(self) -> dict:
        # the content's hash: two datasets of one shape must not share a group key
        h = hashlib.sha256()
        for f in FIELDS:
            v = getattr(self, f)
            if v is not None:
                a = np.ascontiguousarray(v)
                h.update(f"{f}{a.dtype}{a.shape}".encode())
                h.update(a.tobytes())
        return {
            "dataset": self.name,
            "dataset_version": self.version,
            "num_samples": len(np.asarray(self.x)),
            "obs_dim": int(np.asarray(self.x).shape[-1]),
            "sha256": h.hexdigest()[:16],
        }
