"""The package's layers point down only: command-line tools live in scripts/ and nothing below imports them; the
commands that moved there keep their flags."""

from __future__ import annotations

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "nerfstudio_splatdiff"
BELOW_SCRIPTS = ["runs.py", "pipeline.py", "data", "models", "splats"]


def imported_modules(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_module_below_scripts_imports_scripts():
    files = [p for part in BELOW_SCRIPTS for p in ([PACKAGE / part] if part.endswith(".py") else (PACKAGE / part).rglob("*.py"))]
    offenders = {str(f.relative_to(PACKAGE)): sorted(m for m in imported_modules(f) if m.startswith("nerfstudio_splatdiff.scripts"))
                 for f in files}  # fmt: skip
    assert len(files) > 10 and not {f: m for f, m in offenders.items() if m}


def test_the_commands_in_scripts_keep_their_flags():
    """Every flag they had before moving still parses into the same fields."""
    import tyro

    from nerfstudio_splatdiff.scripts.make_procedural import MakeProcedural
    from nerfstudio_splatdiff.scripts.slim_run import SlimRun

    slim = tyro.cli(SlimRun, args=["--load-config", "r/config.yml", "--output-dir", "o", "--experiment-name", "e",
                                   "--data", "d", "--overwrite"])  # fmt: skip
    assert (slim.load_config, slim.output_dir, slim.experiment_name, slim.data, slim.overwrite) == (
        Path("r/config.yml"), Path("o"), "e", Path("d"), True)
    make = tyro.cli(MakeProcedural, args=["--output", "o", "--scenes", "3", "--views", "4", "--resolution", "32",
                                          "--seed", "5", "--category", "c", "--workers", "0", "--num-modes", "2",
                                          "--overwrite", "--preview", "--kind", "object", "--force-mode", "1"])  # fmt: skip
    assert (make.output, make.scenes, make.views, make.resolution, make.seed, make.category, make.workers,
            make.num_modes, make.overwrite, make.preview, make.kind, make.force_mode) == (
        Path("o"), 3, 4, 32, 5, "c", 0, 2, True, True, "object", 1)  # fmt: skip


def test_the_moved_commands_are_installed_where_they_now_live():
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["splatdiff-slim-run"] == "nerfstudio_splatdiff.scripts.slim_run:entrypoint"
    assert scripts["splatdiff-make-procedural"] == "nerfstudio_splatdiff.scripts.make_procedural:entrypoint"
