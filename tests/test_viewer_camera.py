"""Where the viewer opens, without a browser: the pose the model hands viser for the chosen scene's input camera
comes back, through viser's camera state and nerfstudio's viewer camera, as exactly that camera (position, look
direction, upright, field of view), and the frusta drawn are that scene's input and target cameras."""

from __future__ import annotations

import math
import socket
from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import viser
import viser.transforms as vtf
from nerfstudio.cameras.cameras import CameraType
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.viewer.utils import CameraState, get_camera
from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO as SCALE
from viser._viser import CameraHandle

from nerfstudio_splatdiff.models.scene_model import (
    FRUSTUM_EDGE_RADIUS,
    SceneViewerControl,
    covers_view,
    frustum_points,
    look_through,
    scene_c2w_from_viewer,
    viewer_camera_pose,
    viewer_look_distance,
)
from nerfstudio_splatdiff.splats.cameras import make_rigid

RES = 64
K = torch.tensor([[80.0, 0.0, 32.0], [0.0, 80.0, 32.0], [0.0, 0.0, 1.0]])


class StubConnection:
    """What viser's CameraHandle sends to the browser, kept instead."""

    def __init__(self) -> None:
        self.messages: list = []

    def queue_message(self, message) -> None:
        self.messages.append(message)


class StubClient:
    """A viser client whose camera starts where viser's does (off to the side, z up), without a browser: viser's
    own CameraHandle keeps the camera state the browser would report back."""

    def __init__(self) -> None:
        self._websock_connection = StubConnection()
        self.camera = CameraHandle(self)
        state = self.camera._state
        state.position, state.look_at, state.up_direction = (
            np.array([3.0, 3.0, 3.0]),
            np.zeros(3),
            np.array([0, 0, 1.0]),
        )
        state.fov, state.aspect, state.update_timestamp = 1.3, 1.0, 1.0
        self.camera._update_wxyz()

    def atomic(self):
        return nullcontext()


def nerfstudio_viewer_c2w(client) -> torch.Tensor:
    """The camera nerfstudio's viewer renders from a client's camera (ViewerState.get_camera_state): OpenGL
    camera-to-world in the viewer's world, 4x4."""
    R = torch.tensor((vtf.SO3(wxyz=client.camera.wxyz) @ vtf.SO3.from_x_radians(np.pi)).as_matrix())
    pos = torch.tensor(client.camera.position, dtype=torch.float64) / SCALE
    return torch.cat([torch.cat([R, pos[:, None]], 1), torch.tensor([[0.0, 0, 0, 1]], dtype=torch.float64)])


