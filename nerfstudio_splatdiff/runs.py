"""Trained runs on disk: loading a run's model for inference (no dataset needed, wherever the run folder now
lives), and slim inference-only copies of runs (what the repository ships for the demo; written by
scripts/slim_run.py).

A slim run is a normal nerfstudio run folder (`config.yml` + `nerfstudio_models/step-N.ckpt`) whose checkpoint
holds only the weights inference uses, in float16: the EMA weights stored as the trained network, no optimiser
state, no EMA copy and (for a diffusion run) no copy of the frozen VAR, which loads from its own run. The
pipeline recognises it by `SLIM_MARKER` and loads it non-strictly, checking that only those parts are absent.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import yaml

from nerfstudio_splatdiff.errors import SplatdiffError, is_number_in
from nerfstudio_splatdiff.models.diffusion import MAX_CODE_OVERSAMPLE
from nerfstudio_splatdiff.models.scene_model import splatdiff_model_config
from nerfstudio_splatdiff.models.var_checkpoint import (
    load_checkpoint,
    load_inference_config,
    load_run_config,
    resolve_run,
)
from nerfstudio_splatdiff.safety import atomic_torch_save, atomic_write_text, is_safe_component

SLIM_MARKER = "_splatdiff_slim"
EMA_PREFIX = "_model.ema."
SLIM_DROPPED_PREFIXES = (EMA_PREFIX, "_model.var.")
"""State-dict prefixes a slim checkpoint leaves out (the EMA copy; a diffusion model's frozen VAR)."""


FRESH_MARKER = "_splatdiff_fresh:"
"""A pipeline-state key `FRESH_MARKER + prefix` marks a warm start for a model with a part the checkpoint lacks (its
keys under `prefix`): that part loads missing and starts from its initialisation (`with_fresh_part`)."""


DDP_MODEL_PREFIX = "_model.module."
"""How a pipeline state names the model's keys while DistributedDataParallel wraps the model."""


def without_ddp_prefix(pipeline_state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The pipeline state with the model's keys as an unwrapped model names them (`_model.net...`, not DDP's
    `_model.module.net...`), so a checkpoint reads the same whatever the number of processes that trained it."""
    model_keys = [k for k in pipeline_state if k.startswith("_model.")]
    if not model_keys or not all(k.startswith(DDP_MODEL_PREFIX) for k in model_keys):
        return dict(pipeline_state)
    return {
        ("_model." + k[len(DDP_MODEL_PREFIX) :] if k.startswith("_model.") else k): v for k, v in pipeline_state.items()
    }


def check_shapes(model: torch.nn.Module, model_state: Dict[str, torch.Tensor]) -> None:
    """One clear error, instead of torch's line per tensor, when the checkpoint's weights have other shapes than the
    model's (a run trained with other widths, groups or Gaussians per pixel)."""
    own = model.state_dict()
    wrong = [k for k, v in model_state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise SplatdiffError(
            f"The checkpoint's weights have other shapes than the model the config describes ({len(wrong)} "
            f"tensor(s), e.g. {k}: {list(model_state[k].shape)} in the checkpoint, {list(own[k].shape)} in the "
            "model): it was trained with other network options (widths, groups, Gaussians per pixel, image size); "
            "load it with the same options, i.e. the config.yml of the run that wrote it."
        )


def check_frozen_copies(model: Any, model_state: Dict[str, torch.Tensor]) -> None:
    """One clear error when a checkpoint's copy of a frozen part (`SceneModel.frozen_parts`: a diffusion run's VAR)
    differs from what the model just loaded from that part's source: the checkpoint was trained over other weights
    (the config's `var_checkpoint` was pointed elsewhere, or that VAR run trained on), and loading it would silently
    put the old copy back in place of the VAR the config names."""
    own = model.state_dict()
    for prefix, source in model.frozen_parts().items():
        differ = [
            k
            for k, v in model_state.items()
            if k.startswith(prefix)
            and k in own
            and not torch.allclose(v.float(), own[k].float().to(v.device), rtol=1e-3, atol=1e-5)
        ]
        if differ:
            raise SplatdiffError(
                f"The checkpoint was trained over other VAR weights than {source} holds now "
                f"({len(differ)} tensor(s) differ, e.g. {differ[0]}): point the config's var_checkpoint "
                "(--pipeline.model.var-checkpoint) at the run it was trained over, or, to pair its denoiser with "
                "this VAR on purpose, write a slim copy, which holds no VAR "
                "(splatdiff-slim-run --var-config <that VAR>)."
            )


def load_model_state(model: torch.nn.Module, pipeline_state: Dict[str, torch.Tensor]) -> None:
    """Load a checkpoint's pipeline state into the model: strictly, except that a slim checkpoint may lack exactly
    the EMA copy and the frozen VAR, and a warm start marked by `with_fresh_part` the part it names. A state saved
    with the model in DDP loads too. A full checkpoint's copy of a frozen part must match what the model loaded from
    that part's source (`check_frozen_copies`)."""
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in pipeline_state.items()}
    state = without_ddp_prefix(state)
    slim = state.pop(SLIM_MARKER, None) is not None
    fresh = tuple(k[len(FRESH_MARKER) :] for k in state if k.startswith(FRESH_MARKER))  # parts a warm start adds
    for prefix in fresh:
        del state[FRESH_MARKER + prefix]
    model_state = {k[len("_model.") :]: v for k, v in state.items() if k.startswith("_model.")}
    check_shapes(model, model_state)
    check_frozen_copies(model, model_state)
    missing, unexpected = model.load_state_dict(model_state, strict=False)
    allowed = (SLIM_DROPPED_PREFIXES if slim else ()) + fresh
    bad = [k for k in missing if not f"_model.{k}".startswith(allowed)] + list(unexpected)
    if bad:
        raise SplatdiffError(
            f"The checkpoint does not match the model in config.yml (e.g. {bad[:3]}); load it with "
            "the config.yml of the run that wrote it (or write the slim copy again)."
        )


def with_fresh_part(pipeline_state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """A pipeline state that a model with one more part (its keys under `prefix`, e.g. "_model.code_prior.") loads:
    the same weights, marked so that the part may be missing and starts from its initialisation. One clear error when
    the checkpoint has that part already."""
    if any(k.startswith(prefix) for k in pipeline_state):
        raise SplatdiffError(f"The checkpoint has {prefix}* already: warm-start from it as it is.")
    return {**pipeline_state, FRESH_MARKER + prefix: torch.ones(())}


PRIVILEGED_PREFIXES = ("_model.net.privileged.", EMA_PREFIX + "module.privileged.")
"""Pipeline-state prefixes of a VAR's privileged branch (models/privileged.py): the trained network's and its EMA's."""


def without_privileged_branch(pipeline_state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A privileged-view VAR's pipeline state without the privileged branch: every other weight of the network, as an
    input-only VAR of the same options (`privileged_view` off, the same `global_code`) loads it. The paper's recipe
    at equal compute starts from our checkpoint this way (benchmarks/paper_recipe_init.py). One clear error when
    there is no branch to remove."""
    kept = {k: v for k, v in pipeline_state.items() if not k.startswith(PRIVILEGED_PREFIXES)}
    if len(kept) == len(pipeline_state):
        raise SplatdiffError("The checkpoint has no privileged branch: it is an input-only VAR already; load it as is.")
    return kept


OUTPUT_LAYER_SUFFIXES = ("decoder.conv_out.weight", "decoder.conv_out.bias")
"""A VAR's Splatter Image output layer (the decoder's last convolution: M x 15 channels), in the network and its EMA."""


def with_more_gaussians_per_pixel(
    pipeline_state: Dict[str, torch.Tensor], new_m: int, opacity_bias: float, seed: int = 0
) -> Tuple[Dict[str, torch.Tensor], int]:
    """A VAR's pipeline state whose output layer predicts `new_m` Gaussians per pixel instead of its own M: the M it
    has keep their weights, the new ones get the Splatter Image initialisation (models/splatter_head.py) except that
    their opacity is the constant sigmoid(`opacity_bias`) (zero weights), so they start faint and the renders close
    to the old ones (too faint, e.g. -5, and they never learn to be seen). It lets an M ablation
    warm-start from a trained checkpoint instead of training from the start (benchmarks/more_gaussians_init.py).
    Returns the state and the old M; one clear error when there is no output layer or M would not grow."""
    from nerfstudio_splatdiff.models.splatter_head import (
        CHANNELS_PER_GAUSSIAN,
        LAYOUT,
        SplatterHead,
        SplatterHeadConfig,
    )

    keys = [k for k in pipeline_state if k.endswith(OUTPUT_LAYER_SUFFIXES)]
    if not keys:
        raise SplatdiffError("The checkpoint has no VAR output layer (decoder.conv_out): pass a splatdiff-var run's.")
    old_channels = pipeline_state[keys[0]].shape[0]
    old_m = old_channels // CHANNELS_PER_GAUSSIAN
    if new_m <= old_m:
        raise SplatdiffError(f"The checkpoint has {old_m} Gaussians per pixel already: pass a larger number.")
    head = SplatterHead(SplatterHeadConfig(gaussians_per_pixel=new_m, opacity_bias=opacity_bias))
    out = dict(pipeline_state)
    weight = pipeline_state[next(k for k in keys if k.endswith("weight"))]
    with torch.random.fork_rng(devices=[]):  # the same new weights for the same seed; the caller's RNG untouched
        torch.manual_seed(seed)
        fresh = torch.nn.Conv2d(weight.shape[1], head.out_channels, tuple(weight.shape[2:]))
        head.init_output_layer(fresh)
        start = LAYOUT["opacity"][0]
        fresh.weight.data[start::CHANNELS_PER_GAUSSIAN] = 0  # opacity = sigmoid(bias) whatever the features
    for k in keys:
        old = pipeline_state[k]
        new = (fresh.weight if k.endswith("weight") else fresh.bias).detach().to(old.dtype).clone()
        new[:old_channels] = old
        out[k] = new
    return out, old_m


_RESNET_KEY = re.compile(r"^(.*(?:encoder\.down_blocks|decoder\.up_blocks)\.\d+\.resnets\.)(\d+)\.(.+)$")
"""A residual block of the VAR's encoder or decoder levels (diffusers' Encoder / Decoder): prefix, index, parameter."""
_RESNET_LEVEL = re.compile(r"(?:encoder\.down_blocks|decoder\.up_blocks)\.\d+\.resnets\.$")
"""The part of a residual-block prefix that names the level, the same in the network and in its EMA."""


def with_more_layers_per_block(
    pipeline_state: Dict[str, torch.Tensor], new_layers: int, seed: int = 0
) -> Tuple[Dict[str, torch.Tensor], int]:
    """A VAR's pipeline state with `new_layers` residual blocks per encoder level (and one more per decoder level, as
    diffusers builds them) instead of its own: the old blocks keep their weights, the new ones are appended at the
    end of each level with their last convolution at zero, so each starts as the identity (a residual block adds its
    convolution path to its input) and the network computes exactly what it did. A depth (capacity) ablation can
    then warm-start from a trained checkpoint (benchmarks/deeper_init.py) with
    `--pipeline.model.network.layers-per-block N`. Returns the state and the old number; one clear error when there
    are no such blocks or the number would not grow."""
    blocks: Dict[str, int] = {}  # level prefix -> number of residual blocks it has
    for key in pipeline_state:
        match = _RESNET_KEY.match(key)
        if match:
            blocks[match[1]] = max(blocks.get(match[1], 0), int(match[2]) + 1)
    encoder_levels = [n for prefix, n in blocks.items() if ".encoder." in f".{prefix}"]
    if not encoder_levels:
        raise SplatdiffError("The checkpoint has no VAR encoder/decoder blocks: pass a splatdiff-var run's.")
    old_layers = min(encoder_levels)
    if new_layers <= old_layers:
        raise SplatdiffError(f"The checkpoint has {old_layers} layers per block already: pass a larger number.")
    out = dict(pipeline_state)
    fresh: Dict[str, torch.nn.Conv2d] = {}  # one new convolution per block, shared by the network and its EMA
    with torch.random.fork_rng(devices=[]):  # the same new weights for the same seed; the caller's RNG untouched
        torch.manual_seed(seed)
        for prefix, n in sorted(blocks.items(), key=lambda item: _RESNET_LEVEL.search(item[0])[0]):
            last = f"{prefix}{n - 1}."
            width = pipeline_state[f"{last}conv2.weight"].shape[0]
            dtype = pipeline_state[f"{last}conv2.weight"].dtype
            for j in range(n, n + new_layers - old_layers):
                new = f"{prefix}{j}."
                name = f"{_RESNET_LEVEL.search(prefix)[0]}{j}"
                if name not in fresh:
                    fresh[name] = torch.nn.Conv2d(width, width, 3, padding=1)  # PyTorch's default initialisation
                conv1 = fresh[name]
                out[f"{new}norm1.weight"] = torch.ones(width, dtype=dtype)
                out[f"{new}norm1.bias"] = torch.zeros(width, dtype=dtype)
                out[f"{new}conv1.weight"] = conv1.weight.detach().to(dtype).clone()
                out[f"{new}conv1.bias"] = conv1.bias.detach().to(dtype).clone()
                out[f"{new}norm2.weight"] = torch.ones(width, dtype=dtype)
                out[f"{new}norm2.bias"] = torch.zeros(width, dtype=dtype)
                out[f"{new}conv2.weight"] = torch.zeros(width, width, 3, 3, dtype=dtype)
                out[f"{new}conv2.bias"] = torch.zeros(width, dtype=dtype)
    return out, old_layers


def _find_relative(path: Path, config_path: Path) -> Path:
    """A path recorded relative to where training ran: as given if it exists, else against the config's parents."""
    if path.is_absolute() or path.exists():
        return path
    for parent in config_path.resolve().parents:
        if (parent / path).exists():
            return parent / path
    return path


