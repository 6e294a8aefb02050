"""Throughput of ``codec.encode_many`` (``codec encode-many``) with 1 vs 2 worker processes on shared climate files.

For each worker count a fresh ``distributed.LocalCluster`` is started (processes, one dask thread each) and
warmed up (every worker imports the codec and loads the shipped VAEformer, as its first file would); then
the files are encoded into an empty folder.  Reported per worker count: cluster start + warm-up seconds,
encode seconds, input bytes per second of the encode (warm) and of start + encode (cold), and the ratio of
each to one worker.  The outputs of every worker count are checked to be byte-identical to those of the first.
Torch threads per encode: ``--threads`` (via ``CODEC_THREADS``; default 1, so 2 workers fit 2 cores).

Usage (from the repository root)::

    python benchmarks/encode_many.py                       # 5 netCDF files, about 12 MB, workers 1 and 2
    python benchmarks/encode_many.py --workers 1,2,4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIMATE_DIR = REPO_ROOT.parent / "shared" / "data" / "climate"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_FILES = ("etopo20.cdf", "esku_heat_budget.cdf", "coads_climatology.cdf", "highres/data.nc", "highres/era5_2mt.nc")


def cpu_name() -> str:
    """The CPU model (Linux ``/proc/cpuinfo``), else what ``platform`` says."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor() or platform.machine())


def warm() -> None:
    """Load the shipped climate model in this worker (runs on every worker before the timed encode)."""
    from codec import registry

    registry.load(registry.default_model("climate"))


def run_once(files: list[Path], workers: int) -> tuple[dict, dict[str, bytes]]:
    """Time one worker count: start + warm-up, then encode ``files``; the row and the outputs by name."""
    from codec import batch

    start = time.perf_counter()
    with batch.local_cluster(workers) as client, tempfile.TemporaryDirectory() as out:
        client.run(warm)
        ready = time.perf_counter()
        result = batch.encode_many(files, out, client=client)
        encode_s = time.perf_counter() - ready
        if not result.ok:
            raise SystemExit(f"encode failed: {result.failed}")
        outputs = {p.name: p.read_bytes() for p in result.encoded}
    startup_s = ready - start
    row = {
        "workers": workers,
        "files": len(result.encoded),
        "bytes_in": result.bytes_in,
        "bytes_out": result.bytes_out,
        "startup_s": round(startup_s, 2),
        "encode_s": round(encode_s, 2),
        "warm_bytes_per_s": round(result.bytes_in / encode_s),
        "cold_bytes_per_s": round(result.bytes_in / (startup_s + encode_s)),
    }
    return row, outputs


def add_ratios(rows: list[dict]) -> None:
    """Each row's throughput over the first row's (one worker)."""
    for row in rows:
        for kind in ("warm", "cold"):
            row[f"{kind}_ratio"] = round(row[f"{kind}_bytes_per_s"] / rows[0][f"{kind}_bytes_per_s"], 2)


def markdown(rows: list[dict], meta: dict) -> str:
    """The results table with its setting."""
    lines = [
        f"# encode-many throughput: {meta['bytes_in'] / 1e6:.1f} MB of netCDF ({len(meta['files'])} files), shipped VAEformer, lossy default quality",
        "",
        f"{meta['machine']}; {meta['threads']} torch thread(s) per encode (CODEC_THREADS); load average {meta['load_before']} -> {meta['load_after']}.",
        f"Files: {', '.join(meta['files'])}.",
        "Warm = encode only (cluster started, every worker's model loaded); cold = cluster start + model load + encode.",
        "Outputs identical (byte for byte) for every worker count: " + ("yes" if meta["identical"] else "NO") + ".",
        "",
        "| workers | start + warm-up s | encode s | warm MB/s | warm vs 1 worker | cold MB/s | cold vs 1 worker | ratio (in/out) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['startup_s']} | {r['encode_s']} | {r['warm_bytes_per_s'] / 1e6:.3f} | {r['warm_ratio']}x "
            f"| {r['cold_bytes_per_s'] / 1e6:.3f} | {r['cold_ratio']}x | {r['bytes_in'] / r['bytes_out']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every worker count and write ``encode_many.md`` and ``encode_many.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", default=",".join(DEFAULT_FILES), help=f"comma list of files under {CLIMATE_DIR}")
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts; the first is the reference")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per encode (CODEC_THREADS)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    os.environ["CODEC_THREADS"] = str(args.threads)  # inherited by the spawned worker processes
    files = [CLIMATE_DIR / name for name in args.files.split(",")]
    load_before = round(os.getloadavg()[0], 1)
    rows, reference, identical = [], None, True
    for workers in (int(w) for w in args.workers.split(",")):
        row, outputs = run_once(files, workers)
        print(json.dumps(row), flush=True)
        rows.append(row)
        reference = reference or outputs
        identical &= outputs == reference
    add_ratios(rows)
    meta = {
        "files": [str(f.relative_to(CLIMATE_DIR)) for f in files],
        "bytes_in": rows[0]["bytes_in"],
        "threads": args.threads,
        "machine": f"{cpu_name()} ({os.cpu_count()} CPUs)",
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 1),
        "identical": identical,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encode_many.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (args.out / "encode_many.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
