"""VAEformer: the transformer autoencoder of CRA5 (Han et al., 2024) for 2-D climate fields.

Encoder: a strided patch embedding, then transformer blocks whose attention alternates between
local windows (shifted by half a window along longitude every other block, which is periodic, so
the shift wraps around the globe) and, every ``global_every``-th block, a global attention whose keys
and values are pooled to at most ``global_tokens`` tokens (so a 0.25 deg field stays affordable).
A depth-wise convolution in every block gives positional information.  Two linear heads output the
mean and log-variance of a diagonal Gaussian latent ("variance inference"); the mean is what is
coded.  A mean-scale hyperprior models the latent; the decoder mirrors the encoder and un-patches
with a pixel shuffle.  Every convolution pads longitude periodically and latitude by replication.

One network serves every rate: a ladder of levels (the qualities, coarsest first), each with its own
learned per-channel quantization step of the latent and an embedding added to the encoder's and the
decoder's tokens, trained together with a rate-distortion trade-off per level (gain units, Cui et
al., CVPR 2021).  Above the network's finest level, *refinement* qualities keep that level and add
its residual, quantized uniformly so that every point is within ``k`` standard deviations of the
field (:mod:`codec.climate.errorbound`): at high rates a transform's decoder stops turning latent
precision into accuracy, while a residual layer costs about one bit per point per halving of the
error.

Split as in CompressAI: :meth:`VAEformer.forward` returns the reconstruction and likelihoods for
training (CompressAI's ``EntropyBottleneck`` / ``GaussianConditional``); :meth:`VAEformer.compress`
and :meth:`VAEformer.decompress` produce bytes through :mod:`codec.entropy` with integer tables that
:meth:`VAEformer.update` freezes into the weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..entropy import categorical, gaussian
from ..entropy.tables import frequencies_to_table
from ._compressai import EntropyBottleneck, GaussianConditional, entropy_model
from .base import ClimateCodecModel
from .config import JSONConfig

Z_RADIUS = 48  # hyper-latent symbols are coded in [-Z_RADIUS, Z_RADIUS] around each channel's median
LMBDA = 64.0  # rate-distortion trade-off at quantization step 1: level l trains with LMBDA / rate_l**2


@dataclass(frozen=True)
class VAEformerConfig(JSONConfig):
    """Architecture of one VAEformer.  ``windows`` is cycled over the local-attention blocks."""

    in_channels: int = 2  # the normalized field and its validity mask
    patch_kernel: tuple[int, int] = (4, 4)
    patch_stride: int = 4
    dim: int = 96
    depth: int = 4  # blocks in the encoder and again in the decoder
    heads: int = 4
    windows: tuple[tuple[int, int], ...] = ((8, 8),)
    global_every: int = 4
    global_tokens: int = 1024
    mlp_ratio: float = 2.0
    latent_channels: int = 48
    hyper_channels: int = 64
    hyper_latent_channels: int = 32
    rates: tuple[float, ...] = (8.0, 4.0, 2.0)  # initial latent quantization step of each network level, coarsest first
    # qualities above the network's levels: its finest level plus the residual, bounded pointwise by k
    # standard deviations of the field, for each k here (descending)
    refinements: tuple[float, ...] = (0.4, 0.25)

    @classmethod
    def from_dict(cls, d: dict) -> VAEformerConfig:
        """:meth:`JSONConfig.from_dict`; configs without ``refinements`` (files from before they existed) have none."""
        return super().from_dict({"refinements": [], **d})

    def __post_init__(self) -> None:
        ks = self.refinements
        if not all(math.isfinite(k) and k > 0 for k in ks) or list(ks) != sorted(set(ks), reverse=True):
            raise ValueError(f"refinements must be positive, distinct and descending (in field standard deviations), got {list(ks)}")

DEFAULT = VAEformerConfig()
"""Trains on 2 CPU cores (about 1.3 M parameters)."""

TINY = VAEformerConfig(dim=16, depth=2, heads=2, windows=((4, 4),), global_every=2, latent_channels=8, hyper_channels=8, hyper_latent_channels=4)
"""Trains in seconds on a CPU (tests)."""

CRA5 = VAEformerConfig(
    in_channels=268,
    patch_kernel=(11, 10),
    patch_stride=10,
    dim=1024,
    depth=12,
    heads=16,
    windows=((24, 24), (12, 48), (48, 12)),
    global_every=4,
    global_tokens=4096,
    mlp_ratio=4.0,
    latent_channels=256,
    hyper_channels=256,
    hyper_latent_channels=192,
)
"""The published CRA5 size (268 ERA5 channels at 721 x 1440); builds, far too large to train here."""


def pad_periodic(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Pad [B, C, H, W]: longitude (W) wraps around, latitude (H) repeats its edge rows."""
    if left or right:
        x = F.pad(x, (left, right, 0, 0), mode="circular")
    if top or bottom:
        x = F.pad(x, (0, 0, top, bottom), mode="replicate")
    return x


