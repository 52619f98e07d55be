"""The tenant-code sandbox (bubblewrap): real hostile scripts, each denied, the host unharmed."""

from __future__ import annotations

import socket
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from dojo.errors import ConfigError
from dojo.service.agent import sandbox
from dojo.service.agent.sandbox import Limits, SandboxResult

WHY = sandbox.available()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"no sandbox here: {WHY}")


@pytest.fixture()
def host(tmp_path: Path) -> dict[str, Path]:
    """A host with two tenants' folders, a job store and a service config beside the job's."""
    tenants = tmp_path / "data" / "tenants"
    other = tenants / "other" / "uploads"
    other.mkdir(parents=True)
    (other / "secret.txt").write_text("other tenant's secret")
    (tmp_path / "data" / "jobs.sqlite").write_bytes(b"SQLite format 3\x00 the job store")
    (tmp_path / "service.toml").write_text("admin_token = 'hunter2'\n")
    job = tenants / "acme" / "jobs" / "j1"
    code, work, data = job / "code", job / "work", tenants / "acme" / "datasets" / "d1"
    for p in (code, work, data):
        p.mkdir(parents=True)
    (data / "images.txt").write_text("cat\ndog\n")
    return {"root": tmp_path, "code": code, "work": work, "data": data, "tenants": tenants}


def _run(
    host: dict[str, Path],
    script: str,
    limits: Limits | None = None,
    capsys: pytest.CaptureFixture[str] | None = None,
) -> tuple[SandboxResult, str]:
    (host["code"] / "main.py").write_text(textwrap.dedent(script))
    out = host["root"] / "out.txt"
    with open(out, "wb") as f:
        result = sandbox.run(
            [sys.executable, f"{sandbox.CODE}/main.py"],
            host["code"],
            host["work"],
            data=host["data"],
            env={"DOJO_DATA_DIR": sandbox.DATA, "DOJO_OUTPUT_DIR": sandbox.WORK},
            limits=limits or Limits(wall_s=60.0),
            stdout=f.fileno(),
            stderr=f.fileno(),
        )
    return result, out.read_text(errors="replace")


def test_a_well_behaved_script_reads_its_data_and_leaves_output(host: dict[str, Path]) -> None:
    result, out = _run(host, """
        import os
        print(open(os.environ["DOJO_DATA_DIR"] + "/images.txt").read().split())
        open(os.environ["DOJO_OUTPUT_DIR"] + "/model.txt", "w").write("weights")
        print("uid", os.getuid(), "home", os.environ["HOME"])
    """)  # fmt: skip
    assert result.returncode == 0 and not result.timed_out, out
    assert "['cat', 'dog']" in out and "uid 65534 home /job/work" in out
    assert (host["work"] / "model.txt").read_text() == "weights"
    assert result.output_bytes == len("weights") and not result.over_output


def test_other_tenants_the_job_store_and_the_service_config_are_not_there(
    host: dict[str, Path],
) -> None:
    targets = [
        host["tenants"] / "other" / "uploads" / "secret.txt",
        host["root"] / "data" / "jobs.sqlite",
        host["root"] / "service.toml",
        Path("/etc/passwd"),
        Path("/root/.bash_history"),
    ]
    result, out = _run(host, f"""
        import os
        for path in {[str(t) for t in targets]!r}:
            try:
                print("LEAKED", path, open(path, "rb").read()[:40])
            except OSError as e:
                print("denied", path, type(e).__name__)
        for folder in {[str(host["tenants"]), str(host["root"] / "data"), "/home"]!r}:
            try:
                print("LISTED", folder, os.listdir(folder))
            except OSError as e:
                print("denied", folder, type(e).__name__)
    """)  # fmt: skip
    assert result.returncode == 0, out
    assert "LEAKED" not in out and "LISTED" not in out
    assert out.count("denied") == len(targets) + 3
    assert (host["tenants"] / "other" / "uploads" / "secret.txt").read_text() == (
        "other tenant's secret"
    )


def test_nothing_outside_the_job_folder_can_be_written(host: dict[str, Path]) -> None:
    result, out = _run(host, """
        for path in ["/usr/evil", "/job/code/main.py", "/job/data/images.txt", "/evil", "/proc/evil"]:
            try:
                open(path, "a").write("x")
                print("WROTE", path)
            except OSError as e:
                print("denied", path, type(e).__name__)
        open("/tmp/scratch", "w").write("private tmp is fine")
    """)  # fmt: skip
    assert result.returncode == 0, out
    assert "WROTE" not in out and out.count("denied") == 5
    assert (host["data"] / "images.txt").read_text() == "cat\ndog\n"
    assert not (host["code"] / "main.py").read_text().endswith("x")  # not appended to


