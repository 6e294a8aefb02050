"""The skeleton of a climate file: everything but the grid variables' data, and the lazy dataset
rebuilt from it.

The skeleton is xz-compressed (files before 2026-12-02: zlib) netCDF-4 bytes holding every group
with each grid variable replaced by a scalar *stand-in* that carries its attributes and CF encoding
(dtype, ``scale_factor``/``add_offset``, ``_FillValue``, ``missing_value``...) with their exact
on-disk types.  :func:`rebuild` puts the fields back as lazy dask arrays (one chunk per field) and
:func:`codec.climate.writer.write_netcdf` writes them chunk by chunk, so the output has the source's
variables, coordinates, attributes and packing.  A source with groups rebuilds to an
``xarray.DataTree``, one without to an ``xarray.Dataset``.
"""

from __future__ import annotations

import lzma
import tempfile
import uuid
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import FormatError
from . import storage
from .grid import CF_KEYS, LAYOUT_KEYS, GridVariable, short_name
from .groups import OPEN, Groups, as_tree, close, one_line
from .writer import pinned, write_groups

XZ_MAGIC = b"\xfd7zXZ\x00"  # skeletons written since 2026-12-02; older ones are zlib streams (first byte 0x78)


def make(groups: Groups, variables: list[GridVariable]) -> bytes:
    """The skeleton of ``groups`` whose grid variables are ``variables``, as xz-compressed netCDF-4 bytes."""
    grid = {(v.group, short_name(v)): v for v in variables}
    kept = {g: _skeleton_group(ds, {s: v for (vg, s), v in grid.items() if vg == g}) for g, ds in groups.items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "skeleton.nc"
        write_groups(kept, path)
        return lzma.compress(path.read_bytes(), preset=9 | lzma.PRESET_EXTREME)  # 40 % below zlib on 0.25-degree coordinates


def _stand_in(v: xr.Variable) -> xr.Variable:
    """A scalar with ``v``'s attributes and CF encoding (what the skeleton keeps of a grid variable)."""
    enc = {k: v.encoding[k] for k in CF_KEYS if k in v.encoding}
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
        if var.group not in groups or short_name(var) not in groups[var.group].variables:
            raise FormatError(f"skeleton has no place for grid variable {var.name}")
        groups[var.group] = _with_grid_variable(groups[var.group], var, load_field, shared)
    groups = {g: pinned(ds) for g, ds in groups.items()}
    if set(groups) == {None}:
        return groups[None]
    return as_tree(groups, FormatError, "skeleton groups do not form a tree")


def _read_skeleton(skeleton: bytes) -> Groups:
    try:
        raw = lzma.decompress(skeleton) if skeleton.startswith(XZ_MAGIC) else zlib.decompress(skeleton)
        opened = xr.open_groups(raw, engine="netcdf4", **OPEN)
    except Exception:  # noqa: BLE001 - lzma.LZMAError, zlib.error, or netCDF4 errors on a damaged file
        raise FormatError("climate skeleton is corrupt") from None
    try:
        return {(key.strip("/") or None): ds.load() for key, ds in opened.items()}
    except Exception:  # noqa: BLE001 - netCDF4 errors on damaged data
        raise FormatError("climate skeleton is corrupt") from None
    finally:
        close(opened)


def _with_grid_variable(ds: xr.Dataset, var: GridVariable, load_field: Callable[..., np.ndarray], shared: SharedInput | None) -> xr.Dataset:
    short = short_name(var)
    stand_in = ds.variables[short]
    encoding = {k: _from_json_value(k, var.encoding[k]) for k in LAYOUT_KEYS if k in var.encoding}
    encoding.update({k: stand_in.encoding[k] for k in CF_KEYS if k in stand_in.encoding})
    full = xr.Variable(var.dims, _lazy_fields(var, load_field, shared), dict(stand_in.attrs), encoding)
    try:
        return ds.assign({short: full})
    except ValueError as exc:
        raise FormatError(f"grid variable {var.name} does not fit the skeleton: {one_line(exc)}") from None


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