class PeriodicConv(nn.Conv2d):
    """A same-size (or strided) convolution with periodic longitude padding."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride=stride, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size[0]
        p = k // 2
        return super().forward(pad_periodic(x, p, p, p, p))


class Attention(nn.Module):
    """Multi-head self-attention over windows, or over all tokens against pooled keys (global)."""

    def __init__(self, dim: int, heads: int, window: tuple[int, int] | None, shift: bool, global_tokens: int) -> None:
        super().__init__()
        self.heads, self.window, self.shift, self.global_tokens = heads, window, shift, global_tokens
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, t: Tensor) -> Tensor:
        b, n, d = t.shape
        return t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        return out.transpose(1, 2).flatten(2)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, H, W, D] -> [B, H, W, D]."""
        if self.window is None:
            return self.proj(self._global(x))
        return self.proj(self._windowed(x))

    def _global(self, x: Tensor) -> Tensor:
        b, h, w, d = x.shape
        q, _, _ = self.qkv(x).flatten(1, 2).chunk(3, dim=-1)
        factor = max(1, math.ceil(math.sqrt(h * w / self.global_tokens)))
        pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), factor, ceil_mode=True) if factor > 1 else x.permute(0, 3, 1, 2)
        _, k, v = self.qkv(pooled.flatten(2).transpose(1, 2)).chunk(3, dim=-1)
        return self._attend(q, k, v).reshape(b, h, w, d)

    def _windowed(self, x: Tensor) -> Tensor:
        b, h, w, d = x.shape
        wh, ww = min(self.window[0], h), min(self.window[1], w)
        shift = ww // 2 if self.shift else 0
        if shift:
            x = torch.roll(x, -shift, dims=2)  # longitude is periodic: a shift wraps around the globe
        ph, pw = (-h) % wh, (-w) % ww
        t = F.pad(x, (0, 0, 0, pw, 0, ph))
        hh, wwn = (h + ph) // wh, (w + pw) // ww
        t = t.reshape(b, hh, wh, wwn, ww, d).permute(0, 1, 3, 2, 4, 5).reshape(b * hh * wwn, wh * ww, d)
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        out = self._attend(q, k, v).reshape(b, hh, wwn, wh, ww, d).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(b, h + ph, w + pw, d)[:, :h, :w]
        return torch.roll(out, shift, dims=2) if shift else out


class Block(nn.Module):
    """Positional depth-wise conv, pre-norm attention and MLP, each residual."""

    def __init__(self, cfg: VAEformerConfig, index: int) -> None:
        super().__init__()
        is_global = cfg.global_every > 0 and (index + 1) % cfg.global_every == 0
        window = None if is_global else cfg.windows[index % len(cfg.windows)]
        self.pos = PeriodicConv(cfg.dim, cfg.dim, 3, groups=cfg.dim)
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads, window, shift=index % 2 == 1, global_tokens=cfg.global_tokens)
        self.norm2 = nn.LayerNorm(cfg.dim)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.dim))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, H, W, D] -> [B, H, W, D]."""
        x = x + self.pos(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Hyper(nn.Module):
    """Hyper-analysis (``up=False``: two stride-2 steps) or hyper-synthesis (``up=True``)."""

    def __init__(self, cin: int, hidden: int, cout: int, up: bool) -> None:
        super().__init__()
        self.up = up
        self.conv1 = PeriodicConv(cin, hidden, 3)
        self.conv2 = PeriodicConv(hidden, hidden, 3, stride=1 if up else 2)
        self.conv3 = PeriodicConv(hidden, cout, 3, stride=1 if up else 2)

    def forward(self, x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Down: [B, C, h, w] -> [B, C', ceil(h/4), ceil(w/4)]; up: back to ``size``."""
        if self.up:
            x = F.gelu(self.conv1(x))
            x = F.gelu(self.conv2(F.interpolate(x, scale_factor=2, mode="nearest")))
            x = F.interpolate(x, scale_factor=2, mode="nearest")[..., : size[0], : size[1]]
            return self.conv3(x)
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


