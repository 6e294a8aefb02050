"""Multi-codebook vector quantization (the quantizer of McQuic).

A latent of ``C`` channels is split into ``m`` groups of ``C // m`` channels; every group is
quantized by its own codebook of ``k`` codewords.  Training uses probabilistic VQ: the logits of
each codeword are ``-||x - c||^2 * exp(log_scale)`` (a learnable inverse temperature per group)
and a hard Gumbel-softmax sample is taken with a straight-through gradient.  At test time the
nearest codeword (argmin) is used.

Each codebook also keeps an exponential moving average of how often every codeword is used.
That EMA drives dead-codeword re-seeding during training and, frozen by :meth:`update`, becomes
the integer frequency table with which the indices are entropy coded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..entropy.tables import frequencies_to_table


class MultiCodebookQuantizer(nn.Module):
    """``m`` codebooks of ``k`` codewords each, quantizing the ``m`` channel groups of a latent."""

    def __init__(self, channels: int, groups: int, codewords: int, ema_decay: float = 0.99) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups})")
        self.groups = groups
        self.codewords = codewords
        self.dim = channels // groups
        self.ema_decay = ema_decay
        self.codebook = nn.Parameter(torch.randn(groups, codewords, self.dim) * (self.dim**-0.5))
        # Inverse temperature of the Gumbel-softmax logits, learned per group.
        self.log_scale = nn.Parameter(torch.zeros(groups))
        self.register_buffer("usage", torch.full((groups, codewords), 1.0 / codewords))
        # Integer frequency tables used by the entropy coder; filled by update().
        self.register_buffer("freq", torch.ones(groups, codewords, dtype=torch.int32))

    def _split(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [m, B*H*W, d]."""
        b, c, h, w = x.shape
        return x.reshape(b, self.groups, self.dim, h, w).permute(1, 0, 3, 4, 2).reshape(self.groups, -1, self.dim)

    def _merge(self, v: Tensor, shape: torch.Size) -> Tensor:
        """[m, B*H*W, d] -> [B, C, H, W]."""
        b, _, h, w = shape
        return v.reshape(self.groups, b, h, w, self.dim).permute(1, 0, 4, 2, 3).reshape(shape)

    def _distances(self, flat: Tensor) -> Tensor:
        """Squared distances [m, N, k] between every vector and every codeword of its group."""
        cb = self.codebook
        return (
            flat.pow(2).sum(-1, keepdim=True)
            - 2.0 * torch.bmm(flat, cb.transpose(1, 2))
            + cb.pow(2).sum(-1).unsqueeze(1)
        )

    def distances(self, x: Tensor) -> Tensor:
        """Squared distances [m, B*H*W, k] between every latent vector of ``x`` [B, C, H, W] and every codeword of its group."""
        return self._distances(self._split(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Quantize ``x`` [B, C, H, W].

        Returns ``(quantized, indices [B, m, H, W], vq_loss)``.  In training mode the quantized
        value is a codeword sampled by Gumbel-softmax; in eval mode the nearest codeword.
        ``vq_loss`` pulls codewords towards their inputs and (weighted 0.25) inputs towards codewords.
        """
        flat = self._split(x)
        if self.training:
            logits = -self._distances(flat.detach()) * self.log_scale.exp().view(-1, 1, 1)
            soft = F.gumbel_softmax(logits, tau=1.0, hard=False, dim=-1)
            idx = soft.argmax(-1)
            hard = self._lookup_flat(idx)
            soft_q = torch.bmm(soft, self.codebook)
            # Value: the sampled codeword.  Gradients: identity to the input (straight-through), and
            # through the soft assignment to codebook and temperature only.  (Letting the soft path
            # reach the input too scales its gradient by the learned inverse temperature, which
            # grows to ~1e4 and made training diverge.)
            q = flat + (hard - flat).detach() + (soft_q - soft_q.detach())
            self._track_usage(idx)
        else:
            idx = self._nearest(flat)
            q = hard = self._lookup_flat(idx)
        vq_loss = F.mse_loss(hard, flat.detach()) + 0.25 * F.mse_loss(flat, hard.detach())
        b, _, h, w = x.shape
        indices = idx.reshape(self.groups, b, h, w).permute(1, 0, 2, 3)
        return self._merge(q, x.shape), indices, vq_loss

    def _lookup_flat(self, idx: Tensor) -> Tensor:
        """Codewords [m, N, d] for indices [m, N]."""
        return torch.gather(self.codebook, 1, idx.unsqueeze(-1).expand(-1, -1, self.dim))

    def lookup(self, indices: Tensor) -> Tensor:
        """Dequantize indices [B, m, H, W] to a latent [B, C, H, W]."""
        b, m, h, w = indices.shape
        flat = indices.permute(1, 0, 2, 3).reshape(m, -1).long()
        return self._merge(self._lookup_flat(flat), torch.Size((b, m * self.dim, h, w)))

    @torch.no_grad()
    def _track_usage(self, idx: Tensor) -> None:
        """Fold the codeword histogram of indices [m, N] into the usage EMA (rows sum to 1)."""
        counts = torch.zeros_like(self.usage).scatter_add_(1, idx, torch.ones_like(idx, dtype=self.usage.dtype))
        self.usage.mul_(self.ema_decay).add_(counts / idx.shape[1], alpha=1 - self.ema_decay)

    @torch.no_grad()
    def init_from(self, x: Tensor, iters: int = 10) -> None:
        """Seed the codebook from the latent vectors of ``x`` by k-means, and set the temperature to match.

        The codewords start as random vectors of ``x`` (jittered, so that a sample smaller than ``k``
        still gives distinct codewords) and take ``iters`` Lloyd steps; the usage statistics start
        from the final assignment.  The inverse temperature is chosen so that the median gap between
        the nearest and the second-nearest codeword is 2 logits: Gumbel noise then flips only
        ambiguous assignments.
        """
        flat = self._split(x)
        n = flat.shape[1]
        pick = torch.randint(n, (self.groups, self.codewords), device=x.device)
        seeds = torch.gather(flat, 1, pick.unsqueeze(-1).expand(-1, -1, self.dim))
        self.codebook.data.copy_(seeds + torch.randn_like(seeds) * flat.std(1, keepdim=True) * 0.05)
        for step in range(iters + 1):
            idx = self._nearest(flat)
            counts = torch.zeros_like(self.usage).scatter_add_(1, idx, torch.ones_like(idx, dtype=self.usage.dtype))
            if step == iters:
                break
            sums = torch.zeros_like(self.codebook).scatter_add_(1, idx.unsqueeze(-1).expand(-1, -1, self.dim), flat)
            used = counts > 0  # an empty cell keeps its codeword
            self.codebook.data[used] = sums[used] / counts[used].unsqueeze(-1)
        two = self._distances(flat[:, :4096]).topk(2, dim=-1, largest=False).values
        gap = (two[..., 1] - two[..., 0]).median(dim=1).values.clamp_min(1e-8)
        self.log_scale.data.copy_(torch.log(2.0 / gap))
        self.usage.copy_((counts + 1) / (counts + 1).sum(-1, keepdim=True))

    def _nearest(self, flat: Tensor, chunk: int = 16384) -> Tensor:
        """Index [m, N] of the nearest codeword of every vector of ``flat`` [m, N, d], in chunks of vectors."""
        return torch.cat([self._distances(part).argmin(-1) for part in flat.split(chunk, dim=1)], 1)

    @torch.no_grad()
    def reseed_dead(self, threshold: float = 0.03) -> int:
        """Re-seed codewords used less than ``threshold / k`` of the time with perturbed busy codewords.

        Busy codewords are drawn in proportion to their usage and jittered by a tenth of the
        codebook's spread, so the copies split the busy cells.  Returns how many were re-seeded.
        """
        dead = self.usage < threshold / self.codewords
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        noise_scale = self.codebook.std(dim=1, keepdim=True) * 0.1  # [m, 1, d]
        for g in torch.nonzero(dead.any(1)).flatten().tolist():
            rows = torch.nonzero(dead[g]).flatten()
            src = torch.multinomial(self.usage[g], len(rows), replacement=True)
            jitter = torch.randn(len(rows), self.dim, device=self.codebook.device) * noise_scale[g]
            self.codebook.data[g, rows] = self.codebook.data[g, src] + jitter
            self.usage[g, rows] = self.usage[g, src] / 2
            self.usage[g, src] /= 2
        self.usage.div_(self.usage.sum(-1, keepdim=True))
        return n_dead

    @torch.no_grad()
    def update(self) -> None:
        """Freeze the usage EMA into the integer frequency tables used by the entropy coder."""
        self.freq.copy_(frequencies_to_table(self.usage))
