"""Lost-index recovery for VQGAN-cluster: a bidirectional (MaskGIT-style) transformer over the index grid.

One network serves every ladder level, and it works in the geometry of the codebooks rather than on
bare symbols: it holds a copy of every level's *codewords* as the decoder sees them (the codebook
through the level's ``post_quant_conv``, buffer ``codewords``, scaled to unit variance).

* Input: a known index enters as a linear projection of its codeword.  A missing one enters as the
  projection of a first guess, the linear interpolation of the codewords above and below it in its
  column (lost packets are whole rows, so this is what a non-learned concealment would do), plus a
  learned [MASK] vector.  A level embedding and fixed 2-D sinusoidal positions are added (half the
  channels for the row, half for the column, so a network trained on small windows applies to index
  maps of any size).
* Output: at every position a point in codeword space, the first guess plus a learned correction
  (zero at initialization, so a fresh network already predicts the interpolation).  The logit of
  codeword ``k`` is its negative squared distance to that point (per channel) times a learned
  per-level sharpness.  So neighbouring codewords share evidence, one head serves codebooks of 8 to
  2048 entries, and a near miss decodes to a similar image patch.

:meth:`RecoveryTransformer.recover` fills the missing positions of an index map iteratively, as
MaskGIT decodes: predict every missing index, keep the most certain ones (a cosine schedule says how
many stay missing after each step), and repeat with them as context.  The choice at a position is
the codeword nearest to the predicted distribution's mean (least expected squared error in the
decoder's input, rather than MaskGIT's most probable codeword, which at K = 2048 is rarely the
right one and often far from it).  It is deterministic (no sampling) and never changes a known index.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ..checkpoint import load_weights
from ..errors import ModelError
from .vqgan_cluster import LADDER_SIZES


@dataclass(frozen=True)
class RecoveryConfig:
    """Codebook sizes of the ladder it serves, and the transformer's size."""

    sizes: tuple[int, ...] = field(default=LADDER_SIZES)
    code_dim: int = 64
    dim: int = 128
    depth: int = 4
    heads: int = 4

    def __post_init__(self) -> None:
        if not self.sizes or self.dim % self.heads or self.dim % 4 or min(self.code_dim, self.dim, self.depth, self.heads) < 1:
            raise ValueError(f"invalid recovery config: {self}")

    def to_dict(self) -> dict:
        """JSON-serializable form (stored in checkpoints)."""
        return {**asdict(self), "sizes": list(self.sizes)}

    @classmethod
    def from_dict(cls, d: dict) -> RecoveryConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        if "sizes" in d:
            d["sizes"] = tuple(int(k) for k in d["sizes"])
        return cls(**d)


TINY = RecoveryConfig(sizes=(4, 8, 16), code_dim=8, dim=32, depth=1, heads=2)
"""Seconds-scale configuration for tests (matches the tiny ladder)."""


