"""splatdiff-demo (`make demo`): the whole system on a fresh machine, no download.

1. Generates proving-ground scenes with a seed the shipped model never trained on (data/demo), once per forced
   hidden-side mode, so every correct completion of each input is known.
2. Takes the input view (first frame) of each scene as an ordinary photo.
3. Runs splatdiff-sample with the shipped checkpoint (checkpoints/demo, trained by `make train-demo`):
   N complete splats per photo as .ply, turntables, a contact sheet and summary.json in outputs/demo/.
4. Writes outputs/demo/completions.png: per input, the input, the input view re-rendered, the hidden side of the
   samples and the K true completions, seen from the same camera.
5. Says where to look and how to open the viewer.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from nerfstudio_splatdiff.completions import completion_row, held_out_inputs
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.safety import check_output_dir, safe_name
from nerfstudio_splatdiff.scripts.cli import run_command
from nerfstudio_splatdiff.scripts.sample import Sample
from nerfstudio_splatdiff.splats.images import contact_sheet, save_png

CONSOLE = Console()
SHIPPED = Path("checkpoints/demo/splatdiff-diffusion-small/shipped/config.yml")


def input_photo(data: Path, mode: int, scene: str) -> Path:
    """The input view (frame 1) of a scene, as the generator wrote it: an ordinary JPEG photo."""
    return data / f"mode{mode}" / "procedural" / scene / "images" / "frame000001.jpg"


def _is_demo_inputs(folder: Path) -> bool:
    """Whether `folder` holds only the input photos a previous demo copied there (so it may be replaced)."""
    return (
        folder.is_dir()
        and not folder.is_symlink()
        and all(p.is_file() and not p.is_symlink() and p.suffix.lower() in (".png", ".jpg") for p in folder.iterdir())
    )


@dataclass
class Demo:
    """Sample complete Gaussian splats for held-out procedural photos with the shipped checkpoint."""

    load_config: Path = SHIPPED
    """The run to sample with (default: the checkpoint that ships in the repository)."""
    data: Path = Path("data/demo")
    output_dir: Path = Path("outputs/demo")
    scenes: int = 4
    """Proving-ground scenes to generate (each once per hidden-side mode); all are new to the shipped model."""
    max_inputs: int = 4
    """At most this many of them become input photos."""
    num_samples: int = 4
    """Complete splats sampled per photo."""
    seed: int = 7
    """Data seed: the shipped model trained on seed 0, so every demo scene is new to it."""

    def main(self) -> None:
        t0 = time.perf_counter()
        if not self.load_config.is_file():
            raise SplatdiffError(
                f"No checkpoint at {self.load_config}: run the demo from the repository root, or "
                "train one with `make train-demo`."
            )
        check_output_dir(self.output_dir)
        from nerfstudio_splatdiff.runs import load_inference_model

        model, _ = load_inference_model(self.load_config)
        CONSOLE.rule("1. proving-ground scenes, once per hidden-side mode")
        held_out = held_out_inputs(
            self.data, self.scenes, self.seed, model.config.image_size, cache=self.data / "cache"
        )[: self.max_inputs]
        inputs = [input_photo(self.data, h.true_mode, h.name) for h in held_out]
        photos = self.output_dir / "inputs"
        if photos.exists() and not _is_demo_inputs(photos):
            raise SplatdiffError(
                f"{photos} holds files the demo did not write: move them, or pick another --output-dir."
            )
        shutil.rmtree(photos, ignore_errors=True)
        photos.mkdir(parents=True)
        for p in inputs:
            shutil.copy(p, photos / f"{safe_name(p.parent.parent.name, 'scene')}{p.suffix}")
        CONSOLE.rule(f"2. sampling {self.num_samples} complete splats for {len(inputs)} held-out photos")
        Sample(
            load_config=self.load_config, image=photos, output_dir=self.output_dir, num_samples=self.num_samples
        ).main()
        CONSOLE.rule("3. the samples' hidden sides next to every true completion")
        rows = [completion_row(model, h, self.num_samples, seed=i)[0] for i, h in enumerate(held_out)]
        sheet = save_png(self.output_dir / "completions.png", contact_sheet(rows))
        CONSOLE.rule("4. where to look")
        CONSOLE.print(
            f"Completions (rows = inputs; input | input view re-rendered | hidden side of {self.num_samples} "
            f"samples | the {len(held_out[0].batches)} true completions): {sheet}",
            soft_wrap=True,
        )
        CONSOLE.print(
            "Contact sheets (rows = samples; input | input view | side | back | side): "
            f"{self.output_dir}/*/contact_sheet.png",
            soft_wrap=True,
        )
        CONSOLE.print(
            f"Turntables: {self.output_dir}/*/turntable_XX.gif   "
            f"3DGS files for any splat viewer: {self.output_dir}/*/sample_XX.ply",
            soft_wrap=True,
        )
        CONSOLE.print("Browse, resample and change guidance in the nerfstudio viewer:", soft_wrap=True)
        CONSOLE.print(f"  splatdiff-viewer --load-config {self.load_config}   (listens on 127.0.0.1)", soft_wrap=True)
        CONSOLE.print(
            f"  or: ns-viewer --load-config {self.load_config} --viewer.websocket-host 127.0.0.1", soft_wrap=True
        )
        CONSOLE.print(f"[bold]Demo done in {time.perf_counter() - t0:.0f} s.[/]", soft_wrap=True)


def entrypoint() -> None:
    run_command(Demo)


if __name__ == "__main__":
    entrypoint()