def random_camera(seed: int) -> torch.Tensor:
    """An OpenCV camera-to-world somewhere around the origin (a target camera, say)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(4, generator=g, dtype=torch.float64)
    R = torch.tensor(vtf.SO3(wxyz=(q / q.norm()).numpy()).as_matrix())
    return make_rigid(R, torch.randn(3, generator=g, dtype=torch.float64)).float()


@pytest.mark.parametrize("c2w", [torch.eye(4), random_camera(0), random_camera(1)], ids=["input", "other", "third"])
def test_the_viewer_camera_set_from_a_scene_camera_renders_that_camera(c2w):
    """look_through(pose) in viser, read back the way nerfstudio's viewer reads it, then the model's conversion:
    the same camera-to-world and focal length as the scene camera."""
    pose = viewer_camera_pose(c2w, K, RES, RES, 2.0, SCALE)
    client = StubClient()
    look_through(client, pose)
    back = scene_c2w_from_viewer(nerfstudio_viewer_c2w(client))
    assert torch.allclose(back.float(), c2w, atol=1e-5), (back, c2w)
    camera = get_camera(
        CameraState(
            fov=client.camera.fov, aspect=1.0, c2w=nerfstudio_viewer_c2w(client)[:3], camera_type=CameraType.PERSPECTIVE
        ),
        RES,
    )
    assert float(camera.fy) == pytest.approx(80.0, rel=1e-5)
    assert float(camera.fx) == pytest.approx(80.0, rel=1e-5)
    # viser orbits the point straight ahead, at the requested distance; frusta take the same rotation
    ahead = (np.asarray(pose.look_at) - np.asarray(pose.position)) / SCALE
    R_view = vtf.SO3(wxyz=np.asarray(pose.wxyz)).as_matrix()
    assert np.allclose(ahead, 2.0 * R_view[:, 2], atol=1e-6)
    assert np.allclose(client.camera.wxyz, pose.wxyz, atol=1e-6) or np.allclose(
        client.camera.wxyz, -np.asarray(pose.wxyz)
    )


def test_the_input_camera_opens_upright_looking_down_minus_z():
    """The input camera (identity in the scene's world) sits at the viewer's origin, looks down -z and its image's
    up is +y: the viewer's up, so orbiting keeps the input view upright."""
    pose = viewer_camera_pose(torch.eye(4), K, RES, RES, 2.0, SCALE)
    assert np.allclose(pose.position, 0.0)
    assert np.allclose(pose.look_at, (0.0, 0.0, -2.0 * SCALE))
    assert np.allclose(pose.up_direction, (0.0, 1.0, 0.0))
    assert pose.fov == pytest.approx(2 * math.atan(32 / 80))
    client = StubClient()
    look_through(client, pose)
    assert np.allclose(client.camera.up_direction, (0.0, 1.0, 0.0))
    assert np.allclose(client.camera.position, 0.0) and np.allclose(client.camera.look_at, (0.0, 0.0, -20.0))
    assert client.camera.fov == pytest.approx(pose.fov)
    # The browser's orbit controls apply the messages in turn from viser's start (looking at the origin): the camera
    # must never be put on the point it looks at (a zero orbit radius, which camera-controls clamps to 0.1).
    target = np.zeros(3)
    names = [type(m).__name__ for m in client._websock_connection.messages]
    assert "SetCameraPositionMessage" in names and "SetCameraLookAtMessage" in names
    for message in client._websock_connection.messages:
        if type(message).__name__ == "SetCameraLookAtMessage":
            target = np.asarray(message.look_at)
        elif type(message).__name__ == "SetCameraPositionMessage":
            assert np.linalg.norm(np.asarray(message.position) - target) > 0.1


def test_look_distance_is_the_object_centre_or_two_near_planes():
    assert viewer_look_distance(1.0, 3.0) == 2.0  # object 2 units ahead, depth range +-1 around it
    assert viewer_look_distance(1.0, 100.0) == 2.0  # a room: not 50 units ahead


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def orbit_scene(num_targets: int) -> dict:
    """A scene batch of one: the input camera (identity) and targets around an object 2 units ahead."""
    c2ws = [torch.eye(4)]
    centre = torch.tensor([0.0, 0.0, 2.0])
    for i in range(1, num_targets + 1):
        a = 2 * math.pi * i / (num_targets + 1)
        R = torch.tensor([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
        c2ws.append(make_rigid(R, centre - 2.0 * R[:, 2]))
    F = len(c2ws)
    return {
        "images": torch.rand(1, F, RES, RES, 3),
        "c2w": torch.stack(c2ws)[None],
        "K": K.expand(1, F, 3, 3),
        "depth_near": torch.tensor([1.0]),
        "depth_far": torch.tensor([3.0]),
    }


def test_the_frusta_are_the_chosen_scenes_input_and_target_cameras():
    """On a real viser server: nerfstudio's train-dataset frusta are turned off, one frustum per camera of the chosen
    scene is drawn where that camera is in the viewer's world, and choosing another scene replaces them."""
    scenes = [orbit_scene(5), orbit_scene(2)]
    chosen = [0]
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        viewer = SimpleNamespace(
            viser_server=server,
            config=ViewerConfig(),
            hide_images=server.gui.add_button("Hide Train Cams"),
            show_images=server.gui.add_button("Show Train Cams"),
        )
        control = SceneViewerControl(lambda: scenes[chosen[0]])
        control._setup(viewer)
        assert viewer.config.max_num_display_images == 0
        assert len(control._frusta) == 6
        batch = scenes[0]
        for i, (handle, c2w) in enumerate(zip(control._frusta, batch["c2w"][0])):
            c2w_view = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0])) @ c2w
            R = vtf.SO3(wxyz=np.asarray(handle.wxyz)).as_matrix()
            assert np.allclose(R, c2w_view[:3, :3].numpy(), atol=1e-5)
            if i > 0:  # the input frustum is set back along its axis: see the next test
                assert np.allclose(handle.position, c2w_view[:3, 3].numpy() * SCALE, atol=1e-4)
        # The input camera looks through its own frustum: on its axis, behind the camera, clear of its edge tubes.
        apex, R = control._frusta[0].position, vtf.SO3(wxyz=np.asarray(control._frusta[0].wxyz)).as_matrix()
        eye = np.asarray(control._pose.position)
        assert np.allclose(np.cross(eye - apex, R[:, 2]), 0.0, atol=1e-6) and (eye - apex) @ R[:, 2] > 0
        scale = 0.1 * viewer_look_distance(1.0, 3.0) * SCALE
        half = math.tan(control._pose.fov / 2)
        for sx, sy in [(-1, -1), (1, -1), (1, 1), (-1, 1)]:  # the four edges from the apex
            edge = R @ np.array([sx * half * control._pose.aspect, sy * half, 1.0])
            edge /= np.linalg.norm(edge)
            gap = np.linalg.norm(np.cross(eye - apex, edge))  # the input camera's distance to the edge's axis
            assert gap > 2 * FRUSTUM_EDGE_RADIUS * scale, gap
        names = [h._impl.name for h in control._frusta]
        assert names == ["/eval_scene_cameras/input"] + [f"/eval_scene_cameras/target_{i:03d}" for i in range(1, 6)]
        assert np.allclose(control._pose.position, 0.0)
        # A browser that connects looks through the input camera; one that has orbited away is brought back to the
        # new scene's input camera when the scene changes.
        arriving = StubClient()
        control._client_connected(arriving)
        assert np.allclose(arriving.camera.position, 0.0) and np.allclose(arriving.camera.up_direction, (0, 1, 0))
        wandered = StubClient()
        server.get_clients = lambda: {0: wandered}
        chosen[0] = 1
        control.scene_changed()
        assert len(control._frusta) == 3
        assert np.allclose(wandered.camera.position, 0.0) and np.allclose(wandered.camera.look_at, (0, 0, -2 * SCALE))
        control._show_frusta(False)
        assert not any(h.visible for h in control._frusta)
    finally:
        server.stop()


