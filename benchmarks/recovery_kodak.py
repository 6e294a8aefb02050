"""Lost-index recovery on Kodak: clean vs recovered vs naive decode under packet loss, per VQGAN-cluster level.

For each level and loss rate, every image is encoded as a resilient file (``--packet-rows``), damaged
with ``codec.api.damage`` (fixed seeds) and decoded three ways: clean (undamaged file), naive fill
(``recover=False``) and recovered (the recovery transformer).  We report PSNR / MS-SSIM of each against
the original, the index accuracy of recovery and of the naive fill on the lost positions, and the
recovery time of one 768x512 image.

Usage (from the repository root)::

    python benchmarks/recovery_kodak.py                       # shipped weights, levels 3-9, 24 images
    python benchmarks/recovery_kodak.py --limit 4 --levels 5 9 --recovery runs/recovery/model.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import KODAK_DIR, RESULTS_DIR, REPO_ROOT, load_rgb  # noqa: E402
from vqgan_kodak import quality  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))
import codec  # noqa: E402
from codec import api, container, registry, resilient  # noqa: E402
from codec.models.recovery import RecoveryTransformer, load_recovery  # noqa: E402

LOSSES = (0.0, 0.05, 0.1, 0.2, 0.3)


def lost_indices(data: bytes, damaged: bytes, level: int, weights: str | None, net: RecoveryTransformer) -> tuple[float, float, float]:
    """(recovery accuracy, naive accuracy, recovery seconds) on the lost positions of one file."""
    model = registry.load("vqgan", level, weights).model
    lv = model.level(level)
    c, d = container.unpack(data), container.unpack(damaged, erasable=resilient.is_packet)
    rows = c.meta["packet_rows"]
    h, w = (math.ceil(s / model.pad_multiple) for s in c.shape[:2])
    names = [n for n, _ in c.streams if resilient.is_packet(n)]
    truth, _ = resilient.decode_packets(lv, [c.stream(n) for n in names], h, w, rows)
    idx, known = resilient.decode_packets(lv, [None if n in d.missing else d.stream(n) for n in names], h, w, rows)
    if known.all():
        return float("nan"), float("nan"), 0.0
    t0 = time.perf_counter()
    with torch.inference_mode():
        got = net.recover(idx, known, level)
    seconds = time.perf_counter() - t0
    naive = resilient.naive_fill(lv, idx, known)
    lost = ~known
    return float((got[lost] == truth[lost]).float().mean()), float((naive[lost] == truth[lost]).float().mean()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="VQGAN-cluster weights (default: shipped)")
    parser.add_argument("--recovery", default=None, help="recovery weights (default: shipped)")
    parser.add_argument("--levels", type=int, nargs="+", default=list(range(3, 10)))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--packet-rows", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS_DIR / "recovery_kodak"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", api.LostPackets)
    rec_path = Path(args.recovery) if args.recovery else registry.CHECKPOINTS / api.RECOVERY_FILE
    net, _ = load_recovery(rec_path)
    images = {p.stem: load_rgb(p) for p in sorted(KODAK_DIR.glob("*.png"))[: args.limit]}
    rows, timings = [], []
    for level in args.levels:
        for name, img in images.items():
            data = codec.encode(img, model="vqgan", quality=level, weights=args.weights, packet_rows=args.packet_rows)
            clean = quality(img, codec.decode(data, weights=args.weights))
            for k, loss in enumerate(LOSSES):
                damaged = api.damage(data, loss, seed=1000 * level + k)
                rec = quality(img, codec.decode(damaged, weights=args.weights, recovery_weights=rec_path))
                naive = quality(img, codec.decode(damaged, weights=args.weights, recover=False))
                acc, naive_acc, seconds = lost_indices(data, damaged, level, args.weights, net)
                if seconds and img.shape[:2] == (512, 768):
                    timings.append(seconds)
                rows.append({"level": level, "image": name, "loss": loss, "clean_psnr": clean[0], "clean_ms_ssim": clean[1],
                             "psnr": rec[0], "ms_ssim": rec[1], "naive_psnr": naive[0], "naive_ms_ssim": naive[1],
                             "index_acc": acc, "naive_index_acc": naive_acc})
    summary = []
    for level in args.levels:
        for loss in LOSSES:
            rs = [r for r in rows if r["level"] == level and r["loss"] == loss]
            summary.append({"level": level, "loss": loss, **{k: float(np.nanmean([r[k] for r in rs])) for k in rs[0] if k not in ("level", "image", "loss")}})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "recovery_seconds_768x512": float(np.median(timings)) if timings else None,
                                                   "threads": args.threads, "images": len(images)}, indent=2))
    lines = ["| level | loss | clean MS-SSIM | recovered | naive | rec/clean | clean PSNR | recovered | naive | index acc (rec / naive) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['level']} | {100 * s['loss']:.0f}% | {s['clean_ms_ssim']:.4f} | {s['ms_ssim']:.4f} | {s['naive_ms_ssim']:.4f} | "
                     f"{s['ms_ssim'] / s['clean_ms_ssim']:.3f} | {s['clean_psnr']:.2f} | {s['psnr']:.2f} | {s['naive_psnr']:.2f} | "
                     f"{s['index_acc']:.3f} / {s['naive_index_acc']:.3f} |")
    if timings:
        lines += ["", f"Recovery time of one 768x512 image ({args.threads} threads, median): {np.median(timings):.3f} s."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for level in args.levels:
        ss = [s for s in summary if s["level"] == level]
        line, = ax.plot([100 * s["loss"] for s in ss], [s["ms_ssim"] for s in ss], "o-", label=f"level {level} recovered")
        ax.plot([100 * s["loss"] for s in ss], [s["naive_ms_ssim"] for s in ss], "x:", color=line.get_color())
    ax.set_xlabel("packets lost (%)")
    ax.set_ylabel("MS-SSIM (solid: recovered, dotted: naive fill)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
