"""Training data and loss of the video temporal prior (:mod:`codec.video.temporal`).

Clips: real footage and clips synthesized from still photos with camera motion (pans in every
direction, zooms, a static camera with sensor noise, brightness drift).  Each clip is coded to McQuic
indices at a quality level (the encoder's rate-distortion choice under the current prior, or plain
nearest codewords for the first round), and every inter frame's scales become training examples: the
prior's features and the indices it must predict.  The loss is the stage-1 code length in bits per
index: ``-log2`` of the summed probability of every offset whose candidate equals the index, or of
*miss* (the stage-2 bits of a miss do not depend on the prior).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..video import temporal


def moving_crops(image: np.ndarray, frames: int, size: tuple[int, int], velocity: tuple[float, float], zoom: float = 0.0,
                 noise: float = 0.0, brightness: float = 0.0, seed: int = 0) -> list[np.ndarray]:
    """``frames`` crops of ``size`` (h, w) from ``image`` moving by ``velocity`` (dy, dx) px per frame, optionally
    zooming (relative scale change per frame), with Gaussian noise and a brightness drift per frame."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    big = Image.fromarray(image)
    out = []
    for t in range(frames):
        scale = 1.0 + zoom * t
        ch, cw = h / scale, w / scale
        cy = (image.shape[0] - ch) / 2 + velocity[0] * (t - frames / 2)
        cx = (image.shape[1] - cw) / 2 + velocity[1] * (t - frames / 2)
        box = (max(cx, 0), max(cy, 0), min(cx + cw, image.shape[1]), min(cy + ch, image.shape[0]))
        frame = np.asarray(big.resize((w, h), Image.BICUBIC, box=box), np.float32)
        frame = frame * (1 + brightness * t) + rng.normal(0, noise, frame.shape)
        out.append(np.clip(frame, 0, 255).round().astype(np.uint8))
    return out


def synthetic_clips(images: list[np.ndarray], frames: int, size: tuple[int, int], seed: int = 0) -> Iterator[list[np.ndarray]]:
    """Clips of every kind of motion from each image (static, pans in 4 directions at 2 speeds, zoom, drift)."""
    rng = np.random.default_rng(seed)
    for i, image in enumerate(images):
        speed = rng.uniform(1, 6)
        angle = rng.uniform(0, 2 * np.pi)
        yield moving_crops(image, frames, size, (0, 0), noise=2.0, seed=seed + i)
        yield moving_crops(image, frames, size, (speed * np.sin(angle), speed * np.cos(angle)), noise=1.0, seed=seed + i)
        yield moving_crops(image, frames, size, (0, 0), zoom=0.01, brightness=0.005, seed=seed + i)


def examples(coder, clip: list[np.ndarray]) -> Iterator[tuple[Tensor, Tensor, Tensor]]:  # noqa: ANN001 - a VideoCoder
    """``(features [m, F, h, w], candidates [OFFSETS, m, h, w], indices [m, h, w])`` of every inter scale of ``clip``,
    the indices chosen as the coder's encoder chooses them (one GOP)."""
    from ..image.coding import network_input

    prev = None
    for frame in clip:
        x = network_input(frame, coder.net.pad_multiple)
        with torch.inference_mode():
            _, current = coder.encode_intra(x) if prev is None else coder.encode_inter(x, prev)
        if prev is not None:
            for scale in range(len(current)):
                coarse = scale + 1 if scale + 1 < len(current) else None
                hit_rate = round(255 * float((current[scale] == prev[scale]).float().mean())) / 255
                slot = coder.prior_slot(scale)
                feats = temporal.features(prev[scale], current[coarse] if coarse else None, prev[coarse] if coarse else None, hit_rate, slot)
                yield feats, temporal.candidates(prev[scale]), current[scale]
        prev = current


