"""The image pack format and its reader: many compressed images in one file, with an index for random access.

Each entry is a file name (its path relative to the packed folder) and the bytes :func:`codec.api.encode`
gave for that image: an ordinary codec file, with its own versioned, checksummed, self-describing
header.  ``codec pack`` (:mod:`codec.image.packer`) writes packs; :class:`codec.ImageArchive`,
``codec info`` and ``codec decode --entry`` read them through this module, which loads no torch.

Layout (all integers little-endian)::

    magic          8 bytes   b"\\x89CPACK\\r\\n"
    version        u16       FORMAT_VERSION
    entries, back to back from byte 10, each:
        tag        4 bytes   b"CPKE"
        name_len   u16       bytes of the name (UTF-8, at most MAX_NAME)
        length     u64       bytes of the codec file
        crc32      u32       CRC32 of the codec file
        head_crc   u32       CRC32 of name_len, length, crc32 and the name
        name       name_len bytes
        data       length bytes: the codec file
    index          raw-deflated UTF-8 JSON, right after the last entry (see below)
    footer         28 bytes, the last of the file:
        index_offset  u64    where the index starts (= where the next entry goes)
        index_len     u64    bytes of the index
        index_crc     u32    CRC32 of the index
        magic         8 bytes  b"CPKINDEX"

The index is ``{"models": [{"name", "quality", "weights_hash"}, ...], "entries": [[name, offset, length,
crc32, [height, width, channels], model], ...]}`` in archive order, where ``offset`` is where the entry's
tag starts and ``model`` is a position in ``models``.  Entries are contiguous: the first starts at byte 10
and the last ends at ``index_offset``.  A reader finds the index from the footer (two small reads),
then reads one entry with one seek and one read, and checks its tag, head checksum, name and data
checksum against the index.

Torn packs.  :mod:`codec.image.packer` writes the index and footer last, after the entries.  An
interrupted append therefore leaves the earlier entries intact and no valid footer: readers refuse such a
file with a one-line error, and :func:`scan` rebuilds the index by walking the entry headers, keeping
every intact entry and dropping the torn tail.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .. import container, fileio
from ..errors import CodecError, CorruptStreamError, FormatError, InputError
from .packets import is_erasable

MAGIC = b"\x89CPACK\r\n"
FORMAT_VERSION = 1
ENTRY_TAG = b"CPKE"
FOOTER_MAGIC = b"CPKINDEX"
MAX_NAME = 4096
MAX_INDEX = 1 << 30

_HEADER = struct.Struct("<8sH")
_ENTRY = struct.Struct("<4sHQII")
_FOOTER = struct.Struct("<QQI8s")
_ENTRY_CHECKED = slice(4, 18)  # name_len, length, crc32: covered by head_crc with the name

HEADER = _HEADER.pack(MAGIC, FORMAT_VERSION)
"""The bytes every pack written by this codec starts with: magic and format version."""


@dataclass(frozen=True)
class Entry:
    """One image of a pack, as its index lists it."""

    name: str
    offset: int
    length: int
    crc32: int
    shape: tuple[int, ...]
    model: int

    @property
    def name_bytes(self) -> bytes:
        """The name as stored (UTF-8)."""
        return self.name.encode()

    @property
    def end(self) -> int:
        """Where the next entry starts."""
        return self.offset + _ENTRY.size + len(self.name_bytes) + self.length

    def record(self, data: bytes) -> bytes:
        """The entry as written to the pack: head, name and codec file ``data``."""
        return _entry_head(self) + self.name_bytes + data


@dataclass
class Index:
    """The entries of a pack, the models that made them, and where the next entry goes."""

    entries: list[Entry] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)
    end: int = _HEADER.size

    @property
    def names(self) -> list[str]:
        """Entry names in archive order."""
        return [e.name for e in self.entries]

    def prepare(self, name: str, data: bytes) -> tuple[Entry, dict]:
        """The entry that codec file ``data`` would be at :attr:`end`, and its model (the index is unchanged)."""
        if _valid_name(name) is None:
            raise InputError(f"cannot pack {name!r}: names must be UTF-8 of at most {MAX_NAME} bytes")
        c = _image_container(name, data)
        model = {k: c.model.get(k) for k in ("name", "quality", "weights_hash")}
        position = self.models.index(model) if model in self.models else len(self.models)
        return Entry(name, self.end, len(data), zlib.crc32(data), tuple(c.shape), position), model

    def append(self, entry: Entry, model: dict) -> None:
        """Add an entry made by :meth:`prepare` (once its bytes are written)."""
        if entry.model == len(self.models):
            self.models.append(model)
        self.entries.append(entry)
        self.end = entry.end

    def tail(self) -> bytes:
        """The index and footer to write at :attr:`end`."""
        rows = [[e.name, e.offset, e.length, e.crc32, list(e.shape), e.model] for e in self.entries]
        text = json.dumps({"models": self.models, "entries": rows}, separators=(",", ":"), sort_keys=True).encode()
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = deflate.compress(text) + deflate.flush()
        return body + _FOOTER.pack(self.end, len(body), zlib.crc32(body), FOOTER_MAGIC)


def _valid_name(name: str) -> bytes | None:
    """The UTF-8 bytes of an entry name, or None if it has none or more than :data:`MAX_NAME` of them."""
    try:
        raw = name.encode()
    except UnicodeEncodeError:
        return None
    return raw if 0 < len(raw) <= MAX_NAME else None


def _image_container(name: str, data: bytes) -> container.Container:
    """The parsed header of entry ``name``'s codec file, which must hold an image."""
    c = container.unpack(data, erasable=is_erasable)
    if c.kind != "image":
        raise InputError(f"{name} holds {c.kind} data; packs hold images")
    return c


