"""The CG-GAN authors' code (github.com/jozerozero/Synergy_Disentanglement, ``realworld/``)
beside :mod:`cg.gan`, component by component, on identical parameters and inputs.

* the dense sigmoid flow: their ``training.flow.DDSF`` against :func:`cg.gan.ddsf`;
* the prior: their ``MappingNetwork.preprocess_input`` (``cond_mode='flow'``: mask
  ``importance > 0.1``, ``z_in + causal_influence * flow(z_in)``, the per-sample
  ``flow_norm``) against :func:`cg.gan.apply_prior`, given the flow parameters their
  conditioning layers compute;
* the sparsity terms: their ``lambda_sparse`` loss (``mean |importance|``), and their image
  proxy ``mean |G(perturbed) - G(unperturbed)|``. As released, ``MappingNetwork.forward``
  perturbs ``x_perturbed`` and then maps ``x_unperturbed`` again, so the two outputs are
  equal and the image term carries no perturbation (its value and gradient come only from
  style mixing and synthesis noise). With that one word fixed, its value equals
  :func:`cg.gan.fd_sparsity` times ``perturb_norm`` for the latent and sign it drew. (It
  draws the latent from the flattened list of the mask's nonzero (row, column) pairs, so
  it can pick a sample's row number as a column; we draw among the kept latents.)

    python -m experiments.reference.synergy --repo /work/.mirror/jozerozero+Synergy_Disentanglement/repo
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import tempfile
import textwrap
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cg import gan
from experiments.reference import checkouts

DEFAULT_REPO = Path("/work/.mirror/jozerozero+Synergy_Disentanglement/repo")


def load(repo: Path, work: Path) -> types.SimpleNamespace:
    """Their ``training.flow`` and ``training.networks`` from a fetched copy."""
    tree = checkouts.checkout(repo, work / "synergy", checkouts.SYNERGY_MARKER, checkouts.SYNERGY_PATHS)
    return checkouts.import_synergy(tree)


def mapping_network(ref, z_dim: int, c_dim: int, i_dim: int, blocks: int, hidden: int, flow_norm: int, seed: int):
    """Their ``MappingNetwork`` with the flow conditioning (its constructor prints itself)."""
    import torch

    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        m = ref.networks.MappingNetwork(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=8,
            num_ws=1,
            num_layers=2,
            cond_mode="flow",
            i_dim=i_dim,
            flow_blocks=blocks,
            flow_dim=hidden,
            flow_norm=flow_norm,
        )
    return m


def flow_weights(ddsf_module) -> list[dict]:
    """Our :func:`cg.gan.ddsf` weights from their ``DDSF`` module."""
    return [
        {"u": jnp.asarray(b.u_.detach().numpy()), "w": jnp.asarray(b.w_.detach().numpy())} for b in ddsf_module.model
    ]


def ddsf_pair(ref, batch: int = 6, dims: int = 4, blocks: int = 3, hidden: int = 10, seed: int = 0):
    """``(theirs, ours)`` ``[batch, dims]``: their DDSF and ours on the same weights, inputs
    and conditioning parameters (weights and parameters drawn at a scale that bends it)."""
    import torch

    torch.manual_seed(seed)
    f = ref.flow.DDSF(n_blocks=blocks, hidden_dim=hidden)
    for b in f.model:  # their init (+-1e-3) leaves the softmaxes uniform; bend them
        b.u_.data.normal_()
        b.w_.data.normal_()
    x = torch.randn(batch, dims)
    dsparams = torch.randn(batch, dims, f.num_params)
    theirs = f(x, dsparams).detach().numpy()
    ours = gan.ddsf(jnp.asarray(x.numpy()), jnp.asarray(dsparams.numpy()), flow_weights(f))
    return theirs, np.asarray(ours)


def their_dsparams(m, c):
    """The flow parameters their ``preprocess_input`` computes from domain one-hots ``c``."""
    y = m.embed(c)
    y = y * (y.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    for idx in range(m.num_layers + 1):
        y = getattr(m, f"flow_fc{idx}")(y)
    return y.view(len(y), m.i_dim, -1)


def prior_pair(ref, importance, flow_norm: int = 1, z_dim: int = 6, i_dim: int = 4, seed: int = 0):
    """``(theirs, ours)`` ``[B, z_dim]``: their ``preprocess_input`` and our
    :func:`cg.gan.apply_prior` with their flow weights, importance and flow parameters."""
    import torch

    c_dim, batch = 3, 5
    m = mapping_network(ref, z_dim, c_dim, i_dim, 2, 10, flow_norm, seed)
    for b in m.flow.model:
        b.u_.data.normal_()
        b.w_.data.normal_()
    m.importance.data = torch.tensor([importance], dtype=torch.float32)
    z = torch.randn(batch, z_dim)
    c = torch.eye(c_dim)[torch.arange(batch) % c_dim]
    with torch.no_grad():
        theirs = m.preprocess_input(z, c)[0].numpy()
        dsp = their_dsparams(m, c).numpy()
    a = gan.Arch(latent_dim=z_dim, i_dim=i_dim, max_domains=c_dim, height=4, width=4, flow_norm=bool(flow_norm))
    p = {
        "flow": flow_weights(m.flow),
        "importance": jnp.asarray(importance, jnp.float32),
        "affine": {"mu": jnp.zeros((c_dim, i_dim)), "log_s": jnp.zeros((c_dim, i_dim))},
    }
    v = gan.Variant(*(jnp.float32(x) for x in (1, 1, 1, 0)))
    ours = jax.vmap(lambda e, d: gan.apply_prior(p, a, e, d, jnp.int32(0), v))(jnp.asarray(z.numpy()), jnp.asarray(dsp))
    return theirs, np.asarray(ours)


def _fixed_forward(ref):
    """Their ``MappingNetwork.forward`` with ``forward_main(x_unperturbed`` made
    ``forward_main(x_perturbed`` for the perturbed output (the only change)."""
    src = textwrap.dedent(inspect.getsource(ref.networks.MappingNetwork.forward))
    old = "ws_perturbed,_=self.forward_main(x_unperturbed"
    if old not in src:
        raise RuntimeError("their MappingNetwork.forward changed; update the patch")
    namespace = dict(vars(ref.networks))
    exec(
        compile(src.replace(old, "ws_perturbed,_=self.forward_main(x_perturbed"), "<patched forward>", "exec"),
        namespace,
    )  # noqa: S102
    return namespace["forward"]


def sparsity_pair(ref, seed: int = 0, delta: float = 0.1):
    """Their sparsity terms beside ours on one batch: a dict with their ``lambda_sparse``
    loss and ours, the released image proxy (``released``: its perturbed and unperturbed
    outputs' largest difference), and, with the one-word fix, their proxy's value and
    ours (:func:`cg.gan.fd_sparsity` times ``delta``, with the latent and sign they drew)."""
    import torch

    z_dim, i_dim, c_dim, batch = 6, 4, 3, 4  # batch <= z_dim: their draw can pick a row number as a column
    m = mapping_network(ref, z_dim, c_dim, i_dim, 2, 10, 1, seed)
    m.importance.data = torch.tensor([[0.9, 0.05, 0.5, 0.3]])
    z = torch.randn(batch, z_dim)
    c = torch.eye(c_dim)[torch.arange(batch) % c_dim]
    with torch.no_grad():
        torch.manual_seed(seed + 1)
        w_u, w_p, loss_sparse = m(z, c, sparse_loss=True, perturb_norm=delta)
        torch.manual_seed(seed + 1)
        fixed = types.MethodType(_fixed_forward(ref), m)
        f_u, f_p, _ = fixed(z, c, sparse_loss=True, perturb_norm=delta)
        # the latent and sign their forward drew, from the same stream
        x_u, _, style_mask, _ = m.preprocess_input(z, c)
        torch.manual_seed(seed + 1)
        pick = torch.randint(low=0, high=int(style_mask.sum().item()), size=(1,))
        index = int(torch.nonzero(style_mask, as_tuple=False).reshape(-1)[pick])
        sign = float(torch.randint(low=0, high=2, size=(1,)) * 2 - 1)

        def render(zz):  # their mapping layers as the "generator" of z_hat
            return m.forward_main(torch.tensor(np.asarray(zz))).numpy()

        ours = float(gan.fd_sparsity(render, jnp.asarray(x_u.numpy()), index, sign, delta)) * delta
    return {
        "lambda_sparse_theirs": float(loss_sparse),
        "lambda_sparse_ours": float(jnp.mean(jnp.abs(jnp.asarray(m.importance.detach().numpy())))),
        "released": float((w_u - w_p).abs().max()),
        "fixed_theirs": float((f_u - f_p).abs().mean()),
        "fixed_ours": ours,
        "index": index,
        "sign": sign,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="a fetched copy of the authors' repository")
    args = ap.parse_args(argv)
    if not args.repo.exists():
        ap.error(f"--repo {args.repo} does not exist (fetch github:jozerozero/Synergy_Disentanglement)")
    with jax.enable_x64(False), tempfile.TemporaryDirectory() as work:
        ref = load(args.repo, Path(work))
        t, o = ddsf_pair(ref)
        print(f"DDSF (3 blocks x 10 units): largest difference {np.abs(t - o).max():.2e}")
        for imp in ([1.0, 1.0, 1.0, 1.0], [0.9, 0.05, 0.5, 0.08]):
            for norm in (0, 1):
                t, o = prior_pair(ref, imp, norm)
                print(f"prior, importance {imp}, flow_norm {norm}: largest difference {np.abs(t - o).max():.2e}")
        s = sparsity_pair(ref)
        print(f"lambda_sparse: theirs {s['lambda_sparse_theirs']:.6f}, ours {s['lambda_sparse_ours']:.6f}")
        print(f"image proxy as released: |perturbed - unperturbed| at most {s['released']:.3g} (no perturbation)")
        print(
            f"image proxy with the fix (latent {s['index']}, sign {s['sign']:+.0f}): theirs {s['fixed_theirs']:.6f}, "
            f"ours {s['fixed_ours']:.6f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
