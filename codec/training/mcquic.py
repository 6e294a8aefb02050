"""Training task of the McQuic image codec: distortion + VQ loss, dead-codeword re-seeding, real-bitstream validation.

Each batch trains one quality level of the ladder, drawn uniformly: the shared encoder and decoder
learn from every batch, each level's codebooks from its own.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from ..metrics import ms_ssim, psnr
from ..models.mcquic import McQuic, McQuicConfig, pad_to_multiple
from .trainer import ImageData


class McQuicTask(ImageData):
    """Plugs McQuic into :func:`codec.training.trainer.train`."""

    name = "mcquic"
    find_unused_parameters = True  # under DDP: the codebooks of the levels a batch does not use

    def __init__(
        self, config: McQuicConfig, vq_weight: float = 1.0, reseed_every: int = 50, seed_crops: int = 512, only_levels: tuple[int, ...] = ()
    ) -> None:
        self.config = config
        self.vq_weight = vq_weight
        self.reseed_every = reseed_every
        self.seed_crops = seed_crops
        """Crops whose latents seed new codebooks by k-means (:meth:`first_batch`)."""
        self.only_levels = tuple(only_levels)
        """When set, only these levels' codebooks train and the shared network stays frozen (e.g. fitting a
        level new to the ``--init`` file without moving the others: their files decode bit for bit as before)."""

    def build(self) -> nn.Module:
        """A new McQuic model of this task's configuration."""
        bad = [q for q in self.only_levels if not 1 <= q <= len(self.config.groups)]
        if bad:
            raise InputError(f"--only-levels {bad[0]} is not a level of this ladder (1..{len(self.config.groups)})")
        return McQuic(self.config)

    def levels(self) -> tuple[int, ...]:
        """The quality levels that train: ``only_levels``, or every level of the ladder."""
        return self.only_levels or tuple(range(1, len(self.config.groups) + 1))

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters the optimizer updates; with ``only_levels`` all others stop requiring gradients."""
        if not self.only_levels:
            return list(model.parameters())
        keep = tuple(f"quantizers.{q - 1}." for q in self.only_levels)
        params = []
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(keep))
            if p.requires_grad:
                params.append(p)
        return params

    def adapt_init(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """Rename the codebooks of ``weights`` (initial weights of another ladder) to the levels of this
        configuration that have the same number of groups, so that a ladder grown by a level keeps
        every level it shares with the old one; levels without a match are dropped (seeded fresh)."""
        old_groups = {
            int(name.split(".")[1]): int(t.shape[0]) for name, t in weights.items() if name.startswith("quantizers.") and name.endswith(".0.codebook")
        }
        new_level = {m: i for i, m in enumerate(self.config.groups)}
        adapted = {}
        for name, tensor in weights.items():
            if not name.startswith("quantizers."):
                adapted[name] = tensor
                continue
            _, old, rest = name.split(".", 2)
            target = new_level.get(old_groups.get(int(old), -1))
            if target is not None:
                adapted[f"quantizers.{target}.{rest}"] = tensor
        return adapted

    def first_batch(self, model: nn.Module, batch: Tensor, loaded: set[str]) -> None:
        """Seed the codebooks that were not loaded from initial weights (k-means on ``batch``'s latents)."""
        pairs = {(q, s) for q in range(1, len(self.config.groups) + 1) for s in range(self.config.scales)}
        fresh = {(q, s) for q, s in pairs if f"quantizers.{q - 1}.{s}.codebook" not in loaded}
        if fresh:
            model.init_codebooks(batch, fresh)

    def loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """MSE distortion plus the weighted VQ loss, at a random training level."""
        levels = self.levels()
        level = levels[int(torch.randint(len(levels), ()).item())]
        out = model(batch, level=level)
        mse = F.mse_loss(out["x_hat"], batch)
        loss = mse + self.vq_weight * out["vq_loss"]
        psnr_value = -10 * math.log10(max(mse.item(), 1e-10))
        return loss, {"loss": loss.item(), "level": level, "psnr": psnr_value, "vq": out["vq_loss"].item()}

    def after_step(self, model: nn.Module, batch: Tensor, step: int, total: int) -> dict[str, float]:
        """Re-seed dead codewords of the training levels every ``reseed_every`` steps during the first 90% of training."""
        if step % self.reseed_every or step > 0.9 * total:
            return {}
        net = model.module if hasattr(model, "module") else model
        return {"reseeded": float(sum(q.reseed_dead() for level in self.levels() for q in net.quantizers[level - 1]))}

    @torch.no_grad()
    def validate(self, model: nn.Module, images: list[Tensor]) -> dict[str, float]:
        """Per quality level: bpp of the real bitstream, PSNR and MS-SSIM, averaged over ``images`` [1, 3, H, W]."""
        model.eval()
        self.freeze(model)
        device = next(model.parameters()).device
        metrics = {}
        for level in range(1, len(self.config.groups) + 1):
            rows = []
            for img in images:
                h, w = img.shape[-2:]
                x = pad_to_multiple(img.to(device), self.config.pad_multiple)
                strings = model.compress(x, level)
                x_hat = model.decompress(strings, *x.shape[-2:], level)[..., :h, :w].cpu()
                rows.append((8 * sum(map(len, strings)) / (h * w), psnr(img, x_hat), ms_ssim(img, x_hat)))
            for i, key in enumerate(("bpp", "psnr", "ms_ssim")):
                metrics[f"{key}_q{level}"] = sum(r[i] for r in rows) / len(rows)
        return metrics

    def freeze(self, model: nn.Module) -> None:
        """Freeze the entropy-coding tables (``update()``)."""
        model.update()

    def export_metadata(self) -> dict[str, Any]:
        """Model name and configuration, stored with the weights."""
        return {"model": self.name, "config": self.config.to_dict()}
