"""The shared core every pipeline is built on; it imports no pipeline.

===============  ==============================================================
``derivatives``  jit-compiled per-sample Jacobians, Hessians, finite differences
``runner``       vmapped runs: plan, compile, chunked host loop, checkpoints, NaN marking
``training``     one training-step style: the run state, Adam with a per-run lr, minibatches, KL
``datasets``     the dataset interface, the registry of named datasets, user arrays
``metrics``      MCC, SIS, R² matrices, matchings
``nets``         the MLP, activations, Gaussian log-density, condition number
``rng``          keys and the explicit RNG tracing mode
``report``       atomic writes, JSON lines, tables, figures
===============  ==============================================================

Import them by this path (``from mechind.core import runner``): it is their only one.
"""
