"""Encode / decode speed and peak memory on this CPU: our McQuic vs CompressAI hyperprior models.

Each model runs in a fresh subprocess of this script, so its peak RSS (``ru_maxrss``) is its own:
McQuic through ``codec.encode`` / ``codec.decode`` at every shipped quality, and, side by side,
CompressAI's mean-scale hyperprior (Minnen 2018, N=96 M=128) and its autoregressive-context model
(JointAutoregressiveHierarchicalPriors, N=M=192), both randomly initialized (speed does not depend
on training).  Fast models get one warm-up and ``--repeats`` timed runs (median reported); the
autoregressive model, whose serial context loop takes tens of seconds, runs once without warm-up.

Usage (from the repository root)::

    python benchmarks/speed.py                      # kodim01, 2 threads
    python benchmarks/speed.py --threads 1 --codecs hyperprior
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from _common import KODAK_DIR, RESULTS_DIR, compressai_compress, compressai_decompress, load_rgb, mcquic_targets

CODEC_NAMES = ("mcquic", "hyperprior", "joint")
COMPRESSAI_MODELS = {
    "hyperprior": ("MeanScaleHyperprior", (96, 128), "mean-scale hyperprior (CompressAI, N=96 M=128)"),
    "joint": ("JointAutoregressiveHierarchicalPriors", (192, 192), "autoregressive context + hyperprior (CompressAI, N=M=192)"),
}
SLOW = {"joint"}  # run once, no warm-up


@dataclass(frozen=True)
class Job:
    """One model to time in its own subprocess."""

    codec: str
    label: str
    setting: str
    encode_kwargs: dict
    decode_kwargs: dict


# ---------------------------------------------------------------------------------------- worker


def max_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall-clock seconds of one call, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def coder_for(job: Job, height: int, width: int) -> tuple[Callable[[np.ndarray], object], Callable[[object], np.ndarray], Callable[[object], int]]:
    """Load the model of ``job``; return (encode, decode, size in bytes of an encoding) for a ``height`` x ``width`` image."""
    if job.codec == "mcquic":
        import codec

        kw = job.encode_kwargs
        codec.load_model(kw.get("model"), kw.get("quality"), kw.get("weights"))  # cached: timed calls do not load
        return (lambda pixels: codec.encode(pixels, **kw)), (lambda data: codec.decode(data, **job.decode_kwargs)), len
    import compressai.models

    class_name, args, _ = COMPRESSAI_MODELS[job.codec]
    torch.manual_seed(0)
    model = getattr(compressai.models, class_name)(*args).eval()
    model.update(force=True)
    return (
        lambda pixels: compressai_compress(model, pixels),
        lambda encoded: compressai_decompress(model, encoded[0], height, width),
        lambda encoded: encoded[1],
    )


def run_worker(job: Job, image: Path, repeats: int) -> dict:
    """Time ``job`` on ``image`` in this process; the measurements as a dict."""
    if job.codec == "mcquic":
        import codec  # noqa: F401  (imported before the baseline RSS is taken, like compressai)
    pixels = load_rgb(image)
    rss_before = max_rss_mb()
    setup_s, (encode, decode, size_of) = timed(lambda: coder_for(job, *pixels.shape[:2]))
    runs = 1 if job.codec in SLOW else repeats
    if job.codec not in SLOW:
        decode(encode(pixels))  # warm-up: allocator, lazy initialization
    enc_times, dec_times = [], []
    for _ in range(runs):
        t_enc, encoded = timed(lambda: encode(pixels))
        t_dec, decoded = timed(lambda encoded=encoded: decode(encoded))
        enc_times.append(t_enc)
        dec_times.append(t_dec)
    if decoded.shape != pixels.shape:
        raise ValueError(f"decoded shape {decoded.shape} != {pixels.shape}")
    megapixels = pixels.shape[0] * pixels.shape[1] / 1e6
    enc_s, dec_s = statistics.median(enc_times), statistics.median(dec_times)
    return {
        **asdict(job),
        "runs": runs,
        "setup_s": setup_s,
        "encode_s": enc_s,
        "decode_s": dec_s,
        "encode_mpx_s": megapixels / enc_s,
        "decode_mpx_s": megapixels / dec_s,
        "encode_times_s": enc_times,
        "decode_times_s": dec_times,
        "bytes": size_of(encoded),
        "bpp": 8 * size_of(encoded) / (megapixels * 1e6),
        "rss_after_imports_mb": rss_before,
        "peak_rss_mb": max_rss_mb(),
    }


# ---------------------------------------------------------------------------------------- parent


def jobs_for(names: list[str], weights: list[Path]) -> list[Job]:
    """The jobs to run, in ``CODEC_NAMES`` order; McQuic is skipped with a warning when unavailable."""
    jobs = []
    for name in (n for n in CODEC_NAMES if n in names):
        if name in COMPRESSAI_MODELS:
            jobs.append(Job(name, COMPRESSAI_MODELS[name][2], "random init", {}, {}))
            continue
        try:
            targets = mcquic_targets(weights)
        except Exception as exc:  # the codec API is unavailable: time the others
            print(f"warning: skipping mcquic: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if not targets:
            print("warning: skipping mcquic: no shipped checkpoints (pass --weights)", file=sys.stderr)
        jobs.extend(Job(name, "McQuic (ours)", t.label, _jsonable(t.encode_kwargs), _jsonable(t.decode_kwargs)) for t in targets)
    return jobs


def _jsonable(kwargs: dict) -> dict:
    """Keyword arguments with paths as strings, for passing to a worker as JSON."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}


