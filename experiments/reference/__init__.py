"""The authors' public code run side by side with ours, on identical arrays.

Each module runs a fetched copy of one repository (never vendored; a work tree or the bare
git directory the fetch tool brings) and needs the ``bench`` extra (torch):

* :mod:`.ivae`: Khemakhem et al.'s iVAE training (github.com/ilkhem/iVAE, its
  ``runners.ivae.runner``) against ``cg.fit``; MCC.
* :mod:`.slot`: Brady et al.'s slot autoencoder (github.com/brendel-group/objects-identifiability,
  its ``train_model.py``) against ``mechind.train``; SIS, reconstruction and the contrast,
  both scored by ``mechind.train.evaluate``.
* :mod:`.mechsparse`: Lachapelle et al.'s ILCM VAE
  (github.com/slachapelle/disentanglement_via_mechanism_sparsity, its ``model`` package)
  against ``mechsparse.train``; MCC and SHD.

:mod:`.checkouts` holds what they share: extracting a checkout, putting it on ``sys.path``,
and every stub and patch each repository needs here, with the reason for each.

    python -m experiments.reference.<ivae|slot|mechsparse> --help
"""
