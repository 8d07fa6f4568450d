"""Two processes on CPU end to end: `splatdiff-train splatdiff-var-small --machine.num-devices 2
--machine.device-type cpu` (gloo) trains a tiny VAR for a few steps; both ranks end with bit-identical weights (DDP
averages the gradients), equal to the checkpoint rank 0 wrote, after training on disjoint scenes. Plain `ns-train`
cannot do this on CPU: nerfstudio's spawned worker asserts a CUDA GPU."""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cli_helpers import train_cmd

pytestmark = pytest.mark.slow

STEPS = 3
SCENES_PER_BATCH = 2
TINY_VAR = [  # after the dataparser's flags: 32x32 images, a VAR with 8 channels per level
    "--resolution",
    "32",
    "pipeline.model.network:var-net-config",
    "--pipeline.model.network.block-out-channels",
    *("8", "8", "8", "8"),
    "--pipeline.model.network.norm-num-groups",
    "4",
    "--pipeline.model.network.mid-block-attention",
    "False",
    "--pipeline.model.network.privileged-grid",
    "4",
    "--pipeline.model.network.privileged-width",
    "8",
    "--pipeline.model.network.global-code-width",
    "8",
]


def process_tree(pid: int) -> set:
    """`pid` and every process below it (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {pid}, True
    while grew:
        children = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def listening_addresses(pids: set) -> set:
    """(address, port) of every TCP socket in LISTEN state that one of `pids` holds (/proc/net/tcp and tcp6)."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes |= {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            host, port = fields[1].split(":")
            raw = bytes.fromhex(host)
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word little-endian
            found.add((ipaddress.ip_address(words), int(port, 16)))
    return found


def is_loopback(address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """(config.yml, {rank: record}, {(address, port) the run listened on}, the rendezvous port) of a 3-step
    two-process CPU run on 6 procedural scenes of 32x32, with an explicit `--machine.dist-url tcp://127.0.0.1:PORT`;
    the run's processes are watched for listening sockets while it trains."""
    from nerfstudio_splatdiff.data.procedural.generate import generate_dataset
    from nerfstudio_splatdiff.trainer import RANK_RECORD_DIR

    root = tmp_path_factory.mktemp("ddp_run")
    generate_dataset(root / "data", scenes=6, views=5, resolution=32, seed=3, kind="object")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = train_cmd(
        "splatdiff-var-small",
        root / "data",
        root / "out",
        root / "cache",
        STEPS,
        *("--machine.num-devices", "2", "--machine.device-type", "cpu"),
        *("--machine.dist-url", f"tcp://127.0.0.1:{port}"),
        *("--pipeline.datamanager.scenes-per-batch", str(SCENES_PER_BATCH), "--pipeline.model.image-size", "32"),
    )
    argv = [str(c) for c in [Path(sys.executable).parent / "splatdiff-train", *cmd[1:], *TINY_VAR]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    listened: set = set()

    def watch() -> None:
        while proc.poll() is None:
            listened.update(listening_addresses(process_tree(proc.pid)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output, _ = proc.communicate(timeout=900)
    watcher.join()
    assert proc.returncode == 0, output[-3000:]
    (config,) = (root / "out").glob("*/splatdiff-var-small/*/config.yml")
    records = {}
    for path in sorted((config.parent / RANK_RECORD_DIR).glob("rank-*.json")):
        record = json.loads(path.read_text())
        records[record["rank"]] = record
    return config, records, listened, port


def test_both_ranks_end_with_the_weights_the_checkpoint_loads(two_rank_run):
    from nerfstudio_splatdiff.runs import load_inference_model
    from nerfstudio_splatdiff.safety import load_checkpoint_file
    from nerfstudio_splatdiff.trainer import weights_sha256

    config, records, _, _ = two_rank_run
    assert sorted(records) == [0, 1]
    assert all(r["world_size"] == 2 and r["step"] == STEPS - 1 for r in records.values())
    assert records[0]["weights_sha256"] == records[1]["weights_sha256"]
    # Only rank 0 saves; its checkpoint loads for inference and holds exactly the weights both ranks ended with.
    (ckpt,) = (config.parent / "nerfstudio_models").glob("step-*.ckpt")
    assert ckpt.name == f"step-{STEPS - 1:09d}.ckpt"
    state = load_checkpoint_file(ckpt)
    assert not any(k.startswith("_model.module.") for k in state["pipeline"])  # keys as a one-process run's
    assert {float(s["step"]) for s in state["optimizers"]["network"]["state"].values()} == {STEPS}  # Adam stepped
    model, run = load_inference_model(config)
    assert run.machine.num_devices == 2 and run.machine.device_type == "cpu"
    assert run.pipeline.model.network.block_out_channels == (8, 8, 8, 8)  # the tiny VAR, loaded strictly
    assert weights_sha256(model.state_dict()) == records[0]["weights_sha256"]


def test_ranks_train_on_disjoint_shards_of_the_scenes(two_rank_run):
    _, records, _, _ = two_rank_run
    shards = [set(records[r]["train_scenes"]) for r in (0, 1)]
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    for record, shard in zip((records[0], records[1]), shards):
        draws = record["scene_draws"]
        assert set(draws) <= shard  # every scene a rank trained on is in its own shard
        assert sum(draws.values()) == STEPS * SCENES_PER_BATCH


def test_a_one_machine_run_listens_on_loopback_only(two_rank_run):
    """Rank 0's rendezvous store (torch's own would listen on every interface) and gloo's connections: every
    socket the run's processes listen on is bound to 127.0.0.1, the store's at the port --machine.dist-url names."""
    _, _, listened, port = two_rank_run
    assert port in {p for _, p in listened}  # the watcher saw the store
    assert listened and all(is_loopback(address) for address, _ in listened), listened


def test_machine_setups_that_cannot_run_fail_with_one_clear_line():
    from method_configs.splatdiff_methods import splatdiff_var_small
    from nerfstudio_splatdiff.errors import SplatdiffError
    from nerfstudio_splatdiff.scripts.train import check_machine, dist_url_port, free_local_url

    def machine(**fields):
        config = copy.deepcopy(splatdiff_var_small.config)
        for name, value in fields.items():
            setattr(config.machine, name, value)
        return config

    assert check_machine(machine(num_devices=2, device_type="cpu")) == 2
    with pytest.raises(SplatdiffError, match="--machine.dist-url tcp://"):
        check_machine(machine(num_machines=2, device_type="cpu"))
    with pytest.raises(SplatdiffError, match="machine rank from 0"):
        check_machine(machine(num_machines=2, machine_rank=2, dist_url="tcp://127.0.0.1:1234"))
    with pytest.raises(SplatdiffError, match="cuda or cpu"):
        check_machine(machine(num_devices=2, device_type="mps"))
    for url in ("127.0.0.1:1234", "tcp://127.0.0.1", "tcp://127.0.0.1:port", "file:///tmp/x"):
        with pytest.raises(SplatdiffError, match="not a tcp://HOST:PORT address"):
            dist_url_port(url)
    assert dist_url_port(free_local_url()) > 0 and free_local_url().startswith("tcp://127.0.0.1:")
