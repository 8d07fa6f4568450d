"""The package's layers point down only (splats < data < models < runs < pipeline / scripts); command-line tools live
in scripts/, and the commands that moved there keep their flags."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nerfstudio_splatdiff"
RANKS = {
    "errors": 0,
    "safety": 0,
    "safe_yaml": 0,
    "schedulers": 0,
    "optimizers": 0,
    "lean_start": 0,
    "splats": 1,
    "data": 2,
    "models": 3,
    "runs": 4,
    "completions": 4,
    "generation": 4,
    "sample_writer": 4,
    "trainer": 4,
    "pipeline": 5,
    "scripts": 5,
}
"""splats < data < models < runs < pipeline / scripts; helpers every layer may use at the bottom."""


def imported_modules(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def layer(module: str) -> str:
    """The layer of a package module: its first component below the package ("data", "runs", ...)."""
    return module.split(".")[1]


def test_every_module_imports_only_its_own_layer_or_those_below():
    files = [f for f in PACKAGE.rglob("*.py") if f.name != "__init__.py" or f.parent != PACKAGE]
    upward = {}
    for f in files:
        own = layer("nerfstudio_splatdiff." + ".".join(f.relative_to(PACKAGE).with_suffix("").parts))
        for m in imported_modules(f):
            if m.startswith("nerfstudio_splatdiff.") and RANKS[layer(m)] > RANKS[own]:
                upward.setdefault(str(f.relative_to(PACKAGE)), []).append(m)
    assert len(files) > 30 and set(RANKS) >= {
        layer("nerfstudio_splatdiff." + f.relative_to(PACKAGE).parts[0].removesuffix(".py")) for f in files
    }
    assert not upward


def test_no_command_imports_another_command():
    """What the commands share lies below scripts/ (generation.py, sample_writer.py, ...); scripts/ modules import
    only the command runner `scripts.cli` of their own folder (splatdiff-demo and -export no longer lean on
    splatdiff-sample's module)."""
    sideways = {
        f.name: sorted(m for m in imported_modules(f) if m.startswith("nerfstudio_splatdiff.scripts."))
        for f in (PACKAGE / "scripts").glob("*.py")
    }
    assert len(sideways) >= 8 and "nerfstudio_splatdiff.scripts.cli" in sideways["demo.py"]
    assert {name: ms for name, ms in sideways.items() if set(ms) - {"nerfstudio_splatdiff.scripts.cli"}} == {}


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check above can fail: a data module importing a model is an upward arrow."""
    f = tmp_path / "x.py"
    f.write_text("from nerfstudio_splatdiff.models.var_net import VARNet\n")
    assert any(RANKS[layer(m)] > RANKS["data"] for m in imported_modules(f) if m.startswith("nerfstudio_splatdiff."))


def test_the_commands_in_scripts_keep_their_flags():
    """Every flag they had before moving still parses into the same fields."""
    import tyro

    from nerfstudio_splatdiff.scripts.make_procedural import MakeProcedural
    from nerfstudio_splatdiff.scripts.slim_run import SlimRun

    slim = tyro.cli(
        SlimRun,
        args=[
            "--load-config",
            "r/config.yml",
            "--output-dir",
            "o",
            "--experiment-name",
            "e",
            "--data",
            "d",
            "--overwrite",
        ],
    )
    assert (slim.load_config, slim.output_dir, slim.experiment_name, slim.data, slim.overwrite) == (
        Path("r/config.yml"),
        Path("o"),
        "e",
        Path("d"),
        True,
    )
    make = tyro.cli(
        MakeProcedural,
        args=[
            "--output",
            "o",
            "--scenes",
            "3",
            "--views",
            "4",
            "--resolution",
            "32",
            "--seed",
            "5",
            "--category",
            "c",
            "--workers",
            "0",
            "--num-modes",
            "2",
            "--overwrite",
            "--preview",
            "--kind",
            "object",
            "--force-mode",
            "1",
        ],
    )
    assert (
        make.output,
        make.scenes,
        make.views,
        make.resolution,
        make.seed,
        make.category,
        make.workers,
        make.num_modes,
        make.overwrite,
        make.preview,
        make.kind,
        make.force_mode,
    ) == (Path("o"), 3, 4, 32, 5, "c", 0, 2, True, True, "object", 1)


def test_the_moved_commands_are_installed_where_they_now_live():
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["splatdiff-slim-run"] == "nerfstudio_splatdiff.scripts.slim_run:entrypoint"
    assert scripts["splatdiff-make-procedural"] == "nerfstudio_splatdiff.scripts.make_procedural:entrypoint"
