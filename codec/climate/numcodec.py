"""The climate codec as a numcodecs codec (id ``"codec"``) and a Zarr 3 compressor, for whole Zarr stores.

::

    import numcodecs
    compressor = numcodecs.get_codec({"id": "codec", "quality": 3, "max_abs_error": 0.1})
    ds.to_zarr("era5.zarr", encoding={"t": {"compressors": [compressor]}})                  # Zarr 3
    ds.to_zarr("era5.zarr", zarr_format=2, encoding={"t": {"compressor": compressor}})     # Zarr 2
    xr.open_zarr("era5.zarr")                                                               # decodes chunk by chunk

Each chunk must be 2-D lat-lon fields: its last two dimensions are a field's rows and columns and any
leading ones (time, level) index the fields, each coded on its own by the VAEformer record coder
(:mod:`codec.climate.fieldcodec`, the same records a ``.cra`` file holds).  NaN marks missing points.
The codec's configuration (stored in the Zarr metadata) holds everything decoding needs: the model,
its quality, the bound and the weights' hash, which decoding checks.  With ``max_abs_error`` every
decoded point is within that bound; the encoder checks it on every chunk before returning the bytes.

Chunk layout (little-endian)::

    magic "CZC" + format u1 (4: field records of version 5, integer-valued fields may round; 3: version 4; 2: version 3, clipped to each field's range; 1: version 2),
        dtype u1 (4 = float32, 8 = float64), ndim u1, shape u4 x ndim
    per field: len_mask u4, len_record u4, mask (zlib of the packed NaN bits; empty if none), record
    crc32 u4 of everything before

The class is both a :class:`numcodecs.abc.Codec` (``encode(array)`` / ``decode(bytes)``; Zarr 2 hands
it each chunk as an array) and a Zarr 3 ``BytesBytesCodec`` (Zarr 3 hands it the chunk's bytes with
the chunk's shape and dtype), registered by entry point under both names.
"""

from __future__ import annotations

import struct
import threading
import zlib
from typing import Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_bytes, ensure_contiguous_ndarray, ndarray_copy
from zarr.abc.codec import BytesBytesCodec

from ..errors import CorruptStreamError, InputError, ModelError
from .masks import pack_missing, unpack_valid

CODEC_ID = "codec"
ZARR_NAME = "numcodecs.codec"  # the name a Zarr 3 store records (numcodecs codecs are "numcodecs.<id>")
MAGIC = b"CZC"
VERSION = 4  # chunk format written now
RECORDS = {1: 2, 2: 3, 3: 4, 4: 5}  # chunk format -> the field record version its fields use (fieldcodec.RECORD_VERSIONS)
_HEAD = struct.Struct("<3sBBB")
_FIELD = struct.Struct("<II")
_U32 = struct.Struct("<I")
_DTYPES = {4: np.dtype("<f4"), 8: np.dtype("<f8")}
_MAX_POINTS = 1 << 31  # refuse chunk headers that would allocate more than this many values

_coders: dict[tuple, Any] = {}  # (model, quality, weights) -> (LevelCoder, weights hash); one per process
_coders_lock = threading.Lock()
_run_lock = threading.Lock()  # one network pass at a time per process (Zarr 3 codes chunks on threads)


def _loaded(model: str, quality: int | None, weights: str | None) -> tuple[Any, str, int | None]:
    """``(level coder, weights hash, quality)`` of a climate model, loaded once per process."""
    key = (model, quality, weights)
    with _coders_lock:
        if key not in _coders:
            from .. import registry

            loaded = registry.load(model if weights is None else None, quality, weights)
            if loaded.spec.kind != "climate" or not hasattr(loaded.model, "at_level"):
                raise ModelError(f"model {loaded.spec.name} cannot code Zarr chunks (use the VAEformer climate model)")
            _coders[key] = (loaded.model.at_level(loaded.quality), loaded.weights_hash, loaded.quality)
        return _coders[key]


def check_chunk(shape: tuple[int, ...], dtype: np.dtype) -> None:
    """One clear error unless a chunk of ``shape`` and ``dtype`` is made of 2-D float fields."""
    if len(shape) < 2 or min(shape[-2:]) < 2:
        raise InputError(f"codec compresses 2-D lat-lon fields (the chunk's last two dimensions); got a chunk of shape {tuple(shape)}")
    if np.dtype(dtype).kind != "f" or np.dtype(dtype).itemsize not in _DTYPES:
        raise InputError(f"codec compresses float32/float64 chunks, not {np.dtype(dtype)}; store packed variables unpacked")


