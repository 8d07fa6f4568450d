"""The README's first command, reduced: `splatdiff-demo` with the shipped checkpoint, run in a fresh checkout (a
folder holding only the repository's checkpoints/), writes every promised output and prints a viewer command; that
command, run exactly as printed from the same folder, listens on 127.0.0.1 only and opens at the input camera of the
demo's evaluation scene. Without the demo's data the same command says in one line which command makes it."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHIPPED = Path("checkpoints/demo/splatdiff-diffusion-small/shipped/config.yml")
pytestmark = pytest.mark.slow


def fresh_checkout(root: Path) -> Path:
    """A folder laid out as a fresh clone for the demo: the shipped checkpoints, nothing else (no data/)."""
    shutil.copytree(REPO / "checkpoints", root / "checkpoints")
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`splatdiff-demo` with its default paths (data/demo, outputs/demo) in a fresh checkout: (checkout, stdout)."""
    assert (REPO / SHIPPED).is_file(), "the demo checkpoint must ship in the repository (make train-demo writes it)"
    checkout = fresh_checkout(tmp_path_factory.mktemp("checkout"))
    flags = ["--scenes", "2", "--max-inputs", "1", "--num-samples", "2"]
    out = run_cli([BIN / "splatdiff-demo", *flags], cwd=checkout)
    return checkout, out.stdout


def test_demo_with_the_shipped_checkpoint(demo):
    checkout, stdout = demo
    assert "ns-viewer --load-config" in stdout and "--viewer.websocket-host 127.0.0.1" in stdout
    summary = json.loads((checkout / "outputs" / "demo" / "summary.json").read_text())
    assert summary["run"]["kind"] == "diffusion" and len(summary["images"]) == 1
    folder = checkout / summary["images"][0]["folder"]
    assert {f"sample_0{i}.ply" for i in range(2)} | {"contact_sheet.png"} <= {p.name for p in folder.iterdir()}
    sheet = Image.open(folder / "contact_sheet.png")
    assert sheet.size[1] > 2 * 128  # two samples, one row each
    # One row per input: input, input view re-rendered, 2 samples' hidden sides, the 3 true completions (64 px each).
    completions = Image.open(checkout / "outputs" / "demo" / "completions.png")
    assert completions.size[0] >= 7 * 64 and 64 <= completions.size[1] < 2 * 64
    assert "far from the training data" not in stdout  # proving-ground inputs are what the run trained on


def printed_viewer_command(stdout: str) -> list:
    """The splatdiff-viewer command line the demo printed (without its '(listens on ...)' note)."""
    (line,) = [ln for ln in stdout.splitlines() if re.search(r"splatdiff-viewer --load-config", ln)]
    return shlex.split(line.split("(listens on")[0])


