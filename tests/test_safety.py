"""Safety (issue #12): no command deletes a user's files, runs code hidden in data, or reads and writes outside the
folders it was given. One test per row of the issue's table, plus one that runs the CLIs with hostile names and
checks that nothing outside their output folder changed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from co3d_fixture import write_co3d_fixture
from PIL import Image

from nerfstudio_splatdiff.data.co3d import Co3dSettings, load_co3d_split
from nerfstudio_splatdiff.data.co3d_format import read_jgz, write_jgz
from nerfstudio_splatdiff.errors import SplatdiffError

REPO = Path(__file__).resolve().parents[1]
SHIPPED_VAR = REPO / "checkpoints/demo/splatdiff-var-small/shipped/config.yml"
FAST = dict(render_size=32, turntable_frames=2)


# -- helpers -------------------------------------------------------------------------------------------------------
def write_photo(path: Path, size=(48, 40), seed=0, mode="RGB") -> Path:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8)
    Image.fromarray(arr, mode).save(path, format="PNG")
    return path


def make_run(root: Path, timestamp: str = "run") -> Path:
    """A splatdiff-var-small run folder with random weights (the shipped run's config; no training): config.yml."""
    from nerfstudio.data.scene_box import SceneBox

    run = yaml.load(SHIPPED_VAR.read_text(), Loader=yaml.Loader)  # the repository's own file: trusted
    run.output_dir, run.experiment_name, run.timestamp = root, "exp", timestamp
    torch.manual_seed(0)
    model = run.pipeline.model.setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=0, metadata={}, device="cpu"
    )
    folder = run.get_checkpoint_dir()
    folder.mkdir(parents=True)
    torch.save(
        {"step": 1, "pipeline": {f"_model.{k}": v for k, v in model.state_dict().items()}},
        folder / "step-000000001.ckpt",
    )
    (folder.parent / "config.yml").write_text(yaml.dump(run))
    return folder.parent / "config.yml"


@pytest.fixture(scope="module")
def var_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"))


def sample(config: Path, image: Path, out: Path, **kw):
    from nerfstudio_splatdiff.scripts.sample import Sample

    return Sample(load_config=config, image=image, output_dir=out, **{**FAST, **kw})


class Payload:
    """Pickles to a call of os.system: loading it with pickle runs the command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def killed_partial(parent: Path, stem: str) -> Path:
    """A temporary folder the tool made (`new_partial_dir`, with a file in it) in a process that then died, as a
    killed build or save leaves it."""
    code = (
        "import sys; from pathlib import Path; from nerfstudio_splatdiff.safety import new_partial_dir; "
        "p = new_partial_dir(Path(sys.argv[1]), sys.argv[2]); (p / 'half').write_bytes(b'half'); print(p)"
    )
    parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-c", code, str(parent), stem], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def snapshot(root: Path, skip: Path | None = None) -> dict:
    """{path: (size, mtime, sha1)} of every file under root (except under `skip`)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath).resolve().is_relative_to(skip.resolve()):
            continue
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            if skip is not None and p == skip:
                continue
            st = p.lstat()
            digest = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
            out[str(p)] = (st.st_size if p.is_file() else 0, st.st_mtime_ns if p.is_file() else 0, digest)
    return out


def co3d_load(root: Path, cache: Path, split: str = "train"):
    return load_co3d_split(root, None, "fewview_dev", split, Co3dSettings(resolution=32), cache_root=cache)


def edit_annotations(cat: Path, fn) -> None:
    frames = read_jgz(cat / "frame_annotations.jgz")
    fn(frames)
    write_jgz(cat / "frame_annotations.jgz", frames)


# -- one test per row of the table ---------------------------------------------------------------------------
def test_dot_and_hidden_image_names_become_safe_folders_inside_output_dir(tmp_path):
    from nerfstudio_splatdiff.safety import is_inside, is_safe_component
    from nerfstudio_splatdiff.scripts.sample import _unique_names

    hostile = [
        "...png",
        "..png",
        ".png",
        ".hidden.png",
        "a/b.png",
        "[x].png",
        " .png",
        "summary.json.png",
        "x.png",
        "X.jpg",
    ]
    names = _unique_names([Path(n) for n in hostile])
    assert len(set(n.lower() for n in names)) == len(names)
    for n in names:
        assert is_safe_component(n) and n not in (".", "..") and n.lower() != "summary.json", n
        assert is_inside(tmp_path / "out" / n, tmp_path / "out") and (tmp_path / "out" / n).parent == tmp_path / "out"


