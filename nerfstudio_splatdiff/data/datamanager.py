"""Multi-scene DataManager for nerfstudio: batches of B scenes, each a source view plus V target views.

nerfstudio's own DataManagers serve rays or images of ONE scene; a feed-forward model needs whole scenes.
`next_train` returns (Cameras [B, V+1], batch) where the batch holds images [B, V+1, H, W, 3], OpenCV
camera-to-world `c2w` [B, V+1, 4, 4] relative to the source view (view 0), pixel intrinsics `K`, the per-scene
splatter depth range, and masks when the data has them. Train scenes are sharded by DDP rank, so
`--machine.num-devices` works; evaluation follows Splatter Image's protocol in a fixed order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, Literal, Optional, Tuple, Type, Union

import torch
import torch.distributed as dist
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion
from nerfstudio.data.datamanagers.base_datamanager import DataManager, DataManagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torch.nn import Parameter
from torch.utils.data import DataLoader, RandomSampler

from nerfstudio_splatdiff.data.dataparsers import Co3dDataParserConfig
from nerfstudio_splatdiff.data.device_scenes import DeviceScenes, resident_bytes, why_not_resident
from nerfstudio_splatdiff.data.multiscene import EvalScenesDataset, SceneViewsDataset, ViewOptions
from nerfstudio_splatdiff.data.scene import SceneRecord
from nerfstudio_splatdiff.errors import SplatdiffError, check_option, is_number_in
from nerfstudio_splatdiff.splats.cameras import nerfstudio_cameras


@dataclass
class MultiSceneDataManagerConfig(DataManagerConfig):
    _target: Type = field(default_factory=lambda: MultiSceneDataManager)
    dataparser: AnnotatedDataParserUnion = field(default_factory=Co3dDataParserConfig)
    scenes_per_batch: int = 8
    """B: scenes per training batch (per device)."""
    num_target_views: int = 3
    """V: target views per scene besides the source (the source is supervised too)."""
    target_window: Optional[int] = None
    """Draw targets within this many frames of the source; None uses the dataparser's suggestion (RealEstate10K)
    or the whole sequence."""
    depth_range: Tuple[float, float] = (-1.0, 1.0)
    """Object scenes: splatter depth range around the object centre's z in the source camera."""
    background_color: Optional[Tuple[float, float, float]] = None
    """Composite images onto this colour with the masks (e.g. 0 0 0 for black); None keeps full images."""
    color_jitter: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """Brightness, contrast, saturation, hue; the same draw is applied to all views of a scene."""
    num_workers: int = 2
    pin_memory: bool = True
    """Pin host memory when training on CUDA."""
    eval_max_scenes: Optional[int] = None
    """Evaluate on at most this many test scenes (None: all)."""
    eval_max_targets: Optional[int] = None
    """At most this many target views per evaluation scene (evenly spaced; None: every frame)."""
    eval_depths: bool = True
    """Load depth maps with evaluation scenes (visible / occluded split) when the data has them."""
    source_window: Optional[int] = None
    """Training sources within this many frames of frame 0 (the proving ground: the view that defines the hidden
    side); None draws any frame, as Splatter Image does."""
    hidden_target: bool = False
    """Every training item's first target shows the side hidden from frame 0 (the proving ground)."""
    scene_kind: Optional[str] = None
    """The kind of procedural scene this model needs (`object` for the proving ground); other data is refused at
    start-up. None accepts any data."""
    device_scenes: Literal["auto", "on", "off"] = "auto"
    """Keep every training frame on the training device and assemble batches there (data/device_scenes.py: no
    worker processes, no per-step image copies). "auto": on CUDA when the frames fit in `device_scenes_max_gb` and
    colour jitter is off; "on": always (an error when it cannot); "off": the DataLoader with `num_workers`."""
    device_scenes_max_gb: float = 4.0
    """Most device memory (GB) the resident training frames may take ("auto" and "on")."""

    def __post_init__(self) -> None:
        """Options that cannot work are refused when the flags are parsed (errors.check_option)."""
        flag = "--pipeline.datamanager"
        check_option(
            is_number_in(self.scenes_per_batch, 1),
            f"{flag}.scenes-per-batch",
            self.scenes_per_batch,
            "at least 1 (scenes per training batch on each device)",
        )
        check_option(
            is_number_in(self.num_target_views, 1),
            f"{flag}.num-target-views",
            self.num_target_views,
            "at least 1 (views rendered and supervised besides the source)",
        )
        check_option(is_number_in(self.num_workers, 0), f"{flag}.num-workers", self.num_workers, "0 or more")
        for name in ("target_window", "source_window", "eval_max_scenes", "eval_max_targets"):
            value = getattr(self, name)
            check_option(
                value is None or is_number_in(value, 0 if "window" in name else 1),
                f"{flag}.{name.replace('_', '-')}",
                value,
                f"None or a whole number of at least {0 if 'window' in name else 1}",
            )
        check_option(
            all(is_number_in(a, 0) for a in self.color_jitter),
            f"{flag}.color-jitter",
            " ".join(map(str, self.color_jitter)),
            "four amounts of 0 or more",
        )
        check_option(
            is_number_in(self.device_scenes_max_gb, 0),
            f"{flag}.device-scenes-max-gb",
            self.device_scenes_max_gb,
            "a number of gigabytes, 0 or more",
        )


