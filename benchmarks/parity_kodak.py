"""Parity packets against packet loss on Kodak: MS-SSIM per bit of resilient VQGAN-cluster files.

Every image is encoded at each level as a resilient file (packets of 2 token rows' worth, dispersed
layout) without parity and with Reed-Solomon parity packets at several fractions of the packet count
(``codec.encode(..., packet_parity=F)``), damaged with ``codec.api.damage`` on two channels:
``count`` loses exactly that fraction of all packets (the seeds of ``recovery_kodak.py``, one per
level, image and loss rate, so the files without parity lose the same packets there) and ``iid`` loses each
packet on its own with that probability (``independent=True``; one draw per image, its seed
different for every image), and decoded as
``codec decode`` does: lost packets are rebuilt from the parity where enough packets arrived, and the
indices still missing are restored by the shipped recovery transformer.  For each setting the table
gives bpp, MS-SSIM against the original, its fraction of the clean decode's, and the share of images
restored exactly; the plot shows MS-SSIM against bpp (one curve per parity fraction, levels along it)
per loss rate, beside the clean (undamaged, no parity) curve: which setting gives the most quality for
the bits at a given loss rate.

Usage (from the repository root)::

    python benchmarks/parity_kodak.py                     # levels 3-9, 24 images
    python benchmarks/parity_kodak.py --limit 4 --levels 3 9
    python benchmarks/parity_kodak.py --channels iid --reuse benchmarks/results/parity_kodak.json  # re-run one channel
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import REPO_ROOT, RESULTS_DIR, kodak_images  # noqa: E402
from recovery_kodak import damage_seed, decoded, received, shipped_recovery  # noqa: E402
from vqgan_kodak import quality  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))
import codec  # noqa: E402
from codec import api, registry  # noqa: E402

PARITIES = (0.0, 0.125, 0.25, 0.5)
LOSSES = (0.05, 0.1, 0.2, 0.3)
LOSS_SEED_INDEX = {0.05: 1, 0.1: 2, 0.2: 3, 0.3: 4}
"""Position of each loss rate in ``recovery_kodak.LOSSES``: the same damage seeds."""
CHANNELS = {"count": False, "iid": True}
"""Channel name: ``independent`` of :func:`codec.api.damage`."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=list(range(3, 10)))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--packet-rows", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels", nargs="+", choices=list(CHANNELS), default=list(CHANNELS))
    parser.add_argument("--reuse", default=None, help="earlier result JSON whose other channels' rows go into the report as they are")
    parser.add_argument("--out", default=str(RESULTS_DIR / "parity_kodak"))
    args = parser.parse_args()
    channels = {name: CHANNELS[name] for name in CHANNELS if name in args.channels}
    torch.set_num_threads(args.threads)
    net = shipped_recovery()
    images = kodak_images(args.limit)
    rows = []
    for level in args.levels:
        model = registry.load("vqgan", level).model
        lv = model.level(level)
        for number, (name, img) in enumerate(images.items()):
            pixels = img.shape[0] * img.shape[1]
            plain = codec.encode(img, model="vqgan", quality=level)
            with torch.inference_mode():
                truth, _ = received(codec.encode(img, model="vqgan", quality=level, packet_rows=args.packet_rows), model, level)
                clean = quality(img, decoded(model, lv.latent(truth[None]), img.shape))[1]
                for fraction in PARITIES:
                    data = codec.encode(img, model="vqgan", quality=level, packet_rows=args.packet_rows, packet_parity=fraction or None)
                    for (channel, independent), loss in itertools.product(channels.items(), LOSSES):
                        seed = (1000 * level + LOSS_SEED_INDEX[loss] + 10 * (number + 1) if independent
                                else damage_seed(level, number, LOSS_SEED_INDEX[loss]))
                        damaged = api.damage(data, loss, seed=seed, independent=independent)
                        indices, known = received(damaged, model, level)
                        if known.all():
                            ms_ssim = clean
                        else:
                            _, points = net.recover(indices, known, level)
                            ms_ssim = quality(img, decoded(model, net.decoder_input(points), img.shape))[1]
                        rows.append({"level": level, "image": name, "parity": fraction, "channel": channel, "loss": loss, "bpp": 8 * len(data) / pixels,
                                     "plain_bpp": 8 * len(plain) / pixels, "clean_ms_ssim": clean, "ms_ssim": ms_ssim,
                                     "exact": float(bool(known.all())), "lost_tokens": float((~known).float().mean())})
            print(f"level {level} {name}: " + ", ".join(f"{r['channel']} {r['parity']}/{r['loss']}: {r['ms_ssim']:.3f}"
                                                      for r in rows[-len(PARITIES) * len(LOSSES) * len(channels):]), flush=True)
    keys = ("bpp", "plain_bpp", "clean_ms_ssim", "ms_ssim", "exact", "lost_tokens")
    summary = [s for s in json.loads(Path(args.reuse).read_text())["summary"] if s["channel"] not in channels] if args.reuse else []
    for level, fraction, channel, loss in itertools.product(args.levels, PARITIES, channels, LOSSES):
        rs = [r for r in rows if (r["level"], r["parity"], r["channel"], r["loss"]) == (level, fraction, channel, loss)]
        summary.append({"level": level, "parity": fraction, "channel": channel, "loss": loss, **{k: float(np.mean([r[k] for r in rs])) for k in keys}})
    reported = [name for name in CHANNELS if any(s["channel"] == name for s in summary)]
    clean = [s for s in summary if s["parity"] == 0 and s["channel"] == reported[0] and s["loss"] == LOSSES[0]]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "images": len(images), "packet_rows": args.packet_rows}, indent=2))
    lines = [f"Kodak, {len(images)} images, resilient VQGAN-cluster files (packets of {args.packet_rows} token rows' worth, dispersed "
             "layout) with Reed-Solomon parity packets at a fraction of the packet count (0: none); lost packets rebuilt from the "
             "parity where possible, the rest restored by the shipped recovery transformer. MS-SSIM against the original (means over "
             "images), its ratio to the clean decode's (ratio of means), the share of images restored exactly, and the share of "
             "tokens still missing after the rebuild. Channel `count`: exactly that fraction of all packets lost; `iid`: each "
             "packet lost with that probability, independently (one draw per image, a different seed for each image)."]
    for channel in reported:
        lines += ["", f"Channel `{channel}`:", "",
                  "| level | parity | bpp | " + " | ".join(f"{100 * loss:.0f}% lost: MS-SSIM (of clean, exact, tokens missing)" for loss in LOSSES) + " |",
                  "|---|---|---|" + "---|" * len(LOSSES)]
        for level, fraction in itertools.product(args.levels, PARITIES):
            ss = [s for s in summary if (s["level"], s["parity"], s["channel"]) == (level, fraction, channel)]
            lines.append(f"| {level} | {fraction:g} | {ss[0]['bpp']:.4f} | " + " | ".join(
                f"{s['ms_ssim']:.4f} ({s['ms_ssim'] / s['clean_ms_ssim']:.3f}, {100 * s['exact']:.0f}%, {100 * s['lost_tokens']:.1f}%)" for s in ss) + " |")
    lines += ["", "Clean decode (no loss, plain file): " + ", ".join(
        f"level {s['level']} {s['plain_bpp']:.4f} bpp / {s['clean_ms_ssim']:.4f}" for s in clean) + "."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(len(reported), len(LOSSES), figsize=(4 * len(LOSSES), 4 * len(reported)), sharey=True, squeeze=False)
    for row, channel in zip(axes, reported, strict=True):
        for ax, loss in zip(row, LOSSES, strict=True):
            ax.plot([s["plain_bpp"] for s in clean], [s["clean_ms_ssim"] for s in clean], "k--", lw=1, label="clean (no loss, plain file)")
            for fraction in PARITIES:
                ss = [s for s in summary if (s["parity"], s["channel"], s["loss"]) == (fraction, channel, loss)]
                ax.plot([s["bpp"] for s in ss], [s["ms_ssim"] for s in ss], "o-", ms=3, label=f"parity {fraction:g}" if fraction else "no parity")
            ax.set_title(f"{channel}: {100 * loss:.0f}% of packets lost", fontsize=9)
            ax.set_xlabel("bpp")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("MS-SSIM (Kodak mean)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
