"""Encode-time index search (``effort``, ``--effort``; codec.models.index_search) of McQuic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import codec
from codec import registry
from codec.cli import main
from codec.errors import InputError
from codec.models import index_search
from codec.models.mcquic import pad_to_multiple


def _decoder_mse(net, x: torch.Tensor, indices: list[torch.Tensor], level: int, size: tuple[int, int]) -> float:  # noqa: ANN001
    out = net.decode_indices(indices, level)[..., : size[0], : size[1]]
    return float((out - x[..., : size[0], : size[1]]).pow(2).mean())


def test_search_never_decodes_worse_and_moves_only_the_finest_scale(tiny_weights, photo, one_thread):
    net = registry.load("mcquic", 2, tiny_weights).model.eval()
    h, w = photo.shape[:2]
    x = pad_to_multiple(torch.tensor(photo).permute(2, 0, 1)[None].float() / 255, net.pad_multiple)
    with torch.no_grad():
        features = net.features(x)
    base = net.encode_indices(x, 2, features)
    assert all(torch.equal(a, b) for a, b in zip(index_search.refine_finest(net, x, features, 2, 0, (h, w)), base, strict=True))
    with torch.inference_mode():  # as the encoder calls it
        searched = index_search.refine_finest(net, x, features, 2, 6, (h, w))
    assert all(torch.equal(a, b) for a, b in zip(searched[1:], base[1:], strict=True))
    assert not torch.equal(searched[0], base[0])
    assert _decoder_mse(net, x, searched, 2, (h, w)) < _decoder_mse(net, x, base, 2, (h, w))


@pytest.mark.parametrize("weights", ["tiny_weights", "full_weights"])
def test_effort_files_decode_better_with_the_same_decoder_and_identical_bytes_across_threads(weights, photo, request, monkeypatch):
    path = request.getfixturevalue(weights)
    plain = codec.encode(photo, weights=path, quality=2)
    monkeypatch.setenv("CODEC_THREADS", "1")  # the codec runs on its own thread count (codec.runtime)
    one = codec.encode(photo, weights=path, quality=2, effort=4)
    monkeypatch.setenv("CODEC_THREADS", "2")
    two = codec.encode(photo, weights=path, quality=2, effort=4)
    assert one == two and one != plain
    assert abs(len(one) - len(plain)) <= max(8, len(plain) // 10)

    def mse(data: bytes) -> float:
        return float(np.mean((codec.decode(data, weights=path).astype(float) - photo) ** 2))

    assert mse(one) < mse(plain)


def test_effort_is_refused_where_it_does_not_apply(tiny_weights, tiny_ladder, photo, tmp_path, capsys, monkeypatch):
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(InputError, match="effort"):
            codec.encode(photo, weights=tiny_weights, effort=bad)
    with pytest.raises(InputError, match=r"effort.*\(mcquic\), not vqgan"):
        codec.encode(photo, weights=tiny_ladder, quality=1, effort=2)
    with pytest.raises(InputError, match="effort"):
        codec.encode(tmp_path / "clip.mp4", effort=2)
    import xarray as xr

    field = xr.Dataset({"t": (("lat", "lon"), np.ones((8, 16), np.float32))}, coords={"lat": np.arange(8.0), "lon": np.arange(16.0)})
    with pytest.raises(InputError, match="effort.*images"):
        codec.encode(field, effort=2)
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    assert main(["encode", str(src), "-o", str(tmp_path / "a.bin"), "--weights", str(tiny_weights), "--effort", "2", "-q"]) == 0
    assert codec.decode((tmp_path / "a.bin").read_bytes(), weights=tiny_weights).shape == photo.shape
    assert main(["encode", str(src), "-o", str(tmp_path / "b.bin"), "--weights", str(tiny_ladder), "--effort", "2"]) == 1
    assert "effort" in capsys.readouterr().err and not (tmp_path / "b.bin").exists()
    with pytest.raises(SystemExit):
        main(["encode", str(src), "-o", str(tmp_path / "c.bin"), "--effort", "-1"])
    import codec.models.index_search as search

    monkeypatch.setattr(search, "MAX_PIXELS", 100)  # the search runs the decoder untiled: large images are refused
    with pytest.raises(InputError, match="up to 100 pixels"):
        codec.encode(photo, weights=tiny_weights, effort=2)
    assert codec.encode(photo, weights=tiny_weights, effort=0)


def test_effort_with_a_bpp_target_searches_only_the_level_that_fits(tiny_weights, photo, monkeypatch):
    import codec.models.index_search as search

    levels = []
    original = search.refine_finest
    monkeypatch.setattr(search, "refine_finest", lambda net, x, f, level, *a: levels.append(level) or original(net, x, f, level, *a))
    plain = [codec.encode(photo, weights=tiny_weights, quality=q) for q in (1, 2)]
    target = 8 * len(plain[0]) / (photo.shape[0] * photo.shape[1]) + 1e-9  # level 1 fits, level 2 does not
    assert 8 * len(plain[1]) / (photo.shape[0] * photo.shape[1]) > target
    data = codec.encode(photo, weights=tiny_weights, bpp=target, effort=3)
    assert levels == [1] and codec.info(data)["quality"] == 1
    assert 8 * len(data) / (photo.shape[0] * photo.shape[1]) <= target
