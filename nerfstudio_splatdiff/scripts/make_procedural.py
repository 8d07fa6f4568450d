"""splatdiff-make-procedural: write a procedural multi-view dataset in the CO3D v2 layout (the generator and what
its scenes are: data/procedural/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from nerfstudio_splatdiff.data.procedural.generate import ModeKind, SceneKind, generate_dataset
from nerfstudio_splatdiff.scripts.cli import run_command


@dataclass
class MakeProcedural:
    """Write a procedural multi-view dataset (textured primitives on a ground, ambiguous back) in CO3D v2 layout."""

    output: Path
    """Dataset root: the data goes to <output>/<category>/."""
    scenes: int = 200
    """Number of sequences (scenes)."""
    views: int = 24
    """Views per sequence, on a CO3D-like orbit."""
    resolution: int = 128
    """Square image size in pixels."""
    seed: int = 0
    """Scene i depends only on (seed, i)."""
    category: str = "procedural"
    """CO3D category folder name."""
    workers: int = 2
    """Processes; 0 or 1 renders in this process."""
    num_modes: int = 3
    """Number of discrete appearance / shape modes of the side hidden from view 0."""
    overwrite: bool = False
    """Replace an existing dataset in <output>/<category>."""
    preview: bool = False
    """Also write <output>/<category>/preview.png, a contact sheet of the first scenes."""
    kind: SceneKind = "full"
    """`object`: the proving ground (the object alone on white, 25-40% of the input view, a large hidden-side
    detail); `full`: the object on a textured ground under a sky (CO3D full-image analogue)."""
    force_mode: Optional[int] = None
    """Give every scene this hidden-side mode (0..num_modes-1): the same scenes, fronts and cameras as without it,
    so evaluation can render every correct completion of a held-out input."""
    all_modes: bool = False
    """Write every scene once per hidden-side mode (`proc_<i>_m<k>`): the same input with each completion, so a model
    trained on it cannot learn a scene's hidden side from its input view, only from a view of that side."""
    modes: ModeKind = "colour"
    """What the hidden-side modes change (with --kind object): `colour` (the colour proving ground: a colour and a
    small knob) or `shape` (the geometry proving ground: the body's own texture, and nothing, a long horn or a block
    behind it)."""

    def main(self) -> Path:
        return generate_dataset(
            self.output,
            self.scenes,
            self.views,
            self.resolution,
            self.seed,
            self.category,
            self.workers,
            self.num_modes,
            self.overwrite,
            self.preview,
            self.kind,
            self.force_mode,
            self.modes,
            self.all_modes,
        )


def entrypoint() -> None:
    run_command(MakeProcedural)


if __name__ == "__main__":
    entrypoint()
