"""Image files: pixels in, container out, and back (models from the registry, packets and parity here).

A plain file holds one stream per model stream (``l0``, ...) plus a lossless ``alpha`` plane when the
source had one and, for models with a tone table (VQGAN-cluster), a ``tone`` stream that sets the
large-scale colour (:mod:`codec.image.tone`); a resilient VQGAN-cluster file holds index packets ``p0, p1, ...`` and parity packets
``f0, ...`` (:mod:`codec.image.resilient`, :mod:`codec.image.parity`).
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .. import catalog, container, registry
from ..errors import CorruptStreamError, FormatError, InputError, ModelError
from ..models import index_search
from ..models.base import ImageCodecModel
from ..models.mcquic import pad_to_multiple
from ..runtime import inference, model_for, model_id
from . import io, parity, resilient, tone


def encode(
    image: object,
    model: str | None,
    quality: int | None,
    weights: str | os.PathLike | None,
    bpp: float | None = None,
    packet_rows: int | None = None,
    packet_lattice: int | None = None,
    packet_parity: float | None = None,
    effort: int = 0,
) -> bytes:
    """An image file of ``image``; arguments as :func:`codec.api.encode`."""
    pixels = io.to_array(image)
    mode = io.MODES_BY_CHANNELS[pixels.shape[2]]
    # a weights file names its own model; without one (and without --model) the default image model
    loaded = registry.load(model or (None if weights is not None else registry.default_model("image")), quality, weights)
    if loaded.spec.kind != "image":
        raise InputError(f"model {loaded.spec.name} does not compress images")
    if bpp is not None and not loaded.spec.ladder:
        raise InputError(f"bpp (--bpp) needs a model with a bitrate ladder (mcquic, vqgan), not {loaded.spec.name}")
    if packet_rows is not None and not loaded.spec.packets:
        raise InputError(f"packet_rows (--packet-rows) needs a model with resilient packets (vqgan), not {loaded.spec.name}")
    for given, name in ((packet_lattice, "packet_lattice (--packet-lattice)"), (packet_parity, "packet_parity (--parity)")):
        if given is not None and packet_rows is None:
            raise InputError(f"{name} needs packet_rows (--packet-rows)")
    if effort and not loaded.spec.effort:
        raise InputError(f"effort (--effort) needs a model whose encoder can search its indices (mcquic), not {loaded.spec.name}")
    layout = None if packet_rows is None else resilient.PacketLayout(packet_rows, resilient.LATTICE if packet_lattice is None else packet_lattice)
    rgb, alpha = io.split_alpha(pixels)
    h, w = rgb.shape[:2]
    net = loaded.model
    check_pixels(net, h, w)
    if packet_parity is not None:  # a bad fraction, or too many packets for the code, fails before any coding
        parity.parity_count(len(layout.slices(-(-h // net.pad_multiple), -(-w // net.pad_multiple))), packet_parity)
    alpha_stream = [("alpha", io.png_bytes(alpha))] if alpha is not None else []
    tones: dict[tone.ToneSettings, bytes] = {}

    def pack(strings: list[bytes], level: int | None) -> bytes:
        identity, meta = model_id(loaded), {"mode": mode}
        extra = alpha_stream
        if level is not None:
            identity["quality"] = level
            meta.update(level=level, **net.level_meta(level))
            settings = loaded.spec.tone_settings(level)
            if settings is not None:
                ts = tone.ToneSettings(*settings)
                if ts not in tones:
                    tones[ts] = tone.encode(network_input(rgb, 1), ts)
                meta["tone"] = ts.meta()
                extra = alpha_stream + [("tone", tones[ts])]
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
            container.Container(kind="image", model=identity, shape=list(pixels.shape), dtype="uint8", streams=streams, meta=meta)
        )

    with inference():
        x = network_input(rgb, net.pad_multiple)
        if not loaded.spec.ladder:
            return pack(net.compress(x), None)

        def streams(level: int, features: torch.Tensor | None = None, search: int = effort) -> list[bytes]:
            if search:
                features = net.features(x) if features is None else features
                return net.compress_indices(index_search.refine_finest(net, x, features, level, search, (h, w)), level)
            if layout is None:
                return net.compress(x, level, features)
            return resilient.encode_packets(net.level(level), net.level_indices(x, level, features)[0], layout)

        if bpp is None:
            return pack(streams(loaded.quality), loaded.quality)
        features = net.features(x)
        for level in range(net.levels, 0, -1):  # highest level that fits the target (found without the search)
            data = pack(streams(level, features, 0), level)
            if 8 * len(data) / (h * w) <= bpp:
                searched = pack(streams(level, features), level) if effort else data
                return searched if 8 * len(searched) / (h * w) <= bpp else data
    raise InputError(f"even level 1 needs {8 * len(data) / (h * w):.4f} bpp, above the target {bpp}")


def network_input(rgb: np.ndarray, multiple: int) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> float [1, 3, H', W'] in [0, 1], replicate-padded to a multiple of ``multiple``."""
    return pad_to_multiple(torch.tensor(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0), multiple)


