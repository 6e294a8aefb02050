"""Trainable models by name, with their presets: ``full`` (shipped checkpoints) and ``tiny`` (tests)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..models import mcquic, recovery, vaeformer, vqgan
from ..models.vqgan_cluster import LADDER_SIZES
from .hyperprior import HyperpriorTask
from .mcquic import McQuicTask
from .recovery import RecoveryTask
from .trainer import TrainConfig
from .vaeformer import VAEformerTask
from .vqgan import VQGANTask

PRESETS: dict[str, TrainConfig] = {
    "full": TrainConfig(),
    "tiny": TrainConfig(steps=4, batch_size=2, crop=64, warmup=1, log_every=1, val_every=2, ckpt_every=2, val_images=1),
}

TRAINABLE = ("mcquic", "hyperprior", "vaeformer", "vqgan", "vqgan-ladder", "recovery")

LADDER_PRESETS: dict[str, TrainConfig] = {
    "full": TrainConfig(steps=200, batch_size=8, crop=128, lr=1e-4, warmup=10, val_every=200, ckpt_every=50, val_images=8),
    "tiny": dataclasses.replace(PRESETS["tiny"], steps=2),
}
"""Per-level fine-tuning of ``vqgan-ladder`` (``steps`` per level; 0 = K-means and priors only)."""


def ladder_config(preset: str) -> TrainConfig:
    """The per-level fine-tuning settings of ``preset``."""
    if preset not in LADDER_PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(LADDER_PRESETS)}")
    return LADDER_PRESETS[preset]


def ladder_sizes(preset: str) -> tuple[int, ...]:
    """Codebook sizes of ``preset``: the paper's 8..2048, or 4, 8, 16 for the tiny test network."""
    return (4, 8, 16) if preset == "tiny" else LADDER_SIZES


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"8,16,32"`` -> (8, 16, 32), ascending and distinct, or a one-line error."""
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or list(sizes) != sorted(set(sizes)) or sizes[0] < 2:
        raise InputError(f"--sizes must be distinct, ascending and >= 2, got {text!r}")
    return sizes


def read_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """A JSON training config: ``{"train": {TrainConfig fields}, "model": {architecture fields}, "loss": {task weights}}``."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read config {path}: {exc}") from None
    if not isinstance(config, dict) or set(config) - {"train", "model", "loss"} or not all(isinstance(v, dict) for v in config.values()):
        raise InputError(f"config {path} must be a JSON object with optional 'train', 'model' and 'loss' objects")
    return config


def _replace(obj: Any, fields: dict[str, Any], what: str) -> Any:
    known = {f.name for f in dataclasses.fields(obj)}
    unknown = set(fields) - known
    if unknown:
        raise InputError(f"unknown {what} setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    if hasattr(obj, "from_dict"):  # architecture configs turn JSON lists back into tuples
        try:
            return type(obj).from_dict({**obj.to_dict(), **fields})
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid {what} setting: {exc}") from None
    return dataclasses.replace(obj, **fields)


def make(
    model: str,
    preset: str = "full",
    quality: int | None = None,
    lmbda: float | None = None,
    vq_weight: float | None = None,
    config: dict[str, dict[str, Any]] | None = None,
    ladder: str | None = None,
    only_levels: list[int] | None = None,
):
    """The task and training configuration for ``model`` under ``preset``, with ``config`` overrides applied.

    ``ladder`` (recovery only): the VQGAN-cluster weights whose indices it learns (default: shipped).
    ``only_levels`` (mcquic only): train just these levels' codebooks, the shared network frozen.
    """
    if only_levels and model != "mcquic":
        raise InputError(f"--only-levels applies to mcquic, not {model}")
    task, cfg = _make(model, preset, quality, lmbda, vq_weight, ladder)
    if only_levels:
        task.only_levels = tuple(only_levels)
    config = config or {}
    cfg = _replace(cfg, config.get("train", {}), "train")
    if config.get("model"):
        if not isinstance(task, McQuicTask | VAEformerTask | VQGANTask | RecoveryTask):
            raise InputError(f"'model' settings are not supported for {model}")
        task.config = _replace(task.config, config["model"], "model")
    for name, value in config.get("loss", {}).items():
        if name not in getattr(task, "loss_settings", ()):
            raise InputError(f"unknown loss setting {name!r} for {model}; known: {', '.join(getattr(task, 'loss_settings', ())) or 'none'}")
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < float("inf"):
            raise InputError(f"loss setting {name} must be a number >= 0, got {value!r}")
        setattr(task, name, float(value))
    return task, cfg


def _make(model: str, preset: str, quality: int | None, lmbda: float | None, vq_weight: float | None, ladder: str | None):
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    if quality is not None:
        how = "vqgan trains one base network; its levels come from `codec train vqgan-ladder`" if model == "vqgan" else (
            f"{model} trains one model for every quality level"
        )
        raise InputError(f"--quality does not apply to training: {how}; drop --quality")
    if model == "mcquic":
        extra = {"seed_crops": cfg.batch_size} if preset == "tiny" else {}
        if vq_weight is not None:
            extra["vq_weight"] = vq_weight
        return McQuicTask(mcquic.TINY if preset == "tiny" else mcquic.McQuicConfig(), **extra), cfg
    if model == "hyperprior":
        kwargs = {"channels": 8, "latent_channels": 8} if preset == "tiny" else {}
        return HyperpriorTask(lmbda=lmbda or 0.0035, **kwargs), cfg
    if model == "vaeformer":
        config = vaeformer.TINY if preset == "tiny" else vaeformer.DEFAULT
        return VAEformerTask(config, **({} if lmbda is None else {"lmbda": lmbda})), cfg
    if model == "vqgan":
        if preset == "tiny":  # the adversarial phase starts at once so that tests exercise it
            return VQGANTask(vqgan.TINY, vqgan.DiscriminatorConfig(ndf=8, n_layers=1), disc_start=1, reseed_every=2), cfg
        return VQGANTask(vqgan.SMALL, vqgan.DiscriminatorConfig(ndf=32, n_layers=3)), cfg
    if model == "recovery":
        if preset == "tiny":
            return RecoveryTask(recovery.TINY, ladder), dataclasses.replace(cfg, crop=6, batch_size=4)
        return RecoveryTask(recovery.RecoveryConfig(), ladder), dataclasses.replace(
            cfg, crop=16, batch_size=32, lr=5e-4, steps=4200, val_every=500, val_images=4
        )
    raise InputError(f"unknown trainable model {model!r}; choose from {', '.join(TRAINABLE)}")
