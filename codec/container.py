"""The one container format of every codec file (images and climate datasets; video later).

Layout (all integers little-endian)::

    magic        8 bytes   b"\\x89CODEC\\r\\n"  (high bit and CR LF catch 7-bit and text-mode damage)
    version      u16       FORMAT_VERSION
    header_len   u32       length of the header, at most MAX_HEADER
    header       bytes     raw-deflated UTF-8 JSON object (inflates to at most MAX_HEADER), see below,
                           deflated with a preset dictionary (version 2: HEADER_DICTIONARY, version 3:
                           HEADER_DICTIONARY_V3); from version 3 followed by the binary stream table
    header_crc   u32       CRC32 of version, header_len and header
    payload      bytes     the streams, concatenated in header order

The JSON header is self-describing: ``kind`` (media kind), ``model`` (``name``, ``quality``,
``weights_hash``), ``shape`` and ``dtype`` of the original, free-form ``meta``, and ``streams``.
:func:`unpack` validates every field, both checksums and the total length before anything is
allocated from the header's numbers.

* Version 1: ``streams`` is a list of ``{"name", "length", "crc32"}`` objects; no dictionary.
* Version 2 adds the preset dictionary (typical header text), which shrinks a header from about
  190 to about 80 bytes: at the 0.01-0.05 bpp of VQGAN-cluster that is up to a quarter of a file.
* Version 3 (written now) keeps only the stream *names* in the JSON (``"streams": ["l0", "l1"]``)
  and moves lengths and CRC32s into a binary table right after the end of the deflate stream,
  inside the checksummed header: per stream a LEB128 varint length and a u32 CRC32.  Decimal
  checksums were about 5 of the 11 bytes a resilient file spent per packet in its header; the table
  spends 5-6 bytes per stream in all.

Older versions still decode.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptStreamError, FormatError

MAGIC = b"\x89CODEC\r\n"
FORMAT_VERSION = 3
HEADER_DICTIONARY = (
    b'{"dtype":"float32","kind":"climate","meta":{},"model":{"name":"vaeformer","quality":2,"weights_hash":"'
    b'"},"shape":[1],"streams":[{"crc32":1,"length":1,"name":"skeleton"},{"crc32":1,"length":1,"name":"variables"},'
    b'{"crc32":1,"length":1,"name":"masks"},{"crc32":1,"length":1,"name":"v0"},{"crc32":1,"length":1,"name":"v1"}]}'
    b'{"dtype":"uint8","kind":"image","meta":{"mode":"RGB"},"model":{"name":"mcquic","quality":2,"weights_hash":"'
    b'"},"shape":[512,768,3],"streams":[{"crc32":1,"length":1,"name":"l0"},{"crc32":1,"length":1,"name":"l1"},'
    b'{"crc32":1,"length":1,"name":"l2"},{"crc32":1,"length":1,"name":"alpha"}]}'
    b'{"dtype":"uint8","kind":"image","meta":{"codebook_size":2048,"level":5,"mode":"RGB"},"model":{"name":"vqgan",'
    b'"quality":5,"weights_hash":"'
)
"""Preset deflate dictionary of version-2 headers.  Part of the format: never change it (add a version)."""
HEADER_DICTIONARY_V3 = (
    b'{"dtype":"float32","kind":"climate","meta":{},"model":{"name":"vaeformer","quality":2,"weights_hash":"'
    b'"},"shape":[1],"streams":["skeleton","variables","masks","v0","v1","v2","v3"]}'
    b'{"dtype":"uint8","kind":"image","meta":{"groups":4,"level":3,"mode":"RGB"},"model":{"name":"mcquic","quality":3,'
    b'"weights_hash":"'
    b'"},"shape":[512,768,3],"streams":["l0","l1","l2","alpha"]}'
    b'{"dtype":"uint8","kind":"image","meta":{"codebook_size":128,"level":5,"mode":"RGB","packet_lattice":2,'
    b'"packet_rows":2},"model":{"name":"vqgan","quality":5,"weights_hash":"'
    b'"},"shape":[512,768,3],"streams":["p0","p1","p2","p3","p4","p5","p6","p7","p8","p9","p10","p11","p12",'
    b'"p13","p14","p15","p16","p17","p18","p19","p20","p21","p22","p23"]}'
    b'{"dtype":"uint8","kind":"image","meta":{"codebook_size":2048,"level":5,"mode":"RGB"},"model":{"name":"vqgan",'
    b'"quality":5,"weights_hash":"'
)
"""Preset deflate dictionary of version-3 headers.  Part of the format: never change it (add a version)."""
_DICTIONARIES = {2: HEADER_DICTIONARY, 3: HEADER_DICTIONARY_V3}
MAX_HEADER = 1 << 20
_PREFIX = struct.Struct("<HI")
_CRC = struct.Struct("<I")
_MAX_VARINT = 6  # bytes of a stream length: 42 bits, far above any real file
KINDS = ("image", "climate", "video")


@dataclass
class Container:
    """A decoded container: header fields plus named payload streams."""

    kind: str
    model: dict[str, Any]
    shape: list[int]
    dtype: str
    streams: list[tuple[str, bytes]]
    meta: dict[str, Any] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    """Erasable streams that failed their checksum or lie past the end (see :func:`unpack`); payload ``b""``."""
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Where each stream lies in the file it was unpacked from: ``(start, declared length)``."""
    checksums: dict[str, int] = field(default_factory=dict)
    """Each stream's CRC32 as the stream table declares it (a lost stream's too)."""
    version: int = FORMAT_VERSION
    """Format version of the file it was unpacked from."""

    def stream(self, name: str) -> bytes:
        """The payload of the stream called ``name``."""
        if name in self.missing:
            raise CorruptStreamError(f"checksum mismatch in stream {name!r} (file corrupt)")
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
    """Serialize a container (current format version)."""
    header = container.header()
    header["streams"] = [name for name, _ in container.streams]
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    if len(text) > MAX_HEADER:
        raise ValueError("header too large")
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=HEADER_DICTIONARY_V3)
    table = b"".join(varint(len(d)) + _CRC.pack(zlib.crc32(d)) for _, d in container.streams)
    body = deflate.compress(text) + deflate.flush() + table
    prefix = _PREFIX.pack(FORMAT_VERSION, len(body))
    crc = zlib.crc32(prefix + body)
    return b"".join([MAGIC, prefix, body, _CRC.pack(crc)] + [d for _, d in container.streams])