class VAEformer(ClimateCodecModel):
    """Transformer VAE with a mean-scale hyperprior for fields [B, in_channels, H, W] of any size."""

    def __init__(self, config: VAEformerConfig = DEFAULT) -> None:
        super().__init__()
        self.config = cfg = config
        self.embed = nn.Conv2d(cfg.in_channels, cfg.dim, cfg.patch_kernel, stride=cfg.patch_stride)
        self.encoder = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        self.enc_norm = nn.LayerNorm(cfg.dim)
        self.mean_head = nn.Linear(cfg.dim, cfg.latent_channels)
        self.logvar_head = nn.Linear(cfg.dim, cfg.latent_channels)
        nn.init.constant_(self.logvar_head.bias, -6.0)
        self.unembed_latent = nn.Linear(cfg.latent_channels, cfg.dim)
        self.decoder = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        self.dec_norm = nn.LayerNorm(cfg.dim)
        self.unpatch = nn.Linear(cfg.dim, cfg.patch_stride**2 * self.out_channels)
        self.h_a = Hyper(cfg.latent_channels, cfg.hyper_channels, cfg.hyper_latent_channels, up=False)
        self.h_s = Hyper(cfg.hyper_latent_channels, cfg.hyper_channels, 2 * cfg.latent_channels, up=True)
        self.entropy_bottleneck = entropy_model(EntropyBottleneck, cfg.hyper_latent_channels)
        self.gaussian_conditional = entropy_model(GaussianConditional, None)
        self.register_buffer("z_table", torch.ones(cfg.hyper_latent_channels, 2 * Z_RADIUS + 1, dtype=torch.int32))
        self.register_buffer("z_offset", torch.zeros(cfg.hyper_latent_channels, dtype=torch.int32))
        if not cfg.rates or min(cfg.rates) <= 0:
            raise ValueError(f"rates must be positive quantization steps, got {cfg.rates}")
        # The rate ladder (gain units, Cui et al. 2021): each level quantizes every latent channel with a
        # learned step and tells the encoder and decoder which level they work at (zero-initialized
        # embeddings, so a new level starts as the plain network at its initial step).
        levels = len(cfg.rates)
        self.log_steps = nn.Parameter(torch.tensor(cfg.rates).log()[:, None].repeat(1, cfg.latent_channels))
        self.level_embed_enc = nn.Parameter(torch.zeros(levels, cfg.dim))
        self.level_embed_dec = nn.Parameter(torch.zeros(levels, cfg.dim))
        # The steps used for bytes, frozen by update() in float64 so that encoder and decoder agree exactly.
        self.register_buffer("steps", torch.tensor(cfg.rates, dtype=torch.float64)[:, None].repeat(1, cfg.latent_channels))

    @property
    def network_levels(self) -> int:
        """Number of the network's own rate levels (coarsest first)."""
        return len(self.config.rates)

    @property
    def levels(self) -> int:
        """Number of qualities: the network's levels, then its refinements."""
        return self.network_levels + len(self.config.refinements)

    def _level_index(self, level: int) -> int:
        if not 1 <= level <= self.network_levels:
            raise ValueError(f"network level must be in 1..{self.network_levels}, got {level}")
        return level - 1

    def at_level(self, quality: int) -> LevelCoder:
        """The byte coder of one quality: a network level, or (above them) the finest level plus a bounded residual."""
        if not 1 <= quality <= self.levels:
            raise ValueError(f"level must be in 1..{self.levels}, got {quality}")
        if quality <= self.network_levels:
            return LevelCoder(self, quality)
        return LevelCoder(self, self.network_levels, self.config.refinements[quality - self.network_levels - 1])

    @property
    def out_channels(self) -> int:
        """Channels of the reconstruction (the input minus its mask channel)."""
        return max(1, self.config.in_channels - 1)

    def latent_size(self, h: int, w: int) -> tuple[int, int]:
        """Token grid of an ``h`` x ``w`` field."""
        s = self.config.patch_stride
        return math.ceil(h / s), math.ceil(w / s)

    # -- networks ---------------------------------------------------------------------------

    def encode(self, x: Tensor, level: int) -> tuple[Tensor, Tensor]:
        """Field [B, C, H, W] at rate ``level`` -> latent mean and log-variance [B, latent, h, w]."""
        cfg = self.config
        h, w = self.latent_size(x.shape[-2], x.shape[-1])
        kh, kw = cfg.patch_kernel
        pad_h, pad_w = (h - 1) * cfg.patch_stride + kh - x.shape[-2], (w - 1) * cfg.patch_stride + kw - x.shape[-1]
        t = self.embed(pad_periodic(x, 0, pad_h, 0, pad_w)).permute(0, 2, 3, 1) + self.level_embed_enc[self._level_index(level)]
        for block in self.encoder:
            t = block(t)
        t = self.enc_norm(t)
        return self.mean_head(t).permute(0, 3, 1, 2), self.logvar_head(t).permute(0, 3, 1, 2).clamp(-30, 20)

    def decode(self, y: Tensor, size: tuple[int, int], level: int) -> Tensor:
        """Latent [B, latent, h, w] at rate ``level`` -> reconstruction [B, out_channels, H, W] cropped to ``size``."""
        t = self.unembed_latent(y.permute(0, 2, 3, 1)) + self.level_embed_dec[self._level_index(level)]
        for block in self.decoder:
            t = block(t)
        t = self.unpatch(self.dec_norm(t)).permute(0, 3, 1, 2)
        return F.pixel_shuffle(t, self.config.patch_stride)[..., : size[0], : size[1]]

    def _prior(self, z_hat: Tensor, size: tuple[int, int], exact: bool = False) -> tuple[Tensor, Tensor]:
        """Means and scales of the latent from the hyper-latent.  ``exact``: in float64, as the bytes of
        field records from version 4 use it: the scale picks each symbol's table, and float32 kernels of
        other CPUs move it by ~1e-7, enough to pick another table now and then; float64 moves it by ~1e-16."""
        out = self._h_s64()(z_hat.double(), size) if exact else self.h_s(z_hat, size)
        means, scales = out.chunk(2, dim=1)
        return means, F.softplus(scales) + 1e-3

    def _h_s64(self) -> nn.Module:
        """A float64 copy of ``h_s``, made on first use and again whenever its weights change (kept out of
        the module tree, so it is neither saved nor trained; a copy, not swapped weights, so threads that
        code fields at once never see each other's precision)."""
        key = tuple((p.data_ptr(), None if p.is_inference() else p._version) for p in self.h_s.parameters())  # (inference tensors have no version)
        cached = self.__dict__.get("_h_s64_cache")
        if cached is None or cached[0] != key:
            cached = (key, copy.deepcopy(self.h_s).double().eval())
            self.__dict__["_h_s64_cache"] = cached
        return cached[1]

    def forward(self, x: Tensor, level: int) -> dict:
        """Training pass at rate ``level``: reconstruction, likelihoods of y and z, and the latent's KL term."""
        mean, logvar = self.encode(x, level)
        z_hat, z_lik = self.entropy_bottleneck(self.h_a(mean))
        mu, sigma = self._prior(z_hat, mean.shape[-2:])
        step = self.log_steps[self._level_index(level)].exp()[None, :, None, None]
        y_hat, y_lik = self.gaussian_conditional(mean / step, sigma / step, means=mu / step)
        y_hat = y_hat * step
        if self.training:
            y_hat = y_hat + torch.exp(0.5 * logvar) * torch.randn_like(y_hat)
        kl = 0.5 * (logvar.exp() - logvar - 1).mean()
        return {"x_hat": self.decode(y_hat, x.shape[-2:], level), "likelihoods": {"y": y_lik, "z": z_lik}, "kl": kl}

    def aux_loss(self) -> Tensor:
        """The entropy bottleneck's quantile loss (CompressAI)."""
        return self.entropy_bottleneck.loss()

    # -- bytes ------------------------------------------------------------------------------

    @torch.no_grad()
    def update(self) -> None:
        """Freeze the hyper-latent's per-channel integer tables and the levels' steps (call after training)."""
        self.steps.copy_(self.log_steps.detach().double().exp())
        medians = self.entropy_bottleneck.quantiles[:, 0, 1].detach()
        offset = torch.round(medians).to(torch.int32)
        grid = torch.arange(-Z_RADIUS, Z_RADIUS + 1, dtype=torch.float32)
        samples = (offset.float()[:, None] + grid[None, :]).unsqueeze(1)
        lik, _, _ = self.entropy_bottleneck._likelihood(samples, stop_gradient=True)
        self.z_table.copy_(frequencies_to_table(lik.squeeze(1)))
        self.z_offset.copy_(offset)

    def _z_symbols(self, z: Tensor) -> np.ndarray:
        off = self.z_offset.to(torch.int64)[None, :, None, None]
        sym = torch.round(z).to(torch.int64) - off + Z_RADIUS
        return sym.clamp_(0, 2 * Z_RADIUS).numpy()

    def _z_from_symbols(self, sym: np.ndarray) -> Tensor:
        return (torch.from_numpy(sym).to(torch.int64) - Z_RADIUS + self.z_offset.to(torch.int64)[None, :, None, None]).float()

    def _step(self, level: int) -> Tensor:
        return self.steps[self._level_index(level)].float()[None, :, None, None]

    def compress(self, x: Tensor, level: int | None = None, exact: bool = False) -> list[bytes]:
        """One field [1, C, H, W] at rate ``level`` -> [hyper-latent bytes, latent bytes] (``exact``: the
        float64 prior of :meth:`_prior`, which :meth:`decompress` must then use too)."""
        return self.compress_with_output(x, level, exact, output=False)[0]

    def compress_with_output(self, x: Tensor, level: int | None = None, exact: bool = False, output: bool = True) -> tuple[list[bytes], Tensor | None]:
        """:meth:`compress` and (``output``) the reconstruction :meth:`decompress` will give, without
        decoding the bytes again (the same latent through the same synthesis)."""
        if x.shape[0] != 1:
            raise ValueError("compress codes one field at a time")
        mean, _ = self.encode(x, level)
        sym = self._z_symbols(self.h_a(mean))
        z_bytes = categorical.encode(sym[0].reshape(sym.shape[1], -1), self.z_table.numpy())
        mu, sigma = self._prior(self._z_from_symbols(sym), mean.shape[-2:], exact)
        tables = gaussian.default_tables()
        step = self._step(level)
        values = torch.round((mean - mu) / step).to(torch.int64).numpy()
        strings = [z_bytes, gaussian.encode(values, tables.scale_index(sigma / step), tables)]
        return strings, self._synthesize(values, mu, step, x.shape[-2:], level) if output else None

    def decompress(self, strings: list[bytes], size: tuple[int, int], level: int | None = None, exact: bool = False) -> Tensor:
        """Inverse of :meth:`compress` (with the same ``exact``): the reconstruction [1, out_channels, H, W]."""
        if len(strings) != 2:
            raise ValueError(f"expected 2 streams (hyper-latent, latent), got {len(strings)}")
        z_bytes, y_bytes = strings
        h, w = self.latent_size(*size)
        zh, zw = math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2)
        channels = self.config.hyper_latent_channels
        sym = categorical.decode(z_bytes, self.z_table.numpy(), zh * zw).reshape(1, channels, zh, zw)
        mu, sigma = self._prior(self._z_from_symbols(sym), (h, w), exact)
        tables = gaussian.default_tables()
        step = self._step(level)
        values = gaussian.decode(y_bytes, tables.scale_index(sigma / step), tables).reshape(mu.shape)
        return self._synthesize(values, mu, step, size, level)

    def _synthesize(self, values: np.ndarray, mu: Tensor, step: Tensor, size: tuple[int, int], level: int | None) -> Tensor:
        """The reconstruction from the latent's integer symbols (int64), its prior means and steps."""
        return self.decode((torch.from_numpy(values).float() * step + mu).float(), size, level)


