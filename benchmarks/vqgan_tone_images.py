"""Decoded Kodak images of VQGAN-cluster with and without the tone layer, side by side (PNG, half size).

Top row: source, level 1 without the tone layer, level 1 as coded; bottom row: the same at level 9.
"Without" decodes the same file with its tone stream removed (what files gave before the tone layer).

Usage (from the repository root)::

    python benchmarks/vqgan_tone_images.py            # kodim23 and kodim03 -> benchmarks/results/vqgan_tone_*.png
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import KODAK_DIR, REPO_ROOT, RESULTS_DIR, load_rgb
from PIL import Image

sys.path.insert(0, str(REPO_ROOT))
import codec  # noqa: E402
from codec import container  # noqa: E402


def without_tone(data: bytes) -> bytes:
    """The same file with its tone layer removed."""
    c = container.unpack(data)
    c.meta.pop("tone", None)
    c.streams = [(n, d) for n, d in c.streams if n != "tone"]
    return container.pack(c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", default=["kodim23", "kodim03"])
    args = parser.parse_args()
    for name in args.images:
        src = load_rgb(KODAK_DIR / f"{name}.png")
        rows = []
        for level in (1, 9):
            data = codec.encode(src, model="vqgan", quality=level)
            rows.append(np.concatenate([src, codec.decode(without_tone(data)), codec.decode(data)], 1))
        grid = Image.fromarray(np.concatenate(rows, 0))
        out = RESULTS_DIR / f"vqgan_tone_{name}.png"
        grid.resize((grid.width // 2, grid.height // 2), Image.LANCZOS).save(out)
        print(out)


if __name__ == "__main__":
    main()
