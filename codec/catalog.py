"""The model catalogue: each model's name, media kind, description and shipped checkpoints, without torch.

Shipped weights live in ``codec/checkpoints/<name>-q<quality>.safetensors``, or in one
``<name>.safetensors`` holding every level for models with a bitrate ladder (McQuic, VQGAN-cluster and
VAEformer, whose quality is their ladder level).  Listing them (``codec models``, :func:`list_models`)
reads file sizes and the JSON header of the safetensors files only, so it needs neither torch nor the
models; :mod:`codec.registry` adds how each model is built and loads weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError
from .models import CRA5_MODEL, MCQUIC_OFFICIAL_MODEL

CHECKPOINTS = Path(__file__).parent / "checkpoints"
MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit on its JSON header


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a model before it is built: its identity, quality levels and shipped files."""

    name: str
    kind: str
    description: str
    default_quality: int
    ladder_keys: tuple[str, ...] = ()  # ladder models: the config lists whose entries are its levels; the quality picks one
    packets: bool = False  # can write resilient files of independently decodable packets (packet_rows, --packet-rows)
    recovery: str | None = None  # shipped lost-index recovery weights (file in CHECKPOINTS), if any
    tone: tuple[tuple[int, int, int], ...] = ()  # per level: tone layer (block size, luma step, chroma step); () = none
    effort: bool = False  # the encoder can search its indices against the decoder (effort, --effort; codec.models.index_search)

    def tone_settings(self, level: int) -> tuple[int, int, int] | None:
        """The tone layer new files of ``level`` carry (:mod:`codec.image.tone`); levels past the table take its last entry."""
        return self.tone[min(level, len(self.tone)) - 1] if self.tone else None

    @property
    def ladder(self) -> bool:
        """One file holds every level (the quality picks one at coding time)."""
        return bool(self.ladder_keys)


CATALOG: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            name="mcquic",
            kind="image",
            description="McQuic multi-codebook VQ image codec (fast, no context model)",
            default_quality=3,
            ladder_keys=("groups",),
            effort=True,
        ),
        ModelInfo(
            name=MCQUIC_OFFICIAL_MODEL,
            kind="image",
            description="official McQuic r0.1.17 network: load its qp_2_msssim .mcquic checkpoint with --weights",
            default_quality=2,
        ),
        ModelInfo(
            name="vaeformer",
            kind="climate",
            description="VAEformer transformer VAE with hyperprior for 2-D climate fields (CRA5)",
            default_quality=3,
            ladder_keys=("rates", "refinements"),
        ),
        ModelInfo(
            name=CRA5_MODEL,
            kind="climate",
            description="official CRA5 VAEformer (268 ERA5 channels on 721 x 1440): load cra5_268v_300k.pth with --weights",
            default_quality=1,
        ),
        ModelInfo(
            name="vqgan",
            kind="image",
            description="VQGAN-cluster: extreme compression (<0.05 bpp), K-means codebook ladder, learned index prior",
            default_quality=5,
            ladder_keys=("sizes",),
            packets=True,
            recovery="vqgan-recovery.safetensors",
            # from the Kodak rate-distortion hull of levels x settings (vqgan.md); one setting for levels 4-9 keeps
            # PSNR rising with the level and level 9 under 0.05 bpp
            tone=((64, 8, 8), (64, 4, 4), (64, 4, 4), (32, 8, 8), (32, 8, 8), (32, 8, 8), (32, 8, 8), (32, 8, 8), (32, 8, 8)),
        ),
    )
}
"""Every model, in the order ``codec models`` lists them."""

RETIRED_WEIGHTS: dict[str, tuple[str, str]] = {
    "b6354eae66b7064e": ("mcquic", "41553e2"),
    "41ecf7a7caa0972c": ("mcquic", "9adea6d"),
    "09fe0b6d28897359": ("mcquic", "501a6dc"),
    "545a5cc9996e100d": ("mcquic", "c7d5341"),
    "90089623be2bed39": ("vaeformer", "dff89fa"),
}
"""Weights hashes of checkpoints shipped earlier -> (checkpoint name, the repository commit that shipped them):
files they made name the version to fetch instead of only a hash mismatch."""


def retired_hint(digest: str) -> str:
    """How to get the retired weights ``digest`` (empty for weights this table does not know)."""
    if digest not in RETIRED_WEIGHTS:
        return ""
    name, commit = RETIRED_WEIGHTS[digest]
    return (
        f"; they are the {name} weights shipped in codec commit {commit}, retired since: "
        f"`git show {commit}:codec/checkpoints/{name}.safetensors > {name}-{digest}.safetensors`, then --weights {name}-{digest}.safetensors"
    )


def default_model(kind: str) -> str:
    """Name of the default model for a media kind."""
    return {"image": "mcquic", "climate": "vaeformer"}[kind]


def checkpoint_path(name: str, quality: int) -> Path:
    """Where the shipped checkpoint of ``name`` at ``quality`` lives."""
    if name in CATALOG and CATALOG[name].ladder:
        return CHECKPOINTS / f"{name}.safetensors"
    return CHECKPOINTS / f"{name}-q{quality}.safetensors"


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata (``__metadata__``) of a safetensors file, read from its JSON header alone.

    The file starts with the header's length (8 bytes, little-endian) and the header; no tensor is read.
    """
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 2 <= size <= min(MAX_HEADER_BYTES, os.fstat(f.fileno()).st_size - 8):
                raise ValueError("not a safetensors file (no header)")
            header = json.loads(f.read(size))
    except OSError as exc:
        raise ModelError(f"cannot read weights {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelError(f"cannot read weights {path}: {str(exc).splitlines()[0]}") from None
    meta = (header.get("__metadata__") or {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ModelError(f"cannot read weights {path}: invalid safetensors header")
    return meta


def ladder_levels(info: ModelInfo, path: str | os.PathLike) -> int:
    """Number of levels in a ladder model's weights file (from its metadata, without loading tensors)."""
    try:
        config = json.loads(read_metadata(path).get("config", "{}"))
        return sum(len(config.get(key, [])) for key in info.ladder_keys)
    except (ValueError, AttributeError, TypeError):
        raise ModelError(f"{path} has no valid ladder configuration") from None


def shipped_qualities(name: str) -> list[int]:
    """Quality levels of ``name`` with a shipped checkpoint, ascending."""
    info = CATALOG.get(name)
    if info is not None and info.ladder:
        path = checkpoint_path(name, 1)
        return list(range(1, ladder_levels(info, path) + 1)) if path.is_file() else []
    return sorted(int(p.stem.rsplit("-q", 1)[1]) for p in CHECKPOINTS.glob(f"{name}-q*.safetensors"))


def list_models() -> list[dict]:
    """Every model with its shipped quality levels and checkpoint sizes (MB)."""
    rows = []
    for info in CATALOG.values():
        qualities = [{"quality": q, "size_mb": checkpoint_path(info.name, q).stat().st_size / 1e6} for q in shipped_qualities(info.name)]
        row = {"name": info.name, "kind": info.kind, "description": info.description, "ladder": info.ladder, "qualities": qualities}
        if info.recovery and (CHECKPOINTS / info.recovery).is_file():
            row["recovery_mb"] = (CHECKPOINTS / info.recovery).stat().st_size / 1e6
        rows.append(row)
    return rows
