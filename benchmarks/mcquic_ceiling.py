"""Where McQuic's quality is lost: the autoencoder's own ceiling against each level's quantization.

For every Kodak image: PSNR of the decoder fed the *unquantized* latent (``g_s(g_a(x))``: what no
codebook can beat), and per level the PSNR of the quantized decode and the latent's quantization error (squared error
over the latent's energy). Writes
``results/mcquic_ceiling.{md,json}``.

    python benchmarks/mcquic_ceiling.py [--weights FILE] [--limit N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS_DIR, kodak_images, to_tensor, to_uint8
from kodak import psnr

from codec import registry
from codec.models.mcquic import pad_to_multiple


@torch.no_grad()
def measure(model, pixels: np.ndarray) -> dict:
    """PSNR of the unquantized decode and, per level, the quantized decode's PSNR and latent error."""
    h, w = pixels.shape[:2]
    x = pad_to_multiple(to_tensor(pixels), model.pad_multiple)
    ys = model.features(x)

    def decoded(latent: torch.Tensor) -> float:
        return psnr(pixels, to_uint8(model._synthesis(latent)[..., :h, :w]))

    row = {"unquantized": decoded(ys[0]), "levels": {}}
    for level in range(1, model.levels + 1):
        recon, _, _ = model._cascade(ys, level)
        error = float((recon - ys[0]).pow(2).mean() / ys[0].pow(2).mean())
        row["levels"][level] = {"quantized": decoded(recon), "latent_nmse": error}
    return row


def main() -> None:
    """Measure and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="McQuic ladder file (default: shipped)")
    parser.add_argument("--limit", type=int, help="first N Kodak images only")
    args = parser.parse_args()
    loaded = registry.load("mcquic", weights=args.weights)
    model = loaded.model.eval()
    rows = {name: measure(model, pixels) for name, pixels in kodak_images(args.limit).items()}
    ceiling = float(np.mean([r["unquantized"] for r in rows.values()]))
    lines = [
        f"# McQuic: the autoencoder's ceiling against each level (Kodak, {len(rows)} images, weights `{loaded.weights_hash}`)",
        "",
        "`python benchmarks/mcquic_ceiling.py`. *Unquantized*: the decoder fed the encoder's latent as it is (no codebook",
        "can do better than the decoder allows). *Gap*: unquantized minus quantized PSNR; *latent NMSE*: the quantized",
        "latent's squared error over the latent's energy. A level whose gap is small is limited by the autoencoder.",
        "",
        "| level | quantized PSNR (dB) | unquantized PSNR (dB) | gap (dB) | latent NMSE | limited by |",
        "|---|---|---|---|---|---|",
    ]
    summary = {"unquantized_psnr": ceiling, "levels": {}}
    for level in range(1, model.levels + 1):
        q = float(np.mean([r["levels"][level]["quantized"] for r in rows.values()]))
        nmse = float(np.mean([r["levels"][level]["latent_nmse"] for r in rows.values()]))
        limit = "quantization" if ceiling - q > 0.5 else "autoencoder"
        summary["levels"][level] = {"psnr": q, "gap_db": ceiling - q, "latent_nmse": nmse, "limited_by": limit}
        lines.append(f"| q{level} | {q:.2f} | {ceiling:.2f} | {ceiling - q:+.2f} | {nmse:.4f} | {limit} |")
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "mcquic_ceiling.md").write_text("\n".join(lines) + "\n")
    (RESULTS_DIR / "mcquic_ceiling.json").write_text(json.dumps({"summary": summary, "images": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
