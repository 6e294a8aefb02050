"""Frames <-> bytes with the indices of an image model: intra frames as images, inter frames through the temporal prior.

The image model is McQuic (three latent scales of ``m`` codebook groups) or VQGAN-cluster (one token map),
both seen through :mod:`codec.video.index_models`.  A group of pictures (GOP) starts with an intra frame,
coded exactly as the image codec codes an image, and goes on with inter frames coded in the index domain against the previous
frame's indices (:mod:`codec.video.temporal`).  The encoder picks inter indices by rate-distortion:
for each latent vector the codeword minimizing ``distance / D0 + alpha * bits`` under the prior
(``D0``: the scale's mean nearest-codeword distance), with the largest ``alpha`` from
:data:`ALPHAS` whose finest-latent error stays within ``1 + tolerance`` of the nearest-codeword choice.
Static content then repeats the previous indices and costs almost nothing; moving content pays for
what changed.  Decoding an inter frame needs the previous frame's indices only, so a GOP decodes on
its own and an error never spreads past the next intra frame.

Frame payload (one container stream per frame)::

    type u8 (0 intra, 1 inter)
    intra: per scale, finest first: varint length + the image codec's stream of that scale
    inter: per scale, coarsest first: hit rate u8 (0-255), varint length + stage-1 stream,
           varint length + stage-2 stream (the misses, per codebook group, static tables)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import constriction
import numpy as np
import torch
from torch import Tensor

from .. import container
from ..entropy import categorical
from ..entropy.tables import table_to_probabilities
from ..errors import CorruptStreamError, ModelError
from ..image.tone import ToneSettings
from . import temporal
from .index_models import index_model

INTRA, INTER = 0, 1
ALPHAS = (0.4, 0.2, 0.1, 0.05, 0.02, 0.0)
_FAMILY = constriction.stream.model.Categorical(perfect=False)


@dataclass
class VideoCoder:
    """One image model at one level plus the temporal prior: codes frames of one GOP at a time."""

    net: Any  # McQuic or VQGAN-cluster (wrapped by :func:`codec.video.index_models.index_model` on creation)
    level: int
    prior: temporal.TemporalPrior | None
    tolerance: float = 0.05  # allowed rise of the finest-latent error over the nearest-codeword choice
    exact_prior: bool = True  # run the prior in float64 (files that say ``prior_dtype: float64``; older files: float32)
    tone: ToneSettings | None = None  # the tone layer frames carry (VQGAN-cluster; :mod:`codec.video.file`)

    def at_level(self, level: int, tone: ToneSettings | None) -> VideoCoder:
        """This coder at another level of its image model and with that level's tone layer (same prior and settings)."""
        return dataclasses.replace(self, level=level, tone=tone)

    def __post_init__(self) -> None:
        # The stage-1 probabilities must come out the same on every CPU: float32 kernels of another CPU move
        # a logit by ~1e-7, which crosses a boundary of the 1/16 logit grid about once in 1e5 logits, and a
        # frame has that many; in float64 the move is ~1e-16.
        self._run_prior = copy.deepcopy(self.prior).double() if self.exact_prior and self.prior is not None else self.prior
        self.net = index_model(self.net)
        quantizers = self.net.codebooks(self.level)
        self._freqs = [q.freq.cpu().numpy() for q in quantizers]
        self._intra_bits = [torch.from_numpy(-np.log2(table_to_probabilities(f))).float() for f in self._freqs]
        self._groups = quantizers[0].groups

    def prior_slot(self, scale: int) -> int:
        """The prior's scale input (one-hot of ``temporal.SCALES``) for ``scale`` of the image model: the scale itself
        (McQuic), or what the index model says (``prior_slots``: VQGAN-cluster's one map is a coarsest scale)."""
        slots = getattr(self.net, "prior_slots", None)
        slot = slots[scale] if slots is not None else scale
        if not 0 <= slot < temporal.SCALES:
            raise ModelError(f"the temporal prior knows {temporal.SCALES} latent scales; this model has more")
        return slot

    # -- intra -------------------------------------------------------------------------------------

    def encode_intra(self, x: Tensor) -> tuple[bytes, list[Tensor]]:
        """Payload and indices (finest first, [m, h, w]) of a padded frame [1, 3, H, W] coded on its own."""
        features = self.net.features(x)
        indices = self.net.encode_indices(x, self.level, features)
        streams = self.net.compress_indices(indices, self.level)
        return bytes([INTRA]) + b"".join(_varint_chunk(s) for s in streams), [i[0] for i in indices]

    def _decode_intra(self, data: bytes, pos: int, shapes: list[tuple[int, int]]) -> list[Tensor]:
        streams = []
        for _ in shapes:
            stream, pos = _chunk(data, pos)
            streams.append(stream)
        _end(data, pos)
        return [i[0] for i in self.net.decompress_indices(streams, self.level, shapes)]

    # -- inter -------------------------------------------------------------------------------------

    def _probabilities(self, scale: int, prev: list[Tensor], current: dict[int, Tensor], hit_rate: int) -> tuple[Tensor, Tensor]:
        """``(candidates [OFFSETS, m, h, w], merged stage-1 probabilities [m*h*w, SYMBOLS])`` of one scale."""
        coarse = scale + 1 if scale + 1 < len(prev) else None
        feats = temporal.features(
            prev[scale],
            current.get(coarse) if coarse is not None else None,
            prev[coarse] if coarse is not None else None,
            hit_rate / 255,
            self.prior_slot(scale),
        )
        cands = temporal.candidates(prev[scale])
        with torch.inference_mode():
            logits = self._run_prior(feats.double() if self.exact_prior else feats)
        return cands, temporal.merged_probabilities(logits, cands)

    def _chooser(self, prev: list[Tensor], alpha: float, chosen: dict[int, Tensor], errors: list[float]) -> Callable:
        """The rate-distortion index choice of one ``alpha`` for :meth:`McQuic.choose_indices`."""

        def choose(scale: int, dist: Tensor, shape: tuple[int, int]) -> Tensor:
            nearest = dist.argmin(-1)
            m = dist.shape[0]
            if alpha == 0:
                idx = nearest
            else:
                hit_rate = _hit_rate(nearest.reshape(m, *shape), prev[scale])
                cands, p = self._probabilities(scale, prev, chosen, hit_rate)
                bits = -torch.log2(p.reshape(m, -1, temporal.SYMBOLS).float())
                d0 = dist.gather(-1, nearest.unsqueeze(-1)).mean().clamp_min(1e-12)
                cost = dist / d0 + alpha * (bits[..., temporal.MISS : temporal.MISS + 1] + self._intra_bits[scale].unsqueeze(1))
                flat_cands = cands.reshape(len(temporal.OFFSETS), m, -1)
                for j in reversed(range(len(temporal.OFFSETS))):  # the first offset with a codeword wins
                    c = flat_cands[j].unsqueeze(-1)
                    cost.scatter_(-1, c, dist.gather(-1, c) / d0 + alpha * bits[..., j : j + 1])
                idx = cost.argmin(-1)
            chosen[scale] = idx.reshape(m, *shape)
            if scale == 0:
                errors.append(float(dist.gather(-1, idx.unsqueeze(-1)).sum()))
            return idx

        return choose

    def encode_inter(self, x: Tensor, prev: list[Tensor]) -> tuple[bytes, list[Tensor]]:
        """Payload and indices of a padded frame [1, 3, H, W] coded against the previous frame's indices."""
        features = self.net.features(x)
        indices, base = None, None
        for alpha in reversed(ALPHAS):  # 0 first: the reference error
            errors: list[float] = []
            candidate = self.net.choose_indices(features, self.level, self._chooser(prev, alpha, {}, errors))
            if base is None:
                base, indices = errors[0], candidate
            elif errors[0] <= (1 + self.tolerance) * base:
                indices = candidate
            else:
                break
        current = [i[0] for i in indices]
        parts = [bytes([INTER])]
        decoded: dict[int, Tensor] = {}
        for scale in reversed(range(len(current))):
            hit_rate = _hit_rate(current[scale], prev[scale])
            cands, p = self._probabilities(scale, prev, decoded, hit_rate)
            symbols = temporal.hit_symbols(current[scale], cands)
            parts += [bytes([hit_rate]), _varint_chunk(_encode_stage1(symbols.flatten().numpy(), p.numpy()))]
            misses = [current[scale][g][symbols[g] == temporal.MISS].numpy() for g in range(self._groups)]
            parts.append(_varint_chunk(categorical.encode_groups(misses, self._freqs[scale])))
            decoded[scale] = current[scale]
        return b"".join(parts), current

    def _decode_inter(self, data: bytes, pos: int, prev: list[Tensor]) -> list[Tensor]:
        decoded: dict[int, Tensor] = {}
        for scale in reversed(range(len(prev))):
            if pos >= len(data):
                raise CorruptStreamError("video frame truncated")
            hit_rate = data[pos]
            cands, p = self._probabilities(scale, prev, decoded, hit_rate)
            stage1, pos = _chunk(data, pos + 1)
            stage2, pos = _chunk(data, pos)
            symbols = torch.from_numpy(_decode_stage1(stage1, p.numpy())).reshape(prev[scale].shape)
            miss = symbols == temporal.MISS
            counts = [int(miss[g].sum()) for g in range(self._groups)]
            missed = categorical.decode_groups(stage2, self._freqs[scale], counts)
            out = torch.gather(cands, 0, symbols.clamp_max(temporal.MISS - 1).unsqueeze(0))[0]
            for g in range(self._groups):
                out[g][miss[g]] = torch.from_numpy(missed[g])
            decoded[scale] = out
        _end(data, pos)
        return [decoded[s] for s in range(len(prev))]

    # -- both --------------------------------------------------------------------------------------

    def decode_indices(self, data: bytes, prev: list[Tensor] | None, shapes: list[tuple[int, int]]) -> list[Tensor]:
        """Indices of one frame payload; ``prev``: the previous frame's indices (None at the start of a GOP)."""
        if not data or data[0] not in (INTRA, INTER):
            raise CorruptStreamError("video frame has an unknown type")
        if data[0] == INTRA:
            return self._decode_intra(data, 1, shapes)
        if prev is None:
            raise CorruptStreamError("inter frame without a previous frame")
        return self._decode_inter(data, 1, prev)

    def synthesize(self, indices: list[Tensor]) -> Tensor:
        """The decoded padded frame [1, 3, H, W] in [0, 1] from indices of every scale."""
        return self.synthesize_many([indices])[0]

    def synthesize_many(self, frames: list[list[Tensor]]) -> list[Tensor]:
        """:meth:`synthesize` of several frames (indices of every scale each) in one batch: [1, 3, H, W] each."""
        if not frames:
            return []
        batched = [torch.stack(scale) for scale in zip(*frames, strict=True)]
        return list(self.net.decode_indices(batched, self.level).clamp_(0, 1).split(1))