def test_existing_folder_with_other_files_and_foreign_summary_are_kept_unless_overwrite(var_run, tmp_path, monkeypatch):
    import nerfstudio_splatdiff.scripts.sample as sample_mod

    image = write_photo(tmp_path / "photo.png")
    out = tmp_path / "out"
    (out / "photo").mkdir(parents=True)
    (out / "photo" / "notes.txt").write_text("mine")
    (out / "summary.json").write_text('{"mine": true}')
    monkeypatch.setattr(sample_mod, "load_inference_model", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(SplatdiffError, match="did not write.*--overwrite"):
        sample(var_run, image, out).main()
    assert (out / "photo" / "notes.txt").read_text() == "mine"
    (out / "photo" / "notes.txt").unlink()
    (out / "photo").rmdir()
    with pytest.raises(SplatdiffError, match="not a splatdiff-sample summary.*--overwrite"):
        sample(var_run, image, out).main()  # no folder in the way now, but summary.json is the user's
    assert json.loads((out / "summary.json").read_text()) == {"mine": True}


def test_config_yaml_with_python_tags_is_refused_and_never_run(tmp_path):
    from nerfstudio_splatdiff.generation import run_kind
    from nerfstudio_splatdiff.runs import load_run_config

    marker = tmp_path / "ran"
    bodies = [
        f"!!python/object/apply:os.system ['touch {marker}']",
        f"!!python/object/apply:subprocess.check_call [['touch', '{marker}']]",
        f"_target: !!python/name:os.system ''\nx: !!python/object/new:os.system ['touch {marker}']",
        "!!python/object:nerfstudio.engine.trainer.TrainerConfig\n"
        f"data: !!python/object/apply:os.system ['touch {marker}']",
    ]
    for i, body in enumerate(bodies):
        config = tmp_path / f"c{i}" / "config.yml"
        config.parent.mkdir()
        config.write_text(body)
        for load in (load_run_config, run_kind):
            with pytest.raises(SplatdiffError, match="Refusing to load"):
                load(config)
    assert not marker.exists()


def test_checkpoint_with_a_pickle_payload_is_refused_and_never_run(tmp_path):
    from nerfstudio_splatdiff.runs import load_inference_model

    config = make_run(tmp_path / "runs")
    marker = tmp_path / "ran"
    ckpts = config.parent / "nerfstudio_models"
    (ckpts / "step-000000001.ckpt").unlink()
    torch.save({"step": 2, "pipeline": {"x": Payload(marker)}}, ckpts / "step-000000002.ckpt")
    with pytest.raises(SplatdiffError, match="weights_only"):
        load_inference_model(config)
    assert not marker.exists()


def _chunk_scene(key: str, views: int = 3) -> dict:
    images = []
    for v in range(views):
        buf = io.BytesIO()
        Image.fromarray(np.full((36, 48, 3), 60 + 40 * v, np.uint8)).save(buf, format="JPEG")
        images.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
    cams = torch.zeros(views, 18)
    cams[:, :4] = torch.tensor([0.8, 1.0, 0.5, 0.5])
    cams[:, 6:18] = torch.tensor([1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]).expand(views, 12)
    cams[:, 9] = torch.arange(views).float() * 0.1  # x translation
    return {
        "url": "u",
        "timestamps": torch.arange(views, dtype=torch.int64),
        "cameras": cams,
        "images": images,
        "key": key,
    }


def test_re10k_chunk_with_a_pickle_payload_is_refused_and_listed(tmp_path):
    from nerfstudio_splatdiff.data.re10k import Re10kSettings, load_re10k_split

    marker = tmp_path / "ran"
    split = tmp_path / "re10k" / "train"
    split.mkdir(parents=True)
    torch.save([_chunk_scene("good")], split / "000000.torch")
    torch.save([{**_chunk_scene("evil"), "url": Payload(marker)}], split / "000001.torch")
    records, report = load_re10k_split(
        tmp_path / "re10k", "train", Re10kSettings(resolution=32), cache_root=tmp_path / "cache"
    )
    assert not marker.exists()
    assert [r.name for r in records] == ["good"]
    assert any(seq == "000001.torch" and "weights_only" in reason for seq, _, reason in report.items)


def write_re10k_txt(root: Path, key: str, frames: int = 4) -> list:
    """A RealEstate10K camera .txt scene (`<root>/train/<key>.txt`) with its extracted frames; the frame paths."""
    (root / "train").mkdir(parents=True, exist_ok=True)
    frame_dir = root / "frames" / "train" / key
    frame_dir.mkdir(parents=True)
    lines, paths = ["https://example.com/video"], []
    for t in range(frames):
        stamp = 1000 * (t + 1)
        pose = [1, 0, 0, 0.1 * t, 0, 1, 0, 0, 0, 0, 1, 0]  # world-to-camera [R | t], moving sideways
        lines.append(" ".join(str(v) for v in [stamp, 0.5, 0.5, 0.5, 0.5, 0, 0, *pose]))
        paths.append(write_photo(frame_dir / f"{stamp}.png", seed=t))
    (root / "train" / f"{key}.txt").write_text("\n".join(lines) + "\n")
    return paths


def test_re10k_txt_frames_that_link_outside_data_or_are_not_regular_files_are_skipped_and_listed(tmp_path):
    """As the CO3D reader: a frame that is a link to an image outside --data is never read, and a FIFO in place of
    a frame (or of a camera file) is skipped instead of blocking the run forever."""
    import signal

    from nerfstudio_splatdiff.data.re10k import Re10kSettings, load_re10k_split

    root = tmp_path / "re10k"
    frames = write_re10k_txt(root, "room")
    secret = write_photo(tmp_path / "secret.png", seed=9)
    frames[1].unlink()
    frames[1].symlink_to(secret)
    frames[2].unlink()
    os.mkfifo(frames[2])
    write_re10k_txt(root, "fifo_cameras")
    (root / "train" / "fifo_cameras.txt").unlink()
    os.mkfifo(root / "train" / "fifo_cameras.txt")
    (root / "train" / "linked.txt").symlink_to(root / "train" / "room.txt")  # a link inside --data is fine
    (root / "frames" / "train" / "linked").symlink_to(root / "frames" / "train" / "room")
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the reader blocked on a FIFO"))
    signal.alarm(120)
    try:
        records, report = load_re10k_split(root, "train", Re10kSettings(resolution=16), cache_root=tmp_path / "c")
    finally:
        signal.alarm(0)
    assert {r.name: r.frame_numbers for r in records} == {"room": [0, 3], "linked": [0, 3]}
    reasons = {(seq, frame): reason for seq, frame, reason in report.items}
    assert "outside --data" in reasons[("room", 1)] and "not a regular file" in reasons[("room", 2)]
    assert "not a regular file" in reasons[("fifo_cameras", None)]
    (root / "test").mkdir()  # chunks: a FIFO or a link outside --data in place of a chunk is skipped too
    torch.save([_chunk_scene("good")], root / "test" / "000000.torch")
    os.mkfifo(root / "test" / "000001.torch")
    torch.save([_chunk_scene("secret")], tmp_path / "outside.torch")
    (root / "test" / "000002.torch").symlink_to(tmp_path / "outside.torch")
    signal.alarm(120)
    try:
        records, report = load_re10k_split(root, "test", Re10kSettings(resolution=16), cache_root=tmp_path / "c")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [r.name for r in records] == ["good"]
    reasons = {seq: reason for seq, _, reason in report.items}
    assert "not a regular file" in reasons["000001.torch"] and "outside --data" in reasons["000002.torch"]


def test_a_non_numeric_token_in_a_re10k_camera_file_fails_in_one_line_naming_file_and_line(tmp_path):
    from nerfstudio_splatdiff.data.re10k import Re10kSettings, load_re10k_split

    root = tmp_path / "re10k"
    write_re10k_txt(root, "room")
    path = root / "train" / "room.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(" 0.5 ", " 0.5x ", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SplatdiffError, match=r"room.txt line 3: '0.5x' is not a number") as e:
        load_re10k_split(root, "train", Re10kSettings(resolution=16), cache_root=tmp_path / "c")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())  # before any frame was cached


