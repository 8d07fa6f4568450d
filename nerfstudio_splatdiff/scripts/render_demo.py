"""splatdiff-render-demo: render a small procedural Gaussian object from an orbit, write a .ply and a PNG.

This is what the demo does until the trained model ships: it exercises Gaussians -> renderer -> .ply end to end.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from rich.console import Console
from rich.progress import track

from nerfstudio_splatdiff.splats import Gaussians, render_gaussians
from nerfstudio_splatdiff.splats.images import contact_sheet, save_png
from nerfstudio_splatdiff.splats.orbit import intrinsics, orbit_w2c
from nerfstudio_splatdiff.splats.ply import load_ply, save_ply

CONSOLE = Console()


def demo_object(num: int = 6000, seed: int = 0) -> Gaussians:
    """A two-tone sphere on a checkered disc: enough structure to see orientation and depth order."""
    g = torch.Generator().manual_seed(seed)
    n_sphere = num * 2 // 3
    d = torch.randn(n_sphere, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    sphere = d * 0.5 + torch.tensor([0.0, 0.0, 0.5])
    sphere_col = torch.where((d[:, :1] > 0), torch.tensor([0.9, 0.35, 0.1]), torch.tensor([0.15, 0.45, 0.9]))
    n_disc = num - n_sphere
    r = torch.sqrt(torch.rand(n_disc, generator=g)) * 1.2
    a = torch.rand(n_disc, generator=g) * 2 * math.pi
    disc = torch.stack([r * torch.cos(a), r * torch.sin(a), torch.zeros_like(r)], -1)
    checker = ((torch.floor(disc[:, 0] * 3) + torch.floor(disc[:, 1] * 3)) % 2)[:, None]
    disc_col = 0.25 + 0.5 * checker.expand(-1, 3)
    means = torch.cat([sphere, disc])
    colors = torch.cat([sphere_col, disc_col]) * (0.9 + 0.1 * torch.rand(num, 1, generator=g))
    scales = torch.cat([torch.full((n_sphere, 3), 0.035), torch.tensor([0.05, 0.05, 0.005]).expand(n_disc, 3)])
    quats = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(num, 4)
    return Gaussians(means[None], quats[None].clone(), scales[None], torch.full((1, num), 0.9), colors[None])


@dataclass
class RenderDemo:
    """Render a procedural Gaussian object from an orbit; write demo.ply and views.png."""

    output_dir: Path = Path("outputs/demo")
    """Where the .ply, the PNG and summary.json go."""
    num_views: int = 6
    resolution: int = 128

    def main(self) -> None:
        t0 = time.perf_counter()
        gs = demo_object()
        ply = save_ply(self.output_dir / "demo.ply", gs)
        gs = load_ply(ply)  # render what was written, so the file is checked too
        w2c = orbit_w2c(self.num_views, radius=3.0, elevation_deg=25.0, target=(0.0, 0.0, 0.3))
        K = intrinsics(45.0, self.resolution, self.resolution)
        views = []
        for v in track(range(self.num_views), description="rendering views", console=CONSOLE):
            out = render_gaussians(gs, w2c[None, v : v + 1], K[None, None], self.resolution, self.resolution,
                                   background=torch.ones(3))  # fmt: skip
            views.append(out.rgb[0, 0])
        png = save_png(self.output_dir / "views.png", contact_sheet([views]))
        summary = {
            "gaussians": gs.num_gaussians,
            "views": self.num_views,
            "resolution": self.resolution,
            "device": str(gs.device),
            "seconds": round(time.perf_counter() - t0, 3),
            "ply": str(ply),
            "png": str(png),
        }
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        CONSOLE.print(f"[bold green]Wrote[/] {ply} ({gs.num_gaussians} Gaussians) and {png}")


def entrypoint() -> None:
    tyro.cli(RenderDemo).main()


if __name__ == "__main__":
    entrypoint()
