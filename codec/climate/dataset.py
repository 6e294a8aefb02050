"""Climate datasets through xarray: find the 2-D lat-lon fields, serve them one at a time, keep the rest.

A *grid variable* is a numeric data variable whose last two dimensions are a latitude-like and a
longitude-like 1-D coordinate (found by units ``degrees_north`` / ``degrees_east`` and their
spellings, ``standard_name``, ``axis`` with degree units, or names such as ``lat`` / ``longitude``).
Its leading dimensions (time, level, ...) index the 2-D *fields* the codec compresses, in C order.
Every other variable, every coordinate and every attribute is *skeleton*: kept bit-exactly.

Sources
    netCDF (classic or netCDF-4/HDF5, groups included) is opened with ``decode_times=False`` (raw
    time numbers + their ``units`` are exact, and some files use units xarray cannot decode) and
    ``mask_and_scale=True`` (fields are physical values with NaN where missing).  GRIB (a file that
    starts with ``b"GRIB"``) is opened with cfgrib, which splits it into hypercubes; each hypercube
    becomes one netCDF *group* named after its GRIB ``typeOfLevel`` (``isobaricInhPa``,
    ``surface``, ``heightAboveGround``, ...), repeated level types getting ``_2``, ``_3``, ...
    (``heightAboveGround_2``).  GRIB attributes are kept as attributes; the output is netCDF.
    A grid variable in a group is named ``"<group>/<variable>"`` so names are unique.

Skeleton
    xz-compressed (files before 2026-12-02: zlib) netCDF-4 bytes holding every group with each grid variable replaced by a scalar
    *stand-in* that carries its attributes and CF encoding (dtype, ``scale_factor``/``add_offset``,
    ``_FillValue``, ``missing_value``...) with their exact on-disk types.  :func:`rebuild` puts the
    fields back as lazy dask arrays (one chunk per field) and :func:`write_netcdf` writes them
    chunk by chunk, so the output has the source's variables, coordinates, attributes and packing.
    A source with groups rebuilds to an ``xarray.DataTree``, one without to an ``xarray.Dataset``.
"""

from __future__ import annotations

import lzma
import os
import re
import tempfile
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Self

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..errors import FormatError, InputError
from ..fileio import existing_file, write_atomic_with
from . import GRIB_MAGIC, NETCDF_MAGICS, storage

_OPEN = {"decode_times": False, "decode_timedelta": False, "mask_and_scale": True}
# Encoding keys that change on-disk values or types: the skeleton's stand-in keeps them exactly.
_CF_KEYS = ("dtype", "scale_factor", "add_offset", "_FillValue", "missing_value", "units", "calendar", "_Unsigned")
# Storage layout (and the CF ``coordinates`` list), restored from the JSON description.
_LAYOUT_KEYS = ("zlib", "complevel", "shuffle", "chunksizes", "contiguous", "fletcher32", "coordinates")
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

Groups = dict[str | None, xr.Dataset]
_XZ_MAGIC = b"\xfd7zXZ\x00"  # skeletons written since 2026-12-02; older ones are zlib streams (first byte 0x78)


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


def _short_name(var: GridVariable) -> str:
    return var.name[len(var.group) + 1 :] if var.group else var.name


# ----------------------------------------------------------------------------- lat/lon detection


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


def _axis_coord(ds: xr.Dataset, dim: str, kind: str) -> str | None:
    """Name of the 1-D coordinate of ``dim`` that is a ``kind`` ("lat"/"lon") axis, if any."""
    candidates = [dim] if dim in ds.variables else []
    candidates += [n for n, c in ds.coords.items() if c.dims == (dim,) and n != dim]
    return next((n for n in candidates if _axis_kind(ds.variables[n], n) == kind), None)


def _on_grid(ds: xr.Dataset, v: xr.DataArray) -> bool:
    return v.ndim >= 2 and _axis_coord(ds, v.dims[-2], "lat") is not None and _axis_coord(ds, v.dims[-1], "lon") is not None


# ----------------------------------------------------------------------------- JSON copies


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


