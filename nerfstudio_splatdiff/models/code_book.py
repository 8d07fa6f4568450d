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

    def ambiguity(self, shift: Float[Tensor, "B D"]) -> Float[Tensor, " B"]:
        """How undecided each shift is between its two nearest centroids: the distance to the nearest over the
        distance to the second nearest (0 = on a centroid, 1 = half way between two: the codes a decoder draws as
        neither shape). Needs at least two centroids."""
        if self.centroids.shape[0] < 2:
            raise ValueError("A codebook's ambiguity needs at least two centroids.")
        d = torch.cdist(shift.float(), self.centroids.float()).topk(2, dim=1, largest=False).values
        return d[:, 0] / d[:, 1].clamp(min=1e-12)

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


def fit_kmeans(
    points: Float[Tensor, "N D"], k: int, restarts: int = 10, iters: int = 100, generator: torch.Generator | None = None
) -> tuple[Float[Tensor, "k D"], Tensor, float]:
    """Batch k-means (Lloyd's iterations from k-means++ seeds, the best of `restarts` by inertia): (centroids, each
    point's cluster [N], inertia: the mean squared distance to its centroid). For a codebook fitted after training
    (benchmarks/codebook_fit.py); an emptied cluster is reseeded on the point farthest from its centroid."""
    points = points.detach().float()
    if points.shape[0] < k:
        raise ValueError(f"k-means needs at least {k} points, got {points.shape[0]}.")
    best: tuple[Tensor, Tensor, float] | None = None
    for _ in range(restarts):
        centroids = kmeans_pp_seeds(points, k, generator)
        for _ in range(iters):
            d = torch.cdist(points, centroids)
            assign = d.argmin(dim=1)
            n = torch.bincount(assign, minlength=k)
            if bool((n == 0).any()):
                far = d.gather(1, assign[:, None])[:, 0].argmax()
                centroids[int((n == 0).nonzero()[0])] = points[far]
                continue
            moved = torch.zeros_like(centroids).index_add_(0, assign, points) / n[:, None].float()
            if torch.allclose(moved, centroids):
                break
            centroids = moved
        assign = torch.cdist(points, centroids).argmin(dim=1)
        inertia = float((points - centroids[assign]).square().sum(dim=1).mean())
        if best is None or inertia < best[2]:
            best = (centroids, assign, inertia)
    return best
