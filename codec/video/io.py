"""Video files in and out through PyAV (FFmpeg): ``probe``, ``read_frames`` and ``FrameWriter``.

Frames are uint8 RGB arrays [H, W, 3].  Every failure a user can cause (a missing or foreign file, no
video stream, a truncated container, an unknown output suffix) is a one-line
:class:`~codec.errors.InputError`, never a PyAV traceback.

Rotation: ``VideoInfo.rotation`` is the clockwise turn, in degrees (0, 90, 180 or 270), that a player
applies to the stored frames, read from the stream's display matrix (FFmpeg hands it to the decoded
frames) or, failing that, from a legacy ``rotate`` metadata tag.  Mirroring in a display matrix is ignored.

Truncated inputs (what FFmpeg 8 reports, measured with PyAV 18):

* MP4/MOV whose index (``moov``) is at the end, cut anywhere before it: nothing can be opened, so
  ``probe`` and the first ``next()`` of ``read_frames`` raise ``InputError``.
* MP4 with the index in front (``FrameWriter`` writes those), AVI: ``read_frames`` yields the frames it
  can decode, then raises ``InputError`` naming the index of the first frame it could not produce.
* MKV, WebM and Y4M: FFmpeg reports a clean end of file, so ``read_frames`` stops after the last
  complete frame without an error; compare the count with ``probe().duration`` if that matters.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from av.container import InputContainer, OutputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from ..errors import InputError
from ..fileio import existing_file, write_atomic_with

_RATE_SNAP = 5e-7  # Matroska stores frame durations in ns: FFmpeg reads 60000/1001 back as 19001/317


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` finds out about a clip.  ``width`` and ``height`` are the stored frame size, before rotation."""

    width: int
    height: int
    fps: Fraction
    frame_count: int | None
    rotation: int
    has_audio: bool
    has_subtitles: bool
    codec: str
    pixel_format: str
    duration: float | None

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the frames as a player shows them, i.e. as ``read_frames(rotate=True)`` yields them."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


def _reason(exc: av.FFmpegError) -> str:
    """FFmpeg's own words for an error, without PyAV's errno prefix."""
    return exc.strerror or str(exc)


def normalise_rotation(degrees: float) -> int:
    """The multiple of 90 nearest to ``degrees``, as 0, 90, 180 or 270."""
    return round(degrees / 90) % 4 * 90


def rotation_from_metadata(metadata: Mapping[str, str]) -> int:
    """The clockwise display rotation of a legacy ``rotate`` stream tag (0 when it is absent or not a number)."""
    try:
        return normalise_rotation(float(metadata.get("rotate", 0)))
    except ValueError:
        return 0


def _display_rotation(frame: VideoFrame, metadata: Mapping[str, str]) -> int:
    """Clockwise rotation from the frame's display matrix (PyAV gives it counter-clockwise), else from metadata."""
    return normalise_rotation(-frame.rotation) if frame.rotation else rotation_from_metadata(metadata)


