"""What every splatdiff nerfstudio model shares: input-size checks, rendering scenes into their views, and the
viewer (a dropdown of evaluation scenes whose Gaussians render live from the viewer's camera, which opens looking
through the chosen scene's input camera, with that scene's input and target cameras drawn as frusta)."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import viser.transforms as vtf
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerDropdown
from torch import Tensor, nn

from nerfstudio_splatdiff.errors import SplatdiffError, check_option, is_number_in
from nerfstudio_splatdiff.models.ema import StepEMA
from nerfstudio_splatdiff.models.run_kind import RunKind  # noqa: F401 (re-exported for the models)
from nerfstudio_splatdiff.splats import Gaussians, render_gaussians
from nerfstudio_splatdiff.splats.cameras import invert_rigid, opengl_c2w_to_opencv_c2w

# The viewer's world: the input camera's frame turned from OpenCV (y down, z forward) to OpenGL (y up, z back),
# so the input view opens upright. The same matrix converts back.
VIEWER_FROM_SCENE = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
MAX_VIEWER_TARGET_FRUSTA = 128
"""Target cameras drawn for the chosen scene (evenly spaced when it has more): enough to show the orbit or path."""
INPUT_FRUSTUM_COLOR = (255, 211, 105)  # the viewer's brand colour: the camera the scene was reconstructed from
TARGET_FRUSTUM_COLOR = (120, 160, 255)


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


def splatdiff_model_config(
    run: Any, config_path: Any, command: str = "this command", hint: str = ""
) -> SceneModelConfig:
    """The model config of a loaded config.yml, or one clear error naming `command` (and ending with `hint`) when it
    is not a splatdiff run (e.g. splatfacto, or a YAML file that is not a run config at all)."""
    model_cfg = getattr(getattr(run, "pipeline", None), "model", None)  # a foreign file may have neither
    if not isinstance(model_cfg, SceneModelConfig):
        name = getattr(run, "method_name", type(run).__name__)
        raise SplatdiffError(
            f"{config_path} is a {name!r} run, not a splatdiff run: {command} takes a "
            f"splatdiff-diffusion, splatdiff-var or splatdiff-regression run.{hint}"
        )
    return model_cfg


def resolution_hint(image_size: int, resolution: int) -> str:
    """What to pass when the data resolution is not the model's input size. ns-train takes the dataparser's flags
    after its name (a subcommand), not as --pipeline.datamanager.dataparser.*."""
    return (
        f"set the data resolution to {image_size} with `--resolution {image_size}` after the dataparser's name (e.g. "
        f"`co3d-data --resolution {image_size}`), or the model's input size with --pipeline.model.image-size "
        f"{resolution} (or use the preset made for that size)."
    )


def check_shared_model_options(config: Any) -> None:
    """The options every splatdiff model config has (`--pipeline.model.*`), refused in one line when they cannot
    work: called by the model configs' `__post_init__`, so ns-train refuses them when it parses the flags."""
    flag = "--pipeline.model"
    check_option(is_number_in(config.image_size, 8), f"{flag}.image-size", config.image_size, "at least 8 pixels")
    check_option(
        is_number_in(config.ema_decay, 0, 0.999999999),
        f"{flag}.ema-decay",
        config.ema_decay,
        "a decay in [0, 1) (0 turns the EMA off)",
    )
    check_option(
        len(config.background_color) == 3 and all(is_number_in(c, 0, 1) for c in config.background_color),
        f"{flag}.background-color",
        " ".join(map(str, config.background_color)),
        "three numbers in [0, 1]",
    )


def scene_c2w_from_viewer(c2w_gl: Float[Tensor, "4 4"]) -> Float[Tensor, "4 4"]:
    """A viewer camera (nerfstudio: OpenGL camera-to-world in the viewer's world) as the OpenCV camera-to-world in
    the scene's world (the input camera's frame) that the renderer takes."""
    return opengl_c2w_to_opencv_c2w(VIEWER_FROM_SCENE.to(c2w_gl) @ c2w_gl)


