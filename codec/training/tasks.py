"""Trainable models by name, with their presets: ``full`` (shipped checkpoints) and ``tiny`` (tests)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..models import mcquic, vaeformer
from .hyperprior import HyperpriorTask
from .mcquic import McQuicTask
from .trainer import TrainConfig
from .vaeformer import VAEformerTask

PRESETS: dict[str, TrainConfig] = {
    "full": TrainConfig(),
    "tiny": TrainConfig(steps=4, batch_size=2, crop=64, warmup=1, log_every=1, val_every=2, ckpt_every=2, val_images=1),
}

TRAINABLE = ("mcquic", "hyperprior", "vaeformer")


def read_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """A JSON training config: ``{"train": {TrainConfig fields}, "model": {architecture fields}}``."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read config {path}: {exc}") from None
    if not isinstance(config, dict) or set(config) - {"train", "model"} or not all(isinstance(v, dict) for v in config.values()):
        raise InputError(f"config {path} must be a JSON object with optional 'train' and 'model' objects")
    return config


def _replace(obj: Any, fields: dict[str, Any], what: str) -> Any:
    known = {f.name for f in dataclasses.fields(obj)}
    unknown = set(fields) - known
    if unknown:
        raise InputError(f"unknown {what} setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    if hasattr(obj, "from_dict"):  # architecture configs turn JSON lists back into tuples
        return type(obj).from_dict({**obj.to_dict(), **fields})
    return dataclasses.replace(obj, **fields)


def make(
    model: str,
    preset: str = "full",
    quality: int | None = None,
    lmbda: float | None = None,
    vq_weight: float | None = None,
    config: dict[str, dict[str, Any]] | None = None,
):
    """The task and training configuration for ``model`` under ``preset``, with ``config`` overrides applied."""
    task, cfg = _make(model, preset, quality, lmbda, vq_weight)
    config = config or {}
    cfg = _replace(cfg, config.get("train", {}), "train")
    if config.get("model"):
        if not isinstance(task, McQuicTask | VAEformerTask):
            raise InputError(f"'model' settings are not supported for {model}")
        task.config = _replace(task.config, config["model"], "model")
    return task, cfg


def _make(model: str, preset: str, quality: int | None, lmbda: float | None, vq_weight: float | None):
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    if model == "mcquic":
        extra = {} if vq_weight is None else {"vq_weight": vq_weight}
        if preset == "tiny":
            return McQuicTask(mcquic.TINY, quality, **extra), cfg
        q = quality or 2
        if q not in mcquic.QUALITIES:
            raise InputError(f"mcquic has quality levels {min(mcquic.QUALITIES)}..{max(mcquic.QUALITIES)}, not {q}")
        return McQuicTask(mcquic.QUALITIES[q], q, **extra), cfg
    if model == "hyperprior":
        kwargs = {"channels": 8, "latent_channels": 8} if preset == "tiny" else {}
        return HyperpriorTask(lmbda=lmbda or 0.0035, **kwargs), cfg
    if model == "vaeformer":
        if quality is not None:
            raise InputError(
                "vaeformer trains one model for every quality (they differ in quantization step); "
                "drop --quality and export levels with benchmarks/export_vaeformer.py"
            )
        config = vaeformer.TINY if preset == "tiny" else vaeformer.DEFAULT
        return VAEformerTask(config, **({} if lmbda is None else {"lmbda": lmbda})), cfg
    raise InputError(f"unknown trainable model {model!r}; choose from {', '.join(TRAINABLE)}")
