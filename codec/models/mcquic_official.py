"""The official McQuic network (xiaosu-zhu/McQuic, tag ``r0.1.17``), to code with its published weights.

The published checkpoint ``qp_2_msssim_8e954998.mcquic`` is ``torch.save({"model": state_dict,
"config": Config.serialize(), "version": "0.1.x"})`` of the official ``Compressor(channel=128, m=2,
k=[8192, 2048, 512])``.  This module re-implements that network so that its parameter names and
shapes are the official ones, and loads such files safely (:func:`load_official`:
``torch.load(weights_only=True)``; the config is a plain dict, so nothing but tensors and containers
is ever unpickled).  Our own McQuic (:mod:`codec.models.mcquic`) has a different topology.

Official layout, as read from the r0.1.17 sources (``mcquic/modules/compressor.py``,
``mcquic/modules/quantizer.py``, ``mcquic/nn/*``, ``mcquic/demo.py``):

* Input: RGB in [0, 1] mapped to [-1, 1] (``(x - 0.5) * 2``), reflect-padded to a multiple of 128,
  centred (``AlignedPadding``); the reconstruction is cropped back from the centre and turned into
  8-bit pixels by ``floor(clamp((y + 1) / 2 * (256 - 1e-3), 0, 255))`` (``DeTransform``).
* ``_encoder`` (to 1/8): conv3x3/2, residual, residual/2, attention, residual, residual/2, residual.
* ``_quantizer`` with one encoder and one decoder per level, finest first.  Level ``l`` encoder:
  ``z = _latentStageEncoder(x)`` (a further /2: latents at 1/16, 1/32, 1/64), codes = nearest
  codewords (argmin of squared distance, per group of ``channel // m`` channels) of
  ``_quantizationHead(z)``, and the next level's input is ``_latentHead(z) - codebook[codes]``
  (no ``_latentHead`` at the last level).  Decoding runs coarse to fine:
  ``_restoreHead(_dequantizationHead(codebook[codes]) + _sideHead(previous))`` (no ``_sideHead``
  at the coarsest level), each restore head doubling the resolution, back to 1/8.
* ``_decoder`` (to full size): residual, residual x2 (pixel shuffle), attention, residual,
  residual x2, residual, conv3x3 + pixel shuffle to 3 channels.
* Blocks: SiLU activations, 3x3 convolutions with reflect padding, GDN after strided convolutions
  and inverse GDN after pixel-shuffle ones, attention = ``x + main(x) * sigmoid(side(x))``.
* ``_quantizer._entropyCoder._freqEMA.{l}`` [m, k]: codeword usage counts (the only prior).

The official state dict holds each level's codebook three times (one shared parameter reachable as
``_quantizer._encoders.{l}._quantizer._codebook``, ``..._encoders.{l}._dequantizer._codebook`` and
``..._decoders.{l}._dequantizer._codebook``).  Here it is held once, under the first name; the
loader checks the other two are identical and drops them.  Our frozen integer coding tables are
extra buffers ``tables.{l}``, computed from ``_freqEMA`` by :meth:`McQuicOfficial.update`; indices
are coded with :mod:`codec.entropy.categorical` (our stream format, not the official ``.mcq``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import check_network_tensors, read_official_state_dict, save_weights, tensor_shape
from ..entropy import categorical
from ..entropy.tables import TOTAL, frequencies_to_table
from ..errors import ModelError
from . import MCQUIC_OFFICIAL_MODEL
from .base import ImageCodecModel, require_one_rate
from .config import JSONConfig

MODEL_NAME = MCQUIC_OFFICIAL_MODEL  # as recorded in file headers
PAD_BASE = 128  # official AlignedPadding base
ENCODER_STRIDE = 8  # resolution of the encoder output; every level halves it again
EPS = 1e-6  # official Consts.Eps
DETRANSFORM_SCALE = 256.0 - 1e-3  # official DeTransform: [0, 1] -> floor(x * (256 - 1e-3))
TABLE_PREFIX = "tables."
DISTANCE_CHUNK_BYTES = 64 << 20  # memory bound of one block of codeword distances


@dataclass(frozen=True)
class OfficialConfig(JSONConfig):
    """The official ``Compressor`` parameters: latent ``channel``s, ``m`` codebooks per level, ``k`` per level (finest first)."""

    channel: int = 128
    m: int = 2
    k: tuple[int, ...] = field(default=(8192, 2048, 512))

    def __post_init__(self) -> None:
        if self.channel < 1 or self.m < 1 or self.channel % self.m:
            raise ValueError(f"channel ({self.channel}) must be a positive multiple of m ({self.m})")
        if not self.k or any(int(k) < 1 or int(k) > TOTAL for k in self.k):
            raise ValueError(f"k must be a non-empty list of codebook sizes in 1..{TOTAL}, got {list(self.k)}")

    @property
    def levels(self) -> int:
        """Number of latent scales."""
        return len(self.k)

    @property
    def dim(self) -> int:
        """Channels per codebook group."""
        return self.channel // self.m

FULL = OfficialConfig()
"""The configuration of the published ``qp_2_msssim`` checkpoint."""

TINY = OfficialConfig(channel=8, m=2, k=(16, 8, 4))
"""A configuration that runs in milliseconds (tests)."""


# ---------------------------------------------------------------------------------------------
# Layers (names of attributes and Sequential indices are those of the official modules)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with reflect padding (official ``conv3x3``)."""
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, padding_mode="reflect")


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    """1x1 convolution (official ``conv1x1``)."""
    return nn.Conv2d(cin, cout, kernel_size=1)


