"""Reed-Solomon parity packets of resilient files: any ``N`` lost packets of ``n + N`` are rebuilt exactly.

A resilient file (:mod:`codec.image.resilient`) made with ``packet_parity`` adds ``N`` parity streams
``f0 .. f{N-1}`` after its ``n`` index packets: the check blocks of a systematic ``(n, n + N)``
Reed-Solomon erasure code over GF(2^8) (zfec, the code of Tahoe-LAFS) whose ``n`` primary blocks are
the index packets, each zero-padded to the longest one.  The header records ``N``
(``packet_parity``); the stream table already holds every packet's length and CRC32, so a packet
rebuilt from any ``n`` received blocks is cut to its length and must match its checksum.

With more than ``N`` blocks lost the code rebuilds nothing (it is maximum-distance separable: ``n``
blocks are needed), and the lost index packets are left to the recovery transformer as without
parity.  Parity buys exact recovery with bits: a loss rate ``p`` of all packets is covered when
``N >= p / (1 - p) * n`` (``N = n / 4`` for 20 %).
"""

from __future__ import annotations

import math
import numbers
import re
import zlib

import zfec

from ..errors import FormatError, InputError

PARITY = re.compile(r"f(?:0|[1-9][0-9]*)", re.ASCII)
MAX_BLOCKS = 256
"""zfec's limit on index packets plus parity packets of one file."""


def is_parity(name: str) -> bool:
    """True for the name of a parity packet (``f0``, ``f1``, ...)."""
    return PARITY.fullmatch(name) is not None


def parity_count(packets: int, fraction: float) -> int:
    """Parity packets for ``packets`` index packets at ``fraction`` of their number, rounded up."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not (0.0 < fraction <= 1.0):
        raise InputError(f"parity fraction must be in (0, 1], got {fraction}")
    count = math.ceil(fraction * packets - 1e-9)  # 0.1 * 30 is 3.0000000000000004 in floats: 3, not 4
    if packets + count > MAX_BLOCKS:
        raise InputError(f"{packets} packets plus {count} parity packets exceed {MAX_BLOCKS}; use larger packets (packet_rows, --packet-rows)")
    return count


def encode(packets: list[bytes], count: int) -> list[bytes]:
    """The ``count`` parity packets of ``packets`` (each as long as the longest packet)."""
    k, width = len(packets), max(map(len, packets))
    blocks = tuple(p.ljust(width, b"\0") for p in packets)
    return [bytes(b) for b in zfec.Encoder(k, k + count).encode(blocks, tuple(range(k, k + count)))]


def rebuild(packets: list[bytes | None], parity: list[bytes | None], lengths: list[int], checksums: list[int]) -> list[bytes | None]:
    """``packets`` with the lost ones (``None``) rebuilt from the parity packets when enough blocks arrived.

    ``lengths`` and ``checksums`` are the index packets' own, from the stream table.  With fewer than
    ``len(packets)`` blocks received the packets are returned as they are.  A rebuilt packet that
    fails its checksum means the parity does not belong to these packets: a :class:`FormatError`.
    """
    k, m = len(packets), len(packets) + len(parity)
    if not 0 < k < m <= MAX_BLOCKS:
        raise FormatError(f"{k} packets with {m - k} parity packets: not a valid parity code")
    lost = [i for i, p in enumerate(packets) if p is None]
    spares = [(k + j, p) for j, p in enumerate(parity) if p is not None]
    if not lost or len(spares) < len(lost):
        return list(packets)
    width = max(lengths)
    if any(len(p) != width for _, p in spares):
        raise FormatError("parity packets differ in length from the longest index packet")
    spare = iter(spares)
    # canonical order for zfec: received primary blocks at their own index, parity blocks in the gaps
    chosen = [(i, p.ljust(width, b"\0")) if p is not None else next(spare) for i, p in enumerate(packets)]
    primary = zfec.Decoder(k, m).decode(tuple(p for _, p in chosen), tuple(i for i, _ in chosen))
    out = list(packets)
    for i in lost:
        data = bytes(primary[i][: lengths[i]])
        if zlib.crc32(data) != checksums[i]:
            raise FormatError(f"packet p{i} rebuilt from the parity fails its checksum (parity of another file?)")
        out[i] = data
    return out
