"""The shared core every pipeline is built on; it imports no pipeline.

===============  ==============================================================
``derivatives``  jit-compiled per-sample Jacobians, Hessians, finite differences
``runner``       vmapped runs: plan, compile, chunked host loop, checkpoints, NaN marking
``metrics``      MCC, SIS, R² matrices, matchings
``nets``         the MLP, activations, Gaussian log-density, condition number
``rng``          keys as data and the explicit RNG tracing mode
``report``       atomic writes, JSON lines, tables, figures
===============  ==============================================================

``mechind.derivatives``, ``mechind.metrics``, ... stay importable (the design card's
public names): they are these very modules.
"""

import importlib

CORE_MODULES = ("derivatives", "runner", "metrics", "nets", "rng", "report")


def __getattr__(name):
    if name in CORE_MODULES:
        return importlib.import_module(f"mechind.core.{name}")
    raise AttributeError(f"module 'mechind.core' has no attribute {name!r}")
