"""Missing-value masks as bytes: the packed bits of a field's NaN points, deflated (shared by ``.cra`` files and Zarr chunks)."""

from __future__ import annotations

import zlib

import numpy as np

from ..errors import CorruptStreamError


def pack_missing(missing: np.ndarray) -> bytes:
    """The deflated packed bits of a boolean ``missing`` array (C order)."""
    return zlib.compress(np.packbits(missing.ravel()).tobytes(), 9)


def unpack_valid(blob: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The validity mask (True = a value) of a field of ``shape`` from :func:`pack_missing`'s bytes."""
    n = shape[0] * shape[1]
    try:
        bits = np.frombuffer(zlib.decompressobj().decompress(blob, (n + 7) // 8 + 1), np.uint8)
    except zlib.error:
        raise CorruptStreamError("mask is corrupt") from None
    if bits.size != (n + 7) // 8:
        raise CorruptStreamError("mask does not match the field shape")
    return ~np.unpackbits(bits, count=n).astype(bool).reshape(shape)
