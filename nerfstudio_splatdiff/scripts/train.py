"""splatdiff-train: `ns-train` for the splatdiff methods (the same subcommands and flags) whose runs of several
processes also train on CPU.

nerfstudio's launcher spawns one process per device, but its worker asserts a CUDA GPU first, so
`ns-train ... --machine.num-devices 2 --machine.device-type cpu` stops there (and no hook reaches that worker short
of patching nerfstudio). This command spawns the same processes with a worker that checks for GPUs only when
training on them, joins the process group (nccl on CUDA, gloo otherwise) and runs nerfstudio's train loop; the
pipeline wraps the model in DDP, so every backward averages the gradients over all ranks, and each rank trains on its
own shard of the training scenes. With one process, or several on GPUs, it trains as `ns-train` does.

    splatdiff-train splatdiff-var-small --machine.num-devices 2 --machine.device-type cpu co3d-data --data DIR

On one machine the processes meet at a rendezvous store that rank 0 serves on 127.0.0.1 only (of
`--machine.dist-url` only the port is used), and gloo's connections use the loopback interface: nothing listens on
the machine's network interfaces. Several machines: run the same command on each with `--machine.num-machines M
--machine.machine-rank <0..M-1> --machine.dist-url tcp://<host of machine 0>:<free port>`; then rank 0's store
listens on every interface of machine 0, unauthenticated, for the whole run (torch's rendezvous), so use a trusted
network or firewall the port.
"""

from __future__ import annotations

import os
import random
import socket
import traceback
from datetime import timedelta
from importlib.metadata import distribution
from typing import Dict, Optional
from urllib.parse import urlsplit

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import tyro
from nerfstudio.configs.config_utils import convert_markup_to_ansi
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.utils import comms, profiler
from rich.console import Console

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.runs import load_run_config
from nerfstudio_splatdiff.trainer import check_trainer_options

CONSOLE = Console()
LOOPBACK = "127.0.0.1"
TIMEOUT = timedelta(minutes=30)
"""How long a rank waits for the others (process-group start-up, each collective), as in nerfstudio."""


def splatdiff_methods() -> tuple[Dict[str, TrainerConfig], Dict[str, str]]:
    """(configs, descriptions) of the methods this package registers with nerfstudio (its `nerfstudio.method_configs`
    entry points). Read from the entry points rather than nerfstudio's method registry, which imports every
    nerfstudio method: about 8 s of CPU that each spawned process would pay again."""
    specs = [
        ep.load() for ep in distribution("nerfstudio-splatdiff").entry_points if ep.group == "nerfstudio.method_configs"
    ]
    return {s.config.method_name: s.config for s in specs}, {s.config.method_name: s.description for s in specs}


def train_loop(local_rank: int, world_size: int, config: TrainerConfig, global_rank: int = 0) -> None:
    """nerfstudio's `train_loop` (nerfstudio/scripts/train.py, 1.1.5): seed with the machine seed plus the global rank,
    set up the trainer, train. Here so that the processes need not import nerfstudio's script (see
    `splatdiff_methods`)."""
    seed = config.machine.seed + global_rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    trainer = config.setup(local_rank=local_rank, world_size=world_size)
    trainer.setup()
    trainer.train()


