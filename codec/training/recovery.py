"""Training task of the lost-index recovery transformer: masked-token prediction on VQGAN-cluster index maps.

The index maps of every training image at every trained level are computed once with the ladder
(``--ladder``, default the shipped ``vqgan``).  Each batch takes random ``crop`` x ``crop`` token
windows of one random level and hides part of them, MaskGIT-style: a mask ratio uniform in (0, 0.5]
(the range the iterative decoder meets on channels that lose up to about half the packets), shaped
as lost packets (runs of whole rows; half of all masks, since that is what a damaged file loses),
scattered tokens or a block.  The loss is cross-entropy on the hidden positions.  Validation, on
whole validation images at 20 % packet loss: index accuracy, and the mean squared distance of the
chosen codewords from the true ones (in the network's unit-scaled codeword space, the decoder's
input), each beside the same for filling with the image's most frequent index.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import registry
from ..data import list_images, load_rgb
from ..errors import InputError
from ..models.recovery import RecoveryConfig, RecoveryTransformer
from ..resilient import row_ranges

PACKET_ROWS = 2  # rows per packet of the validation's simulated losses
VALIDATION_LOSS = 0.2
MAX_MASK_RATIO = 0.5


@torch.no_grad()
def index_maps(ladder: str | Path | None, folder: str | Path, levels: tuple[int, ...], limit: int | None = None) -> dict[int, list[Tensor]]:
    """Index maps [h, w] of the images in ``folder`` at each level (one encoder pass per image)."""
    net = registry.load("vqgan", 1, ladder).model
    maps: dict[int, list[Tensor]] = {lv: [] for lv in levels}
    for path in list_images(folder)[:limit]:
        x = load_rgb(path).float().div(255.0).unsqueeze(0)
        features = net.features(x)
        for lv in levels:
            maps[lv].append(net.level_indices(x, lv, features)[0])
    return maps


def packet_loss_mask(h: int, w: int, fraction: float, rows: int, generator: torch.Generator) -> Tensor:
    """``known`` [h, w]: whole packets of ``rows`` rows lost, about ``fraction`` of them (at least one)."""
    ranges = row_ranges(h, rows)
    lost = torch.rand(len(ranges), generator=generator) < fraction
    if not lost.any():
        lost[int(torch.randint(len(ranges), (1,), generator=generator))] = True
    known = torch.ones(h, w, dtype=torch.bool)
    for (r0, r1), gone in zip(ranges, lost.tolist(), strict=True):
        if gone:
            known[r0:r1] = False
    return known


def random_mask(h: int, w: int, generator: torch.Generator) -> Tensor:
    """A training ``known`` mask: packet-shaped (half the time), scattered or block; ratio uniform in (0, 0.5]."""
    ratio = max(1.0 / (h * w), MAX_MASK_RATIO * float(torch.rand(1, generator=generator)))
    kind = int(torch.randint(4, (1,), generator=generator))
    if kind == 0:
        known = torch.rand(h, w, generator=generator) >= ratio
    elif kind < 3:
        known = packet_loss_mask(h, w, ratio, int(torch.randint(1, 4, (1,), generator=generator)), generator)
    else:
        bh, bw = max(1, round(h * math.sqrt(ratio))), max(1, round(w * math.sqrt(ratio)))
        y, x = int(torch.randint(h - bh + 1, (1,), generator=generator)), int(torch.randint(w - bw + 1, (1,), generator=generator))
        known = torch.ones(h, w, dtype=torch.bool)
        known[y : y + bh, x : x + bw] = False
    if known.all():
        known.view(-1)[int(torch.randint(h * w, (1,), generator=generator))] = False
    return known


class IndexCrops:
    """Batches [B, 3, crop, crop] (int64): channel 0 indices, 1 the known mask, 2 the level (constant)."""

    def __init__(self, maps: dict[int, list[Tensor]], crop: int, seed: int) -> None:
        self.maps = {lv: [m for m in ms if min(m.shape) >= 1] for lv, ms in maps.items()}
        self.levels = sorted(self.maps)
        self.crop = crop
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, size: int) -> Tensor:
        """One random level; random windows (maps smaller than ``crop`` are tiled by wrapping)."""
        g, c = self.generator, self.crop
        level = self.levels[int(torch.randint(len(self.levels), (1,), generator=g))]
        out = torch.empty(size, 3, c, c, dtype=torch.long)
        for i in range(size):
            m = self.maps[level][int(torch.randint(len(self.maps[level]), (1,), generator=g))]
            y, x = int(torch.randint(m.shape[0], (1,), generator=g)), int(torch.randint(m.shape[1], (1,), generator=g))
            rows = (torch.arange(c) + y) % m.shape[0]
            cols = (torch.arange(c) + x) % m.shape[1]
            out[i, 0] = m[rows][:, cols]
            out[i, 1] = random_mask(c, c, g).long()
            out[i, 2] = level
        return out


class RecoveryTask:
    """Plugs the recovery transformer into :func:`codec.training.trainer.train`."""

    name = "recovery"

    def __init__(self, config: RecoveryConfig, ladder: str | Path | None = None, levels: tuple[int, ...] | None = None) -> None:
        self.config = config
        self.ladder = ladder
        self.levels = levels or tuple(range(1, len(config.sizes) + 1))
        self._ladder_hash: str | None = None

    def build(self) -> nn.Module:
        """A new recovery transformer holding the ladder's codewords."""
        loaded = registry.load("vqgan", 1, self.ladder)
        try:
            net = RecoveryTransformer.for_ladder(loaded.model.ladder, self.config)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self._ladder_hash = loaded.weights_hash
        return net

    def sampler(self, data: str | Path, crop: int, seed: int) -> IndexCrops:
        """Random windows of the training images' index maps."""
        return IndexCrops(index_maps(self.ladder, data, self.levels), crop, seed)

    def validation_data(self, val: str | Path | None, data: str | Path, limit: int) -> list[tuple[int, Tensor]]:
        """(level, index map) of the first ``limit`` validation images at every level."""
        if not val:
            return []
        maps = index_maps(self.ladder, val, self.levels, limit)
        return [(lv, m) for lv, ms in maps.items() for m in ms]

    def first_batch(self, model: nn.Module, batch: Tensor, loaded: set[str]) -> None:
        """Nothing data-dependent to initialize."""

    def loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy of the hidden positions."""
        indices, known, level = batch[:, 0], batch[:, 1].bool(), int(batch[0, 2, 0, 0])
        logits = model(indices, known, level)
        hidden = ~known
        loss = F.cross_entropy(logits[hidden], indices[hidden])
        acc = (logits[hidden].argmax(-1) == indices[hidden]).float().mean()
        return loss, {"loss": loss.item(), "acc": acc.item(), "level": float(level)}

    def after_step(self, model: nn.Module, batch: Tensor, step: int, total: int) -> dict[str, float]:
        """No housekeeping."""
        return {}

    @torch.no_grad()
    def validate(self, model: nn.Module, items: list[tuple[int, Tensor]]) -> dict[str, float]:
        """Index accuracy and codeword distance at 20 % packet loss (fixed seed) of iterative recovery
        and of filling every lost index with the image's most frequent received one (a naive baseline)."""
        model.eval()
        device = next(model.parameters()).device
        g = torch.Generator().manual_seed(0)
        sums = dict.fromkeys(("index_acc", "naive_acc", "dist", "naive_dist"), 0.0)
        total = 0
        for level, m in items:
            known = packet_loss_mask(*m.shape, VALIDATION_LOSS, PACKET_ROWS, g)
            got = model.recover(m.to(device), known.to(device), level).cpu()
            mode = torch.bincount(m[known], minlength=self.config.sizes[level - 1]).argmax().expand(m.shape)
            words = model.codewords[int(model.offsets[level - 1]) : int(model.offsets[level])].cpu()
            lost, truth = ~known, words[m[~known]]
            for acc, dist, guess in (("index_acc", "dist", got), ("naive_acc", "naive_dist", mode)):
                sums[acc] += float((guess[lost] == m[lost]).sum())
                sums[dist] += float((words[guess[lost]] - truth).square().sum(1).sum())
            total += int(lost.sum())
        return {k: v / max(1, total) for k, v in sums.items()}

    def freeze(self, model: nn.Module) -> None:
        """No entropy model."""

    def export_metadata(self) -> dict[str, Any]:
        """Model name, configuration and the weights hash of the ladder it was trained on."""
        return {"model": self.name, "config": self.config.to_dict(), "ladder_hash": self._ladder_hash or ""}
