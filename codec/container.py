"""The one container format of every codec file (images and climate datasets; video later).

Layout (all integers little-endian)::

    magic        8 bytes   b"\\x89CODEC\\r\\n"  (high bit and CR LF catch 7-bit and text-mode damage)
    version      u16       FORMAT_VERSION
    header_len   u32       length of the header, at most MAX_HEADER
    header       bytes     raw-deflated UTF-8 JSON object (inflates to at most MAX_HEADER), see below
    header_crc   u32       CRC32 of version, header_len and header
    payload      bytes     the streams, concatenated in header order

The JSON header is self-describing: ``kind`` (media kind), ``model`` (``name``, ``quality``,
``weights_hash``), ``shape`` and ``dtype`` of the original, free-form ``meta``, and ``streams``, a
list of ``{"name", "length", "crc32"}``.  :func:`unpack` validates every field, both checksums and
the total length before anything is allocated from the header's numbers.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptStreamError, FormatError

MAGIC = b"\x89CODEC\r\n"
FORMAT_VERSION = 1
MAX_HEADER = 1 << 20
_PREFIX = struct.Struct("<HI")
_CRC = struct.Struct("<I")
KINDS = ("image", "climate")


@dataclass
class Container:
    """A decoded container: header fields plus named payload streams."""

    kind: str
    model: dict[str, Any]
    shape: list[int]
    dtype: str
    streams: list[tuple[str, bytes]]
    meta: dict[str, Any] = field(default_factory=dict)

    def stream(self, name: str) -> bytes:
        """The payload of the stream called ``name``."""
        for key, data in self.streams:
            if key == name:
                return data
        raise FormatError(f"stream {name!r} missing from file")

    def header(self) -> dict[str, Any]:
        """The JSON header, as written to the file."""
        return {
            "kind": self.kind,
            "model": self.model,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "meta": self.meta,
            "streams": [{"name": n, "length": len(d), "crc32": zlib.crc32(d)} for n, d in self.streams],
        }


def pack(container: Container) -> bytes:
    """Serialize a container."""
    text = json.dumps(container.header(), separators=(",", ":"), sort_keys=True).encode()
    if len(text) > MAX_HEADER:
        raise ValueError("header too large")
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    header = deflate.compress(text) + deflate.flush()
    prefix = _PREFIX.pack(FORMAT_VERSION, len(header))
    crc = zlib.crc32(prefix + header)
    return b"".join([MAGIC, prefix, header, _CRC.pack(crc)] + [d for _, d in container.streams])


def looks_like_container(data: bytes) -> bool:
    """True when ``data`` starts with this format's magic bytes."""
    return data[: len(MAGIC)] == MAGIC


def unpack(data: bytes) -> Container:
    """Parse and validate a container; every failure is a one-line :class:`FormatError`."""
    if not looks_like_container(data):
        raise FormatError("not a codec file (bad magic bytes)")
    pos = len(MAGIC)
    if len(data) < pos + _PREFIX.size:
        raise CorruptStreamError("file truncated inside the header")
    version, header_len = _PREFIX.unpack_from(data, pos)
    if version > FORMAT_VERSION:
        raise FormatError(f"format version {version} is newer than this codec reads ({FORMAT_VERSION}); upgrade codec")
    if version < 1:
        raise FormatError(f"invalid format version {version}")
    if header_len > MAX_HEADER:
        raise CorruptStreamError(f"header length {header_len} exceeds {MAX_HEADER} bytes")
    end = pos + _PREFIX.size + header_len
    if len(data) < end + _CRC.size:
        raise CorruptStreamError("file truncated inside the header")
    (crc,) = _CRC.unpack_from(data, end)
    if zlib.crc32(data[pos:end]) != crc:
        raise CorruptStreamError("header checksum mismatch (file corrupt)")
    try:
        inflate = zlib.decompressobj(-15)
        text = inflate.decompress(data[pos + _PREFIX.size : end], MAX_HEADER)
        if inflate.unconsumed_tail or not inflate.eof:
            raise CorruptStreamError("header does not inflate to a complete JSON object within the size limit")
        header = json.loads(text.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptStreamError("header is not valid deflated JSON") from None
    return _from_header(header, data, end + _CRC.size)


def _require(header: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    value = header.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise FormatError(f"header field {key!r} missing or of the wrong type")
    return value


def _from_header(header: Any, data: bytes, offset: int) -> Container:
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")
    kind = _require(header, "kind", str)
    if kind not in KINDS:
        raise FormatError(f"media kind {kind!r} is not supported by this version of codec")
    model = _require(header, "model", dict)
    shape = _require(header, "shape", list)
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s < 1 << 31 for s in shape):
        raise FormatError("header field 'shape' must list positive integers")
    dtype = _require(header, "dtype", str)
    meta = _require(header, "meta", dict)
    entries = _require(header, "streams", list)
    streams = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise FormatError("stream table entry is not an object")
        name, length, crc = (_require(entry, k, t) for k, t in (("name", str), ("length", int), ("crc32", int)))
        if length < 0 or offset + length > len(data):
            raise CorruptStreamError(f"file truncated: stream {name!r} needs {length} bytes")
        payload = data[offset : offset + length]
        if zlib.crc32(payload) != crc:
            raise CorruptStreamError(f"checksum mismatch in stream {name!r} (file corrupt)")
        streams.append((name, payload))
        offset += length
    if offset != len(data):
        raise CorruptStreamError(f"{len(data) - offset} unexpected bytes after the last stream")
    return Container(kind=kind, model=model, shape=shape, dtype=dtype, streams=streams, meta=meta)
