"""Demo: compress a climate netCDF at every shipped VAEformer quality (and with an error bound), decode it back.

Usage: python benchmarks/demo_climate.py [FILE.nc]   (default: 12 months of ../shared/data/climate/
monthly_navy_winds.cdf, or a synthetic wind field when the data folder is missing).  Outputs go to demo-out/.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

import codec
from codec.climate import writer

OUT = Path("demo-out")
NAVY = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "climate" / "monthly_navy_winds.cdf"


def sample() -> Path:
    """The demo input: a 12-month excerpt of the navy winds, or a synthetic field."""
    path = OUT / "winds.nc"
    if NAVY.is_file():
        with xr.open_dataset(NAVY, decode_times=False) as ds:
            ds.isel(TIME=slice(0, 12)).to_netcdf(path)
    else:
        lat, lon = np.linspace(-90, 90, 73), np.arange(0, 360, 2.5)
        y, x = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
        u = 8 * np.cos(y)[None] * np.sin(2 * x[None] + np.arange(24)[:, None, None] / 4)
        xr.Dataset({"u": (("time", "lat", "lon"), u.astype(np.float32))}, coords={"time": np.arange(24.0), "lat": lat, "lon": lon}).to_netcdf(path)
        print(f"(sample data not found; using a synthetic field: {path})")
    return path


def main() -> None:
    """Run the demo."""
    OUT.mkdir(exist_ok=True)
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else sample()
    levels = [q["quality"] for m in codec.list_models() if m["name"] == "vaeformer" for q in m["qualities"]]
    print(f"{source}")
    print(f"{'setting':>14} {'bytes':>9} {'ratio':>7} {'worst RMSE':>11} {'worst max err':>14} {'encode+decode':>14}")
    middle = levels[len(levels) // 2] if levels else None
    for q in levels:
        for bound in (None, 0.5) if q == middle else (None,):
            t0 = time.perf_counter()
            data = codec.encode(source, quality=q, max_abs_error=bound)
            target = OUT / f"climate-q{q}{'-bound' if bound else ''}.nc"
            target.unlink(missing_ok=True)
            writer.write_netcdf(codec.decode(data), target)
            seconds = time.perf_counter() - t0
            info = codec.info(data)
            rmse = max(v["rmse"] for v in info["variables"].values())
            worst = max(v["max_abs_error"] for v in info["variables"].values())
            name = f"q{q}" + (f" E<={bound}" if bound else "")
            print(f"{name:>14} {info['bytes']:>9} {info['compression_ratio']:>7.1f} {rmse:>11.4f} {worst:>14.4f} {seconds:>13.1f}s")


if __name__ == "__main__":
    main()
