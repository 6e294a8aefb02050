"""Video benchmark: inter (temporal prior) vs intra-only coding, and x264 / x265 / SVT-AV1 on the same clips.

Clips (320 x 240): ``static`` (a still Kodak crop with sensor noise, fixed camera), ``pan`` (a camera
panning 3 px per frame over a Kodak photo), ``handheld`` (the shared 36-frame real clip
``video/realshort.mp4``, handheld indoor footage).  For each McQuic quality the codec encodes the clip
as one GOP with and without the temporal prior; bpp counts the whole file, PSNR is over RGB of all
frames.  The classical codecs run through PyAV at several CRF values (yuv420p, ``preset medium``
for x264/x265, preset 8 for SVT-AV1), PSNR in RGB after decoding.  BD-rate (PSNR) of the codec's inter
curve against each is reported where the curves overlap.  Encode and decode frames per second are the
codec's own (model loaded, 2 torch threads); decode is the median of :data:`DECODE_REPEATS` decodes
(single decodes of one file vary by up to 30 % on the shared 2-core host).

With ``--model vqgan`` the codec is VQGAN-cluster at its levels :data:`LEVELS` ``["vqgan"]`` (extreme
rates, below 0.05 bpp), and the classical codecs also run at the high CRFs that reach those rates.

Usage (from the repository root)::

    python benchmarks/video.py                 # writes benchmarks/results/video.{md,json}
    python benchmarks/video.py --model vqgan   # writes benchmarks/results/video_vqgan.{md,json}
"""

from __future__ import annotations

import io as stdio
import json
import math
import time
from pathlib import Path

import av
import numpy as np

import codec
from codec.training.video_prior import load_images, moving_crops
from codec.video import file, io

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
LEVELS = {"mcquic": (2, 3, 4), "vqgan": (3, 5, 7)}
LOW_RATE_CRFS = {"libx264": (51, 46), "libx265": (51, 46), "libsvtav1": (63, 60)}  # (vqgan: rates below 0.05 bpp)
DECODE_REPEATS = 5
BASELINES = {"x264": ("libx264", (40, 34, 30, 26)), "x265": ("libx265", (40, 34, 30, 26)), "svt-av1": ("libsvtav1", (55, 48, 42, 36))}


