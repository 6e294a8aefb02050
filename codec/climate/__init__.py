"""Climate fields: reading netCDF/GRIB through xarray, the VAEformer field codec, error bounds.

This module stays import-light (no xarray): :mod:`codec.api` uses its magic numbers to recognize
climate inputs before deciding what to import.
"""

NETCDF_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")
GRIB_MAGIC = b"GRIB"
