"""``codec train``: the training commands of the ``codec`` command line (:mod:`codec.cli` parses them).

Torch and the training code load inside the commands, so importing this module stays as cheap as the parser.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .errors import InputError


def cmd_train(args: argparse.Namespace) -> None:
    """``codec train MODEL``: train (or resume, or export from ``--init``) a model and print where it went."""
    import torch

    from .checkpoint import load_weights
    from .training import tasks
    from .training.trainer import train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "vqgan-ladder":
        _train_ladder(args)
        return
    if args.model == "video-prior":
        _train_video_prior(args)
        return
    if args.steps == 0 and not args.init:
        raise InputError("--steps 0 needs --init: it exports the initial weights after the data-dependent initialization (e.g. new McQuic levels seeded by k-means)")
    if args.steps == 0 and args.resume:
        raise InputError("--steps 0 starts from --init; drop --resume")
    config = tasks.read_config(args.config) if args.config else None
    task, cfg = tasks.make(
        args.model, preset=args.preset, quality=args.quality, lmbda=args.lmbda, vq_weight=args.vq_weight, config=config, ladder=args.ladder,
        only_levels=args.only_levels,
    )
    cfg = cfg.with_overrides(
        steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr, seed=args.seed, val_every=args.val_every
    )
    val = args.val if args.val else _default_validation(args.data)
    init = load_weights(args.init)[0] if args.init else None
    metrics = train(task, args.data, args.out, cfg, val=val, resume=args.resume, init_weights=init, device=args.device, progress=not args.no_progress, stop_after=args.stop_after)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"out": str(Path(args.out) / "model.safetensors"), "validation": metrics}))


VIDEO_PRIOR_PRESETS = {
    "full": {"n_images": 40, "frames": 8, "size": (128, 192), "steps": 3000, "rounds": 2, "level": 3},
    "tiny": {"n_images": 3, "frames": 3, "size": (64, 64), "steps": 20, "rounds": 1, "level": 1},
}


def _train_video_prior(args: argparse.Namespace) -> None:
    """``codec train video-prior``: the temporal prior of video indices (minutes on a CPU; see codec.training.video_prior)."""
    from .training import video_prior

    if args.preset not in VIDEO_PRIOR_PRESETS:
        raise InputError(f"unknown preset {args.preset!r}; choose from {', '.join(VIDEO_PRIOR_PRESETS)}")
    if args.resume or args.init:
        raise InputError("video-prior trains from scratch in minutes; --resume and --init do not apply")
    settings = dict(VIDEO_PRIOR_PRESETS[args.preset], **({"steps": args.steps} if args.steps else {}))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clips = [c for c in (args.clips or "").split(",") if c]
    report = video_prior.train(out / "model.safetensors", args.data, clips, seed=args.seed or 0, progress=not args.no_progress, **settings)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"out": str(out / "model.safetensors"), "held_out_bits_per_index": report["rounds"][-1]["held_out_bits_per_index"]}))


def _train_ladder(args: argparse.Namespace) -> None:
    from .training import tasks
    from .training.vqgan_ladder import build_ladder

    if not args.init:
        raise InputError("vqgan-ladder needs --init: a trained VQGAN (codec train vqgan) or an official taming .ckpt")
    cfg = tasks.ladder_config(args.preset).with_overrides(
        steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr, seed=args.seed, val_every=args.val_every
    )
    sizes = tasks.parse_sizes(args.sizes) if args.sizes else tasks.ladder_sizes(args.preset)
    val = args.val if args.val else _default_validation(args.data)
    report = build_ladder(args.init, args.data, args.out, cfg, val=val, sizes=sizes, device=args.device, progress=not args.no_progress)
    print(json.dumps({"out": str(Path(args.out) / "model.safetensors"), "ladder": report}))


def _default_validation(data: str) -> str | None:
    """``<data>/../validation`` when the training folder is a ``training`` split, else nothing."""
    sibling = Path(data).resolve().parent / "validation"
    return str(sibling) if Path(data).name == "training" and sibling.is_dir() else None
