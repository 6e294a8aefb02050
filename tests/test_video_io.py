"""Video input/output (codec.video.io, codec.video.synthetic): round trips through every output kind, odd
sizes, exact frame rates, rotation, streaming, and one-line errors for every bad input.  Clips are tiny and
made here; one test reads the shared real clip when it is present."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from codec.errors import InputError
from codec.video.io import LOSSLESS_FORMATS, OUTPUT_FORMATS, FrameWriter, normalise_rotation, output_format, probe, read_frames, rotation_from_metadata
from codec.video.synthetic import PAN_STEP, make_test_clip, pan_clip_from_image, scene
from tests.video_helpers import audio_only, av_clip

REALSHORT = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "realshort.mp4"
VIDEO_KINDS = [k for k in OUTPUT_FORMATS if k != "png"]
Y4M_TOLERANCE = 2  # yuv4mpegpipe holds no RGB: RGB -> yuv444p (BT.601, limited range) -> RGB rounding
COUNTED = {"mp4", "avi"}  # containers that store a frame count


def _frames(n: int, width: int = 33, height: int = 25) -> list[np.ndarray]:
    return [scene(width, height, 3 * t, t, seed=1) for t in range(n)]


def _write(path: Path | str, frames: list[np.ndarray], fps: Fraction | int | float | str = 25, format: str | None = None) -> Path:
    height, width = frames[0].shape[:2]
    with FrameWriter(path, fps, width, height, format=format) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b, strict=True))


def _one_line_error(call, *match: str) -> InputError:
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(m in message for m in match), message
    return info.value


# --- round trips --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_round_trip_odd_size(tmp_path, kind):
    frames = _frames(4)
    path = _write(tmp_path / f"clip.{kind}", frames, Fraction(30000, 1001))
    out = list(read_frames(path))
    assert len(out) == 4 and all(f.shape == (25, 33, 3) and f.dtype == np.uint8 for f in out)
    assert _max_diff(out, frames) <= (0 if kind in LOSSLESS_FORMATS else Y4M_TOLERANCE)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.rotation) == (33, 25, Fraction(30000, 1001), 0)
    assert info.frame_count == (4 if kind in COUNTED else None)
    assert info.duration == pytest.approx(4 * 1001 / 30000, abs=0.002)
    assert not info.has_audio and not info.has_subtitles


def test_lossless_kinds():
    assert LOSSLESS_FORMATS == {"mp4", "mkv", "avi", "webm", "png"}


@pytest.mark.parametrize("kind", VIDEO_KINDS)
@pytest.mark.parametrize("fps", [25, Fraction(60000, 1001), "24000/1001", 12.5])
def test_fps_kept_exactly(tmp_path, kind, fps):
    path = _write(tmp_path / f"clip.{kind}", _frames(2, 16, 8), fps)
    assert probe(path).fps == Fraction(str(fps))


@pytest.mark.parametrize("target", ["frames/", "empty_dir"])
def test_png_folder_round_trip(tmp_path, target):
    (tmp_path / "empty_dir").mkdir()
    frames = _frames(3)
    _write(f"{tmp_path}/{target}", frames)
    folder = tmp_path / target.rstrip("/")
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert all(np.array_equal(np.asarray(Image.open(folder / f"frame_{i:06d}.png")), f) for i, f in enumerate(frames))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_format_overrides_suffix(tmp_path):
    path = _write(tmp_path / "clip.bin", _frames(2), format="mkv")
    assert probe(path).codec == "ffv1"
    assert output_format("a.MP4") == "mp4" and output_format(f"{tmp_path}/") == "png" and output_format(tmp_path) == "png"


def test_read_from_start_and_without_rotation(tmp_path):
    frames = _frames(5)
    path = _write(tmp_path / "clip.mkv", frames)
    assert _max_diff(list(read_frames(path, start=2)), frames[2:]) == 0
    assert list(read_frames(path, start=9)) == []
    _one_line_error(lambda: next(read_frames(path, start=-1)), "start")


# --- rotation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("counter_clockwise", [90, -90, 180])
def test_rotation_side_data_is_applied(tmp_path, counter_clockwise):
    frames = _frames(2)
    path = av_clip(tmp_path / "rotated.mkv", frames, rotation=counter_clockwise)
    info = probe(path)
    assert info.rotation == (-counter_clockwise) % 360
    assert info.display_size == ((33, 25) if counter_clockwise == 180 else (25, 33))
    shown = list(read_frames(path))
    assert all(np.array_equal(s, np.rot90(f, k=counter_clockwise // 90)) for s, f in zip(shown, frames, strict=True))
    assert all(s.flags.c_contiguous and s.shape[:2] == info.display_size[::-1] for s in shown)
    assert _max_diff(list(read_frames(path, rotate=False)), frames) == 0


def test_rotation_normalisation():
    assert [normalise_rotation(d) for d in (0, 90, -90, 180, -180, 270, 450, 89.6, -0.2)] == [0, 90, 270, 180, 180, 270, 90, 90, 0]
    assert rotation_from_metadata({"rotate": "90"}) == 90
    assert rotation_from_metadata({"rotate": "-90"}) == 270
    assert rotation_from_metadata({"rotate": "sideways"}) == 0
    assert rotation_from_metadata({}) == 0


# --- streaming ----------------------------------------------------------------------------------------


def test_read_frames_streams(tmp_path, monkeypatch):
    frames = 60
    path = make_test_clip(tmp_path / "long.y4m", frames, 64, 48, 25)
    assert inspect.isgenerator(read_frames(tmp_path / "missing.mp4"))  # lazy: nothing is opened before next()

    real_open, opened = av.open, []

    class CountingFile:
        def __init__(self, name: str) -> None:
            self.file, self.bytes_read = open(name, "rb"), 0  # PyAV closes it
            opened.append(self)

        def read(self, n: int = -1) -> bytes:
            data = self.file.read(n)
            self.bytes_read += len(data)
            return data

        def seek(self, *args: int) -> int:
            return self.file.seek(*args)

        def tell(self) -> int:
            return self.file.tell()

    monkeypatch.setattr(av, "open", lambda name, *a, **k: real_open(CountingFile(name), *a, **k))
    iterator = read_frames(path)
    assert next(iterator).shape == (48, 64, 3)
    assert opened[0].bytes_read < os.path.getsize(path) / 4

    tracemalloc.start()
    try:
        count = 1 + sum(1 for _ in iterator)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == frames and opened[0].bytes_read == os.path.getsize(path)
    assert peak < 6 * 64 * 48 * 3, f"peak {peak} bytes: frames are being accumulated"


# --- bad inputs ---------------------------------------------------------------------------------------


def _bad_input_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "folder").mkdir()
    Image.fromarray(_frames(1)[0]).save(tmp_path / "still.png")
    (tmp_path / "notes.txt").write_text("not a video\n" * 20)
    (tmp_path / "empty.mp4").write_bytes(b"")
    moov_last = av_clip(tmp_path / "moov_last.mp4", _frames(6))
    moov_last.write_bytes(moov_last.read_bytes()[: moov_last.stat().st_size // 2])
    return {
        "missing": (tmp_path / "missing.mp4", "no such file"),
        "directory": (tmp_path / "folder", "is a directory"),
        "png": (tmp_path / "still.png", "still image"),
        "text": (tmp_path / "notes.txt", "cannot read"),
        "empty": (tmp_path / "empty.mp4", "cannot read"),
        "audio only": (audio_only(tmp_path / "audio.m4a"), "no video stream (streams: audio)"),
        "truncated mp4, index last": (moov_last, "cannot read"),
    }


def test_bad_inputs_are_one_line_errors(tmp_path):
    for name, (path, message) in _bad_input_paths(tmp_path).items():
        for call in (lambda path=path: probe(path), lambda path=path: next(read_frames(path))):
            error = _one_line_error(call, message, path.name)
            assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__), name  # no av traceback


@pytest.mark.parametrize(("kind", "outcome"), [("mp4", "error"), ("avi", "error"), ("mkv", "clean"), ("webm", "clean"), ("y4m", "clean")])
def test_truncated_file_yields_frames_then_stops(tmp_path, kind, outcome):
    path = _write(tmp_path / f"clip.{kind}", _frames(12))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    got = []
    if outcome == "error":
        _one_line_error(lambda: got.extend(read_frames(path)), "truncated or corrupt", path.name)
        assert f"frame {len(got)} " in str(_one_line_error(lambda: list(read_frames(path))))
    else:
        got = list(read_frames(path))
    assert 1 <= len(got) < 12


def test_other_streams_are_reported_and_ignored(tmp_path):
    frames = _frames(3)
    path = av_clip(tmp_path / "av.mkv", frames, audio=True, subtitles=True)
    info = probe(path)
    assert info.has_audio and info.has_subtitles
    assert _max_diff(list(read_frames(path)), frames) == 0


# --- bad outputs and atomic writing -------------------------------------------------------------------


def test_bad_output_arguments_write_nothing(tmp_path):
    _one_line_error(lambda: FrameWriter(tmp_path / "clip.gif", 25, 8, 8), "unknown video output suffix", "clip.gif")
    _one_line_error(lambda: FrameWriter(tmp_path / "clip", 25, 8, 8), "unknown video output suffix")
    _one_line_error(lambda: FrameWriter(tmp_path / "clip.mp4", 25, 8, 8, format="mov"), "unknown video format 'mov'")
    _one_line_error(lambda: FrameWriter(tmp_path / "no" / "clip.mp4", 25, 8, 8), "output folder does not exist")
    for fps in (0, -25, "fast", "1/0"):
        _one_line_error(lambda fps=fps: FrameWriter(tmp_path / "clip.mp4", fps, 8, 8), "frame rate")
    _one_line_error(lambda: FrameWriter(tmp_path / "clip.mp4", 25, 0, 8), "frame size")
    _one_line_error(lambda: FrameWriter(tmp_path / "clip.mp4", 25, 8.5, 8), "frame size")
    assert FrameWriter(tmp_path / "clip.mp4", 25, np.int64(8), 8).width == 8
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    _one_line_error(lambda: FrameWriter(tmp_path / "full", 25, 8, 8).__enter__(), "not empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("kind", OUTPUT_FORMATS)
def test_failure_mid_write_leaves_nothing(tmp_path, kind):
    target = f"{tmp_path}/out/" if kind == "png" else tmp_path / f"out.{kind}"
    with pytest.raises(RuntimeError, match="boom"), FrameWriter(target, 25, 33, 25) as writer:
        writer.write(_frames(1)[0])
        raise RuntimeError("boom")
    with pytest.raises(InputError, match="frames must be uint8"), FrameWriter(target, 25, 33, 25) as writer:
        writer.write(_frames(1)[0])
        writer.write(np.zeros((25, 33, 3), np.float32))
    _one_line_error(lambda: _write_nothing(target), "no frames")
    assert _leftovers(tmp_path) == []


def _write_nothing(target: Path) -> None:
    with FrameWriter(target, 25, 33, 25):
        pass


def test_failed_rewrite_keeps_existing_output(tmp_path):
    path = _write(tmp_path / "clip.mkv", _frames(2))
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt), FrameWriter(path, 25, 33, 25) as writer:
        writer.write(_frames(1)[0])
        raise KeyboardInterrupt
    assert path.read_bytes() == before and _leftovers(tmp_path) == ["clip.mkv"]


# --- synthetic clips ----------------------------------------------------------------------------------


def test_make_test_clip_motion(tmp_path):
    dx, dy = PAN_STEP
    pan = list(read_frames(make_test_clip(tmp_path / "pan.mkv", 3, 33, 25, 25)))
    assert all(np.array_equal(b[:-dy, :-dx], a[dy:, dx:]) for a, b in zip(pan, pan[1:], strict=False))
    assert not np.array_equal(pan[0], pan[1])
    static = list(read_frames(make_test_clip(tmp_path / "static.mkv", 3, 33, 25, 25, motion="static", seed=4)))
    assert all(np.array_equal(f, static[0]) for f in static) and not np.array_equal(static[0], pan[0])
    _one_line_error(lambda: make_test_clip(tmp_path / "x.mkv", 3, 8, 8, 25, motion="spin"), "unknown motion")
    _one_line_error(lambda: make_test_clip(tmp_path / "x.mkv", 0, 8, 8, 25), "at least one frame")


def test_pan_clip_from_image(tmp_path):
    photo = scene(96, 80, seed=7)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    frames = list(read_frames(pan_clip_from_image(tmp_path / "photo.png", tmp_path / "pan.mkv", 4, (40, 30), step=6)))
    assert len(frames) == 4
    assert all(np.array_equal(f, photo[3 * t : 3 * t + 30, 6 * t : 6 * t + 40]) for t, f in enumerate(frames))
    zoomed = list(read_frames(pan_clip_from_image(tmp_path / "photo.png", tmp_path / "zoom.mkv", 3, (40, 30), step=2, zoom=2.0)))
    assert [f.shape for f in zoomed] == [(30, 40, 3)] * 3 and np.array_equal(zoomed[-1], photo[2:32, 4:44])
    _one_line_error(lambda: pan_clip_from_image(tmp_path / "photo.png", tmp_path / "big.mkv", 2, (90, 60), step=1, zoom=2.0), "smaller than")


# --- import cost and the shared real clip -------------------------------------------------------------


def test_import_codec_video_is_light():
    code = "import sys, codec.video\nprint(','.join(m for m in ('torch', 'av', 'codec.video.io') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


@pytest.mark.skipif(not REALSHORT.is_file(), reason="shared clip realshort.mp4 not present")
def test_realshort_clip():
    info = probe(REALSHORT)
    assert (info.width, info.height, info.frame_count, info.codec, info.rotation) == (320, 240, 36, "h264", 0)
    assert info.fps == Fraction(45000, 1499) and info.duration == pytest.approx(1.2, abs=0.01)
    frames = read_frames(REALSHORT)
    count = 0
    for frame in frames:
        assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
        count += 1
    assert count == 36
