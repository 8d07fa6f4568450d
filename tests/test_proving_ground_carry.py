"""benchmarks/proving_ground.py --carry-from: rows of baselines whose runs are gone are copied from an earlier JSON of
the same ground and split (and nothing else is), with a record of what was carried and how well the rows scored again
reproduce that file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _proving_ground():
    spec = importlib.util.spec_from_file_location("proving_ground", ROOT / "benchmarks" / "proving_ground.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _previous(tmp_path: Path) -> tuple[Path, dict]:
    previous = {
        "proving_ground": "shape",
        "split": "test",
        "date": "2026-12-03",
        "data": "2 scenes",
        "sampler": "ddim",
        "steps": {"var": 10, "diffusion": 5, "var_paper": 10, "paper_diffusion": 5},
        "runs": {"var_paper": "outputs/gone/var", "paper_diffusion": "outputs/gone/diffusion"},
        "metrics": {
            "var": {"psnr": 20.0, "hidden_silhouette_iou": 0.8},
            "var_paper": {"psnr": 18.0, "hidden_silhouette_iou": 0.7},
            "paper_diffusion_1": {"psnr": 17.0},
            "paper_diffusion_best_of_3": {"psnr": 19.0},
        },
        "modes": {
            "per_input": [
                {"scene": "a", "baselines": {"var_paper": -1}, "paper_sample_modes": [0, 0, -1]},
                {"scene": "b", "baselines": {"var_paper": 2}, "paper_sample_modes": [1, -1, -1]},
            ]
        },
    }
    path = tmp_path / "proving_ground_shape_test.json"
    path.write_text(json.dumps(previous))
    return path, previous


def test_rows_of_runs_not_loaded_are_carried_and_scored_rows_are_compared(tmp_path: Path) -> None:
    pg = _proving_ground()
    path, _ = _previous(tmp_path)
    previous = pg.read_carry_from(path, "shape", "test")
    metrics = {"var": {"psnr": 20.25, "hidden_silhouette_iou": 0.8}, "regression": {"psnr": 15.0}}
    per_input = [{"scene": "b", "baselines": {"regression": 1}}, {"scene": "a", "baselines": {"regression": -1}}]
    models = {"var": object(), "diffusion": object(), "regression": object()}

    carried = pg.carry_rows(previous, path, models, per_input, metrics, 3)

    assert set(carried["rows"]) == {"var_paper", "paper_diffusion"}
    assert carried["rows"]["paper_diffusion"]["metric_rows"] == ["paper_diffusion_1", "paper_diffusion_best_of_3"]
    assert carried["rows"]["var_paper"] == {"metric_rows": ["var_paper"], "steps": 10, "run": "outputs/gone/var"}
    assert metrics["var_paper"]["psnr"] == 18.0 and metrics["paper_diffusion_best_of_3"]["psnr"] == 19.0
    assert metrics["var"]["psnr"] == 20.25  # a row scored now is never overwritten
    # per-input modes follow the scene, not the position
    assert per_input[0]["baselines"] == {"regression": 1, "var_paper": 2}
    assert per_input[1]["paper_sample_modes"] == [0, 0, -1]
    assert carried["reproduced_rows_max_abs_diff"] == {"var": pytest.approx(0.25)}


def test_a_run_loaded_now_is_scored_not_carried(tmp_path: Path) -> None:
    pg = _proving_ground()
    path, previous = _previous(tmp_path)
    metrics = {"var_paper": {"psnr": 18.5, "hidden_silhouette_iou": 0.7}}
    per_input = [{"scene": "a", "baselines": {"var_paper": 0}}, {"scene": "b", "baselines": {"var_paper": 0}}]
    carried = pg.carry_rows(previous, path, {"var_paper": object()}, per_input, metrics, 3)
    assert set(carried["rows"]) == {"paper_diffusion"}
    assert metrics["var_paper"]["psnr"] == 18.5 and per_input[0]["baselines"]["var_paper"] == 0


@pytest.mark.parametrize(
    ("text", "modes", "split", "says"),
    [
        (None, "shape", "val", "not --modes shape --split val"),
        (None, "colour", "test", "not --modes colour --split test"),
        ("{not json", "shape", "test", "cannot be read"),
        ('{"metrics": {}}', "shape", "test", "is not a proving-ground JSON"),
    ],
)
def test_an_unusable_carry_file_is_refused_in_one_line(
    tmp_path: Path, text: str | None, modes: str, split: str, says: str
) -> None:
    pg = _proving_ground()
    path, _ = _previous(tmp_path)
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit) as e:
        pg.read_carry_from(path, modes, split)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_loss_figure_has_a_panel_only_for_runs_with_training_events(tmp_path: Path) -> None:
    """Slim copies and carried runs keep no tensorboard events: they get no (empty) panel and no steps entry."""
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    trained, slim = tmp_path / "trained", tmp_path / "slim"
    slim.mkdir()
    with SummaryWriter(str(trained)) as writer:
        for step, loss in [(0, 1.0), (5, 0.5), (9, 0.25)]:
            writer.add_scalar("Train Loss", loss, step)
    out = tmp_path / "losses.png"
    info = _proving_ground().loss_curves({"regression": trained, "var": slim}, out)
    assert set(info) == {"regression"}
    assert info["regression"]["steps"] == 10
    one_panel_width = Image.open(out).size[0]
    _proving_ground().loss_curves({"regression": trained, "again": trained, "var": slim}, out)
    assert Image.open(out).size[0] == 2 * one_panel_width


def test_no_loss_figure_when_no_run_has_training_events(tmp_path: Path) -> None:
    """Only slim copies: no figure, and the figure an earlier call left at that path is gone (no stale curves)."""
    from torch.utils.tensorboard import SummaryWriter

    trained, slim = tmp_path / "trained", tmp_path / "slim"
    slim.mkdir()
    with SummaryWriter(str(trained)) as writer:
        writer.add_scalar("Train Loss", 1.0, 0)
    out = tmp_path / "losses.png"
    _proving_ground().loss_curves({"regression": trained}, out)
    assert out.is_file()
    assert _proving_ground().loss_curves({"var": slim}, out) == {}
    assert not out.exists()


def _row(psnr: float, iou: float, depth: float, hf: float = 0.02) -> dict:
    return {
        "psnr_objects_hidden": psnr,
        "hidden_silhouette_iou": iou,
        "hidden_depth_error": depth,
        "hf_energy_hidden": hf,
    }


def test_targets_against_a_baseline_exist_only_where_it_was_scored() -> None:
    """A baseline that was neither scored nor carried is no miss: its targets are absent, not False."""
    targets = _proving_ground().baseline_targets(
        {"diffusion_1": _row(17.0, 0.7, 0.11), "diffusion_best_of_20": _row(19.0, 0.85, 0.09)},
        "diffusion_best_of_20",
        {},
    )
    assert targets == {}


def test_targets_against_scored_baselines_apply_the_stated_margins() -> None:
    metrics = {
        "diffusion_1": _row(17.0, 0.70, 0.110, hf=0.03),
        "diffusion_best_of_20": _row(19.0, 0.85, 0.090),
        "regression": _row(17.0, 0.81, 0.095, hf=0.01),  # +2 dB, IoU +0.04 (< 0.05), depth -0.005 (< 0.01)
        "paper_diffusion_best_of_20": _row(18.0, 0.79, 0.101),  # IoU +0.06, depth -0.011
    }
    targets = _proving_ground().baseline_targets(metrics, "diffusion_best_of_20", {"regression": 1.0})
    assert targets == {
        "best_of_n_hidden_ge_regression_plus_1.5db": True,
        "baselines_none_ge_70pct": True,
        "baselines_less_hf_hidden_than_diffusion": True,
        "best_of_n_hidden_iou_ge_regression_plus_0.05": False,
        "best_of_n_hidden_depth_error_le_regression_minus_0.01": False,
        "best_of_n_hidden_iou_ge_paper_diffusion_best_of_20_plus_0.05": True,
        "best_of_n_hidden_depth_error_le_paper_diffusion_best_of_20_minus_0.01": True,
    }


def test_carried_rows_need_the_shared_sampler_and_not_our_denoisers_own_settings() -> None:
    """A row carried from another denoiser must have the same steps, eta, guidance and noise; the codebook pull,
    the oversampling and the code prior act only on ours (our VAR's codebook, our prior): no block to a carry."""
    shared_sampler = _proving_ground().shared_sampler
    plain = "ddim, 50 steps, 20 samples, guidance 0.0, skip 1.0, eta 1.0"
    pulled = plain + ", codes pulled 0.5 of the way to the codebook"
    prior = pulled + ", global codes from the code prior (temperature 1.0)"
    kept = plain + ", the least undecided of 2 x 20 codes kept"
    assert shared_sampler(pulled) == shared_sampler(prior) == shared_sampler(kept) == shared_sampler(plain) == plain
    hotter = "ddim, 50 steps, 20 samples, guidance 0.0, skip 1.0, eta 1.0, noise temperature 0.8"
    assert shared_sampler(hotter + ", codes pulled 0.5 of the way to the codebook") == hotter != plain
