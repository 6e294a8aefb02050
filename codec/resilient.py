"""Resilient VQGAN-cluster files: index packets that decode independently, and a lossy-channel simulator.

A resilient file stores the index map of one image as packets ``p0, p1, ...``: packet ``i`` holds the
token rows ``[i * R, (i + 1) * R)`` (``R`` = ``packet_rows`` in the header), entropy-coded on its own
(the checkerboard context restarts at its first row), with its length and CRC32 in the container's
stream table.  The header, and with it the packet table, is protected by its own CRC32, so a decoder
that can read the header always knows which rows a damaged or missing packet held.

:func:`damage` simulates a lossy channel: it erases (inverts) a fraction of the packets,
deterministically per seed, so their checksums fail.  Decoding marks those rows missing; they are
then recovered by the recovery transformer (:mod:`codec.models.recovery`) or filled naively.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from . import container
from .errors import InputError

if TYPE_CHECKING:
    from .models.vqgan_cluster import LadderLevel

PACKET = re.compile(r"p\d+")


def is_packet(name: str) -> bool:
    """True for the name of an index packet (``p0``, ``p1``, ...)."""
    return PACKET.fullmatch(name) is not None


def row_ranges(rows: int, packet_rows: int) -> list[tuple[int, int]]:
    """Token-row range of every packet of a map with ``rows`` rows."""
    return [(r, min(r + packet_rows, rows)) for r in range(0, rows, packet_rows)]


def encode_packets(level: "LadderLevel", indices: Tensor, packet_rows: int) -> list[bytes]:
    """One independently decodable stream per ``packet_rows`` token rows of an index map [h, w]."""
    if packet_rows < 1:
        raise InputError(f"packet rows must be >= 1, got {packet_rows}")
    return [level.encode(indices[r0:r1]) for r0, r1 in row_ranges(indices.shape[0], packet_rows)]


def decode_packets(level: "LadderLevel", packets: list[bytes | None], height: int, width: int, packet_rows: int) -> tuple[Tensor, Tensor]:
    """Index map [height, width] and its ``known`` mask; rows of ``None`` packets are 0 and unknown."""
    ranges = row_ranges(height, packet_rows)
    if len(packets) != len(ranges):
        raise ValueError(f"{len(packets)} packets for {len(ranges)} row ranges")
    indices = torch.zeros(height, width, dtype=torch.long)
    known = torch.zeros(height, width, dtype=torch.bool)
    for (r0, r1), data in zip(ranges, packets, strict=True):
        if data is not None:
            indices[r0:r1] = level.decode(data, r1 - r0, width)
            known[r0:r1] = True
    return indices, known


def naive_fill(level: "LadderLevel", indices: Tensor, known: Tensor) -> Tensor:
    """Missing indices replaced by the level's most frequent codeword (the baseline of recovery)."""
    return torch.where(known, indices, torch.argmax(level.freq[0]).to(indices))


def damage(data: bytes, drop: float, seed: int) -> bytes:
    """``data`` with ``round(drop * packets)`` packets erased, chosen by ``seed``.

    An erased packet keeps its length but has every byte inverted, so its checksum fails (zeroing
    would not: an all-zero packet stays valid).

    Only resilient files (made with ``packet_rows``) have packets to lose; the header is left intact.
    """
    if not 0.0 <= drop <= 1.0:
        raise InputError(f"drop fraction must be in [0, 1], got {drop}")
    c = container.unpack(data, erasable=is_packet)
    names = [name for name, _ in c.streams if is_packet(name)]
    if not names:
        raise InputError("file has no index packets; encode it with --packet-rows to make it resilient")
    lost = np.random.default_rng(seed).choice(len(names), size=round(drop * len(names)), replace=False)
    out = bytearray(data)
    for k in lost.tolist():
        start, length = c.spans[names[k]]
        out[start : start + length] = bytes(b ^ 0xFF for b in out[start : start + length])
    return bytes(out)