def viewer_look_distance(depth_near: float, depth_far: float) -> float:
    """How far ahead of the input camera the viewer orbits: the middle of the splatter depth range (the object
    centre for object data), but at most two near-plane depths (into a room, whose far plane is far away)."""
    return min((depth_near + depth_far) / 2, 2 * depth_near)


@dataclass(frozen=True)
class ViewerCameraPose:
    """A scene camera in viser's terms (the viewer's world in viser units, i.e. nerfstudio's scale ratio applied):
    where it is, the point straight ahead it orbits, the up direction of its image, its rotation in viser's OpenCV
    convention (as camera frusta take it), vertical field of view (radians) and aspect (width / height)."""

    position: Tuple[float, float, float]
    look_at: Tuple[float, float, float]
    up_direction: Tuple[float, float, float]
    wxyz: Tuple[float, float, float, float]
    fov: float
    aspect: float

    @property
    def forward(self) -> Tuple[float, float, float]:
        """Unit vector along the optical axis (viewer's world)."""
        d = [b - a for a, b in zip(self.position, self.look_at)]
        n = math.sqrt(sum(x * x for x in d))
        return (d[0] / n, d[1] / n, d[2] / n)


FRUSTUM_EDGE_RADIUS = 0.03
"""viser draws a frustum's edges as solid tubes of this radius (times the frustum's scale) that meet at its apex."""


def input_frustum_setback(pose: ViewerCameraPose) -> float:
    """How far (in frustum scales) the input frustum's apex is moved back along the optical axis. A camera exactly at
    a frustum's apex sits inside its edge tubes and sees nothing but them (a screen filled with the frustum's
    colour); set back by this much, the input camera sits inside the pyramid at three tube radii from every edge,
    and the edges, diverging from behind it, stay outside its view."""
    half_height = math.tan(pose.fov / 2)
    narrowest = math.atan(min(half_height, half_height * pose.aspect))
    return 3 * FRUSTUM_EDGE_RADIUS / math.sin(narrowest)


def frustum_points(c2w: Float[Tensor, "4 4"], fov: float, aspect: float, scale: float) -> Float[Tensor, "P 3"]:
    """Points on a camera frustum as viser draws it (world, OpenCV c2w): its apex, edges and image plane. viser
    scales the pyramid of depth 1 and half-height tan(fov / 2) to the volume of a unit cube's third, times `scale`."""
    y = math.tan(fov / 2)
    x, z = y * aspect, 1.0
    norm = (x * y * z / 3) ** (1 / 3)
    x, y, z = x / norm * scale, y / norm * scale, z / norm * scale
    t = torch.linspace(-1, 1, 5)
    plane = torch.stack([a.flatten() for a in torch.meshgrid(t * x, t * y, indexing="ij")] + [torch.full((25,), z)], 1)
    corners = torch.tensor([[sx * x, sy * y, z] for sx in (-1, 1) for sy in (-1, 1)])
    edges = torch.cat([corners * f for f in torch.linspace(0, 1, 9)])  # the lines from the apex to the corners
    local = torch.cat([plane, edges]).to(c2w)
    return local @ c2w[:3, :3].T + c2w[:3, 3]


def covers_view(
    points: Float[Tensor, "P 3"],
    c2w: Float[Tensor, "4 4"],
    K: Float[Tensor, "3 3"],
    width: int,
    height: int,
    max_depth: float,
) -> bool:
    """Whether any of `points` (world) lies inside the image of the camera `c2w` (OpenCV), in front of it and nearer
    than `max_depth` (between the camera and the object it looks at, where it would hide part of the object)."""
    cam = (points - c2w[:3, 3]) @ c2w[:3, :3]
    z = cam[:, 2]
    u = K[0, 0] * cam[:, 0] / z.clamp(min=1e-9) + K[0, 2]
    v = K[1, 1] * cam[:, 1] / z.clamp(min=1e-9) + K[1, 2]
    inside = (u >= 0) & (u <= width) & (v >= 0) & (v <= height)
    return bool(((z > 1e-6) & (z < max_depth) & inside).any())


