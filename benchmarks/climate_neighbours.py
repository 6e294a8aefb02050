"""Does coding a field against its already decoded neighbour (previous time step or level) pay?

For each stack of fields of one variable (consecutive time steps, or adjacent pressure levels), every
field is coded at a pointwise bound E (a fraction of the fields' mean standard deviation) two ways:

* *intra*: the codec's own record (network + bounded residual, :func:`codec.climate.fieldcodec.encode`);
* *inter*: the bounded residual coder (:func:`codec.climate.errorbound.encode`) run on the difference
  from a prediction out of the previous field's *decoded* values (the previous field itself for time,
  a least-squares ``a * prev + b`` for levels, 16 bytes for the two coefficients), falling back to
  intra where that is shorter (closed loop, so the bound holds).

Writes ``results/climate_neighbours.md``.

    python benchmarks/climate_neighbours.py
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from _common import REPO_ROOT, RESULTS_DIR

from codec import registry
from codec.climate import archive, errorbound, fieldcodec

DATA = REPO_ROOT.parent / "shared" / "data" / "climate"
STACKS = [  # (file, variable, axis kind, how many fields)
    ("highres/SMALL_total_column_co2.nc", "tcco2", "time", 12),
    ("monthly_navy_winds.cdf", "UWND", "time", 12),
    ("highres/20240101000000-0h-oper-fc.grib2.0-10", "gh", "level", 5),
    ("highres/20240101000000-0h-oper-fc.grib2.0-10", "r", "level", 3),
]
BOUNDS = (0.01, 0.05, 0.2)


def load(path: str, variable: str, count: int) -> np.ndarray:
    """The first ``count`` 2-D fields of ``variable`` as float64 [n, lat, lon]."""
    full = DATA / path
    if full.suffix in (".nc", ".cdf"):
        ds = xr.open_dataset(full, decode_times=False)
    else:
        import cfgrib

        ds = next(d for d in cfgrib.open_datasets(full, backend_kwargs={"indexpath": ""}) if variable in d)
    values = ds[variable].values.astype(np.float64)
    return values.reshape(-1, *values.shape[-2:])[:count]


def prediction(previous: np.ndarray, field: np.ndarray, kind: str) -> tuple[np.ndarray, int]:
    """The prediction of ``field`` from the previous decoded field and the bytes it costs."""
    if kind == "time":
        return previous, 0
    ok = ~(np.isnan(previous) | np.isnan(field))
    a, b = np.linalg.lstsq(np.stack([previous[ok], np.ones(ok.sum())], 1), field[ok], rcond=None)[0]
    return a * previous + b, 16


def main() -> None:
    """Measure and write the table."""
    torch.set_num_threads(2)
    coder = registry.load("vaeformer", 3).model.at_level(3)
    lines = [
        "# Coding a field against its decoded neighbour (time step or level)",
        "",
        "`python benchmarks/climate_neighbours.py`: ratio vs float32 at a pointwise bound of E x the fields' mean sd;",
        "*inter* codes each field's difference from the previous decoded field (levels: a least-squares",
        "`a * prev + b`) with the bounded residual coder when that is shorter than the codec's own record.",
        "",
        "| file | variable | along | fields | grid | E / sd | intra ratio | inter ratio | fields coded inter |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path, variable, kind, count in STACKS:
        stack = load(path, variable, count)
        sd = float(np.mean([np.nanstd(f) for f in stack]))  # per-field spread (levels differ in their means)
        for frac in BOUNDS:
            spec = fieldcodec.FieldSpec(stack.shape[-2:], np.dtype("f4"), frac * sd, record_version=archive.RECORD_VERSION)
            intra = inter = chosen = 0
            previous = None
            for field in stack:
                record, recon = fieldcodec.encode(coder, field, spec)
                intra += len(record)
                size, decoded = len(record), recon
                if previous is not None:
                    guess, extra = prediction(previous, field, kind)
                    residual, out = errorbound.encode(field, np.nan_to_num(guess), frac * sd, None, np.dtype("f4"), None, spec.residual_coder)
                    if len(residual) + extra < size:
                        size, decoded, chosen = len(residual) + extra, out, chosen + 1
                inter += size
                previous = decoded
            raw = 4 * stack.size
            lines.append(
                f"| {path.split('/')[-1]} | {variable} | {kind} | {len(stack)} | {stack.shape[-2]}x{stack.shape[-1]} | {frac} | "
                f"{raw / intra:.1f} | {raw / inter:.1f} | {chosen} of {len(stack) - 1} |"
            )
            print(lines[-1], flush=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "climate_neighbours.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
