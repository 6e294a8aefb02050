"""Quantized Gaussians with mean and scale, coded through frozen integer tables (for hyperpriors).

As in CompressAI's ``GaussianConditional``, the continuous scale a network predicts is snapped to a
fixed, log-spaced scale table, and every entry of that table owns a precomputed integer frequency
table over ``[-R, R]`` plus one escape symbol.  Callers subtract (and round) the mean themselves, so
the coder only ever sees integers and table indices: encoder and decoder agree bit for bit.

Values outside ``[-R, R]`` are coded as the escape symbol followed by the value itself in a 32-bit
uniform code.  Everything is vectorized over all symbols that share a scale index.
"""

from __future__ import annotations

import math
from functools import lru_cache

import constriction
import numpy as np
import torch

from ..errors import CorruptStreamError
from .tables import frequencies_to_table, table_to_probabilities

SCALE_MIN, SCALE_MAX, NUM_SCALES = 0.11, 256.0, 64
TAIL = 8.0  # table support in standard deviations
ESCAPE_BITS = 32


class GaussianTables:
    """The frozen scale table and one integer frequency table (with escape) per scale."""

    def __init__(self, scale_min: float = SCALE_MIN, scale_max: float = SCALE_MAX, num_scales: int = NUM_SCALES):
        self.scales = np.exp(np.linspace(math.log(scale_min), math.log(scale_max), num_scales))
        self.radius = np.ceil(self.scales * TAIL).astype(np.int64)
        self.freqs = [self._table(s, r) for s, r in zip(self.scales, self.radius, strict=True)]
        self.bits = [-np.log2(table_to_probabilities(f).astype(np.float64)) for f in self.freqs]  # per symbol, escape last
        top = int(self.radius[-1])
        self._bits_by_value = np.zeros((num_scales, 2 * top + 1))  # [table, value + top]; past a table's radius unused
        for i, r in enumerate(self.radius):
            self._bits_by_value[i, top - r : top + r + 1] = self.bits[i][:-1]
        self._escape_bits = np.array([b[-1] + ESCAPE_BITS for b in self.bits])

    @staticmethod
    def _table(scale: float, radius: int) -> np.ndarray:
        v = torch.arange(-radius, radius + 1, dtype=torch.float64)
        normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64))
        pmf = normal.cdf(v + 0.5) - normal.cdf(v - 0.5)
        tail = torch.clamp(1.0 - pmf.sum(), min=1e-9).reshape(1)
        return frequencies_to_table(torch.cat([pmf, tail])).numpy()

    def code_lengths(self, values: np.ndarray, indexes: np.ndarray) -> np.ndarray:
        """Bits :func:`encode` spends on each integer of ``values`` with the table at each of ``indexes`` (escapes included)."""
        values = np.asarray(values, dtype=np.int64).ravel()
        indexes = np.asarray(indexes, dtype=np.int64).ravel()
        top = int(self.radius[-1])
        escaped = np.abs(values) > self.radius[indexes]
        inside = self._bits_by_value[indexes, np.clip(values, -top, top) + top]
        return np.where(escaped, self._escape_bits[indexes], inside)

    def cheapest(self, values: np.ndarray) -> int:
        """Index of the table that codes all of ``values`` in the fewest bits (from their histogram, escapes included)."""
        v = np.asarray(values, dtype=np.int64).ravel()
        top = int(self.radius[-1])
        hist = np.bincount(np.clip(v, -top - 1, top + 1) + top + 1, minlength=2 * top + 3)
        cum = np.concatenate([[0], np.cumsum(hist)])
        best, best_bits = 0, np.inf
        for i, r in enumerate(self.radius):
            r = int(r)
            inside = hist[top + 1 - r : top + 2 + r]
            outside = v.size - (cum[top + 2 + r] - cum[top + 1 - r])
            bits = float(inside @ self.bits[i][:-1]) + outside * (self.bits[i][-1] + ESCAPE_BITS)
            if bits < best_bits:
                best, best_bits = i, bits
        return best

    def scale_index(self, scales: np.ndarray | torch.Tensor) -> np.ndarray:
        """Index of the smallest table scale >= each given scale (clamped to the table)."""
        s = scales.detach().cpu().numpy() if isinstance(scales, torch.Tensor) else np.asarray(scales)
        return np.clip(np.searchsorted(self.scales, s.astype(np.float64).ravel()), 0, len(self.scales) - 1)