def varint(n: int) -> bytes:
    """LEB128 encoding of a non-negative integer (7 bits per byte, low first, high bit = more)."""
    if n < 0:
        raise ValueError(f"a stream length cannot be negative: {n}")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """The :func:`varint` at ``pos`` and the position after it; :class:`CorruptStreamError` naming ``what`` if cut or too long."""
    n, shift = 0, 0
    for _ in range(_MAX_VARINT):
        if pos >= len(data):
            break
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, pos
    raise CorruptStreamError(f"{what} truncated or invalid")


def _stream_table(names: list, table: bytes) -> list[dict[str, Any]]:
    """Version-3 stream entries ``{"name", "length", "crc32"}`` from the JSON names and the binary table."""
    if not all(isinstance(n, str) for n in names):
        raise FormatError("header field 'streams' must list stream names")
    entries, pos = [], 0
    for name in names:
        length, pos = read_varint(table, pos, "stream table")
        if pos + _CRC.size > len(table):
            raise CorruptStreamError("stream table truncated or invalid")
        (crc,) = _CRC.unpack_from(table, pos)
        pos += _CRC.size
        entries.append({"name": name, "length": length, "crc32": crc})
    if pos != len(table):
        raise CorruptStreamError(f"{len(table) - pos} unexpected bytes after the stream table")
    return entries


def looks_like_container(data: bytes) -> bool:
    """True when ``data`` starts with this format's magic bytes."""
    return data[: len(MAGIC)] == MAGIC


