"""Demo: compress one image at every shipped McQuic quality with the CLI, decode it, print bpp / PSNR / MS-SSIM.

Usage: python benchmarks/demo.py [IMAGE]   (default: a synthetic test image when IMAGE is missing)
Outputs go to demo-out/.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import codec
from codec.metrics import ms_ssim, psnr

OUT = Path("demo-out")


def synthetic_image(height: int = 512, width: int = 768) -> np.ndarray:
    """A deterministic test picture (gradients, stripes, disc) for machines without sample data."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 0.5 + 0.5 * np.sin(x / 37.0) * np.cos(y / 23.0)
    g = x / width
    b = ((np.hypot(x - width / 2, y - height / 2) < height / 4) * 0.8 + 0.1 * (y / height)).astype(np.float32)
    return (np.stack([r, g, b], axis=2) * 255).round().astype(np.uint8)


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [0, 1]."""
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255


def main() -> None:
    """Run the demo."""
    OUT.mkdir(exist_ok=True)
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("missing")
    if not source.is_file():
        source = OUT / "synthetic.png"
        Image.fromarray(synthetic_image()).save(source)
        print(f"(sample image not found; using a synthetic one: {source})")
    original = np.asarray(Image.open(source).convert("RGB"))
    levels = next(m["qualities"] for m in codec.list_models() if m["name"] == "mcquic")
    print(f"{source}: {original.shape[1]}x{original.shape[0]}")
    print("(CLI time = two `codec` processes, encode then decode, including Python/torch start-up;")
    print(" the coding itself takes well under a second: see benchmarks/results/speed.md)")
    print(f"{'quality':>7} {'bytes':>7} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'CLI time':>9}")
    for level in levels:
        q = level["quality"]
        packed, restored = OUT / f"q{q}.bin", OUT / f"q{q}.png"
        t0 = time.perf_counter()
        for cmd in (["encode", str(source), "-o", str(packed), "--quality", str(q), "-f", "-q"], ["decode", str(packed), "-o", str(restored), "-f"]):
            subprocess.run([sys.executable, "-m", "codec.cli", *cmd], check=True)
        seconds = time.perf_counter() - t0
        decoded = np.asarray(Image.open(restored).convert("RGB"))
        size = packed.stat().st_size
        a, b = as_tensor(original), as_tensor(decoded)
        print(f"{q:>7} {size:>7} {8 * size / (original.shape[0] * original.shape[1]):>7.4f} {psnr(a, b):>7.2f} {ms_ssim(a, b):>8.4f} {seconds:>8.1f}s")


if __name__ == "__main__":
    main()