def viewer_camera_pose(
    c2w: Float[Tensor, "4 4"], K: Float[Tensor, "3 3"], width: int, height: int, look_distance: float, scale: float
) -> ViewerCameraPose:
    """The viewer pose of a scene camera (OpenCV camera-to-world in the scene's world, pixel intrinsics K of a
    width x height image): the inverse of what `get_outputs_for_camera` does with the viewer's camera, so a viewer
    camera set to this pose renders exactly the view of `c2w` (its principal point at the image centre). `scale` is
    nerfstudio's viser scale ratio; `look_distance` (scene units) puts the orbit point straight ahead."""
    c2w_v = VIEWER_FROM_SCENE.double() @ c2w.detach().cpu().double()  # a rotation by 180 deg about x: still rigid
    R, t = c2w_v[:3, :3], c2w_v[:3, 3]
    forward, up = R[:, 2], -R[:, 1]  # OpenCV: the camera looks down +z and its image's up is -y

    def vec(v: Tensor) -> Tuple[float, float, float]:
        return (float(v[0]), float(v[1]), float(v[2]))

    w, x, y, z = (float(q) for q in vtf.SO3.from_matrix(R.numpy()).wxyz)
    return ViewerCameraPose(
        position=vec(t * scale),
        look_at=vec((t + look_distance * forward) * scale),
        up_direction=vec(up),
        wxyz=(w, x, y, z),
        fov=2 * math.atan(height / (2 * float(K[1, 1]))),
        aspect=width / height,
    )


def look_through(client: Any, pose: ViewerCameraPose) -> None:
    """Set a viser client's camera to `pose`. The browser's orbit controls apply each message in turn: the look-at
    point goes first, so the camera never sits on it (viser's first look-at point is the origin, where an input
    camera usually is); viser's own record of the camera drags the look-at point along with the position, so it is
    set again after the position."""
    with client.atomic():
        client.camera.fov = pose.fov
        client.camera.up_direction = pose.up_direction
        client.camera.look_at = pose.look_at
        client.camera.position = pose.position
        client.camera.look_at = pose.look_at


