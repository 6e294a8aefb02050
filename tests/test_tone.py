"""The tone layer (codec.image.tone): coded block means that set a decoded image's large-scale colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import codec
from codec import container
from codec.errors import CorruptStreamError, FormatError
from codec.image import tone


def _smooth_colour_image(h: int = 70, w: int = 101) -> torch.Tensor:
    """[1, 3, h, w] in [0.1, 0.9]: slow, saturated colour gradients (nothing clamps)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.5 + 0.4 * torch.sin(3 * x), 0.5 + 0.4 * torch.cos(2 * y + x), 0.5 - 0.4 * torch.sin(2 * y)])[None].double()


def _block_means(x: torch.Tensor, s: int) -> torch.Tensor:
    return tone._block_means(x, s)


@pytest.mark.parametrize("settings", [tone.ToneSettings(8, 4, 4), tone.ToneSettings(16, 8, 16), tone.ToneSettings(64, 8, 8)])
def test_thumbnail_round_trip_is_within_half_a_step(settings):
    x = _smooth_colour_image()
    data = tone.encode(x, settings)
    got = tone.decode(data, 70, 101, settings)
    err = (got - _block_means(x, settings.scale)).abs() / settings.steps()
    assert got.shape == (3, -(-70 // settings.scale), -(-101 // settings.scale))
    assert float(err.max()) <= 0.5 + 1e-9


def test_a_grey_decode_takes_the_source_colour():
    settings = tone.ToneSettings(8, 2, 2)
    source = torch.tensor([0.8, 0.3, 0.1], dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, 40, 36)
    grey = torch.full((1, 3, 40, 36), 0.45)
    out = tone.apply(grey, tone.encode(source, settings), 40, 36, settings)
    assert out.dtype == grey.dtype and out.shape == grey.shape
    # a constant colour comes back to within half a step per YCbCr plane (R = Y + 1.402 Cr, B = Y + 1.772 Cb)
    assert float((out.double() - source).abs().max()) <= 0.5 * (2 + 1.772 * 2) / 255


def test_tone_keeps_the_decode_detail_and_lowers_the_colour_error():
    settings = tone.ToneSettings(16, 4, 4)
    x = _smooth_colour_image()
    detail = 0.05 * torch.sign(torch.sin(torch.arange(101.0)))  # fine stripes the tone layer must not touch
    decoded = (0.5 + 0.2 * (x.mean(1, keepdim=True) - 0.5) + detail).expand(1, 3, 70, 101).float()  # grey, with detail
    out = tone.apply(decoded, tone.encode(x, settings), 70, 101, settings)
    chroma = tone.YCBCR[1:]
    before = torch.einsum("ij,bjhw->bihw", chroma, decoded.double() - x).abs().mean()
    after = torch.einsum("ij,bjhw->bihw", chroma, out.double() - x).abs().mean()
    assert float(after) < 0.15 * float(before)
    # the stripes survive: the column-to-column differences of the output follow the decode's
    d_out, d_dec = out.double().diff(dim=-1), decoded.double().diff(dim=-1)
    assert float(torch.corrcoef(torch.stack([d_out.flatten(), d_dec.flatten()]))[0, 1]) > 0.95


def test_padded_decodes_keep_their_padding():
    settings = tone.ToneSettings(16, 8, 8)
    x = _smooth_colour_image(30, 20)
    decoded = torch.full((1, 3, 32, 32), 0.5)
    out = tone.apply(decoded, tone.encode(x, settings), 30, 20, settings)
    assert out.shape == decoded.shape and bool((out[..., 30:, :] == 0.5).all()) and bool((out[..., :, 20:] == 0.5).all())


def test_stream_bytes_do_not_depend_on_the_thread_count():
    x = _smooth_colour_image()
    settings = tone.ToneSettings(8, 4, 4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = tone.encode(x, settings)
        torch.set_num_threads(2)
        two = tone.encode(x, settings)
    finally:
        torch.set_num_threads(before)
    assert one == two


@pytest.mark.parametrize("bad", [[12, 4, 4], [32, 0, 4], [32, 4, 4.5], [32, 4], [32, 4, 4, 4], {"scale": 32, "luma_step": 4, "chroma_step": 4},
                                 [32, True, 4], [32, 4, "4"], [32.0, 4, 4], None])
def test_bad_tone_headers_are_format_errors(bad):
    with pytest.raises(FormatError, match="tone layer header"):
        tone.ToneSettings.from_meta(bad)


def test_settings_round_trip_through_the_header():
    s = tone.ToneSettings(32, 8, 4)
    assert tone.ToneSettings.from_meta(s.meta()) == s


@pytest.mark.parametrize("cut", [b"", b"\x01", b"\x00\x00\xff" + bytes(8), None])
def test_corrupt_tone_streams_are_stream_errors(cut):
    settings = tone.ToneSettings(8, 4, 4)
    data = tone.encode(_smooth_colour_image(), settings)
    bad = data[:-1] if cut is None else cut
    with pytest.raises(CorruptStreamError):
        tone.decode(bad, 70, 101, settings)


def test_vqgan_files_carry_a_tone_layer_and_old_files_decode_without_one(tiny_ladder, photo):
    data = codec.encode(photo, model="vqgan", quality=2, weights=tiny_ladder)
    c = container.unpack(data)
    assert "tone" in c.meta and [n for n, _ in c.streams] == ["l0", "tone"]
    assert codec.info(data)["streams"]["tone"] == len(c.stream("tone"))
    with_tone = codec.decode(data, weights=tiny_ladder)
    del c.meta["tone"]
    c.streams = [(n, d) for n, d in c.streams if n != "tone"]
    without = codec.decode(container.pack(c), weights=tiny_ladder)  # a file from before the tone layer
    net = codec.registry.load("vqgan", 2, tiny_ladder).model
    x = torch.nn.functional.pad(torch.tensor(photo).permute(2, 0, 1)[None].float() / 255, (0, 3, 0, 2), mode="replicate")
    with torch.no_grad():
        plain = net.level_decode(net.level_indices(x, 2), 2, photo.shape[:2])[0].mul(255).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(without.astype(int) - plain.astype(int)).max() <= 1  # no tone stream: the network's decode as before
    assert np.abs(with_tone.astype(int) - without.astype(int)).mean() > 1


def test_a_forged_tone_header_fails_in_one_line(tiny_ladder, photo):
    c = container.unpack(codec.encode(photo, model="vqgan", quality=2, weights=tiny_ladder))
    c.meta["tone"] = [3, 4, 4]
    with pytest.raises(FormatError, match="tone layer header"):
        codec.decode(container.pack(c), weights=tiny_ladder)


def test_mcquic_files_have_no_tone_layer(tiny_weights, photo):
    c = container.unpack(codec.encode(photo, weights=tiny_weights))
    assert "tone" not in c.meta and "tone" not in dict(c.streams)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_tone_sequences_round_trip_and_still_frames_cost_almost_nothing(n):
    """A video GOP's tone stream: the first frame's codes on their own, each later frame's as its change."""
    settings = tone.ToneSettings(8, 4, 4)
    base = _smooth_colour_image()
    frames = [tone.codes((base * (1 + 0.05 * k)).clamp(0, 1), settings) for k in range(n)]
    data = tone.encode_sequence(frames)
    back = tone.decode_sequence(data, n, 70, 101, settings)
    assert len(back) == n and all(np.array_equal(a, b) for a, b in zip(frames, back, strict=True))
    if n == 1:
        assert data == tone.encode(base, settings)  # an image's tone stream
    still = tone.encode_sequence([frames[0]] * 8)
    assert len(still) < len(tone.encode_sequence(frames[:1])) + 16  # 7 unchanged frames: a few bytes


@pytest.mark.parametrize("cut", [b"", b"\x01\x01\x01", bytes([0, 0, 0, 255, 0, 0]) + bytes(8), None])
def test_corrupt_tone_sequences_are_stream_errors(cut):
    settings = tone.ToneSettings(8, 4, 4)
    frames = [tone.codes(_smooth_colour_image(), settings)] * 3
    data = tone.encode_sequence(frames)
    with pytest.raises(CorruptStreamError):
        tone.decode_sequence(data[:-1] if cut is None else cut, 3, 70, 101, settings)
