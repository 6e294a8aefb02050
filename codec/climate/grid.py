"""Grid variables: which variables of a dataset are 2-D lat-lon fields, and their JSON description.

A *grid variable* is a numeric data variable whose last two dimensions are a latitude-like and a
longitude-like 1-D coordinate (found by units ``degrees_north`` / ``degrees_east`` and their
spellings, ``standard_name``, ``axis`` with degree units, or names such as ``lat`` / ``longitude``).
Its leading dimensions (time, level, ...) index the 2-D *fields* the codec compresses, in C order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..errors import FormatError, InputError
from . import storage

# Encoding keys that change on-disk values or types: the skeleton's stand-in keeps them exactly.
CF_KEYS = ("dtype", "scale_factor", "add_offset", "_FillValue", "missing_value", "units", "calendar", "_Unsigned")
# Storage layout (and the CF ``coordinates`` list), restored from the JSON description.
LAYOUT_KEYS = ("zlib", "complevel", "shuffle", "chunksizes", "contiguous", "fletcher32", "coordinates")
_DEGREES = {"", "degree", "degrees"}
_AXES = {
    "lat": {
        "names": {"lat", "latitude", "lats", "nav_lat"},
        "units": {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreesn", "degreen"},
        "standard": "latitude",
        "axis": "Y",
        "limit": 90.0,
    },
    "lon": {
        "names": {"lon", "longitude", "lons", "long", "nav_lon"},
        "units": {"degrees_east", "degree_east", "degrees_e", "degree_e", "degreese", "degreee"},
        "standard": "longitude",
        "axis": "X",
        "limit": 720.0,
    },
}


@dataclass(frozen=True)
class GridVariable:
    """A variable made of 2-D lat-lon fields, described in JSON-friendly terms."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    attrs: dict = field(hash=False)
    encoding: dict = field(hash=False)
    group: str | None = None

    def to_json(self) -> dict:
        """A JSON-serializable dict that :meth:`from_json` reads back."""
        return {
            "name": self.name,
            "dims": list(self.dims),
            "shape": list(self.shape),
            "dtype": self.dtype,
            "attrs": self.attrs,
            "encoding": self.encoding,
            "group": self.group,
        }

    @classmethod
    def from_json(cls, d: dict) -> GridVariable:
        """The variable described by ``d``; :class:`FormatError` when it is malformed."""
        if not isinstance(d, dict):
            raise FormatError("grid variable description is not an object")
        name, dims, shape, dtype, group = (d.get(k) for k in ("name", "dims", "shape", "dtype", "group"))
        if not isinstance(name, str) or not name:
            raise FormatError("grid variable has no name")
        if not isinstance(dims, list) or len(dims) < 2 or not all(isinstance(x, str) for x in dims):
            raise FormatError(f"grid variable {name} has invalid dims")
        if not isinstance(shape, list) or len(shape) != len(dims) or not all(type(n) is int and n >= 0 for n in shape):
            raise FormatError(f"grid variable {name} has an invalid shape")
        if not isinstance(dtype, str) or not _is_numeric_name(dtype):
            raise FormatError(f"grid variable {name} has an invalid dtype")
        if not isinstance(d.get("attrs"), dict) or not isinstance(d.get("encoding"), dict):
            raise FormatError(f"grid variable {name} has invalid attributes")
        if group is not None and (not isinstance(group, str) or not group):
            raise FormatError(f"grid variable {name} has an invalid group")
        return cls(name, tuple(dims), tuple(shape), dtype, d["attrs"], d["encoding"], group)

    @property
    def field_shape(self) -> tuple[int, int]:
        """(rows, columns) = (latitudes, longitudes) of one field."""
        return self.shape[-2], self.shape[-1]

    @property
    def n_fields(self) -> int:
        """Number of 2-D fields: the product of the leading dims (1 for a 2-D variable)."""
        return int(np.prod(self.shape[:-2], dtype=np.int64))

    def packing(self) -> tuple[float, float] | None:
        """(scale_factor, add_offset) of the integer grid the values are stored on, else None (floats).

        Packed integers give their factors; plain integer variables give (1, 0).  Invalid factors
        (not finite, zero) raise :class:`FormatError`.
        """
        enc = self.encoding
        if not _is_integer_name(enc.get("dtype")):
            return None
        try:
            scale, offset = float(enc.get("scale_factor", 1.0)), float(enc.get("add_offset", 0.0))
        except (TypeError, ValueError):
            raise FormatError(f"grid variable {self.name} has invalid packing factors") from None
        if not (np.isfinite(scale) and np.isfinite(offset) and scale != 0):
            raise FormatError(f"grid variable {self.name} has invalid packing factors")
        return scale, offset

    def integer_range(self) -> tuple[int, int] | None:
        """Smallest and largest storable integer of a packed variable; fill values near either end are excluded."""
        if self.packing() is None:
            return None
        lo, hi, fills = storage.stored_integers(self)
        for f in fills:
            lo, hi = (max(lo, f + 1) if f - lo <= 16 else lo), (min(hi, f - 1) if hi - f <= 16 else hi)
        return lo, hi


