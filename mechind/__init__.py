"""mechind: identifiable disentangled representation learning in JAX.

The shared core (:mod:`mechind.core`: derivatives, runner, metrics, nets, rng, report),
on which every pipeline is built, and the mechanistic-independence pipeline (criteria,
graph view, slot autoencoders). Submodules that need the
heavier training stack are imported lazily, so ``import mechind`` stays cheap.
"""

import importlib

__version__ = "0.1.0"

_CORE = ("derivatives", "runner", "metrics", "nets", "rng", "report")
_PIPELINE = ("criteria", "graph", "data", "models", "losses", "train", "core")


def __getattr__(name):
    if name in _CORE:
        return importlib.import_module(f"mechind.core.{name}")
    if name in _PIPELINE:
        return importlib.import_module(f"mechind.{name}")
    raise AttributeError(f"module 'mechind' has no attribute {name!r}")
