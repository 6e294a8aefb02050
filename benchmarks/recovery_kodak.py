"""Lost-index recovery on Kodak: clean vs recovered vs naive decode under packet loss, per VQGAN-cluster level.

For each level and loss rate, every image is encoded as a resilient file (``codec.encode`` with
``packet_rows``) and damaged with ``codec.api.damage`` (a fixed seed per level, image and loss rate, so
every image loses its own packets; ``--shared-seeds`` gives all images of one level and loss rate the
seed of versions before 2026-11-30, i.e. the same lost packets for all images of one size); the intact packets of the
damaged file are decoded and the lost positions restored three ways: the recovery transformer (as
``codec decode`` does), the naive fill of ``--no-recover`` (the level's most frequent codeword), and,
as a stronger non-learned reference, the network's own first guess: each lost position's decoder
input interpolated from its received neighbours (:func:`codec.models.recovery.interpolate_holes`).
Each is decoded by the network and compared with the original (PSNR, MS-SSIM), beside the clean
decode of the undamaged file, and with the clean decode itself (PSNR and MS-SSIM: how faithfully the lost
part of the stream was restored, whatever the codec's own error); index accuracy (of the codeword nearest to each restored point) is
measured on the lost positions.  ``--lattice 1`` makes files in the row layout of older versions
instead of the dispersed one.  The recovery time of a
768x512 image (512 x 768 pixels = 32 x 48 tokens) is the median over the damaged files of that size.

Usage (from the repository root)::

    python benchmarks/recovery_kodak.py                       # shipped weights, levels 3-9, 24 images
    python benchmarks/recovery_kodak.py --limit 4 --levels 5 9 --recovery runs/recovery/model.safetensors
    python benchmarks/recovery_kodak.py --limit 8 --lattice 1 --out benchmarks/results/recovery_kodak_rows
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import REPO_ROOT, RESULTS_DIR, kodak_images  # noqa: E402
from torch import Tensor  # noqa: E402
from vqgan_kodak import quality  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))
import codec  # noqa: E402
from codec import api, catalog, container, registry  # noqa: E402
from codec.image import resilient  # noqa: E402
from codec.models.recovery import RecoveryTransformer, interpolate_holes, load_recovery  # noqa: E402
from codec.models.vqgan_cluster import LadderLevel, VQGANCluster  # noqa: E402

LOSSES = (0.0, 0.05, 0.1, 0.2, 0.3)


def received(data: bytes, model: VQGANCluster, level: int) -> tuple[Tensor, Tensor]:
    """Index map and ``known`` mask of the intact (or rebuilt from parity) packets of a resilient file."""
    c = container.unpack(data, erasable=resilient.is_erasable)
    h, w = (-(-s // model.pad_multiple) for s in c.shape[:2])
    packets = resilient.received_packets(c)
    return resilient.decode_packets(model.level(level), packets, h, w, resilient.PacketLayout.from_meta(c.meta))


def shipped_recovery() -> RecoveryTransformer:
    """The shipped recovery network of the shipped VQGAN-cluster ladder."""
    return load_recovery(catalog.CHECKPOINTS / registry.get_spec("vqgan").recovery)[0]


def decoded(model: VQGANCluster, latent: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """The network's decode (uint8 [H, W, 3], cropped to ``shape``) of a decoder input [1, C, h, w]."""
    y = model.latent_decode(latent, shape[:2])[0]
    return (y.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def interpolated(lv: LadderLevel, indices: Tensor, known: Tensor) -> Tensor:
    """Decoder input [1, C, h, w]: lost positions interpolated from their received neighbours."""
    return interpolate_holes(lv.latent(indices[None]).permute(0, 2, 3, 1), known[None]).permute(0, 3, 1, 2)


def damage_seed(level: int, image: int, k: int, shared: bool = False) -> int:
    """Damage seed of the ``image``-th image at ``level`` and the ``k``-th loss rate (``shared``: the same for all images)."""
    return 1000 * level + k if shared else 100_000 * level + 100 * image + k


def _mean(values: list[float]) -> float:
    """Mean of the non-NaN values (NaN if there are none, e.g. the index accuracy at 0 % loss)."""
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="VQGAN-cluster weights (default: shipped)")
    parser.add_argument("--recovery", default=None, help="recovery weights (default: shipped)")
    parser.add_argument("--levels", type=int, nargs="+", default=list(range(3, 10)))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--packet-rows", type=int, default=2)
    parser.add_argument("--lattice", type=int, default=resilient.LATTICE, help="packet interleave (1: rows, as older files)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared-seeds", action="store_true", help="one damage seed per level and loss for all images (older tables)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "recovery_kodak"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rec_path = Path(args.recovery) if args.recovery else catalog.CHECKPOINTS / registry.get_spec("vqgan").recovery
    net, ladder_hash = load_recovery(rec_path)
    if ladder_hash != registry.load("vqgan", 1, args.weights).weights_hash:
        sys.exit(f"{rec_path} was trained on another ladder than {args.weights or 'the shipped vqgan'}")
    images = kodak_images(args.limit)
    rows, timings = [], []
    for level in args.levels:
        model = registry.load("vqgan", level, args.weights).model
        lv = model.level(level)
        for i, (name, img) in enumerate(images.items()):
            data = codec.encode(img, model="vqgan", quality=level, weights=args.weights, packet_rows=args.packet_rows,
                                packet_lattice=args.lattice)
            plain = codec.encode(img, model="vqgan", quality=level, weights=args.weights)
            bpp = {"bpp": 8 * len(data) / img.shape[0] / img.shape[1], "plain_bpp": 8 * len(plain) / img.shape[0] / img.shape[1]}
            truth, _ = received(data, model, level)
            with torch.inference_mode():
                clean_img = decoded(model, lv.latent(truth[None]), img.shape)
                clean = quality(img, clean_img)
                for k, loss in enumerate(LOSSES):
                    indices, known = received(api.damage(data, loss, seed=damage_seed(level, i, k, args.shared_seeds)), model, level)
                    lost = ~known
                    t0 = time.perf_counter()
                    got, points = net.recover(indices, known, level) if lost.any() else (indices, None)
                    if lost.any() and img.shape[:2] == (512, 768):
                        timings.append(time.perf_counter() - t0)
                    naive = resilient.naive_fill(lv, indices, known)
                    outs = [decoded(model, latent, img.shape) for latent in
                            (lv.latent(got[None]) if points is None else net.decoder_input(points), lv.latent(naive[None]), interpolated(lv, indices, known))]
                    rec, nai, interp = (quality(img, out) for out in outs)
                    vs_clean = [quality(clean_img, out) if lost.any() else (float("nan"), float("nan")) for out in outs]
                    acc = float((got[lost] == truth[lost]).float().mean()) if lost.any() else float("nan")
                    naive_acc = float((naive[lost] == truth[lost]).float().mean()) if lost.any() else float("nan")
                    rows.append({"level": level, "image": name, "loss": loss, **bpp, "lost_tokens": float(lost.float().mean()),
                                 "clean_psnr": clean[0], "clean_ms_ssim": clean[1], "psnr": rec[0], "ms_ssim": rec[1],
                                 "naive_psnr": nai[0], "naive_ms_ssim": nai[1], "interp_psnr": interp[0], "interp_ms_ssim": interp[1],
                                 "index_acc": acc, "naive_index_acc": naive_acc,
                                 **{f"{k}_psnr_vs_clean": v[0] for k, v in zip(("rec", "naive", "interp"), vs_clean, strict=True)},
                                 **{f"{k}_ms_ssim_vs_clean": v[1] for k, v in zip(("rec", "naive", "interp"), vs_clean, strict=True)}})
            print(f"level {level} {name}: " + ", ".join(f"{r['loss']:.2f}: {r['ms_ssim']:.3f}/{r['naive_ms_ssim']:.3f}/{r['interp_ms_ssim']:.3f}"
                                                      for r in rows[-len(LOSSES):]), flush=True)
    summary = []
    for level in args.levels:
        for loss in LOSSES:
            rs = [r for r in rows if r["level"] == level and r["loss"] == loss]
            summary.append({"level": level, "loss": loss, **{k: _mean([r[k] for r in rs]) for k in rs[0] if k not in ("level", "image", "loss")}})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "recovery_seconds_768x512": float(np.median(timings)) if timings else None,
                                                   "threads": args.threads, "images": len(images), "lattice": args.lattice,
                                                   "shared_seeds": args.shared_seeds}, indent=2))
    layout = "dispersed layout (2 x 2 interleave)" if args.lattice == 2 else "row layout" if args.lattice == 1 else f"{args.lattice} x {args.lattice} interleave"
    seeds = "one damage seed per level and loss rate for all images" if args.shared_seeds else "a damage seed per level, image and loss rate"
    lines = [f"Kodak, {len(images)} images ({', '.join(images)}), packets of {args.packet_rows} token rows' worth, {layout}, "
             f"recovery weights {rec_path.name}, {seeds}; MS-SSIM and PSNR (dB) against the original, means over images.", "",
             "| level | packets lost | tokens lost | clean MS-SSIM | recovered | naive | interp. | rec/clean "
             "| clean PSNR | recovered | naive | interp. | index acc (rec / naive) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['level']} | {100 * s['loss']:.0f}% | {100 * s['lost_tokens']:.1f}% | {s['clean_ms_ssim']:.4f} | {s['ms_ssim']:.4f} | "
                     f"{s['naive_ms_ssim']:.4f} | {s['interp_ms_ssim']:.4f} | {s['ms_ssim'] / s['clean_ms_ssim']:.3f} | {s['clean_psnr']:.2f} | "
                     f"{s['psnr']:.2f} | {s['naive_psnr']:.2f} | {s['interp_psnr']:.2f} | {s['index_acc']:.3f} / {s['naive_index_acc']:.3f} |")
    lines += ["", "How closely each restoration reproduces the clean decode (what the sender's indices would have given), "
              "PSNR (dB) and MS-SSIM of recovered / naive / interpolated against the clean decode, at 20 % of the packets lost: "
              + ", ".join(f"level {s['level']} {s['rec_psnr_vs_clean']:.2f} / {s['naive_psnr_vs_clean']:.2f} / {s['interp_psnr_vs_clean']:.2f} dB, "
                          f"{s['rec_ms_ssim_vs_clean']:.4f} / {s['naive_ms_ssim_vs_clean']:.4f} / {s['interp_ms_ssim_vs_clean']:.4f}"
                          for s in summary if s["loss"] == 0.2) + "."]
    lines += ["", "Cost of resilience (bpp of the resilient file / of the plain file): "
              + ", ".join(f"level {s['level']} {s['bpp']:.4f} / {s['plain_bpp']:.4f}" for s in summary if s["loss"] == 0) + "."]
    if timings:
        lines += ["", f"Recovery time of one 768x512 image ({args.threads} threads, median): {np.median(timings):.3f} s."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for level in args.levels:
        ss = [s for s in summary if s["level"] == level]
        line, = ax.plot([100 * s["loss"] for s in ss], [s["ms_ssim"] for s in ss], "o-", label=f"level {level} recovered")
        ax.plot([100 * s["loss"] for s in ss], [s["naive_ms_ssim"] for s in ss], "x:", color=line.get_color())
        ax.plot([100 * s["loss"] for s in ss], [s["interp_ms_ssim"] for s in ss], "--", lw=0.8, color=line.get_color())
    ax.set_xlabel("packets lost (%)")
    ax.set_ylabel("MS-SSIM (solid: recovered, dashed: interpolated, dotted: naive)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