def test_co3d_annotation_paths_outside_data_are_skipped_and_listed(tmp_path):
    data = tmp_path / "data"
    cat = write_co3d_fixture(data, sequences=2, frames=5)
    outside = tmp_path / "outside.jpg"
    Image.open(cat / "seq_0" / "images" / "frame000001.jpg").save(outside)

    def poison(frames):
        frames[0]["image"]["path"] = "../outside.jpg"  # relative, leads outside --data
        frames[1]["image"]["path"] = str(outside)  # absolute
        frames[2]["mask"]["path"] = "toy/../../outside.jpg"

    edit_annotations(cat, poison)
    (records,), report = co3d_load(data, tmp_path / "cache")
    assert records.frame_numbers == [4, 5]
    reasons = {frame: reason for seq, frame, reason in report.items}
    assert "outside --data" in reasons[1] and "absolute" in reasons[2] and "outside --data" in reasons[3]


def test_sequence_names_and_chunk_keys_that_leave_the_cache_are_skipped(tmp_path):
    from nerfstudio_splatdiff.data.re10k import Re10kSettings, load_re10k_split

    data = tmp_path / "data"
    cat = write_co3d_fixture(data, sequences=3, frames=3)
    target = tmp_path / "victim"
    target.mkdir()
    names = {"seq_0": "../../../victim", "seq_1": str(target)}
    edit_annotations(
        cat, lambda frames: [f.update(sequence_name=names.get(f["sequence_name"], f["sequence_name"])) for f in frames]
    )
    lists = json.loads((cat / "set_lists" / "set_lists_fewview_dev.json").read_text())
    lists = {k: [[names.get(s, s), n, p] for s, n, p in v] for k, v in lists.items()}
    lists["train"] += lists.pop("test")
    lists["test"] = []
    (cat / "set_lists" / "set_lists_fewview_dev.json").write_text(json.dumps(lists))
    records, report = co3d_load(data, tmp_path / "cache")
    assert [r.name for r in records] == ["seq_2"]
    assert {seq for seq, frame, reason in report.items if "not a plain folder name" in reason} == set(names.values())
    split = tmp_path / "re10k" / "train"
    split.mkdir(parents=True)
    torch.save([_chunk_scene(str(target)), _chunk_scene("../victim"), _chunk_scene("ok")], split / "000000.torch")
    records, report = load_re10k_split(
        tmp_path / "re10k", "train", Re10kSettings(resolution=32), cache_root=tmp_path / "c2"
    )
    assert [r.name for r in records] == ["ok"]
    assert list(target.iterdir()) == []


