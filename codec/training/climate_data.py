"""Training data for the climate codec: every 2-D field of a folder of netCDF/GRIB files, packed once.

Reading GRIB is slow (about a minute per GFS file), so :func:`pack` extracts every field once into
a compressed ``.npz`` (normalized float16 fields, validity masks, latitudes, names).  The pack is
small enough to carry to a GPU machine; ``codec train vaeformer --data`` accepts it or a folder.

Split: every field of the files in :data:`HIGHRES_VALIDATION` is validation (a split by file); elsewhere,
for a variable with >= 10 fields (time steps, levels) its last 10 % are validation and among
single-field variables one in ten (by a stable hash of its name) is validation.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..climate.fieldcodec import field_stats, normalize
from ..errors import CodecError, InputError
from ..fileio import write_atomic_with

CLIMATE_SUFFIXES = {".nc", ".nc4", ".cdf", ".netcdf", ".grb", ".grib", ".grb2", ".grib2", ".h5"}


@dataclass
class Field:
    """One normalized training field."""

    values: np.ndarray  # float16 [H, W], zero mean / unit variance over valid points, 0 where missing
    valid: np.ndarray  # bool [H, W]
    lat: np.ndarray  # float32 [H], degrees
    name: str
    validation: bool


HIGHRES_VALIDATION = (
    "aifs-single-t500.grib2",
    "gfs.complex.grib2",
    "t850.grb",
    "ecmwf-ifs-oper-surface.grib2",
    "20250912120000-0h-oper-fc.grib2.89",
    "era5_2mt.nc",
    "data.nc",
    "z500.grib",
    "t850.grib",
)
"""Files of ``../shared/data/climate/highres`` held out whole (a split by file): global 0.25 degree t500, gh500, an ERA5
2 m temperature anomaly, IFS surface fields and precipitation rate; ERA5 2 m temperature over Europe (int16 netCDF);
1 degree t on three levels (int16 netCDF); 0.5 degree z500 and t850."""


def is_validation_file(name: str) -> bool:
    """Whether every field of the file called ``name`` is held out (:data:`HIGHRES_VALIDATION`)."""
    return name in HIGHRES_VALIDATION


def is_validation(var: str, index: int, n_fields: int) -> bool:
    """Whether field ``index`` of ``n_fields`` of variable ``var`` is held out.

    The split ignores the file name, so one variable stored in two files (GRIB1 and GRIB2) splits alike.
    """
    if n_fields >= 10:
        return index >= n_fields - math.ceil(n_fields / 10)
    return zlib.crc32(var.encode()) % 10 == 0


def extract(folder: str | Path, log=print) -> list[Field]:  # noqa: ANN001
    """Every field of every readable climate file in ``folder`` (unreadable ones are reported and skipped)."""
    from ..climate import dataset

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in CLIMATE_SUFFIXES)
    if not files:
        raise InputError(f"no netCDF/GRIB files in {folder}")
    out: list[Field] = []
    for path in files:
        try:
            with dataset.open_source(path) as source:
                for var in source.variables:
                    lat = source.latitudes(var).astype(np.float32)
                    for i, field in enumerate(source.fields(var)):
                        mean, std = field_stats(field)
                        if np.isnan(mean):
                            continue
                        valid = ~np.isnan(field)
                        norm = normalize(field, mean, std).astype(np.float16)
                        held_out = is_validation_file(path.name) or is_validation(var.name, i, var.n_fields)
                        out.append(Field(norm, valid, lat, f"{path.name}/{var.name}[{i}]", held_out))
        except CodecError as exc:
            log(f"skipping {path.name}: {exc}")
    return out


def pack(fields: list[Field], path: str | Path) -> None:
    """Save fields to one compressed ``.npz``."""
    arrays = {}
    for i, f in enumerate(fields):
        arrays[f"v{i}"], arrays[f"m{i}"], arrays[f"l{i}"] = f.values, f.valid, f.lat
    names = np.array([f.name for f in fields])

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, names=names, validation=np.array([f.validation for f in fields]), **arrays)

    write_atomic_with(path, write)


def unpack(path: str | Path) -> list[Field]:
    """Inverse of :func:`pack`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return [Field(z[f"v{i}"], z[f"m{i}"], z[f"l{i}"], str(n), bool(v)) for i, (n, v) in enumerate(zip(z["names"], z["validation"], strict=True))]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read field pack {path}: {exc}") from None


def default_cache(data: str | Path) -> Path | None:
    """Where the pack of a data folder is cached (keyed by its path, file sizes and times); None for a pack."""
    data = Path(data)
    if data.suffix == ".npz":
        return None
    stamp = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(data.iterdir()) if p.is_file())
    key = f"{zlib.crc32(f'{data.resolve()}|{stamp}'.encode()):08x}"
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "codec"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"fields-{key}.npz"


def load(data: str | Path, cache: Path | None = None) -> list[Field]:
    """Fields from a pack (``.npz``) or a folder of climate files (packed to ``cache`` if given)."""
    data = Path(data)
    if data.suffix == ".npz":
        return unpack(data)
    if cache is not None and cache.exists():
        return unpack(cache)
    fields = extract(data)
    if cache is not None:
        pack(fields, cache)
    return fields


def lat_weights(lat: np.ndarray) -> np.ndarray:
    """cos(latitude) weights, normalized to mean 1 (the field's standard area weighting)."""
    w = np.cos(np.deg2rad(lat.astype(np.float64))).clip(min=0)
    return (w / w.mean()).astype(np.float32) if w.mean() > 0 else np.ones_like(lat, np.float32)


class FieldCrops:
    """Random crops of ``crop_h`` x ``crop_w`` with a random longitude roll; smaller fields are padded as missing.

    A batch is [B, 3, h, w]: the normalized field, its validity mask, and the cos-latitude weight row.
    """

    def __init__(self, fields: list[Field], crop: tuple[int, int], seed: int) -> None:
        self.fields = [f for f in fields if not f.validation]
        if not self.fields:
            raise InputError("no training fields")
        self.crop = crop
        self.generator = torch.Generator().manual_seed(seed)

    def _randint(self, n: int) -> int:
        return int(torch.randint(max(n, 1), (1,), generator=self.generator))

    def batch(self, size: int) -> torch.Tensor:
        """A float batch [size, 3, crop_h, crop_w]."""
        ch, cw = self.crop
        out = torch.zeros(size, 3, ch, cw)
        for b in range(size):
            f = self.fields[self._randint(len(self.fields))]
            h, w = f.values.shape
            rolled = self._randint(w)
            y, x = self._randint(h - ch + 1), self._randint(w - cw + 1)
            vals = np.roll(f.values, -rolled, axis=1)[y : y + ch, x : x + cw]
            valid = np.roll(f.valid, -rolled, axis=1)[y : y + ch, x : x + cw]
            weight = lat_weights(f.lat)[y : y + ch]
            hh, ww = vals.shape
            out[b, 0, :hh, :ww] = torch.from_numpy(vals.astype(np.float32))
            out[b, 1, :hh, :ww] = torch.from_numpy(valid.astype(np.float32))
            out[b, 2, :hh, :ww] = torch.from_numpy(weight)[:, None]
        return out


def validation_fields(fields: list[Field], limit: int) -> list[Field]:
    """Up to ``limit`` validation fields spread over the whole validation split."""
    val = [f for f in fields if f.validation]
    if len(val) <= limit:
        return val
    return [val[i] for i in np.linspace(0, len(val) - 1, limit).round().astype(int)]
