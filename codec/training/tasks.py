"""Trainable models by name, with their presets: ``full`` (shipped checkpoints) and ``tiny`` (tests)."""

from __future__ import annotations

from ..errors import InputError
from ..models import mcquic
from .hyperprior import HyperpriorTask
from .mcquic import McQuicTask
from .trainer import TrainConfig

PRESETS: dict[str, TrainConfig] = {
    "full": TrainConfig(),
    "tiny": TrainConfig(steps=4, batch_size=2, crop=64, warmup=1, log_every=1, val_every=2, ckpt_every=2, val_images=1),
}

TRAINABLE = ("mcquic", "hyperprior")


def make(model: str, preset: str = "full", quality: int | None = None, lmbda: float | None = None, vq_weight: float | None = None):
    """The task and training configuration for ``model`` under ``preset``."""
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
    raise InputError(f"unknown trainable model {model!r}; choose from {', '.join(TRAINABLE)}")
