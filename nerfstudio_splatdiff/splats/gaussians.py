"""A batch of Gaussian sets: B scenes with N Gaussians each, all as plain tensors [B, N, ...]."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_splatdiff.errors import SplatdiffError


@dataclass
class Gaussians:
    """B scenes x N Gaussians, activated values (what the rasteriser consumes).

    Quaternions are (w, x, y, z) and need not be normalised; scales are standard deviations along the
    rotated axes; opacities are in [0, 1]; colours are linear RGB (SH degree 0).
    """

    means: Float[Tensor, "B N 3"]
    quats: Float[Tensor, "B N 4"]
    scales: Float[Tensor, "B N 3"]
    opacities: Float[Tensor, "B N"]
    colors: Float[Tensor, "B N 3"]

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise one clear error if the tensors do not describe B x N Gaussians."""
        if self.means.dim() != 3 or self.means.shape[-1] != 3:
            raise SplatdiffError(
                f"Gaussians.means must have shape [B, N, 3], got {tuple(self.means.shape)}; "
                "add a batch dimension with means[None] for a single scene."
            )
        B, N = self.means.shape[:2]
        expected = {"quats": (B, N, 4), "scales": (B, N, 3), "opacities": (B, N), "colors": (B, N, 3)}
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise SplatdiffError(
                    f"Gaussians.{name} must have shape {list(shape)} to match means {[B, N, 3]}, got {list(got)}."
                )
        for f in fields(self):
            t = getattr(self, f.name)
            if t.device != self.means.device:
                raise SplatdiffError(f"Gaussians.{f.name} is on {t.device} but means is on {self.means.device}.")

    @property
    def batch_size(self) -> int:
        return self.means.shape[0]

    @property
    def num_gaussians(self) -> int:
        return self.means.shape[1]

    @property
    def device(self) -> torch.device:
        return self.means.device

    def map(self, fn) -> "Gaussians":
        """Apply `fn` to every tensor (e.g. `.to`, `.detach`, indexing the batch)."""
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, *args, **kwargs) -> "Gaussians":
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "Gaussians":
        return self.map(lambda t: t.detach())

    def scene(self, index: int) -> "Gaussians":
        """The single scene `index`, kept as a batch of one."""
        return self.map(lambda t: t[index : index + 1])

    @staticmethod
    def cat(items: list["Gaussians"], dim: int = 0) -> "Gaussians":
        """Concatenate along the batch (dim=0) or the Gaussian axis (dim=1)."""
        names = [f.name for f in fields(Gaussians)]
        return Gaussians(**{n: torch.cat([getattr(g, n) for g in items], dim=dim) for n in names})
