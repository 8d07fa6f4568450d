"""What a splatdiff run is, in a module that imports nothing heavy (commands check it before loading any model)."""

from __future__ import annotations

from typing import Literal

RunKind = Literal["var", "regression", "diffusion"]
"""What a splatdiff run is: a VAR and the regression baseline reconstruct (one deterministic answer per input); a
diffusion run samples (a different complete scene per seed) and decodes through a frozen VAR."""