def find_var_run(recorded: Optional[Path], config_path: Path, flag: str) -> Path:
    """The frozen VAR run a diffusion run's config.yml records (`var_checkpoint`), found as `load_inference_model`
    finds it: as given (relative to the working folder), else against the run's own parent folders, so a shipped
    run works from any working folder. One clear error, naming `flag` (a flag of the calling command that points
    at the VAR run instead), when it is not there."""
    if recorded is None:
        raise SplatdiffError(f"{config_path} records no VAR run (var_checkpoint): pass {flag} <VAR run>/config.yml.")
    path = _find_relative(Path(recorded), Path(config_path))
    if not path.exists():
        raise SplatdiffError(
            f"{config_path} records its VAR run at {recorded}, which is not there (nor under the run's parent "
            f"folders): pass {flag} <VAR run>/config.yml, or run from the folder training ran in."
        )
    return path


def load_inference_model(config_path: Path, device: str = "cpu") -> Tuple[Any, Any]:
    """(model in eval mode, run config as `load_inference_config` reads it) of a splatdiff run, built without its
    dataset and without nerfstudio's trainer and pipeline classes. The checkpoint is the newest that loads (as
    weights only) in the nerfstudio_models folder next to config.yml, so a moved or shipped run folder still loads."""
    from nerfstudio.data.scene_box import SceneBox

    config_path = Path(config_path)
    if not config_path.is_file():
        raise SplatdiffError(
            f"No config.yml at {config_path}: pass --load-config outputs/<exp>/<method>/<timestamp>/config.yml."
        )
    run = load_inference_config(config_path)
    model_cfg = splatdiff_model_config(run, config_path)
    if model_cfg.needs_frozen_var and model_cfg.var_checkpoint is not None:
        model_cfg.var_checkpoint = _find_relative(Path(model_cfg.var_checkpoint), config_path)
    folder = config_path.parent / "nerfstudio_models"
    _, source = resolve_run(folder if folder.is_dir() else config_path)
    _, loaded = load_checkpoint(source)  # before the model is built: a bad checkpoint fails fast
    model = model_cfg.setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=0, metadata={}, device=device
    )
    load_model_state(model, loaded["pipeline"])
    return model.to(device).eval(), run


