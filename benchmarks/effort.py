"""McQuic ``--effort N`` on Kodak: dB gained against encode seconds (decode is unchanged).

Every file goes through the public API (``codec.encode(..., effort=N)`` then ``codec.decode``); bpp from
the whole file.  Writes ``results/effort.{md,json}``.

    python benchmarks/effort.py [--limit 4] [--qualities 1 3 5] [--efforts 0 10 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from _common import RESULTS_DIR, kodak_images
from kodak import psnr

import codec


def main() -> None:
    """Measure and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=4, help="first N Kodak images")
    parser.add_argument("--qualities", type=int, nargs="*", default=[1, 3, 5])
    parser.add_argument("--efforts", type=int, nargs="*", default=[0, 10, 30])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["CODEC_THREADS"] = str(args.threads)  # codec.encode/decode run on their own thread count
    torch.set_num_threads(args.threads)
    images = kodak_images(args.limit)
    rows = []
    for q in args.qualities:
        for effort in args.efforts:
            bpp, db, seconds = [], [], []
            for pixels in images.values():
                t = time.perf_counter()
                data = codec.encode(pixels, model="mcquic", quality=q, effort=effort)
                seconds.append(time.perf_counter() - t)
                bpp.append(8 * len(data) / (pixels.shape[0] * pixels.shape[1]))
                db.append(psnr(pixels, codec.decode(data)))
            rows.append({"quality": q, "effort": effort, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(db)), "encode_s": float(np.mean(seconds))})
            print(rows[-1], flush=True)
    lines = [
        f"# McQuic `--effort` on Kodak ({len(images)} images, {args.threads} threads)",
        "",
        "`python benchmarks/effort.py`. Gains are against effort 0 (the nearest-codeword encoder) at the same quality.",
        "",
        "| quality | effort | bpp | PSNR (dB) | gain (dB) | bits | encode s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(b for b in rows if b["quality"] == r["quality"] and b["effort"] == 0) if 0 in args.efforts else r
        lines.append(
            f"| q{r['quality']} | {r['effort']} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['psnr'] - base['psnr']:+.2f} | "
            f"{100 * (r['bpp'] / base['bpp'] - 1):+.1f} % | {r['encode_s']:.1f} |"
        )
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "effort.md").write_text("\n".join(lines) + "\n")
    (RESULTS_DIR / "effort.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
