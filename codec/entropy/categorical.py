"""Categorical symbols (vector-quantization indices) coded with static integer frequency tables.

Each row of ``symbols`` (or each group of symbols) is coded with the matching row of the table, one
vectorized constriction call per row, never a Python loop per symbol.  The stream is a constriction range
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


def encode_groups(groups: list[np.ndarray], freq: np.ndarray) -> bytes:
    """Code group ``i``'s symbols (any length, alphabet ``range(freq.shape[1])``) with row ``i`` of ``freq``.

    One vectorized constriction call per group, in group order, into one range-coded stream.
    """
    if len(groups) != freq.shape[0]:
        raise ValueError(f"{len(groups)} symbol groups for a table of {freq.shape[0]} rows")
    encoder = constriction.stream.queue.RangeEncoder()
    for symbols, model in zip(groups, _models(freq), strict=True):
        symbols = np.asarray(symbols).reshape(-1)
        if symbols.size and (symbols.min() < 0 or symbols.max() >= freq.shape[1]):
            raise ValueError("symbol outside the alphabet of its table")
        if symbols.size:
            encoder.encode(symbols.astype(np.int32), model)
    return encoder.get_compressed().astype("<u4").tobytes()


class GroupDecoder:
    """Decodes an :func:`encode_groups` stream in steps, so later groups' sizes may depend on earlier symbols."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise EntropyDecodeError("entropy-coded stream length is not a multiple of 4 bytes")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._decoder = constriction.stream.queue.RangeDecoder(words)

    def decode(self, freq: np.ndarray, counts: list[int]) -> list[np.ndarray]:
        """The next groups: ``counts[i]`` symbols coded with row ``i`` of ``freq``; int64 arrays."""
        try:
            return [
                np.asarray(self._decoder.decode(model, n), dtype=np.int64) if n else np.zeros(0, np.int64)
                for model, n in zip(_models(freq), counts, strict=True)
            ]
        except (ValueError, RuntimeError, OverflowError, AssertionError) as exc:  # constriction reports corrupt data this way
            raise EntropyDecodeError(f"corrupt entropy-coded stream ({exc})") from None


def decode_groups(data: bytes, freq: np.ndarray, counts: list[int]) -> list[np.ndarray]:
    """Inverse of :func:`encode_groups`: ``counts[i]`` symbols with row ``i``; int64 arrays."""
    return GroupDecoder(data).decode(freq, counts)


def encode(symbols: np.ndarray, freq: np.ndarray) -> bytes:
    """Code ``symbols`` [rows, n] (row r drawn from alphabet ``range(freq.shape[1])``) with table ``freq`` [rows, k]."""
    symbols = np.asarray(symbols)
    if symbols.ndim != 2 or symbols.shape[0] != freq.shape[0]:
        raise ValueError(f"symbols {symbols.shape} do not match table {tuple(freq.shape)}")
    return encode_groups(list(symbols), freq)


def decode(data: bytes, freq: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` symbols per row of ``freq``; inverse of :func:`encode`.  Returns int64 [rows, count]."""
    rows = decode_groups(data, freq, [count] * freq.shape[0])
    return np.stack(rows) if rows else np.zeros((0, count), np.int64)