def code_length(logits: Tensor, cands: Tensor, target: Tensor) -> Tensor:
    """Total stage-1 bits of ``target`` [m, h, w] under ``logits`` [m, SYMBOLS, h, w] (offsets merged)."""
    logp = torch.log_softmax(logits, dim=1)  # [m, S, h, w]
    match = (cands == target.unsqueeze(0)).permute(1, 0, 2, 3)  # [m, OFFSETS, h, w]
    offsets = logp[:, : temporal.MISS].masked_fill(~match, float("-inf"))
    hit = torch.logsumexp(offsets, dim=1)
    miss = logp[:, temporal.MISS]
    return -torch.where(match.any(1), hit, miss).sum() / np.log(2)


def fit(prior: temporal.TemporalPrior, data: list[tuple[Tensor, Tensor, Tensor]], steps: int, lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Train ``prior`` on ``data`` (from :func:`examples`) with Adam, one example per step in a seeded order; bits per index per 100 steps."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    order = torch.randint(len(data), (steps,))
    history, acc, count = [], 0.0, 0
    prior.train()
    for step in range(steps):
        feats, cands, target = data[int(order[step])]
        bits = code_length(prior(feats), cands, target)
        opt.zero_grad()
        (bits / target.numel()).backward()
        opt.step()
        sched.step()
        acc, count = acc + float(bits.detach()), count + target.numel()
        if (step + 1) % 100 == 0:
            history.append(acc / count)
            acc, count = 0.0, 0
    prior.eval()
    return history


def evaluate(prior: temporal.TemporalPrior, data: list[tuple[Tensor, Tensor, Tensor]]) -> float:
    """Mean stage-1 bits per index of ``prior`` on ``data``."""
    with torch.no_grad():
        bits = sum(float(code_length(prior(f), c, t)) for f, c, t in data)
    return bits / max(sum(t.numel() for _, _, t in data), 1)


def load_images(folder: str | Path, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` RGB images (sorted by name) of ``folder``."""
    from PIL import Image

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))[:limit]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def train(
    out: str | Path,
    images: str | Path,
    clips: list[str | Path] = (),
    level: int = 3,
    n_images: int = 40,
    frames: int = 8,
    size: tuple[int, int] = (128, 192),
    steps: int = 3000,
    rounds: int = 2,
    tolerance: float = 0.05,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Train the temporal prior for McQuic at ``level`` and save it (safetensors) to ``out``.

    Round 1 learns from nearest-codeword indices; every later round re-codes the clips with the
    encoder's rate-distortion choice under the prior of the round before (its indices repeat more)
    and trains again.  The last two images and the first 12 frames of the first real clip are held
    out; returns the held-out bits per index of every round.
    """
    import av
    from safetensors.torch import save_file

    from .. import registry
    from ..video.coding import VideoCoder

    torch.manual_seed(seed)
    loaded = registry.load("mcquic", level)
    stills = load_images(images, n_images)
    real = [[f.to_ndarray(format="rgb24") for f in av.open(str(c)).decode(video=0)] for c in clips]
    prior = temporal.TemporalPrior().eval()
    report = {"level": loaded.quality, "weights_hash": loaded.weights_hash, "rounds": []}
    for r in range(rounds):
        coder = VideoCoder(loaded.model, loaded.quality, prior, tolerance=0.0 if r == 0 else tolerance)
        data, held = [], []
        for clip in synthetic_clips(stills[:-2], frames, size, seed=seed):
            data += list(examples(coder, clip))
        for clip in synthetic_clips(stills[-2:], frames, size, seed=seed + 1):
            held += list(examples(coder, clip))
        for i, clip in enumerate(real):
            (held if i == 0 else data).extend(examples(coder, clip[:12]))
            data += list(examples(coder, clip[12:]))
        prior = temporal.TemporalPrior()
        history = fit(prior, data, steps, seed=seed + r)
        report["rounds"].append({"examples": len(data), "held_out_bits_per_index": evaluate(prior, held), "train_history": history})
        if progress:
            print(f"round {r + 1}: {len(data)} examples, held-out {report['rounds'][-1]['held_out_bits_per_index']:.4f} bits/index", flush=True)
    save_file(prior.state_dict(), str(out), {"model": "video-prior", "config": json.dumps(prior.config.to_dict()), "mcquic_level": str(loaded.quality)})
    return report
