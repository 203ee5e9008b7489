"""Sufficient changes + sparse mixing: multi-domain data, CG-VAE / iVAE / beta-VAE, and
:func:`fit` for a researcher's own arrays (``cg.fit(key, x, u, method=..., latent_dim=...)``).

``fit`` is imported on first use, so ``import cg`` stays cheap.
"""


def __getattr__(name):
    if name in ("fit", "fit_many", "Fitted"):
        from cg import fitting

        return getattr(fitting, name)
    raise AttributeError(f"module 'cg' has no attribute {name!r}")