def test_target_frusta_that_would_cover_the_opening_view_are_left_out():
    """A dense orbit (24 views, 15 degrees apart, as the demo's scenes): the frusta of the targets next to the input
    camera would lie in its view and hide part of the object where the viewer opens (a neighbour's image covered half
    of it); they are not drawn, the others are."""
    c2w0 = torch.eye(4)
    beside = make_rigid(torch.eye(3), torch.tensor([0.3, 0.0, 0.0]))  # 0.3 to the right, looking the same way
    far_aside = make_rigid(torch.eye(3), torch.tensor([3.0, 0.0, 0.0]))
    behind = make_rigid(torch.diag(torch.tensor([-1.0, 1.0, -1.0])), torch.tensor([0.0, 0.0, -1.0]))  # looks back
    across = make_rigid(torch.diag(torch.tensor([-1.0, 1.0, -1.0])), torch.tensor([0.0, 0.0, 4.0]))  # beyond the object
    fov, scale = 2 * math.atan(RES / 2 / 80.0), 0.2
    assert covers_view(frustum_points(beside, fov, 1.0, scale), c2w0, K, RES, RES, 2.0)
    for c2w in (far_aside, behind, across):
        assert not covers_view(frustum_points(c2w, fov, 1.0, scale), c2w0, K, RES, RES, 2.0)
    assert covers_view(frustum_points(across, fov, 1.0, scale), c2w0, K, RES, RES, 5.0)  # in view, but far
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        viewer = SimpleNamespace(viser_server=server, config=ViewerConfig())
        control = SceneViewerControl(lambda: orbit_scene(23))
        control._setup(viewer)
        names = [h._impl.name.rsplit("/", 1)[1] for h in control._frusta]
        assert names[0] == "input" and "target_001" not in names and "target_023" not in names, names
        assert {f"target_{i:03d}" for i in range(4, 21)} <= set(names)
    finally:
        server.stop()


def test_the_viewer_renders_the_input_view_through_the_pose_it_sets():
    """End to end without a browser: Gaussians in front of the input camera, rendered by the model's viewer path from
    the camera viser holds after `look_through` (as nerfstudio's viewer builds it, for a wide 512 x 256 view), show
    in the middle square exactly what the renderer shows from the input camera; colours are clamped to [0, 1]
    (the viewer turns them into bytes as they are)."""
    from nerfstudio_splatdiff.models.scene_model import SceneModel
    from nerfstudio_splatdiff.splats import Gaussians, render_gaussians
    from nerfstudio_splatdiff.splats.cameras import invert_rigid

    g = torch.Generator().manual_seed(0)
    n = 300
    uv = torch.rand(n, 2, generator=g) * 1.6 - 0.8  # inside the input view
    depth = 1.5 + torch.rand(n, 1, generator=g)
    gaussians = Gaussians(
        means=torch.cat([uv * depth * 32 / 80, depth], -1)[None],
        quats=torch.tensor([1.0, 0, 0, 0]).expand(1, n, 4).contiguous(),
        scales=torch.full((1, n, 3), 0.03),
        opacities=torch.full((1, n), 0.9),
        colors=torch.rand(1, n, 3, generator=g) * 1.6 - 0.3,  # some over 1 and under 0, as a young model makes
    )
    model = SimpleNamespace(viewer_gaussians=lambda: gaussians, device=torch.device("cpu"))
    model.config = SimpleNamespace(background_color=(1.0, 1.0, 1.0))
    client = StubClient()
    look_through(client, viewer_camera_pose(torch.eye(4), K, RES, RES, 2.0, SCALE))
    H, W = 256, 512
    state = CameraState(
        fov=client.camera.fov, aspect=W / H, c2w=nerfstudio_viewer_c2w(client)[:3], camera_type=CameraType.PERSPECTIVE
    )
    view = SceneModel.get_outputs_for_camera(model, get_camera(state, H, W))["rgb"]
    assert view.min() >= 0 and view.max() <= 1
    K_big = K.clone()
    K_big[:2] *= H / RES
    direct = render_gaussians(
        gaussians, invert_rigid(torch.eye(4))[None, None], K_big[None, None], H, H, background=torch.ones(3)
    ).rgb[0, 0]
    assert direct.max() > 1.05  # the clamp matters here
    square = view[:, (W - H) // 2 : (W + H) // 2]
    assert torch.allclose(square, direct.clamp(0, 1), atol=0.01), (
        (square - direct.clamp(0, 1)).abs().max()
    )  # float32 focal
