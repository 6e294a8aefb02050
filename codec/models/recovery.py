"""Lost-index recovery for VQGAN-cluster: a bidirectional (MaskGIT-style) transformer over the index grid.

One network serves every ladder level, and it works in the geometry of the codebooks rather than on
bare symbols: it holds a copy of every level's *codewords* as the decoder sees them (the codebook
through the level's ``post_quant_conv``, buffer ``codewords``, divided by one common ``scale`` so
they have unit variance).

* Input: a known index enters as a linear projection of its codeword.  A missing one enters as the
  projection of a first guess, the mean of its received neighbours (:func:`interpolate_holes`, grown
  outwards ring by ring for larger holes), plus a learned [MASK] vector.  A level embedding and fixed
  2-D sinusoidal positions are added (half the channels for the row, half for the column, so a
  network trained on small windows applies to index maps of any size).
* Output: at every position a *point* in codeword space, the first guess plus a learned correction
  (zero at initialization, so a fresh network already predicts the interpolation), trained towards
  the true codeword and towards what the decoder makes of it (squared errors of the point and of
  the decoded pixels, see :mod:`codec.training.recovery`).
  The logit of codeword ``k`` is its negative squared distance to that point (per channel) times a
  learned per-level sharpness, so neighbouring codewords share evidence and one head serves
  codebooks of 8 to 2048 entries; the distribution says how certain the point is.

:meth:`RecoveryTransformer.recover` fills the missing positions of an index map iteratively, as
MaskGIT decodes: predict every missing position, keep the most certain ones (smallest expected
squared distance of the codewords from the point; a cosine schedule says how many stay missing
after each step), and repeat with their points as context.  The decoder is fed the points
themselves (:meth:`RecoveryTransformer.restore`), not the nearest codewords: between codewords lies
a better estimate than any single one of them.  It is deterministic (no sampling) and never changes
a known position.  Attention memory grows with the square of the token count, so maps of more than
``window_tokens`` tokens (64 x 64, a 1024 x 1024 image) are restored in overlapping windows: every
``tile`` x ``tile`` block with a missing position from its own window, the block plus ``margin``
tokens of context on each side (the network was trained on 16 x 16 windows; attending over a whole
4096 x 4096 image would take 64 GB).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_weights
from ..errors import ModelError
from .config import JSONConfig
from .vqgan_cluster import LADDER_SIZES


@dataclass(frozen=True)
class RecoveryConfig(JSONConfig):
    """Codebook sizes of the ladder it serves, and the transformer's size."""

    sizes: tuple[int, ...] = field(default=LADDER_SIZES)
    code_dim: int = 64
    dim: int = 128
    depth: int = 4
    heads: int = 4

    def __post_init__(self) -> None:
        if not self.sizes or self.dim % self.heads or self.dim % 4 or min(self.code_dim, self.dim, self.depth, self.heads) < 1:
            raise ValueError(f"invalid recovery config: {self}")

TINY = RecoveryConfig(sizes=(4, 8, 16), code_dim=8, dim=32, depth=1, heads=2)
"""Seconds-scale configuration for tests (matches the tiny ladder)."""


