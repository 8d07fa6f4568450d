"""nerfstudio pipeline for multi-scene feed-forward models: batches of scenes in, Splatter-Image protocol out.

nerfstudio's VanillaPipeline feeds rays or one camera to the model; ours feeds (cameras, batch) of whole scenes,
evaluates each test scene with frame 0 as the input, and writes per-scene renders for ns-eval.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Type

import numpy as np
import torch
from nerfstudio.pipelines.base_pipeline import Pipeline, VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import comms
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel as DDP

from nerfstudio_splatdiff.data.datamanager import MultiSceneDataManagerConfig
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.diffusion import DiffusionModelConfig
from nerfstudio_splatdiff.models.losses import lpips_backbone_file
from nerfstudio_splatdiff.models.reconstructor import ReconstructorModelConfig
from nerfstudio_splatdiff.models.scene_model import resolution_hint
from nerfstudio_splatdiff.runs import load_model_state
from nerfstudio_splatdiff.splats.images import contact_sheet, save_png


def ddp_wrap(model: torch.nn.Module, device: torch.device) -> DDP:
    """The model in DistributedDataParallel, which averages its gradients over all processes in backward (the
    process group must be initialised): on a GPU, the one this process trains on; on CPU (gloo), device_ids=None.
    DDP copies rank 0's parameters and buffers (the EMA copy included) to every rank here, so all ranks start from
    the same weights although each process seeds its random generator with its own rank."""
    device_ids = [device.index] if device.type == "cuda" and device.index is not None else None
    ddp = DDP(model, device_ids=device_ids, find_unused_parameters=True)
    comms.synchronize()
    return ddp


@dataclass
class SplatdiffPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: SplatdiffPipeline)
    datamanager: MultiSceneDataManagerConfig = field(default_factory=MultiSceneDataManagerConfig)
    model: ReconstructorModelConfig = field(default_factory=ReconstructorModelConfig)
    eval_render_views: int = 4
    """Target views per scene written to the ns-eval render folder."""

    def __post_init__(self) -> None:
        """The data must come at the model's input size: a mismatch is refused when the flags are parsed, before
        the data is preprocessed."""
        resolution = getattr(self.datamanager.dataparser, "resolution", None)
        if isinstance(resolution, int) and resolution != self.model.image_size:
            raise SplatdiffError(
                f"The data resolution {resolution} is not the model's input size {self.model.image_size}: "
                f"{resolution_hint(self.model.image_size, resolution)}"
            )


class SplatdiffPipeline(VanillaPipeline):
    config: SplatdiffPipelineConfig

    def __init__(
        self, config: SplatdiffPipelineConfig, device, test_mode="val", world_size=1, local_rank=0, grad_scaler=None
    ):
        # VanillaPipeline.__init__ (nerfstudio 1.1.5) without its point-cloud seeding, which our data never has, and
        # with a DDP wrapping that also works on CPU: nerfstudio's passes device_ids=[local_rank] (one GPU per
        # process), which DDP refuses for a CPU module.
        Pipeline.__init__(self)
        self.config, self.test_mode, self.world_size = config, test_mode, world_size
        parser = config.datamanager.dataparser
        if hasattr(parser, "resolution") and parser.resolution is None:  # nerfstudio-scenes: the model's input size
            parser.resolution = config.model.image_size
        self.datamanager = config.datamanager.setup(
            device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank
        )
        self.datamanager.to(device)
        self._model = config.model.setup(
            scene_box=self.datamanager.train_dataset.scene_box,
            num_train_data=len(self.datamanager.train_dataset),
            metadata=self.datamanager.train_dataset.metadata,
            device=device,
            grad_scaler=grad_scaler,
        )
        self.model.to(device)
        if world_size > 1:
            self._model = ddp_wrap(self._model, torch.device(device))
        dm = self.datamanager
        self.model.check_image_size(torch.zeros(1, 1, dm.resolution, dm.resolution, 3))
        fixed = dm.fixed_indices_eval_dataloader if hasattr(dm, "fixed_indices_eval_dataloader") else None
        if fixed is not None:
            self.model.scene_provider = fixed.get

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int) -> None:
        """nerfstudio's strict load, except for slim inference-only checkpoints (see runs.py), which may lack
        exactly the EMA copy and the frozen VAR."""
        self.model.update_to_step(step)
        load_model_state(self.model, loaded_state)

    def get_train_loss_dict(self, step: int):
        cameras, batch = self.datamanager.next_train(step)
        outputs = self._model(cameras, batch)  # the DDP-wrapped model when world_size > 1
        metrics = self.model.get_metrics_dict(outputs, batch)
        return outputs, self.model.get_loss_dict(outputs, batch, metrics), metrics

    @torch.no_grad()
    def get_eval_loss_dict(self, step: int):
        self.eval()
        cameras, batch = self.datamanager.next_eval(step)
        outputs = self.model(cameras, batch)
        metrics = self.model.get_metrics_dict(outputs, batch)
        loss_dict = self.model.get_loss_dict(outputs, batch, metrics)
        self.train()
        return outputs, loss_dict, metrics

    @torch.no_grad()
    def get_eval_image_metrics_and_images(self, step: int):
        self.eval()
        cameras, batch = self.datamanager.next_eval_image(step)
        metrics, images = self.model.get_image_metrics_and_images(None, batch)
        metrics["num_rays"] = int(batch["images"][0, ..., 0].numel())  # pixels rendered (nerfstudio logs rays/s)
        self.train()
        return metrics, images

    @torch.no_grad()
    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ):
        """Every test scene once: mean (and std) of the per-scene metrics, plus `num_scenes`; renders to
        `output_path` (input | targets, predictions below ground truth) when given."""
        self.eval()
        per_scene: Dict[str, list] = defaultdict(list)
        loader = self.datamanager.fixed_indices_eval_dataloader
        if output_path is not None:
            output_path.mkdir(parents=True, exist_ok=True)
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("evaluating scenes", total=len(loader))
            for index, (_, batch) in enumerate(loader):
                metrics, images = self.model.evaluate_scene(batch)
                for k, v in metrics.items():
                    per_scene[k].append(v)
                if output_path is not None:
                    self._write_renders(output_path, index, images)
                progress.advance(task)
        out: Dict[str, float] = {"num_scenes": float(len(loader))}
        for k, vals in per_scene.items():
            arr = np.asarray(vals, dtype=np.float64)
            out[k] = float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")
            if get_std:
                out[f"{k}_std"] = float(np.nanstd(arr)) if np.isfinite(arr).any() else float("nan")
        if "lpips" not in out:
            out["lpips_note"] = f"LPIPS not computed: its backbone weights are not at {lpips_backbone_file('vgg')}"  # type: ignore[assignment]
        self.train()
        return out

    def _write_renders(self, folder: Path, index: int, images: Dict[str, torch.Tensor]) -> None:
        n = min(self.config.eval_render_views, images["pred"].shape[0] - 1)
        views = torch.linspace(1, images["pred"].shape[0] - 1, n).round().long().tolist() if n > 0 else []
        gt = images["gt"]
        sheet = contact_sheet([[gt[0]] + [images["pred"][v] for v in views], [gt[0]] + [gt[v] for v in views]])
        save_png(folder / f"scene_{index:04d}.png", sheet)
        (folder / f"scene_{index:04d}.json").write_text(json.dumps({"target_views": views}))


@dataclass
class DiffusionPipelineConfig(SplatdiffPipelineConfig):
    """The same pipeline with the latent diffusion model (so `--pipeline.model.*` parses its options)."""

    _target: Type = field(default_factory=lambda: SplatdiffPipeline)
    model: DiffusionModelConfig = field(default_factory=DiffusionModelConfig)
