"""Standard 3DGS binary .ply export/import (the layout of the original 3DGS code, read by common splat viewers).

Per vertex, little-endian float32: x y z nx ny nz f_dc_0..2 opacity scale_0..2 rot_0..3, where f_dc is the
degree-0 SH coefficient ((rgb - 0.5) / C0), opacity is a logit, scales are logs and rot is (w, x, y, z).
Extra properties (e.g. f_rest_*) are ignored on import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.gaussians import Gaussians

SH_C0 = 0.28209479177387814
FIELDS = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)
_PLY_TYPES = {
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
    "uchar": "u1",
    "uint8": "u1",
    "char": "i1",
    "int8": "i1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
}
_OPACITY_EPS = 1e-7  # keeps the logit finite for opacities of exactly 0 or 1


def save_ply(path: Union[str, Path], gaussians: Gaussians) -> Path:
    """Write the single scene in `gaussians` (batch size 1) as a 3DGS .ply file."""
    if gaussians.batch_size != 1:
        raise SplatdiffError(
            f"save_ply writes one scene; got a batch of {gaussians.batch_size} (use gaussians.scene(i))."
        )
    g = gaussians.detach().to("cpu", torch.float64)
    opac = g.opacities[0].clamp(_OPACITY_EPS, 1 - _OPACITY_EPS)
    cols = {
        "xyz": g.means[0],
        "normals": torch.zeros_like(g.means[0]),
        "f_dc": (g.colors[0] - 0.5) / SH_C0,
        "opacity": torch.log(opac / (1 - opac))[:, None],
        "scale": torch.log(g.scales[0]),
        "rot": g.quats[0],  # stored as given (3DGS readers normalise), so files round-trip bit-exactly
    }
    data = torch.cat(list(cols.values()), dim=1).numpy().astype("<f4")
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {data.shape[0]}\n" + "".join(f"property float {name}\n" for name in FIELDS) + "end_header\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(np.ascontiguousarray(data).tobytes())
    return path


def _read_header(f, path: Path) -> tuple[int, list[tuple[str, str]], str]:
    if f.readline().strip() != b"ply":
        raise SplatdiffError(f"{path} is not a .ply file (it does not start with 'ply').")
    fmt, count, props, element = None, None, [], None
    while True:
        line = f.readline()
        if not line:
            raise SplatdiffError(f"{path}: the .ply header has no 'end_header' line; the file is truncated or corrupt.")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            element = words[1]
            if element == "vertex":
                count = int(words[2])
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list":
                raise SplatdiffError(f"{path}: list properties in the vertex element are not a 3DGS layout.")
            if words[1] not in _PLY_TYPES:
                raise SplatdiffError(f"{path}: unknown .ply property type {words[1]!r}.")
            props.append((words[2], _PLY_TYPES[words[1]]))
    if count is None:
        raise SplatdiffError(f"{path}: the .ply file has no 'vertex' element, so it holds no Gaussians.")
    return count, props, fmt or ""


def load_ply(path: Union[str, Path], dtype: torch.dtype = torch.float32) -> Gaussians:
    """Read a 3DGS .ply file (binary little- or big-endian) into a batch of one scene."""
    path = Path(path)
    if not path.is_file():
        raise SplatdiffError(f"No .ply file at {path}; check the path.")
    with open(path, "rb") as f:
        count, props, fmt = _read_header(f, path)
        if fmt not in ("binary_little_endian", "binary_big_endian"):
            raise SplatdiffError(f"{path}: .ply format {fmt!r} is not supported; save it as binary_little_endian.")
        missing = [name for name in FIELDS if name not in {p for p, _ in props} and not name.startswith("n")]
        if missing:
            raise SplatdiffError(
                f"{path} is not a 3DGS splat file: it lacks the vertex fields {', '.join(missing)}. "
                "Export Gaussians with splatdiff-export (or any 3DGS trainer) to get them."
            )
        endian = "<" if fmt == "binary_little_endian" else ">"
        dt = np.dtype([(name, endian + t) for name, t in props])
        buf = f.read(count * dt.itemsize)
    if len(buf) < count * dt.itemsize:
        raise SplatdiffError(f"{path}: expected {count} Gaussians but the file is truncated.")
    arr = np.frombuffer(buf, dtype=dt, count=count)

    def col(*names: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([arr[n].astype(np.float64) for n in names], axis=-1))

    opacity_logit = col("opacity")[:, 0]
    g = Gaussians(
        means=col("x", "y", "z")[None],
        quats=col("rot_0", "rot_1", "rot_2", "rot_3")[None],
        scales=torch.exp(col("scale_0", "scale_1", "scale_2"))[None],
        opacities=torch.sigmoid(opacity_logit)[None],
        colors=(0.5 + SH_C0 * col("f_dc_0", "f_dc_1", "f_dc_2"))[None],
    )
    return g.to(dtype)