def run_depth_range(run: Any) -> Tuple[float, float]:
    """The splatter depth range (`--pipeline.datamanager.depth-range`, around the object centre) a run config was
    trained with: its evaluation inputs must be built with it, or every Gaussian lands at the wrong depth."""
    lo, hi = run.pipeline.datamanager.depth_range
    return float(lo), float(hi)


def shared_depth_range(runs: Dict[str, Any]) -> Tuple[float, float]:
    """The splatter depth range that every run of `runs` (name -> run config) was trained with, for inputs they are
    all scored on: runs that differ are refused, not scored wrongly."""
    ranges = {name: run_depth_range(run) for name, run in runs.items()}
    if len(set(ranges.values())) > 1:
        listed = ", ".join(f"{name} {r}" for name, r in ranges.items())
        raise SplatdiffError(
            f"These runs were trained with different splatter depth ranges ({listed}): score each in its own call."
        )
    if not ranges:
        raise SplatdiffError("No runs to take a splatter depth range from.")
    return next(iter(ranges.values()))


def use_dataset(run: Any, data: Path) -> None:
    """Point a loaded run config at another dataset (the run, its datamanager and its dataparser each record it)."""
    run.data = data
    run.pipeline.datamanager.data = data
    run.pipeline.datamanager.dataparser.data = data


