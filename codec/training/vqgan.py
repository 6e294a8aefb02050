"""Training task of the VQGAN (base of VQGAN-cluster): L1 + MS-SSIM + VQ + hinge PatchGAN with adaptive weight.

The loss is the taming-transformers recipe with MS-SSIM added as the paper's codec cares about it:

    rec  = |x - x̂|_1 + w_c |C(x) - C(x̂)|_1 + w_ms (1 - MS-SSIM(x, x̂)) [+ w_p LPIPS(x, x̂) when LPIPS exists]
    loss = rec + (commitment + β codebook) + λ_adapt w_d (-D(x̂))       (generator)
         + hinge(D(x), D(x̂.detach()))                                  (discriminator)

``C`` is the chroma (Cb, Cr of BT.601 YCbCr): in RGB the L1 and MS-SSIM terms are dominated by
luma, and a network trained on them alone drops colour from its latent (a linear probe of the shipped
latent predicts no block chroma on Kodak), so ``w_c`` (``chroma_weight``) makes colour worth keeping.

``λ_adapt = |∇_last rec| / |∇_last (-D(x̂))|`` on the decoder's last layer (Esser et al.).  The
adversarial terms start at ``disc_start`` steps, so the cheap reconstruction phase comes first.
Both networks live in one module and one optimizer: the generator's adversarial term is computed
with the discriminator's parameters frozen, the discriminator's on a detached reconstruction, so
each term only moves its own network.  Codewords unused for ``reseed_every`` steps are re-seeded
from the current batch's encoder outputs (taming's codebook otherwise collapses on small budgets).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as _ms_ssim
from torch import Tensor, nn

from ..image.tone import YCBCR
from ..metrics import ms_ssim, psnr
from ..models.vqgan import VQGAN, DiscriminatorConfig, PatchDiscriminator, VQGANConfig
from .trainer import ImageData

MS_SSIM_WINDOW = 7
"""Gaussian window of the MS-SSIM loss: 7 taps so that 5 scales fit a 128-pixel crop (> 6 * 16)."""

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16, the trunk of LPIPS


class VQGANWithDiscriminator(VQGAN):
    """A VQGAN plus its PatchGAN ``discriminator`` and a persistent step counter (for ``disc_start``)."""

    def __init__(self, config: VQGANConfig, disc: DiscriminatorConfig) -> None:
        super().__init__(config)
        self.discriminator = PatchDiscriminator(disc)
        self.register_buffer("train_step", torch.zeros((), dtype=torch.int64))


def load_lpips() -> nn.Module | None:
    """LPIPS (VGG) when the ``lpips`` package and torchvision's VGG16 weights are on this machine, else None.

    Nothing is downloaded: the VGG16 file must already be in ``torch.hub``'s checkpoint folder.
    """
    try:
        import lpips  # type: ignore[import-not-found]
    except ImportError:
        return None
    if not (Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE).is_file():
        return None
    net = lpips.LPIPS(net="vgg", verbose=False).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def hinge_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Hinge loss of the discriminator: mean(relu(1 - D(x))) + mean(relu(1 + D(x̂))), halved."""
    return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())


CHROMA = YCBCR[1:].float()
"""RGB -> (Cb, Cr) rows of BT.601 YCbCr (the tone layer's matrix)."""


def reconstruction_loss(x: Tensor, x_hat: Tensor, ms_ssim_weight: float, chroma_weight: float = 0.0) -> tuple[Tensor, Tensor]:
    """``(L1 + w_c L1 of chroma + w (1 - MS-SSIM), MS-SSIM)`` of batches in [0, 1] (MS-SSIM skipped below 5-scale size)."""
    l1 = (x - x_hat).abs().mean()
    if chroma_weight > 0:
        l1 = l1 + chroma_weight * torch.einsum("ij,bjhw->bihw", CHROMA.to(x), x - x_hat).abs().mean()
    if ms_ssim_weight <= 0 or min(x.shape[-2:]) <= (MS_SSIM_WINDOW - 1) * 16:
        return l1, x.new_zeros(())
    sim = _ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, win_size=MS_SSIM_WINDOW)
    return l1 + ms_ssim_weight * (1 - sim), sim


