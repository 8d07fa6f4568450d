"""The viewer in a real browser: ns-viewer serves a tiny diffusion run on 127.0.0.1, headless Chromium opens the
page, and the screenshot's render area shows the scene (non-background pixels)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI"):
        pytest.fail("Chromium is missing on CI: .ci/run installs the Debian chromium package before the tests.")
    pytest.skip("needs Chromium (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"ns-viewer exited with {server.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read(100)
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"ns-viewer did not serve {url} within {seconds} s")


def render_area(png: Path) -> np.ndarray:
    """The 3D view of the screenshot: below the title bar, left of the control panel."""
    img = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32) / 255
    h, w, _ = img.shape
    return img[int(0.1 * h) :, : int(0.6 * w)]


def test_viewer_renders_the_scene_in_headless_chromium(tiny_diffusion_run, tmp_path):
    browser = chromium()
    _, config = tiny_diffusion_run
    port = free_port()
    log = open(tmp_path / "viewer.log", "w")
    server = subprocess.Popen([str(BIN / "ns-viewer"), "--load-config", str(config), "--viewer.websocket-host", "127.0.0.1",
                               "--viewer.websocket-port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, server, 180)
        shot = tmp_path / "viewer.png"
        for attempt in range(3):  # the first render can arrive after the first screenshot on a busy machine
            subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,700",
                            f"--virtual-time-budget={15000 * (attempt + 1)}", f"--screenshot={shot}", url],
                           capture_output=True, timeout=180)  # fmt: skip
            area = render_area(shot)
            # The model renders on a black background; the scene is whatever is not black.
            scene_fraction = float((area.max(axis=-1) > 0.15).mean())
            if scene_fraction > 0.01:
                break
        assert shot.is_file(), "Chromium wrote no screenshot"
        assert scene_fraction > 0.01, f"only {scene_fraction:.4f} of the render area shows the scene"
        assert float(area.std()) > 0.02  # an image with structure, not a flat colour
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and everything it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
    assert server.poll() is not None
