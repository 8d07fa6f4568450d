"""nerfstudio dataparsers for CO3D v2 (and the procedural data, which uses the same format), RealEstate10K and
folders of nerfstudio-format captures (transforms.json, as ns-process-data and instant-ngp write them).

They return nerfstudio `DataparserOutputs` whose `metadata["scenes"]` holds the preprocessed `SceneRecord`s for
the multi-scene DataManager; `cameras` / `image_filenames` describe at most `max_frustums` frames for the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from nerfstudio_splatdiff.data.co3d import Co3dSettings, load_co3d_split
from nerfstudio_splatdiff.data.nerfstudio_scenes import (
    NerfstudioScenesSettings,
    describe_eval_frames,
    load_nerfstudio_split,
)
from nerfstudio_splatdiff.data.preprocess import CONSOLE, SkipReport
from nerfstudio_splatdiff.data.re10k import Re10kSettings, load_re10k_split
from nerfstudio_splatdiff.data.scene import IMAGES, SceneRecord
from nerfstudio_splatdiff.errors import check_option, is_number_in
from nerfstudio_splatdiff.splats.cameras import nerfstudio_cameras

MAX_FRUSTUMS = 512


def frustum_frames(scenes: list[SceneRecord], limit: int = MAX_FRUSTUMS) -> list[tuple[int, int]]:
    """(scene index, frame index) pairs spread over the scenes, at most `limit` of them."""
    pairs = [(s, f) for s, rec in enumerate(scenes) for f in range(rec.num_frames)]
    if len(pairs) <= limit:
        return pairs
    step = len(pairs) / limit
    return [pairs[int(i * step)] for i in range(limit)]


def scenes_to_cameras(scenes: list[SceneRecord], pairs: list[tuple[int, int]]) -> Cameras:
    """nerfstudio Cameras of the given frames, each in its scene's normalised world."""
    c2w = torch.stack([scenes[s].c2w[f] for s, f in pairs])
    K = torch.stack([scenes[s].K[f] for s, f in pairs])
    res = scenes[pairs[0][0]].resolution
    return nerfstudio_cameras(c2w, K, res, res)


def scene_outputs(scenes: list[SceneRecord], report: SkipReport, **metadata) -> DataparserOutputs:
    pairs = frustum_frames(scenes)
    return DataparserOutputs(
        image_filenames=[scenes[s].folder / IMAGES for s, _ in pairs],
        cameras=scenes_to_cameras(scenes, pairs),
        scene_box=SceneBox(aabb=torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])),
        metadata={"scenes": scenes, "skip_report": report, "frustum_frames": pairs, **metadata},
    )


@dataclass
class Co3dDataParserConfig(DataParserConfig):
    """CO3D v2 (hydrant, teddybear, ...) and the procedural data written by splatdiff-make-procedural."""

    _target: Type = field(default_factory=lambda: Co3dDataParser)
    data: Path = Path("data/co3d")
    """The CO3D root: the folder that holds <category>/frame_annotations.jgz."""
    category: Optional[str] = None
    """Category to use (hydrant, teddybear, procedural...); None picks the only one present."""
    subset_name: str = "fewview_dev"
    """Set list subset (set_lists/set_lists_<subset>.json)."""
    eval_split: Literal["val", "test"] = "test"
    resolution: int = 128
    """Side of the square images after cropping around the principal point."""
    camera_distance: float = 2.0
    """Each sequence is scaled so that its cameras are on average this far from the object centre."""
    load_depths: bool = True
    """Keep the depth maps (for the visible / occluded evaluation split); they are never used for training."""
    max_sequences: Optional[int] = None
    """Use at most this many sequences per split (quick experiments)."""
    cache_dir: Optional[Path] = None
    """Where preprocessed tensors are cached (default: $SPLATDIFF_CACHE or ~/.cache/nerfstudio-splatdiff)."""
    preprocess_workers: int = 0
    """Processes that build a new cache (0: one per core, at most 8, one per 32 sequences; 1: this process only).
    The cache is the same whatever the number."""

    def __post_init__(self) -> None:
        check_option(isinstance(self.preprocess_workers, int) and is_number_in(self.preprocess_workers, 0),
                     "co3d-data --preprocess-workers", self.preprocess_workers,
                     "0 (one per core) or a whole number of processes")


