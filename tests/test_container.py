"""Container format: round trip, and every kind of damaged or foreign input fails cleanly."""

import struct
import zlib

import pytest

from codec import container
from codec.errors import CorruptStreamError, FormatError
from tests.helpers import container_file


def sample() -> container.Container:
    return container.Container(
        kind="image",
        model={"name": "mcquic", "quality": 2, "weights_hash": "0123456789abcdef"},
        shape=[5, 7, 3],
        dtype="uint8",
        streams=[("l0", b"\x01\x02\x03\x04"), ("l1", b""), ("alpha", b"xyz")],
        meta={"mode": "RGB"},
    )


def test_round_trip():
    data = container.pack(sample())
    c = container.unpack(data)
    assert c.streams == sample().streams and c.model == sample().model and c.shape == [5, 7, 3]
    assert c.stream("alpha") == b"xyz"
    with pytest.raises(FormatError):
        c.stream("nope")


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_format_version_decodes(version):
    """Version 1 (no dictionary) and 2 (stream table in the JSON) stay readable; 3 is what pack writes."""
    c = sample()
    payload = b"".join(d for _, d in c.streams)
    back = container.unpack(container_file(c.header(), payload, version=version))
    assert back.streams == c.streams and back.model == c.model and back.version == version
    if version == container.FORMAT_VERSION:
        assert container_file(c.header(), payload) == container.pack(c)


def test_binary_stream_table_shrinks_packet_headers():
    """Version 3 spends at most 6 bytes per small stream on its name, length and CRC32 (version 2: about 11)."""
    packets = [(f"p{i}", bytes([i]) * 90) for i in range(16)]
    model = {"name": "vqgan", "quality": 5, "weights_hash": "0123456789abcdef"}
    c = container.Container(kind="image", model=model, shape=[512, 768, 3], dtype="uint8", streams=packets, meta={"mode": "RGB"})
    one = container.Container(**{**vars(c), "streams": packets[:1]})
    header_bytes = [len(container.pack(x)) - sum(len(d) for _, d in x.streams) for x in (one, c)]
    assert header_bytes[1] - header_bytes[0] <= 15 * 6
    v2 = container_file(c.header(), b"".join(d for _, d in packets), version=2)
    assert len(v2) - len(container.pack(c)) >= 15 * 4


@pytest.mark.parametrize(
    "table, message",
    [
        (b"", "truncated"),  # no entry at all
        (b"\x04" + bytes(3), "truncated"),  # CRC cut short
        (b"\x80" * 7, "truncated or invalid"),  # a varint longer than any length
        (None, "unexpected bytes"),  # a correct table plus one byte (below)
    ],
)
def test_damaged_stream_table_fails_cleanly(table, message):
    c = container.Container(kind="image", model={"name": "m"}, shape=[1], dtype="uint8", streams=[("l0", b"abcd")])
    if table is None:
        table = container.varint(4) + struct.pack("<I", zlib.crc32(b"abcd")) + b"!"
    with pytest.raises(CorruptStreamError, match=message):
        container.unpack(container_file(c.header(), b"abcd", table=table))
    with pytest.raises(FormatError, match="stream names"):
        container.unpack(container_file({**c.header(), "streams": [1]}, b"abcd", table=b""))


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
        container.unpack(container_file(sample().header(), version=container.FORMAT_VERSION + 1))
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
        lambda h: h.update(streams=[{"name": "l0", "length": 10**12, "crc32": 0}]),
        lambda h: h.update(meta=[]),
    ],
)
@pytest.mark.parametrize("version", [2, 3])
def test_invalid_header_fields(mutate, version):
    header = sample().header()
    mutate(header)
    with pytest.raises(FormatError):
        container.unpack(container_file(header, b"\x01\x02\x03\x04xyz", version=version))


def test_negative_stream_length_of_a_version_2_header():
    """(Version 3 lengths are unsigned varints.)"""
    header = {**sample().header(), "streams": [{"name": "l0", "length": -1, "crc32": 0}]}
    with pytest.raises(CorruptStreamError, match="negative"):
        container.unpack(container_file(header, b"\x01\x02\x03\x04xyz", version=2))


def test_header_that_is_not_deflated_json():
    body = b"not deflate at all"
    prefix = struct.pack("<HI", 1, len(body))
    data = container.MAGIC + prefix + body + struct.pack("<I", zlib.crc32(prefix + body))
    with pytest.raises(CorruptStreamError):
        container.unpack(data)