def test_viewer_wrapper_binds_localhost_unless_told_and_refuses_unsafe_yaml(tmp_path, monkeypatch):
    import tyro

    import nerfstudio_splatdiff.scripts.viewer as viewer

    assert (
        'splatdiff-viewer = "nerfstudio_splatdiff.scripts.viewer:entrypoint"' in (REPO / "pyproject.toml").read_text()
    )
    started = []
    run_config = SimpleNamespace(viewer=SimpleNamespace(num_rays_per_chunk=123, websocket_host="0.0.0.0"), vis="viewer")
    monkeypatch.setattr(viewer, "setup_pipeline", lambda *a, **k: (run_config, None, None, 7))
    monkeypatch.setattr(viewer, "_start_viewer", lambda config, pipeline, step: started.append(config.viewer))

    def parse(*args):
        return tyro.cli(tyro.conf.FlagConversionOff[viewer.SplatdiffViewer], args=["--load-config", "c.yml", *args])  # noqa: E731

    parse().main()
    parse("--viewer.websocket-host", "0.0.0.0").main()
    assert [v.websocket_host for v in started] == ["127.0.0.1", "0.0.0.0"] and started[0].num_rays_per_chunk == 123
    monkeypatch.undo()
    marker = tmp_path / "ran"
    (tmp_path / "config.yml").write_text(f"!!python/object/apply:os.system ['touch {marker}']")
    with pytest.raises(SplatdiffError, match="Refusing to load"):
        viewer.SplatdiffViewer(load_config=tmp_path / "config.yml").main()
    assert not marker.exists()