def shuffle3x3(cin: int, cout: int, r: int = 2) -> nn.Sequential:
    """3x3 reflect-padded convolution to ``cout * r**2`` channels, then ``PixelShuffle(r)`` (official ``pixelShuffle3x3``)."""
    return nn.Sequential(nn.Conv2d(cin, cout * r * r, kernel_size=3, padding=1, padding_mode="reflect"), nn.PixelShuffle(r))


class LowerBound(nn.Module):
    """Holds the lower bound ``bound`` [1] (a saved buffer) and applies ``max(x, bound)``."""

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))

    def forward(self, x: Tensor) -> Tensor:
        """``max(x, bound)`` elementwise."""
        return torch.max(x, self.bound)


class NonNegative(nn.Module):
    """Reparametrization ``max(x, sqrt(minimum + eps^2))^2 - eps^2`` with saved buffers ``eps`` and ``lowerBound.bound``."""

    def __init__(self, minimum: float = 0.0, eps: float = EPS) -> None:
        super().__init__()
        self.register_buffer("eps", torch.tensor([eps**2]))
        self.lowerBound = LowerBound((minimum + eps**2) ** 0.5)

    def init(self, x: Tensor) -> Tensor:
        """The parameter value whose reparametrization is ``x`` (for initialization)."""
        return torch.sqrt(torch.max(x + self.eps, self.eps))

    def forward(self, x: Tensor) -> Tensor:
        """The non-negative value of parameter ``x``."""
        return self.lowerBound(x) ** 2 - self.eps