def setup_pipeline(
    config_path: Path,
    test_mode: str = "test",
    device: Optional[str] = None,
    data: Optional[Path] = None,
    check: Optional[Callable[[Any], None]] = None,
) -> Tuple[Any, Any, Path, int]:
    """nerfstudio's eval_setup for splatdiff runs, made safe: config.yml through the safe loader, the newest
    checkpoint that loads (weights only) from the nerfstudio_models folder next to config.yml (else where training
    wrote it), checked before the datasets load. Returns (config, pipeline in eval mode, checkpoint, step).

    Paths the run records relative to where it was trained (its dataset, a diffusion run's VAR) are found against
    the config's folders when they are not below the current one (`_find_relative`), so a shipped run opens from
    any folder; `data` replaces the recorded dataset; `check(config)` runs before anything heavy loads."""
    config_path = Path(config_path)
    config = load_run_config(config_path)
    model_cfg = splatdiff_model_config(config, config_path)
    if model_cfg.needs_frozen_var and model_cfg.var_checkpoint is not None:
        model_cfg.var_checkpoint = _find_relative(Path(model_cfg.var_checkpoint), config_path)
    dm = config.pipeline.datamanager
    recorded = dm.data if dm.data is not None else dm.dataparser.data  # nerfstudio: the datamanager's wins when set
    if data is not None:
        use_dataset(config, Path(data))
    elif recorded is not None:
        use_dataset(config, _find_relative(Path(recorded), config_path))
    if check is not None:
        check(config)
    local = config_path.parent / "nerfstudio_models"
    source = local if local.is_dir() else Path(config.get_checkpoint_dir())
    config.load_dir = source
    ckpt, loaded = load_checkpoint(source if source.is_dir() else config_path)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pipeline = config.pipeline.setup(device=dev, test_mode=test_mode)
    pipeline.eval()
    pipeline.load_pipeline(loaded["pipeline"], int(loaded["step"]))
    return config, pipeline, ckpt, int(loaded["step"])