@lru_cache(maxsize=1)
def default_tables() -> GaussianTables:
    """The shared default scale table (built once per process)."""
    return GaussianTables()


def _uniform16() -> constriction.stream.model.Uniform:
    return constriction.stream.model.Uniform(1 << 16)


def encode(values: np.ndarray, indexes: np.ndarray, tables: GaussianTables) -> bytes:
    """Code integer ``values`` (already mean-subtracted and rounded) with the tables at ``indexes``."""
    encoder = constriction.stream.queue.RangeEncoder()
    encode_into(encoder, values, indexes, tables)
    return encoder.get_compressed().astype("<u4").tobytes()


def encode_into(encoder: constriction.stream.queue.RangeEncoder, values: np.ndarray, indexes: np.ndarray, tables: GaussianTables) -> None:
    """Append ``values`` coded with the tables at ``indexes`` to ``encoder`` (:func:`decode_from` reads them back in order)."""
    values = np.asarray(values, dtype=np.int64).ravel()
    indexes = np.asarray(indexes, dtype=np.int64).ravel()
    if values.shape != indexes.shape:
        raise ValueError("values and indexes differ in size")
    escaped = []
    for i in np.flatnonzero(np.bincount(indexes)):
        sel = values[indexes == i]
        r = int(tables.radius[i])
        sym = np.where(np.abs(sel) > r, 2 * r + 1, sel + r).astype(np.int32)
        model = constriction.stream.model.Categorical(table_to_probabilities(tables.freqs[i]), perfect=False)
        encoder.encode(sym, model)
        escaped.append(sel[sym == 2 * r + 1])
    raw = np.concatenate(escaped).astype(np.int64) if escaped else np.zeros(0, np.int64)
    if raw.size:
        if np.any(np.abs(raw) >= 1 << (ESCAPE_BITS - 1)):
            raise ValueError("value too large for the escape code")
        u = (raw + (1 << (ESCAPE_BITS - 1))).astype(np.uint64)
        halves = np.stack([u >> np.uint64(16), u & np.uint64(0xFFFF)], 1).ravel().astype(np.int32)
        encoder.encode(halves, _uniform16())


def decode(data: bytes, indexes: np.ndarray, tables: GaussianTables) -> np.ndarray:
    """Inverse of :func:`encode`: integer values (int64) in the order of ``indexes``."""
    return decode_from(range_decoder(data), indexes, tables)


def range_decoder(data: bytes) -> constriction.stream.queue.RangeDecoder:
    """A decoder over the words of ``data``; :class:`CorruptStreamError` when it cannot be one."""
    if len(data) % 4:
        raise CorruptStreamError("entropy-coded stream length is not a multiple of 4 bytes")
    try:
        return constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    except (ValueError, RuntimeError) as exc:
        raise CorruptStreamError(f"corrupt entropy-coded stream ({exc})") from None


def decode_from(decoder: constriction.stream.queue.RangeDecoder, indexes: np.ndarray, tables: GaussianTables) -> np.ndarray:
    """The next ``len(indexes)`` values of ``decoder``, written by :func:`encode_into` with the same ``indexes``."""
    indexes = np.asarray(indexes, dtype=np.int64).ravel()
    try:
        out = np.zeros(indexes.shape, np.int64)
        escape_slots = []
        for i in np.flatnonzero(np.bincount(indexes)):
            where = np.nonzero(indexes == i)[0]
            r = int(tables.radius[i])
            model = constriction.stream.model.Categorical(table_to_probabilities(tables.freqs[i]), perfect=False)
            sym = decoder.decode(model, len(where)).astype(np.int64)
            out[where] = sym - r
            escape_slots.append(where[sym == 2 * r + 1])
        slots = np.concatenate(escape_slots) if escape_slots else np.zeros(0, np.int64)
        if slots.size:
            halves = decoder.decode(_uniform16(), 2 * slots.size).astype(np.int64).reshape(-1, 2)
            out[slots] = (halves[:, 0] << 16) + halves[:, 1] - (1 << (ESCAPE_BITS - 1))
    except (ValueError, RuntimeError, OverflowError, AssertionError) as exc:  # (constriction asserts on some invalid data)
        raise CorruptStreamError(f"corrupt entropy-coded stream ({exc})") from None
    return out