def free_local_url() -> str:
    """A tcp:// address on this machine with a loopback port that is free now (nerfstudio's `--machine.dist-url
    auto`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return f"tcp://{LOOPBACK}:{sock.getsockname()[1]}"


def dist_url_port(dist_url: str) -> int:
    """The port of a `tcp://HOST:PORT` rendezvous address, or one clear error."""
    try:
        parsed = urlsplit(dist_url)
        port = parsed.port if parsed.scheme == "tcp" else None
    except ValueError:
        port = None
    if not port:
        raise SplatdiffError(
            f"--machine.dist-url {dist_url!r} is not a tcp://HOST:PORT address: pass auto (one machine) or "
            "tcp://<host of machine rank 0>:<free port>."
        )
    return port


def loopback_store(port: int, world_size: int, global_rank: int) -> dist.TCPStore:
    """The rendezvous store of a one-machine run: rank 0 serves it on 127.0.0.1:`port` only (a socket it binds
    itself and hands to torch, whose own server would listen on every interface), the other ranks connect there."""
    if global_rank != 0:
        return dist.TCPStore(LOOPBACK, port, world_size, False, TIMEOUT)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, port))
        listener.listen(max(128, world_size))
    except OSError as e:
        listener.close()
        raise SplatdiffError(
            f"Cannot listen on {LOOPBACK}:{port} for the processes to meet ({e.strerror}): pass --machine.dist-url "
            "auto, or tcp://127.0.0.1:<a free port>."
        ) from None
    return dist.TCPStore(LOOPBACK, port, world_size, True, TIMEOUT, master_listen_fd=listener.detach())


def loopback_interface() -> Optional[str]:
    """The name of the loopback network interface (`lo` on Linux, `lo0` on macOS), or None when not found."""
    names = {name for _, name in socket.if_nameindex()} if hasattr(socket, "if_nameindex") else set()
    return next((name for name in ("lo", "lo0") if name in names), None)


def join_process_group(backend: str, dist_url: str, world_size: int, global_rank: int, num_machines: int) -> None:
    """Join the process group. On one machine nothing listens beyond 127.0.0.1: the store is `loopback_store`, and
    gloo connects its processes over the loopback interface (`GLOO_SOCKET_IFNAME`, unless set). Several machines
    meet at `dist_url` as torch does it (its store listens on every interface of machine 0)."""
    if num_machines > 1:
        dist.init_process_group(
            backend=backend, init_method=dist_url, world_size=world_size, rank=global_rank, timeout=TIMEOUT
        )
        return
    interface = loopback_interface()
    if backend == "gloo" and interface is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)
    store = loopback_store(dist_url_port(dist_url), world_size, global_rank)
    dist.init_process_group(backend=backend, store=store, world_size=world_size, rank=global_rank, timeout=TIMEOUT)


def check_machine(config: TrainerConfig) -> int:
    """The world size (processes over all machines), or one clear error for a machine set-up that cannot run."""
    machine = config.machine
    world_size = machine.num_machines * machine.num_devices
    if machine.num_devices < 1 or machine.num_machines < 1 or not 0 <= machine.machine_rank < machine.num_machines:
        raise SplatdiffError(
            f"--machine.num-devices {machine.num_devices}, --machine.num-machines {machine.num_machines} and "
            f"--machine.machine-rank {machine.machine_rank} do not fit: pass at least one device and machine, and a "
            "machine rank from 0 to num-machines - 1."
        )
    if world_size == 1:
        return world_size
    if machine.device_type == "mps":
        raise SplatdiffError("Several processes train on cuda or cpu only: pass --machine.device-type cuda or cpu.")
    if machine.device_type == "cuda" and torch.cuda.device_count() < machine.num_devices:
        raise SplatdiffError(
            f"--machine.num-devices {machine.num_devices} needs as many GPUs but this machine has "
            f"{torch.cuda.device_count()}: pass fewer devices, or --machine.device-type cpu."
        )
    if machine.dist_url == "auto" and machine.num_machines > 1:
        raise SplatdiffError(
            "Several machines meet at one address: pass --machine.dist-url tcp://<host of machine rank 0>:<free port> "
            "to every machine."
        )
    return world_size


def distributed_worker(
    local_rank: int, world_size: int, num_devices: int, machine_rank: int, dist_url: str, config: TrainerConfig
) -> None:
    """One spawned process: nerfstudio's `_distributed_worker` without its CUDA assertion. On CPU the machine's
    threads are shared among its processes (each would otherwise use them all)."""
    device_type = config.machine.device_type
    if device_type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads() // num_devices))
    global_rank = machine_rank * num_devices + local_rank
    backend = "nccl" if device_type == "cuda" else "gloo"
    try:
        join_process_group(backend, dist_url, world_size, global_rank, world_size // num_devices)
    except SplatdiffError as e:
        CONSOLE.print(f"[bold red]Error (rank {global_rank}):[/] {e}", soft_wrap=True)
        raise SystemExit(1) from None
    for machine in range(world_size // num_devices):  # every rank creates every group, as torch requires
        group = dist.new_group(list(range(machine * num_devices, (machine + 1) * num_devices)))
        if machine == machine_rank:
            comms.LOCAL_PROCESS_GROUP = group
    try:
        train_loop(local_rank, world_size, config, global_rank)
        comms.synchronize()
    except SplatdiffError as e:
        CONSOLE.print(f"[bold red]Error (rank {global_rank}):[/] {e}", soft_wrap=True)
        raise SystemExit(1) from None  # the launcher sees exit status 1, not a traceback
    finally:
        dist.destroy_process_group()


def main(config: TrainerConfig) -> None:
    """ns-train's main and launch: the --data alias, config.yml written once, then one process trains here, or
    `--machine.num-devices` processes are spawned (with our worker). `--load-config` reads the config.yml with the
    safe loader."""
    if config.data:
        config.pipeline.datamanager.data = config.data
    if config.load_config:
        config = load_run_config(config.load_config)
    world_size = check_machine(config)
    check_trainer_options(config)
    config.set_timestamp()
    config.print_to_terminal()
    config.save_config()
    machine = config.machine
    try:
        if world_size == 1:
            train_loop(0, 1, config)
        else:
            dist_url = machine.dist_url if machine.dist_url != "auto" else free_local_url()
            dist_url_port(dist_url)  # a malformed address fails here, in one line, not in every process
            args = (world_size, machine.num_devices, machine.machine_rank, dist_url, config)
            mp.spawn(distributed_worker, args=args, nprocs=machine.num_devices, join=True)
    except KeyboardInterrupt:
        CONSOLE.print(traceback.format_exc())
    except mp.ProcessExitedException as e:  # a rank stopped (its error is printed above); the others were ended
        raise SystemExit(1) from e
    finally:
        profiler.flush_profiler(config.logging)


def entrypoint() -> None:
    """Console script: parse the method and its flags as ns-train does, then train."""
    tyro.extras.set_accent_color("bright_yellow")
    methods, descriptions = splatdiff_methods()
    union = tyro.extras.subcommand_type_from_defaults(defaults=methods, descriptions=descriptions)
    # As ns-train: unparseable (fixed) fields stay out of the help, and booleans take True / False.
    config = tyro.cli(
        tyro.conf.SuppressFixed[tyro.conf.FlagConversionOff[union]], description=convert_markup_to_ansi(__doc__ or "")
    )
    try:
        main(config)
    except SplatdiffError as e:
        CONSOLE.print(f"[bold red]Error:[/] {e}", soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    entrypoint()