def test_a_killed_checkpoint_save_leaves_no_truncated_checkpoint_and_loads_fall_back(tmp_path, monkeypatch, capsys):
    from nerfstudio_splatdiff.runs import load_inference_model
    from nerfstudio_splatdiff.trainer import SplatdiffTrainer

    run = tmp_path / "run"
    (run / "nerfstudio_models").mkdir(parents=True)
    stale = killed_partial(run, "step-000000005.ckpt")
    users = run / f"step-000000004.ckpt.partial-{dead_pid()}"  # the user's own file: not the tool's to remove
    users.write_bytes(b"mine")
    trainer = SplatdiffTrainer.__new__(SplatdiffTrainer)
    trainer.checkpoint_dir = run / "nerfstudio_models"
    trainer.config = SimpleNamespace(save_only_latest_checkpoint=False)
    trainer.pipeline = torch.nn.Linear(2, 2)
    trainer.optimizers = SimpleNamespace(optimizers={}, schedulers={})
    trainer.grad_scaler = SimpleNamespace(state_dict=dict)
    trainer.save_checkpoint(10)
    assert not stale.exists()  # the temporary folder of a killed save is cleaned up
    assert users.read_bytes() == b"mine"

    real_save = torch.save

    def killed_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 truncated")
        raise KeyboardInterrupt  # killed halfway through writing

    monkeypatch.setattr(torch, "save", killed_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(20)
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in (run / "nerfstudio_models").iterdir()] == ["step-000000010.ckpt"]

    # what a kill -9 in the old code left: a 0-byte newest checkpoint. Resume and inference use the one before.
    (run / "nerfstudio_models" / "step-000000030.ckpt").write_bytes(b"")
    loaded = []
    trainer.config = SimpleNamespace(
        load_dir=run / "nerfstudio_models", load_step=None, load_checkpoint=None, load_scheduler=True
    )
    trainer.pipeline = SimpleNamespace(load_pipeline=lambda state, step: loaded.append(step))
    trainer.optimizers = SimpleNamespace(load_optimizers=lambda s: None, load_schedulers=lambda s: None)
    trainer.grad_scaler = SimpleNamespace(load_state_dict=lambda s: None)
    trainer._load_checkpoint()
    assert loaded == [10] and trainer._start_step == 11
    config = make_run(tmp_path / "runs")
    (config.parent / "nerfstudio_models" / "step-000000009.ckpt").write_bytes(b"")
    model, _ = load_inference_model(config)
    assert "step-000000009.ckpt" in capsys.readouterr().out and model is not None


def test_a_weights_only_checkpoint_warm_starts_training_with_fresh_optimiser_state(tmp_path, capsys):
    import torch

    from nerfstudio_splatdiff.trainer import SplatdiffTrainer

    ckpt = tmp_path / "nerfstudio_models" / "step-000002500.ckpt"
    ckpt.parent.mkdir()
    torch.save({"step": 2500, "pipeline": {"_model.w": torch.ones(2, dtype=torch.float16)}}, ckpt)
    loaded = []

    def refuse(_):
        raise AssertionError("a slim checkpoint has no optimiser state to load")

    trainer = SplatdiffTrainer.__new__(SplatdiffTrainer)
    trainer.config = SimpleNamespace(load_dir=None, load_step=None, load_checkpoint=ckpt, load_scheduler=True)
    trainer.pipeline = SimpleNamespace(load_pipeline=lambda state, step: loaded.append((sorted(state), step)))
    trainer.optimizers = SimpleNamespace(load_optimizers=refuse, load_schedulers=refuse)
    trainer.grad_scaler = SimpleNamespace(load_state_dict=refuse)
    trainer._load_checkpoint()
    assert loaded == [(["_model.w"], 2500)] and trainer._start_step == 2501
    assert "weights only" in capsys.readouterr().out


def test_a_resumed_runs_progress_counts_to_the_step_it_stops_at(monkeypatch):
    from nerfstudio.utils import writer

    from nerfstudio_splatdiff.trainer import SplatdiffTrainer

    monkeypatch.setitem(writer.GLOBAL_BUFFER, "max_iter", 500)  # what nerfstudio sets: --max-num-iterations
    trainer = SplatdiffTrainer.__new__(SplatdiffTrainer)
    trainer.config = SimpleNamespace(max_num_iterations=500)
    trainer._start_step = 2501  # resumed after step 2500: trains steps 2501..3000
    trainer.count_progress_from_start()
    assert writer.GLOBAL_BUFFER["max_iter"] == 3001
    assert 0.99 < 3000 / writer.GLOBAL_BUFFER["max_iter"] <= 1.0  # the last step reads ~100%, never more


