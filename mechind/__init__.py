"""mechind: identifiable disentangled representation learning in JAX.

The shared core is :mod:`mechind.core` (derivatives, runner, metrics, nets, rng, report,
datasets, training), on which every pipeline is built; this package also holds the
mechanistic-independence pipeline (criteria, graph view, slot autoencoders). The other
pipelines are the packages ``cg`` (sufficient changes + sparse mixing) and ``mechsparse``
(mechanism sparsity). Each module has one import path: ``from mechind.core import
derivatives``, ``from mechind import criteria``.

Fit a slot autoencoder to your own arrays with ``mechind.fit(key, x, num_slots=..., slot_dim=...)``
(:mod:`mechind.fitting`); the ``mechind`` command is :mod:`mechind.cli`.
"""

__version__ = "0.1.0"


def __getattr__(name):
    """``mechind.fit`` / ``mechind.Fitted`` (:mod:`mechind.fitting`), imported on first use so
    ``import mechind`` stays cheap."""
    if name in ("fit", "Fitted"):
        from mechind import fitting

        return getattr(fitting, name)
    raise AttributeError(f"module 'mechind' has no attribute {name!r}")
