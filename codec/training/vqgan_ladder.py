"""Build the VQGAN-cluster bitrate ladder from a trained VQGAN: K-means, per-level fine-tuning, index priors.

For every codebook size K (8 ... 2048 by default):

1. scikit-learn's K-means clusters the base codebook into K centroids, each codeword weighted by how
   often the training images use it (unused codewords are left out);
2. the centroids and a copy of the 1x1 ``quant_conv``/``post_quant_conv`` are fine-tuned with the
   encoder and decoder frozen (L1 + MS-SSIM + VQ loss, the shared training loop: resumable, seeded);
3. the level's codewords are grouped (K-means again, 8 groups) and its indices counted over the
   training images, alone and in the context of their upper/left neighbours' groups; the counts
   become the level's frozen checkerboard prior (:class:`codec.models.vqgan_cluster.LadderLevel`).

The result is one ``model.safetensors`` holding the base network and all levels (see
:mod:`codec.models.vqgan_cluster`), loadable with ``--model vqgan --weights``.  The base can be our
own ``codec train vqgan`` output or an official taming-transformers ``.ckpt``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import load_weights, read_metadata, save_weights
from ..data import list_images, load_rgb
from ..errors import InputError, ModelError
from ..metrics import ms_ssim, psnr
from ..models import taming
from ..models.vqgan import VQGAN, VQGANConfig, nearest_codeword
from ..models.vqgan_cluster import LADDER_SIZES, VQGANCluster, VQGANClusterConfig
from .trainer import ImageData, TrainConfig, train
from .vqgan import reconstruction_loss

BASE_MODEL = "vqgan-base"


def load_base(path: str | Path) -> VQGAN:
    """A trained VQGAN: our ``codec train vqgan`` weights (safetensors) or an official taming ``.ckpt``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"base weights not found: {path}")
    if path.suffix == ".ckpt" or read_metadata(path).get("model") != BASE_MODEL:
        return taming.load_taming_model(path)  # official key names; one-line ModelError otherwise
    tensors, meta = load_weights(path)
    model = VQGAN(VQGANConfig.from_dict(json.loads(meta["config"])))
    try:
        model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("discriminator.") and k != "train_step"})
    except RuntimeError as exc:
        raise ModelError(f"weights {path} do not fit their VQGAN config: {str(exc).splitlines()[0]}") from None
    return model.eval()


class LevelTask(ImageData):
    """Fine-tunes one level: codebook and 1x1 convs of a K-codeword VQGAN, encoder and decoder frozen."""

    def __init__(self, config: VQGANConfig, ms_ssim_weight: float = 1.0) -> None:
        self.config = config
        self.name = f"vqgan-level-{config.n_embed}"
        self.ms_ssim_weight = ms_ssim_weight

    def build(self) -> nn.Module:
        """A VQGAN of this level's codebook size whose encoder and decoder do not train."""
        model = VQGAN(self.config)
        for part in (model.encoder, model.decoder):
            part.requires_grad_(False)
        return model

    def first_batch(self, model: nn.Module, batch: Tensor, loaded: set[str]) -> None:
        """Every tensor comes from the base and the centroids; nothing to initialize."""

    def loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """L1 + MS-SSIM reconstruction loss plus the VQ loss."""
        recon, cb_loss, commit_loss, _ = model(batch)
        rec, sim = reconstruction_loss(batch, recon, self.ms_ssim_weight)
        vq = getattr(model, "module", model).vq_loss(cb_loss, commit_loss)
        loss = rec + vq
        return loss, {"loss": loss.item(), "ms_ssim": float(sim.detach()), "vq": vq.item()}

    def after_step(self, model: nn.Module, batch: Tensor, step: int, total: int) -> dict[str, float]:
        """No housekeeping."""
        return {}

    @torch.no_grad()
    def validate(self, model: nn.Module, images: list[Tensor]) -> dict[str, float]:
        """PSNR and MS-SSIM of whole images at this level."""
        return evaluate(model, images)

    def freeze(self, model: nn.Module) -> None:
        """No entropy model inside a level's training network."""

    def export_metadata(self) -> dict[str, Any]:
        """Model name and configuration."""
        return {"model": self.name, "config": self.config.to_dict()}


@torch.no_grad()
def evaluate(model: VQGAN, images: list[Tensor]) -> dict[str, float]:
    """Mean PSNR and MS-SSIM of ``images`` [1, 3, H, W] through ``model``'s own codebook."""
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for img in images:
        idx = model.quantize_indices(model.encode(img.to(device)))
        y = model.decode_indices(idx, size=img.shape[-2:]).cpu()
        rows.append((psnr(img, y), ms_ssim(img, y)))
    sims = [r[1] for r in rows if not math.isnan(r[1])]  # NaN for images below MS-SSIM's 5-scale size
    return {"psnr": float(np.mean([r[0] for r in rows])), "ms_ssim": float(np.mean(sims)) if sims else float("nan")}


