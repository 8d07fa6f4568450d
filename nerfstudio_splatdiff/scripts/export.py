"""splatdiff-export: standard 3DGS .ply files of a trained run's reconstructions of evaluation scenes.

`ns-export gaussian-splat` only accepts nerfstudio's splatfacto models; this is its counterpart for splatdiff runs.
A splatdiff-diffusion run writes N samples per scene, a splatdiff-var (or -regression) run its reconstruction:
<output-dir>/<scene name>/sample_XX.ply, in the scene's input camera frame (OpenCV: x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
from rich.console import Console
from rich.progress import track

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.scripts.cli import run_command
from nerfstudio_splatdiff.models.sampling import check_sampling_args
from nerfstudio_splatdiff.runs import load_run_config
from nerfstudio_splatdiff.scripts.sample import generate
from nerfstudio_splatdiff.splats.ply import save_ply

CONSOLE = Console()


@dataclass
class Export:
    """Write .ply files of a splatdiff run's reconstructions (or diffusion samples) of evaluation scenes."""

    load_config: Path
    """config.yml of a splatdiff run (its dataset must be where training read it)."""
    scenes: Tuple[int, ...] = (0,)
    """Indices of evaluation (test split) scenes."""
    output_dir: Path = Path("outputs/export")
    num_samples: int = 1
    """Samples per scene (diffusion runs)."""
    guidance_weight: Optional[float] = None
    skip_weight: Optional[float] = None
    seed: int = 0

    @torch.no_grad()
    def main(self) -> None:
        from nerfstudio.utils.eval_utils import eval_setup

        if not self.load_config.is_file():
            raise SplatdiffError(f"No config.yml at {self.load_config}: pass --load-config of a splatdiff run.")
        check_sampling_args(self.num_samples, self.guidance_weight or 0.0, 1.0 if self.skip_weight is None else self.skip_weight, 1)
        model_cfg = load_run_config(self.load_config).pipeline.model
        if not hasattr(model_cfg, "var_checkpoint") and not hasattr(model_cfg, "network"):
            raise SplatdiffError(f"{self.load_config} is not a splatdiff run; for splatfacto use ns-export gaussian-splat.")
        kind = "diffusion" if hasattr(model_cfg, "var_checkpoint") else "var"
        _, pipeline, _, _ = eval_setup(self.load_config, test_mode="test")
        dm = pipeline.datamanager
        n_eval = len(dm.eval_scenes)
        bad = [i for i in self.scenes if not 0 <= i < n_eval]
        if bad:
            raise SplatdiffError(f"Scene index {bad[0]} is out of range: this run's data has {n_eval} evaluation scenes (0..{n_eval - 1}).")
        n = self.num_samples if kind == "diffusion" else 1
        for i in track(self.scenes, description="exporting scenes", console=CONSOLE):
            _, batch = dm.fixed_indices_eval_dataloader.get(i)
            g = generate(pipeline.model, kind, batch, n, self.guidance_weight, self.skip_weight, self.seed)
            folder = self.output_dir / dm.eval_scenes[i].name
            for s in range(g.batch_size):
                CONSOLE.print(f"wrote {save_ply(folder / f'sample_{s:02d}.ply', g.scene(s))}")


def entrypoint() -> None:
    run_command(Export)


if __name__ == "__main__":
    entrypoint()
