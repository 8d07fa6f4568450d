"""A codebook for the privileged view's shift of a VAR's global code (`VARNetConfig.global_code_entries`).

Why: on the geometry proving ground the shift g that the privileged view adds to the global code (the latent's
spatial mean, which carries the hidden shape) falls into clusters that are nearly one shape each (k-means on the
shipped VAR's shifts: 95% of 60 held-out codes in a cluster of their own shape, 3 to 12 clusters), but within a
cluster it spreads as far as a third to a half of the way to the next shape's code, so neither a denoiser nor a
prior over the code (models/code_prior.py) can place a sample's code where the decoder draws that shape: between two
codes it draws neither ("none"). Snapped to the nearest centroid, the shift takes one of a few values; a decoder
trained on those draws each as a shape, and a sampled latent is snapped the same way (`snap_latent`), so every
sample's code is one the decoder was trained on.

The centroids are learnt by online k-means on the training batches' shifts (first batch: k-means++ seeding; then
each centroid moves towards the mean of the shifts assigned to it by 1 / the count it has seen). They are buffers,
not weights: no gradient moves them, checkpoints carry them, and a network in eval mode only reads them. Under
DDP every forward starts from rank 0's buffers (DistributedDataParallel broadcasts them), so the ranks agree and the
centroids learn from rank 0's batches only.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


class GlobalCodebook(nn.Module):
    """`entries` centroids of the privileged view's global-code shift (latent channels wide), learnt by online
    k-means while the network trains; `snap` maps a shift to its nearest centroid."""

    def __init__(self, entries: int, channels: int) -> None:
        super().__init__()
        self.register_buffer("centroids", torch.zeros(entries, channels))
        self.register_buffer("counts", torch.zeros(entries))

    @property
    def ready(self) -> bool:
        """Whether the centroids have been seeded (by a training batch, or a loaded checkpoint)."""
        return bool(self.counts.sum() > 0)

    def nearest(self, shift: Float[Tensor, "B D"]) -> Tensor:
        """Index [B] of each shift's nearest centroid."""
        return torch.cdist(shift.float(), self.centroids.float()).argmin(dim=1)

    def snap(self, shift: Float[Tensor, "B D"]) -> Float[Tensor, "B D"]:
        """Each shift replaced by its nearest centroid (unchanged while no centroid is seeded)."""
        if not self.ready:
            return shift
        return self.centroids[self.nearest(shift)].to(shift.dtype)

    @torch.no_grad()
    def update(self, shift: Float[Tensor, "N D"], generator: torch.Generator | None = None) -> None:
        """One online k-means step on a batch of shifts: seed the centroids by k-means++ on the first batch with at
        least as many shifts as entries, then move each centroid towards its assigned shifts' mean."""
        shift = shift.detach().float()
        entries = self.centroids.shape[0]
        if not self.ready:
            if shift.shape[0] < entries:
                return
            self.centroids.copy_(kmeans_pp_seeds(shift, entries, generator))
            self.counts.fill_(1.0)
            return
        k = self.nearest(shift)
        n = torch.bincount(k, minlength=entries).float()
        sums = torch.zeros_like(self.centroids).index_add_(0, k, shift)
        self.counts += n
        moved = n > 0
        rate = (n / self.counts.clamp(min=1))[:, None]
        means = sums / n.clamp(min=1)[:, None]
        self.centroids[moved] += (rate * (means - self.centroids))[moved]


def kmeans_pp_seeds(points: Float[Tensor, "N D"], k: int, generator: torch.Generator | None = None) -> Tensor:
    """k rows of `points` chosen by k-means++ (each next seed drawn with probability proportional to its squared
    distance from the nearest seed so far): spread-out starting centroids."""
    first = int(torch.randint(points.shape[0], (1,), generator=generator))
    seeds = [points[first]]
    for _ in range(1, k):
        d2 = torch.cdist(points, torch.stack(seeds)).amin(dim=1).square()
        if float(d2.sum()) <= 0:  # fewer distinct points than seeds: repeat one
            seeds.append(points[0])
            continue
        seeds.append(points[int(torch.multinomial(d2 / d2.sum(), 1, generator=generator))])
    return torch.stack(seeds)
