"""Lost-index recovery for VQGAN-cluster: a bidirectional (MaskGIT-style) transformer over the index grid.

One network serves every ladder level: each level's codewords get their own rows of one token
embedding (plus a [MASK] token), a level embedding is added, and the output head's columns are
sliced per level.  Positions are fixed 2-D sinusoids (half the channels for the row, half for the
column), so a network trained on small windows applies to index maps of any size.

:meth:`RecoveryTransformer.recover` fills the missing positions of an index map iteratively, as
MaskGIT decodes: predict every missing index, keep the most confident ones (a cosine schedule says
how many stay missing after each step), and repeat with them as context.  It is deterministic
(argmax, no sampling) and never changes a known index.
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
    dim: int = 128
    depth: int = 4
    heads: int = 4

    def __post_init__(self) -> None:
        if not self.sizes or self.dim % self.heads or self.dim % 4 or min(self.dim, self.depth, self.heads) < 1:
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


TINY = RecoveryConfig(sizes=(4, 8, 16), dim=32, depth=1, heads=2)
"""Seconds-scale configuration for tests (matches the tiny ladder)."""


class RecoveryTransformer(nn.Module):
    """``forward(indices, known, level)`` -> logits over the level's codewords at every position."""

    def __init__(self, config: RecoveryConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or RecoveryConfig()
        self.register_buffer("offsets", torch.tensor([0, *torch.tensor(cfg.sizes).cumsum(0).tolist()]), persistent=False)
        self.mask_token = sum(cfg.sizes)
        self.tokens = nn.Embedding(sum(cfg.sizes) + 1, cfg.dim)
        self.level = nn.Embedding(len(cfg.sizes), cfg.dim)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, sum(cfg.sizes))
        for emb in (self.tokens, self.level):
            nn.init.normal_(emb.weight, std=0.02)

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

    def forward(self, indices: Tensor, known: Tensor, level: int) -> Tensor:
        """Logits [B, h, w, K] for index maps [B, h, w] whose ``known`` [B, h, w] positions are given."""
        self._check(level)
        b, h, w = indices.shape
        lo, hi = int(self.offsets[level - 1]), int(self.offsets[level])
        tok = torch.where(known, indices.long().clamp(0, hi - lo - 1) + lo, torch.full_like(indices, self.mask_token))
        x = self.tokens(tok) + self.positions(h, w) + self.level.weight[level - 1]
        x = self.norm(self.blocks(x.reshape(b, h * w, -1)))
        return (x @ self.head.weight[lo:hi].t() + self.head.bias[lo:hi]).reshape(b, h, w, hi - lo)

    @torch.no_grad()
    def recover(self, indices: Tensor, known: Tensor, level: int, steps: int = 8) -> Tensor:
        """``indices`` [h, w] with every unknown position filled; known positions are kept as they are."""
        self._check(level)
        idx, known = indices.clone().long(), known.clone().bool()
        total = int((~known).sum())
        for step in range(steps):
            missing = ~known
            if not missing.any():
                break
            probs = self(idx[None], known[None], level)[0].softmax(-1)
            conf, best = probs.max(-1)
            keep_missing = 0 if step == steps - 1 else math.floor(total * math.cos(math.pi / 2 * (step + 1) / steps))
            reveal = max(1, int(missing.sum()) - keep_missing)
            conf = torch.where(missing, conf, torch.full_like(conf, -1.0))
            order = torch.argsort(conf.flatten(), descending=True, stable=True)[:reveal]
            idx.view(-1)[order] = best.flatten()[order]
            known.view(-1)[order] = True
        return idx


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
