"""Golden files: committed files made with the shipped weights, in every format version still read.

Each file in ``tests/golden/manifest.json`` must decode to its committed expected decode, and every
file encoded from an input must come out byte for byte the same when encoded again today.  This is
what keeps a file made today decodable next year: a change that alters either fails here (see
``tests/golden/make_golden.py`` for what to do when the change is intended).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import codec
from codec import api, container
from codec.video.clip import VideoFrames

GOLDEN = Path(__file__).resolve().parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())


def _decode(name: str):  # noqa: ANN202 - array or Dataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", api.LostPackets)
        return codec.decode((GOLDEN / name).read_bytes())


def test_manifest_covers_every_shipped_model_and_format_version():
    models = {e["model"]["name"] for e in MANIFEST}
    assert {"mcquic", "vqgan", "vaeformer"} <= models
    assert {e["container_version"] for e in MANIFEST} == set(range(1, container.FORMAT_VERSION + 1))
    assert any("damage" in e for e in MANIFEST), "no file exercises the shipped recovery transformer"
    assert any("records version 1" in e.get("note", "") for e in MANIFEST)


def _assert_close_to_committed(decoded, expected_path: Path) -> None:  # noqa: ANN001 - array or Dataset
    """The decode equals the committed one up to the float rounding of this CPU.

    The entropy-coded indices decode exactly everywhere; the synthesis networks run in float32, whose
    kernels round differently on other CPUs (AVX2 vs AVX-512), so a pixel may move by one level and a
    climate value by a few float32 ulps.  Anything more is a real change.
    """
    if isinstance(decoded, VideoFrames):  # video: every frame as for images
        with np.load(expected_path) as expected:
            frames = expected["frames"]
        decoded = decoded.to_array()
        assert decoded.shape == frames.shape
        diff = np.abs(decoded.astype(np.int16) - frames.astype(np.int16))
        assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000, f"{np.count_nonzero(diff)} values differ, up to {diff.max()}"
        return
    if expected_path.suffix == ".png":
        expected = np.asarray(Image.open(expected_path)).astype(np.int16)
        assert isinstance(decoded, np.ndarray) and decoded.shape == expected.shape
        diff = np.abs(decoded.astype(np.int16) - expected)
        assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000, f"{np.count_nonzero(diff)} pixels differ, up to {diff.max()}"
        return
    with np.load(expected_path) as expected:
        assert sorted(decoded.data_vars) == sorted(expected.files)
        for name in expected.files:
            np.testing.assert_allclose(decoded[name].values, expected[name], rtol=1e-6, atol=1e-5 * float(np.nanstd(expected[name])), err_msg=name)


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_golden_file_decodes_as_committed(entry):
    _assert_close_to_committed(_decode(entry["file"]), GOLDEN / entry["decoded"])


@pytest.mark.parametrize("entry", [e for e in MANIFEST if "encode" in e], ids=[e["file"] for e in MANIFEST if "encode" in e])
def test_encoding_again_gives_the_same_file(entry):
    """Byte-identical on the CPU that made the golden files; elsewhere float rounding may move a few
    quantization decisions, so the file must keep its header and size and decode like the committed one."""
    data = codec.encode(str(GOLDEN / entry["input"]), **entry["encode"])
    committed = (GOLDEN / entry["file"]).read_bytes()
    if data == committed:
        return
    new, old = container.unpack(data), container.unpack(committed)
    assert (new.kind, new.model, new.shape, new.meta, [n for n, _ in new.streams]) == (old.kind, old.model, old.shape, old.meta, [n for n, _ in old.streams])
    assert abs(len(data) - len(committed)) <= max(16, len(committed) // 50), f"{entry['file']}: {len(data)} bytes, committed {len(committed)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", api.LostPackets)
        _assert_close_to_committed(codec.decode(data), GOLDEN / entry["decoded"])


@pytest.mark.parametrize("entry", [e for e in MANIFEST if "damage" in e], ids=[e["file"] for e in MANIFEST if "damage" in e])
def test_damage_is_reproducible(entry):
    source = (GOLDEN / entry["from"]).read_bytes()
    assert api.damage(source, **entry["damage"]) == (GOLDEN / entry["file"]).read_bytes()


def test_bounded_golden_file_keeps_its_bound():
    entry = next(e for e in MANIFEST if "max_abs_error" in e.get("encode", {}))
    bounds = dict(item.split("=") for item in entry["encode"]["max_abs_error"].split(","))
    decoded = _decode(entry["file"])
    import xarray as xr

    with xr.open_dataset(GOLDEN / entry["input"]) as source:
        for name, bound in bounds.items():
            err = np.abs(decoded[name].values - source[name].values)
            assert np.nanmax(err) <= float(bound), name
            assert np.array_equal(np.isnan(decoded[name].values), np.isnan(source[name].values)), name
