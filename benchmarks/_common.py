"""Helpers shared by the benchmark scripts: paths, image I/O, CompressAI models and McQuic targets.

Imported as ``_common`` by scripts run as ``python benchmarks/<script>.py`` (their folder is first
on ``sys.path``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# compressai calls the deprecated torch.jit.script at import time; the notice is noise here.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

import compressai.models  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
KODAK_DIR = REPO_ROOT.parent / "shared" / "data" / "images" / "kodak"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
COMPRESSAI_PAD = 64  # total stride of the CompressAI hyperprior models (analysis 16 x hyper 4)


def load_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 [H, W, 3] RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def kodak_images(limit: int | None = None) -> dict[str, np.ndarray]:
    """The first ``limit`` (default all) Kodak images by name, as uint8 [H, W, 3] RGB."""
    return {p.stem: load_rgb(p) for p in sorted(KODAK_DIR.glob("*.png"))[:limit]}


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [0, 1]."""
    return torch.tensor(pixels).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [1, 3, H, W] in [0, 1] (clamped) -> uint8 [H, W, 3]."""
    return x[0].clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()


def compressai_compress(model: compressai.models.CompressionModel, pixels: np.ndarray) -> tuple[dict, int]:
    """Replicate-pad to a multiple of 64 and compress; returns CompressAI's output and its size in bytes.

    The size counts the bytes of every entropy-coded string, as CompressAI's own evaluation does
    (the latent shape, a few bytes in any real container, is not counted).
    """
    x = to_tensor(pixels)
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (-w) % COMPRESSAI_PAD, 0, (-h) % COMPRESSAI_PAD), mode="replicate")
    with torch.inference_mode():
        out = model.compress(x)
    return out, sum(len(s) for group in out["strings"] for s in group)


def compressai_decompress(model: compressai.models.CompressionModel, out: dict, height: int, width: int) -> np.ndarray:
    """Decompress :func:`compressai_compress` output, crop to ``height`` x ``width`` and quantize to uint8."""
    with torch.inference_mode():
        x_hat = model.decompress(out["strings"], out["shape"])["x_hat"]
    return to_uint8(x_hat[..., :height, :width])


def load_hyperprior(path: Path) -> tuple[compressai.models.MeanScaleHyperprior, float]:
    """A CompressAI mean-scale hyperprior from one of our safetensors checkpoints, ready to code; and its lambda.

    The file's metadata holds ``N`` and ``M`` (JSON integers) and ``lambda``.
    """
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    try:
        n, m, lmbda = json.loads(meta["N"]), json.loads(meta["M"]), float(meta["lambda"])
    except KeyError as exc:
        raise ValueError(f"{path}: metadata has no {exc.args[0]!r}") from None
    model = compressai.models.MeanScaleHyperprior(int(n), int(m))
    model.load_state_dict(load_file(str(path)))
    model.eval()
    model.update(force=True)
    return model, lmbda


def find_hyperprior_checkpoints() -> list[Path]:
    """The shipped baselines ``benchmarks/baselines/hyperprior*.safetensors``, sorted."""
    return sorted((REPO_ROOT / "benchmarks" / "baselines").glob("hyperprior*.safetensors"))


@dataclass(frozen=True)
class McquicTarget:
    """One McQuic operating point: a shipped quality level, or a weights file."""

    label: str
    encode_kwargs: dict = field(default_factory=dict)
    decode_kwargs: dict = field(default_factory=dict)


def mcquic_targets(weights: list[Path]) -> list[McquicTarget]:
    """The McQuic points to measure: every level of each ``weights`` file if any given, else every shipped quality.

    Raises whatever ``import codec`` / ``codec.list_models`` raise while the API is unavailable.
    """
    import codec
    from codec import registry

    if weights:
        spec = registry.get_spec("mcquic")
        return [
            McquicTarget(f"{p.parent.name}/{p.name} q={q}", {"weights": p, "quality": q}, {"weights": p})
            for p in weights
            for q in range(1, registry.ladder_levels(spec, p) + 1)
        ]
    levels = next((m["qualities"] for m in codec.list_models() if m["name"] == "mcquic"), [])
    qualities = sorted(level["quality"] for level in levels)
    return [McquicTarget(f"q={q}", {"model": "mcquic", "quality": q}) for q in qualities]
