"""VQGAN in the taming-transformers architecture (Esser et al., CVPR 2021), the base of VQGAN-cluster.

VQGAN-cluster ("Extreme Image Compression using Fine-tuned VQGANs", Mao et al. 2023) takes the
official ImageNet VQGAN (f16, 16384 codewords) and K-means-clusters its codebook into smaller ones,
one per rate.  This module is only the network: a convolutional encoder/decoder with residual and
self-attention blocks, a nearest-codeword vector quantizer whose codebook can be swapped for an
external (clustered) one, and the PatchGAN discriminator used in training.

Our modules are written from the paper and the published architecture, but their **parameter names
and shapes equal the official ones** (``encoder.down.0.block.0.norm1.weight``,
``quantize.embedding.weight``, ``loss.discriminator.main.0.weight`` without the ``loss.discriminator.``
prefix, ...), so official checkpoints load 1:1 (see :mod:`codec.models.taming`).

Images enter and leave in [0, 1]; the network itself works in [-1, 1] as the official one.  Any
image size is accepted: sides are replicate-padded to a multiple of the downsampling factor and the
padding is cropped from the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import JSONConfig

NORM_GROUPS = 32  # GroupNorm groups of every normalization layer in the official models
_DIST_CHUNK = 1 << 24  # distance-matrix entries per chunk in nearest-codeword search (64 MB in fp32)


@dataclass(frozen=True)
class VQGANConfig(JSONConfig):
    """Architecture of one VQGAN (the official ``ddconfig`` plus ``n_embed``/``embed_dim``).

    ``attn_resolutions`` follows the official convention: a level gets attention blocks when its
    nominal side (``resolution`` halved once per level) is listed.  Every channel count
    ``ch * m`` must be a multiple of ``norm_groups`` (GroupNorm groups; 32 in the official models).
    Narrow models need fewer groups: with one channel per group GroupNorm becomes instance
    normalization, which erases each channel's mean and so the absolute colour a token carries.
    """

    ch: int = 32
    ch_mult: tuple[int, ...] = field(default=(1, 1, 2, 2, 4))
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = field(default=(16,))
    resolution: int = 256
    in_channels: int = 3
    out_channels: int = 3
    z_channels: int = 64
    embed_dim: int = 64
    n_embed: int = 2048
    dropout: float = 0.0
    beta: float = 0.25
    norm_groups: int = NORM_GROUPS

    def __post_init__(self) -> None:
        if not self.ch_mult or self.num_res_blocks < 1 or self.n_embed < 1 or self.embed_dim < 1:
            raise ValueError(f"invalid VQGAN config: {self}")
        if self.z_channels < 1 or self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(f"invalid VQGAN config: {self}")
        bad = [self.ch * m for m in (1, *self.ch_mult) if m < 1 or self.norm_groups < 1 or (self.ch * m) % self.norm_groups]
        if bad:
            raise ValueError(f"VQGAN channel counts must be positive multiples of norm_groups={self.norm_groups}, got {bad}")

    @property
    def levels(self) -> int:
        """Number of resolution levels (one fewer downsamplings)."""
        return len(self.ch_mult)

    @property
    def factor(self) -> int:
        """Downsampling factor of the latent grid; image sides are padded to a multiple of it."""
        return 2 ** (self.levels - 1)

    @property
    def encoder_attn_levels(self) -> tuple[int, ...]:
        """Encoder levels with attention blocks (nominal side ``resolution // 2**level``)."""
        res, out = self.resolution, []
        for level in range(self.levels):
            if res in self.attn_resolutions:
                out.append(level)
            res //= 2
        return tuple(out)

    @property
    def decoder_attn_levels(self) -> tuple[int, ...]:
        """Decoder levels with attention blocks (the decoder counts up from the lowest resolution)."""
        low = self.resolution // 2 ** (self.levels - 1)
        return tuple(level for level in range(self.levels) if low * 2 ** (self.levels - 1 - level) in self.attn_resolutions)

FULL_F16_16384 = VQGANConfig(
    ch=128,
    ch_mult=(1, 1, 2, 2, 4),
    num_res_blocks=2,
    attn_resolutions=(16,),
    resolution=256,
    z_channels=256,
    embed_dim=256,
    n_embed=16384,
)
"""The official ``vqgan_imagenet_f16_16384`` (taming-transformers), the model VQGAN-cluster fine-tunes."""

SMALL = VQGANConfig(n_embed=4096, norm_groups=8)
"""Default trainable on a small CPU: same f16 layout, 1/4 the width, one block per level, 4096 codewords
(so that even the largest ladder level, 2048, is a real clustering), 8 normalization groups (4+
channels per group: 32 groups of 1 channel would erase every channel's mean)."""

TINY = VQGANConfig(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, attn_resolutions=(64,), z_channels=8, embed_dim=8, n_embed=64)
"""A configuration that runs in milliseconds (tests): f4, attention at the lowest resolution."""


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


def _conv3(cin: int, cout: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=padding)


def _conv1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


class ResnetBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, swish, conv3x3) twice; 1x1 shortcut when widths differ."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0, groups: int = NORM_GROUPS) -> None:
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = _conv3(cin, cout)
        self.norm2 = _norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3(cout, cout)
        if cin != cout:
            self.nin_shortcut = _conv1(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all positions, with 1x1 q/k/v/output projections."""

    def __init__(self, channels: int, groups: int = NORM_GROUPS) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = _conv1(channels, channels)
        self.k = _conv1(channels, channels)
        self.v = _conv1(channels, channels)
        self.proj_out = _conv1(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)

        def tokens(t: Tensor) -> Tensor:  # [B, C, H, W] -> [B, 1, HW, C]
            return t.flatten(2).transpose(1, 2).unsqueeze(1)

        a = F.scaled_dot_product_attention(tokens(self.q(n)), tokens(self.k(n)), tokens(self.v(n)))
        return x + self.proj_out(a.squeeze(1).transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Halve the resolution: zero-pad right/bottom by one, then a stride-2 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3(channels, channels, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: residual blocks, each followed by attention when the level has it."""

    def __init__(self, channels: list[tuple[int, int]], attention: bool, dropout: float, groups: int) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin, cout, dropout, groups) for cin, cout in channels)
        self.attn = nn.ModuleList(AttnBlock(cout, groups) for _, cout in channels) if attention else nn.ModuleList()

    def run_blocks(self, h: Tensor) -> Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return h


