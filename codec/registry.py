"""Models by name (as timm's registry), their shipped checkpoints, and safe weight loading.

Shipped weights live in ``codec/checkpoints/<name>-q<quality>.safetensors``, or in one
``<name>.safetensors`` holding every level for models with a bitrate ladder (McQuic, VQGAN-cluster and
VAEformer, whose quality is their ladder level).  Each file's metadata names its model and configuration, so a file can
also be loaded from anywhere with ``weights=``.  Official McQuic checkpoints (``*.mcquic``) load
with ``weights=`` too, as model ``mcquic-official`` (see :mod:`codec.models.mcquic_official`), and so
do official CRA5 checkpoints (``*.pth``, such as ``cra5_268v_300k.pth``), as model
``vaeformer-official`` (see :mod:`codec.models.vaeformer_official`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .checkpoint import load_weights, read_metadata, weights_hash
from .errors import ModelError
from .models import vaeformer_official as cra5
from .models.base import CodecModel
from .models.mcquic import McQuic, McQuicConfig
from .models.mcquic_official import MODEL_NAME as MCQUIC_OFFICIAL
from .models.mcquic_official import McQuicOfficial, OfficialConfig, load_official
from .models.vaeformer import VAEformer, VAEformerConfig
from .models.vqgan_cluster import VQGANCluster, VQGANClusterConfig

CHECKPOINTS = Path(__file__).parent / "checkpoints"
CRA5_GEOMETRY = cra5.FULL
"""What an official CRA5 ``.pth`` file's tensor shapes cannot tell (input size, strides, heads, windows):
the published model's.  Tests set a small geometry here."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered codec model."""

    name: str
    kind: str
    description: str
    build: Callable[[dict], CodecModel]
    default_quality: int
    ladder_keys: tuple[str, ...] = ()  # ladder models: the config lists whose entries are its levels; the quality picks one
    packets: bool = False  # can write resilient files of independently decodable packets (--packet-rows)
    recovery: str | None = None  # shipped lost-index recovery weights (file in CHECKPOINTS), if any

    @property
    def ladder(self) -> bool:
        """One file holds every level (the quality picks one at coding time)."""
        return bool(self.ladder_keys)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for coding, with the identity recorded in every file it writes."""

    spec: ModelSpec
    model: CodecModel
    quality: int | None
    weights_hash: str
    path: Path


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry."""
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or a one-line error listing the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def default_model(kind: str) -> str:
    """Name of the default model for a media kind."""
    return {"image": "mcquic", "climate": "vaeformer"}[kind]


def checkpoint_path(name: str, quality: int) -> Path:
    """Where the shipped checkpoint of ``name`` at ``quality`` lives."""
    if _REGISTRY.get(name) is not None and _REGISTRY[name].ladder:
        return CHECKPOINTS / f"{name}.safetensors"
    return CHECKPOINTS / f"{name}-q{quality}.safetensors"


def ladder_levels(spec: ModelSpec, path: str | Path) -> int:
    """Number of levels in a ladder model's weights file (from its metadata, without loading tensors)."""
    try:
        config = json.loads(read_metadata(path).get("config", "{}"))
        return sum(len(config.get(key, [])) for key in spec.ladder_keys)
    except (ValueError, AttributeError, TypeError):
        raise ModelError(f"{path} has no valid ladder configuration") from None


def shipped_qualities(name: str) -> list[int]:
    """Quality levels of ``name`` with a shipped checkpoint, ascending."""
    spec = _REGISTRY.get(name)
    if spec is not None and spec.ladder:
        path = checkpoint_path(name, 1)
        return list(range(1, ladder_levels(spec, path) + 1)) if path.is_file() else []
    return sorted(int(p.stem.rsplit("-q", 1)[1]) for p in CHECKPOINTS.glob(f"{name}-q*.safetensors"))


def list_models() -> list[dict]:
    """Every registered model with its shipped quality levels and checkpoint sizes."""
    rows = []
    for spec in _REGISTRY.values():
        qualities = [
            {"quality": q, "size_mb": checkpoint_path(spec.name, q).stat().st_size / 1e6}
            for q in shipped_qualities(spec.name)
        ]
        row = {"name": spec.name, "kind": spec.kind, "description": spec.description, "ladder": spec.ladder, "qualities": qualities}
        if spec.recovery and (CHECKPOINTS / spec.recovery).is_file():
            row["recovery_mb"] = (CHECKPOINTS / spec.recovery).stat().st_size / 1e6
        rows.append(row)
    return rows


