"""Python API: round trips for every input type and mode, determinism, and errors."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import codec
from codec import api, container
from codec.checkpoint import weights_hash
from codec.errors import FormatError, InputError, ModelError
from codec.metrics import psnr


def test_rgb_round_trip_shape_and_info(photo, tiny_weights):
    data = codec.encode(photo, weights=tiny_weights)
    out = codec.decode(data, weights=tiny_weights)
    assert out.shape == photo.shape and out.dtype == np.uint8
    meta = codec.info(data)
    assert meta["kind"] == "image" and meta["model"] == "mcquic" and meta["shape"] == [70, 101, 3]
    assert meta["bytes"] == len(data) and meta["bpp"] == pytest.approx(8 * len(data) / (70 * 101))
    assert set(meta["streams"]) == {"l0", "l1", "l2"}


def test_same_bytes_and_decode_across_thread_counts(full_weights):
    rng = np.random.default_rng(0)
    img = (rng.random((96, 160, 3)) * 255).astype(np.uint8)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            data = codec.encode(img, weights=full_weights)
            results.append((data, codec.decode(data, weights=full_weights)))
            assert torch.get_num_threads() == threads  # the caller's setting is restored
    finally:
        torch.set_num_threads(previous)
    assert results[0][0] == results[1][0]
    assert np.array_equal(results[0][1], results[1][1])


def test_inputs_path_pil_tensor_and_float_array_agree(photo, tiny_weights, tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(photo).save(path)
    reference = codec.encode(photo, weights=tiny_weights)
    assert codec.encode(str(path), weights=tiny_weights) == reference
    assert codec.encode(path, weights=tiny_weights) == reference
    assert codec.encode(Image.fromarray(photo), weights=tiny_weights) == reference
    assert codec.encode(torch.from_numpy(photo).permute(2, 0, 1), weights=tiny_weights) == reference
    assert codec.encode(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255, weights=tiny_weights) == reference
    assert codec.encode(photo.astype(np.float32) / 255, weights=tiny_weights) == reference


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK"])
def test_modes(photo, tiny_weights, mode):
    rgba = np.concatenate([photo, (np.arange(photo.shape[1]) % 256).astype(np.uint8)[None, :, None].repeat(70, 0)], 2)
    im = Image.fromarray(rgba, "RGBA").convert(mode)
    out = codec.decode(codec.encode(im, weights=tiny_weights), weights=tiny_weights)
    expected = {"L": (70, 101), "LA": (70, 101, 2), "RGBA": (70, 101, 4), "P": (70, 101, 3), "1": (70, 101), "CMYK": (70, 101, 3)}
    assert out.shape == expected[mode]
    if mode in ("LA", "RGBA"):
        assert np.array_equal(out[..., -1], np.asarray(im)[..., -1])  # alpha is lossless


def test_bpp_target_picks_the_highest_level_that_fits(tiny_weights, photo):
    sizes = {q: len(codec.encode(photo, weights=tiny_weights, quality=q)) for q in (1, 2)}
    assert sizes[1] < sizes[2]
    bpp = [8 * sizes[q] / (photo.shape[0] * photo.shape[1]) for q in (1, 2)]
    assert codec.info(codec.encode(photo, weights=tiny_weights, bpp=bpp[1]))["quality"] == 2
    assert codec.info(codec.encode(photo, weights=tiny_weights, bpp=(bpp[0] + bpp[1]) / 2))["quality"] == 1
    with pytest.raises(InputError, match="even level 1"):
        codec.encode(photo, weights=tiny_weights, bpp=bpp[0] / 2)


def test_tiny_and_odd_sizes(tiny_weights):
    for h, w in [(1, 1), (1, 200), (65, 3)]:
        img = np.full((h, w, 3), 120, np.uint8)
        out = codec.decode(codec.encode(img, weights=tiny_weights), weights=tiny_weights)
        assert out.shape == (h, w, 3)


def test_trained_direction_sanity(shipped, photo):
    """Shipped levels load by quality; the default level is 2; quality outside the ladder errors."""
    assert codec.info(codec.encode(photo))["quality"] == 2
    data = codec.encode(photo, quality=1)
    assert codec.info(data)["quality"] == 1
    assert psnr(torch.from_numpy(photo).float() / 255, torch.from_numpy(codec.decode(data)).float() / 255) > 5
    assert codec.info(data)["groups"] == 2 and codec.info(codec.encode(photo, quality=2))["groups"] == 4
    with pytest.raises(ModelError, match="levels 1..2"):
        codec.encode(photo, quality=3)
    with pytest.raises(ModelError, match="unknown model"):
        codec.encode(photo, model="nope")
    assert [q["quality"] for q in codec.list_models()[0]["qualities"]] == [1, 2]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 4, 5), np.uint8), "C in 1..4"),
        (np.zeros((4,), np.uint8), "C in 1..4"),
        (np.zeros((4, 4, 3), np.int16), "dtype"),
        (np.full((4, 4, 3), 1.5, np.float32), r"\[0, 1\]"),
        (np.full((4, 4, 3), np.nan, np.float32), r"\[0, 1\]"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (torch.zeros(5, 4, 4), "C in 1..4"),
        ({"not": "an image"}, "cannot compress"),
    ],
)
def test_bad_inputs(bad, message, tiny_weights):
    with pytest.raises(InputError, match=message):
        codec.encode(bad, weights=tiny_weights)


def test_absurd_size_refused_before_allocation(tiny_weights):
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=(40000, 40000, 3), strides=(0, 0, 0))
    with pytest.raises(InputError, match="size limit"):
        codec.encode(big, weights=tiny_weights)


def _png16(rgb: np.ndarray) -> bytes:
    """A 16-bit-per-sample RGB PNG (Pillow cannot write one), built with zlib."""
    import struct
    import zlib

    h, w, _ = rgb.shape
    rows = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_sixteen_bit_and_non_image_files(tmp_path, tiny_weights):
    p16 = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(p16)
    with pytest.raises(InputError, match="8-bit"):
        codec.encode(p16, weights=tiny_weights)
    rgb16 = tmp_path / "deep-rgb.png"  # Pillow opens 16-bit RGB as 8-bit "RGB": it must be refused, not cut
    rgb16.write_bytes(_png16(np.random.default_rng(0).integers(0, 65535, (8, 8, 3)).astype(np.uint16)))
    with Image.open(rgb16) as im:
        assert im.mode == "RGB"
    for path in (p16, rgb16):
        with pytest.raises(InputError, match="more than 8 bits per sample"):
            codec.encode(path, weights=tiny_weights)
    with Image.open(rgb16) as im, pytest.raises(InputError, match="more than 8 bits per sample"):
        codec.encode(im, weights=tiny_weights)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        codec.encode(text, weights=tiny_weights)
    with pytest.raises(InputError, match="no such file"):
        codec.encode(tmp_path / "missing.png", weights=tiny_weights)


def test_decode_needs_the_same_weights(photo, tiny_weights, tmp_path):
    from codec.models.mcquic import TINY
    from tests.conftest import make_weights

    other = make_weights(tmp_path / "other.safetensors", TINY, seed=7)
    data = codec.encode(photo, weights=tiny_weights)
    with pytest.raises(ModelError, match="--weights"):  # not the shipped weights
        codec.decode(data)
    with pytest.raises(ModelError, match="was encoded with mcquic weights"):
        codec.decode(data, weights=other)
    with pytest.raises(ModelError, match="not found"):
        codec.decode(data, weights=tmp_path / "none.safetensors")


def test_decode_rejects_foreign_and_damaged_bytes(photo, tiny_weights):
    png = io.BytesIO()
    Image.fromarray(photo).save(png, format="PNG")
    with pytest.raises(FormatError, match="not a codec file"):
        codec.decode(png.getvalue())
    data = bytearray(codec.encode(photo, weights=tiny_weights))
    data[-3] ^= 1
    with pytest.raises(FormatError, match="checksum"):
        codec.decode(bytes(data), weights=tiny_weights)


def test_weights_hash_changes_with_any_tensor():
    a = {"w": torch.zeros(3), "b": torch.ones(2)}
    b = {"w": torch.zeros(3), "b": torch.tensor([1.0, 1.0 + 1e-7])}
    assert weights_hash(a) == weights_hash(dict(reversed(list(a.items()))))
    assert weights_hash(a) != weights_hash(b)


def test_thread_variable_is_validated(monkeypatch, photo, tiny_weights):
    monkeypatch.setenv("CODEC_THREADS", "many")
    with pytest.raises(InputError, match="CODEC_THREADS"):
        api.encode(photo, weights=tiny_weights)


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".tif", ".bmp"])
def test_input_file_formats(photo, tiny_weights, tmp_path, suffix):
    path = tmp_path / f"in{suffix}"
    Image.fromarray(photo).save(path)
    out = codec.decode(codec.encode(path, weights=tiny_weights), weights=tiny_weights)
    assert out.shape == photo.shape
    written = Image.open(io.BytesIO(api.image_bytes(out, tmp_path / f"out{suffix}")))
    assert written.size == (101, 70)


def test_a_file_of_retired_shipped_weights_names_the_commit_to_fetch(photo):
    """A file made by weights the codec shipped earlier says which commit holds them, in one line."""
    from codec import catalog

    c = container.unpack(codec.encode(photo, model="mcquic", quality=1))
    digest = next(d for d, (name, _) in catalog.RETIRED_WEIGHTS.items() if name == "mcquic")
    c.model["weights_hash"] = digest
    with pytest.raises(ModelError, match=rf"shipped in codec commit {catalog.RETIRED_WEIGHTS[digest][1]}.*git show") as err:
        codec.decode(container.pack(c))
    assert "\n" not in str(err.value)
