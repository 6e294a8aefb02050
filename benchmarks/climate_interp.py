"""The bounded residual coder alone, coder 1 against coder 2, beside SZ3 at the same pointwise bound.

Every field of the high-resolution validation files (one per variable) is coded around its mean
(no network: the record the encoder keeps when a tight bound makes the network useless) by
:func:`codec.climate.errorbound.encode` with residual coder 1 (field records 1-3) and coder 2
(records 4: level-wise steps, curvature contexts, Laplace tables), at a bound of E x the field's
standard deviation, with the variable's packing as the codec uses it.  SZ3 (absolute bound, NaN
handled as in ``climate_baselines``) codes the same field at the same bound.  Every decode is
checked against its bound.  Sizes are the residual bytes (SZ3: its stream); ratios are against
float32.  Writes ``results/climate_interp.md``.

    python benchmarks/climate_interp.py
"""

from __future__ import annotations

import time

import climate_baselines as cb
import numpy as np
from _common import RESULTS_DIR
from climate import DATA, held_out

from codec.climate import errorbound
from codec.training.climate_data import HIGHRES_VALIDATION

BOUNDS = (0.01, 0.05, 0.2)


def code(field: np.ndarray, var, bound: float, coder: int) -> tuple[int, float, float]:  # noqa: ANN001 - GridVariable
    """Residual bytes, encode and decode seconds of ``field`` around its mean with ``coder``; checks the bound."""
    recon = np.where(np.isnan(field), np.nan, np.nanmean(field))
    args = (var.packing(), np.dtype("f4"), var.integer_range())
    t = time.perf_counter()
    data, out = errorbound.encode(field, recon, bound, *args, coder)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    back = errorbound.decode(data, recon, ~np.isnan(field), bound, *args)
    t_dec = time.perf_counter() - t
    assert np.array_equal(back, out, equal_nan=True) and np.nanmax(np.abs(back - field)) <= bound * (1 + 1e-9)
    return len(data), t_enc, t_dec


def main() -> None:
    """Measure and write the table."""
    items = held_out([DATA / "highres" / f for f in HIGHRES_VALIDATION], 1, whole_files=True)
    lines = [
        "# The bounded residual coder alone: coder 1 (records 1-3) vs coder 2 (records 4) vs SZ3",
        "",
        "`python benchmarks/climate_interp.py`: each field coded around its mean at a pointwise bound of E x its sd;",
        "ratio vs float32; seconds on 2 cores (this machine, one field at a time).",
        "",
        "| file | variable | grid | E / sd | coder 1 ratio | coder 2 ratio | SZ3 ratio | coder 2 vs SZ3 | coder 1 enc / dec s | coder 2 enc / dec s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    gains, versus = [], []
    for item in items:
        field, var = item["field"], item["spec"]
        raw = 4 * field.size
        for frac in BOUNDS:
            bound = frac * float(np.nanstd(field))
            (n1, e1, d1), (n2, e2, d2) = (code(field, var, bound, c) for c in errorbound.CODERS)
            sz = cb.sz3(field, bound).nbytes
            gains.append(n1 / n2)
            versus.append(sz / n2)
            lines.append(
                f"| {item['file']} | {item['variable']} | {field.shape[0]}x{field.shape[1]} | {frac} | {raw / n1:.1f} | {raw / n2:.1f} | "
                f"{raw / sz:.1f} | {sz / n2:.2f}x | {e1:.2f} / {d1:.2f} | {e2:.2f} / {d2:.2f} |"
            )
            print(lines[-1], flush=True)
    geo = lambda v: float(np.exp(np.mean(np.log(v))))  # noqa: E731
    lines += ["", f"Geometric means over {len(gains)} field-bounds: coder 2 is {geo(gains):.2f}x coder 1's ratio and {geo(versus):.2f}x SZ3's."]
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "climate_interp.md").write_text("\n".join(lines) + "\n")
    print(lines[-1])


if __name__ == "__main__":
    main()
