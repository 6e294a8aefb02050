"""Training task of the baseline: CompressAI's mean-scale hyperprior (Minnen et al. 2018, no context model).

Trained through the same loop, data and budget as McQuic so benchmarks compare like with like.
Loss: ``lambda * 255^2 * MSE + bpp`` plus the entropy bottleneck's auxiliary quantile loss (its
gradient reaches only the quantiles, so one optimizer serves both).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from compressai.models import MeanScaleHyperprior
from torch import Tensor, nn

from ..metrics import ms_ssim, psnr
from ..models.mcquic import pad_to_multiple
from .trainer import ImageData

PAD = 64


class HyperpriorTask(ImageData):
    """Plugs ``compressai.models.MeanScaleHyperprior`` into :func:`codec.training.trainer.train`."""

    name = "hyperprior"

    def __init__(self, lmbda: float = 0.0035, channels: int = 96, latent_channels: int = 128) -> None:
        self.lmbda = lmbda
        self.channels = channels
        self.latent_channels = latent_channels

    def build(self) -> nn.Module:
        """A new mean-scale hyperprior."""
        return MeanScaleHyperprior(self.channels, self.latent_channels)

    def first_batch(self, model: nn.Module, batch: Tensor, loaded: set[str]) -> None:
        """Nothing to initialize from data."""

    def loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Rate-distortion Lagrangian plus the auxiliary loss."""
        out = model(batch)
        pixels = batch.shape[0] * batch.shape[2] * batch.shape[3]
        bpp = sum(torch.log(lk).sum() for lk in out["likelihoods"].values()) / (-math.log(2) * pixels)
        mse = F.mse_loss(out["x_hat"], batch)
        aux = (model.module if hasattr(model, "module") else model).aux_loss()
        loss = self.lmbda * 255**2 * mse + bpp + aux
        return loss, {"loss": loss.item(), "bpp": bpp.item(), "psnr": -10 * math.log10(max(mse.item(), 1e-10))}

    def after_step(self, model: nn.Module, batch: Tensor, step: int, total: int) -> dict[str, float]:
        """Nothing to do between steps."""
        return {}

    @torch.no_grad()
    def validate(self, model: nn.Module, images: list[Tensor]) -> dict[str, float]:
        """bpp of CompressAI's real bitstream, PSNR and MS-SSIM."""
        model.eval()
        self.freeze(model)
        rows = []
        for img in images:
            h, w = img.shape[-2:]
            x = pad_to_multiple(img, PAD)
            enc = model.compress(x)
            x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"][..., :h, :w].clamp(0, 1)
            nbytes = sum(len(s) for strings in enc["strings"] for s in strings)
            rows.append((8 * nbytes / (h * w), psnr(img, x_hat), ms_ssim(img, x_hat)))
        return {k: sum(r[i] for r in rows) / len(rows) for i, k in enumerate(("bpp", "psnr", "ms_ssim"))}

    def freeze(self, model: nn.Module) -> None:
        """Freeze the entropy-coding tables (``update()``)."""
        model.update(force=True)

    def export_metadata(self) -> dict[str, Any]:
        """Model name, architecture and lambda."""
        return {"model": "compressai-mbt2018-mean", "N": self.channels, "M": self.latent_channels, "lambda": self.lmbda}
