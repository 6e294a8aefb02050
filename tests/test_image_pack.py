"""Image packs (``codec pack``) and ``codec.ImageArchive``: round trips, random access, DataLoader workers,
append and resume (torn tails), atomic writes, one-line errors, and the CLI."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import codec
from codec import api
from codec.cli import main
from codec.datasets import to_tensor
from codec.errors import CorruptStreamError, FormatError, InputError, ModelError
from codec.image import pack, packer
from tests.helpers import assert_one_line_error
from tests.helpers import run_cli as run

NAMES = ["a.png", "b/c.png", "b/d.png", "e.png"]


def _image(seed: int, size: tuple[int, int] = (20, 28)) -> np.ndarray:
    y, x = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float32)
    rgb = np.stack([np.sin(x / (4 + seed)) * 0.4 + 0.5, y / size[0], (x + y + 9 * seed) % 40 / 40], axis=2)
    return (rgb * 255).round().astype(np.uint8)


def _write(folder: Path, names: list[str]) -> None:
    """Images called ``names`` under ``folder``: RGB, with one grayscale and one RGBA among them."""
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = _image(i)
        mode = {1: "L", 2: "RGBA"}.get(i % 4, "RGB")
        im = Image.fromarray(pixels).convert(mode)
        im.save(path)


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    _write(folder, NAMES[:3])
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"skipped: hidden")
    return folder


@pytest.fixture()
def packed(photos: Path, tiny_weights: Path) -> Path:
    out = photos.parent / "images.cpk"
    packer.pack(photos, out, weights=tiny_weights)
    return out


def _expected(path: Path, weights: Path) -> torch.Tensor:
    return to_tensor(api.decode(api.encode(path, weights=weights), weights=weights))



def test_items_equal_decode_of_encode(packed: Path, photos: Path, tiny_weights: Path) -> None:
    ds = codec.ImageArchive(packed, weights=tiny_weights)
    assert ds.names == NAMES[:3] and len(ds) == 3
    for i, name in enumerate(NAMES[:3]):
        x, got = ds[i]
        assert got == name and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
        assert torch.equal(x, _expected(photos / name, tiny_weights))
    assert [tuple(ds[i][0].shape) for i in range(3)] == [(3, 20, 28), (1, 20, 28), (4, 20, 28)]  # RGB, L, RGBA as stored
    assert torch.equal(ds[-1][0], ds[2][0])
    doubled = codec.ImageArchive(packed, transform=lambda t: t * 2, weights=tiny_weights)
    assert torch.equal(doubled[0][0], ds[0][0] * 2)


def test_random_access_reads_only_its_entry(packed: Path, tiny_weights: Path) -> None:
    first = pack.open_index(packed).entries[0]
    data = bytearray(packed.read_bytes())
    data[first.end - 3] ^= 0xFF  # damage the first image only
    packed.write_bytes(bytes(data))
    ds = codec.ImageArchive(packed, weights=tiny_weights)
    assert ds[1][1] == "b/c.png" and ds[2][1] == "b/d.png"
    with pytest.raises(CorruptStreamError, match="checksum mismatch in entry 'a.png'"):
        ds[0]


def test_dataloader_workers_match_the_main_process(packed: Path, tiny_weights: Path) -> None:
    ds = codec.ImageArchive(packed, weights=tiny_weights)
    ds[0]  # the parent has an open handle and has run the network before the workers fork
    state = pickle.loads(pickle.dumps(ds)).__dict__
    assert state["_file"] is None and state["_pid"] is None
    serial = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0))
    parallel = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
    assert [n for _, n in parallel] == ds.names
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(serial, parallel, strict=True))


def test_append_skips_known_names_and_keeps_old_bytes(packed: Path, photos: Path, tiny_weights: Path) -> None:
    before = packed.read_bytes()
    old_end = pack.open_index(packed).end
    _write(photos, NAMES)  # rewrites the three known images and adds e.png
    summary = packer.pack(photos, packed, weights=tiny_weights, append=True)
    assert summary["added"] == 1 and summary["skipped"] == 3 and summary["entries"] == 4 and summary["dropped_bytes"] == 0
    assert packed.read_bytes()[:old_end] == before[:old_end]
    assert codec.ImageArchive(packed, weights=tiny_weights).names == NAMES
    assert packer.pack(photos, packed, weights=tiny_weights, append=True)["added"] == 0


def test_resume_after_a_torn_tail_gives_the_fresh_pack(photos: Path, tiny_weights: Path, tmp_path: Path) -> None:
    _write(photos, NAMES)
    fresh = tmp_path / "fresh.cpk"
    packer.pack(photos, fresh, weights=tiny_weights)
    last = pack.open_index(fresh).entries[-1]
    torn = tmp_path / "torn.cpk"
    torn.write_bytes(fresh.read_bytes()[: last.offset + 30])  # killed while writing the last entry: no index
    with pytest.raises(CorruptStreamError, match="--append"):
        codec.ImageArchive(torn, weights=tiny_weights)
    summary = packer.pack(photos, torn, weights=tiny_weights, append=True)
    assert summary["added"] == 1 and summary["skipped"] == 3 and summary["dropped_bytes"] == 30
    assert torn.read_bytes() == fresh.read_bytes()


def test_append_rebuilds_a_damaged_index_from_the_entries(packed: Path, photos: Path, tiny_weights: Path) -> None:
    good = packed.read_bytes()
    packed.write_bytes(_flipped_index(good))
    with pytest.raises(CorruptStreamError, match="index damaged"):
        codec.ImageArchive(packed)
    summary = packer.pack(photos, packed, weights=tiny_weights, append=True)
    assert summary["added"] == 0 and summary["dropped_bytes"] == len(good) - pack.open_index(packed).end
    assert packed.read_bytes() == good


def test_failed_append_commits_the_entries_written_before(photos: Path, packed: Path, tiny_weights: Path, monkeypatch) -> None:
    _write(photos, NAMES + ["f.png"])
    encode, calls = api.encode, []

    def cut_after_one(*args, **kwargs) -> bytes:
        calls.append(args[0])
        if len(calls) > 1:
            raise RuntimeError("power cut")
        return encode(*args, **kwargs)

    monkeypatch.setattr(api, "encode", cut_after_one)
    with pytest.raises(RuntimeError, match="power cut"):
        packer.pack(photos, packed, weights=tiny_weights, append=True)
    assert codec.ImageArchive(packed, weights=tiny_weights).names == NAMES
    monkeypatch.setattr(api, "encode", encode)
    assert packer.pack(photos, packed, weights=tiny_weights, append=True)["added"] == 1


def test_new_packs_are_atomic(photos: Path, packed: Path, tiny_weights: Path) -> None:
    before = packed.read_bytes()
    (photos / "zz.png").write_text("not an image either")
    with pytest.raises(InputError, match="cannot pack zz.png"):
        packer.pack(photos, packed, weights=tiny_weights, force=True)
    assert packed.read_bytes() == before
    with pytest.raises(InputError, match="cannot pack zz.png"):
        packer.pack(photos, packed.with_name("new.cpk"), weights=tiny_weights)
    assert sorted(p.name for p in packed.parent.iterdir()) == ["images.cpk", "photos"]  # no temporary file left


def test_glob_and_single_file_sources(photos: Path) -> None:
    assert [n for n, _ in packer.collect(photos)] == NAMES[:3]
    assert [n for n, _ in packer.collect(photos / "b" / "*.png")] == ["c.png", "d.png"]
    assert [n for n, _ in packer.collect(f"{photos}/**/*.png")] == NAMES[:3]
    assert [n for n, _ in packer.collect(photos / "a.png")] == ["a.png"]


def _truncated_header(good: bytes) -> bytes:
    return good[:9]


def _flipped_index(good: bytes) -> bytes:
    return good[:-40] + bytes([good[-40] ^ 1]) + good[-39:]


def _newer(good: bytes) -> bytes:
    return pack.MAGIC + (pack.FORMAT_VERSION + 1).to_bytes(2, "little") + good[10:]


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (None, InputError, "no such file"),
        (lambda good: b"GIF89a" + good, FormatError, "not a codec image pack"),
        (_truncated_header, CorruptStreamError, "truncated inside its header"),
        (lambda good: good[:-1], CorruptStreamError, "truncated or its index damaged"),
        (_flipped_index, CorruptStreamError, "truncated or its index damaged"),
        (_newer, FormatError, "newer than this codec reads"),
    ],
)
def test_bad_packs_give_one_clear_error(packed: Path, tmp_path: Path, damage, error: type, message: str) -> None:
    bad = tmp_path / "bad.cpk"
    if damage is not None:
        bad.write_bytes(damage(packed.read_bytes()))
    with pytest.raises(error, match=message):
        codec.ImageArchive(bad)


def test_other_misuse_gives_one_clear_error(packed: Path, photos: Path, tiny_weights: Path, tmp_path: Path) -> None:
    single = tmp_path / "one.bin"
    single.write_bytes(api.encode(photos / "a.png", weights=tiny_weights))
    with pytest.raises(FormatError, match="single codec file"):
        codec.ImageArchive(single)
    with pytest.raises(InputError, match="is a directory"):
        codec.ImageArchive(tmp_path)
    with pytest.raises(ModelError, match="weights file not found"):
        codec.ImageArchive(packed, weights=tmp_path / "none.safetensors")
    ds = codec.ImageArchive(packed, weights=tiny_weights)
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    with pytest.raises(IndexError, match="out of range"):
        ds[-4]
    with pytest.raises(InputError, match="exists"):
        packer.pack(photos, packed)
    with pytest.raises(FormatError, match="single codec file"):
        packer.pack(photos, single, append=True)
    with pytest.raises(InputError, match="no image files"):
        packer.pack(tmp_path / "photos" / "b" / "*.jpg", tmp_path / "none.cpk")
    with pytest.raises(InputError, match="no such file or folder"):
        packer.pack(tmp_path / "missing", tmp_path / "none.cpk")


def test_cli_pack_info_and_decode_one_entry(capsys, photos: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.cpk"
    code, stdout, _ = run(capsys, "pack", photos, "-o", out, "--weights", tiny_weights)
    assert code == 0 and json.loads(stdout)["entries"] == 3
    code, stdout, _ = run(capsys, "info", out)
    meta = json.loads(stdout)
    assert code == 0 and meta["kind"] == "image-pack" and meta["names"] == NAMES[:3] and meta["model"] == "mcquic"
    assert meta["bytes"] == out.stat().st_size and meta["pixels"] == 3 * 20 * 28 and meta["mean_bpp"] > 0
    assert codec.info(out.read_bytes()) == meta
    png = tmp_path / "c.png"
    assert run(capsys, "decode", out, "-o", png, "--entry", "b/c.png", "--weights", tiny_weights)[0] == 0
    assert np.array_equal(np.asarray(Image.open(png)), api.decode(api.encode(photos / "b/c.png", weights=tiny_weights), weights=tiny_weights))
    code, _, err = run(capsys, "decode", out, "-o", tmp_path / "x.png")
    assert_one_line_error(code, err, "ImageArchive")
    code, _, err = run(capsys, "decode", out, "-o", tmp_path / "x.png", "--entry", "nope.png")
    assert_one_line_error(code, err, "no entry 'nope.png'")
    code, _, err = run(capsys, "pack", photos, "-o", out, "--weights", tiny_weights)
    assert_one_line_error(code, err, "--append")
    code, stdout, _ = run(capsys, "pack", photos, "-o", out, "--weights", tiny_weights, "--append")
    assert code == 0 and json.loads(stdout)["skipped"] == 3
    code, _, err = run(capsys, "pack", tmp_path / "nowhere", "-o", tmp_path / "n.cpk")
    assert_one_line_error(code, err, "no such file or folder")
    with pytest.raises(SystemExit) as usage:
        main(["pack", str(photos), "-o", str(out), "--append", "--force"])
    assert usage.value.code == 2
    assert not list(tmp_path.glob(".*tmp"))


def test_info_on_a_pack_loads_no_torch(packed: Path) -> None:
    code = f"import sys, codec.cli\nassert codec.cli.main(['info', {str(packed)!r}]) == 0\nassert 'torch' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["entries"] == 3
