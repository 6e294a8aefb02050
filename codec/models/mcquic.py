"""McQuic: multi-codebook vector quantization on three latent scales (Zhu et al., CVPR 2022).

The encoder maps an image to a 1/16-resolution latent; two strided blocks derive 1/32 and 1/64
latents from it.  Quantization runs coarse to fine: the coarsest latent is quantized directly,
each finer latent quantizes only the residual left after upsampling the coarser reconstruction.
Indices are coded with a static per-codebook frequency table, so there is no serial context model
and every symbol of a level can be coded in one vectorized call.

Split as in CompressAI: :meth:`McQuic.forward` for training (reconstruction + indices + auxiliary
losses), :meth:`McQuic.compress` / :meth:`McQuic.decompress` for bytes, and :meth:`McQuic.update`
to freeze the integer tables the entropy coder uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from compressai.layers import (
    AttentionBlock,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv3x3,
    subpel_conv3x3,
)
from torch import Tensor, nn

from ..entropy import categorical
from .quantizer import MultiCodebookQuantizer

STRIDE = 16  # resolution of the finest latent
LEVEL_FACTOR = 2  # each coarser level halves the resolution


@dataclass(frozen=True)
class McQuicConfig:
    """Architecture of one McQuic model.  ``codewords`` lists ``k`` per level, finest first."""

    channels: int = 64
    latent_channels: int = 128
    groups: int = 4
    codewords: tuple[int, ...] = field(default=(1024, 512, 256))

    @property
    def levels(self) -> int:
        """Number of latent scales."""
        return len(self.codewords)

    @property
    def pad_multiple(self) -> int:
        """Image sides are padded to a multiple of this before encoding."""
        return STRIDE * LEVEL_FACTOR ** (self.levels - 1)

    def to_dict(self) -> dict:
        """JSON-serializable form (stored in checkpoints)."""
        d = asdict(self)
        d["codewords"] = list(self.codewords)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> McQuicConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        d = dict(d)
        d["codewords"] = tuple(int(k) for k in d.get("codewords", cls.codewords))
        return cls(**d)


QUALITIES: dict[int, McQuicConfig] = {
    1: McQuicConfig(groups=2),
    2: McQuicConfig(groups=4),
    3: McQuicConfig(groups=8),
    4: McQuicConfig(groups=16),
}
"""Shipped quality levels: more codebook groups per latent vector = more bits and better quality."""

TINY = McQuicConfig(channels=8, latent_channels=16, groups=2, codewords=(16, 8, 4))
"""A configuration that trains in seconds on a CPU (tests)."""


def _encoder(n: int, c: int) -> nn.Sequential:
    return nn.Sequential(
        ResidualBlockWithStride(3, n, stride=2),
        ResidualBlock(n, n),
        ResidualBlockWithStride(n, n, stride=2),
        ResidualBlock(n, n),
        ResidualBlockWithStride(n, n, stride=2),
        ResidualBlock(n, n),
        conv3x3(n, c, stride=2),
        AttentionBlock(c),
    )


def _decoder(n: int, c: int) -> nn.Sequential:
    return nn.Sequential(
        AttentionBlock(c),
        ResidualBlock(c, n),
        ResidualBlockUpsample(n, n, 2),
        ResidualBlock(n, n),
        ResidualBlockUpsample(n, n, 2),
        ResidualBlock(n, n),
        ResidualBlockUpsample(n, n, 2),
        subpel_conv3x3(n, 3, 2),
    )


def _upsampler(c: int) -> nn.Sequential:
    """Predicts a finer latent from the coarser reconstruction (nearest upsampling + residual block)."""
    return nn.Sequential(nn.Upsample(scale_factor=LEVEL_FACTOR, mode="nearest"), ResidualBlock(c, c))


class McQuic(nn.Module):
    """The McQuic image codec: encoder, 3-scale multi-codebook quantizer cascade, decoder."""

    def __init__(self, config: McQuicConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or McQuicConfig()
        c = cfg.latent_channels
        self.g_a = _encoder(cfg.channels, c)
        self.g_s = _decoder(cfg.channels, c)
        self.down = nn.ModuleList(ResidualBlockWithStride(c, c, LEVEL_FACTOR) for _ in range(cfg.levels - 1))
        self.up = nn.ModuleList(_upsampler(c) for _ in range(cfg.levels - 1))
        self.quantizers = nn.ModuleList(MultiCodebookQuantizer(c, cfg.groups, k) for k in cfg.codewords)

    def latents(self, x: Tensor) -> list[Tensor]:
        """Latents of every level, finest first.  ``x`` is [B, 3, H, W] in [0, 1], sides divisible by pad_multiple."""
        ys = [self.g_a(x)]
        for down in self.down:
            ys.append(down(ys[-1]))
        return ys

    def _prediction(self, level: int, coarser: Tensor | None, like: Tensor) -> Tensor:
        """Upsampled reconstruction of the next coarser level (zero at the coarsest level)."""
        if coarser is None:
            return torch.zeros_like(like)
        return self.up[level](coarser)

    def _cascade(self, x: Tensor, on_residual: Callable[[int, Tensor], None] | None = None) -> tuple[Tensor, list[Tensor], Tensor]:
        """Quantize coarse to fine: ``(latent reconstruction, indices finest first, summed VQ loss)``.

        ``on_residual(level, residual)`` is called before each level is quantized.
        """
        ys = self.latents(x)
        recon: Tensor | None = None
        indices: list[Tensor] = []
        vq_loss = x.new_zeros(())
        for level in reversed(range(self.config.levels)):
            pred = self._prediction(level, recon, ys[level])
            residual = ys[level] - pred
            if on_residual is not None:
                on_residual(level, residual)
            q, idx, loss = self.quantizers[level](residual)
            recon = pred + q
            indices.insert(0, idx)
            vq_loss = vq_loss + loss
        return recon, indices, vq_loss

    def forward(self, x: Tensor) -> dict:
        """Training pass: ``{"x_hat", "indices" (finest first), "vq_loss"}``."""
        recon, indices, vq_loss = self._cascade(x)
        return {"x_hat": self.g_s(recon), "indices": indices, "vq_loss": vq_loss}

    @torch.no_grad()
    def init_codebooks(self, x: Tensor, levels: set[int] | None = None) -> None:
        """Data-dependent initialization: seed codebooks and temperatures (of ``levels``, default all) from ``x``."""

        def seed(level: int, residual: Tensor) -> None:
            if levels is None or level in levels:
                self.quantizers[level].init_from(residual)

        was_training = self.training
        self.eval()
        self._cascade(x, seed)
        self.train(was_training)

    @torch.no_grad()
    def encode_indices(self, x: Tensor) -> list[Tensor]:
        """Indices [B, m, h, w] of every level, finest first (nearest codewords in eval mode)."""
        return self._cascade(x)[1]

    @torch.no_grad()
    def decode_indices(self, indices: list[Tensor]) -> Tensor:
        """Reconstruct images [B, 3, H, W] (unclamped) from indices of every level, finest first."""
        recon: Tensor | None = None
        for level in reversed(range(self.config.levels)):
            q = self.quantizers[level].lookup(indices[level])
            recon = self._prediction(level, recon, q) + q
        return self.g_s(recon)

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Index grid (h, w) of every level, finest first, for a padded image of the given size."""
        shapes = []
        h, w = height // STRIDE, width // STRIDE
        for _ in range(self.config.levels):
            shapes.append((h, w))
            h, w = h // LEVEL_FACTOR, w // LEVEL_FACTOR
        return shapes

    @property
    def pad_multiple(self) -> int:
        """Image sides are padded to a multiple of this before coding."""
        return self.config.pad_multiple

    @property
    def stream_count(self) -> int:
        """Number of entropy-coded streams per image (one per latent scale)."""
        return self.config.levels

    @torch.no_grad()
    def compress(self, x: Tensor) -> list[bytes]:
        """Entropy-code one padded image [1, 3, H, W]: one byte string per level, finest first."""
        if x.shape[0] != 1:
            raise ValueError("compress takes a single image")
        indices = self.encode_indices(x)
        return [
            categorical.encode(idx[0].flatten(1).cpu().numpy(), quantizer.freq.cpu().numpy())
            for idx, quantizer in zip(indices, self.quantizers, strict=True)
        ]

    @torch.no_grad()
    def decompress(self, strings: list[bytes], height: int, width: int) -> Tensor:
        """Decode the byte strings of :meth:`compress` to an image [1, 3, height, width] in [0, 1]."""
        if len(strings) != self.config.levels:
            raise ValueError(f"expected {self.config.levels} streams, got {len(strings)}")
        indices = []
        for data, quantizer, (h, w) in zip(strings, self.quantizers, self.latent_shapes(height, width), strict=True):
            sym = categorical.decode(data, quantizer.freq.cpu().numpy(), h * w)
            indices.append(torch.from_numpy(sym).reshape(1, quantizer.groups, h, w))
        return self.decode_indices(indices).clamp_(0, 1)

    def update(self) -> None:
        """Freeze every codebook's usage statistics into the integer tables the coder uses."""
        for quantizer in self.quantizers:
            quantizer.update()


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad [B, C, H, W] on the bottom/right so that H and W are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")
