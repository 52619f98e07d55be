"""Fleets driven at once in worker processes give the counts of fleets driven one by one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dojo.errors import DojoConfigError
from dojo.fleet.config import DriveConfig
from dojo.fleet.policy import NetworkPolicy, make_policy
from dojo.fleet.pool import FleetRun, run_fleets
from dojo.world.camera import CameraRig
from dojo.world.world import DT_S, World

TIMINGS = {"wall_s", "sensors_s", "logging_s", "video_logging_s"}


def _configs(policy: str = "naive") -> list[DriveConfig]:
    return [
        DriveConfig(
            cars=3,
            minutes=120 * DT_S / 60.0,
            mode="autonomous",
            policy=policy,
            families=(fam,),
            drive_s=5.0,  # several drives per car: the restarts are compared too
            out="unused",
            logging="none",
        )
        for fam in ("cut_in", "stalled", "merge")
    ]


def _counts(runs: list[FleetRun]) -> list[dict[str, Any]]:
    out = []
    for r in runs:
        d = {k: v for k, v in r.summary.as_dict().items() if k not in TIMINGS}
        d["drive_no"] = r.drive_no.tolist()
        out.append(d)
    return out


@pytest.mark.parametrize("policy", ["expert", "careful"])
def test_workers_give_the_counts_of_one_by_one(policy: str) -> None:
    configs = _configs(policy)
    loaded = make_policy(policy, CameraRig.default())
    seen: dict[int, list[int]] = {1: [], 2: []}
    runs = {w: run_fleets(configs, loaded, w, seen[w].append) for w in (1, 2)}
    assert _counts(runs[1]) == _counts(runs[2])
    assert [r.summary.decisions for r in runs[2]] == [3 * 120] * 3
    for w in (1, 2):  # progress never goes back and ends at every decision driven
        assert seen[w] == sorted(seen[w]) and seen[w][-1] == 3 * 3 * 120
    assert len(seen[1]) == 3 * 120  # one by one: a report a step


def test_a_network_policy_drives_the_same_in_workers(tmp_path: Any) -> None:
    torch = pytest.importorskip("torch")
    from dojo.nets.checkpoint import save_policy
    from dojo.nets.policy import DrivingPolicy, PolicyConfig

    torch.manual_seed(0)
    path = save_policy(tmp_path / "tiny.pt", DrivingPolicy(PolicyConfig()), {})
    configs = _configs(str(path))[:2]
    loaded = make_policy(str(path), CameraRig.default(), device="cpu")
    assert isinstance(loaded, NetworkPolicy)
    threads = torch.get_num_threads()
    with torch.inference_mode():  # as the loop does (it trains first): fork after torch threads ran
        cfg = loaded.model.config
        loaded.model(
            torch.zeros(cfg.image_shape(4), dtype=torch.uint8),
            torch.zeros(4),
            torch.zeros(4, dtype=torch.int64),
        )
    torch.set_num_threads(1)  # a worker's: the sums of a forward pass depend on the thread count
    try:
        alone = run_fleets(configs, loaded, 1)
    finally:
        torch.set_num_threads(threads)
    assert _counts(alone) == _counts(run_fleets(configs, loaded, 2))


class _Crashes:
    """A policy that fails on its first decision, as a bug in a network would."""

    name, frames = "crashes", 0

    def act(self, world: World, images: np.ndarray | None) -> Any:
        raise RuntimeError("the policy broke")


def test_an_error_in_a_worker_is_raised_in_the_caller() -> None:
    with pytest.raises(RuntimeError, match="the policy broke"):
        run_fleets(_configs(), _Crashes(), workers=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused(bad: object) -> None:
    with pytest.raises(DojoConfigError, match="workers"):
        run_fleets(_configs(), make_policy("naive", CameraRig.default()), bad)  # type: ignore[arg-type]
