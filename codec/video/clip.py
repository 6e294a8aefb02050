"""Clips at the API level: a video file in, GOP containers out; a video file's bytes in, frames out lazily.

Frames are read in display orientation (a rotated phone clip is turned as a player turns it; the
source's rotation is recorded in ``meta``), coded with McQuic (or VQGAN-cluster) at the chosen level and, unless
``intra_only``, the temporal prior (:mod:`codec.video.coding`).  Audio and subtitle streams are dropped.
"""

from __future__ import annotations

import functools
import mmap
import os
import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np

from .. import container, registry
from ..errors import FormatError, InputError, ModelError
from ..image import tone
from ..image.io import check_size
from ..runtime import model_for, model_id
from . import file, io
from .coding import VideoCoder
from .gops import gops, load
from .index_models import index_model, tone_for


def video_coder(model: str | None, quality: int | None, weights: str | os.PathLike | None, intra_only: bool) -> tuple[VideoCoder, dict, str | None]:
    """The coder of a new file: McQuic (default) or VQGAN-cluster at ``quality`` (or ``weights``) and the shipped prior;
    with the model id and prior hash its headers record."""
    loaded = registry.load(model or "mcquic", quality, weights)
    net = index_model(loaded.model)  # (one-line error for a model that is not an index model, before the prior loads)
    prior, prior_hash = (None, None) if intra_only else file.load_prior()
    return VideoCoder(net, loaded.quality, prior, tone=tone_for(net, loaded.quality)), model_id(loaded), prior_hash


def encode(
    path: str | os.PathLike,
    model: str | None = None,
    quality: int | None = None,
    weights: str | os.PathLike | None = None,
    gop: int = file.DEFAULT_GOP,
    intra_only: bool = False,
    progress: Callable[[int], None] | None = None,
    bpp: float | None = None,
) -> Iterator[bytes]:
    """The GOP containers of the clip at ``path``, one at a time (write them in order to make the file).

    ``bpp`` (instead of ``quality``): each GOP at the highest level that keeps it within that many bits
    per pixel (:func:`codec.video.file.encode_gops`)."""
    if gop < 1:
        raise InputError(f"gop must be at least 1, got {gop}")
    if bpp is not None and quality is not None:
        raise InputError("give either a quality/level or a target bpp, not both")
    if bpp is not None and not bpp > 0:
        raise InputError(f"target bpp must be positive, got {bpp}")
    info = io.probe(path)
    h, w = info.display_size
    check_size(h, w)
    coder, mid, prior_hash = video_coder(model, quality, weights, intra_only)
    header = file.VideoHeader(info.fps, info.rotation)
    return file.encode_gops(io.read_frames(path), coder, mid, header, gop, intra_only, prior_hash, progress, bpp)


class VideoFrames:
    """The decoded frames of a video file: iterate for uint8 [H, W, 3] frames (decoded lazily, one GOP at a
    time), or :meth:`to_array` for all of them as [T, H, W, 3].  ``data`` may be a memory map of the file
    (as ``codec decode`` passes it): then only the GOP being decoded is read into memory.

    Damaged frames (a corrupt or cut-off GOP) are replaced by the last good frame, and a
    :class:`codec.video.file.DamagedFrames` warning names them once the iteration is over; a GOP lost
    whole (its header damaged) counts as the frames between its neighbours.
    """

    def __init__(self, data: bytes | mmap.mmap, weights: str | os.PathLike | None = None) -> None:
        self._data = data
        self.gops, self.skipped_bytes, self.start = gops(data)
        first = self.gops[0].head
        self.fps = Fraction(first.meta.get("fps", "25/1"))
        self.height, self.width = first.shape[1:3]
        self.rotation = int(first.meta.get("rotation", 0))
        loaded = model_for(first, weights)
        prior = None
        if "prior" in first.meta:
            prior, digest = file.load_prior()
            if digest != first.meta["prior"]:
                raise ModelError(f"file was encoded with video prior {first.meta['prior']}, but the shipped one is {digest}")
        dtype = first.meta.get("prior_dtype", "float32")
        if prior is not None and dtype not in ("float32", "float64"):
            raise FormatError(f"file's video prior runs in {dtype!r}, which this codec does not know (made by a newer version?)")
        exact = dtype == "float64"
        self._default_level, self._levels = loaded.quality, loaded.model.levels
        self._coder = VideoCoder(loaded.model, self._level_of(first), prior, exact_prior=exact, tone=_tone_of(first))
        self._coder_at = functools.cache(self._coder.at_level)

    def _level_of(self, head: container.Container) -> int:
        """The level a GOP was coded at (files made with ``bpp`` change it from GOP to GOP)."""
        level = head.meta.get("level", head.model.get("quality", self._default_level) if isinstance(head.model, dict) else self._default_level)
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= self._levels:
            raise FormatError(f"GOP at frame {head.meta.get('first')} has level {level!r}, not one of the model's")
        return level

    def _coder_for(self, head: container.Container) -> VideoCoder:
        """The coder of a GOP's level and tone layer (made once per level)."""
        level, settings = self._level_of(head), _tone_of(head)
        return self._coder if (level, settings) == (self._coder.level, self._coder.tone) else self._coder_at(level, settings)

    def __len__(self) -> int:
        last = self.gops[-1].head
        return last.meta["first"] + last.shape[0] - self.start

    def __iter__(self) -> Iterator[np.ndarray]:
        damaged: list[int] = []
        frame, index = None, self.start
        for gop in self.gops:
            c = load(self._data, gop)  # one GOP's payloads in memory at a time
            for _ in range(max(c.meta["first"] - index, 0)):  # a GOP lost whole before this one
                damaged.append(index)
                index += 1
                yield frame.copy() if frame is not None else np.zeros((self.height, self.width, 3), np.uint8)  # (a copy: callers may change the arrays they get)
            for decoded in file.decode_gop(c, self._coder_for(c), frame, damaged):
                frame, index = decoded, index + 1
                yield decoded
        if damaged or self.skipped_bytes:
            tail = " (and the file's damaged end)" if self.skipped_bytes and not damaged else ""
            warnings.warn(file.DamagedFrames(f"damaged frames {_ranges(damaged)}{tail} replaced by the last good frame"), stacklevel=2)

    def to_array(self) -> np.ndarray:
        """Every frame, [T, H, W, 3] uint8."""
        return np.stack(list(self))


def _tone_of(head: container.Container) -> tone.ToneSettings | None:
    """The tone layer a GOP's frames carry (VQGAN-cluster files), from its header."""
    return tone.ToneSettings.from_meta(head.meta["tone"]) if "tone" in head.meta else None


def _ranges(indices: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    parts, start = [], None
    for i, k in enumerate(indices):
        if start is None:
            start = k
        if i + 1 == len(indices) or indices[i + 1] != k + 1:
            parts.append(f"{start}-{k}" if k != start else f"{k}")
            start = None
    return ", ".join(parts) or "none"