def slim_pipeline_state(state: Dict[str, torch.Tensor], trained_name: str) -> Dict[str, torch.Tensor]:
    """The pipeline state with the EMA weights (when present) as `_model.<trained_name>.*`, float16, nothing else
    that inference does not read."""
    ema = {k[len(EMA_PREFIX + "module.") :]: v for k, v in state.items() if k.startswith(EMA_PREFIX + "module.")}
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(SLIM_DROPPED_PREFIXES):
            continue
        prefix = f"_model.{trained_name}."
        if key.startswith(prefix) and key[len(prefix) :] in ema:
            value = ema[key[len(prefix) :]]
        out[key] = value.half() if value.is_floating_point() else value
    out[SLIM_MARKER] = torch.ones(())
    return out


def is_slim_run_folder(folder: Path) -> bool:
    """Whether `folder` looks like what write_slim_run writes (config.yml + nerfstudio_models/step-*.ckpt only), so
    it may be replaced without --overwrite."""
    models = folder / "nerfstudio_models"
    if not folder.is_dir() or {p.name for p in folder.iterdir()} - {"config.yml", "nerfstudio_models"}:
        return False
    return not models.exists() or (
        models.is_dir()
        and all(p.name.startswith("step-") and p.suffix == ".ckpt" and p.is_file() for p in models.iterdir())
    )


def slim_run_folder(config_path: Path, output_dir: Path, experiment: str) -> Path:
    """The run folder write_slim_run writes for this run: output_dir/experiment/<method>/shipped."""
    run = load_run_config(resolve_run(config_path)[0])
    for value, what in ((experiment, "--experiment-name"), (run.method_name, "the run's method_name")):
        if not is_safe_component(value):
            raise SplatdiffError(f"{what} {value!r} is not a plain folder name (no separators, '..' or leading dot).")
    return Path(output_dir) / experiment / run.method_name / "shipped"


