"""Regenerate the golden files of ``tests/test_golden.py`` (run only on purpose, then commit the result).

    python tests/golden/make_golden.py

For every shipped checkpoint, small files encoded with it (each quality end, a resilient file with
parity, a damaged copy decoded by the recovery transformer) and, for every older container version
and climate record version the code still reads, a copy in that format.  Entries marked ``"frozen"``
(files an older encoder wrote, e.g. VQGAN-cluster files before the tone layer) are kept as they are.  ``manifest.json`` lists
each file with how it was made and the file holding its expected decode.  Any later change that
alters the bytes of a new encode, or the decode of an existing file, fails the golden test: if the
change is intended, say so in the commit, bump the format version where old files are affected, and
rerun this script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import codec  # noqa: E402
from codec import container, registry  # noqa: E402
from codec.climate import archive  # noqa: E402
from codec.video.clip import VideoFrames  # noqa: E402
from tests.helpers import container_file  # noqa: E402

HERE = Path(__file__).resolve().parent
KODAK = ROOT.parent / "shared" / "data" / "images" / "kodak" / "kodim23.png"
IMAGE = "kodim23-crop.png"
FIELDS = "fields.nc"
CLIP = "pan.mkv"


def make_inputs() -> None:
    """A 96 x 64 crop of kodim23 (the parrots' heads: saturated colour, edges) and a small synthetic
    netCDF file: ``t`` int16-packed ERA5-style with a fill value and a missing point, ``z`` float32."""
    with Image.open(KODAK) as im:
        im.convert("RGB").crop((400, 96, 496, 160)).save(HERE / IMAGE, optimize=True)
    rng = np.random.default_rng(0)
    lat = np.linspace(60.0, -60.0, 48)
    lon = np.arange(96) * 3.75
    la, lo = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    t = 270 + 25 * np.cos(la) + 4 * np.sin(3 * lo) * np.cos(2 * la) + rng.normal(0, 0.3, la.shape)
    z = 52000 + 3000 * np.cos(la) ** 2 + 400 * np.cos(2 * lo + la) + rng.normal(0, 20, la.shape)
    t[10, 20] = np.nan
    ds = xr.Dataset(
        {"t": (("time", "latitude", "longitude"), t[None].astype(np.float32)), "z": (("time", "latitude", "longitude"), z[None].astype(np.float32))},
        coords={"time": ("time", [0.0], {"units": "hours since 2020-01-01"}), "latitude": lat, "longitude": lon},
    )
    ds.t.attrs.update(units="K")
    ds.z.attrs.update(units="m**2 s**-2")
    scale = (float(np.nanmax(t)) - float(np.nanmin(t))) / 65532
    offset = (float(np.nanmax(t)) + float(np.nanmin(t))) / 2
    ds.to_netcdf(
        HERE / FIELDS,
        encoding={"t": {"dtype": "int16", "scale_factor": scale, "add_offset": offset, "_FillValue": -32767}, "z": {"dtype": "float32"}},
    )
    from codec.video.synthetic import pan_clip_from_image

    if not (HERE / CLIP).exists():  # the muxer stamps each write differently: keep the committed clip
        pan_clip_from_image(HERE / IMAGE, HERE / CLIP, frames=5, size=(64, 48), step=4, fps=25)  # lossless FFV1


def save_decode(name: str, decoded) -> str:  # noqa: ANN001 - array or Dataset
    """Write the expected decode of ``name``: a PNG for images, an ``.npz`` of every variable for climate data,
    an ``.npz`` of every frame for video."""
    if isinstance(decoded, VideoFrames):
        out = f"{name}.decoded.npz"
        np.savez_compressed(HERE / out, frames=decoded.to_array())
    elif isinstance(decoded, np.ndarray):
        out = f"{name}.decoded.png"
        Image.fromarray(decoded).save(HERE / out)
    else:
        out = f"{name}.decoded.npz"
        np.savez_compressed(HERE / out, **{v: decoded[v].values for v in decoded.data_vars})
    return out


def main() -> None:
    """Write the inputs, the golden files, their expected decodes and ``manifest.json``."""
    make_inputs()
    manifest = HERE / "manifest.json"
    # frozen entries are files of an older encoder (e.g. VQGAN-cluster before the tone layer): kept as they are
    entries: list[dict] = [e for e in json.loads(manifest.read_text()) if e.get("frozen")] if manifest.exists() else []

    def add(name: str, data: bytes, how: dict, decoded, same_as: str | None = None) -> None:  # noqa: ANN001
        """Record a golden file; ``same_as``: a file whose expected decode it shares (checked here)."""
        (HERE / name).write_bytes(data)
        c = container.unpack(data, erasable=lambda s: True)
        if same_as is None:
            expected = save_decode(name, decoded)
        else:
            expected = next(e["decoded"] for e in entries if e["file"] == same_as)
            reference = codec.decode((HERE / same_as).read_bytes())
            pairs = [(decoded, reference)] if isinstance(decoded, np.ndarray) else [(decoded[v].values, reference[v].values) for v in decoded.data_vars]
            assert all(np.array_equal(a, b, equal_nan=True) for a, b in pairs), f"{name} decodes unlike {same_as}"
        entries.append({"file": name, "container_version": c.version, "model": c.model, **how, "decoded": expected})

    image = str(HERE / IMAGE)
    mcquic = registry.shipped_qualities("mcquic")
    for q in (mcquic[0], mcquic[-1]):
        kwargs = {"model": "mcquic", "quality": q}
        data = codec.encode(image, **kwargs)
        add(f"mcquic-q{q}.bin", data, {"input": IMAGE, "encode": kwargs}, codec.decode(data))
    levels = registry.shipped_qualities("vqgan")
    for q in (levels[0], levels[-1]):
        kwargs = {"model": "vqgan", "quality": q}
        data = codec.encode(image, **kwargs)
        add(f"vqgan-l{q}.bin", data, {"input": IMAGE, "encode": kwargs}, codec.decode(data))
    kwargs = {"model": "vqgan", "quality": 5, "packet_rows": 1, "packet_parity": 0.25}
    resilient = codec.encode(image, **kwargs)
    add("vqgan-l5-packets.bin", resilient, {"input": IMAGE, "encode": kwargs}, codec.decode(resilient))
    damage = {"drop": 0.4, "seed": 1}
    from codec import api

    damaged = api.damage(resilient, **damage)
    add("vqgan-l5-packets-damaged.bin", damaged, {"from": "vqgan-l5-packets.bin", "damage": damage}, codec.decode(damaged))

    kwargs = {"quality": 2, "gop": 8}  # one GOP: an intra frame and 4 inter frames through the temporal prior
    video = codec.encode(str(HERE / CLIP), **kwargs)
    add("video-q2.bin", video, {"input": CLIP, "encode": kwargs}, codec.decode(video))
    kwargs = {"model": "vqgan", "quality": 3, "gop": 8}  # VQGAN-cluster frames with their tone layer
    video = codec.encode(str(HERE / CLIP), **kwargs)
    add("video-vqgan-l3.bin", video, {"input": CLIP, "encode": kwargs}, codec.decode(video))

    fields = str(HERE / FIELDS)
    loose = {"quality": 3, "max_abs_error": "t=0.5,z=50"}  # loose enough for z's residual to take interpolation (coder 2)
    for kwargs in ({"quality": 2}, {"quality": 3, "max_abs_error": "t=0.05,z=5"}, loose):
        data = codec.encode(fields, **kwargs)
        name = f"vaeformer-q{kwargs['quality']}{'-bounded' if 'max_abs_error' in kwargs else ''}{'-loose' if kwargs is loose else ''}.cra"
        add(name, data, {"input": FIELDS, "encode": kwargs}, codec.decode(data))

    current, archive.RECORD_VERSION = archive.RECORD_VERSION, 1  # the records of every file before version 2 (no header key)
    c = container.unpack(codec.encode(fields, quality=2))
    archive.RECORD_VERSION = current
    del c.meta["field_records"]
    old = container.pack(c)
    add("vaeformer-q2-records1.cra", old, {"input": FIELDS, "note": "climate field records version 1"}, codec.decode(old))

    for source in ("vqgan-l9.bin", "vaeformer-q2.cra", "mcquic-q1.bin"):
        c = container.unpack((HERE / source).read_bytes())
        payload = b"".join(d for _, d in c.streams)
        for version in range(1, container.FORMAT_VERSION):
            data = container_file(c.header(), payload, version=version)
            stem, suffix = source.rsplit(".", 1)
            add(f"{stem}-container{version}.{suffix}", data, {"from": source, "note": f"container format version {version}"}, codec.decode(data), same_as=source)

    manifest.write_text(json.dumps(entries, indent=1) + "\n")
    total = sum((HERE / e["file"]).stat().st_size for e in entries)
    print(f"{len(entries)} golden files, {total} bytes, in {HERE}")


if __name__ == "__main__":
    main()
