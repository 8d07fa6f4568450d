"""Files and folders the tools write: safe names, paths kept inside the folder they belong to, output folders that
are checked before any work, temporary `*.partial-<pid>` folders published by rename (marked as the tool's, and
removed once their process is gone: never anything else with such a name), and checkpoints written atomically and
loaded as weights only.

Rules every command follows:
- a name taken from input data (a photo's file name, a scene or sequence name, a chunk key) becomes one plain
  path component: no separators, not empty, not `.`/`..`, not hidden;
- every path written is checked to lie inside the folder it belongs to (`--output-dir`, the cache folder);
- a folder is replaced only when this tool wrote it (see `scripts/sample.py`), or with `--overwrite`.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from rich.console import Console

from nerfstudio_splatdiff.errors import SplatdiffError

CONSOLE = Console()
MAX_NAME = 120
"""Longest output name taken from an input's file name (characters)."""
PARTIAL = ".partial-"
OWNER_FILE = ".splatdiff-owner"
"""Written into every temporary folder: the host and process that build it (stale-folder clean-up reads it)."""


# -- names and paths ---------------------------------------------------------------------------------------------
def safe_name(text: str, fallback: str = "image") -> str:
    """One safe path component made from `text` (e.g. a photo's file stem): characters other than letters, digits,
    `_ - + .` become `_`, leading dots are dropped (no hidden names, no `.` or `..`), and an empty result becomes
    `fallback`."""
    name = re.sub(r"[^\w.+-]", "_", str(text), flags=re.UNICODE).lstrip(".")[:MAX_NAME].rstrip(". ")
    return name if name.strip("_") else fallback


def is_safe_component(name: Any) -> bool:
    """True for a plain, visible file or folder name: a non-empty string without separators, not `.`/`..`."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and not name.startswith(".")
        and not any(c in name for c in ("/", "\\", "\0"))
        and name.strip() == name
    )


def is_inside(path: Path, root: Path) -> bool:
    """Whether `path`, with symlinks and `..` resolved, lies inside `root` (also resolved)."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True


def child_folder(root: Path, name: Any, what: str = "name") -> Path:
    """`root / name` for a name read from data; ValueError (the caller skips and lists it) unless the name is one
    plain component and the result stays inside `root`."""
    if not is_safe_component(name):
        raise ValueError(f"its {what} {name!r} is not a plain folder name (separators, '..', hidden or empty)")
    path = Path(root) / name
    if not is_inside(path, root):
        raise ValueError(f"its {what} {name!r} leads outside {root}")
    return path


def data_file(root: Path, relative: Any, what: str) -> Path:
    """A file named by an annotation, relative to the dataset root; ValueError (skip and list) if the path is
    absolute or leads outside `root` (after resolving `..` and symlinks)."""
    if not isinstance(relative, str) or not relative:
        raise ValueError(f"{what} path {relative!r} is missing or not a string")
    if Path(relative).is_absolute():
        raise ValueError(f"{what} path {relative!r} is absolute; annotation paths must be relative to --data")
    path = Path(root) / relative
    if not is_inside(path, root):
        raise ValueError(f"{what} path {relative!r} leads outside --data {root}")
    return path