def check_target_views(num_target_views: int, frame_counts: list[int]) -> None:
    """Refuse more target views than the largest training scene has frames (`frame_counts`: of every scene): every
    item would repeat frames, and each view is rendered and back-propagated (1000 views of 8-frame scenes grew past
    22 GB before the first step)."""
    most = max(frame_counts, default=0)
    if num_target_views > most:
        raise SplatdiffError(
            f"--pipeline.datamanager.num-target-views {num_target_views} is more than the {most} frames of the "
            f"largest training scene: every item would repeat frames and render {num_target_views + 1} views per "
            f"scene (memory grows with each); pass at most {most}."
        )


def check_scene_kind(scenes: list[SceneRecord], wanted: Optional[str], data: Path) -> None:
    """Refuse data of another kind than the run needs, with the command that makes the right data."""
    if wanted is None:
        return
    found = sorted(
        {str(r.meta.get("scene_kind", "full" if "generator" in r.meta else "not procedural")) for r in scenes}
    )
    if found != [wanted]:
        raise SplatdiffError(
            f"This run needs procedural scenes of kind '{wanted}' but {data} holds {', '.join(found)} scenes: make "
            f"them with `splatdiff-make-procedural --kind {wanted} --output DIR` and pass --data DIR (or, to train "
            "on other data anyway, pass --pipeline.datamanager.scene-kind None)."
        )


def _to_device(batch: Dict[str, Tensor], device: Union[str, torch.device]) -> Dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


class FrustumDataset:
    """What nerfstudio's Trainer and viewer need of a `train_dataset`: up to 512 frames with cameras and images."""

    def __init__(self, outputs: DataparserOutputs) -> None:
        self.scenes: list[SceneRecord] = outputs.metadata["scenes"]
        self.pairs: list[tuple[int, int]] = outputs.metadata["frustum_frames"]
        self.cameras = outputs.cameras
        self.scene_box = outputs.scene_box
        self.metadata: dict = {}
        self._dataparser_outputs = outputs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int) -> Dict[str, Union[int, Tensor]]:
        s, f = self.pairs[idx]
        image = self.scenes[s].load([f])["images"][0].float() / 255.0
        return {"image_idx": idx, "image": image}


class FixedEvalScenes:
    """ns-eval's `fixed_indices_eval_dataloader`: every evaluation scene once, in a fixed order, as
    (Cameras [1, F], batch) with view 0 the input and views 1.. the targets."""

    def __init__(self, dataset: EvalScenesDataset, device: Union[str, torch.device]) -> None:
        self.dataset, self.device = dataset, device

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[Tuple[Cameras, Dict[str, Tensor]]]:
        for i in range(len(self.dataset)):
            yield self.get(i)

    def get(self, index: int) -> Tuple[Cameras, Dict[str, Tensor]]:
        """Scene `index` as a batch of one: Cameras [1, F] and tensors [1, F, ...]."""
        item = {k: v[None] for k, v in self.dataset[index].items()}
        res = self.dataset.scenes[index].resolution
        return nerfstudio_cameras(item["c2w"], item["K"], res, res).to(self.device), _to_device(item, self.device)


