"""Two real processes under torchrun (gloo, CPU), each with two DataLoader workers.

Three launches of one 12-step run (global batch 32 = 2 processes x 2 accumulated micro-batches
of 8 windows; 4 shards of the train split, one per worker): straight through ``--nproc 2`` (the
launcher starting torchrun), and stopped after step 5 then resumed, through ``torchrun -m
dojo.train`` directly. Every process records the windows it trained on, per step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from dojo.data.datasets import load_dataset
from dojo.data.loader import WindowDataset, collate_windows
from dojo.train import Trainer, prepare
from dojo.train.config import steps_per_epoch
from tests.train.support import FleetData, tiny_config

STEPS, BATCH, ACCUM, WORKERS, WORLD = 12, 32, 2, 2, 2
MICRO = BATCH // (WORLD * ACCUM)  # 8 windows per micro-batch per process
Key = tuple[str, int]


def _flags(data: FleetData, out: Path) -> list[str]:
    return [
        "--dataset",
        data.dataset,
        "--store",
        str(data.store),
        "--out",
        str(out),
        "--steps",
        str(STEPS),
        "--batch-size",
        str(BATCH),
        "--grad-accum",
        str(ACCUM),
        "--num-workers",
        str(WORKERS),
        "--warmup-steps",
        "3",
        "--lr",
        "1e-3",
        "--val-every",
        "6",
        "--val-batches",
        "2",
        "--checkpoint-every",
        "0",
        "--log-samples",
        "--no-progress",
        "--json",
    ]


def _run(cmd: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def runs(fleet_data: FleetData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    straight, resumed = root / "straight", root / "resumed"
    _run([sys.executable, "-m", "dojo.train", *_flags(fleet_data, straight), "--nproc", str(WORLD)])
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={WORLD}",
        "-m",
        "dojo.train",
    ]
    _run([*torchrun, *_flags(fleet_data, resumed), "--stop-after", "5"])
    _run([*torchrun, *_flags(fleet_data, resumed), "--resume"])
    return {"straight": straight, "resumed": resumed}


def samples(run: Path, rank: int) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in (run / "samples" / f"rank{rank}.jsonl").read_text().splitlines()
    ]


def losses(run: Path) -> list[float]:
    return [
        r["loss"]
        for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if "loss" in r
    ]


def train_windows(data: FleetData) -> WindowDataset:
    ds = load_dataset(data.store, data.dataset)
    return WindowDataset(
        data.store, ds.split("train"), frames=2, seed=0, occupancy=False, rank=0, world_size=WORLD
    )


def test_no_window_twice_in_an_epoch_across_processes_and_workers(
    runs: dict[str, Path], fleet_data: FleetData
) -> None:
    """Per epoch, the union of both processes' windows has no repeat; each process's windows come
    from its own two worker shards (shards 2r and 2r+1 of 4); all take the same steps."""
    data = train_windows(fleet_data)
    run = runs["straight"]
    per_rank = {r: samples(run, r) for r in range(WORLD)}
    assert (
        [s["step"] for s in per_rank[0]]
        == [s["step"] for s in per_rank[1]]
        == list(range(1, STEPS + 1))
    )
    assert [s["epoch"] for s in per_rank[0]] == [s["epoch"] for s in per_rank[1]]
    epochs = sorted({s["epoch"] for s in per_rank[0]})
    assert epochs == [0, 1], "the run should cross one epoch boundary"
    for epoch in epochs:
        steps = [s for s in per_rank[0] if s["epoch"] == epoch]
        if epoch == 0:
            assert len(steps) == steps_per_epoch(data, WORLD, WORKERS, MICRO, ACCUM, 0)
        seen: Counter[Key] = Counter()
        for rank in range(WORLD):
            mine = {
                (c, f)
                for shard in (rank * WORKERS, rank * WORKERS + 1)
                for c, f in data.shard_order(shard, WORLD * WORKERS, epoch)
            }
            for s in per_rank[rank]:
                if s["epoch"] != epoch:
                    continue
                keys = [(c, int(f)) for c, f in s["keys"]]
                assert len(keys) == ACCUM * MICRO
                assert set(keys) <= mine, (
                    f"rank {rank} read a window outside its shards in epoch {epoch}"
                )
                seen.update(keys)
        assert seen and max(seen.values()) == 1, [k for k, n in seen.items() if n > 1][:3]
        assert sum(seen.values()) == len(steps) * BATCH


def test_two_processes_match_one_process_fed_the_same_global_batches(
    runs: dict[str, Path], fleet_data: FleetData, tmp_path: Path
) -> None:
    """Compared: each step's loss, and every parameter after 12 steps, of the 2-process DDP run
    against ONE process (the same Trainer.step, no process group) given, at every step, the
    union of the two processes' windows: its micro-batch i is process 0's micro-batch i followed
    by process 1's (16 windows), with the same global batch of 32 in 2 accumulated micro-batches.

    DDP averages the two processes' mean gradients; the single process takes the mean over the
    union: the same numbers summed in another order, so not bit for bit. AdamW magnifies some
    of those float32 rounding differences: a weight whose gradient is ~0 (a ReLU just at its
    kink, sums that cancel) gets an update of about +-lr either way. Tolerances, with what was
    measured on this data over several runs (correct / one process fed only process 0's
    windows, i.e. a missing all-reduce):
      * losses within 1e-4 relative (seen: ~1e-7);
      * median parameter difference under 1e-6 (seen: <1e-8 / ~5e-4);
      * under 5% of parameters off by more than 1e-5 (seen: 0-1% / ~70%);
      * the parameter difference's norm under 5% of the distance the weights travelled
        (seen: 1e-5 to 7e-3 / 0.5-0.8).
    """
    _match_one_process(runs["straight"], fleet_data, tmp_path, net="policy")


@pytest.mark.parametrize("net", ["both", "occupancy"])
def test_two_processes_match_one_process_with_the_occupancy_head(
    fleet_data: FleetData, tmp_path: Path, net: str
) -> None:
    """The same check for ``--net both`` and ``--net occupancy``: the occupancy loss (a mean over
    cells of the windows that have a label, divided by the micro-batch) must split over processes
    like the policy loss."""
    run = tmp_path / net
    _run(
        [
            sys.executable,
            "-m",
            "dojo.train",
            *_flags(fleet_data, run),
            "--net",
            net,
            "--nproc",
            str(WORLD),
        ]
    )
    _match_one_process(run, fleet_data, tmp_path, net=net)


def _match_one_process(run: Path, fleet_data: FleetData, tmp_path: Path, net: str) -> None:
    grids = net != "policy"
    ds = load_dataset(fleet_data.store, fleet_data.dataset)
    every = {
        (s["clip_id"], int(s["frame"])): s
        for s in WindowDataset(
            fleet_data.store, ds.split("train"), frames=2, shuffle=False, occupancy=grids
        )
    }
    config = tiny_config(
        fleet_data,
        tmp_path / f"one-{net}",
        steps=STEPS,
        batch_size=BATCH,
        grad_accum=ACCUM,
        warmup_steps=3,
        lr=1e-3,
        net=net,
    )
    one = Trainer(prepare(config))
    start = {k: v.clone() for k, v in one.model.state_dict().items()}
    per_rank = {r: samples(run, r) for r in range(WORLD)}
    got = []
    for step in range(STEPS):
        micro = []
        for i in range(ACCUM):
            keys = [
                k
                for r in range(WORLD)
                for k in per_rank[r][step]["keys"][i * MICRO : (i + 1) * MICRO]
            ]
            micro.append(collate_windows([every[(c, int(f))] for c, f in keys]))
        got.append(one.step(micro)[0])
    assert got == pytest.approx(losses(run), rel=1e-4)
    ddp = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    final = one.model.state_dict()
    diff = torch.cat([(ddp[k] - v).flatten() for k, v in final.items()])
    travelled = torch.cat([(v - start[k]).flatten() for k, v in final.items()])
    assert float(diff.abs().median()) < 1e-6
    # the weights as a whole went the same way: measured 3e-6 (policy), 8e-5 (occupancy) and
    # 0.009 (both) of the distance they travelled
    assert float(diff.norm()) < 0.02 * float(travelled.norm()), (
        float(diff.norm()),
        float(travelled.norm()),
    )
    if net == "policy":
        # element by element too. Not with the occupancy head on the shared backbone: AdamW
        # divides each gradient by its own running size, so parameters whose gradient is almost
        # zero (cells no label reached) take lr-sized steps set by the summation order of the
        # all-reduce; with both heads, 18% of the weights then differ by more than 1e-5
        # (largest 1.2e-3) while the whole differs by 0.9%.
        assert float((diff.abs() > 1e-5).float().mean()) < 0.05


def test_a_two_process_run_resumes_exactly(runs: dict[str, Path]) -> None:
    """Stopped after step 5 (checkpoint: weights, AdamW, both processes' RNG and loader positions,
    4 worker shards) and resumed under torchrun: the same windows, losses and final weights."""
    a, b = runs["straight"], runs["resumed"]
    assert losses(a) == losses(b) and len(losses(b)) == STEPS
    for rank in range(WORLD):
        assert samples(a, rank) == samples(b, rank)
    wa = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    summary = json.loads((b / "summary.json").read_text())
    assert (
        summary["world_size"] == WORLD
        and summary["finished"]
        and summary["steps_this_run"] == STEPS - 5
    )


def test_sigterm_to_the_launchers_group_stops_both_processes_checkpointed(
    runs: dict[str, Path], fleet_data: FleetData, tmp_path: Path
) -> None:
    """A scheduler preempting `dojo train --nproc 2` signals its process group (as `dojo agent`
    does): every process finishes the same step, the checkpoint is at that step (no periodic
    checkpoints in this run), the exit code says it was stopped, and --resume ends where the
    uninterrupted run ends, loss for loss."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "dojo.train", *_flags(fleet_data, out), "--nproc", str(WORLD)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.exists() and len(losses(out)) >= 2):
        assert launcher.poll() is None and time.monotonic() < deadline, (
            launcher.stderr.read().decode()[-3000:] if launcher.stderr else "no stderr"
        )
        time.sleep(0.02)
    os.killpg(launcher.pid, signal.SIGTERM)
    code = launcher.wait(120)
    assert code != 0
    stopped = len(losses(out))
    assert 2 <= stopped < STEPS, stopped
    assert torch.load(out / "checkpoint.pt", weights_only=True)["train"]["step"] == stopped
    assert not list(out.glob("*.tmp"))
    _run(
        [
            sys.executable,
            "-m",
            "dojo.train",
            *_flags(fleet_data, out),
            "--nproc",
            str(WORLD),
            "--resume",
        ]
    )
    assert losses(out) == losses(runs["straight"])


