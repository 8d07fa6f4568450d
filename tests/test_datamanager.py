"""Multi-scene DataManager: batch shapes, identical per-scene jitter, DDP sharding, the fixed eval protocol."""

from __future__ import annotations

import pytest
import torch
from co3d_fixture import write_co3d_fixture

from nerfstudio_splatdiff.data.datamanager import MultiSceneDataManagerConfig
from nerfstudio_splatdiff.data.dataparsers import Co3dDataParserConfig
from nerfstudio_splatdiff.data.multiscene import ViewOptions, scene_views
from nerfstudio_splatdiff.errors import SplatdiffError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("co3d")
    write_co3d_fixture(root, sequences=5, frames=6)  # 4 train sequences, 1 test sequence
    return root


def make_dm(dataset, tmp_path, world_size=1, local_rank=0, **kw):
    parser = Co3dDataParserConfig(data=dataset, resolution=32, cache_dir=tmp_path / "cache")
    cfg = MultiSceneDataManagerConfig(dataparser=parser, num_workers=0, **kw)
    return cfg.setup(device="cpu", test_mode="val", world_size=world_size, local_rank=local_rank)


def test_train_batch_shapes_and_relative_cameras(dataset, tmp_path):
    dm = make_dm(dataset, tmp_path, scenes_per_batch=6, num_target_views=3)  # more scenes per batch than exist
    cams, batch = dm.next_train(0)
    assert cams.shape == (6, 4)
    assert batch["images"].shape == (6, 4, 32, 32, 3) and batch["masks"].shape == (6, 4, 32, 32, 1)
    assert batch["c2w"].shape == (6, 4, 4, 4) and batch["K"].shape == (6, 4, 3, 3)
    eye = torch.eye(4).expand(6, 4, 4)
    assert torch.allclose(batch["c2w"][:, 0], eye, atol=1e-5)  # view 0 is the source, the world is its camera
    gl_identity = torch.cat([torch.diag(torch.tensor([1.0, -1.0, -1.0])), torch.zeros(3, 1)], 1)  # OpenGL flip
    assert torch.allclose(cams.camera_to_worlds[:, 0], gl_identity.expand(6, 3, 4), atol=1e-5)
    # The object centre (world origin before making poses relative) lies inside the splatter depth range.
    assert (batch["depth_near"] < 2.0).all() and (batch["depth_far"] > 2.0).all() and (batch["depth_near"] > 0).all()
    # Targets differ from the source (4 train sequences x 6 frames, targets drawn among the other frames).
    assert (batch["frame_indices"][:, 1:] != batch["frame_indices"][:, :1]).all()
    assert dm.get_train_rays_per_batch() == 6 * 4 * 32 * 32


def test_jitter_is_identical_across_views_and_background_composites(dataset, tmp_path):
    dm = make_dm(dataset, tmp_path)
    rec = dm.train_scenes[0]
    plain = scene_views(rec, [2, 2, 2], ViewOptions())
    jit = scene_views(rec, [2, 2, 2], ViewOptions(color_jitter=(0.4, 0.4, 0.4, 0.1)), torch.Generator().manual_seed(1))
    assert not torch.allclose(jit["images"][0], plain["images"][0], atol=1e-3)
    assert torch.equal(jit["images"][0], jit["images"][1]) and torch.equal(jit["images"][0], jit["images"][2])
    black = scene_views(rec, [2], ViewOptions(background_color=(0.0, 0.0, 0.0)))
    bg = black["masks"][0, ..., 0] == 0
    assert bg.any() and (black["images"][0][bg] == 0).all()


def test_ddp_ranks_see_disjoint_scenes(dataset, tmp_path):
    names = [{s.name for s in make_dm(dataset, tmp_path, world_size=2, local_rank=r).train_scenes} for r in (0, 1)]
    assert names[0] and names[1] and not (names[0] & names[1])
    assert names[0] | names[1] == {s.name for s in make_dm(dataset, tmp_path).train_scenes}
    with pytest.raises(SplatdiffError, match="cannot be shared by 8 devices"):
        make_dm(dataset, tmp_path, world_size=8, local_rank=0)


def test_fixed_eval_protocol_is_deterministic(dataset, tmp_path):
    dm = make_dm(dataset, tmp_path)
    loader = dm.fixed_indices_eval_dataloader
    assert len(loader) == 1
    (cams_a, a), (_cams_b, b) = next(iter(loader)), next(iter(loader))
    assert a["frame_indices"].tolist() == [list(range(6))]  # frame 0 is the input, every other frame a target
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["c2w"], b["c2w"])
    assert cams_a.shape == (1, 6) and a["images"].shape == (1, 6, 32, 32, 3) and "depths" in a
    cams_c, c = dm.next_eval_image(0)
    assert torch.equal(c["images"], a["images"])
    # nerfstudio's viewer and trainer needs: frustum dataset with images, and the dataparser transform.
    assert len(dm.train_dataset) == 4 * 6 and dm.train_dataset[0]["image"].shape == (32, 32, 3)
    assert dm.train_dataset.cameras.shape == (24,)
    dm.train_dataparser_outputs.save_dataparser_transform(tmp_path / "t.json")
    assert (tmp_path / "t.json").is_file()


