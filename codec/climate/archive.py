"""Whole climate datasets <-> one container file, field by field (memory bounded by one field).

Streams of a ``climate`` container:

``skeleton``   everything but the grid variables' values (coordinates, attributes, other variables),
               as :func:`codec.climate.dataset.open_source` serializes it; coordinates stay exact
``variables``  deflated JSON: per grid variable its description, error bound and measured errors
``masks``      the distinct missing-value masks, each ``u4 length`` + deflated packed bits
``v<i>``       the fields of variable ``i`` in C order of its leading dims, each
               ``u4 mask id`` (0 = nothing missing) + ``u4 length`` + a :mod:`fieldcodec` record

Decoding is lazy: :func:`open_compressed` returns an ``xarray.Dataset`` whose variables are dask
arrays with one chunk per field, decoded on access.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import multiprocessing
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from .. import container
from ..errors import CorruptStreamError, FormatError, InputError
from ..models.vaeformer import LevelCoder
from . import dataset, errorbound, fieldcodec, masks, skeleton, storage
from .grid import GridVariable
from .variables import described_variables, grid_variables

_U32 = struct.Struct("<I")
_ENTRY = struct.Struct("<II")
RECORD_ENTRY_BYTES = _ENTRY.size  # mask id + length in front of every field record


class _Masks:
    """Deduplicated missing-value masks; id 0 means no missing point."""

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}
        self.blobs: list[bytes] = []

    def add(self, missing: np.ndarray) -> int:
        if not missing.any():
            return 0
        key = hashlib.sha1(np.packbits(missing.ravel()).tobytes() + str(missing.shape).encode()).digest()
        if key not in self.ids:
            self.blobs.append(masks.pack_missing(missing))
            self.ids[key] = len(self.blobs)
        return self.ids[key]

    def stream(self) -> bytes:
        return join_blobs(self.blobs)


def join_blobs(blobs: list[bytes]) -> bytes:
    """``blobs`` as one stream, each prefixed by its ``u4`` length (:func:`split_blobs` reads it back)."""
    return b"".join(_U32.pack(len(b)) + b for b in blobs)


@dataclass
class ErrorStats:
    """Running error statistics of one variable (over valid points)."""

    sq: float = 0.0
    count: int = 0
    max_abs: float = 0.0
    span_lo: float = np.inf
    span_hi: float = -np.inf

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Count the errors of reconstruction ``y`` of field ``x`` (NaN in ``x`` = missing point)."""
        valid = ~np.isnan(x)
        if valid.any():
            d = x[valid] - y[valid]
            self.sq += float(d @ d)
            self.count += int(valid.sum())
            self.max_abs = max(self.max_abs, float(np.abs(d).max()))
            self.span_lo, self.span_hi = min(self.span_lo, float(x[valid].min())), max(self.span_hi, float(x[valid].max()))

    def to_json(self) -> dict:
        """RMSE, maximum absolute error, RMSE over the value span, and the number of valid points."""
        rmse = (self.sq / self.count) ** 0.5 if self.count else 0.0
        span = self.span_hi - self.span_lo if self.count else 0.0
        return {"rmse": rmse, "max_abs_error": self.max_abs, "nrmse": rmse / span if span > 0 else 0.0, "valid_points": self.count}


RECORD_VERSION = 5  # field records written now (fieldcodec.RECORD_VERSIONS are read)


def field_spec(var: GridVariable, bound: float | None, record_version: int | None = None) -> fieldcodec.FieldSpec:
    """What coding one field of ``var`` needs besides its values: shape, dtype, error bound, integer packing and the
    record version (default: the one written now)."""
    version = RECORD_VERSION if record_version is None else record_version
    return fieldcodec.FieldSpec(var.field_shape, np.dtype(var.dtype), bound, var.packing(), var.integer_range(), version)


def _encode_field(net: LevelCoder, field: np.ndarray, spec: fieldcodec.FieldSpec, threads: int) -> tuple[bytes, np.ndarray]:
    """:func:`fieldcodec.encode` with the codec's torch thread count, in whatever thread or process runs it."""
    import torch

    torch.set_num_threads(threads)
    with torch.inference_mode():
        return fieldcodec.encode(net, field, spec)


