"""Encode-time search of McQuic's finest-scale indices against the frozen decoder (``--effort N``).

The nearest-codeword choice minimizes the latent's error, not the image's.  Starting from it, the
search decodes the image, back-propagates the pixel MSE to the decoder's input latent and uses that
gradient ``g`` to predict, for every finest-scale index and every codeword ``k`` of its group, the
change of the MSE if the index switched to ``k``: ``g . (c_k - c) + mu ||c_k - c||^2`` (a first-order
term plus a trust-region curvature ``mu``).  Each of the N steps switches the 5 % of indices with the
largest predicted gain and decodes once more (N + 1 decodes in all).  A step whose decode is worse than the best so far is undone and ``mu`` doubles (a
better one halves it again, down to its start; four worse steps in a row end the search), so the
result is never worse (in the decoder's float MSE) than the nearest-codeword choice.  Coarser scales
stay as the encoder chose them (a coarser index also moves every finer residual).  The decoder and
the bitstream format are unchanged: only which indices the file holds differs.

Measured on Kodak with ``python benchmarks/effort.py``: see the README.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError

MAX_PIXELS = 1 << 22  # the search runs the decoder on the whole image (untiled), so larger images are refused
SWITCH_FRACTION = 0.05  # share of the finest-scale indices that may switch per step
MU_START = 0.3  # initial curvature, in units of 2 / (latent elements)
PATIENCE = 4  # consecutive worse steps after which the search ends (the trust region is then 16x its start)


def refine_finest(
    net: torch.nn.Module, x: Tensor, features: list[Tensor], level: int, steps: int, size: tuple[int, int]
) -> list[Tensor]:
    """Indices of every scale (finest first) of image ``x`` [1, 3, H', W'] at quality ``level``, the finest
    scale searched for ``steps`` decoder evaluations; ``size`` (h, w) is the unpadded image the MSE is measured on."""
    if steps > 0 and size[0] * size[1] > MAX_PIXELS:
        raise InputError(f"effort (--effort) searches images of up to {MAX_PIXELS} pixels (it runs the decoder untiled); this one has {size[0] * size[1]}")
    indices = net.encode_indices(x, level, features)
    if steps <= 0:
        return indices
    quantizer = net.codebooks(level)[0]
    with torch.inference_mode(False), torch.enable_grad():  # the caller may be in inference mode: its tensors are cloned
        pred = net.finest_prediction(features, indices, level).clone()
        target = x[..., : size[0], : size[1]].clone()
        best = _search(net, quantizer, pred, target, indices[0].clone(), steps, size)
    return [best, *indices[1:]]


def _search(net: torch.nn.Module, quantizer: torch.nn.Module, pred: Tensor, target: Tensor, current: Tensor, steps: int, size: tuple[int, int]) -> Tensor:
    """The finest-scale indices [1, m, h, w] of the lowest decoder MSE found from ``current`` in ``steps`` proposals."""
    codebook = quantizer.codebook.detach()  # [m, k, d]
    squared = codebook.pow(2).sum(-1)  # [m, k]

    def evaluate(indices: Tensor, gradient: bool) -> tuple[float, Tensor | None]:
        """Decoder MSE of ``indices`` and, if asked, its gradient [m, N, d] with respect to the finest codewords."""
        latent = (pred + quantizer.lookup(indices)).detach().requires_grad_(gradient)
        mse = (net.g_s(latent)[..., : size[0], : size[1]] - target).pow(2).mean()
        if not gradient:
            return mse.item(), None
        mse.backward()
        return mse.item(), quantizer._split(latent.grad)

    best_mse, grad = evaluate(current, True)
    best, mu, rejected = current, MU_START, 0
    for step in range(steps):
        if rejected == PATIENCE:
            break
        with torch.no_grad():  # the proposal: every index's best switch under the first-order model
            chosen = quantizer._lookup_flat(best.flatten(2)[0])  # [m, N, d]
            curvature = mu * 2.0 / pred.numel()
            gain, candidate = [], []
            for g, c, words, norms in zip(grad, chosen, codebook, squared, strict=True):  # one group at a time: [N, k] each
                predicted = (g - 2 * curvature * c) @ words.T + curvature * norms - (g * c).sum(-1, keepdim=True) + curvature * c.pow(2).sum(-1, keepdim=True)
                low, arg = predicted.min(-1)
                gain.append(low)
                candidate.append(arg)
            gain, candidate = torch.stack(gain), torch.stack(candidate)  # [m, N]
            flat = gain.flatten()
            threshold = flat.kthvalue(max(1, int(SWITCH_FRACTION * flat.numel()))).values  # (quantile() caps its input size)
            switch = (gain < 0) & (gain <= threshold)
            if not bool(switch.any()):
                break
            proposal = torch.where(switch, candidate, best.flatten(2)[0]).reshape(best.shape)
        mse, proposal_grad = evaluate(proposal, step < steps - 1)
        if mse < best_mse:  # better: keep it and widen the trust region again (never below the start)
            best, best_mse, grad = proposal, mse, proposal_grad
            mu, rejected = max(mu / 2, MU_START), 0
        else:  # worse: a tighter trust region around the best choice
            mu, rejected = 2 * mu, rejected + 1
    return best
