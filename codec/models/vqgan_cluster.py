"""VQGAN-cluster: one VQGAN encoder/decoder, a ladder of K-means-clustered codebooks, learned index priors.

"Extreme Image Compression using Fine-tuned VQGANs" (Mao et al., DCC 2024) clusters the codebook of
a trained VQGAN into K = 8 ... 2048 centroids, one bitrate level each, and fine-tunes each level's
codebook and the 1x1 ``quant_conv``/``post_quant_conv`` with the encoder and decoder frozen.  The
paper codes the indices with a uniform distribution (log2 K bits each); here every level carries a
learned prior (a frequency table plus a checkerboard context model over neighbouring indices, see
:class:`LadderLevel`), frozen to integers by :meth:`VQGANCluster.update`, so the real rate is below
log2(K) / 256 bits per pixel.

Tensor names: the base VQGAN keeps the official taming-transformers names (``encoder.*``,
``decoder.*``, ``quantize.embedding.weight``, ``quant_conv.*``, ``post_quant_conv.*``); level ``L``
(1-based; level 1 has the smallest codebook) is ``ladder.{L-1}.codebook``, ``ladder.{L-1}.quant_conv.*``,
``ladder.{L-1}.post_quant_conv.*``, ``ladder.{L-1}.groups`` (codeword groups of the contexts),
``ladder.{L-1}.counts``/``ctx_counts`` (index statistics of the training images) and
``ladder.{L-1}.freq``/``ctx_freq`` (the frozen integer tables).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..entropy import categorical
from ..entropy.tables import frequencies_to_table
from .base import ImageCodecModel
from .config import JSONConfig
from .vqgan import VQGAN, VQGANConfig, nearest_codeword

LADDER_SIZES = tuple(2**b for b in range(3, 12))
"""Codebook sizes of the levels, as in the paper: 8, 16, ..., 2048 (9 levels)."""

PRIOR_SMOOTHING = 0.5
"""Pseudo-count added to every codeword's training count before the table is frozen."""

CONTEXT_GROUPS = 8
"""Codeword groups (K-means of a level's codebook) that make up the contexts of the checkerboard prior."""

CONTEXT_STRENGTH = 32.0
"""Weight (in pseudo-counts) of the level's overall frequencies inside every context's table."""


@dataclass(frozen=True)
class VQGANClusterConfig(JSONConfig):
    """The base VQGAN's architecture and the codebook size of every ladder level (ascending)."""

    vqgan: VQGANConfig = field(default_factory=VQGANConfig)
    sizes: tuple[int, ...] = LADDER_SIZES

    def __post_init__(self) -> None:
        if not self.sizes or any(k < 2 for k in self.sizes) or list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"ladder sizes must be distinct, ascending and >= 2, got {self.sizes}")

