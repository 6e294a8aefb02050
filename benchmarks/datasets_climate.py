"""Climate datasets benchmark: Zarr stores with the ``"codec"`` compressor, and ``codec.ClimateArchive`` in PyTorch.

Zarr: each file's variable is written to a Zarr 3 store (one chunk per time step) with
``numcodecs.get_codec({"id": "codec", "max_abs_error": E})`` at bounds E of 0.01, 0.05 and 0.2 x the
variable's standard deviation, beside numcodecs' bit-rounding (the fewest kept mantissa bits whose
maximum error stays within E) + Zstandard, and lossless Blosc/zstd; for each: stored bytes, ratio to
float32, max error, RMSE, write and read throughput (MB/s of float32 data, through xarray).

ClimateArchive: the first file encoded at quality 3 to ``.cra``; latency of one random item cold (a
fresh process: imports, model load and the decode) and warm (median of later random items), and
``DataLoader`` throughput with 0 and 2 workers.

Usage (from the repository root)::

    python benchmarks/datasets_climate.py          # writes benchmarks/results/datasets_climate.{md,json}
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numcodecs
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.codecs.numcodecs import BitRound

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "climate" / "highres"
RESULTS = Path(__file__).resolve().parent / "results"
FILES = {  # file -> (variable, how to open it)
    "SMALL_total_column_co2.nc": ("tcco2", {}),
    "gdas.t12z.pgrb2.0p25.f000.12": ("VRATE", {"engine": "cfgrib", "backend_kwargs": {"indexpath": ""}}),
}
BOUNDS = (0.01, 0.05, 0.2)


def _load(name: str) -> xr.Dataset:
    var, kwargs = FILES[name]
    ds = xr.open_dataset(DATA / name, **kwargs)[[var]].load()
    da = ds[var].astype("float32")
    if "time" not in da.dims:
        da = da.expand_dims("time")
    keep = [d for d in da.dims if d in ("time", "latitude", "longitude")]
    da = da.transpose(*keep)
    return xr.Dataset({var: (da.dims, da.values)}, coords={d: da[d].values for d in da.dims if d in da.coords})


def _stored_bytes(store: Path, var: str) -> int:
    return sum(p.stat().st_size for p in (store / var).rglob("*") if p.is_file() and p.name != "zarr.json")


def _zarr_row(ds: xr.Dataset, var: str, label: str, encoding: dict, work: Path) -> dict:
    store = work / f"{label}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    x = ds[var].values
    t = time.perf_counter()
    ds.chunk({"time": 1}).to_zarr(store, zarr_format=3, consolidated=False, encoding={var: encoding})
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    y = xr.open_zarr(store, consolidated=False)[var].values
    read_s = time.perf_counter() - t
    valid = ~np.isnan(x)
    err = (y.astype(np.float64) - x)[valid]
    mb = x.size * 4 / 1e6
    nbytes = _stored_bytes(store, var)
    return {
        "codec": label,
        "bytes": nbytes,
        "ratio": round(x.size * 4 / nbytes, 2),
        "max_error": float(np.abs(err).max()),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "write_mb_s": round(mb / write_s, 2),
        "read_mb_s": round(mb / read_s, 2),
    }


def _bitround_keepbits(x: np.ndarray, bound: float) -> int:
    """The fewest mantissa bits whose bit-rounding keeps every valid point within ``bound``."""
    valid = ~np.isnan(x)
    for keep in range(1, 24):
        y = numcodecs.BitRound(keepbits=keep).decode(numcodecs.BitRound(keepbits=keep).encode(x.copy()))
        if np.abs(y.reshape(x.shape)[valid].astype(np.float64) - x[valid]).max() <= bound:
            return keep
    return 23


def zarr_bench(work: Path) -> list[dict]:
    """Rows of the Zarr comparison for every file and bound."""
    rows = []
    for name, (var, _) in FILES.items():
        ds = _load(name)
        x = ds[var].values
        sd = float(np.nanstd(x))
        shape = "x".join(map(str, x.shape))
        lossless = _zarr_row(ds, var, "blosc-zstd", {"compressors": [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")]}, work)
        rows.append({"file": name, "variable": var, "shape": shape, "bound_sd": 0.0, "bound": 0.0, **lossless})
        for rel in BOUNDS:
            bound = rel * sd
            ours = _zarr_row(ds, var, "codec", {"compressors": [numcodecs.get_codec({"id": "codec", "max_abs_error": bound})]}, work)
            keep = _bitround_keepbits(x, bound)
            rounded = _zarr_row(ds, var, f"bitround{keep}+zstd", {"filters": [BitRound(keepbits=keep)], "compressors": [ZstdCodec(level=3)]}, work)
            for row in (ours, rounded):
                rows.append({"file": name, "variable": var, "shape": shape, "bound_sd": rel, "bound": bound, **row})
            print(f"{name} {rel} sd: codec {ours['ratio']}x vs {rounded['codec']} {rounded['ratio']}x", flush=True)
    return rows


COLD = """
import time, random, sys
t = time.perf_counter()
import codec
ds = codec.ClimateArchive(sys.argv[1])
x = ds[random.Random(0).randrange(len(ds))]
print(time.perf_counter() - t)
"""


def archive_bench(work: Path) -> dict:
    """Cold and warm item latency and DataLoader throughput of ClimateArchive on the first file."""
    import torch

    import codec

    name = next(iter(FILES))
    path = work / "archive.cra"
    ds = _load(name)
    path.write_bytes(codec.encode(ds, quality=3))
    cold = [float(subprocess.run([sys.executable, "-c", COLD, str(path)], capture_output=True, text=True, check=True).stdout) for _ in range(2)]
    archive = codec.ClimateArchive(path)
    rng = np.random.default_rng(0)
    archive[0]
    warm = []
    for i in rng.integers(0, len(archive), 8):
        t = time.perf_counter()
        archive[int(i)]
        warm.append(time.perf_counter() - t)
    loaders = {}
    for workers in (0, 2):  # items/s of the first epoch (workers start and load the model) and of the second
        loader = torch.utils.data.DataLoader(archive, batch_size=4, num_workers=workers, persistent_workers=workers > 0)
        epochs = []
        for _ in range(2):
            t = time.perf_counter()
            n = sum(len(b) for b in loader)
            epochs.append(round(n / (time.perf_counter() - t), 2))
        loaders[workers] = epochs
    return {
        "file": name,
        "items": len(archive),
        "channels": archive.channels,
        "grid": list(archive.shape),
        "archive_bytes": path.stat().st_size,
        "cold_s": round(min(cold), 2),
        "warm_ms": round(1000 * statistics.median(warm), 1),
        "loader_items_s": loaders,
    }


def _markdown(rows: list[dict], archive: dict) -> str:
    serial, parallel = archive["loader_items_s"][0], archive["loader_items_s"][2]
    lines = [
        "# Climate datasets: Zarr with the codec compressor, and ClimateArchive",
        "",
        "Command: `python benchmarks/datasets_climate.py` (2 CPU cores). Zarr 3 stores, one chunk per time step, through xarray;",
        "ratio against float32; throughput in MB/s of float32 data. Bit-rounding keeps the fewest mantissa bits within the bound.",
        "",
        "| file | grid | bound (sd) | bound | compressor | ratio | max error | RMSE | write MB/s | read MB/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r['file']} | {r['shape']} | {r['bound_sd'] or 'lossless'} | {r['bound']:.4g} | {r['codec']} | {r['ratio']}"
        lines.append(f"{head} | {r['max_error']:.4g} | {r['rmse']:.4g} | {r['write_mb_s']} | {r['read_mb_s']} |")
    lines += [
        "",
        f"ClimateArchive on {archive['file']} ({archive['items']} steps, grid {archive['grid']}, quality 3, {archive['archive_bytes']} bytes):",
        f"cold item {archive['cold_s']} s (fresh process: imports, model load, decode), warm item {archive['warm_ms']} ms (median of 8 random),",
        "DataLoader items/s, first epoch (worker start-up and model load included) / second epoch (persistent workers):",
        f"{serial[0]} / {serial[1]} with 0 workers, {parallel[0]} / {parallel[1]} with 2 workers.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run both parts and write the results."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = zarr_bench(work)
        archive = archive_bench(work)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "datasets_climate.json").write_text(json.dumps({"zarr": rows, "climate_archive": archive, "zarr_version": zarr.__version__}, indent=2))
    (RESULTS / "datasets_climate.md").write_text(_markdown(rows, archive))
    print(_markdown(rows, archive))


if __name__ == "__main__":
    main()