def pixels_of(x: torch.Tensor, height: int, width: int) -> np.ndarray:
    """A decoded [1, 3, H', W'] tensor in [0, 1] -> uint8 RGB [height, width, 3] (padding cropped)."""
    return x[0, :, :height, :width].mul(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()


def check_pixels(net: ImageCodecModel, height: int, width: int) -> None:
    """Refuse images above the model's own size limit (models with global attention have one)."""
    limit = net.max_pixels
    if limit is not None and height * width > limit:
        raise InputError(f"{width}x{height} image exceeds this model's limit of {limit} pixels")


def decode(
    c: container.Container, weights: str | os.PathLike | None, recover: bool = True, recovery_weights: str | os.PathLike | None = None
) -> np.ndarray:
    """The pixels of image container ``c``; arguments as :func:`codec.api.decode`."""
    if len(c.shape) != 3 or c.shape[2] not in io.MODES_BY_CHANNELS or c.dtype != "uint8":
        raise FormatError(f"unsupported image shape {c.shape} / dtype {c.dtype}")
    h, w, channels = c.shape
    io.check_size(h, w)
    mode = io.MODES_BY_CHANNELS[channels]
    if c.meta.get("mode") != mode:
        raise FormatError("image mode in header does not match its shape")
    loaded = model_for(c, weights)
    net = loaded.model
    check_pixels(net, h, w)
    m = net.pad_multiple
    hp, wp = h + (-h) % m, w + (-w) % m
    with inference():
        if "packet_rows" in c.meta:
            if not loaded.spec.packets:
                raise FormatError(f"header lists index packets, but model {loaded.spec.name} has none")
            x = _decode_packets(c, loaded, hp, wp, recover, recovery_weights)
        else:
            strings = [c.stream(f"l{i}") for i in range(net.stream_count)]
            x = net.decompress(strings, hp, wp, loaded.quality if loaded.spec.ladder else None)
        if "tone" in c.meta:
            x = tone.apply(x, c.stream("tone"), h, w, tone.ToneSettings.from_meta(c.meta["tone"]))
    rgb = pixels_of(x, h, w)
    alpha = io.read_png_plane(c.stream("alpha"), h, w) if mode in ("LA", "RGBA") else None
    return io.join_alpha(np.ascontiguousarray(rgb), mode, alpha)


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
    return resilient.decode_image(loaded.model, strings, height, width, loaded.quality, layout, fill)


class LostPackets(UserWarning):
    """A resilient file decoded with lost packets (a note, not an error)."""


@lru_cache(maxsize=2)
def _load_recovery(path: str, mtime_ns: int):  # noqa: ANN202 - (network, ladder hash)
    """A recovery transformer, loaded once per file version."""
    from ..models.recovery import load_recovery

    return load_recovery(path)


def _recovery_for(loaded: registry.LoadedModel, weights: str | os.PathLike | None):  # noqa: ANN202 - bound method or None
    """``recover`` of the recovery transformer trained on ``loaded``'s ladder, or None if there is none."""
    shipped = loaded.spec.recovery
    path = Path(weights) if weights is not None else (catalog.CHECKPOINTS / shipped if shipped else None)
    if path is None or not path.is_file():  # given weights were checked by decode(); shipped ones may be absent
        return None
    net, ladder_hash = _load_recovery(str(path.resolve()), path.stat().st_mtime_ns)
    if ladder_hash != loaded.weights_hash:
        if weights is not None:
            raise ModelError(f"{path} was trained for vqgan weights {ladder_hash}, the file uses {loaded.weights_hash}")
        return None
    return net.restore