class SceneViewerControl(ViewerControl):
    """What the model does to nerfstudio's viewer: every client's camera looks through the chosen evaluation
    scene's input camera (when it connects and when the scene changes), and the frusta drawn are that scene's input
    and target cameras, not nerfstudio's train-dataset frusta (frames of many scenes, each in its own world, which
    mean nothing in the viewer's world). `scene` gives the chosen scene's batch (or None)."""

    def __init__(self, scene: Callable[[], Optional[Dict[str, Tensor]]]) -> None:
        self._scene = scene
        self._frusta: List[Any] = []
        self._frusta_visible = True
        self._pose: Optional[ViewerCameraPose] = None

    def _setup(self, viewer: Any) -> None:
        """Called by nerfstudio's viewer as it starts (before it draws the train dataset's frusta, which this turns
        off for this viewer only, and before `init_scene`)."""
        super()._setup(viewer)
        if hasattr(viewer, "config"):
            viewer.config = replace(viewer.config, max_num_display_images=0)
        for button, visible in (("hide_images", False), ("show_images", True)):  # "Hide / Show Train Cams"
            if hasattr(viewer, button):
                getattr(viewer, button).on_click(lambda _, v=visible: self._show_frusta(v))
        self.scene_changed()
        self.viser_server.on_client_connect(self._client_connected)

    def _client_connected(self, client: Any) -> None:
        if self._pose is not None:
            look_through(client, self._pose)

    def _show_frusta(self, visible: bool) -> None:
        self._frusta_visible = visible
        for handle in self._frusta:
            handle.visible = visible

    def scene_changed(self) -> None:
        """The chosen scene changed: look through its input camera in every client and draw its cameras."""
        if not hasattr(self, "viser_server"):
            return  # no viewer
        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO  # slow to import: only with a viewer

        batch = self._scene()
        for handle in self._frusta:
            handle.remove()
        self._frusta = []
        self._pose = None
        if batch is None:
            return
        images, c2w, K = batch["images"][0], batch["c2w"][0], batch["K"][0]
        H, W = images.shape[1:3]
        distance = viewer_look_distance(
            float(batch["depth_near"].reshape(-1)[0]), float(batch["depth_far"].reshape(-1)[0])
        )
        poses = [
            viewer_camera_pose(c2w[i], K[i], W, H, distance, VISER_NERFSTUDIO_SCALE_RATIO) for i in range(len(c2w))
        ]
        self._pose = poses[0]
        n = len(poses) - 1
        targets = torch.linspace(1, n, min(n, MAX_VIEWER_TARGET_FRUSTA)).round().long().tolist() if n > 0 else []
        frustum_scale = 0.1 * distance * VISER_NERFSTUDIO_SCALE_RATIO
        # A target camera next to the input one (a dense orbit) would draw its frustum and image between the input
        # camera and the object, over the view the viewer opens with: those are left out.
        scene_scale = frustum_scale / VISER_NERFSTUDIO_SCALE_RATIO
        targets = [
            v
            for v in targets
            if not covers_view(
                frustum_points(c2w[v], poses[v].fov, poses[v].aspect, scene_scale), c2w[0], K[0], W, H, distance
            )
        ]
        thumbs = (images[targets].clamp(0, 1) * 255).to(torch.uint8).cpu().numpy() if targets else None
        setback = input_frustum_setback(poses[0]) * frustum_scale
        input_at = tuple(p - setback * f for p, f in zip(poses[0].position, poses[0].forward))
        with self.viser_server.atomic():
            # The input camera has no image: looking through it, its image plane would cover the render.
            drawn = [("input", poses[0], input_at, INPUT_FRUSTUM_COLOR, None)] + [
                (f"target_{v:03d}", poses[v], poses[v].position, TARGET_FRUSTUM_COLOR, thumbs[j])
                for j, v in enumerate(targets)
            ]
            for name, p, position, color, image in drawn:
                self._frusta.append(
                    self.viser_server.scene.add_camera_frustum(
                        f"/eval_scene_cameras/{name}",
                        fov=p.fov,
                        aspect=p.aspect,
                        scale=frustum_scale,
                        color=color,
                        image=image,
                        wxyz=p.wxyz,
                        position=position,
                        visible=self._frusta_visible,
                    )
                )
            for client in self.viser_server.get_clients().values():
                look_through(client, self._pose)


