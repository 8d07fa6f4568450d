"""Procedural multi-view datasets in the CO3D v2 on-disk layout (the command: scripts/make_procedural.py).

Two kinds of scene (`--kind`):
- `object` (the proving ground): the object alone on a plain white background, covering 25-40% of the input view
  (view 0), with a large hidden-side shape detail. Everything a Splatter Image has to draw lies inside the input
  frustum, so a model can actually learn it; the analogue of Splatter Image's masked CO3D objects.
- `full`: the object on a textured ground under a sky, our analogue of CO3D's full images.

Each scene is a small object of 2-4 textured primitives standing on a textured ground (world +Z up), seen
from a CO3D-like orbit. The side facing away from view 0 — points p with (p - c) . d0 < 0, where d0 is the
horizontal direction from the object centre c to camera 0 — takes its colour and a small shape detail (a knob)
from one of `num_modes` discrete modes, independent of everything view 0 shows. So predicting the back from
view 0 is ambiguous by design, with a known set of answers (`mode_palette` gives each mode's colour).
Surface just behind that plane which camera 0 still sees (the top of a raised body, the far part of an oblique
box face) keeps the front texture, and the knob is kept out of camera 0's sight: view 0 is pixel-identical for
every mode (tests/test_procedural.py checks this).

Scene i depends only on (seed, i): separate random streams for the object, the hidden mode, the cameras and
the environment, so the number of workers never changes the data and the mode cannot leak into the rest.

Modules: shapes.py (palettes, textures, primitives, the mode knob), scenes.py (one scene: streams, cameras,
environment), co3d_writer.py (one scene's files and annotations), and this driver (checks, the output folder, worker
processes, the preview, the set lists). The public names of all of them can be imported from here.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nerfstudio_splatdiff.data.co3d_format import write_jgz
from nerfstudio_splatdiff.data.preprocess import single_thread_worker
from nerfstudio_splatdiff.data.procedural.co3d_writer import (
    ANNOTATION_FILES,
    FPS,
    GENERATOR,
    SUBSETS,
    SceneTask,
    _set_lists,
    scene_index,
    sequence_name,
    split_of,
    write_scene,
)
from nerfstudio_splatdiff.data.procedural.scenes import (
    BACKGROUND,
    MODE_KINDS,
    OBJECT_COVERAGE,
    OBJECT_KNOB_SIZE,
    SCENE_KINDS,
    ModeKind,
    ProceduralScene,
    SceneKind,
    camera_center,
    drawn_mode,
    sample_scene,
)
from nerfstudio_splatdiff.data.procedural.shapes import mode_palette
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.images import contact_sheet, save_png

CONSOLE = Console()
PathLike = Union[str, Path]

__all__ = [
    "ANNOTATION_FILES", "BACKGROUND", "FPS", "GENERATOR", "MODE_KINDS", "OBJECT_COVERAGE", "OBJECT_KNOB_SIZE",
    "SCENE_KINDS", "SUBSETS", "ModeKind", "ProceduralScene", "SceneKind", "SceneTask", "camera_center", "drawn_mode",
    "generate_dataset", "mode_palette", "sample_scene", "scene_index", "sequence_name", "split_of", "write_preview", "write_scene",
]


def _validate(
    scenes: int, views: int, resolution: int, num_modes: int, workers: int, category: str,
    kind: str = "full", force_mode: Optional[int] = None, mode_kind: str = "colour", all_modes: bool = False,
) -> None:
    """One clear error per bad argument, before anything is written."""
    if all_modes and force_mode is not None:
        raise SplatdiffError("--all-modes writes every mode of each scene: drop --force-mode, or --all-modes.")
    if kind not in SCENE_KINDS:
        raise SplatdiffError(f"--kind must be one of {', '.join(SCENE_KINDS)} (got {kind!r}).")
    if mode_kind not in MODE_KINDS:
        raise SplatdiffError(f"--modes must be one of {', '.join(MODE_KINDS)} (got {mode_kind!r}).")
    if mode_kind == "shape" and kind != "object":
        raise SplatdiffError("--modes shape makes the geometry proving ground: pass --kind object with it.")
    if force_mode is not None and not 0 <= force_mode < max(num_modes, 1):
        raise SplatdiffError(
            f"--force-mode must be between 0 and {num_modes - 1} for --num-modes {num_modes} (got {force_mode})."
        )
    if scenes < 1:
        raise SplatdiffError(f"--scenes must be at least 1 (got {scenes}).")
    if views < 2:
        raise SplatdiffError(f"--views must be at least 2 for a multi-view dataset (got {views}).")
    if resolution < 8:
        raise SplatdiffError(f"--resolution must be at least 8 pixels (got {resolution}).")
    if num_modes < 1:
        raise SplatdiffError(f"--num-modes must be at least 1 (got {num_modes}).")
    if workers < 0:
        raise SplatdiffError(f"--workers must be 0 or more (got {workers}).")
    if not category or category in (".", "..") or "/" in category or "\\" in category:
        raise SplatdiffError(f"--category must be a plain folder name (got {category!r}).")


def _prepare_output(output: Path, category: str, overwrite: bool) -> Path:
    """Create <output>/<category>; refuse to touch an existing dataset unless `overwrite`, then clear it."""
    cat_dir = output / category
    if output.exists() and not output.is_dir():
        raise SplatdiffError(f"--output {output} is a file; give a folder for the dataset.")
    ours = [cat_dir / n for n in ANNOTATION_FILES] + [cat_dir / "set_lists" / f"set_lists_{s}.json" for s in SUBSETS]
    existing = [p for p in ours if p.exists()]
    if existing and not overwrite:
        raise SplatdiffError(
            f"{cat_dir} already holds a dataset ({existing[0].name}); pass --overwrite to replace it, "
            "or choose another --output or --category."
        )
    if overwrite and cat_dir.is_dir():  # drop the old annotations first, so a crash never leaves them stale
        for p in existing + [cat_dir / "preview.png"]:
            p.unlink(missing_ok=True)
        for seq_dir in cat_dir.glob("proc_*"):
            if seq_dir.is_dir() and (seq_dir / "images").is_dir():
                shutil.rmtree(seq_dir)
    (cat_dir / "set_lists").mkdir(parents=True, exist_ok=True)
    return cat_dir


def _progress() -> Progress:
    return Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=CONSOLE)


def _run_tasks(tasks: list[SceneTask], workers: int) -> dict[str, tuple[list[dict], dict]]:
    """Write all scenes, in this process (workers <= 1) or a spawn Pool, with a progress bar; by sequence name."""
    results: dict[str, tuple[list[dict], dict]] = {}
    with _progress() as progress:
        bar = progress.add_task("rendering scenes", total=len(tasks))
        if workers <= 1:
            for task in tasks:
                name, frames, seq = write_scene(task)
                results[name] = (frames, seq)
                progress.advance(bar)
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(workers, len(tasks)), initializer=single_thread_worker) as pool:
                for name, frames, seq in pool.imap_unordered(write_scene, tasks):
                    results[name] = (frames, seq)
                    progress.advance(bar)
    return results


def write_preview(cat_dir: Path, frames: list[dict], root: Path, scenes: int = 6, views: int = 6) -> Path:
    """A contact sheet of the first few scenes (rows) x evenly spaced views (columns), read back from disk."""
    by_seq: dict[str, list[dict]] = {}
    for fr in frames:
        by_seq.setdefault(fr["sequence_name"], []).append(fr)
    rows = []
    for seq in sorted(by_seq)[:scenes]:
        seq_frames = by_seq[seq]
        picks = sorted(set(np.linspace(0, len(seq_frames) - 1, min(views, len(seq_frames))).round().astype(int)))
        images = [np.array(Image.open(root / seq_frames[j]["image"]["path"])) for j in picks]
        rows.append([torch.from_numpy(im).float() / 255 for im in images])
    return save_png(cat_dir / "preview.png", contact_sheet(rows))


def generate_dataset(
    output: PathLike,
    scenes: int,
    views: int,
    resolution: int,
    seed: int,
    category: str = "procedural",
    workers: int = 0,
    num_modes: int = 3,
    overwrite: bool = False,
    preview: bool = False,
    kind: SceneKind = "full",
    force_mode: Optional[int] = None,
    mode_kind: ModeKind = "colour",
    all_modes: bool = False,
) -> Path:
    """Generate `scenes` procedural sequences of `views` R x R views in CO3D v2 layout; return <output>/<category>.

    With `all_modes`, every scene is written once per hidden-side mode (`proc_<i>_m<k>`, num_modes x scenes
    sequences): the same input view with each of its completions, so a model cannot tell a scene's hidden side from
    its input view by remembering the scene, only from what it is shown of the hidden side.

    Images, masks and depths are written first, the annotations and set lists last, so a finished
    frame_annotations.jgz means a complete dataset.
    """
    t0 = time.perf_counter()
    _validate(scenes, views, resolution, num_modes, workers, category, kind, force_mode, mode_kind, all_modes)
    root = Path(output)
    cat_dir = _prepare_output(root, category, overwrite)
    modes = list(range(num_modes)) if all_modes else [force_mode]
    tasks = [
        SceneTask(str(root), category, seed, i, views, resolution, num_modes, kind, k, mode_kind, all_modes)
        for i in range(scenes)
        for k in modes
    ]
    results = _run_tasks(tasks, workers)
    frames = [fr for t in tasks for fr in results[t.sequence][0]]
    seqs = [results[t.sequence][1] for t in tasks]
    lists = _set_lists(frames, scenes)
    for subset in SUBSETS:
        (cat_dir / "set_lists" / f"set_lists_{subset}.json").write_text(json.dumps(lists))
    write_jgz(cat_dir / "sequence_annotations.jgz", seqs)
    write_jgz(cat_dir / "frame_annotations.jgz", frames)
    extra = ""
    if preview:
        extra = f", preview {write_preview(cat_dir, frames, root)}"
    CONSOLE.print(
        f"[bold green]Wrote[/] {len(tasks)} scenes x {views} views ({resolution}x{resolution}) to {cat_dir} "
        f"in {time.perf_counter() - t0:.1f} s{extra}"
    )
    return cat_dir
