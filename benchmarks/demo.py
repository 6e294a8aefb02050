"""Demo: compress one image with the CLI at every shipped McQuic quality and at VQGAN-cluster levels 1-9
(plus resilient files losing 20 % of their packets, without and with parity packets), decode it, print bpp / PSNR / MS-SSIM.

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
    print(f"{source}: {original.shape[1]}x{original.shape[0]}")
    print("(CLI time = two `codec` processes, encode then decode, including Python/torch start-up;")
    print(" the coding itself takes well under a second: see benchmarks/results/speed.md)")
    print(f"{'setting':>16} {'bytes':>7} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'CLI time':>9}")
    shipped = {m["name"]: [q["quality"] for q in m["qualities"]] for m in codec.list_models()}
    for q in shipped["mcquic"]:
        row(source, original, f"mcquic q{q}", ["--quality", str(q)])
    for level in [lv for lv in (1, 3, 5, 7, 9) if lv in shipped.get("vqgan", [])]:
        row(source, original, f"vqgan level {level}", ["--model", "vqgan", "--level", str(level)])
    if 7 in shipped.get("vqgan", []):  # a resilient file losing 20 % of its packets, recovered
        row(source, original, "vqgan 7, 20% lost", ["--model", "vqgan", "--level", "7", "--packet-rows", "2"], damage=0.2)
        row(source, original, "parity, 20% lost", ["--model", "vqgan", "--level", "7", "--packet-rows", "2", "--parity", "0.25"], damage=0.2)


def row(source: Path, original: np.ndarray, label: str, options: list[str], damage: float | None = None) -> None:
    """Encode and decode ``source`` with the CLI and print size, bpp, PSNR, MS-SSIM and time."""
    name = label.replace(" ", "_").replace("%", "").replace(",", "")
    packed, restored = OUT / f"{name}.bin", OUT / f"{name}.png"
    t0 = time.perf_counter()
    commands = [["encode", str(source), "-o", str(packed), *options, "-f", "-q"]]
    if damage is not None:
        commands.append(["damage", str(packed), "-o", str(OUT / f"{name}.lossy.bin"), "--drop", str(damage), "-f"])
        packed = OUT / f"{name}.lossy.bin"
    commands.append(["decode", str(packed), "-o", str(restored), "-f"])
    for cmd in commands:
        subprocess.run([sys.executable, "-m", "codec.cli", *cmd], check=True)
    seconds = time.perf_counter() - t0
    decoded = np.asarray(Image.open(restored).convert("RGB"))
    size = packed.stat().st_size
    a, b = as_tensor(original), as_tensor(decoded)
    print(f"{label:>16} {size:>7} {8 * size / (original.shape[0] * original.shape[1]):>7.4f} {psnr(a, b):>7.2f} {ms_ssim(a, b):>8.4f} {seconds:>8.1f}s")


if __name__ == "__main__":
    main()
