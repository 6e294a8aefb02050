"""Clips written with PyAV directly, for the video tests: rotation side data, audio/subtitle streams, audio-only files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def av_clip(path: Path, frames: list[np.ndarray], rotation: int = 0, faststart: bool = False, audio: bool = False, subtitles: bool = False) -> Path:
    """A lossless clip written with PyAV directly: display rotation (counter-clockwise), extra streams, index placement."""
    options = {"movflags": "+faststart"} if faststart else {}
    codec, pix_fmt = ("libx264rgb", "rgb24") if path.suffix == ".mp4" else ("ffv1", "bgr0")
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=25, options={"qp": "0"} if codec == "libx264rgb" else {})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        others = ([silence(container)] if audio else []) + ([subtitle(container)] if subtitles else [])  # all streams before the first mux
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = i
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
        for packets in others:
            container.mux(packets)
    return path


def silence(container: av.container.OutputContainer) -> list[av.Packet]:
    stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 8000, 0
    return stream.encode(frame) + stream.encode(None)


def subtitle(container: av.container.OutputContainer) -> list[av.Packet]:
    stream = container.add_mux_stream("subrip")
    packet = av.Packet(b"hello")
    packet.stream, packet.pts, packet.dts, packet.duration = stream, 0, 0, 500
    packet.time_base = Fraction(1, 1000)
    return [packet]


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        container.mux(stream.encode(frame) + stream.encode(None))
    return path