def test_bad_frames_and_set_list_entries_are_skipped_and_listed(tmp_path):
    data = tmp_path / "data"
    cat = write_co3d_fixture(data, sequences=2, frames=6)
    mask = cat / "seq_0" / "masks" / "frame000001.png"
    mask.write_bytes(mask.read_bytes()[:60])  # truncated mask PNG
    depth = cat / "seq_0" / "depths" / "frame000002.jpg.geometric.png"
    depth.write_bytes(depth.read_bytes()[:60])  # truncated depth PNG

    def poison(frames):
        del frames[2]["image"]  # a frame without image
        frames[3]["viewpoint"]["R"] = [[1, 0], [0]]  # a malformed R

    edit_annotations(cat, poison)
    lists_path = cat / "set_lists" / "set_lists_fewview_dev.json"
    lists = json.loads(lists_path.read_text())
    lists["train"].append(["seq_0", "five", "x.jpg"])  # a non-integer frame number
    lists_path.write_text(json.dumps(lists))
    (record,), report = co3d_load(data, tmp_path / "cache")
    assert record.frame_numbers == [5, 6]
    skipped = {frame for seq, frame, reason in report.items if seq == "seq_0"}
    assert skipped == {1, 2, 3, 4}
    assert any("five" in reason for seq, frame, reason in report.items)


def test_a_16_bit_png_is_scaled_to_8_bits_not_white(tmp_path):
    from nerfstudio_splatdiff.data.photo import load_photo

    grey = np.full((32, 32), 16384, np.uint16)  # a quarter of the 16-bit range
    Image.fromarray(grey).save(tmp_path / "deep.png")
    photo = load_photo(tmp_path / "deep.png", 16)
    assert abs(float(photo.image.mean()) - 0.25) < 0.01


def test_fully_transparent_alpha_is_refused_with_one_message(tmp_path, var_run):
    from nerfstudio_splatdiff.data.photo import load_photo

    arr = np.random.default_rng(0).integers(0, 255, (32, 32, 4), dtype=np.uint8)
    arr[..., 3] = 0
    Image.fromarray(arr, "RGBA").save(tmp_path / "ghost.png")
    with pytest.raises(SplatdiffError, match="fully transparent"):
        load_photo(tmp_path / "ghost.png", 16)
    with pytest.raises(SplatdiffError, match="fully transparent"):
        sample(var_run, tmp_path / "ghost.png", tmp_path / "out").main()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["frames", "focal", "seed", "render", "samples", "dir_is_file", "not_yaml", "fov_inf"])
def test_numeric_options_and_bad_paths_fail_in_one_line_before_any_model_loads(case, var_run, tmp_path, monkeypatch):
    import nerfstudio_splatdiff.scripts.sample as sample_mod

    monkeypatch.setattr(sample_mod, "load_inference_model", lambda *a, **k: pytest.fail("loaded the model"))
    image, out, config, kw = write_photo(tmp_path / "p.png"), tmp_path / "out", var_run, {}
    expect = {
        "frames": "--turntable-frames",
        "focal": "--focal",
        "seed": "--seed",
        "render": "--render-size",
        "samples": "--num-samples",
        "dir_is_file": "is a file",
        "not_yaml": "not valid YAML",
        "fov_inf": "--fov-deg",
    }[case]
    if case == "frames":
        kw["turntable_frames"] = 100_000
    elif case == "focal":
        kw["focal"] = float("nan")
    elif case == "seed":
        kw["seed"] = 10**23
    elif case == "render":
        kw["render_size"] = 30000
    elif case == "samples":
        kw["num_samples"] = 1000
    elif case == "dir_is_file":
        out.write_text("a file")
    elif case == "fov_inf":
        kw["fov_deg"] = float("inf")
    else:
        config = tmp_path / "config.yml"
        config.write_text("{ this: is: not yaml")
    with pytest.raises(SplatdiffError, match=expect):
        sample(config, image, out, **kw).main()
    assert case == "dir_is_file" or not out.exists()