class RecoveryTransformer(nn.Module):
    """``forward(indices, known, level)`` -> (logits over the level's codewords, points) at every position.

    Build it for a ladder with :meth:`for_ladder` (a bare constructor leaves the codewords at zero,
    to be filled by loading weights).
    """

    window_tokens = 64 * 64
    """Largest map (in tokens) :meth:`recover` restores in one pass; larger ones go window by window."""
    tile, margin = 32, 8
    """Side of the blocks a large map is restored in, and the context (tokens) each block's window adds per side."""

    def __init__(self, config: RecoveryConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or RecoveryConfig()
        self.register_buffer("offsets", torch.tensor([0, *torch.tensor(cfg.sizes).cumsum(0).tolist()]), persistent=False)
        self.register_buffer("codewords", torch.zeros(sum(cfg.sizes), cfg.code_dim))
        self.register_buffer("scale", torch.ones(()))
        self.embed = nn.Linear(cfg.code_dim, cfg.dim)
        self.mask = nn.Parameter(torch.zeros(cfg.dim))
        self.level = nn.Embedding(len(cfg.sizes), cfg.dim)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.code_dim)
        self.sharpness = nn.Parameter(torch.zeros(len(cfg.sizes)))
        nn.init.zeros_(self.head.weight)  # a fresh network predicts the interpolation itself
        nn.init.zeros_(self.head.bias)
        nn.init.normal_(self.level.weight, std=0.02)
        nn.init.normal_(self.mask, std=0.02)

    @classmethod
    def for_ladder(cls, ladder: nn.ModuleList, config: RecoveryConfig | None = None) -> RecoveryTransformer:
        """A new network holding the codewords of ``ladder`` (a VQGAN-cluster's ``ladder`` of levels)."""
        net = cls(config)
        sizes = tuple(lv.size for lv in ladder)
        if sizes != net.config.sizes:
            raise ValueError(f"ladder has codebook sizes {sizes}, the recovery config {net.config.sizes}")
        with torch.no_grad():
            words = torch.cat([lv.post_quant_conv(lv.codebook.detach()[:, :, None, None])[:, :, 0, 0] for lv in ladder])
        if words.shape[1] != net.config.code_dim:
            raise ValueError(f"ladder codewords have {words.shape[1]} channels, the recovery config {net.config.code_dim}")
        net.scale.copy_(words.std().clamp_min(1e-8))  # unit scale, whatever the latent's
        net.codewords.copy_(words / net.scale)
        return net

    def _check(self, level: int) -> None:
        if not 1 <= level <= len(self.config.sizes):
            raise ValueError(f"level must be in 1..{len(self.config.sizes)}, got {level}")

    def positions(self, height: int, width: int) -> Tensor:
        """Fixed 2-D sinusoidal position codes [height, width, dim]."""
        quarter = self.config.dim // 4
        freq = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=self.head.weight.device) / quarter)

        def axis(n: int) -> Tensor:
            angle = torch.arange(n, device=freq.device).unsqueeze(1) * freq
            return torch.cat([angle.sin(), angle.cos()], 1)

        rows, cols = axis(height), axis(width)
        return torch.cat([rows.unsqueeze(1).expand(-1, width, -1), cols.unsqueeze(0).expand(height, -1, -1)], 2)

    def words(self, level: int) -> Tensor:
        """The unit-scaled decoder codewords [K, code_dim] of ``level``."""
        self._check(level)
        return self.codewords[int(self.offsets[level - 1]) : int(self.offsets[level])]

    def forward(self, indices: Tensor, known: Tensor, level: int) -> tuple[Tensor, Tensor]:
        """Logits [B, h, w, K] and points [B, h, w, code_dim] for index maps [B, h, w] whose ``known``
        [B, h, w] positions are given."""
        words = self.words(level)
        return self.predict(words[indices.long().clamp(0, len(words) - 1)], known, level)

    def predict(self, given: Tensor, known: Tensor, level: int) -> tuple[Tensor, Tensor]:
        """:meth:`forward` on codeword-space inputs [B, h, w, code_dim] (valid where ``known``)."""
        b, h, w, _ = given.shape
        words = self.words(level)
        guess = interpolate_holes(given, known)
        x = torch.where(known.unsqueeze(-1), self.embed(given), self.embed(guess) + self.mask)
        x = x + self.positions(h, w) + self.level.weight[level - 1]
        point = guess + self.head(self.norm(self.blocks(x.reshape(b, h * w, -1)))).reshape(b, h, w, -1)
        # -|point - word|^2 up to a per-position constant (softmax-equivalent), per channel so that a
        # fresh network starts with soft distributions whatever ``code_dim`` is
        logits = (2 * point @ words.t() - words.square().sum(1)) / words.shape[1]
        return logits * self.sharpness[level - 1].exp(), point

    @torch.no_grad()
    def recover(self, indices: Tensor, known: Tensor, level: int, steps: int = 8) -> tuple[Tensor, Tensor]:
        """Indices [h, w] (the codeword nearest to each point) and points [h, w, code_dim] (unit
        scale) of an index map [h, w] whose unknown positions are restored; known ones are kept.

        Each step predicts every missing position and keeps those whose distribution has the
        smallest spread (expected squared distance of the codewords from the point); a cosine
        schedule says how many stay missing for the next step, which sees the kept points as given.
        Maps larger than ``window_tokens`` are restored block by block (see the module docstring).
        """
        h, w = indices.shape
        known = known.bool()
        if h * w <= self.window_tokens:
            return self._recover_window(indices, known, level, steps)
        words = self.words(level)
        out_indices = indices.long().clone()
        out_points = words[out_indices.clamp(0, len(words) - 1)]
        for top in range(0, h, self.tile):
            for left in range(0, w, self.tile):
                block = (slice(top, top + self.tile), slice(left, left + self.tile))
                if known[block].all():
                    continue
                rows = slice(max(0, top - self.margin), min(h, top + self.tile + self.margin))
                cols = slice(max(0, left - self.margin), min(w, left + self.tile + self.margin))
                got, points = self._recover_window(indices[rows, cols], known[rows, cols], level, steps)
                inner = (slice(top - rows.start, top - rows.start + self.tile), slice(left - cols.start, left - cols.start + self.tile))
                out_indices[block], out_points[block] = got[inner], points[inner]
        return out_indices, out_points

    def _recover_window(self, indices: Tensor, known: Tensor, level: int, steps: int) -> tuple[Tensor, Tensor]:
        """:meth:`recover` of one map in a single pass (attention over all its tokens)."""
        words = self.words(level)
        given = words[indices.long().clamp(0, len(words) - 1)]
        received, known = known.bool(), known.clone().bool()
        total = int((~known).sum())
        for step in range(steps):
            missing = ~known
            if not missing.any():
                break
            logits, point = self.predict(given[None], known[None], level)
            distance = (point[0].square().sum(-1, keepdim=True) - 2 * point[0] @ words.t() + words.square().sum(1)).clamp_min(0)
            spread = (logits[0].softmax(-1) * distance).sum(-1)
            keep_missing = 0 if step == steps - 1 else math.floor(total * math.cos(math.pi / 2 * (step + 1) / steps))
            reveal = max(1, int(missing.sum()) - keep_missing)
            spread = torch.where(missing, spread, torch.full_like(spread, math.inf))
            order = torch.argsort(spread.flatten(), stable=True)[:reveal]
            given.view(-1, given.shape[-1])[order] = point[0].reshape(-1, given.shape[-1])[order]
            known.view(-1)[order] = True
        nearest = indices.long().clone()
        if not received.all():
            nearest[~received] = torch.cdist(given[~received], words).argmin(-1)
        return nearest, given

    def restore(self, indices: Tensor, known: Tensor, level: int) -> Tensor:
        """The decoder input [1, code_dim, h, w] of an index map [h, w] with its unknown positions
        restored (:meth:`recover`'s points, back at the decoder's scale)."""
        return self.decoder_input(self.recover(indices, known, level)[1])

    def decoder_input(self, points: Tensor) -> Tensor:
        """Points [h, w, code_dim] in the unit-scaled codeword space as a decoder input [1, code_dim, h, w]."""
        return self.decoder_input_batch(points[None])

    def decoder_input_batch(self, points: Tensor) -> Tensor:
        """Points [B, h, w, code_dim] in the unit-scaled codeword space as decoder inputs [B, code_dim, h, w]."""
        return (points * self.scale).permute(0, 3, 1, 2)


