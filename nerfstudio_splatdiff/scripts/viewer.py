"""splatdiff-viewer: `ns-viewer` for splatdiff runs, with the same flags, made safe.

- It listens on 127.0.0.1 (this machine only) unless `--viewer.websocket-host` says otherwise: `ns-viewer` replaces
  the run's viewer settings with its own defaults, whose host is 0.0.0.0 (every network interface).
- config.yml is read with the safe loader (`safe_yaml.py`): a config that names anything outside the config
  classes (e.g. `!!python/object/apply:os.system`) is refused; `ns-viewer` would run it.
- The checkpoint is loaded as weights only; the newest one that loads is used (a truncated one is skipped, and named).
- It shows the evaluation scenes of the dataset config.yml records (found from any working folder when recorded
  relative to the repository, as the shipped runs record data/demo) or of --data. When that dataset is missing it
  says in one line which command makes it (`make demo` for the shipped runs' data/demo) before anything loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Optional

import tyro
from nerfstudio.configs.base_config import ViewerConfig
from rich.console import Console

from nerfstudio_splatdiff.completions import DEMO_DATA_BY_MODES
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.runs import setup_pipeline

CONSOLE = Console()
LOCAL_HOST = "127.0.0.1"


@dataclass
class LocalViewerConfig(ViewerConfig):
    """nerfstudio's viewer settings (ns-viewer's flags), listening on this machine only unless another host is given."""

    num_rays_per_chunk: tyro.conf.Suppress[int] = -1
    websocket_host: str = LOCAL_HOST
    """The host the viewer listens on: 127.0.0.1 (this machine only); 0.0.0.0 makes it reachable from the network."""

    def as_viewer_config(self) -> ViewerConfig:
        return ViewerConfig(**{x.name: getattr(self, x.name) for x in fields(self)})


@dataclass
class SplatdiffViewer:
    """Open a splatdiff run in nerfstudio's viewer (listening on 127.0.0.1 unless --viewer.websocket-host is given).
    The flags are ns-viewer's."""

    load_config: Path
    """config.yml of a splatdiff run."""
    data: Optional[Path] = None
    """The dataset whose evaluation scenes to show; default: the one config.yml records."""
    viewer: LocalViewerConfig = field(default_factory=LocalViewerConfig)
    """Viewer configuration (as ns-viewer's, but the host defaults to 127.0.0.1)."""
    vis: Literal["viewer", "viewer_legacy"] = "viewer"
    """Type of viewer"""

    def save_checkpoint(self, *args, **kwargs) -> None:
        """No-op: nerfstudio's viewer calls it on the object it is given (as ns-viewer's RunViewer)."""

    def main(self) -> None:
        config, pipeline, _, step = setup_pipeline(self.load_config, "test", data=self.data, check=check_dataset)
        num_rays_per_chunk = config.viewer.num_rays_per_chunk
        config.vis = self.vis
        config.viewer = self.viewer.as_viewer_config()
        config.viewer.num_rays_per_chunk = num_rays_per_chunk
        CONSOLE.print(
            f"Viewer listening on {config.viewer.websocket_host} "
            "(pass --viewer.websocket-host 0.0.0.0 to reach it from other machines)"
        )
        _start_viewer(config, pipeline, step)


def check_dataset(run: Any) -> None:
    """One clear line, before the datasets load, when the run's dataset is missing: for the demo's data/demo, the
    command that makes it; else the flag that points elsewhere."""
    data = Path(run.pipeline.datamanager.dataparser.data)
    # data/demo or data/demo-shape, here or below another folder
    is_demo = any(data.parts[-len(d.parts) :] == d.parts for d in DEMO_DATA_BY_MODES.values())
    if is_demo and not (data / "procedural" / "frame_annotations.jgz").is_file():
        raise SplatdiffError(
            f"{data} does not hold the demo's scenes yet: run `make demo` (or splatdiff-demo) first, which writes "
            "them, then this command again."
        )
    if not data.exists():
        raise SplatdiffError(
            f"The run's dataset {data} does not exist: pass --data <the folder it trained on, or one like it>."
        )


def _start_viewer(config, pipeline, step: int) -> None:
    """nerfstudio's ns-viewer start-up (imported here: the viewer's modules are slow to import)."""
    from nerfstudio.scripts.viewer.run_viewer import _start_viewer as start

    start(config, pipeline, step)


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    cfg = tyro.cli(tyro.conf.FlagConversionOff[SplatdiffViewer])
    try:
        cfg.main()
    except SplatdiffError as e:
        CONSOLE.print(f"[bold red]Error:[/] {e}", soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    entrypoint()
