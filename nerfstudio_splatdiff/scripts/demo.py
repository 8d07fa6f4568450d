"""splatdiff-demo (`make demo`): the whole system on a fresh machine, no download.

1. Generates proving-ground scenes with a seed the shipped model never trained on (data/demo), once per forced
   hidden-side mode, so every correct completion of each input is known, and once with each scene's own hidden
   side: the dataset the shipped config.yml records, which the viewer opens.
2. Takes the input view (first frame) of each scene as an ordinary photo.
3. Samples with the shipped checkpoint (checkpoints/demo, trained by `make train-demo`), as splatdiff-sample does:
   N complete splats per photo as .ply, turntables, a contact sheet and summary.json in outputs/demo/.
4. Writes outputs/demo/completions.png: per input, the input, the input view re-rendered, the hidden side of the
   samples and the K true completions, seen from the same camera.
5. Says where to look and prints the viewer command that opens these scenes, as it can be run from here.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, List, Optional

from rich.console import Console

from nerfstudio_splatdiff.completions import DEMO_DATA_BY_MODES, completion_row, held_out_inputs, write_true_modes
from nerfstudio_splatdiff.data.procedural.generate import ModeKind
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.generation import load_run, photo_background, photo_warnings, training_images
from nerfstudio_splatdiff.safety import check_output_dir, safe_name
from nerfstudio_splatdiff.sample_writer import (
    Knobs,
    OutputOptions,
    PhotoSampler,
    check_sample_outputs,
    make_summary,
    unique_names,
    write_summary,
)
from nerfstudio_splatdiff.scripts.cli import run_command
from nerfstudio_splatdiff.splats.images import contact_sheet, save_png

CONSOLE = Console()
SHIPPED = Path("checkpoints/demo/splatdiff-diffusion-small/shipped/config.yml")
SHIPPED_BY_MODES = {"colour": SHIPPED, "shape": Path("checkpoints/shape/splatdiff-diffusion-small/shipped/config.yml")}
"""The shipped checkpoint of each proving ground (`--modes`): hidden sides that differ in colour, or in shape."""


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


def command_path(name: str) -> str:
    """How to call one of this package's commands from the current folder: its bare name when the shell finds this
    installation's copy on PATH, else its path (relative when it lies below the current folder, e.g. .venv/bin/...)."""
    exe = Path(sys.executable).parent / name
    if shutil.which(name) == str(exe):
        return name
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def viewer_command(load_config: Path, data: Path, run: Any) -> str:
    """The splatdiff-viewer command that opens `data` (the demo's scenes) with the run; --data only when the run's
    config.yml records another dataset."""
    recorded = Path(run.pipeline.datamanager.dataparser.data)
    cmd = [command_path("splatdiff-viewer"), "--load-config", str(load_config)]
    if recorded.resolve() != Path(data).resolve():
        cmd += ["--data", str(data)]
    return shlex.join(cmd)


