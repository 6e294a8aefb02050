"""Rate-distortion on Kodak: classical codecs, our McQuic and our CompressAI hyperprior, in one run.

Every codec encodes each image to bytes and decodes it back; we record bpp = 8 * bytes / (H * W),
PSNR on 8-bit RGB and MS-SSIM (pytorch_msssim, data_range=255).  Kodak is reported as the field
does: per setting, the mean bpp and the mean of the per-image PSNR / MS-SSIM over the images; the
MS-SSIM in dB is -10 log10(1 - mean MS-SSIM).  BD-rates (Bjontegaard) are taken against JPEG,
WebP and AVIF, on PSNR and on MS-SSIM (dB).

Usage (from the repository root)::

    python benchmarks/kodak.py                      # all codecs, all 24 images
    python benchmarks/kodak.py --limit 2 --codecs jpeg,webp,hyperprior --threads 1
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import imagecodecs  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import (  # noqa: E402
    KODAK_DIR,
    RESULTS_DIR,
    compressai_compress,
    compressai_decompress,
    find_hyperprior_checkpoints,
    load_hyperprior,
    load_rgb,
    mcquic_targets,
)
from pytorch_msssim import ms_ssim  # noqa: E402
from scipy.interpolate import PchipInterpolator  # noqa: E402
from tqdm import tqdm  # noqa: E402

Roundtrip = Callable[[np.ndarray], tuple[int, np.ndarray]]
"""Encode uint8 [H, W, 3] pixels; return (compressed size in bytes, decoded uint8 [H, W, 3])."""


@dataclass(frozen=True)
class Setting:
    """One operating point of a codec."""

    label: str
    roundtrip: Roundtrip


@dataclass(frozen=True)
class Codec:
    """A codec under test: its name (``--codecs``), its legend label and its operating points."""

    name: str
    label: str
    settings: list[Setting]


@dataclass(frozen=True)
class ClassicalSpec:
    """How to drive one imagecodecs codec: ``<prefix>_encode(pixels, **{knob: value}, **extra)``."""

    name: str
    title: str
    prefix: str
    knob: str
    values: tuple[float, ...]
    extra: dict


CLASSICAL = (
    ClassicalSpec("jpeg", "JPEG 4:2:0", "jpeg8", "level", (5, 10, 15, 25, 40, 55, 70, 85), {"subsampling": "420"}),
    ClassicalSpec("webp", "WebP", "webp", "level", (1, 10, 25, 40, 55, 70, 80, 90), {"lossless": False}),
    ClassicalSpec("avif", "AVIF 4:4:4 speed 6", "avif", "level", (5, 15, 25, 35, 45, 55, 65, 75), {"speed": 6, "pixelformat": "444"}),
    ClassicalSpec("jpegxl", "JPEG XL effort 7", "jpegxl", "distance", (15.0, 10.0, 7.0, 5.0, 3.5, 2.5, 1.75, 1.25), {"effort": 7}),
)
"""Quality grids chosen to span about 0.05-1.5 bpp on Kodak (JPEG cannot go much below 0.2 bpp)."""

THREADED = {"avif", "jpegxl"}  # imagecodecs functions taking ``numthreads``
HYPERPRIOR_LABEL = "hyperprior (ours-trained, CompressAI)"
CODEC_NAMES = (*(spec.name for spec in CLASSICAL), "mcquic", "hyperprior")
ANCHORS = ("jpeg", "webp", "avif")
METRICS = (("psnr", "PSNR"), ("ms_ssim_db", "MS-SSIM dB"))


# ----------------------------------------------------------------------------------------- codecs


def classical_codec(spec: ClassicalSpec, threads: int) -> Codec:
    """An imagecodecs codec as a :class:`Codec`; raises ``RuntimeError`` when this build lacks it."""
    encode = getattr(imagecodecs, f"{spec.prefix}_encode", None)
    decode = getattr(imagecodecs, f"{spec.prefix}_decode", None)
    if encode is None or decode is None or not getattr(imagecodecs, spec.prefix.upper()).available:
        raise RuntimeError(f"imagecodecs {imagecodecs.__version__} has no {spec.prefix}_encode/_decode")
    extra = {**spec.extra, **({"numthreads": threads} if spec.name in THREADED else {})}

    def setting(value: float) -> Setting:
        def roundtrip(pixels: np.ndarray) -> tuple[int, np.ndarray]:
            data = encode(pixels, **{spec.knob: value}, **extra)
            return len(data), decode(data)

        return Setting(f"{spec.knob}={value:g}", roundtrip)

    version = getattr(imagecodecs, f"{spec.prefix}_version")()
    return Codec(spec.name, f"{spec.title} ({version})", [setting(v) for v in spec.values])


def mcquic_codec(weights: list[Path]) -> Codec:
    """Our McQuic through the public API ``codec.encode`` / ``codec.decode``."""
    import codec

    if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
        raise RuntimeError("the codec package has no encode/decode yet")
    targets = mcquic_targets(weights)
    if not targets:
        raise RuntimeError("no shipped mcquic checkpoints (codec.list_models() lists no qualities); pass --weights")

    def setting(encode_kwargs: dict, decode_kwargs: dict, label: str) -> Setting:
        def roundtrip(pixels: np.ndarray) -> tuple[int, np.ndarray]:
            data = codec.encode(pixels, **encode_kwargs)
            return len(data), codec.decode(data, **decode_kwargs)

        return Setting(label, roundtrip)

    return Codec("mcquic", "McQuic (ours)", [setting(t.encode_kwargs, t.decode_kwargs, t.label) for t in targets])


def hyperprior_codec(paths: list[Path]) -> Codec:
    """Our CompressAI mean-scale hyperprior checkpoints, one RD point per file, sorted by lambda."""
    models = []
    for path in paths:
        try:
            models.append((*load_hyperprior(path), path))
        except Exception as exc:  # e.g. a checkpoint being rewritten by a training run
            print(f"warning: skipping baseline {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
    if not models:
        raise RuntimeError("no usable hyperprior checkpoint (--baseline, or benchmarks/baselines/hyperprior*.safetensors)")
    models.sort(key=lambda item: item[1])

    def setting(model: torch.nn.Module, lmbda: float, path: Path) -> Setting:
        def roundtrip(pixels: np.ndarray) -> tuple[int, np.ndarray]:
            out, size = compressai_compress(model, pixels)
            return size, compressai_decompress(model, out, *pixels.shape[:2])

        return Setting(f"lambda={lmbda:g} ({path.parent.name})", roundtrip)

    return Codec("hyperprior", HYPERPRIOR_LABEL, [setting(*item) for item in models])


def build_codecs(names: list[str], threads: int, weights: list[Path], baselines: list[Path]) -> tuple[list[Codec], dict[str, str]]:
    """The requested codecs in ``CODEC_NAMES`` order, and why any of them were skipped."""
    builders: dict[str, Callable[[], Codec]] = {spec.name: (lambda s=spec: classical_codec(s, threads)) for spec in CLASSICAL}
    builders["mcquic"] = lambda: mcquic_codec(weights)
    builders["hyperprior"] = lambda: hyperprior_codec(baselines or find_hyperprior_checkpoints())
    codecs, skipped = [], {}
    for name in (n for n in CODEC_NAMES if n in names):
        try:
            codecs.append(builders[name]())
        except Exception as exc:  # a missing library, API or checkpoint skips only this codec
            skipped[name] = f"{type(exc).__name__}: {exc}"
            print(f"warning: skipping {name}: {skipped[name]}", file=sys.stderr)
    return codecs, skipped


# ---------------------------------------------------------------------------------------- metrics


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of two uint8 images, MSE over all pixels and channels (exact integer arithmetic)."""
    diff = original.astype(np.int32) - decoded.astype(np.int32)
    mse = float(np.sum(diff * diff, dtype=np.int64)) / diff.size
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def msssim(original: np.ndarray, decoded: np.ndarray) -> float:
    """MS-SSIM of two uint8 [H, W, 3] images, computed on 0..255 floats."""
    a, b = (torch.tensor(x).permute(2, 0, 1).unsqueeze(0).float() for x in (original, decoded))
    with torch.inference_mode():
        return float(ms_ssim(a, b, data_range=255.0))


