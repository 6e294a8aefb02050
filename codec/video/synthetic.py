"""Small clips made on the spot: a synthetic textured scene (tests, benchmarks) and pans over still photos
(training data).  Written with :class:`codec.video.io.FrameWriter`, so any of its output kinds works."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..image.io import load_path
from .io import FrameWriter

MOTIONS = ("static", "pan")
PAN_STEP = (2, 1)  # (x, y) pixels the scene moves per frame with motion="pan"
_TILE = 64  # period of the fine-grain noise


def scene(width: int, height: int, x0: int = 0, y0: int = 0, seed: int = 0) -> np.ndarray:
    """uint8 RGB [height, width, 3]: the window at (x0, y0) onto an endless scene of gradients, waves and grain.

    The scene is a function of absolute pixel coordinates, so windows at different offsets overlap exactly.
    """
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(1 / 64, 1 / 12, size=(3, 2, 2)) * rng.choice([-1, 1], size=(3, 2, 2))  # channel, wave, (x, y) cycles/pixel
    phases = rng.uniform(0, 2 * np.pi, size=(3, 2))
    grain = rng.normal(0, 10, size=(_TILE, _TILE, 3))
    y, x = np.mgrid[y0 : y0 + height, x0 : x0 + width]
    out = np.empty((height, width, 3))
    for c in range(3):
        waves = sum(30 * np.sin(2 * np.pi * (freqs[c, k, 0] * x + freqs[c, k, 1] * y) + phases[c, k]) for k in range(2))
        out[..., c] = 128 + 40 * np.cos(2 * np.pi * (x + 2 * y) / 512 + 2 * c) + waves + grain[y % _TILE, x % _TILE, c]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def make_test_clip(path: str | os.PathLike, frames: int, width: int, height: int, fps: Fraction | int | float | str, motion: str = "pan", seed: int = 0) -> Path:
    """Write a synthetic clip of ``frames`` frames and return its path.

    ``motion="pan"`` moves the scene by ``PAN_STEP`` pixels per frame (frame t+1 is frame t shifted, exactly);
    ``"static"`` repeats one frame.  The output kind follows ``path`` as in ``FrameWriter``.
    """
    if motion not in MOTIONS:
        raise InputError(f"unknown motion {motion!r}: use one of {', '.join(MOTIONS)}")
    if frames < 1:
        raise InputError(f"a clip needs at least one frame, got {frames}")
    dx, dy = PAN_STEP if motion == "pan" else (0, 0)
    with FrameWriter(path, fps, width, height) as writer:
        for t in range(frames):
            writer.write(scene(width, height, t * dx, t * dy, seed))
    return Path(path)


def _bounce(position: int, span: int) -> int:
    """``position`` folded into 0..span like a ball between two walls (0 when span is 0)."""
    if span <= 0:
        return 0
    phase = position % (2 * span)
    return phase if phase <= span else 2 * span - phase


def _rgb(image: np.ndarray) -> np.ndarray:
    """Gray or alpha channels dropped or repeated so that the image is [H, W, 3]."""
    return image[..., :3] if image.shape[2] >= 3 else np.repeat(image[..., :1], 3, axis=2)


def _window(t: int, frames: int, size: tuple[int, int], zoom: float) -> tuple[int, int]:
    """(width, height) of the crop at frame t: ``zoom`` times the output size at the start, 1x at the end."""
    scale = zoom + (1 - zoom) * t / max(frames - 1, 1)
    return round(size[0] * scale), round(size[1] * scale)


def pan_clip_from_image(
    image_path: str | os.PathLike,
    path: str | os.PathLike,
    frames: int,
    size: tuple[int, int],
    step: int,
    zoom: float = 1.0,
    fps: Fraction | int | float | str = 25,
) -> Path:
    """Write a clip of a window travelling over a still photo and return its path.

    ``size`` is the (width, height) of the clip.  The window moves ``step`` pixels right and ``step // 2``
    down per frame, bouncing off the image borders.  With ``zoom`` > 1 it starts ``zoom`` times larger
    than ``size`` and shrinks linearly to ``size`` (a zoom-in, resampled with Lanczos); ``zoom=1`` is a
    pure crop, so consecutive frames are exact shifts of each other.
    """
    if zoom < 1 or frames < 1 or step < 0:
        raise InputError(f"need frames >= 1, step >= 0 and zoom >= 1, got {frames}, {step}, {zoom}")
    size = (int(size[0]), int(size[1]))
    image = _rgb(load_path(image_path))
    largest = _window(0, frames, size, zoom)
    if largest[0] > image.shape[1] or largest[1] > image.shape[0]:
        raise InputError(f"{image_path} ({image.shape[1]}x{image.shape[0]}) is smaller than the {largest[0]}x{largest[1]} window")
    with FrameWriter(path, fps, size[0], size[1]) as writer:
        for t in range(frames):
            w, h = _window(t, frames, size, zoom)
            x, y = _bounce(t * step, image.shape[1] - w), _bounce(t * step // 2, image.shape[0] - h)
            crop = image[y : y + h, x : x + w]
            writer.write(crop if (w, h) == size else np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS)))
    return Path(path)
