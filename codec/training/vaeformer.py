"""Training task of the VAEformer climate codec: cos-latitude weighted MSE + rate + KL, real-bitstream validation.

Fields are normalized per field (as the codec does), so the distortion is in units of each field's
standard deviation.  Each batch trains one rate level of the ladder, drawn uniformly; its loss is
``lambda_l * weighted MSE + bits per point + kl_weight * KL + aux`` with ``lambda_l = lmbda / rate_l**2``
(``rate_l``: the level's initial quantization step, so ``lmbda`` is the trade-off at step 1, and
halving the step asks for a quarter of the error, as uniform quantization gives).  The KL term
regularizes the latent's log-variance head (variance inference, as in CRA5).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..climate import fieldcodec
from ..models.vaeformer import LMBDA, VAEformer, VAEformerConfig
from . import climate_data


class VAEformerTask:
    """Plugs the VAEformer into :func:`codec.training.trainer.train`."""

    name = "vaeformer"

    def __init__(
        self,
        config: VAEformerConfig,
        lmbda: float = LMBDA,
        kl_weight: float = 1e-4,
    ) -> None:
        self.config = config
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

    def lambdas(self) -> list[float]:
        """The rate-distortion trade-off of each level."""
        return [self.lmbda / r**2 for r in self.config.rates]

    def loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Rate-distortion Lagrangian of a random level, in bits per grid point and normalized, area-weighted MSE."""
        x, valid, weight = batch[:, :2], batch[:, 1:2], batch[:, 2:3]
        level = int(torch.randint(1, len(self.config.rates) + 1, ()).item())
        out = model(x, level=level)
        w = valid * weight
        mse = (w * (out["x_hat"] - batch[:, :1]) ** 2).sum() / w.sum().clamp_min(1.0)
        points = batch.shape[0] * batch.shape[2] * batch.shape[3]
        bits = sum(torch.log(lk).sum() for lk in out["likelihoods"].values()) / (-math.log(2) * points)
        aux = (model.module if hasattr(model, "module") else model).aux_loss()
        loss = self.lambdas()[level - 1] * mse + bits + self.kl_weight * out["kl"] + aux
        logs = {"loss": loss.item(), "level": level, "bits": bits.item(), "nrmse": math.sqrt(mse.item())}
        return loss, logs

    def after_step(self, model: nn.Module, batch: Tensor, step: int, total: int) -> dict[str, float]:
        """Nothing to do between steps."""
        return {}

    @torch.no_grad()
    def validate(self, model: nn.Module, fields: list[climate_data.Field]) -> dict[str, float]:
        """Per level: compression ratio (vs float32) of real records and mean area-weighted RMSE in field standard deviations."""
        model.eval()
        self.freeze(model)
        device = next(model.parameters()).device
        metrics = {}
        try:
            model.cpu()  # bytes are made on the CPU, as users make them
            for level in range(1, model.levels + 1):
                coder = model.at_level(level)
                raw = coded = 0
                errors = []
                for f in fields:
                    values = np.where(f.valid, f.values.astype(np.float64), np.nan)
                    record, recon = fieldcodec.encode(coder, values, fieldcodec.FieldSpec(values.shape, np.dtype("float32")))
                    raw, coded = raw + 4 * values.size, coded + len(record)
                    w = climate_data.lat_weights(f.lat)[:, None] * f.valid
                    errors.append(float(np.sqrt((w * np.nan_to_num(recon - values) ** 2).sum() / max(w.sum(), 1e-9))))
                metrics[f"ratio_q{level}"] = raw / max(coded, 1)
                metrics[f"nrmse_q{level}"] = float(np.mean(errors)) if errors else 0.0
        finally:
            model.to(device)
        return metrics

    def freeze(self, model: nn.Module) -> None:
        """Freeze the hyper-latent's integer tables (``update()``)."""
        model.update()

    def export_metadata(self) -> dict[str, Any]:
        """Model name, configuration and the levels' trade-offs, stored with the weights."""
        return {"model": self.name, "config": self.config.to_dict(), "lambdas": self.lambdas()}
