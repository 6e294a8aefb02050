"""``codec info`` of a video file from its GOP headers and frame sizes alone (no torch, no model)."""

from __future__ import annotations

import mmap
import os
from collections import Counter

from .. import container, fileio
from ..errors import CorruptStreamError, FormatError
from .gops import gops, is_frame

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".y4m", ".m4v", ".mpg", ".mpeg", ".ts")


def is_video_path(obj: object) -> bool:
    """True for a path whose suffix names a video container (what ``codec encode`` reads as video)."""
    return isinstance(obj, str | os.PathLike) and os.fspath(obj).lower().endswith(VIDEO_SUFFIXES)


def is_video_file(data: bytes) -> bool:
    """True when the first container header in ``data`` that passes its checks is of kind ``video``
    (a video whose first GOP header is damaged is still a video: decoding skips to the next GOP)."""
    pos = 0 if data[: len(container.MAGIC)] == container.MAGIC else -1
    while pos >= 0:
        try:
            return container.peek_kind(data[pos : pos + container.head_bytes()]) == "video"
        except (CorruptStreamError, FormatError):
            pos = data.find(container.MAGIC, pos + 1)
    return False


def mapped_video(path: str | os.PathLike) -> mmap.mmap | bytes | None:
    """A memory map of the file at ``path`` if it is a video file (read GOP by GOP, never whole), else None."""
    return fileio.map_input(path) if is_video_file(fileio.read_head(path, container.head_bytes())) else None


def describe(data: bytes | mmap.mmap) -> dict:
    """Frames, fps, size, GOP layout (and how many GOPs each level coded), bytes and bits per pixel (all frames,
    intra frames, inter frames, and the tone layer of VQGAN-cluster files).

    ``data`` may be a memory map: GOPs are read one at a time (:func:`codec.video.gops.gops`, which
    skips a GOP with a damaged header and lists damaged or cut-off frames, as decoding does).
    """
    index, skipped, start = gops(data)
    first = index[0].head
    sizes: dict[str, list[int]] = {"intra": [], "inter": []}
    damaged, tone_bytes = 0, 0
    for gop in index:
        if "tone" in gop.head.missing:  # (decoding names every frame of the GOP damaged)
            damaged += gop.head.shape[0]
            continue
        for name, _ in gop.head.streams:
            if not is_frame(name):
                tone_bytes += gop.head.spans[name][1] if name == "tone" else 0
                continue
            if name in gop.head.missing:
                damaged += 1
                continue
            begin, size = gop.head.spans[name]
            sizes["intra" if data[gop.pos + begin : gop.pos + begin + 1] == b"\x00" else "inter"].append(size)
    frames = index[-1].head.meta["first"] + index[-1].head.shape[0] - start  # as many as decoding gives
    levels = Counter(g.head.meta.get("level") for g in index if _is_level(g.head.meta.get("level")))
    if sum(levels.values()) != len(index):
        raise FormatError("a video GOP header has an invalid level")
    h, w = first.shape[1:3]
    out = {
        "kind": "video",
        "model": first.model if len(levels) == 1 or not isinstance(first.model, dict) else {k: v for k, v in first.model.items() if k != "quality"},
        "frames": frames,
        "fps": first.meta.get("fps"),
        "width": w,
        "height": h,
        "rotation": first.meta.get("rotation", 0),
        "gop": first.meta.get("gop"),
        "gops": len(index),
        "levels": {str(k): v for k, v in sorted(levels.items())},
        "temporal_prior": first.meta.get("prior"),
        "bytes": len(data),
        "bpp": round(8 * len(data) / (frames * h * w), 5),
    }
    if damaged or skipped:
        out["damaged_frames"] = damaged
        out["damaged_bytes"] = skipped
    for kind, values in sizes.items():
        if values:
            out[f"{kind}_frames"] = len(values)
            out[f"{kind}_bpp"] = round(8 * sum(values) / (len(values) * h * w), 5)
    if tone_bytes:
        out["tone_bpp"] = round(8 * tone_bytes / (frames * h * w), 5)
    return out


def _is_level(level: object) -> bool:
    return isinstance(level, int) and not isinstance(level, bool) and level >= 1
