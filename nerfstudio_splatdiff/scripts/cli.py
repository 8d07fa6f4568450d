"""How every splatdiff console script runs: tyro parses the flags, and a user error (SplatdiffError) prints one
red line, unwrapped, and exits with status 1 instead of a traceback."""

from __future__ import annotations

import warnings
from typing import Type

import tyro
from rich.console import Console

from nerfstudio_splatdiff.errors import SplatdiffError

CONSOLE = Console()


def run_command(command: Type) -> None:
    """Parse `command` (a dataclass with a `main()` method) from the command line and run it."""
    cfg = tyro.cli(command)
    # nerfstudio's camera helpers are `torch.jit.script`ed at import, which this torch deprecates with a
    # FutureWarning on every start: noise a user cannot act on (it is nerfstudio's to change).
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    try:
        cfg.main()
    except SplatdiffError as e:
        CONSOLE.print(f"[bold red]Error:[/] {e}", soft_wrap=True)
        raise SystemExit(1) from None