def interpolate_holes(values: Tensor, known: Tensor) -> Tensor:
    """``values`` [B, h, w, C] with every unknown position replaced by the mean of its known (or
    already filled) 8-neighbours, filling holes from their border inwards, one ring per pass; a map
    with no known position becomes zeros."""
    b, h, w, c = values.shape
    have = known.unsqueeze(1).to(values.dtype)
    x = values.permute(0, 3, 1, 2) * have
    ones = torch.ones(1, 1, 3, 3, dtype=values.dtype, device=values.device)
    for _ in range(max(h, w)):
        missing = have == 0
        if not missing.any():
            break
        count = F.conv2d(have, ones, padding=1)
        grow = missing & (count > 0)
        if not grow.any():
            break
        total = F.conv2d(x, ones.expand(c, 1, 3, 3), padding=1, groups=c)
        x = torch.where(grow, total / count.clamp_min(1), x)
        have = torch.where(grow, torch.ones_like(have), have)
    return x.permute(0, 2, 3, 1)


def load_recovery(path: str | os.PathLike) -> tuple[RecoveryTransformer, str]:
    """A trained recovery transformer (eval mode) and the weights hash of the ladder it was trained on."""
    tensors, meta = load_weights(path)
    if meta.get("model") != "recovery":
        raise ModelError(f"{path} does not hold recovery-transformer weights")
    if "scale" not in tensors:
        raise ModelError(f"{path} holds recovery weights of an older design (they predicted indices, not decoder inputs); retrain them with codec train recovery")
    try:
        config = RecoveryConfig.from_dict(json.loads(meta["config"]))
        _check_shapes(config, tensors)  # before building: a forged config must not allocate more than the file holds
        net = RecoveryTransformer(config)
        net.load_state_dict(tensors)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"recovery weights {path} do not load: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    return net.eval(), meta.get("ladder_hash", "")


def _check_shapes(config: RecoveryConfig, tensors: dict[str, Tensor]) -> None:
    """ValueError unless ``tensors`` have the codebook, width and depth that ``config`` says."""
    expected = {"codewords": (sum(config.sizes), config.code_dim), "embed.weight": (config.dim, config.code_dim),
                "level.weight": (len(config.sizes), config.dim)}
    layers = {name.split(".")[2] for name in tensors if name.startswith("blocks.layers.")}
    for name, shape in expected.items():
        if name not in tensors or tuple(tensors[name].shape) != shape:
            raise ValueError(f"{name} does not have the shape {shape} of the stored config")
    if len(layers) != config.depth:
        raise ValueError(f"{len(layers)} transformer layers stored, the config says {config.depth}")