def _encoded(
    items: Iterator[tuple[int, GridVariable, np.ndarray, fieldcodec.FieldSpec]],
    net: LevelCoder,
    scheduler: Any,
    workers: int,
    threads: int,
) -> Iterator[tuple[int, np.ndarray, bytes, np.ndarray]]:
    """``(variable index, field, record, reconstruction)`` in source order.

    Without a scheduler the fields are coded one by one here.  With one (a dask scheduler name such as
    ``"threads"``/``"processes"``, or a ``distributed.Client``), windows of ``2 * workers`` fields are
    coded in parallel, so memory stays bounded by the window.
    """
    if scheduler is None:
        for i, _, field, spec in items:
            yield (i, field, *_encode_field(net, field, spec, threads))
        return
    import dask

    shared = dask.delayed(net, traverse=False)  # one copy of the network per graph
    window: list = []
    kwargs = {"scheduler": scheduler, "num_workers": workers} if isinstance(scheduler, str) else {"scheduler": scheduler}
    with contextlib.ExitStack() as stack:
        if scheduler == "processes":  # one pool for the whole file: dask would start (and import torch in) new ones per window
            kwargs["pool"] = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")))
        for item in itertools.chain(items, [None]):
            if item is not None:
                window.append(item)
            if window and (item is None or len(window) == 2 * workers):
                tasks = [dask.delayed(_encode_field)(shared, field, spec, threads) for _, _, field, spec in window]
                for (i, _, field, _), (record, recon) in zip(window, dask.compute(*tasks, **kwargs), strict=True):
                    yield i, field, record, recon
                window = []


def encode(
    source: dataset.ClimateSource,
    net: LevelCoder,
    model_id: dict,
    bounds: dict[str, float] | float | None = None,
    progress: Callable[[Iterator, int], Iterator] | None = None,
    scheduler: Any = None,
    workers: int = 1,
    threads: int = 2,
) -> bytes:
    """Compress every grid variable of ``source`` with ``net``; ``bounds`` as :func:`errorbound.parse_bounds`.

    ``scheduler`` (a dask scheduler name or ``distributed.Client``) codes ``workers`` fields at a time
    in parallel; each field runs on ``threads`` torch threads, so the bytes do not depend on it.
    """
    check_bound_names(bounds, source.variables)
    masks, streams, described = _Masks(), [], []
    total = sum(v.n_fields for v in source.variables)
    specs = [field_spec(var, errorbound.bound_for(bounds, var.name)) for var in source.variables]

    def fields() -> Iterator[tuple[int, GridVariable, np.ndarray, fieldcodec.FieldSpec]]:
        for i, var in enumerate(source.variables):
            for field in source.fields(var):
                if np.isinf(field).any():
                    raise InputError(f"{var.name} holds infinite values; codec compresses finite values and missing (NaN) points")
                yield i, var, field, specs[i]

    chunks: list[list[bytes]] = [[] for _ in source.variables]
    stats = [ErrorStats() for _ in source.variables]
    coded = _encoded(fields(), net, scheduler, max(1, workers), threads)
    for i, field, record, recon in progress(coded, total) if progress else coded:
        stats[i].add(field, storage.storable(recon, source.variables[i]))
        chunks[i].append(_ENTRY.pack(masks.add(np.isnan(field)), len(record)) + record)
    for i, var in enumerate(source.variables):
        streams.append((f"v{i}", b"".join(chunks[i])))
        described.append({"variable": var.to_json(), "max_abs_error_bound": errorbound.bound_for(bounds, var.name), "errors": stats[i].to_json()})
    meta = {"variables": len(described), "field_records": RECORD_VERSION}
    if net.relative_bound is not None:  # a refinement quality: every point within this many field std
        meta["relative_error_bound"] = net.relative_bound
    head = [
        ("skeleton", source.skeleton()),
        ("variables", variables_stream(described)),
        ("masks", masks.stream()),
    ]
    return container.pack(
        container.Container(kind="climate", model=model_id, shape=[max(total, 1)], dtype="float32", streams=head + streams, meta=meta)
    )


def check_bound_names(bounds: dict[str, float] | float | None, variables: list[GridVariable]) -> None:
    """One-line :class:`InputError` when per-variable ``bounds`` name a variable that is not among ``variables``."""
    if isinstance(bounds, dict):
        names = {v.name for v in variables} | {v.name.rsplit("/", 1)[-1] for v in variables}
        unknown = set(bounds) - names
        if unknown:
            known = ", ".join(sorted(v.name for v in variables))
            raise InputError(f"max_abs_error (--max-abs-error) names unknown variables: {', '.join(sorted(unknown))} (variables: {known})")


