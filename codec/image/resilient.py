"""Resilient VQGAN-cluster files: index packets that decode independently, and a lossy-channel simulator.

A resilient file stores the index map of one image as packets ``p0, p1, ...``, each entropy-coded on
its own (the checkerboard context restarts in every packet), with its length and CRC32 in the
container's stream table.  The header, and with it the packet table, is protected by its own CRC32,
so a decoder that can read the header always knows which positions a damaged or missing packet held.

Which positions a packet holds is its :class:`PacketLayout`: ``rows`` (``packet_rows`` in the header)
and ``lattice`` (``packet_lattice``; 1 in files made before it existed).  The map is split into
``lattice x lattice`` interleaved sub-grids (positions ``(a + lattice*i, b + lattice*j)``), and each
sub-grid into bands of ``rows * lattice`` of its rows, so a packet holds about ``rows`` token rows'
worth of indices, every ``lattice``-th one.  New files use ``lattice = 2``, the *dispersed* layout of
H.264's flexible macroblock ordering: a lost packet leaves isolated holes whose eight neighbours are
mostly received, instead of a strip ``rows`` tokens high, which is far easier to conceal; it costs
under 1 % of the index bits (the checkerboard prior sees neighbours two tokens apart).  ``lattice = 1``
is the plain layout of whole token rows.

Files made with ``packet_parity`` also carry Reed-Solomon parity packets ``f0, f1, ...``
(:mod:`codec.image.parity`): :func:`received_packets` rebuilds lost index packets from them exactly when
enough packets arrived.

:func:`damage` simulates a lossy channel: it erases (inverts) a fraction of the packets (index and
parity packets alike), deterministically per seed, so their checksums fail.  Decoding marks the
positions of lost index packets that could not be rebuilt missing; they are then recovered by the
recovery transformer (:mod:`codec.models.recovery`) or filled naively.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .. import container
from ..errors import FormatError, InputError
from . import parity
from .packets import is_erasable, is_packet

if TYPE_CHECKING:
    from ..models.vqgan_cluster import LadderLevel, VQGANCluster

LATTICE = 2
"""Interleave of new resilient files (see :class:`PacketLayout`)."""
MAX_LATTICE = 16
"""Largest interleave a file may use (each lattice phase of a band is a packet)."""


@dataclass(frozen=True)
class PacketLayout:
    """Which index positions each packet of a resilient file holds (see the module docstring)."""

    rows: int
    lattice: int = 1

    def __post_init__(self) -> None:
        for field in ("rows", "lattice"):  # plain ints only: numpy ints are normalised, bools and floats refused
            value = getattr(self, field)
            if isinstance(value, bool) or not hasattr(type(value), "__index__"):
                raise InputError(f"packet {field} must be an integer, got {value!r}")
            object.__setattr__(self, field, operator.index(value))
        if self.rows < 1 or not 1 <= self.lattice <= MAX_LATTICE:
            raise InputError(f"packet rows must be >= 1 and the lattice in 1..{MAX_LATTICE}, got {self.rows} and {self.lattice}")

    @classmethod
    def from_meta(cls, meta: dict) -> PacketLayout:
        """The layout a file header records (``packet_rows``, ``packet_lattice``; lattice 1 if absent)."""
        rows, lattice = meta.get("packet_rows"), meta.get("packet_lattice", 1)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= top for v, top in ((rows, 1 << 16), (lattice, MAX_LATTICE))):
            raise FormatError("invalid packet layout in header")
        return cls(rows, lattice)

    def meta(self) -> dict[str, int]:
        """Header fields of this layout."""
        return {"packet_rows": self.rows, **({"packet_lattice": self.lattice} if self.lattice > 1 else {})}

    def slices(self, height: int, width: int) -> list[tuple[slice, slice]]:
        """(rows, columns) of every packet of a ``height`` x ``width`` map, in packet order."""
        s, band = self.lattice, self.rows * self.lattice
        out = []
        for r0 in range(0, -(-height // s), band):
            for a in range(s):
                for b in range(s):
                    if a + s * r0 < height and b < width:
                        out.append((slice(a + s * r0, min(a + s * (r0 + band), height), s), slice(b, width, s)))
        return out


def encode_packets(level: LadderLevel, indices: Tensor, layout: PacketLayout) -> list[bytes]:
    """One independently decodable stream per packet of ``layout`` of an index map [h, w]."""
    return [level.encode(indices[rows, cols].contiguous()) for rows, cols in layout.slices(*indices.shape)]


def decode_packets(level: LadderLevel, packets: list[bytes | None], height: int, width: int, layout: PacketLayout) -> tuple[Tensor, Tensor]:
    """Index map [height, width] and its ``known`` mask; positions of ``None`` packets are 0 and unknown."""
    slices = layout.slices(height, width)
    if len(packets) != len(slices):
        raise ValueError(f"{len(packets)} packets for a layout of {len(slices)}")
    indices = torch.zeros(height, width, dtype=torch.long)
    known = torch.zeros(height, width, dtype=torch.bool)
    for (rows, cols), data in zip(slices, packets, strict=True):
        if data is not None:
            target = indices[rows, cols]
            indices[rows, cols] = level.decode(data, *target.shape)
            known[rows, cols] = True
    return indices, known


def received_packets(c: container.Container) -> list[bytes | None]:
    """The index packets of a resilient file, ``None`` where lost, after rebuilding what its parity packets allow."""
    names = [name for name, _ in c.streams if is_packet(name)]
    if names != [f"p{i}" for i in range(len(names))]:
        raise FormatError("index packets are not numbered p0, p1, ... in order")
    checks = [name for name, _ in c.streams if parity.is_parity(name)]
    count = c.meta.get("packet_parity", 0)
    # the count is checked against the table before any list of that length is built
    if not isinstance(count, int) or isinstance(count, bool) or len(checks) != count or checks != [f"f{j}" for j in range(count)]:
        raise FormatError(f"packet table lists {len(checks)} parity packets, the header {count!r}")
    packets, spares = ([None if name in c.missing else c.stream(name) for name in group] for group in (names, checks))
    if not count:
        return packets
    return parity.rebuild(packets, spares, [c.spans[name][1] for name in names], [c.checksums[name] for name in names])


def decode_image(
    net: VQGANCluster,
    packets: list[bytes | None],
    height: int,
    width: int,
    level: int,
    layout: PacketLayout,
    recover: Callable[[Tensor, Tensor, int], Tensor] | None = None,
) -> Tensor:
    """The image [1, 3, height, width] in [0, 1] of a resilient file's index packets at ``level``.

    ``None`` entries are lost packets: the decoder input at their positions is restored by
    ``recover(indices, known, level)`` (which returns the whole decoder input [1, z_channels, h, w])
    or, without it, taken from :func:`naive_fill`.
    """
    lv = net.level(level)
    h, w = math.ceil(height / net.pad_multiple), math.ceil(width / net.pad_multiple)
    indices, known = decode_packets(lv, packets, h, w, layout)
    indices, known = indices.to(lv.codebook.device), known.to(lv.codebook.device)
    if known.all() or recover is None:
        latent = lv.latent(naive_fill(lv, indices, known).unsqueeze(0))
    else:
        latent = recover(indices, known, level)
    return net.latent_decode(latent, (height, width))


def naive_fill(level: LadderLevel, indices: Tensor, known: Tensor) -> Tensor:
    """Missing indices replaced by the level's most frequent codeword (the baseline of recovery)."""
    return torch.where(known, indices, torch.argmax(level.freq[0]).to(indices))


