"""Categorical symbols (vector-quantization indices) coded with static integer frequency tables.

Each row of ``symbols`` is coded with the matching row of the table, one vectorized constriction
call per row (per codebook), never a Python loop per symbol.  The stream is a constriction range
coder's compressed words serialized little-endian.
"""

from __future__ import annotations

import constriction
import numpy as np

from ..errors import CorruptStreamError as EntropyDecodeError
from .tables import table_to_probabilities


def _models(freq: np.ndarray) -> list:
    probs = table_to_probabilities(freq)
    return [constriction.stream.model.Categorical(row, perfect=False) for row in probs]


def encode(symbols: np.ndarray, freq: np.ndarray) -> bytes:
    """Code ``symbols`` [rows, n] (row r drawn from alphabet ``range(freq.shape[1])``) with table ``freq`` [rows, k]."""
    symbols = np.asarray(symbols)
    if symbols.ndim != 2 or symbols.shape[0] != freq.shape[0]:
        raise ValueError(f"symbols {symbols.shape} do not match table {tuple(freq.shape)}")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= freq.shape[1]):
        raise ValueError("symbol outside the alphabet of its table")
    encoder = constriction.stream.queue.RangeEncoder()
    for row, model in zip(symbols.astype(np.int32), _models(freq), strict=True):
        encoder.encode(row, model)
    return encoder.get_compressed().astype("<u4").tobytes()


def decode(data: bytes, freq: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` symbols per row of ``freq``; inverse of :func:`encode`.  Returns int64 [rows, count]."""
    if len(data) % 4:
        raise EntropyDecodeError("entropy-coded stream length is not a multiple of 4 bytes")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        rows = [decoder.decode(model, count) for model in _models(freq)]
    except (ValueError, RuntimeError, OverflowError) as exc:  # constriction reports corrupt data this way
        raise EntropyDecodeError(f"corrupt entropy-coded stream ({exc})") from None
    return np.stack(rows).astype(np.int64) if rows else np.zeros((0, count), np.int64)