def anchors(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Checkerboard mask [height, width]: True where (row + column) is even (coded first, without context)."""
    r = torch.arange(height, device=device).unsqueeze(1)
    c = torch.arange(width, device=device).unsqueeze(0)
    return (r + c) % 2 == 0


def _index_map(indices: Tensor) -> Tensor:
    if indices.dim() != 2:
        raise ValueError(f"expected one index map [h, w], got shape {tuple(indices.shape)}")
    return indices.long().cpu()


class LadderLevel(nn.Module):
    """One bitrate level: a codebook of ``size`` codewords, its own 1x1 convs and its index prior.

    The prior is a two-pass checkerboard model.  Anchors ((row + column) even) are coded with the
    level's frequency table ``freq``; every other index is coded with ``ctx_freq[c]``, where the
    context ``c`` combines the groups of its upper and left neighbours (both anchors, so known to the
    decoder).  ``groups`` maps each codeword to one of ``CONTEXT_GROUPS`` K-means groups of the
    codebook.  All tables are integers frozen by :meth:`update` from training counts.
    """

    def __init__(self, size: int, embed_dim: int, z_channels: int) -> None:
        super().__init__()
        self.n_groups = g = min(size, CONTEXT_GROUPS)
        self.codebook = nn.Parameter(torch.zeros(size, embed_dim))
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.register_buffer("groups", torch.arange(size) % g)
        self.register_buffer("counts", torch.zeros(size))
        self.register_buffer("ctx_counts", torch.zeros((g + 1) ** 2, size))
        self.register_buffer("freq", torch.ones(1, size, dtype=torch.int32))
        self.register_buffer("ctx_freq", torch.ones((g + 1) ** 2, size, dtype=torch.int32))

    @property
    def size(self) -> int:
        """Number of codewords."""
        return self.codebook.shape[0]

    @property
    def n_contexts(self) -> int:
        """Number of contexts: (groups + 1)^2 (the extra group stands for a missing neighbour)."""
        return self.ctx_freq.shape[0]

    def indices(self, features: Tensor) -> Tensor:
        """Nearest-codeword indices [B, h, w] of encoder features [B, z_channels, h, w]."""
        h = self.quant_conv(features)
        b, c, hh, ww = h.shape
        flat = h.permute(0, 2, 3, 1).reshape(-1, c)
        return nearest_codeword(flat, self.codebook.to(flat.dtype)).reshape(b, hh, ww)

    def latent(self, indices: Tensor) -> Tensor:
        """Decoder input [B, z_channels, h, w] of indices [B, h, w]."""
        return self.post_quant_conv(F.embedding(indices.long(), self.codebook).permute(0, 3, 1, 2))

    def contexts(self, indices: Tensor) -> Tensor:
        """Context of every position of ``indices`` [..., h, w] from its upper and left neighbours' groups."""
        g, m = self.groups.cpu()[indices.long().cpu()], self.n_groups  # group m marks a missing neighbour (border)
        left = F.pad(g, (1, 0), value=m)[..., :, :-1]
        up = F.pad(g, (0, 0, 1, 0), value=m)[..., :-1, :]
        return up * (m + 1) + left

    @torch.no_grad()
    def accumulate(self, indices: Tensor) -> None:
        """Add the index statistics of ``indices`` [B, h, w] (training images) to ``counts``/``ctx_counts``."""
        idx = indices.long().cpu()
        self.counts += torch.bincount(idx.flatten(), minlength=self.size).to(self.counts)
        other = ~anchors(*idx.shape[-2:]).expand_as(idx)
        joint = self.contexts(idx)[other] * self.size + idx[other]
        self.ctx_counts += torch.bincount(joint, minlength=self.ctx_counts.numel()).view_as(self.ctx_counts).to(self.ctx_counts)

    def check(self) -> None:
        """Raise ``ValueError`` unless the frozen tables and groups are valid (run on every load)."""
        for name, table in (("freq", self.freq), ("ctx_freq", self.ctx_freq)):
            t = table.long()
            if bool((t < 1).any()) or bool((t.sum(-1) != 1 << 16).any()):
                raise ValueError(f"ladder level of {self.size} codewords: {name} is not a frozen table (run update())")
        if bool((self.groups < 0).any()) or bool((self.groups >= self.n_groups).any()):
            raise ValueError(f"ladder level of {self.size} codewords: context groups outside 0..{self.n_groups - 1}")

    def update(self) -> None:
        """Freeze the counts (plus smoothing) into the integer tables the coder uses."""
        p0 = self.counts.double() + PRIOR_SMOOTHING
        self.freq.copy_(frequencies_to_table(p0.unsqueeze(0)))
        prior = p0 / p0.sum() * CONTEXT_STRENGTH
        self.ctx_freq.copy_(frequencies_to_table(self.ctx_counts.double() + prior))

    def encode(self, indices: Tensor) -> bytes:
        """Entropy-code one index map [h, w]: anchors first, then the others grouped by context."""
        idx = _index_map(indices)
        anchor = anchors(*idx.shape)
        ctx = self.contexts(idx)
        groups = [idx[anchor].numpy()] + [idx[~anchor & (ctx == c)].numpy() for c in range(self.n_contexts)]
        table = torch.cat([self.freq, self.ctx_freq]).cpu().numpy()
        return categorical.encode_groups(groups, table)

    def decode(self, data: bytes, height: int, width: int) -> Tensor:
        """Inverse of :meth:`encode`: the index map [height, width] (int64)."""
        anchor = anchors(height, width)
        idx = torch.zeros(height, width, dtype=torch.long)
        decoder = categorical.GroupDecoder(data)
        idx[anchor] = torch.from_numpy(decoder.decode(self.freq.cpu().numpy(), [int(anchor.sum())])[0])
        ctx = self.contexts(idx)  # every non-anchor's neighbours are anchors, now known
        masks = [~anchor & (ctx == c) for c in range(self.n_contexts)]
        values = decoder.decode(self.ctx_freq.cpu().numpy(), [int(m.sum()) for m in masks])
        for mask, v in zip(masks, values, strict=True):
            idx[mask] = torch.from_numpy(v)
        return idx

    def bits(self, indices: Tensor) -> float:
        """Ideal code length in bits of an index map [h, w] under the frozen tables."""
        idx = _index_map(indices)
        anchor = anchors(*idx.shape)
        p0 = self.freq[0].double() / float(1 << 16)
        pc = self.ctx_freq.double() / float(1 << 16)
        ctx = self.contexts(idx)
        return float(-torch.log2(p0[idx[anchor]]).sum() - torch.log2(pc[ctx[~anchor], idx[~anchor]]).sum())


class VQGANCluster(VQGAN, ImageCodecModel):
    """The VQGAN-cluster codec: ``compress(x, level)`` -> bytes, ``decompress(strings, H, W, level)`` -> image."""

    stream_count = 1
    max_pixels = 1 << 24
    """Largest image (16.7 Mpixel, e.g. 4096 x 4096): the attention blocks are global over all tokens."""

    def __init__(self, config: VQGANClusterConfig | None = None) -> None:
        cluster = config or VQGANClusterConfig()
        super().__init__(cluster.vqgan)
        self.cluster_config = cluster
        cfg = cluster.vqgan
        self.ladder = nn.ModuleList(LadderLevel(k, cfg.embed_dim, cfg.z_channels) for k in cluster.sizes)

    @property
    def levels(self) -> int:
        """Number of bitrate levels."""
        return len(self.ladder)

    @property
    def pad_multiple(self) -> int:
        """Image sides are padded to a multiple of this before coding."""
        return self.config.factor

    def level(self, level: int) -> LadderLevel:
        """The 1-based ``level`` (1 = smallest codebook)."""
        if not 1 <= level <= len(self.ladder):
            raise ValueError(f"level must be in 1..{len(self.ladder)}, got {level}")
        return self.ladder[level - 1]

    def level_meta(self, level: int) -> dict[str, int]:
        """What a file header records about ``level``: its codebook size."""
        return {"codebook_size": self.level(level).size}

    def level_indices(self, x: Tensor, level: int, features: Tensor | None = None) -> Tensor:
        """Indices [B, h, w] of images [B, 3, H, W] in [0, 1] at ``level`` (pass ``features`` to reuse them)."""
        return self.level(level).indices(self.features(x) if features is None else features)

    def level_decode(self, indices: Tensor, level: int, size: tuple[int, int] | None = None) -> Tensor:
        """Images [B, 3, H, W] in [0, 1] of indices [B, h, w] at ``level``, cropped to ``size``."""
        return self.latent_decode(self.level(level).latent(indices), size)

    def latent_decode(self, latent: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Images [B, 3, H, W] in [0, 1] of decoder inputs [B, z_channels, h, w], cropped to ``size``."""
        y = ((self.decoder(latent) + 1) / 2).clamp(0, 1)
        return y if size is None else y[..., : size[0], : size[1]]

    def update(self) -> None:
        """Freeze every level's index prior into its integer table."""
        for lv in self.ladder:
            lv.update()

    def check(self) -> None:
        """Raise ``ValueError`` unless every level's tables are valid (the registry runs this on load)."""
        for lv in self.ladder:
            lv.check()

    def compress(self, x: Tensor, level: int | None = None, features: Tensor | None = None) -> list[bytes]:
        """Entropy-coded indices (one stream) of one image [1, 3, H, W] (sides multiples of ``pad_multiple``).

        Resilient files code the same indices as packets instead (:mod:`codec.image.resilient`).
        """
        lv = self.level(level)
        return [lv.encode(lv.indices(self.features(x) if features is None else features)[0])]

    def decompress(self, strings: list[bytes], height: int, width: int, level: int | None = None) -> Tensor:
        """Inverse of :meth:`compress`: the image [1, 3, height, width] in [0, 1]."""
        lv = self.level(level)
        h, w = math.ceil(height / self.pad_multiple), math.ceil(width / self.pad_multiple)
        return self.level_decode(lv.decode(strings[0], h, w).unsqueeze(0).to(lv.codebook.device), level, (height, width))

    def uniform_bpp(self, level: int, height: int, width: int) -> float:
        """The paper's rate: log2(K) bits per index, per pixel of a ``height`` x ``width`` image."""
        tokens = math.ceil(height / self.pad_multiple) * math.ceil(width / self.pad_multiple)
        return math.log2(self.level(level).size) * tokens / (height * width)
