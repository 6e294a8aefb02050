"""The `codec` command: round trips, exit codes, one-line errors, no partial or overwritten files."""

import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.helpers import assert_one_line_error
from tests.helpers import run_cli as run


@pytest.fixture()
def png(tmp_path, photo):
    path = tmp_path / "in.png"
    Image.fromarray(photo).save(path)
    return path


def test_encode_decode_info_round_trip(capsys, png, tmp_path, tiny_weights):
    binf, outf = tmp_path / "x.bin", tmp_path / "x.png"
    code, out, _ = run(capsys, "encode", png, "-o", binf, "--weights", tiny_weights)
    assert code == 0 and json.loads(out)["bytes"] == binf.stat().st_size
    code, _, _ = run(capsys, "decode", binf, "-o", outf, "--weights", tiny_weights)
    assert code == 0 and np.asarray(Image.open(outf)).shape == (70, 101, 3)
    code, out, _ = run(capsys, "info", binf)
    meta = json.loads(out)
    assert code == 0 and {"kind", "model", "shape", "bytes", "bpp"} <= set(meta)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_shipped_levels_by_quality_and_models_listing(capsys, shipped, png, tmp_path):
    code, out, _ = run(capsys, "encode", png, "-o", tmp_path / "q1.bin", "--quality", 1)
    assert code == 0 and json.loads(out)["quality"] == 1
    assert run(capsys, "decode", tmp_path / "q1.bin", "-o", tmp_path / "q1.png")[0] == 0
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0 and [q["quality"] for q in json.loads(out)[0]["qualities"]] == [1, 2]
    code, _, err = run(capsys, "encode", png, "-o", tmp_path / "q9.bin", "--quality", 9)
    assert_one_line_error(code, err, "levels 1..2")
    assert not (tmp_path / "q9.bin").exists()


def test_never_overwrites_input_or_existing_output(capsys, png, tmp_path, tiny_weights):
    before = png.read_bytes()
    code, _, err = run(capsys, "encode", png, "-o", png, "--weights", tiny_weights, "-f")
    assert_one_line_error(code, err, "overwrite the input")
    assert png.read_bytes() == before
    existing = tmp_path / "old.bin"
    existing.write_bytes(b"keep")
    code, _, err = run(capsys, "encode", png, "-o", existing, "--weights", tiny_weights)
    assert_one_line_error(code, err, "exists")
    assert existing.read_bytes() == b"keep"
    assert run(capsys, "encode", png, "-o", existing, "--weights", tiny_weights, "-f", "-q")[0] == 0
    assert existing.read_bytes() != b"keep"


@pytest.mark.parametrize("kind", ["missing", "directory", "text", "truncated", "flipped", "foreign", "png-as-stream"])
def test_bad_inputs_give_one_line_errors_and_no_output(capsys, png, tmp_path, tiny_weights, kind):
    good = tmp_path / "good.bin"
    assert run(capsys, "encode", png, "-o", good, "--weights", tiny_weights, "-q")[0] == 0
    data = good.read_bytes()
    bad = tmp_path / "bad.bin"
    if kind == "missing":
        bad = tmp_path / "nope.bin"
    elif kind == "directory":
        bad = tmp_path
    elif kind == "text":
        bad.write_text("hello world\n")
    elif kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "flipped":
        bad.write_bytes(data[:40] + bytes([data[40] ^ 0xFF]) + data[41:])
    elif kind == "foreign":
        bad.write_bytes(b"\x00" * 64)
    else:
        bad = png
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "decode", bad, "-o", out, "--weights", tiny_weights)
    assert_one_line_error(code, err, "")
    assert not out.exists()
    code, _, err = run(capsys, "info", bad)
    assert_one_line_error(code, err, "")


def test_encode_errors(capsys, tmp_path, tiny_weights):
    text = tmp_path / "a.png"
    text.write_text("not an image")
    code, _, err = run(capsys, "encode", text, "-o", tmp_path / "a.bin", "--weights", tiny_weights)
    assert_one_line_error(code, err, "not an image")
    # A PNG whose header claims 100000 x 100000 pixels: refused from the header, nothing decoded.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    code, _, err = run(capsys, "encode", huge, "-o", tmp_path / "h.bin", "--weights", tiny_weights)
    assert_one_line_error(code, err, "size limit")
    code, _, err = run(capsys, "encode", text, "-o", tmp_path / "nodir" / "a.bin", "--weights", tiny_weights)
    assert_one_line_error(code, err, "folder does not exist")
    real = tmp_path / "real.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(real)
    code, _, err = run(capsys, "encode", real, "-o", tmp_path / "b.bin", "--weights", tmp_path / "w.safetensors")
    assert_one_line_error(code, err, "not found")
    (tmp_path / "junk.safetensors").write_bytes(b"junk" * 10)
    code, _, err = run(capsys, "encode", real, "-o", tmp_path / "b.bin", "--weights", tmp_path / "junk.safetensors")
    assert_one_line_error(code, err, "cannot read weights")
    assert not (tmp_path / "b.bin").exists()


def test_decode_to_jpeg_refuses_alpha(capsys, tmp_path, tiny_weights):
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.full((20, 20, 4), 99, np.uint8), "RGBA").save(rgba)
    assert run(capsys, "encode", rgba, "-o", tmp_path / "r.bin", "--weights", tiny_weights, "-q")[0] == 0
    code, _, err = run(capsys, "decode", tmp_path / "r.bin", "-o", tmp_path / "r.jpg", "--weights", tiny_weights)
    assert_one_line_error(code, err, "alpha")
    assert not (tmp_path / "r.jpg").exists()


@pytest.mark.parametrize("suffix", [".xyz", "", ".nc"])
def test_decode_refuses_image_suffixes_it_cannot_write(capsys, png, tmp_path, tiny_weights, suffix):
    assert run(capsys, "encode", png, "-o", tmp_path / "p.bin", "--weights", tiny_weights, "-q")[0] == 0
    out = tmp_path / f"decoded{suffix}"
    code, _, err = run(capsys, "decode", tmp_path / "p.bin", "-o", out, "--weights", tiny_weights)
    assert_one_line_error(code, err, "cannot write images with suffix")
    assert ".png" in err and not out.exists()
    assert run(capsys, "decode", tmp_path / "p.bin", "-o", tmp_path / "ok.webp", "--weights", tiny_weights)[0] == 0
    with Image.open(tmp_path / "ok.webp") as im:
        assert im.format == "WEBP"


def test_console_entry_point_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "codec.cli", "decode", str(tmp_path / "x"), "-o", str(tmp_path / "y.png")], capture_output=True, text=True)
    assert_one_line_error(proc.returncode, proc.stderr, "no such file")
    proc = subprocess.run([sys.executable, "-m", "codec.cli", "encode"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
