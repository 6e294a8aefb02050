"""Training task of the VAEformer climate codec: cos-latitude weighted MSE + rate + KL, real-bitstream validation.

Fields are normalized per field (as the codec does), so the distortion is in units of each field's
standard deviation.  Loss: ``lmbda * weighted MSE + bits per point + kl_weight * KL + aux`` where
the KL term regularizes the latent's log-variance head (variance inference, as in CRA5).  Each
batch draws the latent's quantization step log-uniformly from ``step_range``, so one set of weights
serves several rates (the shipped qualities differ only in ``quant_step``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..climate import fieldcodec
from ..models.vaeformer import VAEformer, VAEformerConfig
from . import climate_data


class VAEformerTask:
    """Plugs the VAEformer into :func:`codec.training.trainer.train`."""

    name = "vaeformer"

    def __init__(
        self,
        config: VAEformerConfig,
        lmbda: float = 64.0,
        kl_weight: float = 1e-4,
        step_range: tuple[float, float] = (0.5, 2.0),
    ) -> None:
        self.config = config
        self.step_range = step_range
        self.lmbda = lmbda
        self.kl_weight = kl_weight
        self._fields: dict[str, list[climate_data.Field]] = {}

    def build(self) -> nn.Module:
        """A new VAEformer of this task's configuration."""
        return VAEformer(self.config)

    def _load(self, data: str | Path) -> list[climate_data.Field]:
        key = str(Path(data).resolve())
        if key not in self._fields:
            self._fields[key] = climate_data.load(data, climate_data.default_cache(data))
        return self._fields[key]

    def sampler(self, data: str | Path, crop: int, seed: int) -> climate_data.FieldCrops:
        """Random (crop/2) x crop lat-lon crops of the training split of ``data``."""
        return climate_data.FieldCrops(self._load(data), (crop // 2, crop), seed)

    def validation_data(self, val: str | Path | None, data: str | Path, limit: int) -> list[climate_data.Field]:
        """The validation split of ``val`` (default: of ``data``)."""
        return climate_data.validation_fields(self._load(val or data), limit)

    def first_batch(self, model: nn.Module, batch: Tensor, loaded: set[str]) -> None:
        """Nothing to initialize from data."""

    def loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Rate-distortion Lagrangian in bits per grid point and normalized, area-weighted MSE."""
        x, valid, weight = batch[:, :2], batch[:, 1:2], batch[:, 2:3]
        lo, hi = (math.log(v) for v in self.step_range)
        out = model(x, step=math.exp(lo + (hi - lo) * torch.rand(()).item()))
        w = valid * weight
        mse = (w * (out["x_hat"] - batch[:, :1]) ** 2).sum() / w.sum().clamp_min(1.0)
        points = batch.shape[0] * batch.shape[2] * batch.shape[3]
        bits = sum(torch.log(lk).sum() for lk in out["likelihoods"].values()) / (-math.log(2) * points)
        aux = (model.module if hasattr(model, "module") else model).aux_loss()
        loss = self.lmbda * mse + bits + self.kl_weight * out["kl"] + aux
        return loss, {"loss": loss.item(), "bits": bits.item(), "ratio": 32 / max(bits.item(), 1e-6), "nrmse": math.sqrt(mse.item())}

    def after_step(self, model: nn.Module, batch: Tensor, step: int, total: int) -> dict[str, float]:
        """Nothing to do between steps."""
        return {}

    @torch.no_grad()
    def validate(self, model: nn.Module, fields: list[climate_data.Field]) -> dict[str, float]:
        """Compression ratio (vs float32) of real records and area-weighted RMSE in field standard deviations."""
        model.eval()
        self.freeze(model)
        raw = coded = 0
        errors = []
        device = next(model.parameters()).device
        try:
            model.cpu()  # bytes are made on the CPU, as users make them
            for f in fields:
                values = np.where(f.valid, f.values.astype(np.float64), np.nan)
                record, recon = fieldcodec.encode(model, values, fieldcodec.FieldSpec(values.shape, np.dtype("float32")))
                raw, coded = raw + 4 * values.size, coded + len(record)
                w = climate_data.lat_weights(f.lat)[:, None] * f.valid
                errors.append(float(np.sqrt((w * np.nan_to_num(recon - values) ** 2).sum() / max(w.sum(), 1e-9))))
        finally:
            model.to(device)
        return {"ratio": raw / max(coded, 1), "nrmse": float(np.mean(errors)) if errors else 0.0}

    def freeze(self, model: nn.Module) -> None:
        """Freeze the hyper-latent's integer tables (``update()``)."""
        model.update()

    def export_metadata(self) -> dict[str, Any]:
        """Model name, lambda, step range and configuration, stored with the weights (export assigns qualities)."""
        return {"model": self.name, "config": self.config.to_dict(), "lambda": self.lmbda, "step_range": list(self.step_range)}