def check_codebook_sampling(
    var_config: Optional[Path], config_path: Path, pull: Optional[float] = None, oversample: Optional[int] = None
) -> None:
    """One clear line unless `pull` (when given) is a share in [0, 1], `oversample` (when given) a whole factor from
    1 to MAX_CODE_OVERSAMPLE, and `config_path` a diffusion run whose VAR (`var_config`, None for any other run) snaps
    its codes to a codebook: the only runs whose sampler has these codebook knobs."""
    if pull is not None and not is_number_in(pull, 0, 1):
        raise SplatdiffError(f"--code-snap-pull {pull}: pass a share in [0, 1] (1 = onto the nearest centroid).")
    if oversample is not None and not (
        isinstance(oversample, int) and is_number_in(oversample, 1, MAX_CODE_OVERSAMPLE)
    ):
        raise SplatdiffError(
            f"--code-oversample {oversample}: pass a whole factor from 1 to {MAX_CODE_OVERSAMPLE} (1 = keep all)."
        )
    var_model = None
    if var_config is not None:
        var_model = splatdiff_model_config(load_run_config(var_config), Path(var_config), "splatdiff-slim-run")
    if var_model is None or not var_model.network.snaps_codes:
        flag = "--code-snap-pull" if pull is not None else "--code-oversample"
        raise SplatdiffError(
            f"{flag} is for a diffusion run over a VAR with a codebook, and {config_path} is not one: leave it out."
        )


def write_slim_run(
    config_path: Path,
    output_dir: Path,
    experiment: str,
    data: Optional[Path] = None,
    var_config: Optional[Path] = None,
    overwrite: bool = False,
    guidance_weight: Optional[float] = None,
    code_snap_pull: Optional[float] = None,
    code_oversample: Optional[int] = None,
) -> Path:
    """Copy a run as a slim run under output_dir/experiment/<method>/shipped; returns the new config.yml. An
    existing folder there is replaced only when it is a slim run itself, or with `overwrite`. `guidance_weight`
    (a diffusion run only) replaces the sampler's default guidance in the copy, and `code_snap_pull` (a diffusion
    run over a VAR with a codebook only) how far its sampled codes move to the codebook, and `code_oversample` (the
    same runs only) how many latents it draws per sample kept."""
    target = slim_run_folder(config_path, output_dir, experiment)
    if target.exists() and not overwrite and not is_slim_run_folder(target):
        raise SplatdiffError(
            f"{target} exists and holds files other than a slim run's: move them, or pass "
            "--overwrite to replace the folder."
        )
    config_path, source = resolve_run(config_path)
    run = load_run_config(config_path)
    model = splatdiff_model_config(run, config_path, "splatdiff-slim-run")
    trained_name = model.trained_module
    if model.needs_frozen_var:
        if var_config is None:
            raise SplatdiffError(
                "A diffusion run's slim copy needs its VAR's slim copy: write that first (splatdiff-slim-run does)."
            )
        model.var_checkpoint = var_config
    if guidance_weight is not None:
        if not model.needs_frozen_var:
            raise SplatdiffError(
                f"A guidance weight is a diffusion run's sampler setting, not a {run.method_name}'s: leave it out."
            )
        model.guidance_weight = float(guidance_weight)
    if code_snap_pull is not None or code_oversample is not None:
        var_run = var_config if model.needs_frozen_var else None
        check_codebook_sampling(var_run, config_path, code_snap_pull, code_oversample)
    if code_snap_pull is not None:
        model.code_snap_pull = float(code_snap_pull)
    if code_oversample is not None:
        model.code_oversample = int(code_oversample)
    _, loaded = load_checkpoint(source)
    run.output_dir, run.experiment_name, run.timestamp = output_dir, experiment, "shipped"
    run.load_dir, run.load_checkpoint, run.vis = None, None, "viewer"
    run.relative_model_dir = Path("nerfstudio_models")
    if data is not None:
        run.data = data
        run.pipeline.datamanager.data = data
        run.pipeline.datamanager.dataparser.data = data
    folder = run.get_checkpoint_dir()
    if overwrite and target.exists() and not is_slim_run_folder(target):
        import shutil

        shutil.rmtree(target)
    folder.mkdir(parents=True, exist_ok=True)
    state = slim_pipeline_state(without_ddp_prefix(loaded["pipeline"]), trained_name)
    new_ckpt = folder / f"step-{int(loaded['step']):09d}.ckpt"
    atomic_torch_save({"step": int(loaded["step"]), "pipeline": state}, new_ckpt)
    for old in folder.glob("step-*.ckpt"):
        if old != new_ckpt:
            old.unlink()
    new_config = folder.parent / "config.yml"
    atomic_write_text(new_config, yaml.dump(run))
    return new_config
