"""User-facing errors: one clear sentence that says what went wrong and what to do.

The config dataclasses check their options with `check_option` in `__post_init__`, so a value that cannot work is
refused when the flags are parsed (by `ns-train` as by `splatdiff-train`), before any data loads or any training
runs. `install_one_line_errors` makes a SplatdiffError that nothing caught print as one red line instead of a
traceback (nerfstudio's `ns-train` does not catch them; the method configs install it when they load)."""

from __future__ import annotations

import math
import sys
from typing import Any, Sequence, Union


class SplatdiffError(ValueError):
    """An error the user caused (bad input, missing file, ...), with a message that says what to do."""


def check_option(ok: bool, flag: str, value: Any, need: str) -> None:
    """Refuse an option value that cannot work, in one line naming the flag, its value and what to pass. Write
    `ok` so that NaN fails it (`x >= 0`, not `not x < 0`)."""
    if not ok:
        raise SplatdiffError(f"{flag} {value} cannot work: pass {need}.")


def is_number_in(value: Any, low: Union[int, float], high: Union[int, float] = math.inf) -> bool:
    """Whether `value` is a real number (not a bool, not NaN) in [low, high]."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def check_norm_groups(prefix: str, widths: Sequence[int], groups: int) -> None:
    """GroupNorm splits every level's channels into `groups` groups: each width must be a positive multiple of it."""
    check_option(is_number_in(groups, 1) and int(groups) == groups, f"{prefix}.norm-num-groups", groups, "at least 1")
    check_option(len(widths) > 0, f"{prefix}.block-out-channels", "(none)", "one width per level")
    bad = [w for w in widths if not (isinstance(w, int) and w >= 1 and w % groups == 0)]
    check_option(
        not bad,
        f"{prefix}.block-out-channels",
        " ".join(str(w) for w in widths),
        f"widths that are positive multiples of {prefix}.norm-num-groups {groups} (GroupNorm splits each level's "
        f"channels into that many groups; {', '.join(str(w) for w in bad)} cannot be split so)",
    )


def check_network_shape(prefix: str, widths: Sequence[int], groups: int, layers: int) -> None:
    """The options every U-Net-shaped network config shares: widths per level that GroupNorm can split into `groups`,
    and at least one ResNet layer per level."""
    check_norm_groups(prefix, widths, groups)
    check_option(is_number_in(layers, 1), f"{prefix}.layers-per-block", layers, "at least 1")


def _one_line_hook(kind: type, error: BaseException, tb: Any) -> None:
    if isinstance(error, SplatdiffError):
        from rich.console import Console
        from rich.text import Text

        Console(stderr=True).print(Text.assemble(("Error: ", "bold red"), str(error)), soft_wrap=True)
        return
    _one_line_hook.previous(kind, error, tb)  # type: ignore[attr-defined]


def install_one_line_errors() -> None:
    """Print an uncaught SplatdiffError as one red line (exit status 1, as for any uncaught error); every other
    exception goes to the hook that was there. Installed once."""
    if sys.excepthook is not _one_line_hook:
        _one_line_hook.previous = sys.excepthook  # type: ignore[attr-defined]
        sys.excepthook = _one_line_hook
