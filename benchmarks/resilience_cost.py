"""What resilience costs: bits of resilient VQGAN-cluster files against plain ones, on Kodak, per level.

Every image is encoded plainly and as a resilient file (``codec.encode`` with ``packet_rows`` and
``packet_lattice``) in the current container format; the table splits each file into its container
header (magic, header, stream table, checksum) and its payload (the entropy-coded streams), so the
price of independently decodable packets (coder restarts, lost context) is told apart from the price
of describing them (one name, length and CRC32 per packet).

Usage (from the repository root)::

    python benchmarks/resilience_cost.py                          # levels 3-9, packets of 2 rows' worth
    python benchmarks/resilience_cost.py --packet-rows 4 --limit 8 --out benchmarks/results/resilience_cost_rows4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _common import KODAK_DIR, REPO_ROOT, RESULTS_DIR, load_rgb

sys.path.insert(0, str(REPO_ROOT))
import codec  # noqa: E402
from codec import container  # noqa: E402
from codec.image import resilient  # noqa: E402


def split(data: bytes) -> tuple[int, int, int]:
    """(header bytes, payload bytes, packets) of a codec file."""
    c = container.unpack(data)
    payload = sum(len(d) for _, d in c.streams)
    return len(data) - payload, payload, sum(resilient.is_packet(n) for n, _ in c.streams)


def measure(images: list[Path], levels: list[int], rows: int, lattice: int) -> list[dict]:
    """One summary row per level: mean bpp, header and payload bytes of plain and resilient files."""
    out = []
    for level in levels:
        per_image = []
        for path in images:
            pixels = load_rgb(path)
            plain = codec.encode(pixels, model="vqgan", quality=level)
            tough = codec.encode(pixels, model="vqgan", quality=level, packet_rows=rows, packet_lattice=lattice)
            bits = 8 / (pixels.shape[0] * pixels.shape[1])
            per_image.append([len(plain) * bits, len(tough) * bits, *split(plain)[:2], *split(tough)])
        mean = np.mean(per_image, 0)
        out.append(
            {"level": level, "plain_bpp": mean[0], "resilient_bpp": mean[1], "plain_header": mean[2], "plain_payload": mean[3],
             "resilient_header": mean[4], "resilient_payload": mean[5], "packets": mean[6]}
        )
        print(f"level {level}: {mean[1]:.4f} / {mean[0]:.4f} bpp", flush=True)
    return out


def markdown(summary: list[dict], meta: dict) -> str:
    """The results table."""
    lines = [
        f"Cost of resilience on Kodak ({meta['images']} images), container format version {meta['format_version']}, "
        f"packets of {meta['packet_rows']} rows' worth, lattice {meta['packet_lattice']} "
        "(`python benchmarks/resilience_cost.py`). Bytes are means per image.",
        "",
        "| level | plain bpp | resilient bpp | extra bits | packets | plain header B | resilient header B | plain payload B | resilient payload B |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['level']} | {s['plain_bpp']:.4f} | {s['resilient_bpp']:.4f} | {100 * (s['resilient_bpp'] / s['plain_bpp'] - 1):+.1f} % | "
            f"{s['packets']:.1f} | {s['plain_header']:.0f} | {s['resilient_header']:.0f} | {s['plain_payload']:.0f} | {s['resilient_payload']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run and write ``<out>.md`` and ``<out>.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=list(range(3, 10)))
    parser.add_argument("--limit", type=int, default=None, help="first N Kodak images")
    parser.add_argument("--packet-rows", type=int, default=2)
    parser.add_argument("--lattice", type=int, default=resilient.LATTICE, help="packet interleave (1: whole token rows)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "resilience_cost"), help="output prefix")
    args = parser.parse_args()
    images = sorted(KODAK_DIR.glob("kodim*.png"))[: args.limit]
    if not images:
        sys.exit(f"no Kodak images in {KODAK_DIR}")
    summary = measure(images, args.levels, args.packet_rows, args.lattice)
    meta = {"images": len(images), "format_version": container.FORMAT_VERSION, "packet_rows": args.packet_rows, "packet_lattice": args.lattice}
    Path(args.out + ".md").write_text(markdown(summary, meta))
    Path(args.out + ".json").write_text(json.dumps({**meta, "levels": summary}, indent=1))
    print(Path(args.out + ".md").read_text())


if __name__ == "__main__":
    main()