class GDN(nn.Module):
    """Generalized divisive normalization ``x / sqrt(beta + gamma * x^2)`` (``inverse``: times the square root)."""

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_reparam = NonNegative(minimum=1e-6)
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma_reparam = NonNegative()
        self.gamma = nn.Parameter(self.gamma_reparam.init(0.1 * torch.eye(channels)))

    def forward(self, x: Tensor) -> Tensor:
        """Normalize [B, C, H, W] across channels."""
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma)[..., None, None]
        norm = F.conv2d(x**2, gamma, beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


class Residual(nn.Module):
    """``_branch(x) + (_skip(x) or x)``: the official residual block shell."""

    def __init__(self, branch: list[nn.Module], skip: nn.Module | None) -> None:
        super().__init__()
        self._branch = nn.Sequential(*branch)
        self._skip = skip

    def forward(self, x: Tensor) -> Tensor:
        """Branch output plus the (possibly transformed) input."""
        identity = x if self._skip is None else self._skip(x)
        return self._branch(x) + identity


def residual(c: int) -> Residual:
    """SiLU, conv3x3, SiLU, conv3x3, identity skip (official ``ResidualBlock`` with equal channels)."""
    return Residual([nn.SiLU(), conv3x3(c, c), nn.SiLU(), conv3x3(c, c)], None)


def residual_down(c: int) -> Residual:
    """SiLU, conv3x3/2, GDN, conv3x3; skip conv3x3/2 (official ``ResidualBlockWithStride``)."""
    return Residual([nn.SiLU(), conv3x3(c, c, 2), GDN(c), conv3x3(c, c)], conv3x3(c, c, 2))


def residual_up(c: int) -> Residual:
    """SiLU, shuffle3x3 x2, inverse GDN, conv3x3; skip shuffle3x3 x2 (official ``ResidualBlockShuffle``)."""
    return Residual([nn.SiLU(), shuffle3x3(c, c), GDN(c, inverse=True), conv3x3(c, c)], shuffle3x3(c, c))


class Attention(nn.Module):
    """``x + main(x) * sigmoid(side(x))`` with three residual blocks per branch (official ``AttentionBlock``)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self._mainBranch = nn.Sequential(residual(c), residual(c), residual(c))
        self._sideBranch = nn.Sequential(residual(c), residual(c), residual(c), conv1x1(c, c))

    def forward(self, x: Tensor) -> Tensor:
        """Gate the main branch by the side branch and add the input."""
        return self._mainBranch(x) * torch.sigmoid(self._sideBranch(x)) + x


def encoder(c: int) -> nn.Sequential:
    """Image [B, 3, H, W] in [-1, 1] -> latent [B, c, H/8, W/8] (official ``Compressor._encoder``)."""
    return nn.Sequential(conv3x3(3, c, 2), residual(c), residual_down(c), Attention(c), residual(c), residual_down(c), residual(c))


def decoder(c: int) -> nn.Sequential:
    """Latent [B, c, H/8, W/8] -> image [B, 3, H, W] in about [-1, 1] (official ``Compressor._decoder``)."""
    return nn.Sequential(residual(c), residual_up(c), Attention(c), residual(c), residual_up(c), residual(c), shuffle3x3(c, 3))


# ---------------------------------------------------------------------------------------------
# Quantizer


class Codebooks(nn.Module):
    """``m`` codebooks of ``k`` codewords (official ``_multiCodebookQuantization``: ``_codebook``, ``_temperature``, ``_bound``).

    The temperature and bound only served training (Gumbel sampling); coding takes the nearest codeword.
    """

    def __init__(self, m: int, k: int, d: int) -> None:
        super().__init__()
        self._codebook = nn.Parameter(torch.randn(m, k, d) * math.sqrt(2 / (5 * d)))
        self._temperature = nn.Parameter(torch.ones(m, 1, 1, 1))
        self._bound = LowerBound(EPS)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(m, k, d)``."""
        m, k, d = self._codebook.shape
        return m, k, d

    def _nearest_rows(self, x: Tensor) -> Tensor:
        """Codes [n, m, h, w] of latent rows [n, m*d, h, w]: argmin over k of ``|x|^2 + |c|^2 - 2 x.c`` (official formula)."""
        n, _, h, w = x.shape
        m, _, d = self.shape
        x = x.reshape(n, m, d, h, w)
        x2 = (x**2).sum(2, keepdim=True)
        c2 = (self._codebook**2).sum(-1, keepdim=True)[..., None]
        inter = torch.einsum("nmdhw,mkd->nmkhw", x, self._codebook)
        return (x2 + c2 - 2 * inter).argmin(2)

    def nearest(self, x: Tensor) -> Tensor:
        """Codes [n, m, h, w] of a latent [n, m*d, h, w], computed in row blocks of bounded memory."""
        n, _, h, w = x.shape
        m, k, _ = self.shape
        rows = max(1, DISTANCE_CHUNK_BYTES // max(1, 4 * n * m * k * w))
        return torch.cat([self._nearest_rows(x[:, :, i : i + rows]) for i in range(0, h, rows)], dim=2)

    def lookup(self, codes: Tensor) -> Tensor:
        """Latent [n, m*d, h, w] of codes [n, m, h, w] (codeword of group ``i`` in channels ``i*d .. (i+1)*d``).

        Gathered as [n, h, w, m*d] and returned as a permuted view (channels-last strides), as the
        official code does: the convolutions that follow then run the same kernels, bit for bit.
        """
        n, _, h, w = codes.shape
        m, _, _ = self.shape
        codes = codes.permute(0, 2, 3, 1)
        groups = torch.arange(m, device=codes.device).expand_as(codes)
        return self._codebook[groups, codes].reshape(n, h, w, -1).permute(0, 3, 1, 2)


class LevelEncoder(nn.Module):
    """One level of the official ``_quantizerEncoder`` (its ``_dequantizer`` is the same codebook, not stored twice)."""

    def __init__(self, c: int, m: int, k: int, last: bool) -> None:
        super().__init__()
        self._quantizer = Codebooks(m, k, c // m)
        self._latentStageEncoder = nn.Sequential(residual_down(c), residual(c), Attention(c))
        self._quantizationHead = nn.Sequential(residual(c), Attention(c), conv3x3(c, c))
        self._latentHead = None if last else nn.Sequential(residual(c), Attention(c), conv3x3(c, c))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(codes [n, m, h/2, w/2], residual input of the next level or None at the last level)``."""
        z = self._latentStageEncoder(x)
        codes = self._quantizer.nearest(self._quantizationHead(z))
        if self._latentHead is None:
            return codes, None
        return codes, self._latentHead(z) - self._quantizer.lookup(codes)


class LevelDecoder(nn.Module):
    """One level of the official ``_quantizerDecoder`` (the codebook lookup is done by the caller)."""

    def __init__(self, c: int, coarsest: bool) -> None:
        super().__init__()
        self._dequantizationHead = nn.Sequential(Attention(c), conv3x3(c, c), residual(c))
        self._sideHead = None if coarsest else nn.Sequential(Attention(c), conv3x3(c, c), residual(c))
        self._restoreHead = nn.Sequential(Attention(c), residual(c), residual_up(c))

    def forward(self, q: Tensor, coarser: Tensor | None) -> Tensor:
        """Restored latent at twice the resolution of the dequantized codes ``q``, given the coarser level's output."""
        x = self._dequantizationHead(q)
        if self._sideHead is not None:
            x = x + self._sideHead(coarser)
        return self._restoreHead(x)


class UsageCounts(nn.Module):
    """The official ``EntropyCoder``'s state: ``_freqEMA.{l}`` [m, k], the EMA of codeword usage counts."""

    def __init__(self, m: int, k: tuple[int, ...]) -> None:
        super().__init__()
        self._freqEMA = nn.ParameterList(nn.Parameter(torch.ones(m, ki), requires_grad=False) for ki in k)


class Quantizer(nn.Module):
    """The official ``UMGMQuantizer``: per-level encoders and decoders (finest first) and usage counts."""

    def __init__(self, config: OfficialConfig) -> None:
        super().__init__()
        c, m, last = config.channel, config.m, config.levels - 1
        self._entropyCoder = UsageCounts(m, config.k)
        self._encoders = nn.ModuleList(LevelEncoder(c, m, k, i == last) for i, k in enumerate(config.k))
        # Every level but the coarsest takes side information from the coarser level's output.
        self._decoders = nn.ModuleList(LevelDecoder(c, i == last) for i in range(config.levels))

    def encode(self, y: Tensor) -> list[Tensor]:
        """Codes [n, m, h, w] of every level, finest first, of an encoder output ``y``."""
        codes = []
        x: Tensor | None = y
        for level in self._encoders:
            code, x = level(x)
            codes.append(code)
        return codes

    def decode(self, codes: list[Tensor]) -> Tensor:
        """Restored encoder-resolution latent from the codes of every level (finest first), coarse to fine."""
        restored: Tensor | None = None
        for level in reversed(range(len(codes))):
            q = self._encoders[level]._quantizer.lookup(codes[level])
            restored = self._decoders[level](q, restored)
        if restored is None:
            raise ValueError("no codes to decode")
        return restored


# ---------------------------------------------------------------------------------------------
# Padding and pixel conversion


def padded_size(size: int) -> int:
    """``size`` rounded up to a multiple of :data:`PAD_BASE`."""
    return size + (-size) % PAD_BASE


def _split(total: int) -> tuple[int, int]:
    """Padding (or cropping) before and after, as the official ``AlignedPadding``: ``(total // 2, rest)``."""
    return total // 2, total - total // 2


def aligned_pad(x: Tensor) -> Tensor:
    """Centre-pad [B, C, H, W] with reflection to multiples of :data:`PAD_BASE` (official ``AlignedPadding``).

    Where a side is too short for one reflection (pad >= size), reflection is repeated, and a side of
    one pixel is replicated; the official code fails on such images, so they have no reference result.
    """
    h, w = x.shape[-2:]
    top, bottom = _split(padded_size(h) - h)
    left, right = _split(padded_size(w) - w)
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        step = [min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)]
        if not any(step):  # a 1-pixel side: reflection is impossible
            step = [left, right, top, bottom]
            return F.pad(x, step, mode="replicate")
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = left - step[0], right - step[1], top - step[2], bottom - step[3]
    return x


def center_crop(x: Tensor, height: int, width: int) -> Tensor:
    """Inverse of :func:`aligned_pad`: the centred ``height`` x ``width`` window."""
    top = _split(x.shape[-2] - height)[0]
    left = _split(x.shape[-1] - width)[0]
    return x[..., top : top + height, left : left + width]


def to_network(x: Tensor) -> Tensor:
    """Pixels in [0, 1] -> the network's input range [-1, 1] (official ``(x - 0.5) * 2``)."""
    return (x - 0.5) * 2


def to_pixels(y: Tensor) -> Tensor:
    """Network output -> [0, 1] values on the 8-bit grid, exactly the official ``DeTransform`` pixels divided by 255."""
    return ((y + 1) / 2 * DETRANSFORM_SCALE).clamp(0.0, 255.0).floor().div(255.0)


# ---------------------------------------------------------------------------------------------
# The codec


class McQuicOfficial(ImageCodecModel):
    """The official r0.1.17 McQuic ``Compressor`` with our coding interface (``compress``/``decompress``)."""

    def __init__(self, config: OfficialConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or OfficialConfig()
        self._encoder = encoder(cfg.channel)
        self._decoder = decoder(cfg.channel)
        self._quantizer = Quantizer(cfg)
        self.tables = nn.Module()
        for level, k in enumerate(cfg.k):
            self.tables.register_buffer(str(level), torch.zeros(cfg.m, k, dtype=torch.int32))
        if self.usage(0).device.type != "meta":  # a meta-device model only describes shapes
            self.update()

    @property
    def pad_multiple(self) -> int:
        """1: the API must not pad; the model pads itself (centred reflection to 128, as the official code)."""
        return 1

    @property
    def stream_count(self) -> int:
        """Number of entropy-coded streams per image (one per latent scale)."""
        return self.config.levels

    def table(self, level: int) -> Tensor:
        """The frozen integer coding table [m, k] of ``level``."""
        return getattr(self.tables, str(level))

    def usage(self, level: int) -> Tensor:
        """The official usage counts ``_freqEMA`` [m, k] of ``level``."""
        return self._quantizer._entropyCoder._freqEMA[level]

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Code grid (h, w) of every level, finest first, for an (unpadded) image of the given size."""
        h, w = padded_size(height), padded_size(width)
        return [(h // (ENCODER_STRIDE << (lv + 1)), w // (ENCODER_STRIDE << (lv + 1))) for lv in range(self.config.levels)]

    @torch.no_grad()
    def encode_indices(self, x: Tensor) -> list[Tensor]:
        """Codes [B, m, h, w] of every level, finest first, of images [B, 3, H, W] in [0, 1] (any size)."""
        return self._quantizer.encode(self._encoder(aligned_pad(to_network(x))))

    @torch.no_grad()
    def decode_indices(self, codes: list[Tensor], height: int, width: int) -> Tensor:
        """Images [B, 3, height, width] in [0, 1] (on the 8-bit grid) from the codes of every level, finest first."""
        y = self._decoder(self._quantizer.decode(codes))
        return to_pixels(center_crop(y, height, width))

    @torch.no_grad()
    def forward(self, x: Tensor) -> dict:
        """The official test-time path without entropy coding: ``{"x_hat": [B, 3, H, W] in [0, 1], "indices"}``."""
        codes = self.encode_indices(x)
        return {"x_hat": self.decode_indices(codes, x.shape[-2], x.shape[-1]), "indices": codes}

    @torch.no_grad()
    def compress(self, x: Tensor, level: int | None = None, features: None = None) -> list[bytes]:
        """Entropy-code one image [1, 3, H, W] in [0, 1]: one byte string per latent level, finest first (one rate)."""
        require_one_rate(level, "the official McQuic weights")
        if x.shape[0] != 1:
            raise ValueError("compress takes a single image")
        return [
            categorical.encode(code[0].flatten(1).cpu().numpy(), self.table(level).cpu().numpy())
            for level, code in enumerate(self.encode_indices(x))
        ]

    @torch.no_grad()
    def decompress(self, strings: list[bytes], height: int, width: int, level: int | None = None) -> Tensor:
        """Decode the byte strings of :meth:`compress` to an image [1, 3, height, width] in [0, 1]."""
        require_one_rate(level, "the official McQuic weights")
        if len(strings) != self.config.levels:
            raise ValueError(f"expected {self.config.levels} streams, got {len(strings)}")
        codes = []
        for level, (data, (h, w)) in enumerate(zip(strings, self.latent_shapes(height, width), strict=True)):
            sym = categorical.decode(data, self.table(level).cpu().numpy(), h * w)
            codes.append(torch.from_numpy(sym).reshape(1, self.config.m, h, w).to(self.table(level).device))
        return self.decode_indices(codes, height, width)

    def update(self) -> None:
        """Freeze the official usage counts ``_freqEMA`` into the integer tables the coder uses."""
        for level in range(self.config.levels):
            self.table(level).copy_(frequencies_to_table(self.usage(level)))

    def check(self) -> None:
        """Raise ``ValueError`` unless usage counts are finite and non-negative and the tables are frozen (run on load)."""
        for level in range(self.config.levels):
            usage = self.usage(level)
            if not bool(torch.isfinite(usage).all()) or bool((usage < 0).any()):
                raise ValueError(f"level {level}: usage counts _freqEMA are not finite and non-negative")
            t = self.table(level).long()
            if bool((t < 1).any()) or bool((t.sum(-1) != TOTAL).any()):
                raise ValueError(f"level {level}: coding table is not frozen (run update())")


def parameter_count(config: OfficialConfig) -> int:
    """Number of learned parameters of the official network (each codebook once; no usage counts), without allocating it."""
    with torch.device("meta"):
        model = McQuicOfficial(config)
    return sum(p.numel() for name, p in model.named_parameters() if "_freqEMA" not in name)


# ---------------------------------------------------------------------------------------------
# Official checkpoint files


def duplicate_codebook_keys(level: int) -> tuple[str, str]:
    """The two official names under which level ``level``'s codebook is saved again."""
    return f"_quantizer._encoders.{level}._dequantizer._codebook", f"_quantizer._decoders.{level}._dequantizer._codebook"


def _codebook_key(level: int) -> str:
    return f"_quantizer._encoders.{level}._quantizer._codebook"


def official_state_dict(model: McQuicOfficial) -> dict[str, Tensor]:
    """``model``'s tensors under the official names (duplicate codebook keys included, our tables dropped)."""
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith(TABLE_PREFIX)}
    for level in range(model.config.levels):
        for key in duplicate_codebook_keys(level):
            sd[key] = sd[_codebook_key(level)]
    return sd


def _shape(sd: dict[str, Tensor], key: str, dims: int) -> tuple[int, ...]:
    return tensor_shape(sd, key, dims, "an official McQuic (r0.1.17) checkpoint")


def infer_config(sd: dict[str, Tensor]) -> OfficialConfig:
    """The :class:`OfficialConfig` whose tensor shapes are those of the official state dict ``sd``."""
    channel = _shape(sd, "_encoder.0.weight", 4)[0]
    levels = 0
    while _codebook_key(levels) in sd:
        levels += 1
    if levels == 0:
        raise ModelError(f"checkpoint lacks {_codebook_key(0)!r}; not an official McQuic (r0.1.17) checkpoint")
    shapes = [_shape(sd, _codebook_key(level), 3) for level in range(levels)]
    m, d = shapes[0][0], shapes[0][2]
    if any(s[0] != m or s[2] != d for s in shapes) or m * d != channel:
        raise ModelError(f"codebook shapes {[list(s) for s in shapes]} do not fit {channel} latent channels")
    try:
        return OfficialConfig(channel=channel, m=m, k=tuple(s[1] for s in shapes))
    except ValueError as exc:
        raise ModelError(f"checkpoint architecture unsupported: {exc}") from None


def _config_params(config: object) -> dict | None:
    """``model.params`` of a serialized official config (a plain dict), or None when absent."""
    if not isinstance(config, dict):
        return None
    model = config.get("model")
    params = model.get("params") if isinstance(model, dict) else None
    return params if isinstance(params, dict) else None


def _config_target(config: object) -> str | None:
    """``train.target`` (``"MsSSIM"`` or ``"PSNR"``) of a serialized official config, or None."""
    train = config.get("train") if isinstance(config, dict) else None
    target = train.get("target") if isinstance(train, dict) else None
    return target if isinstance(target, str) else None


def _check_config(inferred: OfficialConfig, params: dict | None, path: Path) -> None:
    """One-line error if the checkpoint's own config disagrees with its tensor shapes."""
    if params is None:
        return
    stated = {"channel": params.get("channel"), "m": params.get("m"), "k": params.get("k")}
    if isinstance(stated["k"], int):
        stated["k"] = [stated["k"]]
    actual = inferred.to_dict()
    if any(stated[key] is not None and stated[key] != actual[key] for key in actual):
        raise ModelError(f"{path}: config says {stated} but the tensors have {actual}")


def _drop_duplicates(sd: dict[str, Tensor], levels: int, path: Path) -> dict[str, Tensor]:
    """``sd`` without the duplicate codebook keys, after checking they equal the kept codebook."""
    sd = dict(sd)
    for level in range(levels):
        kept = sd[_codebook_key(level)]
        for key in duplicate_codebook_keys(level):
            copy = sd.pop(key, None)
            if copy is not None and (copy.shape != kept.shape or not torch.equal(copy, kept)):
                raise ModelError(f"{path}: {key!r} differs from {_codebook_key(level)!r} (they are one shared codebook)")
    return sd


def load_official(path: str | os.PathLike) -> tuple[McQuicOfficial, dict]:
    """An official ``.mcquic`` checkpoint as an eval-mode :class:`McQuicOfficial` with frozen tables, and its metadata.

    Metadata: ``config`` (our :class:`OfficialConfig` as a dict), ``version`` (the file's McQuic
    version or None), ``target`` (its training target, e.g. ``"MsSSIM"``, or None) and ``source``
    (the file name).  Every failure is a one-line :class:`ModelError`.
    """
    path = Path(path)
    sd, obj = read_official_state_dict(path, "an official McQuic checkpoint", lambda obj: obj.get("model"), "'model' state dict")
    config = infer_config(sd)
    _check_config(config, _config_params(obj.get("config")), path)
    sd = _drop_duplicates(sd, config.levels, path)
    with torch.device("meta"):
        expected = {k: v for k, v in McQuicOfficial(config).state_dict().items() if not k.startswith(TABLE_PREFIX)}
    check_network_tensors(expected, sd, f"checkpoint {path}")
    model = McQuicOfficial(config)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    model.update()
    try:
        model.check()
    except ValueError as exc:
        raise ModelError(f"checkpoint {path}: {exc}") from None
    version, target = obj.get("version"), _config_target(obj.get("config"))
    meta = {
        "config": config.to_dict(),
        "version": version if isinstance(version, str) else None,
        "target": target,
        "source": path.name,
    }
    return model.eval(), meta


def convert(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Write an official ``.mcquic`` checkpoint as our safetensors model file; returns its weights hash.

    Metadata ``model`` = ``"mcquic-official"``, ``config`` = :class:`OfficialConfig` as JSON, plus the
    official ``version`` and the ``source`` file name.  The file loads with ``--weights`` and codes
    exactly like the ``.mcquic`` file (same weights hash).
    """
    model, meta = load_official(src)
    extra = {k: meta[k] for k in ("version", "target") if meta[k] is not None}
    return save_weights(model, dst, {"model": MODEL_NAME, "config": meta["config"], "source": meta["source"], **extra})