def rotate_frame(frame: np.ndarray, clockwise: int) -> np.ndarray:
    """``frame`` [H, W, C] turned clockwise by a multiple of 90 degrees, as a contiguous array."""
    return np.ascontiguousarray(np.rot90(frame, k=-(clockwise // 90)))


def _snap_rate(rate: Fraction) -> Fraction:
    """An integer or NTSC (k * 1000/1001) rate within half a ppm of ``rate``, else ``rate`` itself."""
    for base in (Fraction(1), Fraction(1000, 1001)):
        k = round(rate / base)
        if k and abs(rate - k * base) <= rate * _RATE_SNAP:
            return k * base
    return rate


def _is_still_image(container: InputContainer) -> bool:
    """FFmpeg opens PNG, JPEG, ... as one-frame videos through its image demuxers."""
    name = container.format.name
    return name == "image2" or name.endswith("_pipe")


def _video_stream(container: InputContainer, path: Path) -> VideoStream:
    """The first video stream that is not cover art, or a one-line error."""
    if _is_still_image(container):
        raise InputError(f"{path} is a still image, not a video")
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise InputError(f"{path} has no video stream (streams: {', '.join(kinds)})")
    return streams[0]


def _open(path: str | os.PathLike) -> tuple[Path, InputContainer, VideoStream]:
    """Open ``path`` with FFmpeg and pick its video stream; every failure is an ``InputError``."""
    p = existing_file(path)
    try:
        container = av.open(str(p), metadata_errors="replace")
    except av.FFmpegError as exc:
        raise InputError(f"cannot read {p} as a video: {_reason(exc)}") from None
    try:
        return p, container, _video_stream(container, p)
    except InputError:
        container.close()
        raise


def _decoded(container: InputContainer, stream: VideoStream, path: Path) -> Iterator[VideoFrame]:
    """The stream's frames; a demuxing or decoding error becomes an ``InputError`` naming the frame index.

    A packet the demuxer flags as corrupt (the cut-off last frame of a truncated MP4 or AVI, or damage in
    an MPEG-TS) ends the stream: the frames before it are flushed out of the decoder, then the error is
    raised.  The flag is checked here because a decoder may conceal the damage, or drop the error when it
    decodes with frame threads.
    """
    index = 0
    try:
        for packet in container.demux(stream):
            for frame in stream.decode(None) if packet.is_corrupt else packet.decode():
                yield frame
                index += 1
            if packet.is_corrupt:
                raise InputError(f"{path}: cannot decode frame {index} (truncated or corrupt file): its data is cut off or damaged")
    except av.FFmpegError as exc:
        raise InputError(f"{path}: cannot decode frame {index} (truncated or corrupt file): {_reason(exc)}") from None


def _frame_rate(stream: VideoStream, path: Path) -> Fraction:
    """The average frame rate, else the rate FFmpeg guesses from the timestamps, else the stream's base rate."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise InputError(f"{path}: the frame rate is unknown")
    return _snap_rate(Fraction(rate))


def _duration(container: InputContainer, stream: VideoStream) -> float | None:
    """Seconds, from the stream if it says, else from the container, else None."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else None


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, rate, length, rotation and streams of a video file.

    Reads only the start of the file and decodes the first frame (the display matrix travels with decoded
    frames, and it proves the stream is readable), so damage further on shows up in ``read_frames``.
    ``frame_count`` is the container's own count (MP4, AVI) or ``None`` (MKV, WebM, Y4M); with MP4 edit
    lists it may exceed the frames ``read_frames`` yields.
    """
    p, container, stream = _open(path)
    with container:
        first = next(_decoded(container, stream, p), None)
        if first is None:
            raise InputError(f"{p}: the video stream has no frames")
        return VideoInfo(
            width=first.width,
            height=first.height,
            fps=_frame_rate(stream, p),
            frame_count=stream.frames or None,
            rotation=_display_rotation(first, stream.metadata),
            has_audio=bool(container.streams.audio),
            has_subtitles=bool(container.streams.subtitles),
            codec=stream.codec_context.name,
            pixel_format=first.format.name,
            duration=_duration(container, stream),
        )


def read_frames(path: str | os.PathLike, start: int = 0, rotate: bool = True) -> Iterator[np.ndarray]:
    """Decoded frames of ``path`` from index ``start`` on, as uint8 RGB [H, W, 3], one at a time.

    A generator: the file is opened at the first ``next()`` (errors surface there) and closed when it is
    exhausted or dropped.  Frames before ``start`` are decoded and discarded (exact, no seeking).  With
    ``rotate`` the display rotation is applied, so frames look as a player shows them.  Odd sizes are kept.
    Deeper or other pixel formats are converted to 8-bit RGB with the stream's colour matrix.  A size
    change mid-stream, or a demuxing/decoding error (see the module notes on truncated files), raises
    ``InputError`` naming the frame index.
    """
    if start < 0:
        raise InputError(f"start frame must be >= 0, got {start}")
    p, container, stream = _open(path)
    with container:
        size = turn = None
        for index, frame in enumerate(_decoded(container, stream, p)):
            if size is None:
                size, turn = (frame.width, frame.height), (_display_rotation(frame, stream.metadata) if rotate else 0)
            elif (frame.width, frame.height) != size:
                raise InputError(f"{p}: frame {index} is {frame.width}x{frame.height}, the clip started at {size[0]}x{size[1]}")
            if index >= start:
                yield rotate_frame(frame.to_ndarray(format="rgb24"), turn)


@dataclass(frozen=True)
class _Spec:
    """How one output kind is written: FFmpeg muxer, encoder, pixel format and options."""

    muxer: str
    encoder: str
    pix_fmt: str
    lossless: bool
    options: dict[str, str] = field(default_factory=dict)
    muxer_options: dict[str, str] = field(default_factory=dict)


# Every pixel format is RGB or 4:4:4, so odd sizes are kept exactly and nothing is padded.
_SPECS = {
    # Lossless H.264 (qp 0) needs the High 4:4:4 Predictive profile whatever the chroma format, so
    # yuv420p would play no better; libx264rgb codes the RGB planes directly, bit-exact.  Index in front.
    "mp4": _Spec("mp4", "libx264rgb", "rgb24", True, {"qp": "0"}, {"movflags": "+faststart"}),
    "mkv": _Spec("matroska", "ffv1", "bgr0", True),
    "avi": _Spec("avi", "ffv1", "bgr0", True),
    "webm": _Spec("webm", "libvpx-vp9", "gbrp", True, {"lossless": "1", "row-mt": "1"}),
    # yuv4mpegpipe takes YUV/gray only (no RGB): 4:4:4 keeps odd sizes; the RGB->YCbCr rounding costs <= 2 levels.
    "y4m": _Spec("yuv4mpegpipe", "rawvideo", "yuv444p", False),
}
PNG = "png"
OUTPUT_FORMATS = (*_SPECS, PNG)
LOSSLESS_FORMATS = frozenset({PNG, *(kind for kind, spec in _SPECS.items() if spec.lossless)})


def _is_folder_target(path: str | os.PathLike) -> bool:
    """A path written with a trailing slash, or an existing folder."""
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def output_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The kind of output ``FrameWriter`` writes for ``path`` (one of ``OUTPUT_FORMATS``), or a one-line error.

    ``format`` overrides the suffix; a path ending in ``/`` or naming an existing folder means PNG frames.
    """
    kind = format or (PNG if _is_folder_target(path) else Path(path).suffix.lower().lstrip("."))
    if kind not in OUTPUT_FORMATS:
        what = f"format {format!r}" if format else f"output suffix of {os.fspath(path)!r}"
        raise InputError(f"unknown video {what}: use {', '.join('.' + k for k in _SPECS)} or a folder ending in / for PNG frames")
    return kind


def _as_fraction(fps: Fraction | int | float | str) -> Fraction:
    """``fps`` as an exact positive Fraction; floats go through their decimal text (29.97 -> 2997/100)."""
    try:
        rate = Fraction(str(fps))
    except (ValueError, ZeroDivisionError):
        raise InputError(f"frame rate must be a positive number, got {fps!r}") from None
    if rate <= 0 or rate.numerator >= 2**31 or rate.denominator >= 2**31:
        raise InputError(f"frame rate must be a positive number that fits FFmpeg's 32-bit fractions, got {fps!r}")
    return rate


def _folder_mode() -> int:
    """Permissions of a new folder under the current umask (``mkdtemp`` makes them 0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


class _AvSink:
    """Frames encoded into a temporary file next to the target, renamed into place by ``finish``."""

    def __init__(self, target: Path, spec: _Spec, fps: Fraction, width: int, height: int) -> None:
        self.target = target
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
        self.part = Path(name)
        self.container: OutputContainer | None = None
        try:
            self.container = av.open(name, "w", format=spec.muxer, options=spec.muxer_options)
            self.stream = self.container.add_stream(spec.encoder, rate=fps, options=spec.options)
        except (av.FFmpegError, ValueError) as exc:
            self.abort()
            raise InputError(f"this FFmpeg build cannot write {spec.encoder} in {spec.muxer}: {exc}") from None
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, spec.pix_fmt
        self.stream.time_base = 1 / fps

    def _mux(self, frame: VideoFrame | None) -> None:
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except av.FFmpegError as exc:
            raise InputError(f"cannot encode {self.target.name} with {self.stream.codec_context.name}: {_reason(exc)}") from None

    def write(self, frame: np.ndarray, index: int) -> None:
        video_frame = VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = index
        self._mux(video_frame)

    def finish(self) -> None:
        self._mux(None)
        try:
            self.container.close()
        except av.FFmpegError as exc:
            raise InputError(f"cannot finish {self.target.name}: {_reason(exc)}") from None
        write_atomic_with(self.target, lambda tmp: os.replace(self.part, tmp))

    def abort(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        except av.FFmpegError:
            pass  # the half-written file is being thrown away anyway
        finally:
            self.part.unlink(missing_ok=True)


class _PngSink:
    """Numbered PNGs in a temporary folder next to the target, renamed to the target by ``finish``."""

    def __init__(self, target: Path) -> None:
        if target.exists() and not target.is_dir():
            raise InputError(f"{target} exists and is not a folder")
        if target.is_dir() and any(target.iterdir()):
            raise InputError(f"output folder {target} is not empty")
        self.target = target
        self.part = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part"))

    def write(self, frame: np.ndarray, index: int) -> None:
        Image.fromarray(frame).save(self.part / f"frame_{index:06d}.png")

    def finish(self) -> None:
        os.chmod(self.part, _folder_mode())
        os.replace(self.part, self.target)

    def abort(self) -> None:
        shutil.rmtree(self.part, ignore_errors=True)


class FrameWriter:
    """Write uint8 RGB frames [height, width, 3] to a video file or a folder of PNGs, atomically.

    The output kind comes from the suffix (or ``format``, one of ``OUTPUT_FORMATS``):

    ======  ===========  ==========  ==========================================================
    kind    codec        pixels      notes
    ======  ===========  ==========  ==========================================================
    .mp4    libx264rgb   RGB         qp 0: lossless; High 4:4:4 Predictive profile (any lossless
                                     H.264 needs it), so Safari/QuickTime/hardware decoders refuse it
    .mkv    FFV1         RGB (bgr0)  lossless
    .avi    FFV1         RGB (bgr0)  lossless
    .webm   VP9          RGB (gbrp)  lossless mode, VP9 profile 1
    .y4m    raw          yuv444p     the container has no RGB: BT.601 limited range, within 2 levels
    folder  PNG          RGB         ``frame_000000.png``, ... (a path ending in ``/`` or an existing,
                                     empty folder)
    ======  ===========  ==========  ==========================================================

    No output uses 4:2:0, so odd sizes are written exactly, without padding.  ``fps`` (a Fraction,
    int, float or "30000/1001") becomes the time base, so frame ``i`` has timestamp ``i / fps``;
    it reads back exactly (MKV/WebM keep it through ``probe``'s NTSC/integer rate snapping).

    Output is atomic: a temporary file (or folder) in the target folder is renamed into place when the
    ``with`` block ends normally; on any exception, or if no frame was written, it is removed and an
    existing target is left untouched.  An existing target file is replaced; a non-empty target folder
    is refused.  Unknown suffixes and missing parent folders fail in the constructor, before anything
    is written.
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | int | float | str, width: int, height: int, format: str | None = None) -> None:
        self.kind = output_format(path, format)
        self.path = Path(path)
        if not self.path.resolve().parent.is_dir():
            raise InputError(f"output folder does not exist: {self.path.parent}")
        if not (isinstance(width, int | np.integer) and isinstance(height, int | np.integer) and width > 0 and height > 0):
            raise InputError(f"frame size must be positive integers, got {width}x{height}")
        self.fps, self.width, self.height = _as_fraction(fps), int(width), int(height)
        self.frames_written = 0
        self._sink: _AvSink | _PngSink | None = None

    def __enter__(self) -> FrameWriter:
        if self.kind == PNG:
            self._sink = _PngSink(self.path)
        else:
            self._sink = _AvSink(self.path, _SPECS[self.kind], self.fps, self.width, self.height)
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 RGB frame of the writer's size."""
        if self._sink is None:
            raise RuntimeError("FrameWriter.write outside its with block")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3):
            raise InputError(f"frames must be uint8 [{self.height}, {self.width}, 3], got {frame.dtype} {list(frame.shape)}")
        self._sink.write(np.ascontiguousarray(frame), self.frames_written)
        self.frames_written += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        sink, self._sink = self._sink, None
        if exc_type is not None:
            sink.abort()
            return
        try:
            if not self.frames_written:
                raise InputError(f"no frames were written to {self.path}")
            sink.finish()
        except BaseException:
            sink.abort()
            raise