def test_no_socket_reaches_the_service_or_anything_else(host: dict[str, Path]) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted: list[object] = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        result, out = _run(host, f"""
            import socket
            for addr in [("127.0.0.1", {port}), ("127.0.0.1", 5432), ("10.0.0.1", 80), ("8.8.8.8", 53)]:
                s = socket.socket()
                s.settimeout(3)
                try:
                    s.connect(addr)
                    print("CONNECTED", addr)
                except OSError as e:
                    print("denied", addr, type(e).__name__)
            try:
                socket.getaddrinfo("pypi.org", 443)
                print("RESOLVED")
            except OSError as e:
                print("denied dns", type(e).__name__)
            # loopback inside the job's own namespace works: a multi-process job can talk to itself
            a = socket.socket(); a.bind(("127.0.0.1", 0)); a.listen()
            b = socket.create_connection(a.getsockname()); print("own loopback ok")
        """)  # fmt: skip
    finally:
        server.close()
    assert result.returncode == 0, out
    assert "CONNECTED" not in out and "RESOLVED" not in out and out.count("denied") == 5
    assert "own loopback ok" in out and accepted == []


def test_no_other_process_is_visible(host: dict[str, Path]) -> None:
    result, out = _run(host, """
        import os
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        print("pids", len(pids))
        print("caps", open("/proc/self/status").read().split("CapEff:")[1].split()[0])
    """)  # fmt: skip
    assert result.returncode == 0, out
    assert int(out.split("pids ")[1].split()[0]) <= 3  # itself (and bwrap's init)
    assert "caps 0000000000000000" in out


def test_a_fork_bomb_stops_at_the_process_limit(host: dict[str, Path]) -> None:
    result, out = _run(host, """
        import os, time
        children = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                children += 1
        except OSError as e:
            print("stopped at", children, type(e).__name__)
    """, Limits(processes=40, wall_s=20.0))  # fmt: skip
    assert "stopped at" in out, out
    assert int(out.split("stopped at ")[1].split()[0]) < 40
    assert result.wall_s < 20.0 + 10.0  # its children died with it, at the latest at the clock


def test_filling_the_disk_stops_at_the_file_limit(host: dict[str, Path]) -> None:
    result, out = _run(host, """
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # see EFBIG rather than die of the signal
        with open("/job/work/fill.bin", "wb") as f:
            try:
                for _ in range(64):
                    f.write(b"x" * (1 << 20))
                    f.flush()
                print("FILLED")
            except OSError as e:
                print("denied", type(e).__name__, e.errno)
    """, Limits(file_bytes=4 << 20, output_bytes=8 << 20, wall_s=30.0))  # fmt: skip
    assert "FILLED" not in out and "denied OSError 27" in out, out  # EFBIG
    assert (host["work"] / "fill.bin").stat().st_size <= 4 << 20
    assert not result.over_output


def test_sleeping_past_the_wall_clock_is_killed(host: dict[str, Path]) -> None:
    result, out = _run(host, """
        import time
        print("sleeping", flush=True)
        time.sleep(120)
        print("WOKE")
    """, Limits(wall_s=2.0))  # fmt: skip
    assert result.timed_out and result.returncode != 0
    assert "sleeping" in out and "WOKE" not in out
    assert result.wall_s < 2.0 + sandbox.KILL_GRACE_S + 5.0


def test_the_environment_is_cleared(host: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOJO_ADMIN_TOKEN", "hunter2")
    result, out = _run(host, """
        import os
        print(sorted(os.environ))
    """)  # fmt: skip
    assert result.returncode == 0 and "hunter2" not in out and "DOJO_ADMIN_TOKEN" not in out
    assert "DOJO_DATA_DIR" in out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wall_s": 0}, "wall_s=0 must be a number of seconds > 0"),
        ({"processes": -1}, "processes=-1 must be a whole number >= 1"),
        ({"memory_bytes": "lots"}, "memory_bytes='lots' must be a whole number"),
    ],
)
def test_bad_limits_get_one_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_bad_commands_get_one_clear_error(host: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="needs at least a program"):
        sandbox.command([], host["code"], host["work"])
    with pytest.raises(ConfigError, match="code folder .* does not exist"):
        sandbox.command(["python"], host["root"] / "nope", host["work"])
    with pytest.raises(ConfigError, match="must be a name and a string"):
        sandbox.command(["python"], host["code"], host["work"], env={"A=B": "x"})


def test_the_job_gets_sigterm_first_so_it_can_checkpoint(host: dict[str, Path]) -> None:
    result, out = _run(host, """
        import signal, sys, time
        def checkpoint(*_):
            open("/job/work/checkpoint.pt", "w").write("step 41")
            sys.exit(0)
        signal.signal(signal.SIGTERM, checkpoint)
        print("training", flush=True)
        time.sleep(120)
    """, Limits(wall_s=2.0))  # fmt: skip
    assert result.timed_out and "training" in out
    assert (host["work"] / "checkpoint.pt").read_text() == "step 41"