def msssim_db(value: float) -> float:
    """MS-SSIM as decibels, -10 log10(1 - MS-SSIM)."""
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def evaluate(codec: Codec, images: list[tuple[str, np.ndarray]], bar: tqdm) -> list[dict]:
    """Per-image measurements of every setting of ``codec``, settings outer, images inner."""
    rows = []
    for setting in codec.settings:
        for name, pixels in images:
            size, decoded = setting.roundtrip(pixels)
            if decoded.shape != pixels.shape or decoded.dtype != np.uint8:
                raise ValueError(f"{codec.name} {setting.label} decoded {decoded.shape} {decoded.dtype}, expected {pixels.shape} uint8")
            h, w = pixels.shape[:2]
            ssim = msssim(pixels, decoded)
            rows.append(
                {
                    "codec": codec.name,
                    "setting": setting.label,
                    "image": name,
                    "height": h,
                    "width": w,
                    "bytes": size,
                    "bpp": 8.0 * size / (h * w),
                    "psnr": psnr(pixels, decoded),
                    "ms_ssim": ssim,
                    "ms_ssim_db": msssim_db(ssim),
                }
            )
            bar.update()
    return rows


def average(rows: list[dict]) -> list[dict]:
    """Mean bpp, PSNR and MS-SSIM per (codec, setting), in first-seen order; MS-SSIM dB from the mean."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["codec"], row["setting"]), []).append(row)
    points = []
    for (name, setting), group in groups.items():
        bpp, psnr_db, ssim = np.array([[r["bpp"], r["psnr"], r["ms_ssim"]] for r in group]).mean(axis=0)
        points.append(
            {"codec": name, "setting": setting, "images": len(group), "bpp": float(bpp), "psnr": float(psnr_db), "ms_ssim": float(ssim), "ms_ssim_db": msssim_db(float(ssim))}
        )
    return points


# --------------------------------------------------------------------------------------- BD-rate


def bd_rate(anchor_rate: np.ndarray, anchor_dist: np.ndarray, test_rate: np.ndarray, test_dist: np.ndarray, method: str) -> float | None:
    """Bjontegaard delta rate of ``test`` vs ``anchor`` in percent (negative = fewer bits), or None.

    log(rate) is fitted as a function of distortion (PSNR or MS-SSIM dB) for each curve -- a cubic
    polynomial (``method="cubic"``, VCEG-M33) or a piecewise cubic Hermite interpolant
    (``method="pchip"``, as in CompressAI and recent papers) -- and the mean log-rate difference over
    the overlapping distortion interval is converted back to a percentage.  None when the curves
    do not overlap or have too few distinct points (cubic needs 4, pchip 2).
    """
    fits = [_log_rate_fit(r, d, method) for r, d in ((anchor_rate, anchor_dist), (test_rate, test_dist))]
    if any(f is None for f in fits):
        return None
    (f_anchor, lo_a, hi_a), (f_test, lo_t, hi_t) = fits
    lo, hi = max(lo_a, lo_t), min(hi_a, hi_t)
    if not lo < hi:
        return None
    mean_diff = (f_test(lo, hi) - f_anchor(lo, hi)) / (hi - lo)
    return 100.0 * math.expm1(mean_diff)


def _log_rate_fit(rate: np.ndarray, dist: np.ndarray, method: str) -> tuple[Callable[[float, float], float], float, float] | None:
    """The integral over [a, b] of fitted log(rate)(distortion), and the distortion range; or None."""
    ok = np.isfinite(dist) & (rate > 0)
    dist, order = np.unique(dist[ok], return_index=True)  # sorted, one rate per distortion
    log_rate = np.log(rate[ok][order])
    if method == "cubic":
        if dist.size < 4:
            return None
        antiderivative = np.polyint(np.polyfit(dist, log_rate, 3))
        return (lambda a, b: float(np.polyval(antiderivative, b) - np.polyval(antiderivative, a))), dist[0], dist[-1]
    if dist.size < 2:
        return None
    interp = PchipInterpolator(dist, log_rate)
    return (lambda a, b: float(interp.integrate(a, b))), dist[0], dist[-1]


def bd_table(points: list[dict], method: str) -> dict[str, dict[str, dict[str, float | None]]]:
    """BD-rate of every codec vs every anchor present, per metric: ``{codec: {anchor: {metric: %}}}``."""
    curves = {}
    for p in points:
        curves.setdefault(p["codec"], []).append(p)
    arrays = {name: {key: np.array([p[key] for p in pts]) for key in ("bpp", "psnr", "ms_ssim_db")} for name, pts in curves.items()}
    anchors = [a for a in ANCHORS if a in arrays]
    return {
        name: {
            anchor: {metric: bd_rate(arrays[anchor]["bpp"], arrays[anchor][metric], c["bpp"], c[metric], method) for metric, _ in METRICS}
            for anchor in anchors
            if anchor != name
        }
        for name, c in arrays.items()
    }


def bd_markdown(table: dict, labels: dict[str, str], method: str, n_images: int) -> str:
    """The BD-rate table as markdown: one row per codec, two columns (PSNR, MS-SSIM dB) per anchor."""
    anchors = [a for a in ANCHORS if a in labels]
    header = ["codec"] + [f"vs {a.upper() if a != 'webp' else 'WebP'} ({title})" for a in anchors for _, title in METRICS]
    lines = [
        f"BD-rate on Kodak ({n_images} image{'s' if n_images != 1 else ''}), {method} fit of log(rate) vs distortion; negative = fewer bits than the anchor.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, by_anchor in table.items():
        cells = [_percent(by_anchor[a][m]) if a in by_anchor else "—" for a in anchors for m, _ in METRICS]
        lines.append("| " + " | ".join([labels[name], *cells]) + " |")
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    """A BD-rate cell: signed percentage, or n/a."""
    return "n/a" if value is None else f"{value:+.1f}%"


# ---------------------------------------------------------------------------------------- outputs


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts (same keys) as CSV."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_rd(points: list[dict], labels: dict[str, str], metric: str, ylabel: str, path: Path, n_images: int) -> None:
    """One RD curve per codec, bpp in [0, 1.5] on x; y limits fit the points inside that range."""
    fig, ax = plt.subplots(figsize=(7, 5))
    visible = []
    for name, label in labels.items():
        pts = sorted((p["bpp"], p[metric]) for p in points if p["codec"] == name)
        if pts:
            x, y = np.array(pts).T
            ax.plot(x, y, marker="o", markersize=4, label=label)
            visible.extend(y[x <= 1.5])
    ax.set_xlim(0.0, 1.5)
    if visible:
        lo, hi = min(visible), max(visible)
        ax.set_ylim(lo - 0.05 * (hi - lo + 1), hi + 0.05 * (hi - lo + 1))
    ax.set_xlabel("bits per pixel (bpp)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"Kodak ({n_images} image{'s' if n_images != 1 else ''}): {ylabel} vs rate")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def versions() -> dict[str, str]:
    """Library versions that the numbers depend on."""
    import compressai

    libs = {p: getattr(imagecodecs, f"{p}_version")() for p in ("jpeg8", "webp", "avif", "jpegxl") if hasattr(imagecodecs, f"{p}_version")}
    return {"imagecodecs": imagecodecs.__version__, "torch": torch.__version__, "compressai": compressai.__version__, **libs}


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=Path, default=KODAK_DIR, help="folder of Kodak PNGs")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    p.add_argument("--codecs", default=",".join(CODEC_NAMES), help="comma-separated subset of " + ",".join(CODEC_NAMES))
    p.add_argument("--baseline", type=Path, action="append", default=[], help="hyperprior safetensors (repeatable); default benchmarks/baselines/hyperprior*.safetensors")
    p.add_argument("--weights", type=Path, action="append", default=[], help="McQuic weights files to measure instead of the shipped qualities (repeatable)")
    p.add_argument("--threads", type=int, default=2, help="torch / codec / AVIF / JPEG XL threads")
    p.add_argument("--bd-method", choices=("pchip", "cubic"), default="pchip", help="BD-rate curve fit")
    args = p.parse_args(argv)
    args.codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    unknown = sorted(set(args.codecs) - set(CODEC_NAMES))
    if unknown:
        p.error(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(CODEC_NAMES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write the outputs."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["CODEC_THREADS"] = str(args.threads)  # codec.encode/decode use their own thread count
    paths = sorted(args.images.glob("*.png"))[: args.limit]
    if not paths:
        sys.exit(f"no PNG images in {args.images}")
    images = [(p.stem, load_rgb(p)) for p in paths]

    codecs, skipped = build_codecs(args.codecs, args.threads, args.weights, args.baseline)
    rows: list[dict] = []
    with tqdm(total=sum(len(c.settings) for c in codecs) * len(images), unit="img", dynamic_ncols=True) as bar:
        for c in codecs:
            bar.set_description(c.name)
            try:
                rows.extend(evaluate(c, images, bar))
            except Exception as exc:  # e.g. the codec API changing under us: keep the other codecs
                skipped[c.name] = f"{type(exc).__name__}: {exc}"
                tqdm.write(f"warning: skipping {c.name}: {skipped[c.name]}", file=sys.stderr)
                bar.update(len(c.settings) * len(images) - sum(r["codec"] == c.name for r in rows))
                rows = [r for r in rows if r["codec"] != c.name]
    if not rows:
        sys.exit("no codec produced results")

    labels = {c.name: c.label for c in codecs if c.name not in skipped}
    points = average(rows)
    table = bd_table(points, args.bd_method)
    markdown = bd_markdown(table, labels, args.bd_method, len(images))

    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "kodak_rd.csv", [{k: p[k] for k in ("codec", "setting", "bpp", "psnr", "ms_ssim", "ms_ssim_db")} for p in points])
    write_csv(args.out / "kodak_per_image.csv", rows)
    (args.out / "kodak_bdrate.md").write_text(markdown)
    plot_rd(points, labels, "psnr", "PSNR (dB, RGB)", args.out / "kodak_psnr.png", len(images))
    plot_rd(points, labels, "ms_ssim_db", "MS-SSIM (dB)", args.out / "kodak_msssim.png", len(images))
    summary = {
        "dataset": {"folder": str(args.images), "images": [name for name, _ in images]},
        "threads": args.threads,
        "bd_method": args.bd_method,
        "versions": versions(),
        "codecs": {name: {"label": label, "points": [p for p in points if p["codec"] == name]} for name, label in labels.items()},
        "bd_rate": table,
        "skipped": skipped,
        "per_image": rows,
    }
    (args.out / "kodak_summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {args.out}/kodak_{{rd.csv,per_image.csv,bdrate.md,psnr.png,msssim.png,summary.json}}\n")
    print(markdown)


if __name__ == "__main__":
    main()
