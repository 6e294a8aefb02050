"""Models by name (as timm's registry): how each is built, and safe weight loading.

What is known before a model is built (its kind, quality levels, shipped checkpoints) is the catalogue,
:mod:`codec.catalog`, which needs no torch; this module adds each model's network and loads weights.
Each weights file's metadata names its model and configuration, so a file can also be loaded from
anywhere with ``weights=``.  Official McQuic checkpoints (``*.mcquic``) load with ``weights=`` too, as
model ``mcquic-official`` (see :mod:`codec.models.mcquic_official`), and so do official CRA5
checkpoints (``*.pth``, such as ``cra5_268v_300k.pth``), as model ``vaeformer-official`` (see
:mod:`codec.models.vaeformer_official`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .catalog import CATALOG, ModelInfo, checkpoint_path, default_model, shipped_qualities
from .catalog import ladder_levels as ladder_levels  # re-exported: the registry lists models too
from .catalog import list_models as list_models
from .checkpoint import load_weights, weights_hash
from .errors import ModelError
from .models import CRA5_MODEL, MCQUIC_OFFICIAL_MODEL

if TYPE_CHECKING:
    from .models.base import CodecModel
    from .models.vaeformer_official import OfficialConfig as CRA5Config

CRA5_GEOMETRY: CRA5Config | None = None
"""What an official CRA5 ``.pth`` file's tensor shapes cannot tell (input size, strides, heads, windows):
None = the published model's (:data:`codec.models.vaeformer_official.FULL`).  Tests set a small geometry here."""


@dataclass(frozen=True, kw_only=True)
class ModelSpec(ModelInfo):
    """A catalogued model (:class:`codec.catalog.ModelInfo`) with the function that builds its network from a configuration."""

    build: Callable[[dict], CodecModel]


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for coding, with the identity recorded in every file it writes."""

    spec: ModelSpec
    model: CodecModel
    quality: int | None
    weights_hash: str
    path: Path


def _builder(module: str, model: str, config: str) -> Callable[[dict], CodecModel]:
    """``cfg -> model`` for a network class of ``codec.models.<module>``, imported on first use (each model's
    module imports only what it needs: an image call does not load the climate networks, nor they
    CompressAI's image layers)."""

    def build(cfg: dict) -> CodecModel:
        mod = importlib.import_module(f".models.{module}", __package__)
        return getattr(mod, model)(getattr(mod, config).from_dict(cfg))

    return build


_BUILDERS: dict[str, Callable[[dict], CodecModel]] = {
    "mcquic": _builder("mcquic", "McQuic", "McQuicConfig"),
    MCQUIC_OFFICIAL_MODEL: _builder("mcquic_official", "McQuicOfficial", "OfficialConfig"),
    "vaeformer": _builder("vaeformer", "VAEformer", "VAEformerConfig"),
    CRA5_MODEL: _builder("vaeformer_official", "VAEformerOfficial", "OfficialConfig"),
    "vqgan": _builder("vqgan_cluster", "VQGANCluster", "VQGANClusterConfig"),
}

_REGISTRY: dict[str, ModelSpec] = {name: ModelSpec(**{f.name: getattr(info, f.name) for f in dataclasses.fields(info)}, build=_BUILDERS[name]) for name, info in CATALOG.items()}


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model, or a one-line error listing the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


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
            raise ModelError(f"no shipped checkpoints for {spec.name}; pass a weights file as weights (--weights)")
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
        ".mcquic": (MCQUIC_OFFICIAL_MODEL, _load_official_mcquic),
        ".pth": (CRA5_MODEL, _load_official_cra5),
    }
    name, load = loaders.get(Path(path).suffix.lower(), (None, None))
    if name is None:
        return None
    spec = get_spec(name)
    _check_expected(spec, expected, path)
    model, _ = load(path)
    return LoadedModel(spec, model, None, weights_hash(model.state_dict()), Path(path))


def _load_official_mcquic(path: str) -> tuple[CodecModel, dict]:
    from .models.mcquic_official import load_official

    return load_official(path)


def _load_official_cra5(path: str) -> tuple[CodecModel, dict]:
    from .models import vaeformer_official as cra5

    return cra5.load_official(path, CRA5_GEOMETRY or cra5.FULL)


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