def check_output_dir(path: Path, flag: str = "--output-dir") -> None:
    """One clear error, before any work, if `path` is a file or cannot be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SplatdiffError(f"{flag} {path} is a file, not a folder: pass a folder (it is created when missing).")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise SplatdiffError(f"{flag} {path} cannot be created: {existing} is a file.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SplatdiffError(f"{flag} {path} is not writable ({existing} does not allow writing): pick another folder.")


# -- temporary folders ---------------------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _partial_pid(name: str) -> Optional[int]:
    m = re.search(re.escape(PARTIAL) + r"(\d+)$", name)
    return int(m.group(1)) if m else None


def mark_owner(folder: Path) -> None:
    """Mark a new temporary folder as this tool's: the owner file names the host and process that build it."""
    (Path(folder) / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")


def _owner(folder: Path) -> Optional[Tuple[str, int]]:
    """(host, pid) from the owner file of a folder this tool made, or None (no owner file, or not one it wrote):
    the file must be a small regular file (never a link, FIFO or device, which could point elsewhere or block)."""
    owner = Path(folder) / OWNER_FILE
    try:
        st = owner.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > 512:
            return None
        host, pid = owner.read_text().split()
        return host, int(pid)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def is_own_stale_partial(path: Path) -> bool:
    """Whether `path` is a temporary folder this tool made (`new_partial_dir` or a cache build: a real folder named
    `*.partial-<pid>` holding an owner file that names this host and that pid) whose process is gone. A user's own
    `thesis.partial-4000000` folder or `notes.partial-4000001` file is never one."""
    pid = _partial_pid(path.name)
    if pid is None or pid == os.getpid() or path.is_symlink() or not path.is_dir():
        return False
    return _owner(path) == (socket.gethostname(), pid) and not pid_alive(pid)


def remove_stale_partials(folder: Path) -> List[Path]:
    """Remove the temporary folders of killed runs in `folder`: only those this tool made (see
    `is_own_stale_partial`); folders built on another host (shared disks) or by a live process are left alone, and
    so is everything else, whatever its name. Returns what was removed."""
    removed: List[Path] = []
    if not Path(folder).is_dir():
        return removed
    for p in Path(folder).iterdir():
        if is_own_stale_partial(p):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    if removed:
        CONSOLE.print(f"[yellow]Removed {len(removed)} unfinished folder(s) of killed runs in {folder}.[/]")
    return removed


def new_partial_dir(parent: Path, stem: str) -> Path:
    """A new, empty, hidden temporary folder `<parent>/.<stem>.<random>.partial-<pid>` (never an existing one),
    marked as this tool's (`mark_owner`), so that it can be removed if this process is killed."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=f"{PARTIAL}{os.getpid()}", dir=parent))
    mark_owner(tmp)
    return tmp


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file by temporary file + rename, so it is never half-written. The temporary file lies in a
    marked temporary folder next to `path` (removed afterwards, or by the next run if this one is killed)."""
    path = Path(path)
    tmp = new_partial_dir(path.parent, path.name)
    try:
        (tmp / path.name).write_text(text)
        os.replace(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- checkpoints ---------------------------------------------------------------------------------------------------
def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save into a temporary file next to the checkpoint folder, flushed, then renamed into place: a killed
    save leaves the previous checkpoints and at most a hidden, marked `*.partial-<pid>` folder (removed by the next
    save), never a truncated `step-*.ckpt`."""
    import torch

    path = Path(path)
    tmp = new_partial_dir(path.parent.parent, path.name)  # outside the folder nerfstudio lists
    try:
        with open(tmp / path.name, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_step(path: Path) -> int:
    m = re.fullmatch(r"step-(\d+)\.ckpt", Path(path).name)
    return int(m.group(1)) if m else -1


def list_checkpoints(folder: Path) -> List[Path]:
    """`step-*.ckpt` files of a nerfstudio_models folder, oldest first."""
    return sorted((p for p in Path(folder).glob("step-*.ckpt") if checkpoint_step(p) >= 0), key=checkpoint_step)


class CheckpointUnreadable(Exception):
    """A checkpoint that cannot be loaded (truncated, corrupt, or holding more than weights)."""


def load_checkpoint_file(path: Path) -> Dict[str, Any]:
    """A nerfstudio checkpoint loaded with `weights_only=True` (tensors, numbers, strings and containers only: a
    pickle payload is refused, never run)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointUnreadable(
            f"it holds Python objects other than weights, refused (weights_only): {str(e).splitlines()[0][:160]}"
        ) from e
    except Exception as e:  # noqa: BLE001 - torch.load raises many kinds on a truncated or corrupt file
        raise CheckpointUnreadable(f"it is truncated or corrupt ({type(e).__name__})") from e
    if not isinstance(state, dict) or "pipeline" not in state:
        raise CheckpointUnreadable("it is not a nerfstudio checkpoint (no 'pipeline')")
    return state


def load_newest_checkpoint(folder: Path, how: str = "train the run first") -> Tuple[Path, Dict[str, Any]]:
    """(path, state) of the newest `step-*.ckpt` in `folder` that loads; the ones skipped are named in a yellow line.
    One clear error when none loads."""
    ckpts = list_checkpoints(folder)
    if not ckpts:
        raise SplatdiffError(f"No checkpoint (step-*.ckpt) in {folder}: {how}.")
    problems = []
    for ckpt in reversed(ckpts):
        try:
            state = load_checkpoint_file(ckpt)
        except CheckpointUnreadable as e:
            problems.append(f"{ckpt.name}: {e}")
            continue
        if problems:
            CONSOLE.print(
                f"[yellow]Skipped {len(problems)} checkpoint(s) that do not load ({'; '.join(problems)}); "
                f"using {ckpt.name}.[/]",
                soft_wrap=True,
            )
        return ckpt, state
    raise SplatdiffError(f"No checkpoint in {folder} loads ({'; '.join(problems)}): {how}.")
