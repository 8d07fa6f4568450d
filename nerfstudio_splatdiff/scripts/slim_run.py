"""splatdiff-slim-run: write an inference-only, float16 copy of a trained run (what the repository ships for the
demo); for a diffusion run also its VAR's, and the copy points at that. How a slim run looks and loads: runs.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.generation import check_generation_flags
from nerfstudio_splatdiff.models.scene_model import splatdiff_model_config
from nerfstudio_splatdiff.runs import (
    check_codebook_sampling,
    find_var_run,
    is_slim_run_folder,
    load_run_config,
    resolve_run,
    slim_run_folder,
    write_slim_run,
)
from nerfstudio_splatdiff.safety import check_output_dir
from nerfstudio_splatdiff.scripts.cli import run_command


@dataclass
class SlimRun:
    """Write an inference-only, float16 copy of a trained splatdiff run (and, for a diffusion run, of its VAR)."""

    load_config: Path
    """The run's config.yml (splatdiff-var, -regression or -diffusion)."""
    output_dir: Path = Path("checkpoints")
    """Root of the copies: each goes to <output-dir>/<experiment-name>/<method>/shipped/."""
    experiment_name: str = "demo"
    """Experiment folder name under --output-dir (a plain folder name)."""
    data: Optional[Path] = None
    """Dataset path to record in the copied configs (the viewer and ns-eval read it); default: unchanged."""
    overwrite: bool = False
    """Replace an existing output run folder that holds other files than a slim run's."""
    var_config: Optional[Path] = None
    """A diffusion run's VAR run (its config.yml); default: the one the diffusion run's config.yml records (a
    relative path there is looked up from the working folder, then from the run's parent folders)."""
    guidance_weight: Optional[float] = None
    """A diffusion run only: the classifier-free guidance weight its copy samples with by default (the one chosen on
    a validation split, e.g. by benchmarks/proving_ground.py); default: the run's own."""

    code_snap_pull: Optional[float] = None
    """A diffusion run over a VAR with a codebook only: how far its copy moves each sampled code to the nearest
    centroid by default, in [0, 1] (chosen on a validation split, e.g. by benchmarks/proving_ground.py
    --code-snap-pull); default: the run's own (1, onto it)."""
    code_oversample: Optional[int] = None
    """A diffusion run over a VAR with a codebook only: how many latents its copy draws per sample kept, keeping the
    least undecided between two centroids (chosen on a validation split, e.g. by benchmarks/proving_ground.py
    --code-oversample); default: the run's own (1, keep every latent)."""

    def main(self) -> None:
        check_output_dir(self.output_dir)
        check_generation_flags(1, self.guidance_weight, None, 0)
        config_path = resolve_run(self.load_config)[0]
        run = load_run_config(config_path)
        model_cfg = splatdiff_model_config(run, config_path, "splatdiff-slim-run")
        var_config = None
        if self.guidance_weight is not None and not model_cfg.needs_frozen_var:
            raise SplatdiffError(
                f"--guidance-weight is a diffusion run's sampler setting and {config_path} is a {run.method_name} "
                "run: leave it out."
            )
        targets = [slim_run_folder(self.load_config, self.output_dir, self.experiment_name)]
        if model_cfg.needs_frozen_var:
            if self.var_config is not None and not Path(self.var_config).exists():
                raise SplatdiffError(
                    f"--var-config {self.var_config} does not exist: pass a splatdiff-var run's config.yml."
                )
            recorded = self.var_config or model_cfg.var_checkpoint
            model_cfg.var_checkpoint = find_var_run(recorded, config_path, "--var-config")
            targets.append(slim_run_folder(model_cfg.var_checkpoint, self.output_dir, self.experiment_name))
        if self.code_snap_pull is not None or self.code_oversample is not None:
            var_run = model_cfg.var_checkpoint if model_cfg.needs_frozen_var else None
            check_codebook_sampling(var_run, config_path, self.code_snap_pull, self.code_oversample)
        for target in targets:  # every check before anything is written
            if target.exists() and not self.overwrite and not is_slim_run_folder(target):
                raise SplatdiffError(
                    f"{target} exists and holds files other than a slim run's: move them, or pass "
                    "--overwrite to replace the folder."
                )
        if model_cfg.needs_frozen_var:
            var_config = write_slim_run(
                model_cfg.var_checkpoint, self.output_dir, self.experiment_name, self.data, overwrite=self.overwrite
            )
            print(f"VAR       -> {var_config}")
        out = write_slim_run(
            self.load_config,
            self.output_dir,
            self.experiment_name,
            self.data,
            var_config,
            self.overwrite,
            guidance_weight=self.guidance_weight,
            code_snap_pull=self.code_snap_pull,
            code_oversample=self.code_oversample,
        )
        print(f"{run.method_name:<9} -> {out}")


def entrypoint() -> None:
    run_command(SlimRun)


if __name__ == "__main__":
    entrypoint()