def test_worker_processes_deliver_batches(dataset, tmp_path):
    parser = Co3dDataParserConfig(data=dataset, resolution=32, cache_dir=tmp_path / "cache")
    dm = MultiSceneDataManagerConfig(dataparser=parser, num_workers=2, scenes_per_batch=2).setup(device="cpu")
    _, b1 = dm.next_train(0)
    _, b2 = dm.next_train(1)
    assert b1["images"].shape == b2["images"].shape == (2, 4, 32, 32, 3)


def test_dataparsers_are_registered_with_nerfstudio():
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    found, _ = discover_dataparsers()
    assert isinstance(found["co3d-data"], Co3dDataParserConfig)
    assert "re10k-data" in found


def test_proving_ground_items_take_the_source_near_view_0_and_one_hidden_side_target():
    from nerfstudio_splatdiff.data.multiscene import hidden_side_frames, sample_frames
    from nerfstudio_splatdiff.splats.cameras import invert_rigid
    from nerfstudio_splatdiff.splats.orbit import orbit_w2c

    c2w = invert_rigid(
        orbit_w2c(24, radius=2.0)
    )  # 15 degrees apart, 20 degrees up: 9..15 look within 60 deg of opposite
    hidden = hidden_side_frames(c2w)
    assert hidden == list(range(9, 16))
    g = torch.Generator().manual_seed(0)
    draws = [sample_frames(24, 3, None, g, source_window=1, hidden=hidden) for _ in range(300)]
    assert {d[0] for d in draws} == {23, 0, 1}  # around the orbit, within one frame of view 0
    assert all(d[1] in hidden and len(set(d)) == 4 for d in draws)  # one hidden-side target, no repeats
    assert {d[2] for d in draws} - set(hidden)  # the other targets come from anywhere


def test_a_run_for_proving_ground_data_refuses_other_data_with_the_command_to_make_it(dataset, tmp_path):
    with pytest.raises(SplatdiffError, match=r"needs procedural scenes of kind 'object'.*--kind object"):
        make_dm(dataset, tmp_path, scene_kind="object")


def test_resident_scenes_assemble_the_tensors_scene_views_does(dataset, tmp_path):
    dm = make_dm(dataset, tmp_path, device_scenes="on", background_color=(1.0, 1.0, 1.0), scenes_per_batch=3)
    resident = dm.device_scenes
    assert resident is not None and len(resident) == 4 and resident.nbytes == 4 * 6 * 32 * 32 * 4
    scenes, frames = [2, 0, 2], [[5, 1, 3, 0], [0, 2, 4, 1], [1, 5, 5, 2]]  # a scene twice, a repeated frame
    batch = resident.batch(scenes, frames)
    for i, (s, fs) in enumerate(zip(scenes, frames)):
        ref = scene_views(dm.train_scenes[s], fs, dm.view_options)
        assert set(ref) | {"scene_index"} == set(batch)
        for key, value in ref.items():
            assert torch.allclose(batch[key][i], value.to(batch[key].dtype), atol=1e-6), key
    assert batch["scene_index"].tolist() == scenes
    # training draws come from the resident scenes: shapes as the DataLoader path, the source view first
    _, drawn = dm.next_train(0)
    assert drawn["images"].shape == (3, 4, 32, 32, 3) and torch.allclose(drawn["c2w"][:, 0], torch.eye(4), atol=1e-5)
    assert (drawn["frame_indices"][:, 1:] != drawn["frame_indices"][:, :1]).all()
    assert sum(dm.train_draws.values()) == 3
    with pytest.raises(SplatdiffError, match="has no frames"):
        resident.batch([0], [[0, 6]])


def test_resident_scenes_are_used_only_where_they_can_be(dataset, tmp_path):
    assert make_dm(dataset, tmp_path).device_scenes is None  # "auto" keeps the DataLoader on CPU
    with pytest.raises(SplatdiffError, match="colour jitter.*device-scenes auto or off"):
        make_dm(dataset, tmp_path, device_scenes="on", color_jitter=(0.2, 0.0, 0.0, 0.0))
    with pytest.raises(SplatdiffError, match="need 0.00 GB, more than.*device-scenes-max-gb; pass.*auto or off"):
        make_dm(dataset, tmp_path, device_scenes="on", device_scenes_max_gb=1e-6)


@pytest.mark.parametrize("device_scenes", ["on", "off"])
def test_train_draws_count_every_scene_each_batch_drew(dataset, tmp_path, device_scenes):
    """The draws are tallied where the batches are (no host read per step) and add up to the batches' scenes."""
    from collections import Counter

    dm = make_dm(dataset, tmp_path, device_scenes=device_scenes, scenes_per_batch=3)
    expected: Counter[str] = Counter()
    for step in range(4):
        _, batch = dm.next_train(step)
        expected.update(dm.train_scenes[i].name for i in batch["scene_index"].tolist())
    assert dm.train_draws == expected and sum(expected.values()) == 12