class Co3dDataParser(DataParser):
    config: Co3dDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        c = self.config
        records, report = load_co3d_split(
            c.data, c.category, c.subset_name, "train" if split == "train" else c.eval_split,
            Co3dSettings(resolution=c.resolution, camera_distance=c.camera_distance, load_depths=c.load_depths),
            cache_root=c.cache_dir, max_sequences=c.max_sequences, workers=c.preprocess_workers,
        )
        return scene_outputs(records, report)


@dataclass
class Re10kDataParserConfig(DataParserConfig):
    """RealEstate10K: pixelSplat-style .torch chunks, or camera .txt files with extracted frames."""

    _target: Type = field(default_factory=lambda: Re10kDataParser)
    data: Path = Path("data/re10k")
    """The folder with train/ and test/ (chunks or txt files; frames under frames/<split>/<key>/)."""
    resolution: int = 128
    depth_near: float = 1.0
    depth_far: float = 100.0
    target_window: int = 45
    """Targets are sampled within this many frames of the context view."""
    max_frames: Optional[int] = None
    max_scenes: Optional[int] = None
    cache_dir: Optional[Path] = None


class Re10kDataParser(DataParser):
    config: Re10kDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        c = self.config
        records, report = load_re10k_split(
            c.data, "train" if split == "train" else "test",
            Re10kSettings(resolution=c.resolution, depth_near=c.depth_near, depth_far=c.depth_far, max_frames=c.max_frames),
            cache_root=c.cache_dir, max_scenes=c.max_scenes,
        )
        return scene_outputs(records, report, target_window=c.target_window)


@dataclass
class NerfstudioScenesDataParserConfig(DataParserConfig):
    """Your own captures: folders in nerfstudio's format (transforms.json + images, from ns-process-data or
    instant-ngp), one object per capture (data/nerfstudio_scenes.py)."""

    _target: Type = field(default_factory=lambda: NerfstudioScenesDataParser)
    data: Path = Path("data/captures")
    """One capture (transforms.json at its root: one scene, used for training and evaluation), a folder of captures
    (<scene>/transforms.json), or a folder with train/<scene>/ and test/<scene>/."""
    resolution: Optional[int] = None
    """Side of the square images after cropping around the principal point; None: the model's input size."""
    camera_distance: float = 2.0
    """Each capture is scaled so that its cameras are on average this far from the point they look at."""
    test_every: int = 10
    """In a folder of captures (sorted by name) every this-many-th is a test scene, and at least one is."""
    input_frame: int = 0
    """The frame put first in every scene, the input of the evaluation (an index in file-name order, counting only
    the frames that are used)."""
    max_scenes: Optional[int] = None
    """Use at most this many captures per split (quick experiments)."""
    cache_dir: Optional[Path] = None
    """Where preprocessed tensors are cached (default: $SPLATDIFF_CACHE or ~/.cache/nerfstudio-splatdiff)."""


DEFAULT_RESOLUTION = 128
"""The nerfstudio-scenes resolution when neither the flag nor a model sets it (the paper's)."""


class NerfstudioScenesDataParser(DataParser):
    config: NerfstudioScenesDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        c = self.config
        settings = NerfstudioScenesSettings(
            resolution=c.resolution or DEFAULT_RESOLUTION, camera_distance=c.camera_distance, input_frame=c.input_frame
        )
        which = "train" if split == "train" else "test"
        records, report = load_nerfstudio_split(
            c.data, which, settings, cache_root=c.cache_dir, test_every=c.test_every, max_scenes=c.max_scenes
        )
        if which == "test":
            CONSOLE.print(f"Evaluation frames (view 0 is the input, every other frame a target):\n"
                          f"{describe_eval_frames(records)}", soft_wrap=True)
        return scene_outputs(records, report)


co3d_dataparser = DataParserSpecification(
    config=Co3dDataParserConfig(), description="CO3D v2 categories, and splatdiff's procedural data (same format)"
)
re10k_dataparser = DataParserSpecification(
    config=Re10kDataParserConfig(), description="RealEstate10K (pixelSplat chunks or camera txt files + frames)"
)
nerfstudio_scenes_dataparser = DataParserSpecification(
    config=NerfstudioScenesDataParserConfig(),
    description="Folders of nerfstudio-format captures (transforms.json + images: ns-process-data, instant-ngp)",
)
