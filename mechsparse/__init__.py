"""Mechanism sparsity (Lachapelle et al. 2022, arXiv 2107.10098): latents identified by a
sparse learned graph of their dynamics (action -> latent G^a, or z⁰ -> z¹ G^z).

Built on the shared core (:mod:`mechind.core`: runner, training, datasets, metrics, nets) and nothing
else:

==========  ==============================================================
``data``    their synthetic protocol (``Spec``, the dataset ``"mechanism_sparsity"``): graphs, mechanisms, the mixing
``models``  Gaussian encoder/decoder, the Gumbel-sigmoid-masked transition prior
``losses``  per-coordinate ELBO, the sparsity penalty, the annealed bound, the dual ascent
``metrics`` SHD of a learned graph under the MCC matching
``train``   config, per-run hyper-parameters, the core's training step, the runner task, ``finish``, ``train``
``fitting`` ``fit(key, x, actions=... | time=..., latent_dim=...)`` on a user's arrays
==========  ==============================================================

``fit`` is imported on first use, so ``import mechsparse`` stays cheap.
"""


def __getattr__(name):
    if name in ("fit", "Fitted"):
        from mechsparse import fitting

        return getattr(fitting, name)
    raise AttributeError(f"module 'mechsparse' has no attribute {name!r}")