def _describe(ds: xr.Dataset, short: str, group: str | None) -> GridVariable:
    v = ds.variables[short]
    if v.dtype.kind not in "iuf":
        where = f"{group}/{short}" if group else short
        raise InputError(f"variable {where} on the lat-lon grid is not numeric ({v.dtype})")
    keys = [k for k in _CF_KEYS + _LAYOUT_KEYS if k in v.encoding]
    return GridVariable(
        name=f"{group}/{short}" if group else short,
        dims=tuple(str(d) for d in v.dims),
        shape=tuple(int(n) for n in v.shape),
        dtype=v.dtype.name,
        attrs=_jsonable(dict(v.attrs)),
        encoding=_jsonable({k: v.encoding[k] for k in keys}),
        group=group,
    )


# ----------------------------------------------------------------------------- the source


class ClimateSource:
    """The grid variables of a dataset (or of the groups of a file), read one field at a time."""

    def __init__(self, groups: Groups, label: str, owned: bool) -> None:
        self._groups, self._label, self._owned = groups, label, owned
        self.variables: list[GridVariable] = [
            _describe(ds, str(name), group) for group, ds in groups.items() for name, v in ds.data_vars.items() if _on_grid(ds, v)
        ]

    def _variable(self, var: GridVariable) -> xr.Variable:
        return self._groups[var.group].variables[_short_name(var)]

    def fields(self, var: GridVariable) -> Iterator[np.ndarray]:
        """Decoded float64 2-D fields of ``var`` in C order of its leading dims, one at a time, NaN where
        missing (fill values / masked land), read lazily so memory stays at one field."""
        data = self._variable(var)
        for index in np.ndindex(*var.shape[:-2]):
            yield self._read(var, data, index)

    def block(self, var: GridVariable, index: tuple[int, ...]) -> np.ndarray:
        """Decoded float64 values of ``var`` at ``index``, integers for its first dims (the rest whole), NaN where missing."""
        return self._read(var, self._variable(var), index)

    def _read(self, var: GridVariable, data: xr.Variable, index: tuple[int, ...]) -> np.ndarray:
        try:
            return np.asarray(data[index].values, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - backends raise RuntimeError, OSError, ValueError... on bad data
            raise InputError(f"cannot read {var.name} from {self._label}: {_one_line(exc)}") from None

    def latitudes(self, var: GridVariable) -> np.ndarray:
        """1-D latitude values (degrees) of ``var``'s latitude dim."""
        return self._axis_values(var, -2, "lat")

    def longitudes(self, var: GridVariable) -> np.ndarray:
        """1-D longitude values (degrees) of ``var``'s longitude dim."""
        return self._axis_values(var, -1, "lon")

    def _axis_values(self, var: GridVariable, position: int, kind: str) -> np.ndarray:
        ds = self._groups[var.group]
        return np.asarray(ds.variables[_axis_coord(ds, var.dims[position], kind)].values, dtype=np.float64)

    def dim_coordinate(self, var: GridVariable, dim: str) -> xr.Variable | None:
        """The 1-D coordinate variable named like ``var``'s dimension ``dim`` (levels, times), if there is one."""
        coord = self._groups[var.group].variables.get(dim)
        return coord if coord is not None and coord.dims == (dim,) else None

    def skeleton(self) -> bytes:
        """Everything except grid-variable data, as xz-compressed netCDF-4 bytes (see module doc)."""
        grid = {(v.group, _short_name(v)): v for v in self.variables}
        groups = {g: _skeleton_group(ds, {s: v for (vg, s), v in grid.items() if vg == g}) for g, ds in self._groups.items()}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "skeleton.nc"
            _write_groups(groups, path)
            return lzma.compress(path.read_bytes(), preset=9 | lzma.PRESET_EXTREME)  # 40 % below zlib on 0.25-degree coordinates

    def close(self) -> None:
        """Close the files this source opened (a caller's Dataset is left open)."""
        if self._owned:
            _close(self._groups)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _stand_in(v: xr.Variable) -> xr.Variable:
    """A scalar with ``v``'s attributes and CF encoding (what the skeleton keeps of a grid variable)."""
    enc = {k: v.encoding[k] for k in _CF_KEYS if k in v.encoding}
    if v.dtype.kind == "f" and ("_FillValue" in enc or "missing_value" in enc):
        value = np.nan
    else:  # add_offset packs to 0, so no fill value is needed
        value = enc.get("add_offset", 0)
    return xr.Variable((), np.array(value, dtype=v.dtype), dict(v.attrs), enc)


def _skeleton_group(ds: xr.Dataset, grid: dict[str, GridVariable]) -> xr.Dataset:
    out = ds.assign({name: _stand_in(ds.variables[name]) for name in grid})
    unlimited = {d for d in ds.encoding.get("unlimited_dims", ()) if d in out.dims}
    out.encoding = {"unlimited_dims": unlimited} if unlimited else {}
    return out


# ----------------------------------------------------------------------------- opening


def open_source(obj: str | os.PathLike | xr.Dataset) -> ClimateSource:
    """A :class:`ClimateSource` for a netCDF or GRIB path, or an in-memory ``xarray.Dataset``."""
    if isinstance(obj, xr.Dataset):
        return _source({None: obj}, "the dataset", False, "no 2-D lat-lon grid variable in the dataset")
    path = existing_file(obj)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if head.startswith(GRIB_MAGIC):
        return _source(_open_grib(path), str(path), True, f"no regular lat-lon grid in GRIB file {path}")
    if head.startswith(NETCDF_MAGICS):
        return _source(_open_netcdf(path), str(path), True, f"no 2-D lat-lon grid variable in {path}")
    raise InputError(f"{path} is not a netCDF or GRIB file")


def _source(groups: Groups, label: str, owned: bool, empty_message: str) -> ClimateSource:
    """A checked source: it has grid variables and its groups form a DataTree (files closed if not)."""
    try:
        source = ClimateSource(groups, label, owned)
        if not source.variables:
            raise InputError(empty_message)
        if set(groups) != {None}:
            _tree_or_error(groups, InputError, f"groups of {label} do not nest as an xarray DataTree")
    except InputError:
        if owned:
            _close(groups)
        raise
    return source


def _close(groups: Groups) -> None:
    for ds in groups.values():
        ds.close()


def _open_netcdf(path: Path) -> Groups:
    if _classic_data_end(path) > path.stat().st_size:  # netCDF-C reads missing classic data as fill values
        raise InputError(f"cannot read netCDF file {path}: it is truncated")
    try:
        opened = xr.open_groups(path, engine="netcdf4", **_OPEN)
    except Exception as exc:  # noqa: BLE001 - netCDF4 / HDF5 errors come in many types
        raise InputError(f"cannot read netCDF file {path} (corrupt or truncated?): {_one_line(exc)}") from None
    return {(key.strip("/") or None): ds for key, ds in opened.items()}


_NC_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}


