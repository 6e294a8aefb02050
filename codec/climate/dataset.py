"""Climate sources through xarray: open netCDF/GRIB files (or take a Dataset), serve the 2-D lat-lon fields
of their grid variables (:mod:`codec.climate.grid`) one at a time.

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

The skeleton (everything else) and the lazy rebuild live in :mod:`codec.climate.skeleton`, writing in
:mod:`codec.climate.writer`, the description of grid variables in :mod:`codec.climate.grid`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np
import xarray as xr

from ..errors import InputError
from ..fileio import existing_file
from . import GRIB_MAGIC, NETCDF_MAGICS, skeleton
from .grid import GridVariable, axis_coord, describe, on_grid, short_name
from .groups import OPEN, Groups, as_tree, close, one_line


class ClimateSource:
    """The grid variables of a dataset (or of the groups of a file), read one field at a time."""

    def __init__(self, groups: Groups, label: str, owned: bool) -> None:
        self._groups, self._label, self._owned = groups, label, owned
        self.variables: list[GridVariable] = [
            describe(ds, str(name), group) for group, ds in groups.items() for name, v in ds.data_vars.items() if on_grid(ds, v)
        ]

    def _variable(self, var: GridVariable) -> xr.Variable:
        return self._groups[var.group].variables[short_name(var)]

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
            raise InputError(f"cannot read {var.name} from {self._label}: {one_line(exc)}") from None

    def latitudes(self, var: GridVariable) -> np.ndarray:
        """1-D latitude values (degrees) of ``var``'s latitude dim."""
        return self._axis_values(var, -2, "lat")

    def longitudes(self, var: GridVariable) -> np.ndarray:
        """1-D longitude values (degrees) of ``var``'s longitude dim."""
        return self._axis_values(var, -1, "lon")

    def _axis_values(self, var: GridVariable, position: int, kind: str) -> np.ndarray:
        ds = self._groups[var.group]
        return np.asarray(ds.variables[axis_coord(ds, var.dims[position], kind)].values, dtype=np.float64)

    def dim_coordinate(self, var: GridVariable, dim: str) -> xr.Variable | None:
        """The 1-D coordinate variable named like ``var``'s dimension ``dim`` (levels, times), if there is one."""
        coord = self._groups[var.group].variables.get(dim)
        return coord if coord is not None and coord.dims == (dim,) else None

    def skeleton(self) -> bytes:
        """Everything except grid-variable data, as xz-compressed netCDF-4 bytes (see module doc)."""
        return skeleton.make(self._groups, self.variables)

    def close(self) -> None:
        """Close the files this source opened (a caller's Dataset is left open)."""
        if self._owned:
            close(self._groups)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
            as_tree(groups, InputError, f"groups of {label} do not nest as an xarray DataTree")
    except InputError:
        if owned:
            close(groups)
        raise
    return source


def _open_netcdf(path: Path) -> Groups:
    if _classic_data_end(path) > path.stat().st_size:  # netCDF-C reads missing classic data as fill values
        raise InputError(f"cannot read netCDF file {path}: it is truncated")
    try:
        opened = xr.open_groups(path, engine="netcdf4", **OPEN)
    except Exception as exc:  # noqa: BLE001 - netCDF4 / HDF5 errors come in many types
        raise InputError(f"cannot read netCDF file {path} (corrupt or truncated?): {one_line(exc)}") from None
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
        raise InputError(f"cannot read GRIB file {path} (corrupt or truncated?): {one_line(exc)}") from None
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