def _is_numeric_name(dtype: object) -> bool:
    try:
        return np.dtype(dtype).kind in "iuf"
    except TypeError:
        return False


def _is_integer_name(dtype: object) -> bool:
    try:
        return dtype is not None and np.dtype(dtype).kind in "iu"
    except TypeError:
        return False


def short_name(var: GridVariable) -> str:
    """The variable's name inside its group."""
    return var.name[len(var.group) + 1 :] if var.group else var.name


def _axis_kind(coord: xr.Variable, name: str) -> str | None:
    """"lat", "lon" or None for a 1-D coordinate variable."""
    if coord.ndim != 1 or coord.size == 0 or coord.dtype.kind not in "iuf":
        return None
    units = str(coord.attrs.get("units", "")).strip().lower().replace(" ", "_")
    for kind, rule in _AXES.items():
        by_units = units in rule["units"]
        by_standard = coord.attrs.get("standard_name") == rule["standard"]
        by_axis = coord.attrs.get("axis") == rule["axis"] and units in _DEGREES - {""}
        by_name = name.lower() in rule["names"] and (units in _DEGREES or by_units)
        if (by_units or by_standard or by_axis or by_name) and _within(coord, rule["limit"]):
            return kind
    return None


def _within(coord: xr.Variable, limit: float) -> bool:
    """All values finite and at most ``limit`` in magnitude (with float32 rounding slack)."""
    values = np.asarray(coord.values, dtype=np.float64)
    return bool(np.isfinite(values).all() and (np.abs(values) <= limit * (1 + 1e-6)).all())


def axis_coord(ds: xr.Dataset, dim: str, kind: str) -> str | None:
    """Name of the 1-D coordinate of ``dim`` that is a ``kind`` ("lat"/"lon") axis, if any."""
    candidates = [dim] if dim in ds.variables else []
    candidates += [n for n, c in ds.coords.items() if c.dims == (dim,) and n != dim]
    return next((n for n in candidates if _axis_kind(ds.variables[n], n) == kind), None)


def on_grid(ds: xr.Dataset, v: xr.DataArray) -> bool:
    """Whether data variable ``v`` of ``ds`` is a grid variable (last two dims latitude, longitude)."""
    return v.ndim >= 2 and axis_coord(ds, v.dims[-2], "lat") is not None and axis_coord(ds, v.dims[-1], "lon") is not None


def _jsonable(value: object) -> object:
    """``value`` with numpy scalars/arrays, bytes and tuples turned into plain JSON values."""
    if isinstance(value, np.dtype | type):
        return np.dtype(value).name
    if isinstance(value, np.generic | np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_jsonable(x) for x in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def describe(ds: xr.Dataset, short: str, group: str | None) -> GridVariable:
    """The :class:`GridVariable` of variable ``short`` of ``ds`` (in ``group``); non-numeric ones are refused."""
    v = ds.variables[short]
    if v.dtype.kind not in "iuf":
        where = f"{group}/{short}" if group else short
        raise InputError(f"variable {where} on the lat-lon grid is not numeric ({v.dtype})")
    keys = [k for k in CF_KEYS + LAYOUT_KEYS if k in v.encoding]
    return GridVariable(
        name=f"{group}/{short}" if group else short,
        dims=tuple(str(d) for d in v.dims),
        shape=tuple(int(n) for n in v.shape),
        dtype=v.dtype.name,
        attrs=_jsonable(dict(v.attrs)),
        encoding=_jsonable({k: v.encoding[k] for k in keys}),
        group=group,
    )