def test_two_nodes_over_a_rendezvous_match_one_node_of_two_processes(
    runs: dict[str, Path], fleet_data: FleetData, tmp_path: Path
) -> None:
    """Multi-node training is torchrun's: two launchers (``--nnodes 2``, one process each, node
    ranks 0 and 1) meet at a c10d rendezvous on loopback, as two hosts would on a network, and
    train into one shared folder. Same ranks and world size as ``--nproc 2``: the same windows,
    and the same losses and final weights up to float32 rounding."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two-nodes"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                f"--node-rank={rank}",
                "--nproc-per-node=1",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{port}",
                "--rdzv-id=dojo-two-nodes",
                "-m",
                "dojo.train",
                *_flags(fleet_data, out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in (0, 1)
    ]
    for node in nodes:
        stdout, stderr = node.communicate(timeout=300)
        assert node.returncode == 0, stdout[-2000:] + stderr[-4000:]
    straight = runs["straight"]
    for rank in range(WORLD):  # the data is sharded by rank exactly as on one node
        assert samples(out, rank) == samples(straight, rank)
    # gloo reduces across nodes in another order than within one: equal up to float32 rounding
    # (seen: the 12th loss 7e-8 apart; AdamW magnifies a few near-zero gradients, as in
    # test_two_processes_match_one_process_fed_the_same_global_batches)
    assert losses(out) == pytest.approx(losses(straight), rel=1e-5) and len(losses(out)) == STEPS
    wa = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    diff = torch.cat([(wa[k].float() - wb[k].float()).abs().ravel() for k in wa])
    assert diff.median() < 1e-6 and (diff > 1e-5).float().mean() < 0.05
    assert json.loads((out / "summary.json").read_text())["world_size"] == WORLD
