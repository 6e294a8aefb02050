"""Discretized Laplace distributions with extra mass at zero, as frozen integer tables (for prediction errors).

Quantized prediction errors of smooth fields are peaked and heavy-tailed, and fields with flat
regions (no snow, no rain) add a spike of exact zeros; a Gaussian fits neither.  Each table of this
family is ``w * [v == 0] + (1 - w) * Laplace(v; 0, b)`` integrated over ``[v - 1/2, v + 1/2]`` on
``[-R, R]`` plus one escape symbol (the tail mass), for a log-spaced grid of scales ``b`` and a few
spike weights ``w``; the encoder picks for each group of values the table that codes it in the
fewest bits (:meth:`LaplaceSpikeTables.cheapest`) and sends its index.  The tables code through
:func:`codec.entropy.gaussian.encode_into` / :func:`~codec.entropy.gaussian.decode_from`, which only
read ``radius`` and ``freqs``, so escapes work the same way.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .gaussian import ESCAPE_BITS
from .tables import frequencies_to_table, table_to_probabilities

SCALE_MIN, SCALE_MAX, NUM_SCALES = 0.05, 300.0, 40
SPIKES = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95)  # extra probability mass at zero
TAIL = 10.0  # table support in scales (the Laplace tail beyond it is e^-10)
GROUP_RANGE = 255  # cheapest_per_group prices values up to this magnitude exactly


class LaplaceSpikeTables:
    """The frozen family: table ``i`` has scale ``scales[i // len(SPIKES)]`` and spike ``SPIKES[i % len(SPIKES)]``."""

    def __init__(self) -> None:
        self.scales = np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), NUM_SCALES))
        self.radius = np.repeat(np.ceil(self.scales * TAIL).astype(np.int64), len(SPIKES))
        self.freqs = [self._table(float(self.scales[i // len(SPIKES)]), SPIKES[i % len(SPIKES)], int(r)) for i, r in enumerate(self.radius)]
        top = int(self.radius[-1])
        self._top = top
        # bits of value v (column v + top) under each table; values beyond a table's radius cost its escape
        self._cost = np.empty((len(self.freqs), 2 * top + 1), np.float32)
        self._escape = np.empty(len(self.freqs))
        for i, (f, r) in enumerate(zip(self.freqs, self.radius, strict=True)):
            bits = -np.log2(table_to_probabilities(f))
            self._escape[i] = bits[-1] + ESCAPE_BITS
            self._cost[i, :] = self._escape[i]
            self._cost[i, top - r : top + r + 1] = bits[:-1]

    @staticmethod
    def _table(scale: float, spike: float, radius: int) -> np.ndarray:
        v = torch.arange(-radius, radius + 1, dtype=torch.float64)
        laplace = torch.distributions.Laplace(torch.tensor(0.0, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64))
        pmf = (1 - spike) * (laplace.cdf(v + 0.5) - laplace.cdf(v - 0.5))
        pmf[radius] += spike
        tail = torch.clamp(1.0 - pmf.sum(), min=1e-9).reshape(1)
        return frequencies_to_table(torch.cat([pmf, tail])).numpy()

    def cheapest(self, values: np.ndarray) -> int:
        """Index of the table that codes all of ``values`` in the fewest bits (escapes included)."""
        v = np.asarray(values, dtype=np.int64).ravel()
        if v.size == 0:
            return 0
        top = self._top
        m = int(min(np.abs(v).max(), top))
        hist = np.bincount(np.clip(v, -m, m) + m, minlength=2 * m + 1).astype(np.float64)
        beyond = int(np.count_nonzero(np.abs(v) > top))
        inside = hist.copy()
        if beyond:  # values past the widest table were counted at the ends; they cost an escape everywhere
            over, under = int(np.count_nonzero(v > top)), int(np.count_nonzero(v < -top))
            inside[-1] -= over
            inside[0] -= under
        bits = self._cost[:, top - m : top + m + 1].astype(np.float64) @ inside + beyond * self._escape
        return int(np.argmin(bits))

    def cheapest_per_group(self, values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """The table that codes the values of each group in about the fewest bits, as int64 [n_groups]
        (``groups``: each value's group in ``[0, n_groups)``; an empty group gets table 0).

        One matrix product over the groups' histograms of the values clipped to
        ``+-(GROUP_RANGE + 1)``: a value past that range is priced as the range's edge, so a group
        dominated by huge values may get a slightly narrower table than :meth:`cheapest` would pick.
        """
        m = GROUP_RANGE
        bins = np.clip(np.asarray(values, dtype=np.int64), -m - 1, m + 1) + m + 1
        width = 2 * m + 3
        hist = np.bincount(np.asarray(groups, dtype=np.int64) * width + bins, minlength=n_groups * width).reshape(n_groups, width)
        cost = self._cost[:, self._top - m - 1 : self._top + m + 2].astype(np.float64)
        return np.argmin(hist.astype(np.float64) @ cost.T, axis=1).astype(np.int64)


@lru_cache(maxsize=1)
def default_tables() -> LaplaceSpikeTables:
    """The shared family (built once per process)."""
    return LaplaceSpikeTables()
