"""Timing benchmarks only: JAX against our own PyTorch port (:mod:`.torch_port`) on identical
work, medians of repeats (:mod:`.common`); ``python -m experiments.bench`` runs them all.

The side-by-side runs of the authors' own code are :mod:`experiments.reference`.
"""
