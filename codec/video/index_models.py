"""The image models as video sees them: frames <-> index maps at a level, and the tables of missed indices.

:class:`codec.video.coding.VideoCoder` codes frames in the index domain of an image model through
one small interface (duck-typed; McQuic has it natively):

``levels``, ``pad_multiple``, ``latent_shapes(H, W)``
    the model's levels, padding and index grids (finest scale first) of a padded frame
``features(x)``, ``encode_indices(x, level, features)``, ``choose_indices(features, level, choose)``
    the analysis transform and the nearest-codeword / rate-distortion index choice (each scale [1, m, h, w])
``compress_indices(indices, level)``, ``decompress_indices(streams, level, shapes)``
    an intra frame's indices as the image codec codes them, one stream per scale, and back
``decode_indices(indices, level)``
    frames [B, 3, H, W] of batched indices (the synthesis transform); optionally ``synthesis_batch``, the
    most frames worth synthesizing in one call (default :data:`codec.video.file.SYNTHESIS_BATCH`)
``prior_slots`` (optional)
    the temporal prior's scale input of each scale (default: the scale itself)
``codebooks(level)``
    per scale, an object with ``freq`` ([m, K] integer table) and ``groups`` (``m``): how an inter
    frame codes the indices the temporal prior missed

:class:`VQGANIndices` gives VQGAN-cluster that interface: one scale of one group (a token per 16 x 16
pixels), intra frames coded with the level's checkerboard prior exactly as an image file codes them,
misses with the level's frequency table.  Its frames also carry the tone layer an image of the level
carries (:mod:`codec.image.tone`, :func:`tone_for`): VQGAN-cluster's indices hold almost no colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import catalog
from ..errors import InputError
from ..image.tone import ToneSettings
from ..models.vqgan_cluster import VQGANCluster
from . import temporal


@dataclass(frozen=True)
class MissTable:
    """How one scale's missed indices are coded: an integer table [groups, K] per codebook group."""

    freq: Tensor
    groups: int


class VQGANIndices:
    """VQGAN-cluster as an index model of video (module docstring): one index map [1, 1, h, w] per frame."""

    prior_slots = (temporal.SCALES - 1,)
    """The temporal prior sees the one token map as a coarsest scale (no coarser scale above it, the case it saw at
    McQuic's coarsest)."""

    synthesis_batch = 1
    """Frames per synthesis call: the VQGAN decoder runs slower per frame in batches (320x240 on 2 cores: 116 ms
    one at a time, 150 ms per frame four at a time, channels-last)."""

    def __init__(self, model: VQGANCluster) -> None:
        self.model = model

    @property
    def levels(self) -> int:
        """Number of ladder levels."""
        return self.model.levels

    @property
    def pad_multiple(self) -> int:
        """Frame sides are padded to a multiple of this (the VQGAN's downsampling factor)."""
        return self.model.pad_multiple

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The one token grid of a padded frame."""
        return [(height // self.pad_multiple, width // self.pad_multiple)]

    def features(self, x: Tensor) -> Tensor:
        """Encoder output of padded frames [B, 3, H, W] in [0, 1]."""
        return self.model.features(x)

    def encode_indices(self, x: Tensor, level: int, features: Tensor | None = None) -> list[Tensor]:
        """Nearest-codeword indices ``[[B, 1, h, w]]`` at ``level``."""
        return [self.model.level_indices(x, level, features).unsqueeze(1)]

    def choose_indices(self, features: Tensor, level: int, choose: Any) -> list[Tensor]:
        """Indices ``[[1, 1, h, w]]`` picked by ``choose(0, distances [1, h*w, K], (h, w))`` (see McQuic's)."""
        lv = self.model.level(level)
        z = lv.quant_conv(features)
        h, w = z.shape[-2:]
        flat = z[0].flatten(1).t()  # [h*w, D]
        codebook = lv.codebook.to(flat.dtype)
        dist = (flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.t()).clamp_min(0)
        return [choose(0, dist.unsqueeze(0), (h, w)).reshape(1, 1, h, w)]

    def compress_indices(self, indices: list[Tensor], level: int) -> list[bytes]:
        """One stream: the index map coded with the level's checkerboard prior (as an image file codes it)."""
        return [self.model.level(level).encode(indices[0][0, 0])]

    def decompress_indices(self, streams: list[bytes], level: int, shapes: list[tuple[int, int]]) -> list[Tensor]:
        """Inverse of :meth:`compress_indices`: ``[[1, 1, h, w]]``."""
        (h, w), lv = shapes[0], self.model.level(level)
        return [lv.decode(streams[0], h, w).reshape(1, 1, h, w)]

    @torch.no_grad()
    def decode_indices(self, indices: list[Tensor], level: int) -> Tensor:
        """Frames [B, 3, H, W] in [0, 1] (padded size) of index maps ``[[B, 1, h, w]]`` (the decoder on a channels-last
        latent: 128 -> 116 ms per 320x240 frame on 2 cores, equal to float rounding)."""
        latent = self.model.level(level).latent(indices[0][:, 0]).contiguous(memory_format=torch.channels_last)
        return self.model.latent_decode(latent).contiguous()

    def codebooks(self, level: int) -> list[MissTable]:
        """The level's frequency table, for the indices the temporal prior misses."""
        return [MissTable(self.model.level(level).freq, 1)]


def tone_for(net: object, level: int) -> ToneSettings | None:
    """The tone layer the frames of a new file at ``level`` carry: an image's of that level for VQGAN-cluster, else none."""
    settings = catalog.CATALOG["vqgan"].tone_settings(level) if isinstance(net, VQGANIndices | VQGANCluster) else None
    return ToneSettings(*settings) if settings else None


def index_model(model: object) -> Any:
    """``model`` as video's index model (module docstring): McQuic as it is, VQGAN-cluster wrapped."""
    if isinstance(model, VQGANCluster):
        return VQGANIndices(model)
    if hasattr(model, "choose_indices"):
        return model
    raise InputError(f"video is coded with mcquic or vqgan, not {type(model).__name__}")
