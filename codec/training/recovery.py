"""Training task of the lost-index recovery transformer: masked-token prediction on VQGAN-cluster index maps.

The index maps of every training image at every trained level are computed once with the ladder
(``--ladder``, default the shipped ``vqgan``).  Each batch takes random ``crop`` x ``crop`` token
windows of one random level and hides part of them, MaskGIT-style: a mask ratio uniform below 0.5 (at least one token)
(the range the iterative decoder meets on channels that lose up to about half the packets), shaped
as lost packets (the dispersed layout of new files, and whole rows as in older ones; half of all
masks, since that is what a damaged file loses), scattered tokens or a block.  The loss on the hidden
positions is the squared distance of the predicted point from the true codeword (per channel, unit
scale; what the decoder is fed) plus ``CE_WEIGHT`` times the cross-entropy of the codeword
distribution (which orders the iterative decoding) plus ``pixel_weight`` times a pixel term: the
ladder's frozen decoder decodes a window of the restored and of the true decoder inputs, and their
squared difference is penalized.  The pixel term is what makes the network better than its own
first guess in the image: squared error in codeword space alone gave points closer to the true
codewords than the interpolation but decoded 0.2-0.35 dB worse (the decoder is far from linear).
``{"loss": {"pixel_weight": W}}`` in ``--config`` sets its weight.  Validation, on whole validation images at 20 %
packet loss in the layout of new files: the mean squared distance of the restored points from the
true codewords, and index accuracy, each beside the same for the network's first guess
(interpolation of the received neighbours) and for filling with the image's most frequent index.
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
from ..image.resilient import LATTICE, PacketLayout
from ..models.recovery import RecoveryConfig, RecoveryTransformer, interpolate_holes

VALIDATION_LAYOUT = PacketLayout(2, LATTICE)  # packets of the validation's simulated losses
CE_WEIGHT = 0.1
PIXEL_WEIGHT = 10000.0
PIXEL_WINDOW = 8  # token window (128 x 128 pixels at f16) of the pixel term, at the centre of the crop
PIXEL_SAMPLES = 2  # crops of each batch that the pixel term decodes
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


def packet_loss_mask(h: int, w: int, fraction: float, layout: PacketLayout, generator: torch.Generator) -> Tensor:
    """``known`` [h, w]: whole packets of ``layout`` lost, about ``fraction`` of them (at least one)."""
    slices = layout.slices(h, w)
    lost = torch.rand(len(slices), generator=generator) < fraction
    if not lost.any():
        lost[int(torch.randint(len(slices), (1,), generator=generator))] = True
    known = torch.ones(h, w, dtype=torch.bool)
    for (rows, cols), gone in zip(slices, lost.tolist(), strict=True):
        if gone:
            known[rows, cols] = False
    return known


def random_mask(h: int, w: int, generator: torch.Generator) -> Tensor:
    """A training ``known`` mask: packet-shaped (half the time; 2/3 of those in the dispersed layout,
    1/3 whole rows), scattered or block; ratio uniform below 0.5, at least one token."""
    ratio = max(1.0 / (h * w), MAX_MASK_RATIO * float(torch.rand(1, generator=generator)))
    kind = int(torch.randint(6, (1,), generator=generator))
    if kind == 0:
        known = torch.rand(h, w, generator=generator) >= ratio
    elif kind < 4:
        layout = PacketLayout(int(torch.randint(1, 4, (1,), generator=generator)), 1 if kind == 1 else LATTICE)
        known = packet_loss_mask(h, w, ratio, layout, generator)
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


LADDER_BUFFERS = ("codewords", "scale")
"""Tensors of a recovery network that come from its ladder (:meth:`RecoveryTransformer.for_ladder`), not from training."""


class RecoveryTask:
    """Plugs the recovery transformer into :func:`codec.training.trainer.train`."""

    name = "recovery"
    loss_settings = ("pixel_weight",)

    def __init__(self, config: RecoveryConfig, ladder: str | Path | None = None, levels: tuple[int, ...] | None = None,
                 pixel_weight: float = PIXEL_WEIGHT) -> None:
        self.config = config
        self.ladder = ladder
        self.levels = levels or tuple(range(1, len(config.sizes) + 1))
        self.pixel_weight = pixel_weight
        self._ladder_hash: str | None = None
        self._decoder: nn.Module | None = None

    def build(self) -> nn.Module:
        """A new recovery transformer holding the ladder's codewords."""
        loaded = registry.load("vqgan", 1, self.ladder)
        try:
            net = RecoveryTransformer.for_ladder(loaded.model.ladder, self.config)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self._ladder_hash = loaded.weights_hash
        self._decoder = loaded.model.decoder.eval().requires_grad_(False)
        return net

    def adapt_init(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """``--init`` weights without the ladder-derived buffers (codewords and their scale): a network
        trained for one ladder starts training for another with the new ladder's codewords, not the old."""
        return {k: v for k, v in weights.items() if k not in LADDER_BUFFERS}

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
        """Squared error of the points plus weighted cross-entropy, on the hidden positions, plus the
        pixel term (:meth:`pixel_loss`)."""
        indices, known, level = batch[:, 0], batch[:, 1].bool(), int(batch[0, 2, 0, 0])
        logits, point = model(indices, known, level)
        hidden = ~known
        words = model.words(level)
        truth = words[indices[hidden]]
        mse = (point[hidden] - truth).square().mean()
        ce = F.cross_entropy(logits[hidden], indices[hidden])
        acc = (logits[hidden].argmax(-1) == indices[hidden]).float().mean()
        pixel = self.pixel_loss(model, words[indices], point, known) if self.pixel_weight else point.new_zeros(())
        loss = mse + CE_WEIGHT * ce + self.pixel_weight * pixel
        return loss, {"loss": loss.item(), "mse": mse.item(), "ce": ce.item(), "pixel": pixel.item(), "acc": acc.item(), "level": float(level)}

    def pixel_loss(self, model: nn.Module, truth: Tensor, point: Tensor, known: Tensor) -> Tensor:
        """Mean squared difference (images scaled to [0, 1]) between the ladder decoder's outputs of
        the restored and of the true decoder inputs, on a ``PIXEL_WINDOW``-token window at the centre
        of the first ``PIXEL_SAMPLES`` crops: it aims the points at what the decoder makes of them,
        which squared error in codeword space alone does not (the decoder is far from linear)."""
        if self._decoder is None:
            raise RuntimeError("pixel_loss needs build() first (it loads the ladder's decoder)")
        crop = truth.shape[1]
        win = min(PIXEL_WINDOW, crop)
        sel = (slice(0, PIXEL_SAMPLES), slice((crop - win) // 2, (crop - win) // 2 + win), slice((crop - win) // 2, (crop - win) // 2 + win))
        restored = torch.where(known[sel].unsqueeze(-1), truth[sel], point[sel])
        decoder = self._decoder.to(point.device)
        with torch.no_grad():
            target = decoder(model.decoder_input_batch(truth[sel]))
        return (decoder(model.decoder_input_batch(restored)) - target).square().mean() / 4

    def after_step(self, model: nn.Module, batch: Tensor, step: int, total: int) -> dict[str, float]:
        """No housekeeping."""
        return {}

    @torch.no_grad()
    def validate(self, model: nn.Module, items: list[tuple[int, Tensor]]) -> dict[str, float]:
        """Squared distance from the true codewords (summed over channels) and index accuracy of the
        lost positions at 20 % packet loss (fixed seed): iterative recovery, the first guess
        (interpolation of the received neighbours) and the image's most frequent received index."""
        model.eval()
        device = next(model.parameters()).device
        g = torch.Generator().manual_seed(0)
        sums = dict.fromkeys(("dist", "index_acc", "interp_dist", "interp_acc", "naive_dist", "naive_acc"), 0.0)
        total = 0
        for level, m in items:
            known = packet_loss_mask(*m.shape, VALIDATION_LOSS, VALIDATION_LAYOUT, g)
            points = model.recover(m.to(device), known.to(device), level)[1].cpu()
            words = model.words(level).cpu()
            mode = torch.bincount(m[known], minlength=len(words)).argmax().expand(m.shape)
            interp = interpolate_holes(words[m][None], known[None])[0]
            lost, truth = ~known, words[m[~known]]
            for name, estimate in (("", points), ("interp_", interp), ("naive_", words[mode])):
                nearest = torch.cdist(estimate[lost], words).argmin(-1)
                sums[f"{name}dist"] += float((estimate[lost] - truth).square().sum())
                sums[f"{name}acc" if name else "index_acc"] += float((nearest == m[lost]).sum())
            total += int(lost.sum())
        return {k: v / max(1, total) for k, v in sums.items()}

    def freeze(self, model: nn.Module) -> None:
        """No entropy model."""

    def export_metadata(self) -> dict[str, Any]:
        """Model name, configuration, loss weights and the weights hash of the ladder it was trained on."""
        return {"model": self.name, "config": self.config.to_dict(), "ladder_hash": self._ladder_hash or "",
                "loss": {"ce_weight": CE_WEIGHT, "pixel_weight": self.pixel_weight}}
