"""Image datasets benchmark: ``codec pack`` of Kodak images, and ``codec.ImageArchive`` in PyTorch.

The first 8 Kodak images are packed with the shipped McQuic at its default quality; then: latency of
one random item cold (a fresh process: imports, opening the pack, model load and the decode) and warm
(median of later random items), the cost of locating and reading one entry alone, and ``DataLoader``
throughput (images/s, ``batch_size=None``: Kodak mixes portrait and landscape) with 0 and 2 workers,
first epoch (worker start-up included) and second (persistent workers).

Usage (from the repository root)::

    python benchmarks/datasets.py          # writes benchmarks/results/datasets_images.{md,json}
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "kodak"
RESULTS = Path(__file__).resolve().parent / "results"
IMAGES = 8
COLD = """
import time
t0 = time.perf_counter()
import random, sys
import codec
ds = codec.ImageArchive(sys.argv[1])
t1 = time.perf_counter()
ds[random.Random(0).randrange(len(ds))]
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def _cold(path: Path) -> tuple[float, float]:
    """(imports and opening, first item incl. model load) in seconds, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", COLD, str(path)], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def _loader_rates(archive: object, workers: int) -> list[float]:
    """Images/s of a first and a second epoch through a DataLoader with ``workers`` workers."""
    import torch

    loader = torch.utils.data.DataLoader(archive, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    rates = []
    for _ in range(2):
        t = time.perf_counter()
        n = sum(1 for _ in loader)
        rates.append(round(n / (time.perf_counter() - t), 2))
    return rates


def _median_ms(fn: object, args: list) -> float:
    """Median wall time of ``fn(a)`` over ``args``, in milliseconds."""
    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 3)


def image_archive_bench(work: Path) -> dict:
    """Pack the first :data:`IMAGES` Kodak images into ``work`` and time ImageArchive on the pack."""
    import random

    import codec
    from codec import api
    from codec.image import pack, packer

    load_before = round(os.getloadavg()[0], 2)
    source = work / "kodak"
    source.mkdir()
    for p in sorted(KODAK.glob("*.png"))[:IMAGES]:
        os.symlink(p, source / p.name)
    path = work / "kodak.cpk"
    codec.load_model()  # imports and model load are timed by the cold rows, not in the packing rate
    t = time.perf_counter()
    packer.pack(source, path)
    pack_s = time.perf_counter() - t
    info = pack.describe(path)
    cold = [_cold(path) for _ in range(3)]
    archive = codec.ImageArchive(path)
    archive[0]
    picks = [random.Random(1).randrange(len(archive)) for _ in range(8)]
    warm_ms = _median_ms(archive.__getitem__, picks)
    entries = pack.open_index(path).entries
    with open(path, "rb") as f:
        read_ms = _median_ms(lambda i: pack.read_entry(f, entries[i], str(path)), picks)
        stored = {i: pack.read_entry(f, entries[i], str(path)) for i in set(picks)}
    decode_ms = _median_ms(lambda i: api.decode(stored[i]), picks)
    return {
        "images": info["entries"],
        "names": info["names"],
        "model": info["models"],
        "pack_bytes": info["bytes"],
        "image_bytes": info["image_bytes"],
        "bpp": round(info["bpp"], 4),
        "mean_bpp": round(info["mean_bpp"], 4),
        "pack_images_s": round(info["entries"] / pack_s, 2),
        "cold_open_s": round(min(c[0] for c in cold), 2),
        "cold_item_s": round(min(c[1] for c in cold), 2),
        "warm_item_ms": round(warm_ms, 1),
        "entry_read_ms": read_ms,
        "plain_decode_ms": round(decode_ms, 1),
        "loader_images_s": {workers: _loader_rates(archive, workers) for workers in (0, 2)},
        "cpu_count": os.cpu_count(),
        "load_before": load_before,
    }


def _markdown(r: dict) -> str:
    serial, parallel = r["loader_images_s"][0], r["loader_images_s"][2]
    model = r["model"][0]
    return "\n".join(
        [
            "# Image datasets: codec pack and ImageArchive",
            "",
            f"Command: `python benchmarks/datasets.py` ({r['cpu_count']} CPU cores; load average {r['load_before']} before the run).",
            f"The first {r['images']} Kodak images (768x512 and 512x768) packed with {model['name']} quality {model['quality']} (shipped weights).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| pack size | {r['pack_bytes']} bytes ({r['image_bytes']} of them codec files; {r['bpp']} bpp overall, mean {r['mean_bpp']} bpp per image) |",
            f"| packing (model loaded) | {r['pack_images_s']} images/s |",
            f"| cold: `import codec`, `ImageArchive(path)` (imports torch, reads the index) | {r['cold_open_s']} s |",
            f"| cold: first random item (loads the model, decodes) | {r['cold_item_s']} s |",
            f"| warm random item | {r['warm_item_ms']} ms (median of 8) |",
            f"| of which locating and reading the entry (seek + read + CRC) | {r['entry_read_ms']} ms |",
            f"| `codec.decode` of the same bytes, for reference | {r['plain_decode_ms']} ms (median of 8) |",
            f"| DataLoader, 0 workers, epoch 1 / 2 | {serial[0]} / {serial[1]} images/s |",
            f"| DataLoader, 2 workers, epoch 1 / 2 | {parallel[0]} / {parallel[1]} images/s |",
            "",
            "Cold timings are the best of 3 fresh processes. The main process decodes on the codec's 2 torch threads;",
            "forked DataLoader workers decode on 1 thread each (see `codec.runtime.codec_threads`).",
            "",
        ]
    )


def main() -> None:
    """Run the image benchmark and write the results."""
    with tempfile.TemporaryDirectory() as tmp:
        result = image_archive_bench(Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "datasets_images.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "datasets_images.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
