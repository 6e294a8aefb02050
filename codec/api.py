"""The Python API: ``encode(image or dataset) -> bytes``, ``decode(bytes)``, ``info(bytes) -> dict``.

A dispatcher by media kind and nothing more: images go to :mod:`codec.image.coding`, climate data to
:mod:`codec.climate.coding`; ``info`` is :mod:`codec.describe` (no model needed).  Images decode to
numpy arrays; climate datasets (netCDF/GRIB paths or ``xarray.Dataset``) decode to a lazily decoded
``xarray.Dataset``.  File checks and atomic writes live in :mod:`codec.fileio`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import container
from .climate import coding as climate_coding
from .climate import is_climate_file
from .describe import info  # noqa: F401 - part of this module's public API
from .errors import InputError, ModelError
from .image import coding as image_coding
from .image import io as image_io
from .image import resilient
from .image.coding import LostPackets  # noqa: F401 - the warning decode() gives, part of this module's API
from .image.packets import is_erasable
from .video.summary import is_video_file


def is_climate_input(obj: object) -> bool:
    """True for an ``xarray.Dataset`` or a path to a netCDF (classic or HDF5) or GRIB file."""
    if type(obj).__name__ == "Dataset" and type(obj).__module__.startswith("xarray"):
        return True
    return isinstance(obj, str | os.PathLike) and is_climate_file(obj)


def encode(
    data: object,
    model: str | None = None,
    quality: int | None = None,
    weights: str | os.PathLike | None = None,
    max_abs_error: str | float | dict | None = None,
    progress: bool = False,
    bpp: float | None = None,
    packet_rows: int | None = None,
    packet_lattice: int | None = None,
    packet_parity: float | None = None,
    scheduler: object = None,
    workers: int = 1,
    gop: int | None = None,
    intra_only: bool = False,
    effort: int = 0,
) -> bytes:
    """Compress an image or a climate dataset to bytes.

    Images: a path, PIL image, uint8/float numpy array [H, W(, C)] or tensor [C, H, W].  With a
    ladder model (``model="vqgan"``) ``quality`` is the level, or ``bpp`` picks the highest level
    whose file stays at or under that many bits per pixel, and ``packet_rows`` makes the file
    resilient: independently decodable packets of that many token rows (see :mod:`codec.image.resilient`),
    interleaved ``packet_lattice`` x ``packet_lattice`` (default 2; 1 = packets of whole token rows),
    with ``packet_parity`` x their number of Reed-Solomon parity packets (rounded up; any that many lost
    packets are rebuilt exactly, see :mod:`codec.image.parity`).  ``effort`` (McQuic) searches the finest
    indices against the decoder for that many steps (:mod:`codec.models.index_search`): a slower encode
    for a better decode at about the same size; decoding is unchanged.
    Video: a path with a video suffix (.mp4, .mkv, .webm, .avi, .y4m, ...), coded with McQuic (or ``model="vqgan"``) at ``quality``
    (or, with ``bpp``, each GOP at the highest level that keeps the file so far within that many bits per pixel)
    in groups of ``gop`` frames (default 32), inter frames through the temporal prior unless ``intra_only``.
    Climate: a netCDF/GRIB path or an ``xarray.Dataset``; ``max_abs_error`` (a number, or
    ``{"t": 0.1}`` / ``"t=0.1,z=10"`` per variable) guarantees a pointwise error bound; with a dask
    ``scheduler`` (``"threads"``, ``"processes"`` or a ``distributed.Client``) ``workers`` fields are
    coded at a time in parallel, giving the same bytes as the sequential encoder.  With the official
    CRA5 weights (``weights="cra5_268v_300k.pth"``) the dataset must hold exactly the model's 268 ERA5
    channels, coded one time step at a time (:mod:`codec.climate.cra5_archive`).
    """
    from .video.summary import is_video_path

    if is_video_path(data):
        from .video import clip

        if max_abs_error is not None or packet_rows is not None or scheduler is not None or effort:
            raise InputError("max_abs_error, packet_rows, scheduler and effort do not apply to video")
        return b"".join(clip.encode(data, model, quality, weights, clip.file.DEFAULT_GOP if gop is None else gop, intra_only, bpp=bpp))
    if gop is not None or intra_only:
        raise InputError("gop and intra_only (--gop, --intra-only) apply to video")
    if not isinstance(effort, int) or isinstance(effort, bool) or effort < 0:
        raise InputError(f"effort (--effort) must be a whole number >= 0, got {effort!r}")
    if is_climate_input(data):
        if effort:
            raise InputError("effort (--effort) applies to images, not climate data")
        if bpp is not None or packet_rows is not None or packet_lattice is not None or packet_parity is not None:
            raise InputError("bpp, packet_rows, packet_lattice and packet_parity (--bpp, --packet-rows, --packet-lattice, --parity) apply to images, not climate data")
        return climate_coding.encode(data, model, quality, weights, max_abs_error, progress, scheduler, workers)
    if scheduler is not None:
        raise InputError("dask scheduling applies to climate archives, not images")
    if max_abs_error is not None:
        raise InputError("max_abs_error (--max-abs-error) applies to climate data, not images")
    if bpp is not None and quality is not None:
        raise InputError("give either a quality/level or a target bpp, not both")
    if bpp is not None and not bpp > 0:
        raise InputError(f"target bpp must be positive, got {bpp}")
    return image_coding.encode(data, model, quality, weights, bpp, packet_rows, packet_lattice, packet_parity, effort)


def decode(  # noqa: ANN201 - array or Dataset
    data: bytes | container.Container, weights: str | os.PathLike | None = None, recover: bool = True, recovery_weights: str | os.PathLike | None = None
):
    """Decompress bytes from :func:`encode` (or their container, as ``container.unpack(data, erasable=is_erasable)`` reads it).

    Images give uint8 pixels [H, W] (L) or [H, W, C] (LA, RGB, RGBA); climate files give a lazily
    decoded ``xarray.Dataset`` (each field is decoded when its values are first needed), or an
    ``xarray.DataTree`` when the source had groups (GRIB hypercubes become groups); videos give a
    :class:`codec.video.clip.VideoFrames` (iterate for uint8 [H, W, 3] frames decoded one GOP at a time,
    ``to_array()`` for [T, H, W, 3]).

    Resilient VQGAN-cluster files decode even with lost packets: the missing indices are restored by
    the recovery transformer (``recovery_weights``, default the shipped one) or, with ``recover=False``
    or without a recovery model for the file's weights, filled with the level's most frequent codeword;
    a :class:`LostPackets` warning says which (or that lost packets were rebuilt exactly from the file's
    parity packets).
    """
    if recovery_weights is not None and not Path(recovery_weights).is_file():
        raise ModelError(f"recovery weights not found: {recovery_weights}")
    if not isinstance(data, container.Container) and is_video_file(bytes(data)):
        from .video.clip import VideoFrames

        return VideoFrames(bytes(data), weights)
    c = data if isinstance(data, container.Container) else container.unpack(bytes(data), erasable=is_erasable)
    if c.kind == "climate":
        return climate_coding.open_container(c, weights)
    return image_coding.decode(c, weights, recover, recovery_weights)


def open_dataset(path: str | os.PathLike, weights: str | os.PathLike | None = None, **kwargs: object):  # noqa: ANN201 - xarray.Dataset
    """The lazily decoded dataset of a compressed climate file: ``xr.open_dataset(path, engine="codec")``.

    Each 2-D field is one dask chunk, decoded when its values are first needed, so a selection such as
    ``ds.t.isel(time=0).values`` decodes only the fields it touches.  ``kwargs`` go to
    ``xarray.open_dataset`` (e.g. ``drop_variables``).
    """
    import xarray as xr

    return xr.open_dataset(path, engine="codec", weights=weights, **kwargs)


def damage(data: bytes, drop: float, seed: int = 0, independent: bool = False) -> bytes:
    """Simulate a lossy channel: erase ``drop`` of a resilient file's intact packets, deterministically per ``seed``.

    With ``independent``, each packet is lost with probability ``drop`` on its own (an i.i.d. channel).
    """
    return resilient.damage(bytes(data), drop, seed, independent)


def image_bytes(image: np.ndarray, path: str | os.PathLike) -> bytes:
    """``image`` encoded in the file format implied by ``path`` (for ``codec decode -o``)."""
    return image_io.encode_image_file(image, path)
