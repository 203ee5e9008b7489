"""mechind: identifiable disentangled representation learning in JAX.

The shared core is :mod:`mechind.core` (derivatives, runner, metrics, nets, rng, report,
datasets, training), on which every pipeline is built; this package also holds the
mechanistic-independence pipeline (criteria, graph view, slot autoencoders). The other
pipelines are the packages ``cg`` (sufficient changes + sparse mixing) and ``mechsparse``
(mechanism sparsity). Each module has one import path: ``from mechind.core import
derivatives``, ``from mechind import criteria``.
"""

__version__ = "0.1.0"
