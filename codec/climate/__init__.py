"""Climate fields: reading netCDF/GRIB through xarray, the VAEformer field codec, error bounds.

This module stays import-light (no xarray): :mod:`codec.api` uses its magic numbers to recognize
climate inputs before deciding what to import.
"""

import os

NETCDF_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")
GRIB_MAGIC = b"GRIB"
CLIMATE_MAGICS = (*NETCDF_MAGICS, GRIB_MAGIC)


def is_climate_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a readable file that starts with netCDF (classic or HDF5) or GRIB magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(8).startswith(CLIMATE_MAGICS)
    except OSError:
        return False
