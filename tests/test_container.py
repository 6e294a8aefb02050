"""Container format: round trip, and every kind of damaged or foreign input fails cleanly."""

import json
import struct
import zlib

import pytest

from codec import container
from codec.errors import CorruptStreamError, FormatError


def sample() -> container.Container:
    return container.Container(
        kind="image",
        model={"name": "mcquic", "quality": 2, "weights_hash": "0123456789abcdef"},
        shape=[5, 7, 3],
        dtype="uint8",
        streams=[("l0", b"\x01\x02\x03\x04"), ("l1", b""), ("alpha", b"xyz")],
        meta={"mode": "RGB"},
    )


def raw(header: dict, payload: bytes = b"", version: int = container.FORMAT_VERSION) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, **({"zdict": container.HEADER_DICTIONARY} if version >= 2 else {}))
    body = deflate.compress(json.dumps(header).encode()) + deflate.flush()
    prefix = struct.pack("<HI", version, len(body))
    return container.MAGIC + prefix + body + struct.pack("<I", zlib.crc32(prefix + body)) + payload


def test_round_trip():
    data = container.pack(sample())
    c = container.unpack(data)
    assert c.streams == sample().streams and c.model == sample().model and c.shape == [5, 7, 3]
    assert c.stream("alpha") == b"xyz"
    with pytest.raises(FormatError):
        c.stream("nope")


def test_version_1_files_still_decode():
    """Version 1 headers (no preset dictionary) stay readable."""
    c = sample()
    payload = b"".join(d for _, d in c.streams)
    back = container.unpack(raw(c.header(), payload, version=1))
    assert back.streams == c.streams and back.model == c.model


def test_header_dictionary_shrinks_headers():
    """The preset dictionary keeps a typical image header well under 100 bytes."""
    data = container.pack(sample())
    assert len(data) - sum(len(d) for _, d in sample().streams) < 100


def test_erasable_streams_are_reported_missing():
    c = sample()
    data = bytearray(container.pack(c))
    start, length = container.unpack(bytes(data)).spans["l0"]
    data[start] ^= 0xFF
    with pytest.raises(CorruptStreamError, match="l0"):
        container.unpack(bytes(data))
    lenient = container.unpack(bytes(data), erasable=lambda name: name == "l0")
    assert lenient.missing == {"l0"} and lenient.stream("alpha") == b"xyz"
    with pytest.raises(CorruptStreamError, match="l0"):
        lenient.stream("l0")
    data[-1] ^= 0xFF  # a non-erasable stream still fails
    with pytest.raises(CorruptStreamError, match="alpha"):
        container.unpack(bytes(data), erasable=lambda name: name == "l0")
    assert container.unpack(raw(c.header(), b"".join(d for _, d in c.streams), version=1)).version == 1


def test_every_truncation_fails_cleanly():
    data = container.pack(sample())
    for n in range(len(data)):
        with pytest.raises(FormatError):
            container.unpack(data[:n])


def test_every_flipped_byte_fails_cleanly():
    data = container.pack(sample())
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        with pytest.raises(FormatError):
            container.unpack(bytes(damaged))


def test_foreign_newer_and_trailing_data():
    with pytest.raises(FormatError, match="not a codec file"):
        container.unpack(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(FormatError, match="newer"):
        container.unpack(raw(sample().header(), version=container.FORMAT_VERSION + 1))
    with pytest.raises(CorruptStreamError, match="unexpected bytes"):
        container.unpack(container.pack(sample()) + b"!")


def test_absurd_header_length_is_refused_before_reading():
    data = container.MAGIC + struct.pack("<HI", 1, 0xFFFFFFFF) + bytes(16)
    with pytest.raises(CorruptStreamError, match="exceeds"):
        container.unpack(data)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: h.pop("kind"),
        lambda h: h.update(kind="hologram"),
        lambda h: h.update(shape=[0, 7, 3]),
        lambda h: h.update(shape=[5, "7", 3]),
        lambda h: h.update(shape=[True, 7, 3]),
        lambda h: h.update(streams="l0"),
        lambda h: h.update(streams=[{"name": "l0", "length": -1, "crc32": 0}]),
        lambda h: h.update(streams=[{"name": "l0", "length": 10**12, "crc32": 0}]),
        lambda h: h.update(meta=[]),
    ],
)
def test_invalid_header_fields(mutate):
    header = sample().header()
    mutate(header)
    with pytest.raises(FormatError):
        container.unpack(raw(header, b"\x01\x02\x03\x04xyz"))


def test_header_that_is_not_deflated_json():
    body = b"not deflate at all"
    prefix = struct.pack("<HI", 1, len(body))
    data = container.MAGIC + prefix + body + struct.pack("<I", zlib.crc32(prefix + body))
    with pytest.raises(CorruptStreamError):
        container.unpack(data)