def variables_stream(described: list[dict]) -> bytes:
    """The ``variables`` stream: deflated JSON of one ``{"variable", "max_abs_error_bound", "errors"}`` per grid variable."""
    return zlib.compress(json.dumps(described, separators=(",", ":")).encode(), 9)


def split_blobs(data: bytes, what: str = "mask table") -> list[bytes]:
    """Inverse of :func:`join_blobs`; :class:`CorruptStreamError` naming ``what`` when the stream is cut."""
    blobs, pos = [], 0
    while pos < len(data):
        if pos + _U32.size > len(data):
            raise CorruptStreamError(f"{what} truncated")
        (n,) = _U32.unpack_from(data, pos)
        pos += _U32.size
        if pos + n > len(data):
            raise CorruptStreamError(f"{what} truncated")
        blobs.append(data[pos : pos + n])
        pos += n
    return blobs


def _index_records(data: bytes, n_fields: int) -> list[tuple[int, int, int]]:
    """(mask id, start, end) of each field record in a variable stream."""
    out, pos = [], 0
    for _ in range(n_fields):
        if pos + _ENTRY.size > len(data):
            raise CorruptStreamError("variable stream truncated")
        mask_id, n = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        if pos + n > len(data):
            raise CorruptStreamError("variable stream truncated")
        out.append((mask_id, pos, pos + n))
        pos += n
    if pos != len(data):
        raise CorruptStreamError("variable stream has trailing bytes")
    return out


class DecodeLock:
    """A lock that pickles as a new one, so archives that hold it travel to dask worker processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def __reduce__(self) -> tuple:
        return (DecodeLock, ())


class CompressedArchive:
    """Random access to the fields of a climate container (decoding guarded by one lock)."""

    def __init__(self, c: container.Container, net: LevelCoder, run: Callable[[Callable[[], np.ndarray]], np.ndarray]) -> None:
        self.container, self.net, self._run = c, net, run
        described = described_variables(c)
        self.variables = grid_variables(described)
        self.bounds = [d.get("max_abs_error_bound") for d in described]
        self.record_version = c.meta.get("field_records", 1)
        if self.record_version not in fieldcodec.RECORD_VERSIONS:
            raise FormatError(f"field record version {self.record_version!r} is not one this codec reads (made by a newer version?)")
        self.masks = split_blobs(c.stream("masks"))
        self.records = [_index_records(c.stream(f"v{i}"), v.n_fields) for i, v in enumerate(self.variables)]
        self._position = {v.name: i for i, v in enumerate(self.variables)}
        self._lock = DecodeLock()

    def _valid(self, mask_id: int, shape: tuple[int, int]) -> np.ndarray:
        if mask_id == 0:
            return np.ones(shape, bool)
        if mask_id > len(self.masks):
            raise CorruptStreamError("field refers to a missing mask")
        return masks.unpack_valid(self.masks[mask_id - 1], shape)

    def field(self, var: GridVariable, index: int) -> np.ndarray:
        """Decoded field ``index`` (C order of the leading dims) of ``var``: float64 with NaN."""
        i = self._position[var.name]
        mask_id, start, end = self.records[i][index]
        record = self.container.stream(f"v{i}")[start:end]
        spec = field_spec(var, self.bounds[i], self.record_version)
        valid = self._valid(mask_id, spec.shape)
        with self._lock:
            out = self._run(lambda: fieldcodec.decode(self.net, record, spec, valid))
        return out

    def field_moments(self, name: str) -> np.ndarray:
        """``[n_fields, 2]``: each field's mean and standard deviation over its valid points, from the record
        headers alone (no decoding); NaN mean for a field without a valid point."""
        i = self._position[name]
        stream = self.container.stream(f"v{i}")
        head = struct.Struct("<dd")
        if any(end - start < head.size for _, start, end in self.records[i]):
            raise CorruptStreamError("field record truncated")
        return np.array([head.unpack_from(stream, start) for _, start, _ in self.records[i]], np.float64).reshape(-1, 2)

    def dataset(self) -> xr.Dataset:
        """The lazily decoded dataset."""
        return skeleton.rebuild(self.container.stream("skeleton"), self.variables, self.field)
