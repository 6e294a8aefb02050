"""The tone layer: a coded thumbnail of the source that sets the decoded image's large-scale colour and brightness.

VQGAN-cluster's latent carries almost no colour (a linear probe of its 64-dim codes predicts no
block chroma on Kodak), so its decodes come out grey or tinted at every level.  The tone layer sends
what the indices miss at a few thousandths of a bit per pixel: the block means of the source in
YCbCr (BT.601, full range) over ``scale`` x ``scale`` pixel blocks, quantized with ``luma_step`` /
``chroma_step`` (in 1/255 units).  The decoder swaps the decoded image's own block means for those:

    out = decoded - up(mean_s(decoded)) + up(thumbnail)

where ``up`` is bicubic upsampling from block centres, so edges and texture stay the network's and
the large-scale tone becomes the source's.  The quantized means are integer codes on an absolute
grid; each plane is coded losslessly as its planar prediction error (``k - up - left + up-left``,
inverted by two cumulative sums) with the one Gaussian table (:mod:`codec.entropy.gaussian`) that
codes it shortest.  Stream: three table indices (one byte per plane), then the range-coded codes (a video
GOP's :func:`encode_sequence` adds three more for the later frames' changes).

The layer depends only on the source and the image size, never on the network's output, so its
bytes are identical on every CPU and thread count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..entropy import gaussian
from ..errors import CorruptStreamError, FormatError

YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float64)
"""RGB -> YCbCr (BT.601, full range, no offsets)."""

SCALES = (8, 16, 32, 64, 128)
"""Block sizes (pixels) a file may use."""

MAX_STEP = 64


@dataclass(frozen=True)
class ToneSettings:
    """Block size in pixels and quantization steps (1/255 units) of the luma and chroma means."""

    scale: int = 64
    luma_step: int = 8
    chroma_step: int = 8

    def __post_init__(self) -> None:
        if type(self.scale) is not int or self.scale not in SCALES:
            raise ValueError(f"tone block size must be one of {SCALES}, got {self.scale}")
        for step in (self.luma_step, self.chroma_step):
            if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= MAX_STEP:
                raise ValueError(f"tone steps must be integers in 1..{MAX_STEP}, got {step!r}")

    def meta(self) -> list[int]:
        """The header entry (``meta["tone"]``): ``[scale, luma_step, chroma_step]``."""
        return [self.scale, self.luma_step, self.chroma_step]

    @classmethod
    def from_meta(cls, meta: Any) -> ToneSettings:
        """Settings from a file header, or a one-line :class:`FormatError`."""
        if not isinstance(meta, list) or len(meta) != 3:
            raise FormatError(f"bad tone layer header: {meta!r}")
        try:
            return cls(*meta)
        except (TypeError, ValueError) as e:
            raise FormatError(f"bad tone layer header: {e}") from None

    def steps(self) -> torch.Tensor:
        """Quantization step of each YCbCr plane, in [0, 1] units, shape [3, 1, 1]."""
        return torch.tensor([self.luma_step, self.chroma_step, self.chroma_step], dtype=torch.float64).view(3, 1, 1) / 255.0


def _block_means(rgb: torch.Tensor, scale: int) -> torch.Tensor:
    """YCbCr means [3, ceil(H/s), ceil(W/s)] (float64) of an RGB image [1, 3, H, W] in [0, 1]; edges replicated."""
    h, w = rgb.shape[-2:]
    x = F.pad(rgb.double(), (0, (-w) % scale, 0, (-h) % scale), mode="replicate")
    return torch.einsum("ij,jhw->ihw", YCBCR, F.avg_pool2d(x, scale)[0])


def _thumbnail_shape(height: int, width: int, scale: int) -> tuple[int, int]:
    return -(-height // scale), -(-width // scale)


def codes(rgb: torch.Tensor, settings: ToneSettings) -> np.ndarray:
    """The integer tone codes [3, h, w] (quantized YCbCr block means) of a source image [1, 3, H, W] in [0, 1] (unpadded)."""
    return torch.round(_block_means(rgb, settings.scale) / settings.steps()).long().numpy()


def _planar(codes: np.ndarray) -> np.ndarray:
    """The planar prediction error ``k - up - left + up-left`` of codes [..., h, w] (inverted by two cumulative sums)."""
    return np.diff(np.diff(np.pad(codes, [(0, 0)] * (codes.ndim - 2) + [(1, 0), (1, 0)]), axis=-2), axis=-1)


def encode(rgb: torch.Tensor, settings: ToneSettings) -> bytes:
    """The tone stream of a source image [1, 3, H, W] in [0, 1] (unpadded)."""
    return encode_sequence([codes(rgb, settings)])


def encode_sequence(frames: list[np.ndarray]) -> bytes:
    """The tone stream of a sequence of frames' :func:`codes`: the first frame's planes by planar prediction,
    each later frame as its difference from the one before (video: a static scene costs almost nothing).
    Stream: one table index per plane for the first frame, then (with more frames) one per plane for
    all the differences, then the range-coded residuals.  One frame gives :func:`encode`'s stream."""
    stacked = np.stack(frames)
    parts = [_planar(stacked[0])] + ([np.diff(stacked, axis=0).transpose(1, 0, 2, 3)] if len(frames) > 1 else [])
    tables = gaussian.default_tables()
    ids = [tables.cheapest(plane) for part in parts for plane in part]
    index = np.concatenate([np.full(plane.size, t, np.int64) for t, plane in zip(ids, (p for part in parts for p in part), strict=True)])
    return bytes(ids) + gaussian.encode(np.concatenate([part.ravel() for part in parts]), index, tables)


