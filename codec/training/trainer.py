"""The training loop every model shares: seeded, resumable, with a progress bar, and DDP under torchrun.

A model plugs in through a :class:`Task` (build, loss, periodic hooks, validation, export).  The
loop owns the optimizer, the learning-rate schedule (warm-up then cosine), checkpoints
(``last.safetensors`` for resuming, ``model.safetensors`` for shipping) and ``log.jsonl``.
Under ``torchrun`` (``WORLD_SIZE > 1``) every rank trains on its own crops, gradients are averaged
by DistributedDataParallel, and only rank 0 validates and writes files.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from ..checkpoint import load_training_state, save_training_state, save_weights
from ..data import RandomCrops


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings shared by all models."""

    steps: int = 20000
    batch_size: int = 8
    crop: int = 128
    lr: float = 3e-4
    lr_min: float = 1e-5
    warmup: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    val_every: int = 1000
    ckpt_every: int = 250
    val_images: int = 8

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with the given (non-None) fields replaced."""
        names = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if v is not None and k in names})


class ImageData:
    """Data hooks of the image tasks: random crops of an image folder; validation on whole images."""

    def sampler(self, data: str | Path, crop: int, seed: int) -> RandomCrops:
        """Random crops (with flips) of the images in ``data``."""
        return RandomCrops(data, crop, seed=seed)

    def validation_data(self, val: str | Path | None, data: str | Path, limit: int) -> list[Tensor]:
        """The first ``limit`` images of ``val`` as float tensors [1, 3, H, W] (none without ``val``)."""
        from ..data import list_images, load_rgb

        return [load_rgb(p).float().div(255.0).unsqueeze(0) for p in list_images(val)[:limit]] if val else []


class Task(Protocol):
    """What a model provides to the shared loop.

    Optional, read with ``getattr`` when a task has them: ``find_unused_parameters`` (DDP),
    ``seed_crops`` (size of the sample :meth:`first_batch` gets; default one batch),
    ``adapt_init(weights) -> weights`` (rename ``--init`` tensors of a related configuration) and
    ``trainable(model) -> parameters`` (what the optimizer updates; default all).
    """

    name: str

    def build(self) -> nn.Module:
        """A freshly initialized model."""

    def first_batch(self, model: nn.Module, batch: Tensor, loaded: set[str]) -> None:
        """Data-dependent initialization before the first step of a new run; skips the tensors in ``loaded``."""

    def loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Training loss of one batch and scalars to log."""

    def after_step(self, model: nn.Module, batch: Tensor, step: int, total: int) -> dict[str, float]:
        """Housekeeping after an optimizer step (e.g. re-seeding dead codewords); non-empty if it changed the model."""

    def sampler(self, data: str | Path, crop: int, seed: int) -> Any:
        """Training batches: an object with ``batch(size) -> Tensor`` and a ``generator`` (torch.Generator)."""

    def validation_data(self, val: str | Path | None, data: str | Path, limit: int) -> list[Any]:
        """Up to ``limit`` validation items (from ``val``; tasks may fall back to a split of ``data``)."""

    def validate(self, model: nn.Module, items: list[Any]) -> dict[str, float]:
        """Validation metrics on full images (or fields)."""

    def freeze(self, model: nn.Module) -> None:
        """Freeze the entropy-coding tables before validation or export (``update()``)."""

    def export_metadata(self) -> dict[str, Any]:
        """Metadata stored in the shipped weights file (model name, config, ...)."""


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    floor = cfg.lr_min / cfg.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _device(requested: str | None, rank: int) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