def listening_addresses(port: int) -> set:
    """The local addresses of the TCP sockets listening on `port` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]  # each 32-bit word is little-endian
                found.add(".".join(str(b) for b in words[0]) if len(raw) == 4 else b"".join(words).hex())
    return found


@pytest.fixture(scope="module")
def printed_viewer(demo, tmp_path_factory):
    """The viewer command the demo printed, run as printed from the checkout (plus a free port): (checkout, port,
    command)."""
    from test_viewer_browser import free_port, stop, wait_for_http

    checkout, stdout = demo
    command = printed_viewer_command(stdout)
    assert command[1:] == ["--load-config", str(SHIPPED)], command  # no --data: the config records data/demo
    port = free_port()
    log_path = tmp_path_factory.mktemp("viewer") / "viewer.log"
    log = open(log_path, "w")
    server = subprocess.Popen(
        [*command, "--viewer.websocket-port", str(port)],
        cwd=checkout,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        start_new_session=True,
    )
    try:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/", server, 300)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{log_path.read_text()[-3000:]}") from None
        yield checkout, port, command
    finally:
        stop(server)
        log.close()


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads the listening sockets from Linux /proc/net")
def test_the_viewer_command_the_demo_prints_works_as_printed_and_listens_on_localhost_only(printed_viewer):
    _, port, _ = printed_viewer
    assert listening_addresses(port) == {"127.0.0.1"}


def test_the_viewer_command_the_demo_prints_opens_at_the_input_camera(printed_viewer, tmp_path, monkeypatch):
    """In headless Chromium (as tests/test_viewer_browser.py), the first render is the demo's evaluation scene seen
    through its input camera: it matches the model's render from that camera, and not those from the scene's
    cameras more than 40 degrees away."""
    from test_viewer_browser import (
        MATCH,
        Chromium,
        chromium_binary,
        correlation,
        features,
        input_view,
        settled_view,
        trim,
    )

    from nerfstudio_splatdiff.runs import setup_pipeline

    binary = chromium_binary()
    checkout, port, command = printed_viewer
    monkeypatch.chdir(checkout)  # the reference loads the run as the printed command does, from the checkout
    _, pipeline, _, _ = setup_pipeline(SHIPPED, device="cpu")
    model = pipeline.model
    batch, gaussians = model.viewer_batch(), model.viewer_gaussians()
    K = batch["K"].clone()
    K[..., :2, :] *= 256 / batch["images"].shape[-2]
    views = model.render_views(gaussians, batch["c2w"], K, 256)["rgb"][0].clamp(0, 1).numpy()
    forward = batch["c2w"][0, :, :3, 2]
    far = [k for k in range(1, len(views)) if float(forward[k] @ forward[0]) < np.cos(np.radians(40))]
    assert far, "the evaluation scene has no camera far from the input"
    browser = Chromium(binary, tmp_path / "profile")
    try:
        browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        shot, view, _ = settled_view(browser, 300)
        shot.save(tmp_path / "viewer.png")
    finally:
        browser.close()
    seen = features(input_view(shot, view))
    match = correlation(seen, features(trim(views[0])))
    others = [correlation(seen, features(trim(views[k]))) for k in far]
    print(f"input camera {match:.3f}; cameras over 40 degrees away {', '.join(f'{c:.3f}' for c in others)}")
    assert seen.std() > 1 and np.isfinite(match), "the input view is a flat colour"
    assert match > MATCH and max(others) < MATCH, (match, others)


def test_the_printed_viewer_command_without_the_demo_data_names_the_command_that_makes_it(tmp_path):
    checkout = fresh_checkout(tmp_path)
    out = run_cli([BIN / "splatdiff-viewer", "--load-config", SHIPPED], check=False, cwd=checkout)
    text = out.stdout + out.stderr
    assert out.returncode == 1 and "make demo" in text and "data/demo" in text, text[-2000:]
    assert "Traceback" not in text and len([ln for ln in text.splitlines() if ln.strip()]) <= 3


SHIPPED_SHAPE = Path("checkpoints/shape/splatdiff-diffusion-small/shipped/config.yml")


def test_the_shape_demo_samples_the_geometry_checkpoint_and_shows_the_hidden_side_from_the_side(tmp_path):
    """`splatdiff-demo --modes shape` (the second half of `make demo`): the geometry proving ground's scenes in
    data/demo-shape (the shipped geometry config records it), the shipped geometry pair, a completions figure whose
    true completions differ between columns (shapes seen from the side, not the back), and a viewer command for it."""
    assert (REPO / SHIPPED_SHAPE).is_file(), "the geometry checkpoint must ship in the repository"
    checkout = fresh_checkout(tmp_path)
    flags = ["--modes", "shape", "--scenes", "2", "--max-inputs", "1", "--num-samples", "2"]
    out = run_cli([BIN / "splatdiff-demo", *flags, "--output-dir", "outputs/demo-shape"], cwd=checkout)
    assert (checkout / "data" / "demo-shape" / "procedural" / "frame_annotations.jgz").is_file()
    assert printed_viewer_command(out.stdout)[1:] == ["--load-config", str(SHIPPED_SHAPE)], out.stdout
    summary = json.loads((checkout / "outputs" / "demo-shape" / "summary.json").read_text())
    assert summary["run"]["kind"] == "diffusion" and len(summary["images"]) == 1
    sheet = np.asarray(Image.open(checkout / "outputs" / "demo-shape" / "completions.png").convert("L"), float)
    assert sheet.shape[1] >= 7 * 64 and 64 <= sheet.shape[0] < 2 * 64
    cell = lambda j: sheet[2:66, 2 + j * 66 : 2 + j * 66 + 64]  # noqa: E731 (contact_sheet: 64 px cells, 2 px gaps)
    truths = [cell(4 + k) < 250 for k in range(3)]  # the true completions' object pixels, on white
    ious = [(truths[a] & truths[b]).sum() / (truths[a] | truths[b]).sum() for a, b in ((0, 1), (0, 2), (1, 2))]
    assert max(ious) < 0.97, ious  # nothing, horn and block: different silhouettes from the side
    assert "the side" in out.stdout
