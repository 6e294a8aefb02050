"""Shared fixtures: tiny McQuic weights (seconds to build) and a temporary shipped-checkpoint folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codec import catalog, registry
from codec.checkpoint import save_weights
from codec.models.mcquic import TINY, McQuic, McQuicConfig


def make_weights(path: Path, config: McQuicConfig, seed: int = 0) -> Path:
    """Save an untrained McQuic with data-initialized codebooks and frozen tables."""
    torch.manual_seed(seed)
    model = McQuic(config)
    model.init_codebooks(torch.rand(2, 3, 128, 128))
    model.eval()
    model.update()
    save_weights(model, path, {"model": "mcquic", "config": config.to_dict()})
    return path


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A tiny McQuic checkpoint file (not installed as a shipped level)."""
    return make_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors", TINY)


@pytest.fixture(scope="session")
def full_weights(tmp_path_factory) -> Path:
    """Full-size architecture with random weights: exercises the real kernels (thread determinism)."""
    return make_weights(tmp_path_factory.mktemp("w") / "full.safetensors", McQuicConfig())


@pytest.fixture()
def shipped(tmp_path, monkeypatch) -> Path:
    """A checkpoint folder with a tiny mcquic ladder (levels 1 and 2), installed as the shipped one."""
    make_weights(tmp_path / "mcquic.safetensors", TINY)
    monkeypatch.setattr(catalog, "CHECKPOINTS", tmp_path)
    registry._load_file.cache_clear()
    return tmp_path


@pytest.fixture(scope="session")
def vf_weights(tmp_path_factory) -> Path:
    """An untrained tiny VAEformer checkpoint (seed 0, frozen tables): a climate model for tests."""
    from codec.models.vaeformer import TINY as VF_TINY
    from codec.models.vaeformer import VAEformer

    torch.manual_seed(0)
    net = VAEformer(VF_TINY).eval()
    net.update()
    path = tmp_path_factory.mktemp("vf") / "vf.safetensors"
    save_weights(net, path, {"model": "vaeformer", "config": VF_TINY.to_dict()})
    return path


@pytest.fixture()
def photo() -> np.ndarray:
    """A smooth, photo-like uint8 RGB image of odd size (exercises padding)."""
    y, x = np.mgrid[0:70, 0:101].astype(np.float32)
    img = np.stack([np.sin(x / 9) * 0.4 + 0.5, y / 70, (x + y) / 171], axis=2)
    return (img * 255).round().astype(np.uint8)


def make_ladder(path: Path, seed: int = 0) -> Path:
    """An untrained tiny VQGAN-cluster file (levels of 4, 8 and 16 codewords) with frozen priors."""
    from codec.models.vqgan import TINY as VQ_TINY
    from codec.models.vqgan_cluster import VQGANCluster, VQGANClusterConfig

    torch.manual_seed(seed)
    config = VQGANClusterConfig(VQ_TINY, (4, 8, 16))
    model = VQGANCluster(config).eval()
    with torch.no_grad():
        for lv in model.ladder:
            lv.codebook.normal_()
            lv.accumulate(torch.randint(lv.size, (2, 6, 6)))
    model.update()
    save_weights(model, path, {"model": "vqgan", "config": config.to_dict()})
    return path


@pytest.fixture(scope="session")
def tiny_ladder(tmp_path_factory) -> Path:
    """A tiny VQGAN-cluster weights file."""
    return make_ladder(tmp_path_factory.mktemp("ladder") / "vqgan.safetensors")


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a test module (tiny tensors: fastest, and immune to a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