class _Header:
    """Just enough of a netCDF classic (CDF-1/2/5) header reader to find where the data must end."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.version = data, 4, data[3]
        self.size = 8 if self.version == 5 else 4

    def read(self, size: int | None = None) -> int:
        size = size or self.size
        if self.pos + size > len(self.data):
            raise EOFError
        self.pos += size
        return int.from_bytes(self.data[self.pos - size : self.pos], "big")

    def skip(self, n: int) -> None:
        self.pos += (n + 3) // 4 * 4

    def items(self) -> int:
        self.read(4)  # tag (absent lists have tag 0 and count 0)
        return self.read()

    def skip_attributes(self) -> None:
        for _ in range(self.items()):
            self.skip(self.read())
            kind = self.read(4)
            self.skip(self.read() * _NC_TYPE_SIZES.get(kind, 1))


def _classic_data_end(path: Path) -> int:
    """Least file size a classic netCDF header promises (0 for netCDF-4 or unparseable headers)."""
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    if not data.startswith((b"CDF\x01", b"CDF\x02", b"CDF\x05")):
        return 0
    h = _Header(data)
    try:
        numrecs = h.read()
        dims = []
        for _ in range(h.items()):
            h.skip(h.read())
            dims.append(h.read())
        h.skip_attributes()
        variables = []
        for _ in range(h.items()):
            h.skip(h.read())
            ids = [h.read() for _ in range(h.read())]
            h.skip_attributes()
            h.read(4)
            vsize, begin = h.read(), h.read(4 if h.version == 1 else 8)
            variables.append((bool(ids) and dims[ids[0]] == 0, vsize, begin))
    except (EOFError, IndexError):
        return len(data) + 1 if len(data) < (1 << 20) else 0
    recsize = sum(v for rec, v, _ in variables if rec)
    ends = [b + (numrecs - 1) * recsize + v - 3 if rec else b + v - 3 for rec, v, b in variables if v and (numrecs or not rec)]
    return max(ends, default=0) if numrecs != (1 << (8 * h.size)) - 1 else 0


def _open_grib(path: Path) -> Groups:
    import cfgrib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cubes = cfgrib.open_datasets(str(path), backend_kwargs={"indexpath": ""})
    except Exception as exc:  # noqa: BLE001 - eccodes / cfgrib errors come in many types
        raise InputError(f"cannot read GRIB file {path} (corrupt or truncated?): {_one_line(exc)}") from None
    return dict(zip(_unique([_level_type(ds) for ds in cubes]), cubes, strict=True))


def _level_type(ds: xr.Dataset) -> str:
    levels = [v.attrs.get("GRIB_typeOfLevel") for v in ds.data_vars.values()]
    level = next((x for x in levels if isinstance(x, str) and x), "grib")
    return re.sub(r"[^A-Za-z0-9_]", "_", level)


def _unique(names: list[str]) -> list[str]:
    """``names`` with later repeats suffixed ``_2``, ``_3``, ..."""
    used: set[str] = set()
    out = []
    for name in names:
        candidate, k = name, 1
        while candidate in used:
            k += 1
            candidate = f"{name}_{k}"
        used.add(candidate)
        out.append(candidate)
    return out


# ----------------------------------------------------------------------------- rebuilding


SharedInput = Callable[[GridVariable, int], tuple[tuple[str, int], Callable[[], object]]]
"""``(var, i) -> (key, compute)``: the dask key of an input that several fields need (a decoded time step) and
the function computing it; dask computes each key once per computation and frees it after its last use."""


def rebuild(
    skeleton: bytes, variables: list[GridVariable], load_field: Callable[..., np.ndarray], shared: SharedInput | None = None
) -> xr.Dataset | xr.DataTree:
    """Lazy dataset: each grid variable is a dask array whose chunk i (one 2-D field, the i-th in C order of its
    leading dims) is ``load_field(var, i)`` (float64 2-D with NaN where missing); coords, attrs, other variables
    and encodings restored from the skeleton / ``GridVariable.encoding``, so that :func:`write_netcdf`
    reproduces the source's CF encoding.  Sources with groups (GRIB) give an ``xarray.DataTree``.

    With ``shared``, chunk i is ``load_field(var, i, value)``, ``value`` the shared input ``shared(var, i)`` names.
    """
    groups = _read_skeleton(skeleton)
    for var in variables:
        if var.group not in groups or _short_name(var) not in groups[var.group].variables:
            raise FormatError(f"skeleton has no place for grid variable {var.name}")
        groups[var.group] = _with_grid_variable(groups[var.group], var, load_field, shared)
    groups = {g: _pinned(ds) for g, ds in groups.items()}
    if set(groups) == {None}:
        return groups[None]
    return _tree_or_error(groups, FormatError, "skeleton groups do not form a tree")


def _read_skeleton(skeleton: bytes) -> Groups:
    try:
        raw = lzma.decompress(skeleton) if skeleton.startswith(_XZ_MAGIC) else zlib.decompress(skeleton)
        opened = xr.open_groups(raw, engine="netcdf4", **_OPEN)
    except Exception:  # noqa: BLE001 - lzma.LZMAError, zlib.error, or netCDF4 errors on a damaged file
        raise FormatError("climate skeleton is corrupt") from None
    try:
        return {(key.strip("/") or None): ds.load() for key, ds in opened.items()}
    except Exception:  # noqa: BLE001 - netCDF4 errors on damaged data
        raise FormatError("climate skeleton is corrupt") from None
    finally:
        _close(opened)


def _with_grid_variable(ds: xr.Dataset, var: GridVariable, load_field: Callable[..., np.ndarray], shared: SharedInput | None) -> xr.Dataset:
    short = _short_name(var)
    stand_in = ds.variables[short]
    encoding = {k: _from_json_value(k, var.encoding[k]) for k in _LAYOUT_KEYS if k in var.encoding}
    encoding.update({k: stand_in.encoding[k] for k in _CF_KEYS if k in stand_in.encoding})
    full = xr.Variable(var.dims, _lazy_fields(var, load_field, shared), dict(stand_in.attrs), encoding)
    try:
        return ds.assign({short: full})
    except ValueError as exc:
        raise FormatError(f"grid variable {var.name} does not fit the skeleton: {_one_line(exc)}") from None


def _from_json_value(key: str, value: object) -> object:
    return tuple(value) if key == "chunksizes" and isinstance(value, list) else value


def _lazy_fields(var: GridVariable, load_field: Callable[..., np.ndarray], shared: SharedInput | None = None) -> da.Array | np.ndarray:
    dtype = np.dtype(var.dtype)
    lead = var.shape[:-2]
    if var.n_fields == 0:
        return np.empty(var.shape, dtype)
    name = f"field-{uuid.uuid4().hex}"
    load = partial(_load_chunk, load_field, var, dtype)
    graph: dict = {}
    for i, index in enumerate(np.ndindex(*lead)):
        if shared is None:
            graph[(name, *index, 0, 0)] = (load, index)
        else:
            key, compute = shared(var, i)
            graph[key] = (compute,)
            graph[(name, *index, 0, 0)] = (load, index, key)
    chunks = tuple((1,) * n for n in lead) + tuple((n,) for n in var.field_shape)
    return da.Array(graph, name, chunks, dtype=dtype)


def _load_chunk(load_field: Callable[..., np.ndarray], var: GridVariable, dtype: np.dtype, index: tuple[int, ...], *inputs: object) -> np.ndarray:
    lead = var.shape[:-2]
    i = int(np.ravel_multi_index(index, lead)) if lead else 0
    values = np.asarray(load_field(var, i, *inputs))
    if values.shape != var.field_shape:
        raise FormatError(f"field {i} of {var.name} has shape {values.shape}, expected {var.field_shape}")
    return _cast(storage.storable(values, var), dtype).reshape((1,) * len(lead) + var.field_shape)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "f":
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.rint(values), info.min, info.max).astype(dtype)


def _pinned(ds: xr.Dataset) -> xr.Dataset:
    """A shallow copy in which float variables without ``_FillValue`` keep none when written
    (xarray would otherwise add ``_FillValue = NaN``)."""
    out = ds.copy(deep=False)
    for v in out.variables.values():
        if "_FillValue" not in v.encoding and "_FillValue" not in v.attrs:
            v.encoding = {**v.encoding, "_FillValue": None}
    return out


def _tree_or_error(groups: Groups, error: type[Exception], message: str) -> xr.DataTree:
    try:
        return xr.DataTree.from_dict({"/" + (g or ""): ds for g, ds in groups.items()})
    except ValueError as exc:
        raise error(f"{message}: {_one_line(exc)}") from None


# ----------------------------------------------------------------------------- writing


def write_netcdf(ds: xr.Dataset | xr.DataTree, path: str | os.PathLike) -> None:
    """Write ``ds`` (a Dataset, or a DataTree as netCDF groups) to a netCDF-4 file atomically (via
    :func:`codec.fileio.write_atomic_with`), chunk by chunk so memory stays bounded by one chunk."""
    groups = {(node.path.strip("/") or None): node.to_dataset(inherit=False) for node in ds.subtree} if isinstance(ds, xr.DataTree) else {None: ds}
    write_atomic_with(path, partial(_write_groups, groups))


def _write_groups(groups: Groups, path: Path) -> None:
    """Write the root (empty when absent) then each group, computing dask chunks one at a time."""
    ordered = {None: groups.get(None, xr.Dataset()), **{g: ds for g, ds in groups.items() if g is not None}}
    mode = "w"
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=xr.SerializationWarning)
        for group, ds in ordered.items():
            _pinned(ds).to_netcdf(path, mode=mode, group=group, engine="netcdf4")
            mode = "a"
