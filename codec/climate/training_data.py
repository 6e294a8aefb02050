"""``codec.ClimateArchive``: a compressed climate file as a PyTorch dataset of normalized time steps.

::

    ds = codec.ClimateArchive("era5.cra", variables=["t", "z"], select={"level": [500, 850]})
    x = ds[0]                     # float32 tensor [C, H, W]: every channel (variable x level) of step 0
    ds.channels, ds.mean, ds.std  # channel names and the normalization, in the data's units
    pairs = codec.ClimateArchive("era5.cra", lead=1)   # items (step i, step i + 1) for a forecast model

Item ``i`` decodes only the fields of time step ``i`` (each 2-D field is decoded on its own, see
:mod:`codec.climate.archive`).  Channels are the selected variables in order, each with its other leading
dimensions (levels) flattened in C order; values are ``(x - mean) / std`` per channel with missing points
set to 0.  The per-channel mean and standard deviation pool every field of the channel: for VAEformer
files they come from the record headers (each field stores its own mean and std), so opening costs no
decoding; other files estimate them from up to :data:`SAMPLE_STEPS` evenly spaced steps.

The file is opened lazily in each process, so the dataset pickles without its data and works with
``DataLoader(num_workers > 0)``: every worker opens the file and loads the model once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from .. import container, fileio
from ..errors import InputError

SAMPLE_STEPS = 4


class ClimateArchive(Dataset):
    """Time steps of a compressed climate file (``.cra``) as normalized ``[C, H, W]`` float32 tensors.

    ``variables``: grid variables to stack (default all, in file order); ``select``: an
    ``xarray.Dataset.sel`` selection such as ``{"level": [500, 850]}``; ``dim``: the time dimension;
    ``lead``: with ``lead > 0`` items are pairs ``(step i, step i + lead)``; ``transform``: applied to each
    tensor; ``weights``: the weights file the archive was made with, if not a shipped checkpoint.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        variables: Sequence[str] | None = None,
        select: dict[str, Any] | None = None,
        dim: str = "time",
        lead: int = 0,
        transform: Callable[[torch.Tensor], Any] | None = None,
        weights: str | os.PathLike | None = None,
    ) -> None:
        if lead < 0:
            raise InputError(f"lead must be >= 0, got {lead}")
        self.path, self.weights, self.dim, self.lead, self.transform = str(path), weights, dim, lead, transform
        self._select = dict(select or {})
        self._pid: int | None = None
        archive, full = self._open_archive()
        self.variables = list(variables) if variables is not None else [str(v) for v in full.data_vars if full[v].ndim >= 3]
        ds = self._selected(full)
        self.channels = [name for v in self.variables for name in _channel_names(ds[v], dim)]
        self.steps = ds.sizes[dim]
        self.shape = ds[self.variables[0]].shape[-2:]
        moments = _header_moments(archive, full, self.variables, self._select, dim)
        self.mean, self.std = moments if moments is not None else _sampled_moments(ds, self.variables, dim, self.steps)
        self._ds = ds

    def __len__(self) -> int:
        return max(self.steps - self.lead, 0)

    def __getitem__(self, index: int) -> Any:
        if not -len(self) <= index < len(self):
            raise IndexError(f"time step {index} out of range for {len(self)} items")
        index %= len(self)
        if self.lead == 0:
            return self._item(index)
        return self._item(index), self._item(index + self.lead)

    def _item(self, step: int) -> Any:
        x = torch.from_numpy(self.normalize(self.step(step)))
        return self.transform(x) if self.transform is not None else x

    def step(self, step: int) -> np.ndarray:
        """Time step ``step`` in the data's units: float32 ``[C, H, W]``, NaN where missing."""
        import dask

        ds = self._dataset()
        with dask.config.set(scheduler="synchronous"):  # fields decode one by one under the archive's lock anyway
            parts = [_stacked(ds[v].isel({self.dim: step}).values, self.shape) for v in self.variables]
        return np.concatenate(parts).astype(np.float32)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` per channel, missing points set to 0 (float32)."""
        return np.nan_to_num((x - self.mean[:, None, None]) / self.std[:, None, None], nan=0.0).astype(np.float32)

    def denormalize(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """A normalized ``[C, H, W]`` (or ``[N, C, H, W]``) tensor back in the data's units."""
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return (x * self.std[:, None, None] + self.mean[:, None, None]).astype(np.float32)

    def _open_archive(self) -> tuple[Any, xr.Dataset]:
        from .coding import open_archive

        c = container.unpack(fileio.read_input(self.path))
        if c.kind != "climate":
            raise InputError(f"{self.path} holds {c.kind} data, not a climate archive (ImageArchive reads image packs)")
        archive = open_archive(c, self.weights)
        ds = archive.dataset()
        if not isinstance(ds, xr.Dataset):
            raise InputError(f"{self.path} holds groups (a GRIB hypercube); ClimateArchive reads files of one group")
        self._pid = os.getpid()
        return archive, ds

    def _selected(self, ds: xr.Dataset) -> xr.Dataset:
        missing = [v for v in self.variables if v not in ds.data_vars]
        if missing or not self.variables:
            raise InputError(f"no variable {missing[0] if missing else '(none selected)'} in {self.path}; it has {', '.join(map(str, ds.data_vars))}")
        for v in self.variables:
            if self.dim not in ds[v].dims[:-2]:
                raise InputError(f"{v} has no time dimension {self.dim!r} (dims {ds[v].dims}); pass dim=")
            if ds[v].shape[-2:] != ds[self.variables[0]].shape[-2:]:
                raise InputError(f"{v} is on a {ds[v].shape[-2:]} grid, {self.variables[0]} on {ds[self.variables[0]].shape[-2:]}: channels need one grid")
        try:
            return ds[self.variables].sel(**self._select)
        except (KeyError, ValueError) as exc:
            raise InputError(f"cannot select {self._select} in {self.path}: {exc}") from None

    def _dataset(self) -> xr.Dataset:
        if self._pid != os.getpid():  # a new process (DataLoader worker): its own file and model
            self._ds = self._selected(self._open_archive()[1])
        return self._ds

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_ds=None, _pid=None)
        return state


def _channel_names(da: xr.DataArray, dim: str) -> list[str]:
    """``name`` or ``name/level=500`` for each channel of a variable (its non-time leading dims in C order)."""
    others = [d for d in da.dims[:-2] if d != dim]
    names = [str(da.name)]
    for d in others:
        values = da[d].values if d in da.coords else np.arange(da.sizes[d])
        names = [f"{n}/{d}={v}" for n in names for v in values]
    return names


def _stacked(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.asarray(values, np.float64).reshape(-1, *shape)


def _pooled(means: np.ndarray, stds: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the union of equally sized fields with these means and stds (NaN fields skipped)."""
    mean = np.nanmean(means, axis=axis)
    var = np.nanmean(stds**2 + means**2, axis=axis) - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))


def _header_moments(archive: Any, full: xr.Dataset, variables: list[str], select: dict, dim: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel mean and std from the record headers (VAEformer files), or None if the archive has none."""
    if not hasattr(archive, "field_moments"):
        return None
    means, stds = [], []
    for v in variables:
        da = full[v]
        lead_dims = da.dims[:-2]
        m = archive.field_moments(v).reshape(*da.shape[:-2], 2)
        coords = {d: full[d] for d in lead_dims if d in full.coords}
        moments = xr.DataArray(m, dims=(*lead_dims, "moment"), coords=coords)
        moments = moments.sel(**{k: s for k, s in select.items() if k in lead_dims}).transpose(dim, ...)
        mean, std = _pooled(moments[..., 0].values, moments[..., 1].values, axis=0)
        means.append(mean.ravel())
        stds.append(std.ravel())
    return _finite(np.concatenate(means), np.concatenate(stds))


def _sampled_moments(ds: xr.Dataset, variables: list[str], dim: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std estimated from up to :data:`SAMPLE_STEPS` evenly spaced time steps."""
    picks = np.unique(np.linspace(0, max(steps - 1, 0), min(SAMPLE_STEPS, steps)).round().astype(int))
    shape = ds[variables[0]].shape[-2:]
    x = np.stack([np.concatenate([_stacked(ds[v].isel({dim: int(i)}).values, shape) for v in variables]) for i in picks])
    return _finite(np.nanmean(x, axis=(0, 2, 3)), np.nanstd(x, axis=(0, 2, 3)))


def _finite(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channels without a valid point get mean 0; constant ones std 1 (so normalizing never divides by 0)."""
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)