def test_mask_pairing_uses_exact_names_not_glob_patterns(tmp_path):
    (tmp_path / "img").mkdir()
    images = [write_photo(tmp_path / "img" / n) for n in ("[x].png", "x.png")]
    (tmp_path / "masks").mkdir()
    write_photo(tmp_path / "masks" / "x.png")
    s = sample(tmp_path / "c.yml", tmp_path / "img", tmp_path / "out", mask=tmp_path / "masks")
    with pytest.raises(SplatdiffError, match=r"No mask for \[x\].png"):
        s.masks_for(images)  # '[x].*' as a glob would have matched x.png
    write_photo(tmp_path / "masks" / "[x].png")
    assert [m.name for m in s.masks_for(images)] == ["[x].png", "x.png"]


def test_the_cache_is_rebuilt_when_an_image_it_read_changes(tmp_path):
    data = tmp_path / "data"
    cat = write_co3d_fixture(data, sequences=2, frames=4)
    image = cat / "seq_0" / "images" / "frame000002.jpg"
    good = image.read_bytes()
    image.write_bytes(b"not a jpeg")
    (record,), report = co3d_load(data, tmp_path / "cache")
    assert record.frame_numbers == [1, 3, 4] and len(report) == 1
    image.write_bytes(good)  # fixed; the annotations are unchanged
    (record,), report = co3d_load(data, tmp_path / "cache")
    assert record.frame_numbers == [1, 2, 3, 4] and len(report) == 0


def test_partial_cache_folders_of_killed_builds_are_removed(tmp_path):
    data = tmp_path / "data"
    write_co3d_fixture(data, sequences=2, frames=3)
    cache = tmp_path / "cache"
    dead = killed_partial(cache, "co3d_toy_fewview_dev_train_0123")
    alive = cache / "co3d_toy_fewview_dev_train_4567.partial-1"  # pid 1 runs: another build in progress
    (alive / "seq_0").mkdir(parents=True)
    (alive / ".splatdiff-owner").write_text(f"{socket.gethostname()} 1\n")
    users = [cache / "notes.partial-x", cache / f"thesis.partial-{dead_pid()}"]  # unmarked: the user's
    for folder in users:
        (folder / "seq_0").mkdir(parents=True)
    co3d_load(data, cache)
    assert not dead.exists() and alive.exists() and all(folder.exists() for folder in users)
    assert not list(cache.glob(".*.partial-*"))  # the build's own temporary folder was published


def test_a_users_entries_named_like_partial_folders_survive_without_overwrite(var_run, tmp_path):
    """The issue's example: `thesis.partial-4000000` (a folder) and `notes.partial-4000001` (a file) in
    --output-dir are the user's, whatever process number they name; only the tool's own marked temporary folder of
    a killed run is removed, and so are no look-alikes (an owner file naming another process, or a link)."""
    out = tmp_path / "out" / "x"
    thesis = out / "thesis.partial-4000000"
    (thesis / "chapter1.tex").parent.mkdir(parents=True)
    (thesis / "chapter1.tex").write_text("a")
    (out / "notes.partial-4000001").write_text("a\n")
    forged = out / f"forged.partial-{dead_pid()}"  # an owner file that names another process
    forged.mkdir()
    (forged / ".splatdiff-owner").write_text(f"{socket.gethostname()} {dead_pid()}\n")
    link = out / f"link.partial-{dead_pid()}"
    link.symlink_to(thesis, target_is_directory=True)
    killed = killed_partial(out, "image")
    before = snapshot(out)
    sample(var_run, write_photo(tmp_path / "photo.png"), out, num_samples=1, turntable=False).main()
    assert not killed.exists()
    for path in (thesis, thesis / "chapter1.tex", out / "notes.partial-4000001", forged, link):
        assert before[str(path)] == snapshot(out)[str(path)]
    assert (out / "photo" / "contact_sheet.png").is_file()


