"""Assertions and fixtures-by-import shared by several test modules."""

from __future__ import annotations

import json
import struct
import zlib

from codec import container  # the file format only: no torch

EXECUTED: list[str] = []
"""Calls made by unpickling a :class:`Payload`; loaders must leave it empty."""


def _record(tag: str) -> str:
    EXECUTED.append(tag)
    return tag


class Payload:
    """Pickles as a call to :func:`_record`: a safe loader must refuse it, never run it."""

    def __reduce__(self):
        return (_record, ("pwned",))


def run_cli(capsys, *args) -> tuple[int, str, str]:  # noqa: ANN001 - pytest's capsys fixture
    """Run ``codec ARGS`` in-process: ``(exit code, stdout, stderr)``."""
    from codec.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, pattern: str) -> None:
    """The CLI failed with exit code 1 and one ``codec: error:`` line containing ``pattern``, no traceback."""
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("codec: error:"), err
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in err


def tiny_vaeformer():  # noqa: ANN201 - keeps torch out of this module's import
    """An untrained tiny VAEformer (seed 0) with frozen entropy tables, in eval mode."""
    import torch

    from codec.models.vaeformer import TINY, VAEformer

    torch.manual_seed(0)
    net = VAEformer(TINY).eval()
    net.update()
    return net


def grib_message(level_type: str, level: int, short: str, values) -> bytes:  # noqa: ANN001 - numpy array
    """One GRIB2 message on a regular 15-degree grid from an eccodes sample; NaN -> missing (bitmap)."""
    import eccodes
    import numpy as np

    sample = "regular_ll_pl_grib2" if level_type == "isobaricInhPa" else "regular_ll_sfc_grib2"
    h = eccodes.codes_grib_new_from_samples(sample)
    nj, ni = values.shape
    keys = {
        "Ni": ni,
        "Nj": nj,
        "latitudeOfFirstGridPointInDegrees": 60.0,
        "longitudeOfFirstGridPointInDegrees": 0.0,
        "latitudeOfLastGridPointInDegrees": 60.0 - 15.0 * (nj - 1),
        "longitudeOfLastGridPointInDegrees": 15.0 * (ni - 1),
        "iDirectionIncrementInDegrees": 15.0,
        "jDirectionIncrementInDegrees": 15.0,
        "typeOfLevel": level_type,
        "level": level,
        "shortName": short,
        "bitmapPresent": 1,
        "missingValue": 9999,
    }
    try:
        for k, v in keys.items():
            eccodes.codes_set(h, k, v)
        eccodes.codes_set_values(h, np.where(np.isnan(values), 9999.0, values).ravel())
        return eccodes.codes_get_message(h)
    finally:
        eccodes.codes_release(h)


def container_file(header: dict, payload: bytes = b"", version: int = container.FORMAT_VERSION, table: bytes | None = None) -> bytes:
    """A file of ``version`` written by hand from a version-1-style ``header`` (stream objects); from
    version 3 the stream lengths and checksums go to the binary table (or ``table`` as given)."""
    header = dict(header)
    if version >= 3 and isinstance(header.get("streams"), list) and all(isinstance(e, dict) for e in header["streams"]):
        entries = header["streams"]
        header["streams"] = [e.get("name") for e in entries]
        if table is None:
            table = b"".join(container.varint(e["length"]) + struct.pack("<I", e["crc32"]) for e in entries)
    zdict = {2: container.HEADER_DICTIONARY, 3: container.HEADER_DICTIONARY_V3}.get(min(version, 3))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, **({"zdict": zdict} if zdict else {}))
    body = deflate.compress(json.dumps(header, separators=(",", ":"), sort_keys=True).encode()) + deflate.flush() + (table or b"")
    prefix = struct.pack("<HI", version, len(body))
    return container.MAGIC + prefix + body + struct.pack("<I", zlib.crc32(prefix + body)) + payload