class RecoveryTransformer(nn.Module):
    """``forward(indices, known, level)`` -> logits over the level's codewords at every position.

    Build it for a ladder with :meth:`for_ladder` (a bare constructor leaves the codewords at zero,
    to be filled by loading weights).
    """

    def __init__(self, config: RecoveryConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or RecoveryConfig()
        self.register_buffer("offsets", torch.tensor([0, *torch.tensor(cfg.sizes).cumsum(0).tolist()]), persistent=False)
        self.register_buffer("codewords", torch.zeros(sum(cfg.sizes), cfg.code_dim))
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
        net.codewords.copy_(words / words.std().clamp_min(1e-8))  # unit scale, whatever the latent's
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

    def forward(self, indices: Tensor, known: Tensor, level: int) -> Tensor:
        """Logits [B, h, w, K] for index maps [B, h, w] whose ``known`` [B, h, w] positions are given."""
        b, h, w = indices.shape
        words = self.words(level)
        given = words[indices.long().clamp(0, len(words) - 1)]
        guess = interpolate_columns(given, known)
        x = torch.where(known.unsqueeze(-1), self.embed(given), self.embed(guess) + self.mask)
        x = x + self.positions(h, w) + self.level.weight[level - 1]
        point = guess + self.head(self.norm(self.blocks(x.reshape(b, h * w, -1)))).reshape(b, h, w, -1)
        # -|point - word|^2 up to a per-position constant (softmax-equivalent), per channel so that a
        # fresh network starts with soft distributions whatever ``code_dim`` is
        logits = (2 * point @ words.t() - words.square().sum(1)) / words.shape[1]
        return logits * self.sharpness[level - 1].exp()

    @torch.no_grad()
    def recover(self, indices: Tensor, known: Tensor, level: int, steps: int = 8) -> Tensor:
        """``indices`` [h, w] with every unknown position filled; known positions are kept as they are.

        Each step picks, at every missing position, the codeword nearest to the predicted
        distribution's mean codeword (the choice of least expected squared error in the decoder's
        input space), and keeps those whose distribution has the smallest spread (expected squared
        distance from that mean); a cosine schedule says how many stay missing for the next step.
        """
        words = self.words(level)
        idx, known = indices.clone().long(), known.clone().bool()
        total = int((~known).sum())
        for step in range(steps):
            missing = ~known
            if not missing.any():
                break
            probs = self(idx[None], known[None], level)[0].softmax(-1)
            mean = probs @ words
            distance = (mean.square().sum(-1, keepdim=True) - 2 * mean @ words.t() + words.square().sum(1)).clamp_min(0)
            best = distance.argmin(-1)
            spread = (probs * distance).sum(-1)
            keep_missing = 0 if step == steps - 1 else math.floor(total * math.cos(math.pi / 2 * (step + 1) / steps))
            reveal = max(1, int(missing.sum()) - keep_missing)
            spread = torch.where(missing, spread, torch.full_like(spread, math.inf))
            order = torch.argsort(spread.flatten(), stable=True)[:reveal]
            idx.view(-1)[order] = best.flatten()[order]
            known.view(-1)[order] = True
        return idx


def interpolate_columns(values: Tensor, known: Tensor) -> Tensor:
    """``values`` [B, h, w, C] with every unknown position replaced by linear interpolation between
    the nearest known positions above and below in its column (the nearest one at a border; the
    mean of the map's known values in a column with none)."""
    b, h, w, _ = values.shape
    rows = torch.arange(h, device=values.device).view(1, h, 1).expand(b, h, w)
    above = torch.where(known, rows, -1).cummax(1).values
    below = torch.where(known, rows, h).flip(1).cummin(1).values.flip(1)
    above, below = torch.where(above < 0, below, above), torch.where(below >= h, above, below)
    t = ((rows - above) / (below - above).clamp_min(1)).unsqueeze(-1).to(values.dtype)

    def take(r: Tensor) -> Tensor:
        return values.gather(1, r.clamp(0, h - 1).unsqueeze(-1).expand_as(values))

    filled = (1 - t) * take(above) + t * take(below)
    weight = known.unsqueeze(-1).to(values.dtype)
    mean = (values * weight).sum((1, 2), keepdim=True) / weight.sum((1, 2), keepdim=True).clamp_min(1)
    empty = (above >= h).unsqueeze(-1)  # no known position in the whole column
    return torch.where(known.unsqueeze(-1), values, torch.where(empty, mean, filled))


def load_recovery(path: str | os.PathLike) -> tuple[RecoveryTransformer, str]:
    """A trained recovery transformer (eval mode) and the weights hash of the ladder it was trained on."""
    tensors, meta = load_weights(path)
    if meta.get("model") != "recovery":
        raise ModelError(f"{path} does not hold recovery-transformer weights")
    try:
        net = RecoveryTransformer(RecoveryConfig.from_dict(json.loads(meta["config"])))
        net.load_state_dict(tensors)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"recovery weights {path} do not load: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    return net.eval(), meta.get("ladder_hash", "")
