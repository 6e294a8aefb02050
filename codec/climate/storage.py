"""Values a netCDF file can hold: decoded fields made safe for their variable's on-disk encoding.

A lossy decode can put a value where the source's storage cannot follow it: above the largest
integer of an int16-packed variable (the netCDF writer's cast then wraps it to the opposite
extreme), or on the integer code of ``_FillValue`` / ``missing_value`` (a valid point read back as
missing).  :func:`storable` maps every valid decoded value to the nearest value the variable can
store as a valid point, so what the codec returns in memory is exactly what a written file reads
back as.

Integer storage (packed with ``scale_factor`` / ``add_offset``, or plain integers) is snapped to its
integer grid ``offset + scale * k`` with ``k`` clipped into the dtype's range (unsigned when
``_Unsigned = "true"``), fill codes at an end of the range excluded, and moved off a fill code
inside the range by one step.  Float storage is clipped to the dtype's finite range and nudged off
a fill / missing value by one ulp.  Missing points (NaN) stay missing.

``valid_min`` / ``valid_max`` / ``valid_range`` are not enforced: xarray does not mask by them, so
a source may hold valid points outside them, and clipping those would break an error bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .grid import GridVariable


def _numbers(value: object) -> list[float]:
    """The finite numbers in an attribute value (a number or a list of them)."""
    items = value if isinstance(value, list | tuple) else [value]
    return [float(v) for v in items if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)]


def _cf(var: GridVariable, key: str) -> object:
    return var.encoding.get(key, var.attrs.get(key))


def _fill_codes(var: GridVariable) -> list[float]:
    """The ``_FillValue`` and ``missing_value`` codes of ``var`` (in stored units)."""
    return _numbers(_cf(var, "_FillValue")) + _numbers(_cf(var, "missing_value"))


def stored_integers(var: GridVariable) -> tuple[int, int, list[int]]:
    """(smallest, largest) integer ``var``'s on-disk type holds (unsigned when ``_Unsigned = "true"``) and its fill codes."""
    dtype = np.dtype(var.encoding["dtype"])
    fills = [int(c) for c in _fill_codes(var) if float(c).is_integer()]
    if dtype.kind == "i" and str(_cf(var, "_Unsigned")).lower() == "true":  # signed on disk, read as unsigned
        dtype = np.dtype(f"u{dtype.itemsize}")
        fills = [f % (1 << (8 * dtype.itemsize)) for f in fills]
    info = np.iinfo(dtype)
    return int(info.min), int(info.max), sorted(set(fills))


def integer_codes(var: GridVariable) -> tuple[int, int, list[int]]:
    """(lowest, highest) storable integer of an integer-stored variable and its fill codes inside that range."""
    lo, hi, fills = stored_integers(var)
    for f in fills:  # a fill at an end of the range shrinks it
        if f == lo:
            lo += 1
    for f in reversed(fills):
        if f == hi:
            hi -= 1
    return lo, hi, [f for f in fills if lo < f < hi]


def storable(values: np.ndarray, var: GridVariable) -> np.ndarray:
    """float64 ``values`` (NaN = missing) moved to the nearest values ``var``'s on-disk encoding stores as valid points."""
    values = np.asarray(values, dtype=np.float64)
    packing = var.packing()
    if packing is not None:
        return _storable_integers(values, var, *packing)
    return _storable_floats(values, var)


def _storable_integers(values: np.ndarray, var: GridVariable, scale: float, offset: float) -> np.ndarray:
    lo, hi, inner_fills = integer_codes(var)
    valid = ~np.isnan(values)
    exact = (np.nan_to_num(values) - offset) / scale
    k = np.clip(np.rint(exact), lo, hi)
    for f in inner_fills:  # move off a fill code to the neighbour nearer the exact value (within the range)
        on = valid & (k == f)
        if on.any():
            up = np.where(exact >= f, f + 1, f - 1)
            up = np.where(up > hi, f - 1, np.where(up < lo, f + 1, up))
            k = np.where(on, up, k)
    return np.where(valid, offset + scale * k, np.nan)


def _storable_floats(values: np.ndarray, var: GridVariable) -> np.ndarray:
    dtype = np.dtype(var.encoding.get("dtype", var.dtype))
    if dtype.kind != "f":
        dtype = np.dtype(var.dtype)
    finite = float(np.finfo(dtype).max)
    out = np.clip(values, -finite, finite)  # NaN stays NaN
    for f in _fill_codes(var):
        on = out.astype(dtype) == dtype.type(f)
        if on.any():
            away = np.nextafter(dtype.type(f), dtype.type(-np.inf if f > 0 else np.inf))
            out = np.where(on, float(away), out)
    return out