class _Middle(nn.Module):
    def __init__(self, channels: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout, groups)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, dropout, groups)

    def forward(self, h: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    """Image [-1, 1] -> continuous latent with ``z_channels`` channels at 1/``factor`` resolution."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        self.conv_in = _conv3(cfg.in_channels, cfg.ch)
        attn = set(cfg.encoder_attn_levels)
        self.down = nn.ModuleList()
        cin = cfg.ch
        for level, mult in enumerate(cfg.ch_mult):
            cout = cfg.ch * mult
            stage = _Level([(cin if i == 0 else cout, cout) for i in range(cfg.num_res_blocks)], level in attn, cfg.dropout, cfg.norm_groups)
            if level != cfg.levels - 1:
                stage.downsample = Downsample(cout)
            self.down.append(stage)
            cin = cout
        self.mid = _Middle(cin, cfg.dropout, cfg.norm_groups)
        self.norm_out = _norm(cin, cfg.norm_groups)
        self.conv_out = _conv3(cin, cfg.z_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage.run_blocks(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent with ``z_channels`` channels -> image in [-1, 1] (unclamped)."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        cin = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = _conv3(cfg.z_channels, cin)
        self.mid = _Middle(cin, cfg.dropout, cfg.norm_groups)
        attn = set(cfg.decoder_attn_levels)
        stages: list[_Level] = []
        for level in reversed(range(cfg.levels)):  # built from the lowest resolution up
            cout = cfg.ch * cfg.ch_mult[level]
            stage = _Level([(cin if i == 0 else cout, cout) for i in range(cfg.num_res_blocks + 1)], level in attn, cfg.dropout, cfg.norm_groups)
            if level != 0:
                stage.upsample = Upsample(cout)
            stages.insert(0, stage)
            cin = cout
        self.up = nn.ModuleList(stages)  # indexed by level, as the official model
        self.norm_out = _norm(cin, cfg.norm_groups)
        self.conv_out = _conv3(cin, cfg.out_channels)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = stage.run_blocks(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """The codebook ``embedding.weight`` [n_embed, embed_dim] (official name and initialization)."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)


def nearest_codeword(vectors: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest codeword (squared Euclidean distance) for every row of ``vectors`` [N, D].

    Vectorized, in chunks that keep the N x K distance matrix bounded.  The distance is
    ``|z|^2 + |e|^2 - 2 z.e`` in the official order of operations, so ties break the same way.
    """
    if vectors.shape[-1] != codebook.shape[-1]:
        raise ValueError(f"latent has {vectors.shape[-1]} channels but codewords have {codebook.shape[-1]}")
    e2 = codebook.pow(2).sum(1)
    step = max(1, _DIST_CHUNK // max(1, codebook.shape[0]))
    out = []
    for z in vectors.split(step):
        d = z.pow(2).sum(1, keepdim=True) + e2 - 2 * (z @ codebook.t())
        out.append(d.argmin(1))
    return torch.cat(out) if out else vectors.new_zeros(0, dtype=torch.long)


def _pad(x: Tensor, multiple: int) -> Tensor:
    ph, pw = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class VQGAN(nn.Module):
    """VQGAN autoencoder: encoder, quant_conv, vector quantizer, post_quant_conv, decoder.

    Public API (images in [0, 1], any size)::

        h = model.encode(x)                            # [B, embed_dim, ceil(H/f), ceil(W/f)]
        idx = model.quantize_indices(h, codebook=None) # [B, h, w] int64
        y = model.decode_indices(idx, codebook=None, size=(H, W))  # [B, 3, H, W] in [0, 1]
        recon, codebook_loss, commitment_loss, idx = model(x)      # training (straight-through)

    ``codebook`` is an optional external [K, embed_dim] tensor (e.g. a K-means-clustered codebook)
    used instead of ``quantize.embedding.weight``.
    """

    def __init__(self, config: VQGANConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or VQGANConfig()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.quant_conv = _conv1(cfg.z_channels, cfg.embed_dim)
        self.post_quant_conv = _conv1(cfg.embed_dim, cfg.z_channels)

    @property
    def codebook(self) -> Tensor:
        """The model's own codebook [n_embed, embed_dim]."""
        return self.quantize.embedding.weight

    def _check_image(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images [B, {self.config.in_channels}, H, W], got {tuple(x.shape)}")

    def features(self, x: Tensor) -> Tensor:
        """Encoder output (before ``quant_conv``) of images [B, C, H, W] in [0, 1] (padded inside)."""
        self._check_image(x)
        return self.encoder(_pad(x, self.config.factor) * 2 - 1)

    def encode(self, x: Tensor) -> Tensor:
        """Continuous latent after ``quant_conv`` of images [B, C, H, W] in [0, 1] (padded inside)."""
        return self.quant_conv(self.features(x))

    def quantize_indices(self, h: Tensor, codebook: Tensor | None = None) -> Tensor:
        """Nearest-codeword indices [B, h, w] of a latent [B, embed_dim, h, w]."""
        cb = self.codebook if codebook is None else codebook
        b, c, hh, ww = h.shape
        flat = h.detach().permute(0, 2, 3, 1).reshape(-1, c)
        return nearest_codeword(flat, cb.detach().to(flat.dtype)).reshape(b, hh, ww)

    def lookup(self, indices: Tensor, codebook: Tensor | None = None) -> Tensor:
        """Quantized latent [B, embed_dim, h, w] of indices [B, h, w]."""
        cb = self.codebook if codebook is None else codebook
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= cb.shape[0]):
            raise ValueError(f"indices out of range for a codebook of {cb.shape[0]} codewords")
        return F.embedding(indices.long(), cb).permute(0, 3, 1, 2)

    def decode_latent(self, z_q: Tensor) -> Tensor:
        """Images in [0, 1] (unclamped, padded size) of a quantized latent [B, embed_dim, h, w]."""
        return (self.decoder(self.post_quant_conv(z_q)) + 1) / 2

    def decode_indices(self, indices: Tensor, codebook: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        """Images [B, C, H, W] clamped to [0, 1]; cropped to ``size`` (H, W) if given."""
        y = self.decode_latent(self.lookup(indices, codebook)).clamp(0, 1)
        return y if size is None else y[..., : size[0], : size[1]]

    def forward(self, x: Tensor, codebook: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Training pass: ``(recon, codebook_loss, commitment_loss, indices)``.

        ``recon`` is [B, C, H, W] in [0, 1] (unclamped, cropped to the input size); the quantizer uses
        the straight-through estimator.  ``codebook_loss`` = mean |sg(z) - e|^2 trains the codewords,
        ``commitment_loss`` = mean |z - sg(e)|^2 the encoder; combine them with :meth:`vq_loss`.
        """
        h = self.encode(x)
        cb = self.codebook if codebook is None else codebook
        indices = self.quantize_indices(h, cb)
        z_q = self.lookup(indices, cb)
        codebook_loss = F.mse_loss(z_q, h.detach())
        commitment_loss = F.mse_loss(h, z_q.detach())
        z_st = h + (z_q - h).detach()
        recon = self.decode_latent(z_st)[..., : x.shape[-2], : x.shape[-1]]
        return recon, codebook_loss, commitment_loss, indices

    def vq_loss(self, codebook_loss: Tensor, commitment_loss: Tensor) -> Tensor:
        """The official quantizer loss: ``commitment + beta * codebook``.

        The official ``VectorQuantizer2(legacy=True)`` that trained the published weights puts
        ``beta`` (0.25) on the codebook term, not on the commitment term as in the VQ-VAE paper.
        """
        return commitment_loss + self.config.beta * codebook_loss

    def last_layer(self) -> Tensor:
        """Weight of the decoder's output conv (for the adaptive GAN weight of VQGAN training)."""
        return self.decoder.conv_out.weight


# ----------------------------------------------------------------------------------------------
# PatchGAN discriminator (the ``loss.discriminator`` of the official checkpoints)


@dataclass(frozen=True)
class DiscriminatorConfig(JSONConfig):
    """PatchGAN (pix2pix NLayerDiscriminator) sizes; the official default is 3 layers of 64 filters, BatchNorm."""

    in_channels: int = 3
    ndf: int = 64
    n_layers: int = 3
    actnorm: bool = False

class ActNorm(nn.Module):
    """Per-channel affine normalization ``scale * (x + loc)``, initialized from the first training batch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def forward(self, x: Tensor) -> Tensor:
        if self.training and int(self.initialized) == 0:
            with torch.no_grad():
                flat = x.transpose(0, 1).reshape(x.shape[1], -1)
                self.loc.copy_(-flat.mean(1).view(1, -1, 1, 1))
                self.scale.copy_(1 / (flat.std(1).view(1, -1, 1, 1) + 1e-6))
                self.initialized.fill_(1)
        return self.scale * (x + self.loc)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: logits [B, 1, h, w] for overlapping image patches (input in [-1, 1]).

    Layout of ``main`` (official indices): conv4x4/2, LeakyReLU, then per extra layer
    conv4x4/2 (no bias with BatchNorm), norm, LeakyReLU; one stride-1 conv/norm/LeakyReLU; and a
    stride-1 conv to one channel.  Filters double per layer up to 8 * ``ndf``.
    """

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or DiscriminatorConfig()

        def norm(c: int) -> nn.Module:
            return ActNorm(c) if cfg.actnorm else nn.BatchNorm2d(c)

        bias = cfg.actnorm  # BatchNorm has its own shift
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, cfg.ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, cfg.n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < cfg.n_layers else 1
            layers += [nn.Conv2d(cfg.ndf * prev, cfg.ndf * mult, 4, stride, 1, bias=bias), norm(cfg.ndf * mult), nn.LeakyReLU(0.2, True)]
        if cfg.n_layers == 0:  # the official layout still has the stride-1 block
            layers += [nn.Conv2d(cfg.ndf, cfg.ndf, 4, 1, 1, bias=bias), norm(cfg.ndf), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(cfg.ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialization: convs N(0, 0.02), BatchNorm weights N(1, 0.02) and zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)
