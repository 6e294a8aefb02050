"""Climate fields: reading netCDF/GRIB through xarray, the VAEformer field codec, error bounds."""
