"""How much can the *shape* of the loss matter?  Interpolation of lost VQGAN-cluster tokens under ideal and real loss patterns.

For each level, every image's index map loses about 20 % of its tokens in one of several patterns,
the lost positions are filled by the non-learned first guess of the recovery network (each lost
decoder input interpolated from its received neighbours, :func:`codec.models.recovery.interpolate_holes`),
and the decode is compared with the original (MS-SSIM, as a fraction of the clean decode's):

* ``perfect``: the tokens with ``(row + 2 col) mod 5 == 0``, exactly 20 %; no two lost tokens touch,
  not even diagonally, so every hole has all eight neighbours (the best any layout can do at 20 %);
* ``iid``: every token lost independently with probability 0.2;
* ``lattice L``: a resilient file (``--packet-rows`` rows' worth, ``--packet-lattice L``) damaged
  by ``codec.api.damage`` (20 % of its packets lost); its intact packets give the received tokens.

If even ``perfect`` stays below a target, no packet layout reaches it: the restoration itself has to
get better than interpolating the neighbours.

Usage (from the repository root)::

    python benchmarks/recovery_layouts.py --limit 8 --levels 3 5 9
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from _common import REPO_ROOT, RESULTS_DIR, kodak_images
from recovery_kodak import decoded, interpolated, received
from vqgan_kodak import quality

sys.path.insert(0, str(REPO_ROOT))
import codec  # noqa: E402
from codec import api, registry  # noqa: E402

LOSS = 0.2


def loss_patterns(img: np.ndarray, level: int, args: argparse.Namespace, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The image's index map at ``level`` and the ``known`` mask of every pattern (see the module docstring)."""
    model = registry.load("vqgan", level, args.weights).model
    files = {lattice: codec.encode(img, model="vqgan", quality=level, weights=args.weights, packet_rows=args.packet_rows,
                                   packet_lattice=lattice) for lattice in args.lattices}
    truth, _ = received(files[args.lattices[0]], model, level)
    i, j = torch.arange(truth.shape[0])[:, None], torch.arange(truth.shape[1])[None]
    generator = torch.Generator().manual_seed(seed)
    out = {"perfect": (i + 2 * j) % 5 != 0, "iid": torch.rand(truth.shape, generator=generator) >= LOSS}
    for lattice, data in files.items():
        out[f"lattice {lattice}"] = received(api.damage(data, LOSS, seed=seed), model, level)[1]
    return truth, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="VQGAN-cluster weights (default: shipped)")
    parser.add_argument("--levels", type=int, nargs="+", default=[3, 5, 9])
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--packet-rows", type=int, default=2)
    parser.add_argument("--lattices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS_DIR / "recovery_layouts.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = kodak_images(args.limit)
    lines = [f"Kodak, {len(images)} images ({', '.join(images)}), about {100 * LOSS:.0f} % of the tokens lost, lost decoder inputs "
             "interpolated from their received neighbours (no network). MS-SSIM as a fraction of the clean decode's "
             "(ratio of means), in brackets the fraction of tokens lost.", ""]
    for level in args.levels:
        model = registry.load("vqgan", level, args.weights).model
        lv = model.level(level)
        scores: dict[str, list[float]] = {}
        lost: dict[str, list[float]] = {}
        for k, img in enumerate(images.values()):
            with torch.inference_mode():
                truth, patterns = loss_patterns(img, level, args, seed=1000 * level + k)
                scores.setdefault("clean", []).append(quality(img, decoded(model, lv.latent(truth[None]), img.shape))[1])
                for name, known in patterns.items():
                    scores.setdefault(name, []).append(quality(img, decoded(model, interpolated(lv, truth, known), img.shape))[1])
                    lost.setdefault(name, []).append(float((~known).float().mean()))
        names = list(lost)
        if len(lines) == 2:
            lines += ["| level | clean MS-SSIM | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
        clean = float(np.mean(scores["clean"]))
        cells = [f"{np.mean(scores[n]) / clean:.3f} ({100 * np.mean(lost[n]):.1f} %)" for n in names]
        lines.append(f"| {level} | {clean:.4f} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