class VQGANTask(ImageData):
    """Plugs the VQGAN into :func:`codec.training.trainer.train`."""

    name = "vqgan"
    loss_settings = ("ms_ssim_weight", "chroma_weight", "disc_weight", "perceptual_weight")
    find_unused_parameters = True  # the discriminator has no gradient before disc_start (DDP)

    def __init__(
        self,
        config: VQGANConfig,
        disc: DiscriminatorConfig,
        ms_ssim_weight: float = 1.0,
        chroma_weight: float = 4.0,
        disc_weight: float = 0.5,
        disc_start: int = 4000,
        perceptual_weight: float = 1.0,
        reseed_every: int = 50,
    ) -> None:
        self.config = config
        self.disc = disc
        self.ms_ssim_weight = ms_ssim_weight
        self.chroma_weight = chroma_weight
        self.disc_weight = disc_weight
        self.disc_start = disc_start
        self.perceptual_weight = perceptual_weight
        self.reseed_every = reseed_every
        self.lpips = load_lpips() if perceptual_weight > 0 else None
        self._usage: Tensor | None = None

    def build(self) -> nn.Module:
        """A new VQGAN with discriminator."""
        return VQGANWithDiscriminator(self.config, self.disc)

    @torch.no_grad()
    def first_batch(self, model: nn.Module, batch: Tensor, loaded: set[str]) -> None:
        """Seed the codebook from encoder outputs of the first batch (unless it was loaded)."""
        if "quantize.embedding.weight" not in loaded:
            _reseed(model, batch, torch.ones(self.config.n_embed, dtype=torch.bool))

    def loss(self, model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Generator and (after ``disc_start``) discriminator losses of one batch."""
        net: VQGANWithDiscriminator = getattr(model, "module", model)
        recon, cb_loss, commit_loss, idx = model(batch)
        usage = torch.bincount(idx.flatten(), minlength=self.config.n_embed)
        self._usage = usage if self._usage is None else self._usage + usage
        rec, sim = reconstruction_loss(batch, recon, self.ms_ssim_weight, self.chroma_weight)
        if self.lpips is not None:
            self.lpips.to(batch.device)
            rec = rec + self.perceptual_weight * self.lpips(recon * 2 - 1, batch * 2 - 1).mean()
        vq = net.vq_loss(cb_loss, commit_loss)
        loss = rec + vq
        mse = F.mse_loss(recon.clamp(0, 1), batch).item()
        logs = {"psnr": -10 * math.log10(max(mse, 1e-10)), "ms_ssim": float(sim.detach()), "vq": vq.item()}
        if int(net.train_step) >= self.disc_start:
            net.discriminator.requires_grad_(False)
            g_adv = -net.discriminator(recon * 2 - 1).mean()
            net.discriminator.requires_grad_(True)
            weight = self.disc_weight * _adaptive_weight(rec, g_adv, net.last_layer())
            d_loss = hinge_d_loss(net.discriminator(batch * 2 - 1), net.discriminator(recon.detach() * 2 - 1))
            loss = loss + weight * g_adv + d_loss
            logs.update(g_adv=g_adv.item(), d_loss=d_loss.item(), d_weight=float(weight))
        logs["loss"] = loss.item()
        return loss, logs

    @torch.no_grad()
    def after_step(self, model: nn.Module, batch: Tensor, step: int, total: int) -> dict[str, float]:
        """Count the step; every ``reseed_every`` steps (first 90%) re-seed codewords unused since the last time."""
        model.train_step += 1
        if (step + 1) % self.reseed_every or step > 0.9 * total or self._usage is None:
            return {}
        dead = self._usage == 0
        self._usage = None
        return {"reseeded": float(_reseed(model, batch, dead))}

    @torch.no_grad()
    def validate(self, model: nn.Module, images: list[Tensor]) -> dict[str, float]:
        """PSNR, MS-SSIM, chroma PSNR (Cb, Cr) and codebook use on whole images, at the uniform-coding rate log2(K)/f^2 bpp."""
        model.eval()
        device = next(model.parameters()).device
        rows, used = [], torch.zeros(self.config.n_embed, dtype=torch.bool)
        for img in images:
            x = img.to(device)
            idx = model.quantize_indices(model.encode(x))
            y = model.decode_indices(idx, size=x.shape[-2:]).cpu()
            used[idx.flatten().unique().cpu()] = True
            bpp = math.log2(self.config.n_embed) * idx[0].numel() / (x.shape[-2] * x.shape[-1])
            chroma = torch.einsum("ij,bjhw->bihw", CHROMA, img - y).square().mean().item()
            rows.append((bpp, psnr(img, y), ms_ssim(img, y), -10 * math.log10(max(chroma, 1e-10))))
        out = {k: sum(r[i] for r in rows) / len(rows) for i, k in enumerate(("bpp", "psnr", "ms_ssim", "chroma_psnr"))}
        out["codewords_used"] = float(used.sum())
        return out

    def freeze(self, model: nn.Module) -> None:
        """Nothing to freeze: the base VQGAN has no entropy model (the ladder adds one)."""

    def export_metadata(self) -> dict[str, Any]:
        """Model name (``vqgan-base``: a VQGAN without ladder, input of ``vqgan-ladder``) and configurations."""
        return {"model": "vqgan-base", "config": self.config.to_dict(), "discriminator": self.disc.to_dict()}


def _adaptive_weight(rec: Tensor, g_adv: Tensor, last: Tensor) -> Tensor:
    """|∇ rec| / |∇ g_adv| at the decoder's last layer, clamped to [0, 1e4] and detached (taming)."""
    rec_grad = torch.autograd.grad(rec, last, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_adv, last, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def _reseed(model: nn.Module, batch: Tensor, dead: Tensor) -> int:
    """Replace the ``dead`` codewords by random encoder outputs of ``batch`` (plus a little noise)."""
    n = int(dead.sum())
    if n == 0:
        return 0
    was_training = model.training
    model.eval()
    h = model.encode(batch)
    model.train(was_training)
    flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
    pick = torch.randint(flat.shape[0], (n,), device=flat.device)
    noise = torch.randn(n, flat.shape[1], device=flat.device) * flat.std() * 0.01
    model.codebook.data[dead.to(flat.device)] = flat[pick] + noise
    return n