@dataclass
class Demo:
    """Sample complete Gaussian splats for held-out procedural photos with the shipped checkpoint."""

    modes: ModeKind = "colour"
    """Which proving ground: `colour` (hidden sides that differ in colour) or `shape` (that differ in shape only:
    nothing, a horn or a block behind the object, judged by silhouette and depth; figures show them from the side)."""
    load_config: Optional[Path] = None
    """The run to sample with (default: the checkpoint that ships in the repository for --modes)."""
    data: Optional[Path] = None
    """Where the demo's scenes are written (default data/demo, data/demo-shape for --modes shape: what the shipped
    config.yml records, so the viewer opens them)."""
    output_dir: Path = Path("outputs/demo")
    scenes: int = 4
    """Proving-ground scenes to generate (each once per hidden-side mode); all are new to the shipped model."""
    max_inputs: int = 4
    """At most this many of them become input photos."""
    num_samples: int = 4
    """Complete splats sampled per photo."""
    seed: int = 7
    """Data seed: the shipped model trained on seed 0, so every demo scene is new to it."""

    def __post_init__(self) -> None:
        if self.modes not in SHIPPED_BY_MODES:
            raise SplatdiffError(f"--modes must be one of {', '.join(SHIPPED_BY_MODES)} (got {self.modes!r}).")
        self.load_config = self.load_config or SHIPPED_BY_MODES[self.modes]
        self.data = self.data or DEMO_DATA_BY_MODES[self.modes]

    def main(self) -> None:
        t0 = time.perf_counter()
        assert self.load_config is not None and self.data is not None  # set in __post_init__
        if not self.load_config.is_file():
            raise SplatdiffError(
                f"No checkpoint at {self.load_config}: run the demo from the repository root, or "
                "train one with `make train-demo`."
            )
        check_output_dir(self.output_dir)
        run, kind = load_run(self.load_config, "splatdiff-demo")
        from nerfstudio_splatdiff.runs import load_inference_model, run_depth_range

        t_load = time.perf_counter()
        model, run = load_inference_model(self.load_config, "cpu")
        load_s = time.perf_counter() - t_load
        CONSOLE.rule("1. proving-ground scenes, once per hidden-side mode and once as drawn")
        held_out = held_out_inputs(
            self.data,
            self.scenes,
            self.seed,
            model.config.image_size,
            cache=self.data / "cache",
            mode_kind=self.modes,
            depth_range=run_depth_range(run),
        )[: self.max_inputs]
        write_true_modes(self.data, self.scenes, self.seed, mode_kind=self.modes)
        inputs = [input_photo(self.data, h.true_mode, h.name) for h in held_out]
        photos = self.output_dir / "inputs"
        if photos.exists() and not _is_demo_inputs(photos):
            raise SplatdiffError(
                f"{photos} holds files the demo did not write: move them, or pick another --output-dir."
            )
        CONSOLE.rule(f"2. sampling {self.num_samples} complete splats for {len(inputs)} held-out photos")
        entries = self.sample(model, run, kind, inputs, photos, load_s)
        CONSOLE.rule("3. the samples' hidden sides next to every true completion")
        rows = [completion_row(model, h, self.num_samples, seed=i)[0] for i, h in enumerate(held_out)]
        sheet = save_png(self.output_dir / "completions.png", contact_sheet(rows))
        side = "the side" if self.modes == "shape" else "the back"
        CONSOLE.rule("4. where to look")
        CONSOLE.print(
            f"Completions (rows = inputs; input | input view re-rendered | hidden side of {self.num_samples} "
            f"samples | the {len(held_out[0].batches)} true completions; seen from {side}): {sheet}",
            soft_wrap=True,
        )
        CONSOLE.print(
            "Contact sheets (rows = samples; input | input view | side | back | side): "
            f"{self.output_dir}/*/contact_sheet.png   ({len(entries)} photos)",
            soft_wrap=True,
        )
        CONSOLE.print(
            f"Turntables: {self.output_dir}/*/turntable_XX.gif   "
            f"3DGS files for any splat viewer: {self.output_dir}/*/sample_XX.ply",
            soft_wrap=True,
        )
        CONSOLE.print("Browse, resample and change guidance in the nerfstudio viewer:", soft_wrap=True)
        viewer = viewer_command(self.load_config, self.data, run)
        CONSOLE.print(f"  {viewer}   (listens on 127.0.0.1)", soft_wrap=True, markup=False, highlight=False)
        if "--data" not in viewer:  # ns-viewer opens the dataset config.yml records
            CONSOLE.print(
                f"  or: {command_path('ns-viewer')} --load-config {self.load_config} --viewer.websocket-host 127.0.0.1",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
        CONSOLE.print(f"[bold]Demo done in {time.perf_counter() - t0:.0f} s.[/]", soft_wrap=True)

    def sample(self, model: Any, run: Any, kind: str, inputs: List[Path], photos: Path, load_s: float) -> List[dict]:
        """splatdiff-sample's work for the input photos (copied to <output-dir>/inputs) with the loaded model."""
        from nerfstudio_splatdiff.data.photo import load_photo

        images = [photos / f"{safe_name(p.parent.parent.name, 'scene')}{p.suffix}" for p in inputs]
        names = unique_names(images)
        check_sample_outputs(self.output_dir, names, overwrite=False)
        shutil.rmtree(photos, ignore_errors=True)
        photos.mkdir(parents=True)
        for p, image in zip(inputs, images):
            shutil.copy(p, image)
        size, bg = int(model.config.image_size), photo_background(run)
        loaded = [load_photo(p, size, background=bg) for p in images]
        for photo, warning in photo_warnings(loaded, training_images(run)):
            CONSOLE.print(f"[yellow]{photo.path.name}: far from the training data:[/] {warning}", soft_wrap=True)
        sampler = PhotoSampler(model, run, self.output_dir, Knobs(self.num_samples), OutputOptions(), False)
        entries = sampler.sample_all(loaded, names)
        summary = make_summary("splatdiff-demo", asdict(self), self.load_config, run, kind, "cpu", load_s, entries)
        write_summary(self.output_dir, summary, overwrite=False)
        return entries


def entrypoint() -> None:
    run_command(Demo)


if __name__ == "__main__":
    entrypoint()