def require_magic(data: bytes) -> None:
    """A one-line :class:`FormatError` unless ``data`` starts with the magic bytes (cheap: no model, no torch)."""
    if not looks_like_container(data):
        raise FormatError("not a codec file (bad magic bytes)")


def _header(data: bytes) -> tuple[dict, int, int]:
    """``(header, version, payload offset)`` of the container at the start of ``data``; one-line errors."""
    require_magic(data)
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
        inflate = zlib.decompressobj(-15, zdict=_DICTIONARIES[version]) if version in _DICTIONARIES else zlib.decompressobj(-15)
        text = inflate.decompress(data[pos + _PREFIX.size : end], MAX_HEADER)
        if inflate.unconsumed_tail or not inflate.eof:
            raise CorruptStreamError("header does not inflate to a complete JSON object within the size limit")
        header = json.loads(text.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptStreamError("header is not valid deflated JSON") from None
    if version >= 3 and isinstance(header, dict):
        header["streams"] = _stream_table(_require(header, "streams", list), inflate.unused_data)
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")
    return header, version, end + _CRC.size


def unpack(data: bytes, erasable: Callable[[str], bool] | None = None) -> Container:
    """Parse and validate a container; every failure is a one-line :class:`FormatError`.

    Streams whose name satisfies ``erasable`` (the packets of a resilient file) may be damaged or
    cut off: instead of failing, they are listed in ``Container.missing``.  The header is always
    checked in full, so the stream table (names, lengths, checksums) is trustworthy.
    """
    header, version, offset = _header(data)
    c = _from_header(header, data, offset, erasable or (lambda name: False))
    c.version = version
    return c


def peek_kind(data: bytes) -> str:
    """The media kind of the (first) container in ``data``, from its checked header alone."""
    return str(_header(data)[0].get("kind"))


def length(data: bytes) -> int:
    """Total bytes of the container at the start of ``data`` by its checked header (``data`` may hold more, or less)."""
    header, _, offset = _header(data)
    entries = _require(header, "streams", list)
    return offset + sum(int(e.get("length", 0)) for e in entries if isinstance(e, dict))


def head_bytes() -> int:
    """Bytes from a container's start that always hold its whole header (magic, prefix, header, checksum):
    what :func:`length` needs, so a long file of many containers is not sliced whole for each."""
    return len(MAGIC) + _PREFIX.size + MAX_HEADER + _CRC.size


def split(data: bytes) -> list[bytes]:
    """Consecutive containers (a video file: one per group of pictures) as separate byte strings, each
    delimited by its own header's stream lengths; a one-line error when the last one is cut short."""
    parts, pos = [], 0
    while pos < len(data):
        n = length(data[pos : pos + head_bytes()])
        if pos + n > len(data):
            raise CorruptStreamError(f"file truncated: the container at byte {pos} needs {n} bytes")
        parts.append(data[pos : pos + n])
        pos += n
    return parts


def _require(header: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    value = header.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise FormatError(f"header field {key!r} missing or of the wrong type")
    return value


def _from_header(header: dict, data: bytes, offset: int, erasable: Callable[[str], bool]) -> Container:
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
    streams, missing, spans, checksums = [], set(), {}, {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise FormatError("stream table entry is not an object")
        name, length, crc = (_require(entry, k, t) for k, t in (("name", str), ("length", int), ("crc32", int)))
        if length < 0:
            raise CorruptStreamError(f"stream {name!r} has a negative length")
        payload = data[offset : offset + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            if not erasable(name):
                what = "file truncated: stream {!r} needs {} bytes" if len(payload) < length else "checksum mismatch in stream {!r} (file corrupt)"
                raise CorruptStreamError(what.format(name, length))
            missing.add(name)
            payload = b""
        streams.append((name, payload))
        spans[name] = (offset, length)
        checksums[name] = crc
        offset += length
    if offset < len(data) or offset > len(data) and not missing:
        raise CorruptStreamError(f"{len(data) - offset} unexpected bytes after the last stream")
    return Container(kind=kind, model=model, shape=shape, dtype=dtype, streams=streams, meta=meta, missing=missing, spans=spans, checksums=checksums)
