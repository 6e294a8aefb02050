"""What lost-index recovery could reach: oracle fills of the lost regions, in the pixel domain, on Kodak.

At 20 % packet loss (packets of 2 token rows' worth, dispersed layout, the damage seeds of
``recovery_kodak.py``) each image is decoded with the shipped recovery network (R) and compared, as a
fraction of the clean decode's (C) MS-SSIM, with fills of the lost 16 x 16 blocks that split the
error by spatial frequency (G_s: Gaussian blur of standard deviation s pixels):

* ``inpaint s``: R's detail plus low frequencies inpainted from the received surroundings,
  R - G_s(R) + G_s(R * received) / G_s(received): what a pixel-domain inpainter of the coarse
  content, with no more information than the network has, would give;
* ``oracle s``: R's detail plus the clean decode's own low frequencies, R - G_s(R) + G_s(C): what
  a predictor would reach if it knew the lost blocks' content coarser than s, and nothing finer;
* ``blurred clean s``: the clean decode with the lost blocks blurred, G_s(C): the cost of losing
  only the detail finer than s.

If the oracle rows are far above R and the inpainting rows are not, the gap to the clean decode is
the lost blocks' coarse content, which the received neighbours do not determine: no predictor of
the neighbours closes it, only information sent for the lost blocks (e.g. parity packets).

Usage (from the repository root)::

    python benchmarks/recovery_ceiling.py                    # 8 images, levels 3, 5, 9
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from _common import REPO_ROOT, RESULTS_DIR, kodak_images
from recovery_kodak import damage_seed, decoded, received, shipped_recovery
from scipy.ndimage import gaussian_filter
from vqgan_kodak import quality

sys.path.insert(0, str(REPO_ROOT))
import codec  # noqa: E402
from codec import api, registry  # noqa: E402

SIGMAS = (4, 8, 16)
LOSS, LOSS_SEED_INDEX = 0.2, 3
"""20 % of the packets, with ``recovery_kodak.py``'s seed for it (position 3 of its loss rates)."""


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an [H, W, C] float array over its two spatial axes."""
    return gaussian_filter(x, (sigma, sigma, 0))


def fills(recovered: np.ndarray, clean: np.ndarray, lost: np.ndarray) -> dict[str, np.ndarray]:
    """The restorations compared (see the module docstring), float [H, W, 3]; ``lost`` is [H, W, 1] in {0, 1}."""
    r, c, keep = recovered.astype(np.float64), clean.astype(np.float64), 1.0 - lost
    out = {"recovered (network)": r}
    for s in SIGMAS:
        inpainted = blur(r * keep, s) / np.maximum(blur(keep, s), 1e-3)
        out[f"inpaint {s}"] = r * keep + (r - blur(r, s) + inpainted) * lost
    for s in SIGMAS:
        out[f"oracle {s}"] = r * keep + (r - blur(r, s) + blur(c, s)) * lost
    for s in SIGMAS:
        out[f"blurred clean {s}"] = c * keep + blur(c, s) * lost
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[3, 5, 9])
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS_DIR / "recovery_ceiling"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = shipped_recovery()
    images = kodak_images(args.limit)
    table: dict[int, dict[str, list[float]]] = {}
    for level in args.levels:
        model = registry.load("vqgan", level).model
        lv = model.level(level)
        scores = table.setdefault(level, {})
        for number, (name, img) in enumerate(images.items()):
            data = codec.encode(img, model="vqgan", quality=level, packet_rows=2)
            truth, _ = received(data, model, level)
            indices, known = received(api.damage(data, LOSS, seed=damage_seed(level, number, LOSS_SEED_INDEX)), model, level)
            with torch.inference_mode():
                clean = decoded(model, lv.latent(truth[None]), img.shape)
                _, points = net.recover(indices, known, level)
                recovered = decoded(model, net.decoder_input(points), img.shape)
            lost = np.kron((~known).numpy().astype(np.float64), np.ones((16, 16)))[: img.shape[0], : img.shape[1], None]
            scores.setdefault("clean", []).append(quality(img, clean)[1])
            for key, out in fills(recovered, clean, lost).items():
                scores.setdefault(key, []).append(quality(img, np.clip(out, 0, 255).round().astype(np.uint8))[1])
            print(f"level {level} {name}: recovered {scores['recovered (network)'][-1]:.4f}, clean {scores['clean'][-1]:.4f}", flush=True)
    keys = [k for k in next(iter(table.values())) if k != "clean"]
    lines = [f"Kodak, {len(images)} images ({', '.join(images)}), {100 * LOSS:.0f} % of the packets lost (packets of 2 token rows' "
             "worth, dispersed layout, seeds of recovery_kodak.py). MS-SSIM of each restoration as a fraction of the clean "
             "decode's (ratio of means; see the script's docstring for the rows). s: blur standard deviation in pixels "
             "(a token is 16 x 16 pixels).", "",
             "| restoration | " + " | ".join(f"level {level}" for level in table) + " |", "|---|" + "---|" * len(table)]
    lines.append("| clean MS-SSIM | " + " | ".join(f"{np.mean(s['clean']):.4f}" for s in table.values()) + " |")
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{np.mean(s[key]) / np.mean(s['clean']):.3f}" for s in table.values()) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
