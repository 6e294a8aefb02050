"""McQuic: multi-codebook vector quantization on three latent scales (Zhu et al., CVPR 2022).

The encoder maps an image to a 1/16-resolution latent; two strided blocks derive 1/32 and 1/64
latents from it.  Quantization runs coarse to fine: the coarsest latent is quantized directly,
each finer latent quantizes only the residual left after upsampling the coarser reconstruction.
Indices are coded with a static per-codebook frequency table, so there is no serial context model
and every symbol of a level can be coded in one vectorized call.

One network serves every quality: encoder, decoder and the scale blocks are shared, and each
quality level has its own set of codebooks, with ``m`` (the number of codebook groups per latent
vector, hence the bits per vector) growing with the level.  Training draws a level per batch, so
every step trains the shared network (a bitrate ladder, as VQGAN-cluster's and VAEformer's).

Split as in CompressAI: :meth:`McQuic.forward` for training (reconstruction + indices + auxiliary
losses), :meth:`McQuic.compress` / :meth:`McQuic.decompress` for bytes, and :meth:`McQuic.update`
to freeze the integer tables the entropy coder uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..entropy import categorical
from ._compressai import (
    AttentionBlock,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv3x3,
    subpel_conv3x3,
)
from .base import ImageCodecModel
from .config import JSONConfig
from .quantizer import MultiCodebookQuantizer
from .tiling import tiled

STRIDE = 16  # resolution of the finest latent
LEVEL_FACTOR = 2  # each coarser level halves the resolution
TILED_ABOVE = 1 << 22  # images of more pixels run the analysis and synthesis transforms tile by tile
TILE = 1024  # pixels per tile side (a multiple of the latent stride)
ANALYSIS_MARGIN = 192  # pixels of context per side: measured to give exactly the whole-image latents on Kodak
SYNTHESIS_MARGIN = 8  # latent cells of context per side: decoded pixels within 1 level of the whole-image decode


@dataclass(frozen=True)
class McQuicConfig(JSONConfig):
    """Architecture of a McQuic ladder.

    ``groups`` lists ``m`` per quality level (ascending: more groups = more bits and better quality);
    ``codewords`` lists ``k`` per latent scale, finest first.
    """

    channels: int = 64
    latent_channels: int = 128
    groups: tuple[int, ...] = field(default=(1, 2, 4, 8, 16))
    codewords: tuple[int, ...] = field(default=(1024, 512, 256))

    def __post_init__(self) -> None:
        if not self.groups or any(self.latent_channels % m for m in self.groups):
            raise ValueError(f"groups {self.groups} must be non-empty divisors of latent_channels ({self.latent_channels})")

    @classmethod
    def from_dict(cls, d: dict) -> McQuicConfig:
        """:meth:`JSONConfig.from_dict`, with a clear error for McQuic files from before the ladder (one int per file)."""
        for key in ("groups", "codewords"):
            if key in d and not isinstance(d[key], list | tuple):
                raise TypeError(f"{key} must be a list (one entry per level), got {d[key]!r}: weights from before the McQuic ladder")
        return super().from_dict(d)

    @property
    def scales(self) -> int:
        """Number of latent scales."""
        return len(self.codewords)

    @property
    def pad_multiple(self) -> int:
        """Image sides are padded to a multiple of this before encoding."""
        return STRIDE * LEVEL_FACTOR ** (self.scales - 1)

TINY = McQuicConfig(channels=8, latent_channels=16, groups=(2, 4), codewords=(16, 8, 4))
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


class McQuic(ImageCodecModel):
    """The McQuic image codec: encoder, 3-scale multi-codebook quantizer cascade, decoder; one codebook set per quality."""

    def __init__(self, config: McQuicConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or McQuicConfig()
        c = cfg.latent_channels
        self.g_a = _encoder(cfg.channels, c)
        self.g_s = _decoder(cfg.channels, c)
        self.down = nn.ModuleList(ResidualBlockWithStride(c, c, LEVEL_FACTOR) for _ in range(cfg.scales - 1))
        self.up = nn.ModuleList(_upsampler(c) for _ in range(cfg.scales - 1))
        # quantizers[q - 1][s]: quality q, latent scale s (finest first)
        self.quantizers = nn.ModuleList(
            nn.ModuleList(MultiCodebookQuantizer(c, m, k) for k in cfg.codewords) for m in cfg.groups
        )

    @property
    def levels(self) -> int:
        """Number of quality levels (1..levels)."""
        return len(self.config.groups)

    def codebooks(self, level: int) -> nn.ModuleList:
        """The quantizers (one per scale, finest first) of quality ``level`` (1-based)."""
        if not 1 <= level <= self.levels:
            raise ValueError(f"quality level {level} outside 1..{self.levels}")
        return self.quantizers[level - 1]

    def level_meta(self, level: int) -> dict[str, int]:
        """What a file header records about quality ``level``: its codebook groups per latent vector."""
        return {"groups": self.codebooks(level)[0].groups}

    def _analysis(self, x: Tensor) -> Tensor:
        """``g_a(x)``, tile by tile for large images (peak memory of one tile; see :mod:`codec.models.tiling`)."""
        if x.shape[-2] * x.shape[-1] <= TILED_ABOVE:
            return self.g_a(x)
        return tiled(self.g_a, x, Fraction(1, STRIDE), TILE, ANALYSIS_MARGIN)

    def _synthesis(self, y: Tensor) -> Tensor:
        """``g_s(y)`` on a channels-last latent (1.6x faster on CPU: 356 -> 216 ms at Kodak size; outputs equal to
        float rounding), tile by tile for large images."""
        y = y.contiguous(memory_format=torch.channels_last)
        if y.shape[-2] * y.shape[-1] * STRIDE**2 <= TILED_ABOVE:
            return self.g_s(y).contiguous()
        return tiled(self.g_s, y, Fraction(STRIDE), TILE // STRIDE, SYNTHESIS_MARGIN).contiguous()

    def features(self, x: Tensor) -> list[Tensor]:
        """Latents of every scale, finest first.  ``x`` is [B, 3, H, W] in [0, 1], sides divisible by pad_multiple."""
        ys = [self._analysis(x)]
        for down in self.down:
            ys.append(down(ys[-1]))
        return ys

    def _prediction(self, scale: int, coarser: Tensor | None, like: Tensor) -> Tensor:
        """Upsampled reconstruction of the next coarser scale (zero at the coarsest scale)."""
        if coarser is None:
            return torch.zeros_like(like)
        return self.up[scale](coarser)

    def _cascade(
        self, ys: list[Tensor], level: int, on_residual: Callable[[int, Tensor], None] | None = None
    ) -> tuple[Tensor, list[Tensor], Tensor]:
        """Quantize latents ``ys`` coarse to fine at quality ``level``:
        ``(latent reconstruction, indices finest first, summed VQ loss)``.

        ``on_residual(scale, residual)`` is called before each scale is quantized.
        """
        quantizers = self.codebooks(level)
        recon: Tensor | None = None
        indices: list[Tensor] = []
        vq_loss = ys[0].new_zeros(())
        for scale in reversed(range(self.config.scales)):
            pred = self._prediction(scale, recon, ys[scale])
            residual = ys[scale] - pred
            if on_residual is not None:
                on_residual(scale, residual)
            q, idx, loss = quantizers[scale](residual)
            recon = pred + q
            indices.insert(0, idx)
            vq_loss = vq_loss + loss
        return recon, indices, vq_loss

    def forward(self, x: Tensor, level: int) -> dict:
        """Training pass at quality ``level``: ``{"x_hat", "indices" (finest first), "vq_loss"}``."""
        recon, indices, vq_loss = self._cascade(self.features(x), level)
        return {"x_hat": self.g_s(recon), "indices": indices, "vq_loss": vq_loss}

    @torch.no_grad()
    def init_codebooks(self, x: Tensor, fresh: set[tuple[int, int]] | None = None) -> None:
        """Data-dependent initialization: seed codebooks and temperatures from ``x``.

        ``fresh`` names the (level, scale) pairs to seed; default all.
        """
        was_training = self.training
        self.eval()
        parts = [self.features(chunk) for chunk in x.split(64)]  # bounded activation memory for large samples
        ys = [torch.cat(scale) for scale in zip(*parts, strict=True)]
        for level in range(1, self.levels + 1):

            def seed(scale: int, residual: Tensor, level: int = level) -> None:
                if fresh is None or (level, scale) in fresh:
                    self.codebooks(level)[scale].init_from(residual)

            self._cascade(ys, level, seed)
        self.train(was_training)

    @torch.no_grad()
    def encode_indices(self, x: Tensor, level: int, features: list[Tensor] | None = None) -> list[Tensor]:
        """Indices [B, m, h, w] of every scale at quality ``level``, finest first (nearest codewords in eval mode)."""
        return self._cascade(self.features(x) if features is None else features, level)[1]

    def _reconstruct(self, indices: list[Tensor], level: int, finest: int = 0) -> Tensor | None:
        """The latent reconstruction at scale ``finest`` from the codewords of the scales from the coarsest
        down to it (None when ``finest`` is past the coarsest scale)."""
        quantizers = self.codebooks(level)
        recon: Tensor | None = None
        for scale in reversed(range(finest, self.config.scales)):
            q = quantizers[scale].lookup(indices[scale])
            recon = self._prediction(scale, recon, q) + q
        return recon

    @torch.no_grad()
    def decode_indices(self, indices: list[Tensor], level: int) -> Tensor:
        """Reconstruct images [B, 3, H, W] (unclamped) from indices of every scale, finest first."""
        return self._synthesis(self._reconstruct(indices, level))

    @torch.no_grad()
    def finest_prediction(self, features: list[Tensor], indices: list[Tensor], level: int) -> Tensor:
        """What the finest scale's codewords are added to: the upsampled reconstruction of the coarser
        scales' ``indices`` (zero with a single scale); ``features`` gives the finest latent's shape."""
        return self._prediction(0, self._reconstruct(indices, level, 1), features[0])

    @torch.no_grad()
    def choose_indices(self, features: list[Tensor], level: int, choose: Callable[[int, Tensor, tuple[int, int]], Tensor]) -> list[Tensor]:
        """Indices of every scale (finest first, each [1, m, h, w]) picked by ``choose`` instead of the nearest codeword.

        Coarse to fine, ``choose(scale, distances, (h, w))`` gets the squared distances [m, h*w, k] between
        the scale's residual and every codeword and returns indices [m, h*w] (an encoder's rate-distortion
        choice, e.g. video's temporal prior); finer scales quantize what the chosen codewords leave.
        """
        quantizers = self.codebooks(level)
        recon: Tensor | None = None
        indices: list[Tensor] = []
        for scale in reversed(range(self.config.scales)):
            pred = self._prediction(scale, recon, features[scale])
            residual = features[scale] - pred
            quantizer = quantizers[scale]
            h, w = residual.shape[-2:]
            idx = choose(scale, quantizer.distances(residual), (h, w))
            indices.insert(0, idx.reshape(1, quantizer.groups, h, w))
            recon = pred + quantizer.lookup(indices[0])
        return indices

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Index grid (h, w) of every scale, finest first, for a padded image of the given size."""
        shapes = []
        h, w = height // STRIDE, width // STRIDE
        for _ in range(self.config.scales):
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
        return self.config.scales

    @torch.no_grad()
    def compress(self, x: Tensor, level: int | None = None, features: list[Tensor] | None = None) -> list[bytes]:
        """Entropy-code one padded image [1, 3, H, W] at quality ``level``: one byte string per scale, finest first.

        ``features`` (from :meth:`features`) skips the encoder when several levels code the same image.
        """
        if x.shape[0] != 1:
            raise ValueError("compress takes a single image")
        return self.compress_indices(self.encode_indices(x, level, features), level)

    def compress_indices(self, indices: list[Tensor], level: int) -> list[bytes]:
        """Entropy-code the indices of one image (every scale, finest first, each [1, m, h, w]) at quality ``level``."""
        return [
            categorical.encode(idx[0].flatten(1).cpu().numpy(), quantizer.freq.cpu().numpy())
            for idx, quantizer in zip(indices, self.codebooks(level), strict=True)
        ]

    @torch.no_grad()
    def decompress(self, strings: list[bytes], height: int, width: int, level: int | None = None) -> Tensor:
        """Decode the byte strings of :meth:`compress` to an image [1, 3, height, width] in [0, 1]."""
        if len(strings) != self.config.scales:
            raise ValueError(f"expected {self.config.scales} streams, got {len(strings)}")
        return self.decode_indices(self.decompress_indices(strings, level, self.latent_shapes(height, width)), level).clamp_(0, 1)

    def decompress_indices(self, strings: list[bytes], level: int, shapes: list[tuple[int, int]]) -> list[Tensor]:
        """Inverse of :meth:`compress_indices`: indices of every scale (finest first, each [1, m, h, w]) on the grids ``shapes``."""
        indices = []
        for data, quantizer, (h, w) in zip(strings, self.codebooks(level), shapes, strict=True):
            sym = categorical.decode(data, quantizer.freq.cpu().numpy(), h * w)
            indices.append(torch.from_numpy(sym).reshape(1, quantizer.groups, h, w))
        return indices

    def update(self) -> None:
        """Freeze every codebook's usage statistics into the integer tables the coder uses."""
        for level in self.quantizers:
            for quantizer in level:
                quantizer.update()


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad [B, C, H, W] on the bottom/right so that H and W are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")
