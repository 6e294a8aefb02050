"""Climate files at the model level: encode a dataset with the model the caller picks, open a file lazily.

The file layout itself lives in :mod:`codec.climate.archive` (VAEformer: one record per 2-D field)
and :mod:`codec.climate.cra5_archive` (the official CRA5 network: all channels of a step together).
"""

from __future__ import annotations

import os
from functools import partial

from .. import container, registry
from ..errors import InputError
from ..models import CRA5_MODEL
from ..runtime import codec_threads, inference, model_for, model_id, run


def encode(data, model, quality, weights, max_abs_error, progress, scheduler=None, workers=1) -> bytes:  # noqa: ANN001
    """A climate file of ``data`` (netCDF/GRIB path or ``xarray.Dataset``); arguments as :func:`codec.api.encode`."""
    from . import archive, dataset, errorbound

    try:
        bounds = errorbound.parse_bounds(max_abs_error)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    # a weights file names its own model; without one (and without --model) the default climate model
    loaded = registry.load(model or (None if weights is not None else registry.default_model("climate")), quality, weights)
    if loaded.spec.kind != "climate":
        raise InputError(f"model {loaded.spec.name} does not compress climate data (climate models: vaeformer, {CRA5_MODEL})")
    if loaded.spec.name == CRA5_MODEL:
        return _encode_cra5(data, loaded, quality, bounds, progress, scheduler)
    bar = _progress_bar if progress else None
    with dataset.open_source(data) as source, inference():
        return archive.encode(source, loaded.model.at_level(loaded.quality), model_id(loaded), bounds, bar, scheduler, workers, codec_threads())


def _encode_cra5(data, loaded: registry.LoadedModel, quality, bounds, progress: bool, scheduler) -> bytes:  # noqa: ANN001
    """The official CRA5 model: all channels of a time step coded together (:mod:`codec.climate.cra5_archive`)."""
    from . import cra5_archive, dataset

    if quality is not None:
        raise InputError(f"quality (--quality) does not apply to {CRA5_MODEL}: the published weights have one rate")
    if scheduler is not None:
        raise InputError(f"scheduler (--dask) does not apply to {CRA5_MODEL}: it codes one time step (all channels) at a time")
    bar = partial(_progress_bar, unit="step") if progress else None
    with dataset.open_source(data) as source, inference():
        return cra5_archive.encode(source, loaded.model, model_id(loaded), bounds=bounds, progress=bar)


def _progress_bar(items, total: int, unit: str = "field"):  # noqa: ANN001, ANN202
    from tqdm import tqdm

    return tqdm(items, total=total, unit=unit, desc="encode", leave=False)


def open_archive(c: container.Container, weights: str | os.PathLike | None = None):  # noqa: ANN201
    """The random-access reader of a climate container (:class:`archive.CompressedArchive`, or the CRA5 one)."""
    from . import archive, cra5_archive

    loaded = model_for(c, weights)
    if loaded.spec.name == CRA5_MODEL:
        return cra5_archive.Cra5Archive(c, loaded.model, run)
    return archive.CompressedArchive(c, loaded.model.at_level(loaded.quality), run)


def open_container(c: container.Container, weights: str | os.PathLike | None = None):  # noqa: ANN201
    """The lazily decoded ``xarray.Dataset`` (``DataTree`` for grouped sources) of a climate container."""
    return open_archive(c, weights).dataset()
