"""nerfstudio's Trainer with safe checkpoints: every `step-*.ckpt` is written to a temporary file and renamed into
place (a run killed while saving never leaves a truncated checkpoint), and a resume (`--load-dir`) uses the newest
checkpoint that loads, naming any it had to skip. A weights-only checkpoint (a slim copy, e.g. the shipped
`checkpoints/demo`) is a warm start: training goes on from its weights and step with fresh optimiser state.

In a run of several processes (`--machine.num-devices`, `--machine.num-machines`) every rank also writes, when
training completes, `ranks/rank-<r>.json` in the run folder: a checksum of its final weights and the training
scenes it drew, so a run can be checked to have kept its ranks in step on disjoint shards of the data.

Before anything is set up it refuses, in one line, the options of nerfstudio's own configs that cannot work
(`check_trainer_options`: no training steps, a learning rate that is not a positive number).

A resumed or warm-started run's progress line counts to the step it will stop at (nerfstudio's counts to
`--max-num-iterations` from step 0, so a resumed run showed over 100% and an ETA of "23 h 59 m").

The method configs point their TrainerConfig's `_target` here; everything else is nerfstudio's Trainer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from nerfstudio.engine.trainer import Trainer
from nerfstudio.utils import comms
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE

from nerfstudio_splatdiff.errors import SplatdiffError, check_option, is_number_in
from nerfstudio_splatdiff.runs import without_ddp_prefix
from nerfstudio_splatdiff.safety import (
    CheckpointUnreadable,
    atomic_torch_save,
    atomic_write_text,
    checkpoint_step,
    load_checkpoint_file,
    load_newest_checkpoint,
    remove_stale_partials,
)

RANK_RECORD_DIR = "ranks"
"""Folder of the run (next to config.yml) where each rank of a several-process run writes `rank-<r>.json`."""


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes, in name order: equal exactly when the weights
    are bit-identical (a model's `state_dict()`, EMA copy and buffers included)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_trainer_options(config: Any) -> None:
    """The training options that live in nerfstudio's own configs (iterations, learning rates), refused in one line
    when they cannot work; the trainer checks them when it is made, before the data loads (splatdiff-train also
    before it writes config.yml). The splatdiff configs check their own options when the flags are parsed."""
    check_option(
        is_number_in(config.max_num_iterations, 1),
        "--max-num-iterations",
        config.max_num_iterations,
        "at least 1 training step",
    )
    for name in ("steps_per_save", "steps_per_eval_batch", "steps_per_eval_image", "steps_per_eval_all_images"):
        value = getattr(config, name)
        check_option(is_number_in(value, 1), f"--{name.replace('_', '-')}", value, "at least 1 step")
    for group, parts in config.optimizers.items():
        optimizer = parts["optimizer"]
        flag = f"--optimizers.{group}.optimizer"
        check_option(
            is_number_in(optimizer.lr, 1e-30, 1e3), f"{flag}.lr", optimizer.lr, "a positive learning rate (e.g. 1e-4)"
        )
        check_option(is_number_in(optimizer.eps, 0), f"{flag}.eps", optimizer.eps, "0 or more")
        check_option(
            optimizer.max_norm is None or is_number_in(optimizer.max_norm, 1e-30),
            f"{flag}.max-norm",
            optimizer.max_norm,
            "None or a positive gradient norm",
        )


class SplatdiffTrainer(Trainer):
    """Trainer whose checkpoints are saved atomically and resumed from the newest one that loads."""

    def __init__(self, config: Any, local_rank: int = 0, world_size: int = 1) -> None:
        check_trainer_options(config)
        super().__init__(config, local_rank, world_size)

    def setup(self, *args: Any, **kwargs: Any) -> None:
        """nerfstudio's set-up (which loads a checkpoint), then the progress line counted from the loaded step."""
        super().setup(*args, **kwargs)
        self.count_progress_from_start()

    def count_progress_from_start(self) -> None:
        """Make the console's "% done" and ETA count to the step this run stops at: nerfstudio trains
        `max_num_iterations` steps after the step it starts at, but measures progress against step 0."""
        from nerfstudio.utils.writer import GLOBAL_BUFFER

        if "max_iter" in GLOBAL_BUFFER:
            GLOBAL_BUFFER["max_iter"] = self._start_step + self.config.max_num_iterations

    def _load_checkpoint(self) -> None:
        load_dir, load_checkpoint = self.config.load_dir, self.config.load_checkpoint
        if load_dir is not None:
            load_dir = Path(load_dir)
            if self.config.load_step is None:
                load_path, loaded_state = load_newest_checkpoint(
                    load_dir, "pass --load-dir a nerfstudio_models folder of an earlier run"
                )
            else:
                load_path = load_dir / f"step-{self.config.load_step:09d}.ckpt"
                loaded_state = self._load_file(load_path)
        elif load_checkpoint is not None:
            load_path = Path(load_checkpoint)
            loaded_state = self._load_file(load_path)
        else:
            CONSOLE.print("No Nerfstudio checkpoint to load, so training from scratch.")
            return
        self._start_step = loaded_state["step"] + 1
        self.pipeline.load_pipeline(loaded_state["pipeline"], loaded_state["step"])
        if "optimizers" not in loaded_state:
            CONSOLE.print(
                f"{load_path} holds weights only (a slim copy): training goes on from its weights after step "
                f"{loaded_state['step']} with fresh optimiser state."
            )
            return
        self._load_optimizer_states(loaded_state["optimizers"], load_path)
        if "schedulers" in loaded_state and self.config.load_scheduler:
            self.optimizers.load_schedulers(loaded_state["schedulers"])
        self.grad_scaler.load_state_dict(loaded_state["scalers"])
        CONSOLE.print(f"Done loading Nerfstudio checkpoint from {load_path}")

    def _load_optimizer_states(self, states: dict, load_path: Path) -> None:
        """Each parameter group's optimiser state from the checkpoint; a group whose parameters no longer match the
        checkpoint's (e.g. `--pipeline.model.network.frozen-encoder True` leaves the encoder out of it) starts with
        fresh optimiser state, said in one line, instead of stopping the run."""
        for group, state in states.items():
            if group not in self.optimizers.optimizers:
                continue
            try:
                self.optimizers.optimizers[group].load_state_dict(state)
            except ValueError:
                CONSOLE.print(
                    f"{load_path}: the optimiser state of '{group}' does not fit this run's parameters (a part frozen "
                    "or added since?): that group starts with fresh optimiser state."
                )

    @staticmethod
    def _load_file(path: Path) -> dict:
        if not path.is_file():
            raise SplatdiffError(f"Checkpoint {path} does not exist.")
        try:
            return load_checkpoint_file(path)
        except CheckpointUnreadable as e:
            raise SplatdiffError(f"Cannot resume from {path}: {e}.") from None

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's checkpoint, written atomically (temporary file + rename)."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.checkpoint_dir.parent)  # temporary files of killed saves
        ckpt_path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        state = {
            "step": step,
            # The model's keys as without DDP, so every loader (resume, inference, a diffusion run's frozen VAR)
            # reads a checkpoint of several processes like any other.
            "pipeline": without_ddp_prefix(pipeline.state_dict()),  # type: ignore[union-attr]
            "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        }
        atomic_torch_save(state, ckpt_path)
        if self.config.save_only_latest_checkpoint:
            for f in self.checkpoint_dir.glob("step-*.ckpt"):
                if f != ckpt_path and checkpoint_step(f) >= 0:
                    f.unlink()

    def _after_train(self) -> None:
        """nerfstudio's end of training (the last checkpoint, on rank 0), then this rank's record when the run has
        several processes."""
        super()._after_train()
        if self.world_size > 1:
            self.write_rank_record()

    def write_rank_record(self) -> Path:
        """Write `ranks/rank-<r>.json` in the run folder: the global rank, the step, the checksum of this rank's
        weights (`weights_sha256` of the model's state dict: DDP keeps it identical on every rank, and equal to the
        last checkpoint's), this rank's shard of the training scenes and how often it drew each."""
        rank = comms.get_rank()
        datamanager = self.pipeline.datamanager
        record = {
            "rank": rank,
            "world_size": self.world_size,
            "step": self.step,
            "weights_sha256": weights_sha256(self.pipeline.model.state_dict()),
            "train_scenes": [r.name for r in getattr(datamanager, "train_scenes", [])],
            "scene_draws": dict(sorted(getattr(datamanager, "train_draws", {}).items())),
        }
        path = self.base_dir / RANK_RECORD_DIR / f"rank-{rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1))
        return path