def damage(data: bytes, drop: float, seed: int, independent: bool = False) -> bytes:
    """``data`` with ``round(drop * packets)`` of its intact packets (index and parity packets alike)
    erased, chosen by ``seed`` (Python's ``round``: halves go to the even number).

    With ``independent``, each intact packet is lost on its own with probability ``drop`` instead (an
    i.i.d. channel: the number lost varies from seed to seed).  An erased packet keeps its length but
    has every byte inverted, so its checksum fails (zeroing would not: an all-zero packet stays valid).
    Packets already lost (a damaged or truncated file) stay lost and are not counted, so damaging a
    damaged file again is a second lossy hop.

    Only resilient files (made with ``packet_rows``) have packets to lose; the header is left intact.
    """
    if not 0.0 <= drop <= 1.0:
        raise InputError(f"drop fraction must be in [0, 1], got {drop}")
    c = container.unpack(data, erasable=is_erasable)
    names = [name for name, _ in c.streams if is_erasable(name)]
    if not names:
        raise InputError("file has no index packets; encode it with packet_rows (--packet-rows) to make it resilient")
    names = [name for name in names if name not in c.missing]
    rng = np.random.default_rng(seed)
    if independent:
        lost = np.flatnonzero(rng.random(len(names)) < drop)
    else:
        lost = rng.choice(len(names), size=round(drop * len(names)), replace=False)
    return erase(data, [names[k] for k in lost.tolist()], c)


def erase(data: bytes, names: list[str], c: container.Container | None = None) -> bytes:
    """``data`` with the named packets' bytes inverted, so their checksums fail (``c``: ``data`` unpacked,
    if at hand).  Packets already lost are left as they are (inverting them again would restore them)."""
    c = c or container.unpack(data, erasable=is_erasable)
    out = bytearray(data)
    for name in names:
        if name not in c.spans or not is_erasable(name):
            raise InputError(f"no packet named {name!r} in this file")
        if name in c.missing:
            continue
        start, length = c.spans[name]
        out[start : start + length] = (np.frombuffer(out, np.uint8, length, start) ^ 0xFF).tobytes()
    return bytes(out)
