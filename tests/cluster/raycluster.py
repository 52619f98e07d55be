"""A real Ray cluster on this machine for the tests: a head and more nodes, each killable whole.

Each node is a ``ray start --block`` process in a session of its own; its raylet, its agents
and the workers it forks stay in that session, so killing every process of the session is a
node lost as a machine is lost (no clean shutdown, no goodbye to the head).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
DOJO = [sys.executable, "-m", "dojo.cli"]
# fast health checks: a dead node is noticed in seconds, not the default half minute
FAST = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class RayCluster:
    """``nodes`` nodes of 1 CPU each (the first is the head) at ``address``."""

    def __init__(self, nodes: int = 2) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **FAST}
        self.procs: list[subprocess.Popen[bytes]] = []
        common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
        head = [RAY, "start", "--head", f"--port={self.port}", "--include-dashboard=false"]
        try:
            self._start(head + common)
            self._wait(lambda: _up(self.port), "the head's port")
            for _ in range(nodes - 1):
                self._start([RAY, "start", f"--address={self.address}", *common])
            self.wait_alive(nodes)
        except BaseException:
            self.stop()
            raise

    def _start(self, cmd: list[str]) -> None:
        self.procs.append(
            subprocess.Popen(
                cmd,
                env=self.env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def _wait(self, ready: object, what: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray cluster at {self.address}: no {what} in {timeout_s:.0f} s")
            time.sleep(0.5)

    def wait_alive(self, nodes: int) -> None:
        self._wait(lambda: self.alive() == nodes, f"{nodes} live nodes")

    def alive(self) -> int:
        """Live nodes, as the head's ``ray status`` lists them (-1 while it does not answer)."""
        run = subprocess.run(
            [RAY, "status", "--address", self.address],
            env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if run.returncode != 0 or "Active:" not in run.stdout:
            return -1
        active = run.stdout.split("Active:", 1)[1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if " node_" in line)

    def session(self, node: int) -> list[int]:
        """The pids of node ``node``'s processes now (its ``ray start``, raylet, workers)."""
        sid = self.procs[node].pid
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getsid(int(entry.name)) == sid:
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    def task_workers(self, node: int) -> list[int]:
        """Pids of node ``node``'s workers running one of dojo's tasks now."""
        out = []
        for pid in self.session(node):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_call"):
                    out.append(pid)
            except OSError:
                continue
        return out

    def kill(self, node: int) -> None:
        """Node ``node`` lost at once: SIGKILL to every process of its session."""
        for pid in self.session(node):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
        self.procs[node].wait(timeout=30)

    def stop(self) -> None:
        for node in reversed(range(len(self.procs))):
            self.kill(node)


def run_dojo(*args: str, timeout: float = 300) -> dict:
    """``dojo ARGS --json`` in a fresh process; its JSON (the whole stdout: Ray printed nothing)."""
    run = subprocess.run([*DOJO, *args, "--json"], capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def start_dojo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*DOJO, *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_task(cluster: RayCluster, node: int, run: subprocess.Popen[str]) -> bool:
    """Wait (up to 2 min) until node ``node`` runs one of the command's tasks; False if it never did."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if cluster.task_workers(node):
            return True
        time.sleep(0.05)
    return False


# a small naive evaluation: six families' fleets, each a task
EVAL = ["eval", "--policy", "naive", "--decisions", "6000", "--cars", "4"]


def assert_same_counts(on_ray: dict, local: dict) -> None:
    """The two ``dojo eval`` results count the same, overall and drive by drive."""
    for key in ("decisions", "critical_interventions", "noncritical_interventions", "collisions"):
        assert on_ray[key] == local[key], key
    for fam, counts in local["families"].items():
        assert on_ray["families"][fam]["per_drive"] == counts["per_drive"], fam