def _hit_rate(current: Tensor, prev: Tensor) -> int:
    """How often ``current`` repeats ``prev`` at the same position, as 0-255."""
    return int(round(255 * float((current == prev).float().mean())))


def _encode_stage1(symbols: np.ndarray, probabilities: np.ndarray) -> bytes:
    encoder = constriction.stream.queue.RangeEncoder()
    if symbols.size:
        encoder.encode(symbols.astype(np.int32), _FAMILY, np.ascontiguousarray(probabilities))
    return encoder.get_compressed().astype("<u4").tobytes()


def _decode_stage1(data: bytes, probabilities: np.ndarray) -> np.ndarray:
    if len(data) % 4:
        raise CorruptStreamError("video stage-1 stream length is not a multiple of 4 bytes")
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))
    try:
        return np.asarray(decoder.decode(_FAMILY, np.ascontiguousarray(probabilities)), dtype=np.int64)
    except (ValueError, RuntimeError, OverflowError, AssertionError) as exc:  # (constriction asserts on some invalid data)
        raise CorruptStreamError(f"corrupt video stream ({exc})") from None


def _varint_chunk(data: bytes) -> bytes:
    return container.varint(len(data)) + data


def _chunk(data: bytes, pos: int) -> tuple[bytes, int]:
    """A varint-prefixed chunk at ``pos`` and the position after it."""
    n, pos = container.read_varint(data, pos, "video frame")
    if pos + n > len(data):
        raise CorruptStreamError("video frame truncated")
    return data[pos : pos + n], pos + n


def _end(data: bytes, pos: int) -> None:
    if pos != len(data):
        raise CorruptStreamError("video frame has trailing bytes")
