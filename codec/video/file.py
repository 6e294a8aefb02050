"""Video files: one container per group of pictures (GOP), concatenated; frames in and out one GOP at a time.

A video file is a sequence of ordinary codec containers of kind ``video``, one per GOP, each
self-describing (magic, version, model id and weights hash, checksums; :mod:`codec.container`):

``shape``   ``[frames in this GOP, height, width, 3]``
``meta``    ``fps`` ("num/den"), ``first`` (index of the GOP's first frame), ``rotation`` (degrees a
            player turns the picture), ``level`` (this GOP's: with a target ``bpp`` it may change from
            GOP to GOP, and so does the model id's ``quality``), ``prior`` (hash of the temporal prior's weights,
            absent for intra-only files), ``prior_dtype`` (``"float64"``: the prior ran in float64, as in
            every file written since 2026-12-03; absent: float32), ``gop`` (the intra period the encoder used),
            ``tone`` (VQGAN-cluster: the tone layer's ``[block size, luma step, chroma step]``, as images record it)
``streams`` with ``tone``, first, a stream ``tone``: every frame's tone codes (:func:`codec.image.tone.encode_sequence`: the first
            frame's on their own, each later one as its change from the one before), which the decoder
            applies to the synthesized frames as an image decoder applies an image's; then ``f0``, ``f1``, ...:
            one frame payload each (:mod:`codec.video.coding`)

The encoder writes each GOP as soon as its frames are coded, so memory does not grow with the clip;
every GOP decodes on its own (it starts with an intra frame), so decoding can start at any GOP and a
damaged GOP never affects another.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .. import container
from ..errors import CorruptStreamError, FormatError, InputError, ModelError
from ..image import tone
from ..image.coding import network_input, pixels_of
from ..runtime import inference
from . import temporal
from .coding import VideoCoder
from .gops import is_frame
from .index_models import tone_for

DEFAULT_GOP = 32
CLIMB = 0.45  # rate control (``bpp``): the next GOP tries one level up when this one used at most this share of its budget
PRIOR_FILE = "video-prior.safetensors"  # in the shipped checkpoints folder


@dataclass(frozen=True)
class VideoHeader:
    """What the encoder records about the clip in every GOP."""

    fps: Fraction
    rotation: int = 0


def load_prior(path: str | os.PathLike | None = None) -> tuple[temporal.TemporalPrior, str]:
    """The temporal prior (shipped by default) and its weights hash."""
    from .. import catalog
    from ..checkpoint import load_weights, weights_hash

    path = Path(path) if path is not None else catalog.CHECKPOINTS / PRIOR_FILE
    if not path.is_file():
        raise ModelError(f"video prior weights not found: {path}")
    tensors, meta = load_weights(str(path))
    if meta.get("model") != "video-prior":
        raise ModelError(f"{path} holds no video prior")
    prior = temporal.TemporalPrior(temporal.PriorConfig.from_dict(json.loads(meta.get("config", "{}"))))
    prior.load_state_dict(tensors, strict=True)
    prior.eval()
    return prior, weights_hash(prior.state_dict())


def encode_gops(
    frames: Iterable[np.ndarray],
    coder: VideoCoder,
    model: dict,
    header: VideoHeader,
    gop: int = DEFAULT_GOP,
    intra_only: bool = False,
    prior_hash: str | None = None,
    progress: Callable[[int], None] | None = None,
    bpp: float | None = None,
) -> Iterator[bytes]:
    """One container per GOP of ``frames`` (uint8 [H, W, 3], one size), yielded as soon as it is coded.

    ``bpp``: rate control instead of ``coder.level``: each GOP is coded at the highest level that keeps
    the file so far (containers included) within ``bpp`` bits per pixel, so the whole file is too, and
    what a GOP leaves unused goes to the next ones (a short last GOP, all intra, needs it) (:func:`_at_budget`).
    """
    if gop < 1:
        raise ValueError("gop must be >= 1")
    meta = {"fps": f"{header.fps.numerator}/{header.fps.denominator}", "rotation": header.rotation, "gop": gop}
    if not intra_only:
        meta["prior"] = prior_hash
        if coder.exact_prior:
            meta["prior_dtype"] = "float64"
    first, level, spent, pixels = 0, None, 0, 0  # (rate control starts at the top level)
    coder_at = functools.cache(lambda level: coder.at_level(level, tone_for(coder.net, level)))  # (used by rate control: one coder per level tried)
    with inference():
        for group in _groups(frames, gop):
            if bpp is None:
                coded = []
                for frame in _coded(group, coder, intra_only):
                    coded.append(frame)
                    if progress is not None:
                        progress(1)
                yield _pack(coded, coder, group.size, first, model, meta)
            else:
                top = coder.net.levels
                frames_of_gop = list(group)
                pixels += len(frames_of_gop) * frames_of_gop[0].shape[0] * frames_of_gop[0].shape[1]
                data, level, fits_higher = _at_budget(frames_of_gop, coder_at, level or top, math.floor(bpp * pixels) - spent, bpp, intra_only, first, model, meta)
                spent += 8 * len(data)
                if progress is not None:
                    progress(group.count)
                yield data
                level = min(level + 1, top) if fits_higher else level
            first += group.count
    if first == 0:
        raise InputError("the clip has no frames")


@dataclass
class _Group:
    """The next GOP's frames, read lazily from the clip (checked to be of the clip's size)."""

    source: Iterator[np.ndarray]
    length: int
    size: tuple[int, int]
    first_frame: np.ndarray
    index: int
    count: int = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame in itertools.chain([self.first_frame], itertools.islice(self.source, self.length - 1)):
            if frame.shape[:2] != self.size:
                raise FormatError(f"frame {self.index + self.count} is {frame.shape[1]}x{frame.shape[0]}, the clip {self.size[1]}x{self.size[0]}")
            self.count += 1
            yield frame


def _groups(frames: Iterable[np.ndarray], gop: int) -> Iterator[_Group]:
    """The clip in GOPs of ``gop`` frames (the last may be shorter); each must be consumed before the next."""
    source, size, index = iter(frames), None, 0
    for frame in source:
        size = frame.shape[:2] if size is None else size
        group = _Group(source, gop, size, frame, index)
        yield group
        index += group.count


def _coded(frames: Iterable[np.ndarray], coder: VideoCoder, intra_only: bool) -> Iterator[tuple[bytes, np.ndarray | None]]:
    """``(payload, tone codes or None)`` of every frame of one GOP: an intra frame, then inter frames (all intra with
    ``intra_only``); tone codes when the coder has a tone layer."""
    prev = None
    for frame in frames:
        x = network_input(frame, coder.net.pad_multiple)
        payload, prev = coder.encode_intra(x) if prev is None or intra_only else coder.encode_inter(x, prev)
        yield payload, None if coder.tone is None else tone.codes(network_input(frame, 1), coder.tone)


def _at_budget(
    frames: list[np.ndarray], coder_at: Callable[[int], VideoCoder], level: int, budget: int, bpp: float, intra_only: bool, first: int, model: dict, meta: dict
) -> tuple[bytes, int, bool]:
    """``(container, level, whether the next level up may fit)`` of one GOP at the highest level from ``level``
    down whose container takes at most ``budget`` bits (``bpp`` of the frames so far, less what the GOPs
    before took: whole bits, so no rounding lets the file pass the target).  The next GOP starts one
    level up when this one used at most :data:`CLIMB` of its budget (a level costs about twice the bits
    of the one below), so a hard scene does not hold the rest of the clip down; otherwise at this GOP's
    level.  Each level tried codes the whole GOP (the first GOP starts at the top level)."""
    h, w = frames[0].shape[:2]
    while True:
        data = _pack(list(_coded(frames, coder_at(level), intra_only)), coder_at(level), (h, w), first, {**model, "quality": level}, meta)
        if 8 * len(data) <= budget:
            return data, level, 8 * len(data) <= CLIMB * budget
        if level == 1:
            raise InputError(
                f"frames {first}-{first + len(frames) - 1} need {8 * len(data) / (len(frames) * h * w):.4f} bpp at level 1, "
                f"above the target {bpp} (with what the frames before left: {budget / (len(frames) * h * w):.4f})"
            )
        level -= 1


def _pack(coded: list[tuple[bytes, np.ndarray | None]], coder: VideoCoder, size: tuple[int, int], first: int, model: dict, meta: dict) -> bytes:
    """One GOP's container: its frames' payloads (:func:`_coded`), the coder's level and (if any) its tone layer with the frames' tone codes."""
    payloads, tones = [p for p, _ in coded], [t for _, t in coded]
    streams = [(f"f{i}", p) for i, p in enumerate(payloads)]
    meta = {**meta, "level": coder.level, "first": first}
    if coder.tone is not None:  # (first: a GOP cut off in its last frames keeps its tone layer)
        streams.insert(0, ("tone", tone.encode_sequence(tones)))
        meta["tone"] = coder.tone.meta()
    return container.pack(container.Container(kind="video", model=model, shape=[len(payloads), *size, 3], dtype="uint8", streams=streams, meta=meta))


class DamagedFrames(UserWarning):
    """Some frames of a video file could not be decoded; they were replaced by the last good frame (the message says which)."""


SYNTHESIS_PIXELS = 1 << 19
"""Decoding synthesizes up to this many (padded) pixels of frames in one batch, at most :data:`SYNTHESIS_BATCH`
frames: the synthesis is about 70 % of a 320x240 decode, and 4 frames at once run it 8 % faster per frame
than one by one (59.7 -> 54.8 ms on 2 cores; 8 frames buy nothing more).  Frames of 640x480 and up go one by one."""
SYNTHESIS_BATCH = 4


def decode_gop(c: container.Container, coder: VideoCoder, last: np.ndarray | None, damaged: list[int]) -> Iterator[np.ndarray]:
    """The frames of one GOP as uint8 [H, W, 3], in order (synthesized a few at a time: :data:`SYNTHESIS_PIXELS`).

    A frame whose indices equal its predecessor's (a static scene) is that frame again, without running the
    synthesis transform (with other tone codes, that synthesis under its own tone).  From the first damaged frame on (an inter frame needs its predecessor) the GOP's
    frames are the last good frame (``last``, or black at the start of a file) and their indices are appended to
    ``damaged``; a damaged tone stream damages the whole GOP.
    """
    h, w = c.shape[1:3]
    m = coder.net.pad_multiple
    ph, pw = -(-h // m) * m, -(-w // m) * m
    shapes = coder.net.latent_shapes(ph, pw)
    batch = max(1, min(getattr(coder.net, "synthesis_batch", SYNTHESIS_BATCH), SYNTHESIS_PIXELS // (ph * pw)))
    frames = [(name, payload) for name, payload in c.streams if is_frame(name)]
    prev, prev_tone, broken = None, None, False
    try:
        tones = _tone_codes(c, coder, len(frames))
    except CorruptStreamError:
        tones, broken = None, True
    first = c.meta["first"]
    # frames decoded, not yet yielded: None (the last frame again) or (indices to synthesize, or None for the last
    # synthesis again; tone codes or None)
    plan: list[tuple[list[torch.Tensor] | None, np.ndarray | None] | None] = []
    synthesized: torch.Tensor | None = None  # the last synthesis, before its tone

    def flush() -> Iterator[np.ndarray]:
        nonlocal last, synthesized
        todo = [p[0] for p in plan if p is not None and p[0] is not None]
        images = iter(coder.synthesize_many(todo) if todo else ())
        for p in plan:
            if p is not None:
                indices, codes = p
                synthesized = next(images) if indices is not None else synthesized
                image = synthesized if codes is None else tone.apply_means(synthesized, tone.means(codes, coder.tone), h, w, coder.tone)
                last = pixels_of(image, h, w)
            yield last.copy() if last is not None else np.zeros((h, w, 3), np.uint8)  # (a copy: callers may change the arrays they get)
        plan.clear()

    with inference():
        for i, (name, payload) in enumerate(frames):
            if not broken and name in c.missing:
                broken = True
            if not broken:
                try:
                    indices = coder.decode_indices(payload, prev, shapes)
                except CorruptStreamError:
                    broken = True
            if broken:
                damaged.append(first + i)
                plan.append(None)
                continue
            codes = tones[i] if tones is not None else None
            same_indices = prev is not None and all(torch.equal(a, b) for a, b in zip(indices, prev, strict=True))
            same_tone = codes is None or (prev_tone is not None and np.array_equal(codes, prev_tone))
            plan.append(None if same_indices and same_tone else (None if same_indices else indices, codes))  # (no synthesis where the indices repeat)
            prev, prev_tone = indices, codes
            if sum(p is not None and p[0] is not None for p in plan) == batch:
                yield from flush()
        yield from flush()


def _tone_codes(c: container.Container, coder: VideoCoder, n: int) -> list[np.ndarray] | None:
    """Every frame's tone codes of a GOP whose coder has a tone layer (else None); CorruptStreamError when they are unreadable."""
    if coder.tone is None:
        return None
    names = [name for name, _ in c.streams]
    if "tone" not in names or "tone" in c.missing:
        raise CorruptStreamError("video GOP has no readable tone layer")
    return tone.decode_sequence(c.stream("tone"), n, *c.shape[1:3], coder.tone)
