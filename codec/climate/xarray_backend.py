"""xarray backend: ``xr.open_dataset("era5.cra", engine="codec")`` reads a compressed file lazily.

Registered under the ``xarray.backends`` entry point, so xarray also recognizes codec files by
their magic bytes.  Fields are decoded on access (one dask chunk per 2-D field).
"""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr
from xarray.backends import BackendEntrypoint

from .. import container, fileio

# Only the standard library and the container parser at import: xarray imports every installed
# backend when it scans for engines, so torch and the models load when a codec file is opened.


def _read(filename_or_obj: object) -> container.Container:
    if not isinstance(filename_or_obj, str | os.PathLike):
        raise TypeError("the codec backend opens paths of codec files")
    c = container.unpack(fileio.read_input(filename_or_obj))
    if c.kind != "climate":
        raise ValueError(f"{filename_or_obj} holds {c.kind} data, not a climate dataset")
    return c


class CodecBackendEntrypoint(BackendEntrypoint):
    """Open codec climate files with xarray (``engine="codec"``); ``weights=`` for non-shipped weights."""

    description = "Learned-compression climate files written by `codec encode` (VAEformer)"
    url = (Path(__file__).resolve().parents[2] / "README.md").as_uri()  # the project's documentation (no hosted site)
    supports_groups = True
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "weights")

    def open_dataset(self, filename_or_obj, *, drop_variables=None, weights=None) -> xr.Dataset:  # noqa: ANN001
        """The lazily decoded dataset (the root group, for files made from GRIB hypercubes)."""
        from .coding import open_container

        out = open_container(_read(filename_or_obj), weights)
        ds = out if isinstance(out, xr.Dataset) else out.to_dataset()
        return ds.drop_vars(drop_variables or [], errors="ignore")

    def open_datatree(self, filename_or_obj, *, weights=None, **kwargs) -> xr.DataTree:  # noqa: ANN001, ANN003
        """Every group of the file as a tree (GRIB hypercubes are groups)."""
        from .coding import open_container

        out = open_container(_read(filename_or_obj), weights)
        return out if isinstance(out, xr.DataTree) else xr.DataTree(out)

    def guess_can_open(self, filename_or_obj) -> bool:  # noqa: ANN001
        """True for paths that start with the codec magic bytes."""
        try:
            with open(filename_or_obj, "rb") as f:
                return container.looks_like_container(f.read(len(container.MAGIC)))
        except (OSError, TypeError):
            return False