def decode(data: bytes, height: int, width: int, settings: ToneSettings) -> torch.Tensor:
    """The quantized YCbCr block means [3, h, w] (float64, [0, 1] units) of a tone stream."""
    return means(decode_sequence(data, 1, height, width, settings)[0], settings)


def decode_sequence(data: bytes, n: int, height: int, width: int, settings: ToneSettings) -> list[np.ndarray]:
    """Inverse of :func:`encode_sequence`: the codes [3, h, w] of ``n`` frames of ``height`` x ``width``."""
    tables = gaussian.default_tables()
    n_ids = 3 if n == 1 else 6
    if n < 1 or len(data) < n_ids or any(t >= len(tables.scales) for t in data[:n_ids]):
        raise CorruptStreamError("tone layer is corrupt")
    th, tw = _thumbnail_shape(height, width, settings.scale)
    ids = np.frombuffer(data[:n_ids], np.uint8).astype(np.int64)
    index = np.concatenate([np.repeat(ids[:3], th * tw), np.repeat(ids[3:], (n - 1) * th * tw)])
    residual = gaussian.decode(data[n_ids:], index, tables)
    first = np.cumsum(np.cumsum(residual[: 3 * th * tw].reshape(3, th, tw), axis=1), axis=2)
    steps = residual[3 * th * tw :].reshape(3, n - 1, th, tw).transpose(1, 0, 2, 3)
    return list(first + np.concatenate([np.zeros((1, 3, th, tw), np.int64), np.cumsum(steps, axis=0)]))


def means(codes: np.ndarray, settings: ToneSettings) -> torch.Tensor:
    """The quantized YCbCr block means [3, h, w] (float64, [0, 1] units) of tone codes."""
    return torch.from_numpy(codes).double() * settings.steps()


def apply(decoded: torch.Tensor, data: bytes, height: int, width: int, settings: ToneSettings) -> torch.Tensor:
    """``decoded`` [1, 3, H', W'] (H' >= height) with its block means replaced by the tone stream's, in [0, 1]."""
    return apply_means(decoded, decode(data, height, width, settings), height, width, settings)


def apply_means(decoded: torch.Tensor, target: torch.Tensor, height: int, width: int, settings: ToneSettings) -> torch.Tensor:
    """``decoded`` [1, 3, H', W'] (H' >= height) with its block means replaced by ``target`` (:func:`means`), in [0, 1]."""
    image = decoded[..., :height, :width]
    delta = torch.linalg.solve(YCBCR, (target - _block_means(image, settings.scale)).flatten(1)).view_as(target)
    s = settings.scale
    up = F.interpolate(delta.unsqueeze(0), scale_factor=s, mode="bicubic", align_corners=False)[..., :height, :width]
    out = decoded.clone()
    out[..., :height, :width] = (image.double() + up).clamp(0, 1).to(decoded.dtype)
    return out