def kmeans_codebook(codebook: Tensor, counts: Tensor, k: int, seed: int) -> Tensor:
    """``k`` centroids of the codewords used in ``counts``, each weighted by its count (scikit-learn K-means)."""
    from sklearn.cluster import KMeans

    used = counts > 0
    points = codebook[used].double().numpy()
    weights = counts[used].double().numpy()
    if len(points) <= k:  # fewer distinct codewords than centroids: keep them all, fill with unused ones
        extra = codebook[~used][: k - len(points)].double().numpy()
        return torch.from_numpy(np.concatenate([points, extra])).float()[:k]
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(points, sample_weight=weights)
    return torch.from_numpy(km.cluster_centers_).float()


@torch.no_grad()
def _features(model: VQGAN, files: list[Path], device: torch.device) -> list[Tensor]:
    """Encoder features of every image file (one image in memory at a time)."""
    return [model.features(load_rgb(p).float().div(255.0).unsqueeze(0).to(device)) for p in files]


@torch.no_grad()
def _counts(indices: list[Tensor], size: int) -> Tensor:
    """How often each of ``size`` codewords occurs in ``indices``."""
    total = torch.zeros(size, dtype=torch.float64)
    for i in indices:
        total += torch.bincount(i.flatten().cpu(), minlength=size).double()
    return total


def build_ladder(
    base_path: str | Path,
    data: str | Path,
    out: str | Path,
    cfg: TrainConfig,
    val: str | Path | None = None,
    sizes: tuple[int, ...] = LADDER_SIZES,
    prior_images: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Cluster, fine-tune (``cfg.steps`` per level; 0 skips it) and fit priors; writes ``out/model.safetensors``.

    Returns a report per level: K, validation PSNR/MS-SSIM after K-means alone and after fine-tuning.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    base = load_base(base_path).to(dev)
    if max(sizes) > base.config.n_embed:
        raise InputError(f"ladder sizes go up to {max(sizes)} but the base codebook has {base.config.n_embed} codewords")
    val_images = ImageData().validation_data(val, data, cfg.val_images)
    feats = _features(base, list_images(data)[:prior_images], dev)
    with torch.no_grad():
        base_counts = _counts([base.quantize_indices(base.quant_conv(f)) for f in feats], base.config.n_embed)
    cluster = VQGANCluster(VQGANClusterConfig(base.config, tuple(sizes))).to(dev)
    cluster.load_state_dict(base.state_dict(), strict=False)
    state = {k: v.cpu() for k, v in base.state_dict().items()}
    report: dict[str, Any] = {"base_codewords_used": int((base_counts > 0).sum()), "levels": []}
    for level, k in enumerate(sizes, start=1):
        centroids = kmeans_codebook(base.codebook.detach().cpu(), base_counts, k, cfg.seed)
        task = LevelTask(dataclasses.replace(base.config, n_embed=k))
        init = {**state, "quantize.embedding.weight": centroids}
        net = task.build().to(dev)
        net.load_state_dict(init)
        row: dict[str, Any] = {"level": level, "codebook_size": k, "kmeans": evaluate(net, val_images) if val_images else {}}
        if cfg.steps > 0:
            metrics = train(task, data, out / f"level-{level}", cfg, val=val, init_weights=init, device=device, progress=progress)
            tuned, _ = load_weights(out / f"level-{level}" / "model.safetensors")
            net.load_state_dict(tuned)
            row["finetuned"] = metrics
        lv = cluster.ladder[level - 1]
        lv.codebook.data.copy_(net.codebook.detach())
        lv.quant_conv.load_state_dict(net.quant_conv.state_dict())
        lv.post_quant_conv.load_state_dict(net.post_quant_conv.state_dict())
        with torch.no_grad():
            level_indices = [lv.indices(f) for f in feats]
            if k > lv.n_groups:  # codeword groups of the context model: K-means of the level's codebook
                centroids = kmeans_codebook(lv.codebook.detach().cpu(), _counts(level_indices, k), lv.n_groups, cfg.seed)
                lv.groups.copy_(nearest_codeword(lv.codebook.detach().cpu(), centroids))
            for idx in level_indices:
                lv.accumulate(idx)
        report["levels"].append(row)
    cluster.update()
    meta = {"model": "vqgan", "config": cluster.cluster_config.to_dict(), "ladder": report, "base": Path(base_path).name}
    save_weights(cluster.cpu(), out / "model.safetensors", meta)
    (out / "ladder.json").write_text(json.dumps(report, indent=2))
    return report