# -- the CLIs with hostile names -------------------------------------------------------------------------------------
def test_hostile_names_change_nothing_outside_the_output_folder(tmp_path, monkeypatch):
    """splatdiff-sample, -export and -slim-run with hostile photo, scene and experiment names, run in-process from a
    working folder: every file outside the output folder (the working folder, its parents' other files, the run and
    the repository's shipped checkpoint) is unchanged, and everything written lies inside --output-dir."""
    from nerfstudio_splatdiff.scripts.cli import run_command
    from nerfstudio_splatdiff.scripts.export import Export
    from nerfstudio_splatdiff.scripts.sample import Sample
    from nerfstudio_splatdiff.scripts.slim_run import SlimRun

    root = tmp_path / "root"
    work = root / "outputs" / "work"
    photos = work / "photos"
    photos.mkdir(parents=True)
    for i, name in enumerate(["..png", "...png", ".hidden.png", "a b[1].png", "-x.png"]):
        write_photo(photos / name, seed=i)
    (root / "keep.txt").write_text("parent of outputs")
    (root / "outputs" / "keep.txt").write_text("a training run")
    data = root / "data"
    cat = write_co3d_fixture(data, sequences=2, frames=3)
    hostile_seq = "../../x y"
    edit_annotations(cat, lambda fr: [f.update(sequence_name="a b[1]") for f in fr if f["sequence_name"] == "seq_1"])
    lists_path = cat / "set_lists" / "set_lists_fewview_dev.json"
    lists = json.loads(lists_path.read_text())
    lists["test"] = [["a b[1]", n, p] for _, n, p in lists["test"]] + [[hostile_seq, 1, "x.jpg"]]
    lists_path.write_text(json.dumps(lists))
    config = make_run(root / "runs")
    run = yaml.load(config.read_text(), Loader=yaml.Loader)
    for obj in (run, run.pipeline.datamanager, run.pipeline.datamanager.dataparser):
        obj.data = data
    run.pipeline.datamanager.dataparser.cache_dir = root / "cache"
    run.pipeline.datamanager.dataparser.resolution = 64
    run.pipeline.datamanager.num_workers = 0
    run.pipeline.datamanager.scene_kind = None  # a CO3D-format fixture, not proving-ground scenes
    config.write_text(yaml.dump(run))
    out = work / "out"
    before = snapshot(root, skip=out)
    before.pop(str(root / "cache"), None)
    shipped_before = snapshot(SHIPPED_VAR.parent)
    monkeypatch.chdir(work)

    def sample_argv(image: str) -> list:
        flags = ["--output-dir", "out/s", "--render-size", "32", "--turntable-frames", "2"]
        return ["splatdiff-sample", "--load-config", str(config), "--image", image, *flags]

    for argv in (
        sample_argv("photos"),
        sample_argv("photos/...png"),
        ["splatdiff-export", "--load-config", str(config), "--scenes", "0", "--output-dir", "out/e"],
        [
            "splatdiff-slim-run",
            "--load-config",
            str(config),
            "--output-dir",
            "out/slim",
            "--experiment-name",
            "../../../x",
        ],
        ["splatdiff-slim-run", "--load-config", str(config), "--output-dir", "out/slim"],
    ):
        command = {"splatdiff-sample": Sample, "splatdiff-export": Export, "splatdiff-slim-run": SlimRun}[argv[0]]
        monkeypatch.setattr(sys, "argv", argv)
        try:
            run_command(command)
        except SystemExit as e:
            assert "../../../x" in argv and e.code == 1, argv  # only the hostile experiment name is refused

    after = snapshot(root, skip=out)
    after = {k: v for k, v in after.items() if not Path(k).is_relative_to(root / "cache")}
    before = {k: v for k, v in before.items() if not Path(k).is_relative_to(root / "cache")}
    assert after == before
    assert snapshot(SHIPPED_VAR.parent) == shipped_before
    written = [p for p in out.rglob("*")]
    assert all(p.resolve().is_relative_to(out.resolve()) for p in written)
    assert sorted(p.name for p in (out / "s").iterdir()) == [
        "-x",
        "a_b_1_",
        "hidden",
        "image",
        "image_png",
        "summary.json",
    ]
    assert sorted(p.name for p in (out / "e").iterdir()) == ["a_b_1_"]
    assert (out / "slim" / "demo" / "splatdiff-var-small" / "shipped" / "config.yml").is_file()
    assert not list(out.rglob("*.partial-*"))