def _entry_head(entry: Entry) -> bytes:
    name = entry.name_bytes
    fields = struct.pack("<HQI", len(name), entry.length, entry.crc32)
    return _ENTRY.pack(ENTRY_TAG, len(name), entry.length, entry.crc32, zlib.crc32(fields + name))


# ------------------------------------------------------------------------------------------ reading


def looks_like_pack(data: bytes) -> bool:
    """True when ``data`` starts with a pack's magic bytes."""
    return data[: len(MAGIC)] == MAGIC


def is_pack(path: str | os.PathLike) -> bool:
    """True when the file at ``path`` starts with a pack's magic bytes (one-line errors for missing paths)."""
    with open(fileio.existing_file(path), "rb") as f:
        return looks_like_pack(f.read(len(MAGIC)))


@contextmanager
def _opened(source: str | os.PathLike | bytes) -> Iterator[tuple[BinaryIO, int, str]]:
    """(file object, size, name for messages) of a pack on disk or in memory."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(bytes(source)), len(source), "pack"
        return
    path = fileio.existing_file(source)
    with open(path, "rb") as f:
        yield f, os.fstat(f.fileno()).st_size, str(path)


def _check_header(f: BinaryIO, where: str) -> None:
    """One-line errors unless ``f`` starts with a pack header of a version this codec reads."""
    f.seek(0)
    head = f.read(_HEADER.size)
    if container.looks_like_container(head):
        raise FormatError(f"{where} is a single codec file, not an image pack: decode it with codec decode")
    if not looks_like_pack(head):
        raise FormatError(f"{where} is not a codec image pack (bad magic bytes)")
    if len(head) < _HEADER.size:
        raise CorruptStreamError(f"{where}: pack truncated inside its header")
    (version,) = struct.unpack_from("<H", head, len(MAGIC))
    if version > FORMAT_VERSION:
        raise FormatError(f"{where}: pack format version {version} is newer than this codec reads ({FORMAT_VERSION}); upgrade codec")
    if version < 1:
        raise FormatError(f"{where}: invalid pack format version {version}")


def _damaged(where: str) -> CorruptStreamError:
    return CorruptStreamError(
        f"{where}: pack truncated or its index damaged (an interrupted pack or copy); "
        f"`codec pack SOURCE -o {where} --append` keeps its intact entries and rewrites the index"
    )


def read_index(f: BinaryIO, size: int, where: str) -> Index:
    """The index of the pack in ``f`` (``size`` bytes), read from the footer; every failure is one line."""
    _check_header(f, where)
    if size < _HEADER.size + _FOOTER.size:
        raise _damaged(where)
    f.seek(size - _FOOTER.size)
    offset, length, crc, magic = _FOOTER.unpack(f.read(_FOOTER.size))
    if magic != FOOTER_MAGIC or offset < _HEADER.size or offset + length + _FOOTER.size != size:
        raise _damaged(where)
    f.seek(offset)
    body = f.read(length)
    if zlib.crc32(body) != crc:
        raise _damaged(where)
    try:
        inflate = zlib.decompressobj(-15)
        text = inflate.decompress(body, MAX_INDEX)
        if inflate.unconsumed_tail or not inflate.eof:
            raise CorruptStreamError(f"{where}: pack index does not inflate within {MAX_INDEX} bytes")
        table = json.loads(text.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptStreamError(f"{where}: pack index is not valid deflated JSON") from None
    return _parse_index(table, offset, where)


def _parse_index(table: Any, end: int, where: str) -> Index:
    """Validate the JSON index: types, contiguous entries from byte 10 to ``end``, unique names, known models."""
    bad = CorruptStreamError(f"{where}: pack index is inconsistent")
    if not isinstance(table, dict) or not isinstance(table.get("models"), list) or not isinstance(table.get("entries"), list):
        raise bad
    models = table["models"]
    if not all(isinstance(m, dict) for m in models):
        raise bad
    index, seen = Index(models=models), set()
    for row in table["entries"]:
        entry = _entry_from_row(row, len(models))
        if entry is None or entry.offset != index.end or entry.name in seen:
            raise bad
        seen.add(entry.name)
        index.entries.append(entry)
        index.end = entry.end
    if index.end != end:
        raise bad
    return index


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry_from_row(row: Any, models: int) -> Entry | None:
    """The entry of one index row, or None if the row is malformed."""
    if not isinstance(row, list) or len(row) != 6:
        return None
    name, offset, length, crc, shape, model = row
    if not isinstance(name, str) or _valid_name(name) is None or not all(_is_int(v) for v in (offset, length, crc, model)) or model >= models or crc >> 32:
        return None
    if not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(s) and s > 0 for s in shape):
        return None
    return Entry(name, offset, length, crc, tuple(shape), model)


def read_entry(f: BinaryIO, entry: Entry, where: str) -> bytes:
    """The codec file of ``entry``: one seek and one read, checked against the index."""
    name = entry.name_bytes
    f.seek(entry.offset)
    record = f.read(entry.end - entry.offset)
    head = record[: _ENTRY.size]
    data = record[_ENTRY.size + len(name) :]
    if len(record) < entry.end - entry.offset or head != _entry_head(entry) or record[_ENTRY.size : _ENTRY.size + len(name)] != name:
        raise CorruptStreamError(f"{where}: entry {entry.name!r} does not match the index (pack corrupt)")
    if zlib.crc32(data) != entry.crc32:
        raise CorruptStreamError(f"{where}: checksum mismatch in entry {entry.name!r} (pack corrupt)")
    return data


def open_index(path: str | os.PathLike) -> Index:
    """The index of the pack at ``path`` (reads its header, footer and index only)."""
    with _opened(path) as (f, size, where):
        return read_index(f, size, where)


def entry_bytes(path: str | os.PathLike, name: str) -> bytes:
    """The codec file stored in the pack at ``path`` under ``name``."""
    with _opened(path) as (f, size, where):
        index = read_index(f, size, where)
        for entry in index.entries:
            if entry.name == name:
                return read_entry(f, entry, where)
    raise InputError(f"no entry {name!r} in {where} ({len(index.entries)} entries; `codec info` lists them)")


def describe(source: str | os.PathLike | bytes) -> dict:
    """What a pack holds, from its index alone: entries, bytes, pixels, bpp and the models used."""
    with _opened(source) as (f, size, where):
        index = read_index(f, size, where)
    pixels = [e.shape[0] * e.shape[1] for e in index.entries]
    counts = [sum(e.model == i for e in index.entries) for i in range(len(index.models))]
    return {
        "kind": "image-pack",
        "model": index.models[0].get("name") if len(index.models) == 1 else None,
        "models": [{**m, "entries": n} for m, n in zip(index.models, counts, strict=True)],
        "entries": len(index.entries),
        "bytes": size,
        "image_bytes": sum(e.length for e in index.entries),
        "pixels": sum(pixels),
        "bpp": 8 * size / sum(pixels) if pixels else None,
        "mean_bpp": sum(8 * e.length / p for e, p in zip(index.entries, pixels, strict=True)) / len(pixels) if pixels else None,
        "names": index.names,
        "format_version": FORMAT_VERSION,
    }


def scan(f: BinaryIO, size: int, where: str) -> Index:
    """The index rebuilt by walking the entry headers from the start: every intact entry up to the first
    torn or damaged one (an interrupted write), whose bytes and everything after them are left out."""
    _check_header(f, where)
    index, seen = Index(), set()
    while True:
        f.seek(index.end)
        head = f.read(_ENTRY.size)
        if len(head) < _ENTRY.size:
            return index
        tag, name_len, length, crc, head_crc = _ENTRY.unpack(head)
        if tag != ENTRY_TAG or name_len > MAX_NAME:
            return index
        name = f.read(name_len)
        if len(name) != name_len or zlib.crc32(head[_ENTRY_CHECKED] + name) != head_crc or index.end + _ENTRY.size + name_len + length > size:
            return index
        data = f.read(length)
        try:
            text = name.decode("utf-8")
            if zlib.crc32(data) != crc or text in seen:
                return index
            index.append(*index.prepare(text, data))
            seen.add(text)
        except (UnicodeDecodeError, CodecError):
            return index
