"""The learned temporal prior of video indices: how likely each index of an inter frame repeats the previous frame's.

An inter frame is coded in the index domain of the image model (McQuic: ``m`` codebook groups on three
latent scales), scale by scale from the coarsest.  Every index ``x`` at a position is coded in two stages:

1. a *hit* symbol over ``OFFSETS`` + miss: ``j`` when ``x`` equals the previous frame's index at the position
   moved by offset ``j`` (the first such offset, centre first), else *miss*;
2. for a miss, ``x`` itself with the image model's static table of its group.

The stage-1 probabilities come from :class:`TemporalPrior`, a small convolutional network over features the
decoder already has: the previous frame's index maps, the current frame's coarser scales (decoded first),
how often the coarser scale's indices repeated under each offset (motion evidence), how stable the previous
map is around the position, and the frame's hit rate at this scale, which the encoder sends (one byte per
scale).  Probabilities of offsets that point at the same codeword are merged onto the first, so no mass is
wasted on symbols that cannot occur.  Nothing is serial: every symbol of a scale gets its distribution from
one network pass and is coded in one vectorized call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.config import JSONConfig

OFFSETS = ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))
"""(dy, dx) candidate displacements of the previous index map, centre first."""
MISS = len(OFFSETS)
SYMBOLS = MISS + 1
SCALES = 3
FEATURES = 5 + len(OFFSETS) + SCALES


@dataclass(frozen=True)
class PriorConfig(JSONConfig):
    """Width of the prior's hidden layer."""

    hidden: int = 24


def shifted(prev: Tensor, dy: int, dx: int) -> Tensor:
    """``prev`` [..., h, w] moved so that out[y, x] = prev[y - dy, x - dx], edges replicated."""
    h, w = prev.shape[-2:]
    ys = (torch.arange(h) - dy).clamp(0, h - 1)
    xs = (torch.arange(w) - dx).clamp(0, w - 1)
    return prev[..., ys[:, None], xs[None, :]]


def candidates(prev: Tensor) -> Tensor:
    """[len(OFFSETS), m, h, w]: the previous index map under every offset."""
    return torch.stack([shifted(prev, dy, dx) for dy, dx in OFFSETS])


def hit_symbols(current: Tensor, cands: Tensor) -> Tensor:
    """Stage-1 symbols [m, h, w]: the first offset whose candidate equals ``current``, else :data:`MISS`."""
    equal = cands == current.unsqueeze(0)
    first = torch.where(equal.any(0), equal.float().argmax(0), torch.full_like(current, MISS))
    return first.long()


def features(prev: Tensor, coarse_current: Tensor | None, coarse_prev: Tensor | None, hit_rate: float, scale: int) -> Tensor:
    """The prior's input [m, FEATURES, h, w] for one scale of one frame (see the module docstring)."""
    m, h, w = prev.shape
    cands = candidates(prev)
    stability = (cands[1:] == prev.unsqueeze(0)).float().mean(0)  # how many neighbours repeat the centre
    if coarse_current is None:
        changed = torch.zeros(m, h, w)
        motion = torch.zeros(len(OFFSETS), m, h, w)
        has_coarse = torch.zeros(m, h, w)
    else:
        coarse_cands = candidates(coarse_prev)
        motion = _upsampled((coarse_cands == coarse_current.unsqueeze(0)).float(), (h, w))
        changed = 1.0 - motion[0]
        has_coarse = torch.ones(m, h, w)
    changed_mean = changed.mean(0, keepdim=True).expand(m, h, w)
    onehot = torch.zeros(SCALES, m, h, w)
    onehot[scale] = 1.0
    parts = [torch.full((m, h, w), float(hit_rate)), changed, changed_mean, stability, has_coarse, *motion, *onehot]
    return torch.stack(parts, 1)


def _upsampled(x: Tensor, size: tuple[int, int]) -> Tensor:
    """[c, m, h', w'] -> [c, m, h, w] by nearest neighbour (the coarser scale has half the resolution)."""
    c, m = x.shape[:2]
    return F.interpolate(x.reshape(c * m, 1, *x.shape[-2:]), size=size, mode="nearest").reshape(c, m, *size)


class TemporalPrior(nn.Module):
    """Features [N, FEATURES, h, w] -> stage-1 logits [N, SYMBOLS, h, w] (offsets, then miss)."""

    kind = "video-prior"

    def __init__(self, config: PriorConfig | None = None) -> None:
        super().__init__()
        self.config = config or PriorConfig()
        hidden = self.config.hidden
        self.net = nn.Sequential(
            nn.Conv2d(FEATURES, hidden, 3, padding=1, padding_mode="replicate"),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, SYMBOLS, 1),
        )

    def forward(self, feats: Tensor) -> Tensor:
        """Stage-1 logits for every position."""
        return self.net(feats)


LOGIT_STEP = 1 / 16


def quantized_logits(logits: Tensor) -> Tensor:
    """Logits rounded to multiples of :data:`LOGIT_STEP` in float64.

    The decoder must derive exactly the encoder's probabilities; float32 kernels round differently with
    the thread count or the CPU, and rounding to a coarse grid makes a mismatch need a logit within
    about 1e-6 of a grid boundary.
    """
    return torch.round(logits.double() / LOGIT_STEP) * LOGIT_STEP


def merged_probabilities(logits: Tensor, cands: Tensor) -> Tensor:
    """[m*h*w, SYMBOLS] float64 stage-1 probabilities, offsets that repeat an earlier candidate's codeword merged onto it.

    ``logits`` [m, SYMBOLS, h, w], ``cands`` [len(OFFSETS), m, h, w]; see :func:`quantized_logits`.
    """
    p = torch.softmax(quantized_logits(logits), dim=1).permute(0, 2, 3, 1)  # [m, h, w, SYMBOLS]
    c = cands.permute(1, 2, 3, 0)  # [m, h, w, OFFSETS]
    out = p.clone()
    for j in range(1, len(OFFSETS)):
        dup = (c[..., :j] == c[..., j : j + 1])  # [m, h, w, j]
        first = torch.where(dup.any(-1), dup.float().argmax(-1), torch.full_like(c[..., 0], -1))
        has = first >= 0
        if has.any():
            target = first.clamp_min(0)
            out.scatter_add_(-1, target.unsqueeze(-1), torch.where(has, out[..., j], 0.0).unsqueeze(-1))
            out[..., j] = torch.where(has, 0.0, out[..., j])
    return out.reshape(-1, SYMBOLS)
