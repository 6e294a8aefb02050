"""Every registered model implements the codec contract (codec.models.base) of its declared kind, and the
file layers stay above the model layer (no model module imports them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from codec import registry
from codec.models.base import ClimateCodecModel, CodecModel, ImageCodecModel

SPECS = [registry.get_spec(row["name"]) for row in registry.list_models()]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_registered_models_implement_the_contract_of_their_kind(spec):
    try:
        with torch.device("meta"):  # shapes only: the full-size official networks build instantly
            model = spec.build({})
    except RuntimeError:  # a model whose initialization computes on CPU tensors (small enough to build)
        model = spec.build({})
    assert isinstance(model, CodecModel) and model.kind == spec.kind
    if spec.kind == "image":
        assert isinstance(model, ImageCodecModel)
        assert isinstance(model.pad_multiple, int) and model.pad_multiple >= 1
        assert isinstance(model.stream_count, int) and model.stream_count >= 1
        assert model.levels >= 1 and (model.levels > 1) == spec.ladder
        assert model.max_pixels is None or model.max_pixels > 0
    else:
        assert spec.kind == "climate" and isinstance(model, ClimateCodecModel) and model.levels >= 1


def test_model_layer_imports_nothing_above_it():
    """codec.models may use errors, checkpoint and entropy, never the file layers (image, climate, api, ...)."""
    allowed = {"errors", "checkpoint", "entropy", "entropy.tables", "entropy.categorical", "entropy.gaussian"}
    for path in sorted((Path(__file__).resolve().parents[1] / "codec" / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert (node.module or "") in allowed, f"{path.name} imports codec.{node.module}"