class ClimateCodec(Codec, BytesBytesCodec):
    """Lossy (optionally error-bounded) compression of chunks of 2-D climate fields with the VAEformer.

    ``model`` and ``quality`` as ``codec encode`` (default: the default climate model at its default
    quality); ``max_abs_error``: a pointwise bound in the data's units; ``weights``: a weights file
    instead of the shipped checkpoint; ``weights_hash``: filled in from the model when not given, and
    checked against the model that decodes.
    """

    codec_id = CODEC_ID
    is_fixed_size = False

    def __init__(
        self,
        model: str | None = None,
        quality: int | None = None,
        max_abs_error: float | None = None,
        weights: str | None = None,
        weights_hash: str | None = None,
    ) -> None:
        from .. import registry

        if max_abs_error is not None and not (isinstance(max_abs_error, int | float) and np.isfinite(max_abs_error) and max_abs_error > 0):
            raise InputError(f"max_abs_error must be a positive number, got {max_abs_error!r}")
        self.model = model or (None if weights else registry.default_model("climate"))
        self.quality = quality
        self.max_abs_error = None if max_abs_error is None else float(max_abs_error)
        self.weights = None if weights is None else str(weights)
        if weights_hash is None:  # a new codec (for writing): the model names its hash and default quality now
            _, weights_hash, self.quality = _loaded(self.model, quality, self.weights)
        self.weights_hash = weights_hash

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.get_config().items())))

    def _coder(self) -> Any:
        coder, digest, _ = _loaded(self.model, self.quality, self.weights)
        if digest != self.weights_hash:
            raise ModelError(f"chunks were encoded with {self.model} weights {self.weights_hash}, but this model has {digest}")
        return coder

    def encode(self, buf: Any) -> bytes:
        """The bytes of one chunk (an array whose last two dimensions are a field's rows and columns).

        Zarr 3 calls the same name with a batch of ``(chunk bytes, chunk spec)`` pairs: that call goes to
        the ``BytesBytesCodec`` side (a coroutine, which Zarr awaits).
        """
        if _is_batch(buf):
            return BytesBytesCodec.encode(self, buf)
        arr = np.asarray(buf)
        check_chunk(arr.shape, arr.dtype)
        return self._encode_array(arr)

    def _encode_array(self, arr: np.ndarray) -> bytes:
        from . import fieldcodec

        dtype = arr.dtype.newbyteorder("<")
        fields = np.ascontiguousarray(arr, dtype=np.float64).reshape(-1, *arr.shape[-2:])
        if np.isinf(fields).any():
            raise InputError("the chunk holds infinite values; codec compresses finite values and missing (NaN) points")
        spec = fieldcodec.FieldSpec(arr.shape[-2:], dtype, self.max_abs_error, record_version=RECORDS[VERSION])
        parts = [_HEAD.pack(MAGIC, VERSION, dtype.itemsize, arr.ndim), *(_U32.pack(n) for n in arr.shape)]
        coder = self._coder()
        for field in fields:
            with _run_lock, _inference():
                record, recon = fieldcodec.encode(coder, field, spec)
            self._check_bound(field, recon, dtype)
            missing = np.isnan(field)
            mask = pack_missing(missing) if missing.any() else b""
            parts += [_FIELD.pack(len(mask), len(record)), mask, record]
        body = b"".join(parts)
        return body + _U32.pack(zlib.crc32(body))

    def _check_bound(self, field: np.ndarray, recon: np.ndarray, dtype: np.dtype) -> None:
        """The guarantee, checked on the values a reader will get (``recon`` cast to the chunk's dtype)."""
        if self.max_abs_error is None:
            return
        valid = ~np.isnan(field)
        err = np.abs(recon.astype(dtype).astype(np.float64)[valid] - field[valid])
        if err.size and not (np.isfinite(err).all() and err.max() <= self.max_abs_error):
            raise ModelError(f"internal error: a decoded point would be {err.max():.6g} off, above the bound {self.max_abs_error:g}")

    def decode(self, buf: Any, out: Any = None) -> np.ndarray:
        """The chunk's array (its own shape and dtype) from :meth:`encode`'s bytes; copied into ``out`` if given.

        A Zarr 3 batch goes to the ``BytesBytesCodec`` side, as in :meth:`encode`.
        """
        if _is_batch(buf):
            return BytesBytesCodec.decode(self, buf)
        arr = self._decode_bytes(ensure_bytes(buf))
        if out is not None:
            return ndarray_copy(arr, ensure_contiguous_ndarray(out))
        return arr

    def _decode_bytes(self, data: bytes) -> np.ndarray:
        from . import fieldcodec

        shape, dtype, pos, version = _read_head(data)
        spec = fieldcodec.FieldSpec(shape[-2:], dtype, self.max_abs_error, record_version=RECORDS[version])
        coder = self._coder()
        n_fields = int(np.prod(shape[:-2], dtype=np.int64))
        out = np.empty((n_fields, *shape[-2:]), dtype)
        body = data[:-4]
        for i in range(n_fields):
            if pos + _FIELD.size > len(body):
                raise CorruptStreamError("codec chunk is truncated")
            len_mask, len_record = _FIELD.unpack_from(body, pos)
            pos += _FIELD.size
            mask, record = body[pos : pos + len_mask], body[pos + len_mask : pos + len_mask + len_record]
            pos += len_mask + len_record
            if len(record) != len_record or len(mask) != len_mask:
                raise CorruptStreamError("codec chunk is truncated")
            with _run_lock, _inference():
                out[i] = fieldcodec.decode(coder, record, spec, _valid(mask, spec.shape))
        if pos != len(body):
            raise CorruptStreamError("codec chunk has trailing bytes")
        return out.reshape(shape)

    # Zarr 3: the chunk arrives as bytes (C order, little-endian) with its shape and dtype in ``spec``.

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: Any) -> None:
        """Refuse, when the array is created, chunks that are not 2-D float fields."""
        chunk_shape = getattr(chunk_grid, "chunk_shape", shape)
        check_chunk(tuple(chunk_shape), dtype.to_native_dtype())

    async def _encode_single(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        import asyncio

        dtype = chunk_spec.dtype.to_native_dtype().newbyteorder("<")
        arr = np.frombuffer(chunk_bytes.to_bytes(), dtype).reshape(chunk_spec.shape)
        check_chunk(arr.shape, arr.dtype)
        data = await asyncio.to_thread(self._encode_array, arr)
        return chunk_spec.prototype.buffer.from_bytes(data)

    async def _decode_single(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        import asyncio

        arr = await asyncio.to_thread(self._decode_bytes, chunk_bytes.to_bytes())
        if arr.shape != tuple(chunk_spec.shape):
            raise CorruptStreamError(f"codec chunk holds shape {arr.shape}, the array's chunks are {tuple(chunk_spec.shape)}")
        return chunk_spec.prototype.buffer.from_bytes(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: Any) -> int:
        """Not known before coding (a compressor)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The codec's metadata: Zarr 3's ``{"name", "configuration"}`` plus numcodecs' ``"id"``.

        Zarr writes this dict for both formats (a Zarr 2 ``.zarray`` too, where readers look up ``"id"``),
        so it carries both keys; :meth:`from_config` and :meth:`from_dict` read either.
        """
        config = self.get_config()
        config.pop("id")
        return {"name": ZARR_NAME, "id": CODEC_ID, "configuration": config}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClimateCodec:
        """The codec a store's metadata describes (:meth:`to_dict`)."""
        return cls.from_config(data)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ClimateCodec:
        """The codec of a numcodecs config (``get_config()``) or of the metadata :meth:`to_dict` writes."""
        config = dict(config.get("configuration", config))
        config.pop("id", None)
        return cls(**config)


def _is_batch(buf: Any) -> bool:
    """True for Zarr 3's batch argument (an iterable of pairs), False for a buffer or array (numcodecs' call)."""
    if hasattr(buf, "__array_interface__") or hasattr(buf, "__array__"):
        return False
    try:
        memoryview(buf)
    except TypeError:
        return True
    return False


def _inference() -> Any:
    from ..runtime import inference

    return inference()


def _read_head(data: bytes) -> tuple[tuple[int, ...], np.dtype, int, int]:
    """(shape, dtype, offset of the first field, chunk format) of a chunk, after checking its magic, format and checksum."""
    if len(data) < _HEAD.size + 4 or not data.startswith(MAGIC):
        raise CorruptStreamError("not a codec chunk (bad magic)")
    _, version, itemsize, ndim = _HEAD.unpack_from(data)
    if version not in RECORDS:
        raise CorruptStreamError(f"codec chunk format {version} is not one this codec reads (made by a newer version?)")
    if zlib.crc32(data[:-4]) != _U32.unpack_from(data, len(data) - 4)[0]:
        raise CorruptStreamError("codec chunk checksum mismatch (corrupt or truncated)")
    if itemsize not in _DTYPES or ndim < 2:
        raise CorruptStreamError("codec chunk header is invalid")
    end = _HEAD.size + 4 * ndim
    if len(data) < end + 4:
        raise CorruptStreamError("codec chunk is truncated")
    shape = struct.unpack_from(f"<{ndim}I", data, _HEAD.size)
    if min(shape[-2:]) < 1 or int(np.prod(shape, dtype=np.float64)) > _MAX_POINTS:
        raise CorruptStreamError(f"codec chunk header has an impossible shape {shape}")
    return tuple(shape), _DTYPES[itemsize], end, version


def _valid(mask: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The validity mask of a field (all valid when ``mask`` is empty)."""
    return unpack_valid(mask, shape) if mask else np.ones(shape, bool)
