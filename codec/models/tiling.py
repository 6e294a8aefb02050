"""Convolutional transforms of large images, one tile at a time, with enough context that the tiles do not show.

A tile is run with ``margin`` input pixels of its neighbours on every side and only its own part of the
output is kept; with a margin at least the transform's receptive field the result equals the whole
image's (up to float rounding), and peak memory is that of one tile.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from torch import Tensor


def tiled(fn: Callable[[Tensor], Tensor], x: Tensor, scale: Fraction, tile: int, margin: int) -> Tensor:
    """``fn(x)`` for [B, C, H, W] ``x`` computed on ``tile`` x ``tile`` tiles with ``margin`` of context.

    ``scale`` is the output size over the input size (1/16 for an analysis transform, 16 for a
    synthesis one); ``tile`` and ``margin`` are in input pixels and must map to whole output pixels.
    """
    if (tile * scale).denominator != 1 or (margin * scale).denominator != 1:
        raise ValueError(f"tile {tile} and margin {margin} must map to whole output pixels at scale {scale}")
    h, w = x.shape[-2:]
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(y0 - margin, 0), max(x0 - margin, 0)
            part = fn(x[..., ya : min(y1 + margin, h), xa : min(x1 + margin, w)])
            if out is None:
                out = part.new_empty((*part.shape[:2], int(h * scale), int(w * scale)))
            oy, ox = int((y0 - ya) * scale), int((x0 - xa) * scale)
            th, tw = int((y1 - y0) * scale), int((x1 - x0) * scale)
            out[..., int(y0 * scale) : int(y0 * scale) + th, int(x0 * scale) : int(x0 * scale) + tw] = part[..., oy : oy + th, ox : ox + tw]
    return out
