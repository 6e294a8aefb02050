"""Training task of the McQuic image codec: distortion + VQ loss, dead-codeword re-seeding, real-bitstream validation."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..metrics import ms_ssim, psnr
from ..models.mcquic import McQuic, McQuicConfig, pad_to_multiple
from .trainer import ImageData


class McQuicTask(ImageData):
    """Plugs McQuic into :func:`codec.training.trainer.train`."""

    name = "mcquic"

    def __init__(self, config: McQuicConfig, quality: int | None = None, vq_weight: float = 1.0, reseed_every: int = 50) -> None:
        self.config = config
        self.quality = quality
        self.vq_weight = vq_weight
        self.reseed_every = reseed_every

    def build(self) -> nn.Module:
        """A new McQuic model of this task's configuration."""
        return McQuic(self.config)

    def first_batch(self, model: nn.Module, batch: Tensor, loaded: set[str]) -> None:
        """Seed the codebooks that were not loaded from initial weights."""
        fresh = {i for i in range(self.config.levels) if f"quantizers.{i}.codebook" not in loaded}
        if fresh:
            model.init_codebooks(batch, fresh)

    def loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """MSE distortion plus the weighted VQ loss."""
        out = model(batch)
        mse = F.mse_loss(out["x_hat"], batch)
        loss = mse + self.vq_weight * out["vq_loss"]
        return loss, {"loss": loss.item(), "psnr": -10 * math.log10(max(mse.item(), 1e-10)), "vq": out["vq_loss"].item()}

    def after_step(self, model: nn.Module, batch: Tensor, step: int, total: int) -> dict[str, float]:
        """Re-seed dead codewords every ``reseed_every`` steps during the first 90% of training."""
        if step % self.reseed_every or step > 0.9 * total:
            return {}
        return {"reseeded": float(sum(q.reseed_dead() for q in model.quantizers))}

    @torch.no_grad()
    def validate(self, model: nn.Module, images: list[Tensor]) -> dict[str, float]:
        """bpp of the real bitstream, PSNR and MS-SSIM, averaged over ``images`` [1, 3, H, W]."""
        model.eval()
        self.freeze(model)
        device = next(model.parameters()).device
        rows = []
        for img in images:
            h, w = img.shape[-2:]
            x = pad_to_multiple(img.to(device), self.config.pad_multiple)
            strings = model.compress(x)
            x_hat = model.decompress(strings, *x.shape[-2:])[..., :h, :w].cpu()
            rows.append((8 * sum(map(len, strings)) / (h * w), psnr(img, x_hat), ms_ssim(img, x_hat)))
        return {k: sum(r[i] for r in rows) / len(rows) for i, k in enumerate(("bpp", "psnr", "ms_ssim"))}

    def freeze(self, model: nn.Module) -> None:
        """Freeze the entropy-coding tables (``update()``)."""
        model.update()

    def export_metadata(self) -> dict[str, Any]:
        """Model name, quality and configuration, stored with the weights."""
        meta: dict[str, Any] = {"model": self.name, "config": self.config.to_dict()}
        if self.quality is not None:
            meta["quality"] = self.quality
        return meta
