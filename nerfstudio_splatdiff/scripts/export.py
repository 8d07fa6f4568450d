"""splatdiff-export: standard 3DGS .ply files of a trained run's reconstructions of evaluation scenes.

`ns-export gaussian-splat` only accepts nerfstudio's splatfacto models; this is its counterpart for splatdiff runs.
A splatdiff-diffusion run writes N samples per scene, a splatdiff-var or -regression run its one deterministic
reconstruction (the model says which: `SceneModel.generate`, as in splatdiff-sample):
<output-dir>/<scene name>/sample_XX.ply, in the scene's input camera frame (OpenCV: x right, y down, z forward).

The run is loaded safely (config.yml through the safe loader, the checkpoint as weights only; see runs.py). Folder
names are safe versions of the scene names; every option is checked before the run loads; an existing folder is
replaced only when it holds nothing but sample_XX.ply files (this command's output), else only with --overwrite;
each scene's folder appears once complete.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from rich.console import Console
from rich.progress import track

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.generation import check_eta_for_run, check_generation_flags, load_run
from nerfstudio_splatdiff.runs import setup_pipeline
from nerfstudio_splatdiff.safety import OWNER_FILE, check_output_dir, new_partial_dir, remove_stale_partials, safe_name
from nerfstudio_splatdiff.scripts.cli import run_command
from nerfstudio_splatdiff.splats.ply import save_ply

CONSOLE = Console()


def is_export_folder(folder: Path) -> bool:
    """Whether `folder` holds only what this command writes (sample_XX.ply files)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return all(
        re.fullmatch(r"sample_\d{2,}\.ply", p.name) and p.is_file() and not p.is_symlink() for p in folder.iterdir()
    )


def unique_safe_names(names: List[str]) -> List[str]:
    out: List[str] = []
    seen: set = set()
    for raw in names:
        base = safe_name(raw, "scene")
        name, i = base, 1
        while name.lower() in seen:
            name, i = f"{base}_{i}", i + 1
        seen.add(name.lower())
        out.append(name)
    return out


@dataclass
class Export:
    """Write .ply files of a splatdiff run's reconstructions (or diffusion samples) of evaluation scenes."""

    load_config: Path
    """config.yml of a splatdiff run (its dataset must be where training read it)."""
    scenes: Tuple[int, ...] = (0,)
    """Indices of evaluation (test split) scenes."""
    output_dir: Path = Path("outputs/export")
    num_samples: int = 1
    """Samples per scene (diffusion runs; a var or regression run writes its one reconstruction)."""
    guidance_weight: Optional[float] = None
    """Classifier-free guidance weight in [0, 10] (0 = none); default: the run's."""
    skip_weight: Optional[float] = None
    """Skip-connection weight in [0, 1] (1 = faithful to the input); default: the run's."""
    eta: Optional[float] = None
    """DDIM eta in [0, 1] (0 = deterministic DDIM, 1 = fresh noise at every step); default: the run's."""
    seed: int = 0
    overwrite: bool = False
    """Replace existing scene folders in --output-dir that hold other files than this command writes."""

    def check(self) -> None:
        check_generation_flags(self.num_samples, self.guidance_weight, self.skip_weight, self.seed, self.eta)
        if not self.scenes:
            raise SplatdiffError("--scenes is empty: pass one or more evaluation scene indices.")
        check_output_dir(self.output_dir)
        if not self.load_config.is_file():
            raise SplatdiffError(f"No config.yml at {self.load_config}: pass --load-config of a splatdiff run.")

    @torch.no_grad()
    def main(self) -> None:
        self.check()
        run, kind = load_run(self.load_config, "splatdiff-export", " (For splatfacto use ns-export gaussian-splat.)")
        check_eta_for_run(run, kind, self.eta)
        _, pipeline, _, _ = setup_pipeline(self.load_config, test_mode="test")
        dm = pipeline.datamanager
        n_eval = len(dm.eval_scenes)
        bad = [i for i in self.scenes if not 0 <= i < n_eval]
        if bad:
            raise SplatdiffError(
                f"Scene index {bad[0]} is out of range: this run's data has {n_eval} evaluation scenes "
                f"(0..{n_eval - 1})."
            )
        scenes = list(dict.fromkeys(self.scenes))
        names = unique_safe_names([str(dm.eval_scenes[i].name) for i in scenes])
        foreign = [n for n in names if (self.output_dir / n).exists() and not is_export_folder(self.output_dir / n)]
        if foreign and not self.overwrite:
            raise SplatdiffError(
                f"{self.output_dir} already holds {', '.join(foreign[:3])}, which splatdiff-export did not "
                "write: pick another --output-dir, or pass --overwrite to replace them."
            )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.output_dir)
        n = self.num_samples if pipeline.model.config.is_generative else 1
        if n < self.num_samples:
            CONSOLE.print(f"[yellow]A splatdiff-{kind} run is deterministic: writing its single reconstruction.[/]")
        for i, name in track(list(zip(scenes, names)), description="exporting scenes", console=CONSOLE):
            _, batch = dm.fixed_indices_eval_dataloader.get(i)
            g = pipeline.model.generate(batch, n, self.guidance_weight, self.skip_weight, self.seed, self.eta)
            final = self.output_dir / name
            tmp = new_partial_dir(self.output_dir, name)
            try:
                for s in range(g.batch_size):
                    save_ply(tmp / f"sample_{s:02d}.ply", g.scene(s))
                (tmp / OWNER_FILE).unlink(missing_ok=True)
                if final.exists() or final.is_symlink():
                    old = new_partial_dir(self.output_dir, name)
                    final.rename(old / "previous")
                    tmp.rename(final)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    tmp.rename(final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            CONSOLE.print(f"wrote {g.batch_size} file(s) to {final}/")


def entrypoint() -> None:
    run_command(Export)


if __name__ == "__main__":
    entrypoint()