class MultiSceneDataManager(DataManager):
    """Serves batches of scenes to a feed-forward model (see module docstring)."""

    config: MultiSceneDataManagerConfig

    def __init__(
        self,
        config: MultiSceneDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ) -> None:
        self.config = config
        self.device = device
        self.test_mode = test_mode
        self.world_size, self.local_rank = world_size, local_rank
        if config.data is not None:
            config.dataparser.data = Path(config.data)
        else:
            config.data = config.dataparser.data
        self.dataparser = config.dataparser.setup()
        self.includes_time = False
        self.train_dataparser_outputs = self.dataparser.get_dataparser_outputs(split="train")
        self.eval_dataparser_outputs = self.dataparser.get_dataparser_outputs(split="test")
        all_train: list[SceneRecord] = self.train_dataparser_outputs.metadata["scenes"]
        if len(all_train) < world_size:
            raise SplatdiffError(
                f"{len(all_train)} training scene(s) cannot be shared by {world_size} devices; use more scenes or "
                "fewer devices."
            )
        # DDP: rank r of k takes scenes r, r+k, r+2k, ... The rank is the global one (nerfstudio hands us the rank
        # on this machine, the same on every machine of a several-machine run).
        self.rank = dist.get_rank() if world_size > 1 and dist.is_initialized() else local_rank
        self.train_scenes = all_train[self.rank :: world_size]
        self._draw_counts: Optional[Tensor] = None
        """Draws per training scene, tallied where the batches are (see `train_draws`)."""
        self.eval_scenes: list[SceneRecord] = self.eval_dataparser_outputs.metadata["scenes"][: config.eval_max_scenes]
        check_scene_kind(all_train + self.eval_scenes, config.scene_kind, self.get_datapath())
        if test_mode == "val":  # training
            check_target_views(config.num_target_views, [r.num_frames for r in all_train])
        resolutions = {r.resolution for r in all_train + self.eval_scenes}
        if len(resolutions) != 1:
            raise SplatdiffError(f"All scenes must share one resolution; found {sorted(resolutions)}.")
        self.resolution = resolutions.pop()
        window = config.target_window
        if window is None:
            window = self.train_dataparser_outputs.metadata.get("target_window")
        self.view_options = ViewOptions(
            num_target_views=config.num_target_views,
            target_window=window,
            depth_range=tuple(config.depth_range),
            background_color=config.background_color,
            color_jitter=tuple(config.color_jitter),
            source_window=config.source_window,
            hidden_target=config.hidden_target,
        )
        eval_options = ViewOptions(
            **{**vars(self.view_options), "color_jitter": (0.0, 0.0, 0.0, 0.0), "with_depths": config.eval_depths}
        )
        self.train_scene_dataset = SceneViewsDataset(self.train_scenes, self.view_options)
        self.eval_scene_dataset = SceneViewsDataset(self.eval_scenes, eval_options)
        self.eval_fixed_dataset = EvalScenesDataset(self.eval_scenes, eval_options, config.eval_max_targets)
        self.device_scenes = self._resident_scenes()
        self.train_dataset = FrustumDataset(self.train_dataparser_outputs)
        self.eval_dataset = FrustumDataset(self.eval_dataparser_outputs)
        # Handed to the model by nerfstudio's pipeline: the viewer lists the evaluation scenes by name.
        self.train_dataset.metadata["eval_scene_names"] = [r.name for r in self.eval_scenes]
        super().__init__()

    # -- loaders ----------------------------------------------------------------------------------------------
    def _resident_scenes(self) -> Optional[DeviceScenes]:
        """The training scenes on the device when `device_scenes` asks for it and they qualify, else None."""
        mode = self.config.device_scenes
        if mode == "off" or (mode == "auto" and torch.device(self.device).type != "cuda"):
            return None
        reason = why_not_resident(self.train_scenes, self.view_options, self.config.device_scenes_max_gb * 1e9)
        if reason is not None:
            if mode == "on":
                raise SplatdiffError(
                    f"The training scenes cannot stay on the device (--pipeline.datamanager.device-scenes on): "
                    f"{reason}; pass --pipeline.datamanager.device-scenes auto or off."
                )
            CONSOLE.print(f"Training scenes stay on the host ({reason}).")
            return None
        gb = resident_bytes(self.train_scenes) / 1e9
        CONSOLE.print(f"Loading {len(self.train_scenes)} training scenes onto {self.device} ({gb:.2f} GB)...")
        return DeviceScenes(self.train_scenes, self.view_options, self.device)

    def _resident_batches(self, batch_size: int) -> Iterator[Dict[str, Tensor]]:
        """Endless batches assembled on the device: scenes drawn with replacement, views as the dataset draws them."""
        assert self.device_scenes is not None
        while True:
            g = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
            scenes = torch.randint(len(self.train_scenes), (batch_size,), generator=g).tolist()
            frames = [self.train_scene_dataset.draw_frames(s, g) for s in scenes]
            yield self.device_scenes.batch(scenes, frames)

    def _loader(self, dataset: SceneViewsDataset, batch_size: int) -> Iterator[Dict[str, Tensor]]:
        """An endless stream of batches: scenes drawn with replacement, so nothing is sized by the data."""
        sampler = RandomSampler(dataset, replacement=True, num_samples=10**9)
        cuda = torch.device(self.device).type == "cuda"
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.config.num_workers,
            pin_memory=self.config.pin_memory and cuda,
            persistent_workers=self.config.num_workers > 0,
            drop_last=True,
        )
        return iter(loader)

    def setup_train(self) -> None:
        if self.device_scenes is not None:
            self._train_iter = self._resident_batches(self.config.scenes_per_batch)
        else:
            self._train_iter = self._loader(self.train_scene_dataset, self.config.scenes_per_batch)

    def setup_eval(self) -> None:
        self._eval_iter = self._loader(
            self.eval_scene_dataset, min(self.config.scenes_per_batch, len(self.eval_scenes))
        )
        self.fixed_indices_eval_dataloader = FixedEvalScenes(self.eval_fixed_dataset, self.device)

    def _next(self, it: Iterator[Dict[str, Tensor]]) -> Tuple[Cameras, Dict[str, Tensor]]:
        batch = _to_device(next(it), self.device)
        return nerfstudio_cameras(batch["c2w"], batch["K"], self.resolution, self.resolution), batch

    def next_train(self, step: int) -> Tuple[Cameras, Dict[str, Tensor]]:
        self.train_count += 1
        cameras, batch = self._next(self._train_iter)
        index = batch["scene_index"].reshape(-1)
        if self._draw_counts is None:
            self._draw_counts = torch.zeros(len(self.train_scenes), dtype=torch.long, device=index.device)
        self._draw_counts = self._draw_counts.to(index.device)
        self._draw_counts.index_add_(0, index, torch.ones_like(index))
        return cameras, batch

    @property
    def train_draws(self) -> Counter[str]:
        """How often each of this rank's training scenes has been drawn (the distributed run record lists them).
        Tallied on the batches' device and read only here: reading a device tensor at every step would make the
        host wait for all queued GPU work before it could queue the next step."""
        draws: Counter[str] = Counter()
        counts = self._draw_counts.tolist() if self._draw_counts is not None else []
        for scene, n in zip(self.train_scenes, counts):
            if n:
                draws[scene.name] += n
        return draws

    def next_eval(self, step: int) -> Tuple[Cameras, Dict[str, Tensor]]:
        self.eval_count += 1
        return self._next(self._eval_iter)

    def next_eval_image(self, step: int) -> Tuple[Cameras, Dict[str, Tensor]]:
        """One evaluation scene under the fixed protocol, cycling through them."""
        self.eval_count += 1
        return self.fixed_indices_eval_dataloader.get(step % len(self.eval_fixed_dataset))

    def get_train_rays_per_batch(self) -> int:
        return self.config.scenes_per_batch * (self.config.num_target_views + 1) * self.resolution**2

    def get_eval_rays_per_batch(self) -> int:
        return self.get_train_rays_per_batch()

    def get_datapath(self) -> Path:
        return Path(self.config.dataparser.data)

    def get_param_groups(self) -> Dict[str, list[Parameter]]:
        return {}
