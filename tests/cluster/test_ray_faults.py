"""A Ray node or the head lost mid-run, on a real cluster the test starts and kills itself.

A node lost (every process of it SIGKILLed, as a machine is lost) costs its tasks a retry and
nothing else: the counts equal the local run's. The head lost ends the command in one sentence
naming the address, and a re-run on a cluster that is back completes with the same counts.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray")

from tests.cluster.raycluster import (  # noqa: E402
    EVAL,
    RayCluster,
    assert_same_counts,
    run_dojo,
    start_dojo,
    wait_for_task,
)


@pytest.fixture(scope="module")
def local() -> dict:
    return run_dojo(*EVAL)


def test_a_node_lost_mid_run_changes_nothing_in_the_counts(
    fresh_cluster: RayCluster, local: dict
) -> None:
    run = start_dojo(*EVAL, "--ray", fresh_cluster.address)
    assert wait_for_task(fresh_cluster, 1, run), "no task ran on the second node"
    fresh_cluster.kill(1)  # its tasks die with it and are retried on the head
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-2000:]
    fresh_cluster.wait_alive(1)  # the head saw the node go, and the run still counted everything
    assert_same_counts(json.loads(out), local)


def test_the_head_lost_fails_in_one_sentence_and_a_rerun_completes(
    fresh_cluster: RayCluster, local: dict
) -> None:
    run = start_dojo(*EVAL, "--ray", fresh_cluster.address)
    assert wait_for_task(fresh_cluster, 0, run), "no task ran on the head"
    fresh_cluster.stop()  # the head (and with it the cluster) is gone
    out, err = run.communicate(timeout=120)
    assert run.returncode == 2 and out == ""
    ours = [line for line in err.splitlines() if line.startswith("dojo: error:")]
    assert len(ours) == 1, err[-2000:]
    assert f"The Ray cluster at {fresh_cluster.address} was lost mid-run" in ours[0]
    back = RayCluster(nodes=2)  # the cluster back (a new head), the same command again
    try:
        assert_same_counts(run_dojo(*EVAL, "--ray", back.address), local)
    finally:
        back.stop()