def train(
    task: Task,
    data: str | Path,
    out: str | Path,
    cfg: TrainConfig,
    val: str | Path | None = None,
    resume: bool = False,
    init_weights: dict[str, Tensor] | None = None,
    device: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, float]:
    """Train ``task`` on batches of ``data`` (its sampler decides how); returns the last validation metrics.

    ``stop_after`` ends this invocation after that many steps (with a checkpoint), so long runs can
    be split into time-limited chunks and continued with ``resume=True``.
    """
    rank, world = _distributed()
    dev = _device(device, rank)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = task.build().to(dev)
    if init_weights is not None and hasattr(task, "adapt_init"):  # e.g. a ladder that gained a level
        init_weights = task.adapt_init(init_weights)
    loaded = _load_matching(model, init_weights) if init_weights is not None else set()
    params = task.trainable(model) if hasattr(task, "trainable") else model.parameters()  # e.g. one new level's codebooks
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    crops = task.sampler(data, cfg.crop, cfg.seed + 1000 * rank)
    val_images = task.validation_data(val, data, cfg.val_images) if rank == 0 else []
    last = out / "last.safetensors"
    step = 0
    if resume and last.exists():
        step, extra = load_training_state(last, model, optimizer)
        if rank == 0:  # exact continuation; other ranks start a fresh stream of their own
            crops.generator.set_state(torch.tensor(extra["data_rng"], dtype=torch.uint8))
        else:
            crops.generator.manual_seed(cfg.seed + 1000 * rank + step)
    else:
        # a task may want a larger sample than one batch for its data-dependent initialization
        task.first_batch(model, crops.batch(getattr(task, "seed_crops", cfg.batch_size)).to(dev), loaded)
    if world > 1:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, 0)
    unused = getattr(task, "find_unused_parameters", False)  # e.g. a discriminator idle before it starts
    net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=unused) if world > 1 else model
    metrics: dict[str, float] = {}
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress or rank != 0, desc=f"train {task.name}", unit="step")
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    t0 = time.time()
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    try:
        while step < end:
            model.train()
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * _lr_factor(step, cfg)
            batch = crops.batch(cfg.batch_size).to(dev)
            loss, logs = task.loss(net, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(_clipped(model), cfg.grad_clip)
            optimizer.step()
            housekeeping = task.after_step(model, batch, step, cfg.steps)
            logs.update(housekeeping)
            if world > 1 and housekeeping:  # e.g. re-seeded codewords: make every rank take rank 0's
                for tensor in model.state_dict().values():
                    dist.broadcast(tensor, 0)
            step += 1
            bar.update(1)
            if rank != 0:
                continue
            if step % cfg.log_every == 0 or step == cfg.steps:
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
                log.write(json.dumps({"step": step, "time": round(time.time() - t0, 1), **logs}) + "\n")
                log.flush()
            if val_images and (step % cfg.val_every == 0 or step == cfg.steps):
                metrics = task.validate(model, val_images)
                log.write(json.dumps({"step": step, "val": metrics}) + "\n")
                log.flush()
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            if step % cfg.ckpt_every == 0 or step == end:
                _checkpoint(task, model, optimizer, step, crops, cfg, out, metrics)
        if cfg.steps == 0 and rank == 0:  # nothing to train: export the initialized model (e.g. a grown ladder)
            metrics = task.validate(model, val_images) if val_images else {}
            log.write(json.dumps({"step": 0, "val": metrics}) + "\n")
            _checkpoint(task, model, optimizer, step, crops, cfg, out, metrics)
    finally:
        bar.close()
        if log:
            log.close()
    return metrics


def _checkpoint(task: Task, model: nn.Module, optimizer, step: int, crops: Any, cfg: TrainConfig, out: Path, metrics: dict) -> None:
    save_training_state(out / "last.safetensors", model, optimizer, step, {"data_rng": crops.generator.get_state().tolist()})
    model.eval()
    task.freeze(model)
    meta = {**task.export_metadata(), "train": {**asdict(cfg), "steps_done": step}, "validation": metrics}
    save_weights(model, out / "model.safetensors", meta)


def _clipped(model: nn.Module) -> list[nn.Parameter]:
    """Parameters whose gradient norm is clipped: all but those trained by a loss of their own, whose
    large gradients would otherwise shrink every other step: CompressAI's entropy-bottleneck quantiles
    (auxiliary loss) and a GAN discriminator (``discriminator.*``)."""
    return [p for name, p in model.named_parameters() if not name.endswith("quantiles") and not name.startswith("discriminator.")]


def _load_matching(model: nn.Module, weights: dict[str, Tensor]) -> set[str]:
    """Load every tensor whose name and shape match (fine-tuning from a related configuration)."""
    own = model.state_dict()
    matching = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matching, strict=False)
    return set(matching)