def clips() -> dict[str, list[np.ndarray]]:
    """The three clips, uint8 RGB frames of 240 x 320."""
    image = load_images(DATA / "images" / "kodak", 24)[22]
    return {
        "static": moving_crops(image, 24, (240, 320), (0, 0), noise=2.0),
        "pan": moving_crops(image, 24, (240, 320), (0, 3.0), noise=1.0),
        "handheld": list(io.read_frames(DATA / "video" / "realshort.mp4")),
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all frames and channels."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse)


def ours(frames: list[np.ndarray], tmp: Path, model: str, quality: int, intra_only: bool) -> dict:
    """bpp, PSNR and speed of the codec on a clip written losslessly to ``tmp``."""
    src = tmp / "clip.mkv"
    if not src.exists():
        with io.FrameWriter(src, 25, frames[0].shape[1], frames[0].shape[0]) as w:
            for f in frames:
                w.write(f)
    t = time.perf_counter()
    data = codec.encode(str(src), model=model, quality=quality, gop=len(frames), intra_only=intra_only)
    enc = time.perf_counter() - t
    seconds = []
    for _ in range(DECODE_REPEATS):
        t = time.perf_counter()
        out = codec.decode(data).to_array()
        seconds.append(time.perf_counter() - t)
    dec = float(np.median(seconds))
    h, w = frames[0].shape[:2]
    return {
        "bpp": 8 * len(data) / (len(frames) * h * w),
        "psnr": psnr(out, np.stack(frames)),
        "encode_fps": len(frames) / enc,
        "decode_fps": len(frames) / dec,
    }


def classical(frames: list[np.ndarray], encoder: str, crf: int) -> dict:
    """bpp and PSNR of one PyAV encoder at one CRF (yuv420p)."""
    buf = stdio.BytesIO()
    h, w = frames[0].shape[:2]
    with av.open(buf, "w", format="matroska") as out:
        options = {"crf": str(crf), "preset": "8" if encoder == "libsvtav1" else "medium"}
        if encoder == "libx265":
            options["x265-params"] = "log-level=error"
        stream = out.add_stream(encoder, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    size = buf.tell()
    buf.seek(0)
    with av.open(buf) as inp:
        decoded = np.stack([fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)])
    return {"bpp": 8 * size / (len(frames) * h * w), "psnr": psnr(decoded, np.stack(frames))}


def bd_rate(anchor: list[dict], test: list[dict]) -> float | None:
    """Bjøntegaard delta rate (%) of ``test`` against ``anchor`` over their overlapping PSNR range (cubic in log rate)."""
    if len(anchor) < 3 or len(test) < 3:
        return None
    a = sorted(anchor, key=lambda r: r["psnr"])
    t = sorted(test, key=lambda r: r["psnr"])
    lo, hi = max(a[0]["psnr"], t[0]["psnr"]), min(a[-1]["psnr"], t[-1]["psnr"])
    if hi <= lo:
        return None
    pa = np.polyfit([r["psnr"] for r in a], [math.log(r["bpp"]) for r in a], min(3, len(a) - 1))
    pt = np.polyfit([r["psnr"] for r in t], [math.log(r["bpp"]) for r in t], min(3, len(t) - 1))
    ia, it = np.polyint(pa), np.polyint(pt)
    diff = (np.polyval(it, hi) - np.polyval(it, lo) - np.polyval(ia, hi) + np.polyval(ia, lo)) / (hi - lo)
    return 100 * (math.exp(diff) - 1)


def main(model: str) -> None:
    """Run every clip with ``model`` and write the results."""
    import tempfile

    results: dict = {"prior": str(file.PRIOR_FILE), "model": model, "levels": LEVELS[model], "clips": {}}
    for name, frames in clips().items():
        with tempfile.TemporaryDirectory() as tmp:
            row = {
                "inter": [{"quality": q, **ours(frames, Path(tmp), model, q, False)} for q in LEVELS[model]],
                "intra": [{"quality": q, **ours(frames, Path(tmp), model, q, True)} for q in LEVELS[model]],
            }
        for label, (encoder, crfs) in BASELINES.items():
            extra = LOW_RATE_CRFS[encoder] if model == "vqgan" else ()
            row[label] = [{"crf": c, **classical(frames, encoder, c)} for c in (*extra, *crfs)]
        results["clips"][name] = row
        print(name, flush=True)
    write(results)


def _stem(results: dict) -> str:
    return "video" if results.get("model", "mcquic") == "mcquic" else f"video_{results['model']}"


def write(results: dict) -> None:
    """``video.md`` (tables with BD-rates) and ``video.json`` (``video_vqgan.*`` for VQGAN-cluster)."""
    RESULTS.mkdir(exist_ok=True)
    text = markdown(results)
    (RESULTS / f"{_stem(results)}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"{_stem(results)}.md").write_text(text)
    print(text)


def markdown(results: dict) -> str:
    """The results as tables."""
    model = results.get("model", "mcquic")
    levels = results.get("levels", LEVELS["mcquic"])
    command = "python benchmarks/video.py" + ("" if model == "mcquic" else f" --model {model}")
    lines = [f"# Video ({model}): inter (temporal prior) vs intra-only, and classical codecs", "", f"Command: `{command}` (2 CPU cores, 320x240).", ""]
    for name, row in results["clips"].items():
        row["bd_rate_inter_vs"] = {label: bd_rate(row[label], row["inter"]) for label in ("intra", *BASELINES)}
        lines += [f"## {name}", "", "| codec | setting | bpp | PSNR dB | encode fps | decode fps |", "|---|---|---|---|---|---|"]
        for label in ("inter", "intra"):
            for r in row[label]:
                lines.append(f"| ours {label} | q{r['quality']} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['encode_fps']:.1f} | {r['decode_fps']:.1f} |")
        for label in BASELINES:
            for r in row[label]:
                lines.append(f"| {label} | crf {r['crf']} | {r['bpp']:.4f} | {r['psnr']:.2f} | | |")
        saving = [1 - i["bpp"] / a["bpp"] for i, a in zip(row["inter"], row["intra"], strict=True)]
        bd = ", ".join(f"{k} {v:+.1f} %" if v is not None else f"{k} (no overlap)" for k, v in row["bd_rate_inter_vs"].items())
        lines += ["", f"Inter saves {', '.join(f'{100 * s:.0f} %' for s in saving)} of intra-only's bits at q{', q'.join(map(str, levels))}; BD-rate of inter vs {bd}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(LEVELS), default="mcquic")
    parser.add_argument("--tables", action="store_true", help="write the tables again from the saved results")
    args = parser.parse_args()
    if args.tables:
        write(json.loads((RESULTS / f"{_stem({'model': args.model})}.json").read_text()))
    else:
        main(args.model)