def load(name: str | None = None, quality: int | None = None, weights: str | Path | None = None) -> LoadedModel:
    """Load a model for coding: the shipped checkpoint of (name, quality), or the file ``weights``."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"weights file not found: {path}")
    else:
        spec = get_spec(name or default_model("image"))
        levels = shipped_qualities(spec.name)
        if not levels:
            raise ModelError(f"no shipped checkpoints for {spec.name}; pass --weights")
        q = spec.default_quality if quality is None else quality
        if not spec.ladder and q not in levels:  # a ladder's level is checked once its file is loaded
            raise ModelError(f"{spec.name} has quality levels {levels[0]}..{levels[-1]}, not {q}")
        path = checkpoint_path(spec.name, q)
    loaded = _load_file(str(path.resolve()), path.stat().st_mtime_ns, name)
    if not loaded.spec.ladder:
        return loaded
    level = min(loaded.spec.default_quality, loaded.model.levels) if quality is None else quality
    if not 1 <= level <= loaded.model.levels:
        raise ModelError(f"{loaded.spec.name} has levels 1..{loaded.model.levels}, not {level}")
    return dataclasses.replace(loaded, quality=level)


def _check_expected(spec: ModelSpec, expected: str | None, path: str) -> None:
    """One-line error unless a file of ``spec`` may be used where model ``expected`` was asked for."""
    if expected is not None and expected != spec.name:
        raise ModelError(f"{path} holds weights of {spec.name!r}, not {expected!r}")


def _load_foreign(path: str, expected: str | None) -> LoadedModel | None:
    """An official checkpoint in its upstream format, by suffix: McQuic ``.mcquic`` files as ``mcquic-official``,
    CRA5 ``.pth`` files as ``vaeformer-official`` (geometry :data:`CRA5_GEOMETRY`); None for other files."""
    loaders = {
        ".mcquic": (MCQUIC_OFFICIAL, load_official),
        ".pth": (cra5.MODEL_NAME, lambda p: cra5.load_official(p, CRA5_GEOMETRY)),
    }
    name, load = loaders.get(Path(path).suffix.lower(), (None, None))
    if name is None:
        return None
    spec = get_spec(name)
    _check_expected(spec, expected, path)
    model, _ = load(path)
    return LoadedModel(spec, model, None, weights_hash(model.state_dict()), Path(path))


@lru_cache(maxsize=8)
def _load_file(path: str, mtime_ns: int, expected: str | None) -> LoadedModel:
    foreign = _load_foreign(path, expected)
    if foreign is not None:
        return foreign
    if path.endswith(".ckpt"):
        raise ModelError(
            f"{path} is a PyTorch checkpoint, not codec weights; an official taming VQGAN becomes a codec with "
            f"`codec train vqgan-ladder --init {Path(path).name} --data IMAGES --out DIR` (then --weights DIR/model.safetensors)"
        )
    tensors, meta = load_weights(path)
    model_name = meta.get("model")
    if model_name is None:
        raise ModelError(f"{path} has no 'model' metadata; not a codec checkpoint")
    spec = get_spec(model_name)
    _check_expected(spec, expected, path)
    try:
        config = json.loads(meta.get("config", "{}"))
        model = spec.build(config)
        model.load_state_dict(tensors, strict=True)
        model.check()
        if model.kind != spec.kind:
            raise TypeError(f"a {model.kind} model registered as {spec.kind}")
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"weights {path} do not fit {model_name}: {first}") from None
    model.eval()
    quality = json.loads(meta["quality"]) if "quality" in meta else None
    return LoadedModel(spec, model, quality, weights_hash(model.state_dict()), Path(path))


register(
    ModelSpec(
        name="mcquic",
        kind="image",
        description="McQuic multi-codebook VQ image codec (fast, no context model)",
        build=lambda cfg: McQuic(McQuicConfig.from_dict(cfg)),
        default_quality=3,
        ladder_keys=("groups",),
    )
)

register(
    ModelSpec(
        name=MCQUIC_OFFICIAL,
        kind="image",
        description="official McQuic r0.1.17 network: load its qp_2_msssim .mcquic checkpoint with --weights",
        build=lambda cfg: McQuicOfficial(OfficialConfig.from_dict(cfg)),
        default_quality=2,
    )
)

register(
    ModelSpec(
        name="vaeformer",
        kind="climate",
        description="VAEformer transformer VAE with hyperprior for 2-D climate fields (CRA5)",
        build=lambda cfg: VAEformer(VAEformerConfig.from_dict(cfg)),
        default_quality=3,
        ladder_keys=("rates", "refinements"),
    )
)

register(
    ModelSpec(
        name=cra5.MODEL_NAME,
        kind="climate",
        description="official CRA5 VAEformer (268 ERA5 channels on 721 x 1440): load cra5_268v_300k.pth with --weights",
        build=lambda cfg: cra5.VAEformerOfficial(cra5.OfficialConfig.from_dict(cfg)),
        default_quality=1,
    )
)

register(
    ModelSpec(
        name="vqgan",
        kind="image",
        description="VQGAN-cluster: extreme compression (<0.05 bpp), K-means codebook ladder, learned index prior",
        build=lambda cfg: VQGANCluster(VQGANClusterConfig.from_dict(cfg)),
        default_quality=5,
        ladder_keys=("sizes",),
        packets=True,
        recovery="vqgan-recovery.safetensors",
    )
)