def run_job(job: Job, args: argparse.Namespace) -> dict | None:
    """Run ``job`` in a fresh subprocess; its result, or None (with a warning) when it failed."""
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(job)),
        "--image", str(args.image), "--threads", str(args.threads), "--repeats", str(args.repeats),
    ]
    env = {**os.environ, "CODEC_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"warning: {job.codec} {job.setting} failed: {tail}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """CPU, core count, load and library versions, to read the numbers against."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__, "load_avg_1m_start": os.getloadavg()[0]}


def markdown(results: list[dict], meta: dict) -> str:
    """The results as a markdown table with a header describing the run."""
    lines = [
        f"Speed on {meta['image']} ({meta['width']}x{meta['height']}), {meta['threads']} torch thread(s), "
        f"{meta['machine']['cpu']} ({meta['machine']['cores']} cores), load average {meta['machine']['load_avg_1m_start']:.1f} -> {meta['load_avg_1m_end']:.1f}.",
        "Median of the timed runs; MP/s = megapixels per second; peak RSS = the subprocess's max resident memory "
        "(the part over imports is model + activations).",
        "",
        "| codec | setting | encode MP/s | decode MP/s | encode ms | decode ms | runs | setup s | peak RSS MiB | over imports MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['setting']} | {r['encode_mpx_s']:.3f} | {r['decode_mpx_s']:.3f} | {1e3 * r['encode_s']:.0f} | "
            f"{1e3 * r['decode_s']:.0f} | {r['runs']} | {r['setup_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['rss_after_imports_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--image", type=Path, default=KODAK_DIR / "kodim01.png", help="image to code")
    p.add_argument("--threads", type=int, default=2, help="torch (and codec) threads")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the fast models (median reported)")
    p.add_argument("--codecs", default=",".join(CODEC_NAMES), help="comma-separated subset of " + ",".join(CODEC_NAMES))
    p.add_argument("--weights", type=Path, action="append", default=[], help="McQuic weights files to time instead of the shipped qualities (repeatable)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON of one Job, run in this process
    args = p.parse_args(argv)
    args.codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    unknown = sorted(set(args.codecs) - set(CODEC_NAMES))
    if unknown:
        p.error(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(CODEC_NAMES)}")
    if args.repeats < 1 or args.threads < 1:
        p.error("--repeats and --threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Time every job in its own subprocess, or (``--worker``) be that subprocess."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(run_worker(Job(**json.loads(args.worker)), args.image, args.repeats)))
        return
    if not args.image.is_file():
        sys.exit(f"no such image: {args.image}")
    height, width = load_rgb(args.image).shape[:2]
    meta = {"image": args.image.name, "path": str(args.image), "width": width, "height": height, "threads": args.threads, "repeats": args.repeats, "machine": machine()}
    results = []
    for job in jobs_for(args.codecs, args.weights):
        print(f"timing {job.codec} {job.setting} ...", file=sys.stderr, flush=True)
        result = run_job(job, args)
        if result is not None:
            results.append(result)
    if not results:
        sys.exit("no codec produced results")
    meta["load_avg_1m_end"] = os.getloadavg()[0]
    table = markdown(results, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.md").write_text(table)
    (args.out / "speed.json").write_text(json.dumps({**meta, "results": results}, indent=1))
    print(f"wrote {args.out}/speed.{{md,json}}\n")
    print(table)


if __name__ == "__main__":
    main()
