"""The official CRA5 VAEformer (taohan10200/CRA5), to code ERA5 with its published weights.

The published checkpoint ``cra5_268v_300k.pth`` is a flat state dict of the official ``VAEformer(268)``
(``cra5/models/vaeformer/vaeformer.py``), every key prefixed ``backbone.``, plus the KL loss's
``kl_loss.logvar``.  This module re-implements that network so that its parameter names and shapes
are the official ones and loads such files safely (:func:`load_official`: ``weights_only``; anything
else pickled is refused, never unpickled).  Our own VAEformer (:mod:`codec.models.vaeformer`) is a
different network.

Official layout, read from upstream commit ``2b9e06d`` (``vaeformer.py``, ``vit_nlc.py``,
``modules/distributions.py``, ``compressai/entropy_models``):

* Input: 268 normalized ERA5 channels x 721 x 1440 (:mod:`codec.climate.cra5_layout`).
* ``g_a`` (``vit_nlc.Encoder``, ViT-L): ``patch_embed.proj`` convolution (kernel 11 x 10, stride 10) to
  72 x 144 tokens, plus the learned absolute ``pos_embed``; ``depth // 2 + 1`` pre-norm blocks
  (LayerNorm eps 1e-6, multi-head attention with qkv bias, GELU MLP of ratio 4).  Block ``i`` attends
  within windows ``windows[min(i % interval, 2)]`` (zero-padded at the bottom and right, no mask, no
  shift), or globally when ``(i + 1) % interval == 0``; the extra last block repeats the settings of the
  one before it.  The last two blocks both read the output of the third-last: their outputs, the
  posterior's mean and log-variance halves, are concatenated along channels.
* ``quant_conv`` (1 x 1, 2048 -> 512) gives the moments; the latent ``y`` is their first 256 channels
  (the mean, ``DiagonalGaussianDistribution.mode()``), the last 256 the log-variance (clamped to
  [-30, 20]).
* ``h_a`` (``HyperpriorEncoder``): patch convolution 4 x 4 / 4 to 18 x 36 tokens, ``pos_embed``,
  ``prior_depth // 2`` global blocks (360 wide, 5 heads), ``quan_mlp`` to the 256-channel hyper-latent
  ``z``.  ``entropy_bottleneck`` (CompressAI factorized prior): ``z_hat = round(z - median) + median``.
* ``h_s`` (``HyperpriorDecoder``): ``post_quan_mlp``, global blocks, ``norm``, a linear ``final`` to
  ``(p1 p2 c)`` per token, un-patched to 512 x 72 x 144 and split into scales (first half) and means.
  ``gaussian_conditional``: ``y_hat = round(y - means) + means``.
* ``g_s`` (``vit_nlc.Decoder``): ``post_quant_conv`` (1 x 1, 256 -> 1024), ``depth - depth // 2`` blocks
  (same window rule, counted from ``depth // 2``), ``norm``, ``final`` transposed convolution (11 x 10,
  stride 10, no bias) back to 268 x 721 x 1440.

Attention is computed as upstream's float32 "math" path (``softmax((q * scale) @ k^T) @ v``); upstream
switches global blocks to float16 FlashAttention when ``flash_attn`` is installed, which this module
does not reproduce.  Upstream builds the transposed-convolution output only for 721 x 1440 inputs
(other sizes get a linear un-patching no published file has); here the transposed convolution is used
at every size, so :data:`TINY` is the published network in miniature.

Key names are the official ones after stripping ``backbone.``, except the entropy bottleneck's, which
follow CompressAI >= 1.2: ``_matrix{i}`` -> ``matrices.{i}``, ``_bias{i}`` -> ``biases.{i}``,
``_factor{i}`` -> ``factors.{i}``.  CompressAI's coder state (``_offset``, ``_quantized_cdf``,
``_cdf_length`` of both entropy models and ``gaussian_conditional.scale_table``, whose shapes depend
on whether ``update()`` ran) is not kept: bytes are coded with :mod:`codec.entropy` through our own
frozen tables, the buffer ``z_table`` (hyper-latent, per channel, with an escape symbol) and
:func:`codec.entropy.gaussian.default_tables` (latent; CompressAI's 64 scales).  The streams are ours;
the reconstructions are the official ones.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import check_network_tensors, count_submodules, read_official_state_dict, save_weights, tensor_shape
from ..entropy import gaussian
from ..entropy.tables import TOTAL, frequencies_to_table
from ..errors import ModelError
from . import CRA5_MODEL
from ._compressai import EntropyBottleneck, GaussianConditional, entropy_model
from .base import ClimateCodecModel, require_one_rate
from .config import JSONConfig

MODEL_NAME = CRA5_MODEL  # as recorded in file headers
PREFIX = "backbone."  # of every network key in the published file
DROPPED_PREFIX = "kl_loss."  # the training loss's state (``kl_loss.logvar``), not part of the network
CODER_BUFFERS = ("_offset", "_quantized_cdf", "_cdf_length")  # CompressAI's data-dependent coder state
OFFICIAL_EB_NAMES = {"_matrix": "matrices", "_bias": "biases", "_factor": "factors"}
MLP_RATIO = 4
NORM_EPS = 1e-6
LOGVAR_RANGE = (-30.0, 20.0)  # official DiagonalGaussianDistribution clamp
Z_RADIUS = 128  # hyper-latent symbols in [-Z_RADIUS, Z_RADIUS] around the median; others are escaped
ATTENTION_CHUNK_BYTES = 1 << 30  # memory bound of one block of attention scores
WHAT = "an official CRA5 VAEformer checkpoint"


@dataclass(frozen=True)
class OfficialConfig(JSONConfig):
    """The official ``VAEformer`` hyperparameters (``ddconfig`` / ``priorconfig`` of ``model_version == 268``).

    ``depth`` and ``prior_depth`` are the official ``depth`` arguments: the encoders get ``depth // 2``
    blocks (the main one one more), the decoders ``depth - depth // 2``.
    """

    in_channels: int = 268
    image_size: tuple[int, int] = (721, 1440)
    patch_size: tuple[int, int] = (11, 10)
    patch_stride: tuple[int, int] = (10, 10)
    dim: int = 1024
    depth: int = 24
    heads: int = 16
    windows: tuple[tuple[int, int], ...] = ((24, 24), (12, 48), (48, 12))
    interval: int = 4
    latent_channels: int = 256
    prior_patch: tuple[int, int] = (4, 4)
    prior_dim: int = 360
    prior_depth: int = 8
    prior_heads: int = 5
    hyper_channels: int = 256

    def __post_init__(self) -> None:
        sizes = (*self.image_size, *self.patch_size, *self.patch_stride, *self.prior_patch, self.heads, self.prior_heads)
        if min(sizes) < 1 or self.interval < 1 or not self.windows or min(map(min, self.windows)) < 1:
            raise ValueError("sizes, head counts, the interval and windows must be positive")
        if self.depth < 2 or self.prior_depth < 2:
            raise ValueError("depths must be at least 2 (the encoders need a block each)")
        for size, kernel, stride in zip(self.image_size, self.patch_size, self.patch_stride, strict=True):
            if size < stride or (size // stride - 1) * stride + kernel != size:
                patches = f"{list(self.patch_size)} / {list(self.patch_stride)}"
                raise ValueError(f"image {list(self.image_size)} is not tiled by patches {patches}")
        if any(t % p for t, p in zip(self.tokens, self.prior_patch, strict=True)):
            raise ValueError(f"token grid {list(self.tokens)} is not a multiple of the prior patch {list(self.prior_patch)}")
        if self.dim % self.heads or self.prior_dim % self.prior_heads:
            raise ValueError("widths must be multiples of the head counts")

    @property
    def tokens(self) -> tuple[int, int]:
        """The main token grid (72 x 144 for the published model)."""
        return self.image_size[0] // self.patch_stride[0], self.image_size[1] // self.patch_stride[1]

    @property
    def hyper_grid(self) -> tuple[int, int]:
        """The hyper-latent grid (18 x 36 for the published model)."""
        return self.tokens[0] // self.prior_patch[0], self.tokens[1] // self.prior_patch[1]

FULL = OfficialConfig()
"""The configuration of the published ``cra5_268v_300k.pth`` (about 404.7 M parameters)."""

TINY = OfficialConfig(
    in_channels=4,
    image_size=(25, 40),
    patch_size=(5, 4),
    patch_stride=(4, 4),
    dim=16,
    depth=8,
    heads=2,
    windows=((2, 2), (1, 4), (4, 1)),
    latent_channels=6,
    prior_patch=(2, 2),
    prior_dim=16,
    prior_depth=4,
    prior_heads=2,
    hyper_channels=4,
)
"""A configuration that runs in milliseconds (tests): 6 x 10 tokens, padded windows, 3 x 5 hyper-latents."""


# ---------------------------------------------------------------------------------------------
# Transformer (attribute names are those of vit_nlc.py)


def window_of(index: int, windows: tuple[tuple[int, int], ...], interval: int) -> tuple[int, int] | None:
    """The attention window of official block ``index`` (None: global), as ``vit_nlc`` assigns it."""
    if (index + 1) % interval == 0:
        return None
    return windows[min(index % interval, len(windows) - 1)]


def attend(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """``softmax((q * scale) @ k^T) @ v`` for [B, heads, N, d], in blocks of heads of bounded memory."""
    b, heads, n, _ = q.shape
    step = max(1, ATTENTION_CHUNK_BYTES // max(1, 4 * b * n * k.shape[2]))
    blocks = [
        torch.softmax((q[:, i : i + step] * scale) @ k[:, i : i + step].transpose(-2, -1), dim=-1) @ v[:, i : i + step]
        for i in range(0, heads, step)
    ]
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)


class Attention(nn.Module):
    """Multi-head self-attention over all tokens or within windows (official ``Attention`` / ``WindowAttention``)."""

    def __init__(self, dim: int, heads: int, window: tuple[int, int] | None) -> None:
        super().__init__()
        self.heads, self.window, self.scale = heads, window, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def _attend(self, x: Tensor) -> Tensor:
        """Attention among the tokens of each row of [B', N, C]."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(attend(q, k, v, self.scale).transpose(1, 2).reshape(b, n, c))

    def _windowed(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """Attention within windows; the grid is zero-padded at the bottom and right to whole windows."""
        b, _, c = x.shape
        (h, w), (wh, ww) = grid, self.window
        x = F.pad(x.reshape(b, h, w, c), (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        hp, wp = x.shape[1:3]
        x = x.view(b, hp // wh, wh, wp // ww, ww, c).permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, wh * ww, c)
        x = self._attend(x).view(b, hp // wh, wp // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).contiguous().view(b, hp, wp, c)
        return x[:, :h, :w, :].contiguous().view(b, h * w, c)

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """Tokens [B, h*w, C] of an ``h`` x ``w`` grid -> the attention output (before the residual)."""
        return self._attend(x) if self.window is None else self._windowed(x, grid)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` (official ``Mlp``)."""

    def __init__(self, cin: int, hidden: int, cout: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cin, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, cout)

    def forward(self, x: Tensor) -> Tensor:
        """Applied to the last dimension."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (official ``Block``): attention and MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, window: tuple[int, int] | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn = Attention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.mlp = Mlp(dim, dim * MLP_RATIO, dim)

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """Tokens [B, h*w, C] -> tokens."""
        x = x + self.attn(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Patch convolution (official ``PatchEmbed``): [B, C, H, W] -> (tokens [B, h*w, dim], (h, w))."""

    def __init__(self, cin: int, dim: int, kernel: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, kernel_size=kernel, stride=stride)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Patches as a token sequence, row-major, and the token grid."""
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


def _grid_tensor(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """Tokens [B, h*w, C] -> [B, C, h, w] (a channels-last view, as upstream's ``reshape().permute()``)."""
    return tokens.reshape(tokens.shape[0], grid[0], grid[1], tokens.shape[2]).permute(0, 3, 1, 2)


def _tokens(x: Tensor) -> Tensor:
    """[B, C, h, w] -> tokens [B, h*w, C] (a transposed view, as upstream's ``reshape().permute()``)."""
    return x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)


class Encoder(nn.Module):
    """The main encoder ``g_a`` (official ``ViT_Encoder``): fields -> moments [B, 2*dim, h, w] (mean, log-variance halves)."""

    def __init__(self, cfg: OfficialConfig) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(cfg.in_channels, cfg.dim, cfg.patch_size, cfg.patch_stride)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.tokens[0] * cfg.tokens[1], cfg.dim))
        indices = [*range(cfg.depth // 2), cfg.depth // 2 - 1]  # the extra last block repeats the one before
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, window_of(i, cfg.windows, cfg.interval)) for i in indices)

    def forward(self, x: Tensor) -> Tensor:
        """The last two blocks both read the third-last block's output; their outputs are concatenated."""
        t, grid = self.patch_embed(x)
        t = t + self.pos_embed
        for block in self.blocks[:-2]:
            t = block(t, grid)
        t = torch.cat([self.blocks[-2](t, grid), self.blocks[-1](t, grid)], dim=2)
        return _grid_tensor(t, grid)


class Decoder(nn.Module):
    """The main decoder ``g_s`` (official ``ViT_Decoder`` at 721 x 1440): [B, dim, h, w] -> fields [B, C, H, W]."""

    def __init__(self, cfg: OfficialConfig) -> None:
        super().__init__()
        indices = range(cfg.depth // 2, cfg.depth)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, window_of(i, cfg.windows, cfg.interval)) for i in indices)
        self.norm = nn.LayerNorm(cfg.dim, eps=NORM_EPS)
        self.final = nn.ConvTranspose2d(cfg.dim, cfg.in_channels, kernel_size=cfg.patch_size, stride=cfg.patch_stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Blocks, norm, transposed patch convolution."""
        grid = (x.shape[2], x.shape[3])
        t = _tokens(x)
        for block in self.blocks:
            t = block(t, grid)
        return self.final(_grid_tensor(self.norm(t), grid))


def _prior_hidden(dim: int, channels: int) -> int:
    """Hidden width of the prior's latent MLPs: ``int(sqrt(dim // channels)) * channels`` (official formula)."""
    return int(math.sqrt(dim // channels)) * channels


class PriorEncoder(nn.Module):
    """``h_a`` (official ``HyperpriorEncoder``): latent [B, latent, h, w] -> hyper-latent [B, hyper, h/p, w/p]."""

    def __init__(self, cfg: OfficialConfig) -> None:
        super().__init__()
        d, c = cfg.prior_dim, cfg.hyper_channels
        self.patch_embed = PatchEmbed(cfg.latent_channels, d, cfg.prior_patch, cfg.prior_patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.hyper_grid[0] * cfg.hyper_grid[1], d))
        self.blocks = nn.ModuleList(Block(d, cfg.prior_heads, None) for _ in range(cfg.prior_depth // 2))
        self.quan_mlp = Mlp(d, _prior_hidden(d, c), c)

    def forward(self, y: Tensor) -> Tensor:
        """Patch embedding, position, global blocks, MLP to the hyper-latent channels."""
        t, grid = self.patch_embed(y)
        t = t + self.pos_embed
        for block in self.blocks:
            t = block(t, grid)
        return _grid_tensor(self.quan_mlp(t), grid)


class PriorDecoder(nn.Module):
    """``h_s`` (official ``HyperpriorDecoder``): hyper-latent -> (scales, means) [B, latent, h, w]."""

    def __init__(self, cfg: OfficialConfig) -> None:
        super().__init__()
        d, c = cfg.prior_dim, cfg.hyper_channels
        self.patch = cfg.prior_patch
        self.post_quan_mlp = Mlp(c, _prior_hidden(d, c), d)
        self.blocks = nn.ModuleList(Block(d, cfg.prior_heads, None) for _ in range(cfg.prior_depth - cfg.prior_depth // 2))
        self.norm = nn.LayerNorm(d, eps=NORM_EPS)
        self.final = nn.Linear(d, 2 * cfg.latent_channels * self.patch[0] * self.patch[1], bias=False)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Each token's ``final`` output is laid out ``(p1 p2 c)`` and un-patched; channels split scales first."""
        b, _, h, w = z.shape
        t = self.post_quan_mlp(_tokens(z))
        for block in self.blocks:
            t = block(t, (h, w))
        p1, p2 = self.patch
        t = self.final(self.norm(t).view(b, h, w, -1)).reshape(b, h, w, p1, p2, -1)
        params = t.permute(0, 5, 1, 3, 2, 4).reshape(b, -1, h * p1, w * p2)
        scales, means = params.chunk(2, 1)
        return scales, means


def _without_coder_state(module: nn.Module, names: tuple[str, ...]) -> nn.Module:
    """``module`` with CompressAI's data-dependent buffers ``names`` kept out of its state dict."""
    for name in names:
        module.register_buffer(name, getattr(module, name), persistent=False)
    return module


# ---------------------------------------------------------------------------------------------
# The codec


@dataclass(frozen=True)
class _IndexedTables:
    """Per-channel integer tables over ``[-radius, radius]`` plus an escape, as :mod:`codec.entropy.gaussian` reads them."""

    radius: np.ndarray
    freqs: list[np.ndarray]


class VAEformerOfficial(ClimateCodecModel):
    """The official CRA5 ``VAEformer`` with our coding interface (``compress`` / ``decompress``).

    Works on normalized fields [B, in_channels, H, W] of exactly ``config.image_size``
    (:func:`codec.climate.cra5_layout.normalize`); outputs are normalized too.
    """


    def __init__(self, config: OfficialConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or OfficialConfig()
        self.entropy_bottleneck = _without_coder_state(entropy_model(EntropyBottleneck, cfg.hyper_channels), CODER_BUFFERS)
        self.g_a = Encoder(cfg)
        self.g_s = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.dim, 2 * cfg.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.dim, 1)
        self.h_a = PriorEncoder(cfg)
        self.h_s = PriorDecoder(cfg)
        self.gaussian_conditional = _without_coder_state(entropy_model(GaussianConditional, None), (*CODER_BUFFERS, "scale_table"))
        self.register_buffer("z_table", torch.ones(cfg.hyper_channels, 2 * Z_RADIUS + 2, dtype=torch.int32))
        if self.z_table.device.type != "meta":  # a meta-device model only describes shapes
            self.update()

    # -- networks ---------------------------------------------------------------------------

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalized fields [B, C, H, W] -> the latent's mean (``y``) and clamped log-variance [B, latent, h, w]."""
        mean, logvar = self.quant_conv(self.g_a(x)).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def synthesis(self, y_hat: Tensor) -> Tensor:
        """Quantized latent [B, latent, h, w] -> normalized fields [B, C, H, W] (official ``decode_latent``)."""
        return self.g_s(self.post_quant_conv(y_hat))

    def medians(self) -> Tensor:
        """The entropy bottleneck's medians [1, hyper, 1, 1], the centres of the hyper-latent's quantization."""
        return self.entropy_bottleneck.quantiles[:, 0, 1].detach().reshape(1, -1, 1, 1)

    def forward(self, x: Tensor) -> dict:
        """Training pass (official ``forward``): ``x_hat``, ``likelihoods`` (``y``, ``z``), posterior ``mean`` and ``logvar``."""
        mean, logvar = self.posterior(x)
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(mean.detach()))
        scales, means = self.h_s(z_hat)
        y_hat, y_likelihoods = self.gaussian_conditional(mean, scales, means=means)
        likelihoods = {"y": y_likelihoods, "z": z_likelihoods}
        return {"x_hat": self.synthesis(y_hat), "likelihoods": likelihoods, "mean": mean, "logvar": logvar}

    def aux_loss(self) -> Tensor:
        """The entropy bottleneck's quantile loss (CompressAI)."""
        return self.entropy_bottleneck.loss()

    # -- bytes ------------------------------------------------------------------------------

    @torch.no_grad()
    def update(self) -> None:
        """Freeze the hyper-latent's per-channel integer tables ``z_table`` (float64 on the CPU, so every machine agrees).

        Row ``c`` holds the bottleneck's probabilities of ``median_c + s`` for ``s`` in
        ``[-Z_RADIUS, Z_RADIUS]`` followed by the remaining mass (the escape symbol).
        """
        # a fresh copy, not copy.deepcopy: unpickling a CompressAI entropy model imports the whole package (_compressai)
        bottleneck = _without_coder_state(entropy_model(EntropyBottleneck, self.config.hyper_channels), CODER_BUFFERS)
        bottleneck.load_state_dict(self.entropy_bottleneck.state_dict())
        bottleneck = bottleneck.to("cpu", torch.float64)
        offsets = torch.arange(-Z_RADIUS, Z_RADIUS + 1, dtype=torch.float64)
        samples = (bottleneck.quantiles[:, 0, 1:2] + offsets).unsqueeze(1)
        probs = bottleneck._likelihood(samples, stop_gradient=True)[0][:, 0].clamp_min(0)
        escape = (1 - probs.sum(-1, keepdim=True)).clamp_min(1e-9)
        self.z_table.copy_(frequencies_to_table(torch.cat([probs, escape], dim=-1)))

    def check(self) -> None:
        """Raise ``ValueError`` unless the hyper-latent tables are frozen (run on load)."""
        t = self.z_table.long()
        if bool((t < 1).any()) or bool((t.sum(-1) != TOTAL).any()):
            raise ValueError("hyper-latent coding table z_table is not frozen (run update())")

    def _z_tables(self) -> _IndexedTables:
        table = self.z_table.cpu().numpy()
        return _IndexedTables(np.full(len(table), Z_RADIUS), list(table))

    def _channel_indexes(self) -> np.ndarray:
        """The channel of every hyper-latent symbol, in [C, h, w] order."""
        h, w = self.config.hyper_grid
        return np.repeat(np.arange(self.config.hyper_channels), h * w)

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        expected = (1, self.config.in_channels, *self.config.image_size)
        if tuple(shape) != expected:
            raise ValueError(f"expected fields {list(expected)}, got {list(shape)}")

    @torch.no_grad()
    def compress(self, x: Tensor, level: int | None = None) -> list[bytes]:
        """Normalized fields [1, C, H, W] (``config.image_size``) -> ``[latent bytes, hyper-latent bytes]`` (upstream's order)."""
        require_one_rate(level, "the official CRA5 weights")
        self._check_shape(tuple(x.shape))
        y = self.posterior(x)[0]
        medians = self.medians()
        z_symbols = torch.round(self.h_a(y) - medians)
        scales, means = self.h_s(z_symbols + medians)
        y_symbols = torch.round(y - means)
        tables = gaussian.default_tables()
        y_bytes = gaussian.encode(y_symbols.cpu().numpy(), tables.scale_index(scales), tables)
        return [y_bytes, gaussian.encode(z_symbols.cpu().numpy(), self._channel_indexes(), self._z_tables())]

    @torch.no_grad()
    def decompress(self, streams: list[bytes], shape: tuple[int, int], level: int | None = None) -> Tensor:
        """Inverse of :meth:`compress`: normalized fields [1, C, H, W]; ``shape`` is ``(H, W)``, ``config.image_size``."""
        require_one_rate(level, "the official CRA5 weights")
        self._check_shape((1, self.config.in_channels, *shape))
        if len(streams) != 2:
            raise ValueError(f"expected 2 streams (latent, hyper-latent), got {len(streams)}")
        device = self.z_table.device
        z_symbols = gaussian.decode(streams[1], self._channel_indexes(), self._z_tables())
        z_hat = torch.from_numpy(z_symbols).float().to(device).reshape(1, -1, *self.config.hyper_grid) + self.medians()
        scales, means = self.h_s(z_hat)
        tables = gaussian.default_tables()
        y_symbols = gaussian.decode(streams[0], tables.scale_index(scales), tables)
        y_hat = torch.from_numpy(y_symbols).float().to(device).reshape(means.shape) + means
        return self.synthesis(y_hat.contiguous())  # contiguous: upstream's decompress hands g_s a plain NCHW latent


def parameter_count(config: OfficialConfig) -> int:
    """Number of learned parameters of the official network, without allocating it."""
    with torch.device("meta"):
        model = VAEformerOfficial(config)
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Official checkpoint files


def official_key(key: str) -> str:
    """The official name (after ``backbone.``) of one of our state-dict keys."""
    if key.startswith("entropy_bottleneck."):
        for official, ours in OFFICIAL_EB_NAMES.items():
            head = f"entropy_bottleneck.{ours}."
            if key.startswith(head):
                return f"entropy_bottleneck.{official}{key[len(head):]}"
    return key


def our_key(key: str) -> str:
    """Inverse of :func:`official_key`: ``entropy_bottleneck._matrix0`` -> ``entropy_bottleneck.matrices.0``."""
    for official, ours in OFFICIAL_EB_NAMES.items():
        head = f"entropy_bottleneck.{official}"
        if key.startswith(head) and key[len(head) :].isdigit():
            return f"entropy_bottleneck.{ours}.{key[len(head):]}"
    return key


def official_state_dict(model: VAEformerOfficial) -> dict[str, Tensor]:
    """``model``'s network tensors under the official names (without ``backbone.``; our ``z_table`` dropped)."""
    return {official_key(k): v for k, v in model.state_dict().items() if k != "z_table"}


def _is_coder_state(key: str) -> bool:
    """Whether ``key`` is CompressAI coder state that the loader drops."""
    module, _, name = key.rpartition(".")
    in_model = module in ("entropy_bottleneck", "gaussian_conditional")
    return (in_model and name in CODER_BUFFERS) or key == "gaussian_conditional.scale_table"


def _network_tensors(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], bool]:
    """The network's tensors under our names (prefix stripped, loss and coder state dropped), and whether the
    file held CompressAI's frozen coding tables (i.e. upstream's ``update()`` had run)."""
    stripped = {k.removeprefix(PREFIX): v for k, v in sd.items()}
    tables = stripped.get("entropy_bottleneck._quantized_cdf")
    kept = {our_key(k): v for k, v in stripped.items() if not k.startswith(DROPPED_PREFIX) and not _is_coder_state(k)}
    return kept, tables is not None and tables.numel() > 0


def infer_config(sd: dict[str, Tensor], base: OfficialConfig = FULL) -> OfficialConfig:
    """The :class:`OfficialConfig` of a state dict (our names): widths, channels, kernels and depths from its
    shapes; what shapes cannot tell (image size, stride, heads, windows, interval) from ``base``, checked
    against the position embeddings' token counts."""
    dim, cin, kh, kw = tensor_shape(sd, "g_a.patch_embed.proj.weight", 4, WHAT)
    prior_dim, latent, ph, pw = tensor_shape(sd, "h_a.patch_embed.proj.weight", 4, WHAT)
    hyper = tensor_shape(sd, "h_a.quan_mlp.fc2.weight", 2, WHAT)[0]
    final = sd.get("g_s.final.weight")
    if final is not None and final.dim() == 2:
        raise ModelError("checkpoint has a linear g_s.final (upstream's variant for other inputs than 721 x 1440); not supported")
    enc, dec = count_submodules(sd, "g_a.blocks."), count_submodules(sd, "g_s.blocks.")
    prior_enc, prior_dec = count_submodules(sd, "h_a.blocks."), count_submodules(sd, "h_s.blocks.")
    depth, prior_depth = enc - 1 + dec, prior_enc + prior_dec
    if enc < 2 or depth // 2 + 1 != enc or prior_enc < 1 or prior_depth // 2 != prior_enc:
        raise ModelError(f"checkpoint has {enc}/{dec} encoder/decoder and {prior_enc}/{prior_dec} prior blocks; not {WHAT}")
    try:
        config = replace(
            base, in_channels=cin, patch_size=(kh, kw), dim=dim, depth=depth, latent_channels=latent,
            prior_patch=(ph, pw), prior_dim=prior_dim, prior_depth=prior_depth, hyper_channels=hyper,
        )
    except ValueError as exc:
        raise ModelError(f"checkpoint architecture does not fit the {list(base.image_size)} geometry: {exc}") from None
    _check_tokens(sd, config)
    return config


def _check_tokens(sd: dict[str, Tensor], config: OfficialConfig) -> None:
    """One-line error unless the position embeddings have the token counts of ``config``'s geometry."""
    for key, grid in (("g_a.pos_embed", config.tokens), ("h_a.pos_embed", config.hyper_grid)):
        tokens = tensor_shape(sd, key, 3, WHAT)[1]
        if tokens != grid[0] * grid[1]:
            raise ModelError(f"checkpoint {key} has {tokens} tokens; {list(config.image_size)} inputs give {grid[0]} x {grid[1]}")


def load_official(path: str | os.PathLike, base: OfficialConfig = FULL) -> tuple[VAEformerOfficial, dict]:
    """An official CRA5 ``.pth`` checkpoint as an eval-mode :class:`VAEformerOfficial` with frozen tables, and its metadata.

    ``base`` gives what the tensor shapes cannot (image size, patch stride, heads, windows); the
    published file needs the default.  Metadata: ``config`` (our :class:`OfficialConfig` as a dict),
    ``source`` (the file name) and ``compressai_tables`` (whether the file held CompressAI's frozen
    coding tables, which are dropped).  Every failure is a one-line :class:`ModelError`.
    """
    path = Path(path)
    sd, had_tables = _network_tensors(read_official_state_dict(path, WHAT, lambda obj: obj, "flat state dict")[0])
    config = infer_config(sd, base)
    with torch.device("meta"):
        expected = {k: v for k, v in VAEformerOfficial(config).state_dict().items() if k != "z_table"}
    check_network_tensors(expected, sd, f"checkpoint {path}")
    model = VAEformerOfficial(config)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    model.update()
    return model.eval(), {"config": config.to_dict(), "source": path.name, "compressai_tables": had_tables}


def convert(src: str | os.PathLike, dst: str | os.PathLike, base: OfficialConfig = FULL) -> str:
    """Write an official CRA5 ``.pth`` checkpoint as our safetensors model file; returns its weights hash.

    Metadata ``model`` = ``"vaeformer-official"``, ``config`` = :class:`OfficialConfig` as JSON and the
    ``source`` file name; the file codes exactly like the ``.pth`` (same weights hash).
    """
    model, meta = load_official(src, base)
    return save_weights(model, dst, {"model": MODEL_NAME, "config": meta["config"], "source": meta["source"]})
