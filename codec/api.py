"""The Python API: ``encode(image or dataset) -> bytes``, ``decode(bytes)``, ``info(bytes) -> dict``.

Images decode to numpy arrays; climate datasets (netCDF/GRIB paths or ``xarray.Dataset``) decode
to a lazily decoded ``xarray.Dataset``.  File checks and atomic writes live in :mod:`codec.fileio`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch

from . import container, imageio, parity, registry, resilient
from .climate import GRIB_MAGIC, NETCDF_MAGICS
from .describe import info  # noqa: F401 - part of this module's public API
from .errors import CorruptStreamError, FormatError, InputError, ModelError
from .models.mcquic import pad_to_multiple
from .models.vaeformer_official import MODEL_NAME as CRA5_OFFICIAL

DEFAULT_THREADS = 2
"""Torch threads used for inference.  Fixed (not the caller's setting) so bytes and decodes are
identical whatever ``torch.set_num_threads`` says; override with the ``CODEC_THREADS`` variable."""


def _codec_threads() -> int:
    """The codec's own torch thread count (``CODEC_THREADS``, default 2)."""
    try:
        return max(1, int(os.environ.get("CODEC_THREADS", DEFAULT_THREADS)))
    except ValueError:
        raise InputError("CODEC_THREADS must be an integer") from None


@contextmanager
def _inference() -> Iterator[None]:
    """Run networks with the codec's own thread count and no autograd; restore the caller's threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(_codec_threads())
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(previous)


def _run(fn):  # noqa: ANN001, ANN202 - passes a callable through the inference context
    with _inference():
        return fn()


CLIMATE_MAGICS = (*NETCDF_MAGICS, GRIB_MAGIC)


def is_climate_input(obj: object) -> bool:
    """True for an ``xarray.Dataset`` or a path to a netCDF (classic or HDF5) or GRIB file."""
    if type(obj).__name__ == "Dataset" and type(obj).__module__.startswith("xarray"):
        return True
    if not isinstance(obj, str | os.PathLike):
        return False
    try:
        with open(obj, "rb") as f:
            return f.read(8).startswith(CLIMATE_MAGICS)
    except OSError:
        return False


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
) -> bytes:
    """Compress an image or a climate dataset to bytes.

    Images: a path, PIL image, uint8/float numpy array [H, W(, C)] or tensor [C, H, W].  With a
    ladder model (``model="vqgan"``) ``quality`` is the level, or ``bpp`` picks the highest level
    whose file stays at or under that many bits per pixel, and ``packet_rows`` makes the file
    resilient: independently decodable packets of that many token rows (see :mod:`codec.resilient`),
    interleaved ``packet_lattice`` x ``packet_lattice`` (default 2; 1 = packets of whole token rows),
    with ``packet_parity`` x their number of Reed-Solomon parity packets (rounded up; any that many lost
    packets are rebuilt exactly, see :mod:`codec.parity`).
    Climate: a netCDF/GRIB path or an ``xarray.Dataset``; ``max_abs_error`` (a number, or
    ``{"t": 0.1}`` / ``"t=0.1,z=10"`` per variable) guarantees a pointwise error bound; with a dask
    ``scheduler`` (``"threads"``, ``"processes"`` or a ``distributed.Client``) ``workers`` fields are
    coded at a time in parallel, giving the same bytes as the sequential encoder.  With the official
    CRA5 weights (``weights="cra5_268v_300k.pth"``) the dataset must hold exactly the model's 268 ERA5
    channels, coded one time step at a time (:mod:`codec.climate.cra5_archive`).
    """
    if is_climate_input(data):
        if bpp is not None or packet_rows is not None or packet_lattice is not None or packet_parity is not None:
            raise InputError("--bpp, --packet-rows, --packet-lattice and --parity apply to images, not climate data")
        return _encode_climate(data, model, quality, weights, max_abs_error, progress, scheduler, workers)
    if scheduler is not None:
        raise InputError("dask scheduling applies to climate archives, not images")
    if max_abs_error is not None:
        raise InputError("--max-abs-error applies to climate data, not images")
    if bpp is not None and quality is not None:
        raise InputError("give either a quality/level or a target bpp, not both")
    if bpp is not None and not bpp > 0:
        raise InputError(f"target bpp must be positive, got {bpp}")
    return _encode_image(data, model, quality, weights, bpp, packet_rows, packet_lattice, packet_parity)


def _encode_climate(data, model, quality, weights, max_abs_error, progress, scheduler=None, workers=1) -> bytes:  # noqa: ANN001
    from .climate import archive, dataset, errorbound

    try:
        bounds = errorbound.parse_bounds(max_abs_error)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    # a weights file names its own model; without one (and without --model) the default climate model
    loaded = registry.load(model or (None if weights is not None else registry.default_model("climate")), quality, weights)
    if loaded.spec.kind != "climate":
        raise InputError(f"model {loaded.spec.name} does not compress climate data (climate models: vaeformer, {CRA5_OFFICIAL})")
    if loaded.spec.name == CRA5_OFFICIAL:
        return _encode_cra5(data, loaded, quality, bounds, progress, scheduler)
    bar = _progress_bar if progress else None
    with dataset.open_source(data) as source, _inference():
        return archive.encode(source, loaded.model.at_level(loaded.quality), _model_id(loaded), bounds, bar, scheduler, workers, _codec_threads())


def _encode_cra5(data, loaded: registry.LoadedModel, quality, bounds, progress: bool, scheduler) -> bytes:  # noqa: ANN001
    """The official CRA5 model: all channels of a time step coded together (:mod:`codec.climate.cra5_archive`)."""
    from .climate import cra5_archive, dataset

    if quality is not None:
        raise InputError(f"--quality does not apply to {CRA5_OFFICIAL}: the published weights have one rate")
    if scheduler is not None:
        raise InputError(f"--dask does not apply to {CRA5_OFFICIAL}: it codes one time step (all channels) at a time")
    bar = partial(_progress_bar, unit="step") if progress else None
    with dataset.open_source(data) as source, _inference():
        return cra5_archive.encode(source, loaded.model, _model_id(loaded), bounds=bounds, progress=bar)


def _progress_bar(items, total: int, unit: str = "field"):  # noqa: ANN001, ANN202
    from tqdm import tqdm

    return tqdm(items, total=total, unit=unit, desc="encode", leave=False)


def _model_id(loaded: registry.LoadedModel) -> dict:
    return {"name": loaded.spec.name, "quality": loaded.quality, "weights_hash": loaded.weights_hash}


def _encode_image(
    image: object,
    model: str | None,
    quality: int | None,
    weights: str | os.PathLike | None,
    bpp: float | None = None,
    packet_rows: int | None = None,
    packet_lattice: int | None = None,
    packet_parity: float | None = None,
) -> bytes:
    pixels = imageio.to_array(image)
    mode = imageio.MODES_BY_CHANNELS[pixels.shape[2]]
    # a weights file names its own model; without one (and without --model) the default image model
    loaded = registry.load(model or (None if weights is not None else registry.default_model("image")), quality, weights)
    if loaded.spec.kind != "image":
        raise InputError(f"model {loaded.spec.name} does not compress images")
    if bpp is not None and not loaded.spec.ladder:
        raise InputError(f"--bpp needs a model with a bitrate ladder (mcquic, vqgan), not {loaded.spec.name}")
    if packet_rows is not None and not loaded.spec.packets:
        raise InputError(f"--packet-rows needs a model with resilient packets (vqgan), not {loaded.spec.name}")
    for given, flag in ((packet_lattice, "--packet-lattice"), (packet_parity, "--parity")):
        if given is not None and packet_rows is None:
            raise InputError(f"{flag} needs --packet-rows")
    layout = None if packet_rows is None else resilient.PacketLayout(packet_rows, resilient.LATTICE if packet_lattice is None else packet_lattice)
    rgb, alpha = imageio.split_alpha(pixels)
    h, w = rgb.shape[:2]
    net = loaded.model
    _check_pixels(net, h, w)
    if packet_parity is not None:  # a bad fraction, or too many packets for the code, fails before any coding
        parity.parity_count(len(layout.slices(-(-h // net.pad_multiple), -(-w // net.pad_multiple))), packet_parity)
    extra = [("alpha", imageio.png_bytes(alpha))] if alpha is not None else []

    def pack(strings: list[bytes], level: int | None) -> bytes:
        model_id, meta = _model_id(loaded), {"mode": mode}
        if level is not None:
            model_id["quality"] = level
            meta.update(level=level, **net.level_meta(level))
        if packet_rows is None:
            streams = [(f"l{i}", s) for i, s in enumerate(strings)] + extra
        else:  # packets last: a truncated file loses packets, never the (non-erasable) alpha plane
            meta.update(layout.meta())
            streams = extra + [(f"p{i}", s) for i, s in enumerate(strings)]
            if packet_parity is not None:
                checks = parity.encode(strings, parity.parity_count(len(strings), packet_parity))
                meta["packet_parity"] = len(checks)
                streams += [(f"f{j}", s) for j, s in enumerate(checks)]
        return container.pack(
            container.Container(kind="image", model=model_id, shape=list(pixels.shape), dtype="uint8", streams=streams, meta=meta)
        )

    with _inference():
        x = pad_to_multiple(torch.tensor(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0), net.pad_multiple)
        if not loaded.spec.ladder:
            return pack(net.compress(x), None)
        packets = {} if layout is None else {"packets": layout}
        if bpp is None:
            return pack(net.compress(x, loaded.quality, **packets), loaded.quality)
        features = net.features(x)
        for level in range(net.levels, 0, -1):  # highest level that fits the target
            data = pack(net.compress(x, level, features, **packets), level)
            if 8 * len(data) / (h * w) <= bpp:
                return data
    raise InputError(f"even level 1 needs {8 * len(data) / (h * w):.4f} bpp, above the target {bpp}")


def _check_pixels(net: torch.nn.Module, height: int, width: int) -> None:
    """Refuse images above the model's own size limit (models with global attention have one)."""
    limit = getattr(net, "max_pixels", None)
    if limit is not None and height * width > limit:
        raise InputError(f"{width}x{height} image exceeds this model's limit of {limit} pixels")


def _model_for(c: container.Container, weights: str | os.PathLike | None) -> registry.LoadedModel:
    name, quality, digest = (c.model.get(k) for k in ("name", "quality", "weights_hash"))
    if not isinstance(name, str) or not isinstance(digest, str):
        raise FormatError("header does not identify the model")
    if weights is None and not isinstance(quality, int):
        raise ModelError(f"file was encoded with custom {name} weights ({digest}); pass them with --weights")
    loaded = registry.load(name, quality, weights)
    if loaded.spec.name != name:
        raise ModelError(f"file needs model {name}, weights are for {loaded.spec.name}")
    if loaded.weights_hash != digest:
        source = weights or f"the shipped {name} q{quality}"
        hint = "" if weights else "; pass the weights it was made with (--weights)"
        raise ModelError(f"file was encoded with {name} weights {digest}, but {source} has {loaded.weights_hash}{hint}")
    return loaded


def decode(  # noqa: ANN201 - array or Dataset
    data: bytes, weights: str | os.PathLike | None = None, recover: bool = True, recovery_weights: str | os.PathLike | None = None
):
    """Decompress bytes from :func:`encode`.

    Images give uint8 pixels [H, W] (L) or [H, W, C] (LA, RGB, RGBA); climate files give a lazily
    decoded ``xarray.Dataset`` (each field is decoded when its values are first needed), or an
    ``xarray.DataTree`` when the source had groups (GRIB hypercubes become groups).

    Resilient VQGAN-cluster files decode even with lost packets: the missing indices are restored by
    the recovery transformer (``recovery_weights``, default the shipped one) or, with ``recover=False``
    or without a recovery model for the file's weights, filled with the level's most frequent codeword;
    a :class:`LostPackets` warning says which (or that lost packets were rebuilt exactly from the file's
    parity packets).
    """
    if recovery_weights is not None and not Path(recovery_weights).is_file():
        raise ModelError(f"recovery weights not found: {recovery_weights}")
    c = container.unpack(bytes(data), erasable=resilient.is_erasable)
    if c.kind == "climate":
        return open_climate(c, weights)
    return _decode_image(c, weights, recover, recovery_weights)


def open_climate(c: container.Container, weights: str | os.PathLike | None = None):  # noqa: ANN201
    """The lazily decoded ``xarray.Dataset`` (``DataTree`` for grouped sources) of a climate container."""
    from .climate import archive, cra5_archive

    loaded = _model_for(c, weights)
    if loaded.spec.name == CRA5_OFFICIAL:
        return cra5_archive.Cra5Archive(c, loaded.model, _run).dataset()
    return archive.CompressedArchive(c, loaded.model.at_level(loaded.quality), _run).dataset()


def _decode_image(
    c: container.Container, weights: str | os.PathLike | None, recover: bool = True, recovery_weights: str | os.PathLike | None = None
) -> np.ndarray:
    if len(c.shape) != 3 or c.shape[2] not in imageio.MODES_BY_CHANNELS or c.dtype != "uint8":
        raise FormatError(f"unsupported image shape {c.shape} / dtype {c.dtype}")
    h, w, channels = c.shape
    imageio.check_size(h, w)
    mode = imageio.MODES_BY_CHANNELS[channels]
    if c.meta.get("mode") != mode:
        raise FormatError("image mode in header does not match its shape")
    loaded = _model_for(c, weights)
    net = loaded.model
    _check_pixels(net, h, w)
    m = net.pad_multiple
    hp, wp = h + (-h) % m, w + (-w) % m
    with _inference():
        if "packet_rows" in c.meta:
            if not loaded.spec.packets:
                raise FormatError(f"header lists index packets, but model {loaded.spec.name} has none")
            x = _decode_packets(c, loaded, hp, wp, recover, recovery_weights)
        else:
            strings = [c.stream(f"l{i}") for i in range(net.stream_count)]
            x = net.decompress(strings, hp, wp, **({"level": loaded.quality} if loaded.spec.ladder else {}))
    rgb = x[0, :, :h, :w].mul(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()
    alpha = imageio.read_png_plane(c.stream("alpha"), h, w) if mode in ("LA", "RGBA") else None
    return imageio.join_alpha(np.ascontiguousarray(rgb), mode, alpha)


def _decode_packets(
    c: container.Container, loaded: registry.LoadedModel, height: int, width: int, recover: bool, recovery_weights: str | os.PathLike | None
) -> torch.Tensor:
    """The image of a resilient file, recovering the indices of lost packets."""
    layout = resilient.PacketLayout.from_meta(c.meta)
    expected = len(layout.slices(-(-height // loaded.model.pad_multiple), -(-width // loaded.model.pad_multiple)))
    strings = resilient.received_packets(c)
    if len(strings) != expected:
        raise FormatError(f"packet table lists {len(strings)} packets, the image needs {expected}")
    lost = sum(s is None for s in strings)
    if lost == expected:
        raise CorruptStreamError(f"all {lost} packets are lost; nothing to decode")
    fill = _recovery_for(loaded, recovery_weights) if recover and lost else None
    if lost:
        how = "recovered by the recovery transformer" if fill else "filled with the most frequent codeword"
        warnings.warn(f"{lost} of {expected} packets lost; their indices were {how}", LostPackets, stacklevel=4)  # at decode()'s caller
    elif any(resilient.is_packet(name) for name in c.missing):
        warnings.warn("lost packets were rebuilt exactly from the parity packets", LostPackets, stacklevel=4)
    return loaded.model.decompress(strings, height, width, loaded.quality, layout, fill)


class LostPackets(UserWarning):
    """A resilient file decoded with lost packets (a note, not an error)."""


@lru_cache(maxsize=2)
def _load_recovery(path: str, mtime_ns: int):  # noqa: ANN202 - (network, ladder hash)
    """A recovery transformer, loaded once per file version."""
    from .models.recovery import load_recovery

    return load_recovery(path)


def _recovery_for(loaded: registry.LoadedModel, weights: str | os.PathLike | None):  # noqa: ANN202 - bound method or None
    """``recover`` of the recovery transformer trained on ``loaded``'s ladder, or None if there is none."""
    shipped = loaded.spec.recovery
    path = Path(weights) if weights is not None else (registry.CHECKPOINTS / shipped if shipped else None)
    if path is None or not path.is_file():  # given weights were checked by decode(); shipped ones may be absent
        return None
    net, ladder_hash = _load_recovery(str(path.resolve()), path.stat().st_mtime_ns)
    if ladder_hash != loaded.weights_hash:
        if weights is not None:
            raise ModelError(f"{path} was trained for vqgan weights {ladder_hash}, the file uses {loaded.weights_hash}")
        return None
    return net.restore


def damage(data: bytes, drop: float, seed: int = 0, independent: bool = False) -> bytes:
    """Simulate a lossy channel: erase ``drop`` of a resilient file's intact packets, deterministically per ``seed``.

    With ``independent``, each packet is lost with probability ``drop`` on its own (an i.i.d. channel).
    """
    return resilient.damage(bytes(data), drop, seed, independent)


def image_bytes(image: np.ndarray, path: str | os.PathLike) -> bytes:
    """``image`` encoded in the file format implied by ``path`` (for ``codec decode -o``)."""
    return imageio.encode_image_file(image, path)