@dataclass(frozen=True)
class LevelCoder:
    """One quality of a :class:`VAEformer`: the bytes interface the climate records use.

    ``relative_bound`` (refinement qualities): every point is coded to within this many standard
    deviations of its field, by the residual coder of :mod:`codec.climate.errorbound`.
    """

    net: VAEformer
    level: int
    relative_bound: float | None = None

    def compress(self, x: Tensor, exact: bool = False) -> list[bytes]:
        """:meth:`VAEformer.compress` at this level."""
        return self.net.compress(x, self.level, exact)

    def compress_with_output(self, x: Tensor, exact: bool = False) -> tuple[list[bytes], Tensor]:
        """:meth:`VAEformer.compress_with_output` at this level."""
        return self.net.compress_with_output(x, self.level, exact)

    def decompress(self, strings: list[bytes], size: tuple[int, int], exact: bool = False) -> Tensor:
        """:meth:`VAEformer.decompress` at this level."""
        return self.net.decompress(strings, size, self.level, exact)

    @property
    def trade_off(self) -> float:
        """``lambda_l`` of this level's training loss ``lambda_l * MSE + bits per point`` (:data:`LMBDA` / rate_l^2)."""
        return LMBDA / self.net.config.rates[self.net._level_index(self.level)] ** 2
