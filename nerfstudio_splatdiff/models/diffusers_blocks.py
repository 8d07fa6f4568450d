"""The diffusers pieces splatdiff's networks and samplers are built from, imported from their own modules.

`from diffusers import UNet2DModel` imports far more than the U-Net: torch's compiler front end and every model
of the packages the U-Net lives in (`lean_start.lean_diffusers` says which and why). The networks and samplers
import diffusers from here instead: the same classes from the same files, so checkpoints keep their parameter
names. DPM-Solver++ imports scipy.stats with its module, so it is imported only when a run samples with it.
"""

from __future__ import annotations

from typing import Type

from nerfstudio_splatdiff.lean_start import lean_diffusers

lean_diffusers()  # before the imports below

from diffusers.models.autoencoders.vae import Decoder, Encoder  # noqa: E402
from diffusers.models.unets.unet_2d import UNet2DModel  # noqa: E402
from diffusers.schedulers.scheduling_ddim import DDIMScheduler  # noqa: E402
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler  # noqa: E402

__all__ = ["DDIMScheduler", "DDPMScheduler", "Decoder", "Encoder", "UNet2DModel", "dpm_solver_scheduler"]


def dpm_solver_scheduler() -> Type:
    """diffusers' DPMSolverMultistepScheduler (its module imports scipy.stats: about a second of CPU)."""
    from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler
