"""What every splatdiff nerfstudio model shares: input-size checks, rendering scenes into their views, and the
viewer (a dropdown of evaluation scenes whose Gaussians render live from the viewer's camera)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Dict, Literal, Optional, Tuple

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.viewer.viewer_elements import ViewerDropdown
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from nerfstudio_splatdiff.data.cameras import invert_rigid, opengl_c2w_to_opencv_c2w
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats import Gaussians, render_gaussians

# The viewer's world: the input camera's frame turned from OpenCV (y down, z forward) to OpenGL (y up, z back),
# so the input view opens upright. The same matrix converts back.
VIEWER_FROM_SCENE = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))

RunKind = Literal["var", "regression", "diffusion"]
"""What a splatdiff run is: a VAR and the regression baseline reconstruct (one deterministic answer per input); a
diffusion run samples (a different complete scene per seed) and decodes through a frozen VAR."""


@dataclass
class SceneModelConfig(ModelConfig):
    """Base of the splatdiff model configs: what every command asks a run instead of inspecting its fields. (No
    fields of its own: a run's config.yml names only the concrete class.)"""

    @property
    def run_kind(self) -> RunKind:
        """'var', 'regression' or 'diffusion'."""
        raise NotImplementedError

    @property
    def is_generative(self) -> bool:
        """Whether `generate` gives different samples (diffusion) rather than one reconstruction repeated."""
        return self.run_kind == "diffusion"

    @property
    def needs_frozen_var(self) -> bool:
        """Whether the model loads a trained VAR run when it is built (`var_checkpoint`)."""
        return False

    @property
    def trained_module(self) -> str:
        """Name of the submodule training updates (and a slim copy stores the EMA weights as)."""
        return "net"


def splatdiff_model_config(run: Any, config_path: Any, command: str = "this command", hint: str = "") -> SceneModelConfig:
    """The model config of a loaded config.yml, or one clear error naming `command` (and ending with `hint`) when it
    is not a splatdiff run (e.g. splatfacto, or a YAML file that is not a run config at all)."""
    model_cfg = getattr(getattr(run, "pipeline", None), "model", None)  # a foreign file may have neither
    if not isinstance(model_cfg, SceneModelConfig):
        name = getattr(run, "method_name", type(run).__name__)
        raise SplatdiffError(f"{config_path} is a {name!r} run, not a splatdiff run: {command} takes a "
                             f"splatdiff-diffusion, splatdiff-var or splatdiff-regression run.{hint}")  # fmt: skip
    return model_cfg


class SceneModel(Model):
    """Base for models that turn the source view of a scene batch into Gaussians (subclasses: `reconstruct`,
    `evaluate_scene`, `viewer_gaussians`). Config needs `image_size`, `background_color`, `bf16`."""

    def setup_trained_network(self, name: str, decay: float) -> None:
        """Name the submodule this model trains and, if decay > 0, keep an EMA copy of it (saved in checkpoints).
        (A name, not a second reference: that would register the module twice in the state dict.)"""
        self._trained_name = name
        net = self.trained_net
        self.ema: Optional[AveragedModel] = None
        if decay > 0:
            self.ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
            self.ema.requires_grad_(False)
        self.step = 0

    @property
    def trained_net(self) -> nn.Module:
        return getattr(self, self._trained_name)

    def averaged(self) -> nn.Module:
        """The EMA network once it has been updated, else the trained one (for evaluation and the viewer)."""
        return self.ema.module if self.ema is not None and self.ema.n_averaged > 0 else self.trained_net

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> list[TrainingCallback]:
        def after_step(step: int) -> None:
            self.step = step
            if self.ema is not None:
                self.ema.update_parameters(self.trained_net)
                self._viewer_cache.clear()

        return [TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], after_step)]

    def setup_viewer_scenes(self) -> None:
        self.scene_provider: Optional[Callable[[int], Tuple[Cameras, Dict[str, Tensor]]]] = None
        self._viewer_cache: Dict[Any, Gaussians] = {}
        names = list(self.kwargs.get("metadata", {}).get("eval_scene_names", [])) or ["(no eval scenes)"]
        self._scene_names = names
        self.viewer_scene = ViewerDropdown("Eval scene", names[0], names, cb_hook=lambda _: self._viewer_cache.clear())

    def autocast(self, device: torch.device):
        if self.config.bf16 and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def check_image_size(self, images: Tensor) -> None:
        H, W = images.shape[-3:-1]
        if (H, W) != (self.config.image_size, self.config.image_size):
            raise SplatdiffError(
                f"This model takes {self.config.image_size}x{self.config.image_size} images but got {W}x{H}: set the "
                f"data resolution to {self.config.image_size} (--pipeline.datamanager.dataparser.resolution) or use the "
                "preset made for this size."
            )

    def render_views(self, gaussians: Gaussians, c2w: Tensor, K: Tensor, size: int) -> dict:
        """Render scenes [B] into their views c2w [B, V, 4, 4] (OpenCV camera-to-world)."""
        bg = torch.tensor(self.config.background_color, device=c2w.device)
        out = render_gaussians(gaussians, invert_rigid(c2w.float()), K.float(), size, size, background=bg)
        return {"rgb": out.rgb, "accumulation": out.alpha, "depth": out.depth}

    def viewer_batch(self) -> Optional[Dict[str, Tensor]]:
        """The evaluation scene chosen in the viewer's dropdown, or None."""
        if self.scene_provider is None or self.viewer_scene.value not in self._scene_names:
            return None
        return self.scene_provider(self._scene_names.index(self.viewer_scene.value))[1]

    def cached_viewer_gaussians(self, knobs: Tuple, make: Callable[[Dict[str, Tensor]], Gaussians]) -> Optional[Gaussians]:
        """Gaussians `make(batch)` of the scene chosen in the viewer's dropdown for these knob values, made once and
        kept until the scene, a knob or the weights change (one entry: the viewer shows one scene); None if no scene."""
        batch = self.viewer_batch()
        if batch is None:
            return None
        key = (self.viewer_scene.value, *knobs)
        if key not in self._viewer_cache:
            self._viewer_cache = {key: make(batch)}
        return self._viewer_cache[key]

    def generate(self, batch: Dict[str, Tensor], num_samples: int = 1, guidance_weight: Optional[float] = None,
                 skip_weight: Optional[float] = None, seed: Optional[int] = None) -> Gaussians:  # fmt: skip
        """`num_samples` complete scenes [N, ...] for the source view of a batch of ONE scene: different samples for a
        generative model, its one reconstruction repeated for a deterministic one. Every CLI asks this."""
        raise NotImplementedError

    def viewer_gaussians(self) -> Optional[Gaussians]:
        raise NotImplementedError

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None) -> Dict[str, Tensor]:
        """Render the chosen scene from a viewer camera: rgb [H, W, 3], accumulation and depth [H, W, 1]."""
        gaussians = self.viewer_gaussians()
        camera = camera.to(self.device)
        W, H = int(camera.width.reshape(-1)[0]), int(camera.height.reshape(-1)[0])
        if gaussians is None:
            blank = torch.zeros(H, W, 1, device=self.device)
            return {"rgb": blank.expand(H, W, 3), "accumulation": blank, "depth": blank}
        c2w_gl = torch.cat([camera.camera_to_worlds.reshape(-1, 3, 4)[0], torch.tensor([[0.0, 0, 0, 1]], device=self.device)])
        c2w = opengl_c2w_to_opencv_c2w(VIEWER_FROM_SCENE.to(self.device) @ c2w_gl)
        f = lambda t: float(t.reshape(-1)[0])  # noqa: E731
        K = torch.tensor([[f(camera.fx), 0.0, f(camera.cx)], [0.0, f(camera.fy), f(camera.cy)], [0.0, 0.0, 1.0]], device=self.device)
        bg = torch.tensor(self.config.background_color, device=self.device)
        out = render_gaussians(gaussians, invert_rigid(c2w)[None, None], K[None, None], W, H, background=bg)
        return {"rgb": out.rgb[0, 0], "accumulation": out.alpha[0, 0], "depth": out.depth[0, 0]}
