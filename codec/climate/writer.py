"""Writing decoded climate datasets as netCDF-4, atomically and one dask chunk at a time."""

from __future__ import annotations

import os
import warnings
from functools import partial
from pathlib import Path

import dask
import xarray as xr

from ..fileio import write_atomic_with
from .groups import Groups


def write_netcdf(ds: xr.Dataset | xr.DataTree, path: str | os.PathLike) -> None:
    """Write ``ds`` (a Dataset, or a DataTree as netCDF groups) to a netCDF-4 file atomically (via
    :func:`codec.fileio.write_atomic_with`), chunk by chunk so memory stays bounded by one chunk."""
    groups = {(node.path.strip("/") or None): node.to_dataset(inherit=False) for node in ds.subtree} if isinstance(ds, xr.DataTree) else {None: ds}
    write_atomic_with(path, partial(write_groups, groups))


def write_groups(groups: Groups, path: Path) -> None:
    """Write the root (empty when absent) then each group, computing dask chunks one at a time."""
    ordered = {None: groups.get(None, xr.Dataset()), **{g: ds for g, ds in groups.items() if g is not None}}
    mode = "w"
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=xr.SerializationWarning)
        for group, ds in ordered.items():
            pinned(ds).to_netcdf(path, mode=mode, group=group, engine="netcdf4")
            mode = "a"


def pinned(ds: xr.Dataset) -> xr.Dataset:
    """A shallow copy in which float variables without ``_FillValue`` keep none when written
    (xarray would otherwise add ``_FillValue = NaN``)."""
    out = ds.copy(deep=False)
    for v in out.variables.values():
        if "_FillValue" not in v.encoding and "_FillValue" not in v.attrs:
            v.encoding = {**v.encoding, "_FillValue": None}
    return out
