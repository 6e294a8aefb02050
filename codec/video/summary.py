"""``codec info`` of a video file from its GOP headers and frame sizes alone (no torch, no model)."""

from __future__ import annotations

import mmap
import os

from .. import container
from ..errors import CorruptStreamError, FormatError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".y4m", ".m4v", ".mpg", ".mpeg", ".ts")


def is_video_path(obj: object) -> bool:
    """True for a path whose suffix names a video container (what ``codec encode`` reads as video)."""
    return isinstance(obj, str | os.PathLike) and os.fspath(obj).lower().endswith(VIDEO_SUFFIXES)


def is_video_file(data: bytes) -> bool:
    """True when ``data`` starts with a checked container header of kind ``video``."""
    try:
        return container.peek_kind(data) == "video"
    except (CorruptStreamError, FormatError):
        return False


def describe(data: bytes | mmap.mmap) -> dict:
    """Frames, fps, size, GOP layout, bytes and bits per pixel (all frames, intra frames, inter frames).

    ``data`` may be a memory map: the GOPs are checked one at a time, so memory holds one GOP.
    """
    first, gops, frames, pos = None, 0, 0, 0
    sizes: dict[str, list[int]] = {"intra": [], "inter": []}
    while pos < len(data):
        n = container.length(data[pos : pos + container.head_bytes()])
        if pos + n > len(data):
            raise CorruptStreamError(f"file truncated: the container at byte {pos} needs {n} bytes")
        c = container.unpack(data[pos : pos + n])
        for _, payload in c.streams:
            sizes["intra" if payload[:1] == b"\x00" else "inter"].append(len(payload))
        first = first or c
        gops, frames, pos = gops + 1, frames + c.shape[0], pos + n
    h, w = first.shape[1:3]
    out = {
        "kind": "video",
        "model": first.model,
        "frames": frames,
        "fps": first.meta.get("fps"),
        "width": w,
        "height": h,
        "rotation": first.meta.get("rotation", 0),
        "gop": first.meta.get("gop"),
        "gops": gops,
        "temporal_prior": first.meta.get("prior"),
        "bytes": len(data),
        "bpp": round(8 * len(data) / (frames * h * w), 5),
    }
    for kind, values in sizes.items():
        if values:
            out[f"{kind}_frames"] = len(values)
            out[f"{kind}_bpp"] = round(8 * sum(values) / (len(values) * h * w), 5)
    return out
