"""Integer frequency tables: the frozen, platform-independent form of every entropy model.

Encoder and decoder must agree bit for bit.  Floating-point probabilities computed by a network
can differ in the last bit between machines and thread counts, so every table that reaches the
coder is first turned into integers that sum to exactly ``2**PRECISION``.  Dividing such an integer
by a power of two is exact in float64, so the coder sees identical inputs everywhere.
"""

from __future__ import annotations

import numpy as np
import torch

PRECISION = 16
TOTAL = 1 << PRECISION


def frequencies_to_table(weights: torch.Tensor, precision: int = PRECISION) -> torch.Tensor:
    """Quantize non-negative weights [..., n] to int32 frequencies, each >= 1, rows summing to 2**precision.

    Deterministic: computed in float64 on the CPU, with ties in the rounding correction broken by
    index.  Works row-wise on any leading shape.
    """
    total = 1 << precision
    w = weights.detach().to("cpu", torch.float64).clamp_min(0)
    n = w.shape[-1]
    if n > total:
        raise ValueError(f"alphabet of {n} symbols does not fit {precision}-bit precision")
    flat = w.reshape(-1, n)
    sums = flat.sum(-1, keepdim=True)
    flat = torch.where(sums > 0, flat / sums.clamp_min(1e-300), torch.full_like(flat, 1.0 / n))
    freq = torch.floor(flat * (total - n)).to(torch.int64) + 1  # every symbol codable
    deficit = total - freq.sum(-1)  # in [0, n)
    # Hand the remaining counts to the symbols with the largest rounding remainders.
    remainder = flat * (total - n) - torch.floor(flat * (total - n))
    order = torch.argsort(-remainder, dim=-1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(n).expand_as(order).contiguous())
    freq += (ranks < deficit.unsqueeze(-1)).to(torch.int64)
    return freq.reshape(weights.shape).to(torch.int32)


def table_to_probabilities(freq: np.ndarray | torch.Tensor) -> np.ndarray:
    """Exact float64 probabilities of an integer table whose rows sum to 2**PRECISION."""
    arr = freq.cpu().numpy() if isinstance(freq, torch.Tensor) else np.asarray(freq)
    arr = arr.astype(np.int64)
    sums = arr.sum(-1)
    if arr.ndim == 0 or np.any(arr < 1) or np.any(sums != TOTAL):
        raise ValueError("frequency table must be positive and sum to 2**PRECISION per row")
    return arr.astype(np.float64) / float(TOTAL)
