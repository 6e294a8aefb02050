"""``codec info``: what a compressed file holds, read from its header and tables alone.

Light on purpose: no torch and no model is loaded (numpy, and xarray for climate files), so
describing a file costs a fraction of a second (official CRA5 files excepted: their step tables are
read with the CRA5 layout code).
"""

from __future__ import annotations

import os

import numpy as np

from . import container, fileio
from .errors import FormatError
from .image import pack
from .image.packets import is_erasable
from .models import CRA5_MODEL


def info(data: bytes) -> dict:
    """What a compressed file holds: kind, model, shape, bytes, bpp (images) or variables and ratio (climate);
    for an image pack (``codec pack``) its entries, bytes, mean bpp and models; for a video its frames, fps, GOPs and bpp."""
    if pack.looks_like_pack(data):
        return pack.describe(bytes(data))
    from .video import summary

    if summary.is_video_file(bytes(data)):
        return summary.describe(bytes(data))
    c = container.unpack(bytes(data), erasable=is_erasable)
    if c.kind == "climate":
        return _climate_info(c, len(data))
    if c.kind != "image":
        raise FormatError(f"file holds {c.kind} data")
    h, w = c.shape[0], c.shape[1]
    return {
        "kind": c.kind,
        "model": c.model.get("name"),
        "quality": c.model.get("quality"),
        "weights_hash": c.model.get("weights_hash"),
        "shape": c.shape,
        "dtype": c.dtype,
        "mode": c.meta.get("mode"),
        "bytes": len(data),
        "bpp": 8 * len(data) / (h * w),
        **{k: c.meta[k] for k in ("level", "codebook_size", "groups", "packet_rows", "packet_lattice", "packet_parity") if k in c.meta},
        **({"lost_packets": sorted(c.missing, key=lambda n: (n[0] != "p", len(n), n))} if c.missing else {}),
        "streams": {name: len(s) for name, s in c.streams},
        "format_version": c.version,
    }


def info_file(path: str | os.PathLike) -> dict:
    """:func:`info` of a file on disk; an image pack is described from its index without reading its entries."""
    if pack.is_pack(path):
        return pack.describe(path)
    from .video import summary

    video = summary.mapped_video(path)  # one GOP in memory at a time
    if video is not None:
        return summary.describe(video)
    return info(fileio.read_input(path))


def _climate_info(c: container.Container, size: int) -> dict:
    from .climate.variables import described_variables, grid_variables

    described = described_variables(c)
    grid = grid_variables(described)
    if c.model.get("name") == CRA5_MODEL:  # all channels of a step coded together: no bytes per variable
        from .climate import cra5_archive

        totals, rows = cra5_archive.summary(c)
    else:
        totals, rows = {}, [{"bytes": len(c.stream(f"v{i}"))} for i in range(len(grid))]
    variables, raw = {}, 0
    for d, var, row in zip(described, grid, rows, strict=True):
        raw += 4 * int(np.prod(var.shape, dtype=np.int64))
        variables[var.name] = {
            "shape": list(var.shape),
            "dims": list(var.dims),
            "group": var.group,
            **row,
            "max_abs_error_bound": d.get("max_abs_error_bound"),
            **d["errors"],
        }
    return {
        "kind": c.kind,
        "model": c.model.get("name"),
        "quality": c.model.get("quality"),
        "weights_hash": c.model.get("weights_hash"),
        "relative_error_bound": c.meta.get("relative_error_bound"),
        "bytes": size,
        "float32_bytes": raw,
        "compression_ratio": raw / size,
        **totals,
        "variables": variables,
        "format_version": c.version,
    }
