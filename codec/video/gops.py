"""The GOPs of a video file: where each intact one lies, read header by header (no torch, no model).

``codec decode`` and ``codec info`` both walk a (memory-mapped) file with :func:`gops`, so memory holds
one GOP's payloads at a time and the walk is linear in the file size.
"""

from __future__ import annotations

import dataclasses
import mmap
import re

from .. import container
from ..errors import CorruptStreamError, FormatError


def is_frame(name: str) -> bool:
    """Whether a GOP's stream called ``name`` is a frame's (``f0``, ``f1``, ...)."""
    return re.fullmatch(r"f\d+", name) is not None


def is_erasable(name: str) -> bool:
    """Frame streams and the tone layer (``tone``, first in a GOP) are erasable: a damaged one is listed as missing,
    not fatal, so a GOP cut off in its frames keeps the frames before the cut."""
    return is_frame(name) or name == "tone"


@dataclasses.dataclass(frozen=True)
class Gop:
    """Where one intact GOP lies in a video file and its header (a container whose payloads are dropped:
    :func:`load` reads them when the GOP is decoded, so a file's frames are never all in memory)."""

    pos: int
    length: int
    head: container.Container


def gops(data: bytes | mmap.mmap) -> tuple[list[Gop], int, int]:
    """The intact GOPs of a video file (``data`` may be a memory map), the number of bytes skipped as
    damaged, and the index of its first frame (that of its first GOP, so that one GOP cut out of a file
    decodes on its own; 0 when a damaged GOP came first).

    A GOP whose header is damaged is skipped up to the next container magic; a GOP whose frame streams
    are damaged or cut off is kept with those frames listed in ``missing``.  One-line error when no GOP
    is readable or the GOPs disagree about the clip.
    """
    out, pos, skipped, start = [], 0, 0, None
    while pos < len(data):
        try:
            n = container.length(data[pos : pos + container.head_bytes()])
            c = container.unpack(data[pos : pos + n], erasable=is_erasable)
            out.append(Gop(pos, n, dataclasses.replace(c, streams=[(name, b"") for name, _ in c.streams])))
            start = (0 if skipped else out[0].head.meta.get("first")) if start is None else start
        except (CorruptStreamError, FormatError):
            following = data.find(container.MAGIC, pos + 1)
            end = following if following >= 0 else len(data)
            skipped, pos = skipped + end - pos, end
            continue
        pos += n
    if not out:
        raise CorruptStreamError("no readable group of pictures in the video file (corrupt or not a video file)")
    for c in (g.head for g in out):
        if c.kind != "video" or len(c.shape) != 4 or c.shape[3] != 3 or sum(is_frame(name) for name, _ in c.streams) != c.shape[0] or not isinstance(c.meta.get("first"), int):
            raise FormatError("not a video file (or a damaged one): a GOP header does not describe video frames")
        if _network(c) != _network(out[0].head) or c.shape[1:] != out[0].head.shape[1:] or c.meta.get("fps") != out[0].head.meta.get("fps"):
            raise FormatError("video GOPs disagree about the model, frame size or frame rate")
    return out, skipped, start


def load(data: bytes | mmap.mmap, gop: Gop) -> container.Container:
    """The GOP's container with its frame payloads (as :func:`gops` checked it)."""
    return container.unpack(data[gop.pos : gop.pos + gop.length], erasable=is_erasable)


def _network(c: container.Container) -> dict:
    """A GOP's model id without its quality: GOPs of one file share the network, not necessarily the level (``bpp``)."""
    return {k: v for k, v in c.model.items() if k != "quality"} if isinstance(c.model, dict) else c.model