class SceneModel(Model):
    """Base for models that turn the source view of a scene batch into Gaussians (subclasses: `reconstruct`,
    `evaluate_scene`, `viewer_gaussians`). Config needs `image_size`, `background_color`, `bf16`, `compile_network`."""

    def setup_trained_network(self, name: str, decay: float) -> None:
        """Name the submodule this model trains and, if decay > 0, keep an EMA copy of it (saved in checkpoints).
        (A name, not a second reference: that would register the module twice in the state dict.)"""
        self._trained_name = name
        net = self.trained_net
        self.ema: Optional[StepEMA] = None
        if decay > 0:
            self.ema = StepEMA(net, decay)  # torch's AveragedModel EMA without its per-step device reads
            self.ema.requires_grad_(False)
        self.step = 0

    @property
    def trained_net(self) -> nn.Module:
        return getattr(self, self._trained_name)

    def averaged(self) -> nn.Module:
        """The EMA network once it has been updated, else the trained one (for evaluation and the viewer)."""
        return self.ema.module if self.ema is not None and self.ema.n_averaged > 0 else self.trained_net

    def frozen_parts(self) -> Dict[str, str]:
        """The submodules this model loads from another run when it is built and never trains: state-dict prefix
        (e.g. "var.") -> where they load from. A full checkpoint stores a copy of them, which must be what that
        source holds now (`runs.load_model_state`): else the checkpoint was trained over other weights. None here."""
        return {}

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
        self.viewer_scene = ViewerDropdown("Eval scene", names[0], names, cb_hook=self._viewer_scene_chosen)
        self.viewer_control = SceneViewerControl(self.viewer_batch)

    def _viewer_scene_chosen(self, _: Any = None) -> None:
        """Another scene in the dropdown: its Gaussians are made anew and the view re-centres on its input camera."""
        self._viewer_cache.clear()
        self.viewer_control.scene_changed()

    def compile_on_cuda(self, device: torch.device) -> None:
        """With the config's `compile_network` on, torch.compile the trained network the first time it runs on
        CUDA (`nn.Module.compile`: in place, its parameters and state-dict keys unchanged; the EMA copy stays
        eager)."""
        if self.config.compile_network and device.type == "cuda" and not getattr(self, "_compiled", False):
            self.trained_net.compile()
            self._compiled = True

    def autocast(self, device: torch.device):
        if self.config.bf16 and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def check_image_size(self, images: Tensor) -> None:
        H, W = images.shape[-3:-1]
        if (H, W) != (self.config.image_size, self.config.image_size):
            raise SplatdiffError(
                f"This model takes {self.config.image_size}x{self.config.image_size} images but got {W}x{H}: "
                f"{resolution_hint(self.config.image_size, W)}"
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

    def cached_viewer_gaussians(
        self, knobs: Tuple, make: Callable[[Dict[str, Tensor]], Gaussians]
    ) -> Optional[Gaussians]:
        """Gaussians `make(batch)` of the scene chosen in the viewer's dropdown for these knob values, made once and
        kept until the scene, a knob or the weights change (one entry: the viewer shows one scene); None if no scene."""
        batch = self.viewer_batch()
        if batch is None:
            return None
        key = (self.viewer_scene.value, *knobs)
        if key not in self._viewer_cache:
            self._viewer_cache = {key: make(batch)}
        return self._viewer_cache[key]

    def generate(
        self,
        batch: Dict[str, Tensor],
        num_samples: int = 1,
        guidance_weight: Optional[float] = None,
        skip_weight: Optional[float] = None,
        seed: Optional[int] = None,
        eta: Optional[float] = None,
    ) -> Gaussians:
        """`num_samples` complete scenes [N, ...] for the source view of a batch of ONE scene: different samples for a
        generative model, its one reconstruction repeated for a deterministic one. Every CLI asks this. The knobs
        (guidance, skip weight, seed, DDIM eta) default to the run's; a deterministic model ignores those that do not
        apply to it."""
        raise NotImplementedError

    def viewer_gaussians(self) -> Optional[Gaussians]:
        raise NotImplementedError

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None) -> Dict[str, Tensor]:
        """Render the chosen scene from a viewer camera: rgb [H, W, 3] in [0, 1], accumulation and depth [H, W, 1].
        (The viewer turns rgb into bytes as it is: a colour over 1 or under 0 would wrap around, e.g. to black.)"""
        gaussians = self.viewer_gaussians()
        camera = camera.to(self.device)
        W, H = int(camera.width.reshape(-1)[0]), int(camera.height.reshape(-1)[0])
        if gaussians is None:
            blank = torch.zeros(H, W, 1, device=self.device)
            return {"rgb": blank.expand(H, W, 3), "accumulation": blank, "depth": blank}
        c2w_gl = torch.cat(
            [camera.camera_to_worlds.reshape(-1, 3, 4)[0], torch.tensor([[0.0, 0, 0, 1]], device=self.device)]
        )
        c2w = scene_c2w_from_viewer(c2w_gl)
        f = lambda t: float(t.reshape(-1)[0])  # noqa: E731
        K = torch.tensor(
            [[f(camera.fx), 0.0, f(camera.cx)], [0.0, f(camera.fy), f(camera.cy)], [0.0, 0.0, 1.0]], device=self.device
        )
        bg = torch.tensor(self.config.background_color, device=self.device)
        out = render_gaussians(gaussians, invert_rigid(c2w)[None, None], K[None, None], W, H, background=bg)
        return {"rgb": out.rgb[0, 0].clamp(0, 1), "accumulation": out.alpha[0, 0], "depth": out.depth[0, 0]}
