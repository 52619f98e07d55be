"""Bad Ray addresses get one clear sentence before any work; without --ray, Ray is not imported."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dojo.cluster import resolve_address
from dojo.errors import ConfigError

DOJO = [sys.executable, "-m", "dojo.cli"]


@pytest.mark.parametrize("bad", ["localhost", "host:port", ":6379", "h:0", "h:70000"])
def test_a_malformed_address_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ConfigError, match=f"--ray={bad!r} is not a Ray address"):
        resolve_address(bad)


def test_the_environment_variable_is_used_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOJO_RAY_ADDRESS", "10.0.0.5:6379")
    assert resolve_address(None) == "10.0.0.5:6379"
    assert resolve_address("auto") == "auto"  # the flag wins
    monkeypatch.setenv("DOJO_RAY_ADDRESS", "nonsense")
    with pytest.raises(ConfigError, match="DOJO_RAY_ADDRESS='nonsense'"):
        resolve_address(None)
    monkeypatch.delenv("DOJO_RAY_ADDRESS")
    assert resolve_address(None) is None


def test_an_unreachable_cluster_fails_in_one_line_and_drives_nothing(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "logs"
    run = subprocess.run(
        [*DOJO, "drive", "--cars", "2", "--minutes", "0.1", "--out", str(out),
         "--ray", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert lines == [lines[0]] and f"No Ray cluster answers at 127.0.0.1:{port}" in lines[0]
    assert not list(out.glob("*.mcap"))


def test_without_the_flag_ray_is_not_even_imported(tmp_path: Path) -> None:
    code = (
        "import sys; from dojo.cli import main; "
        f"rc = main(['drive', '--cars', '2', '--minutes', '0.05', '--out', {str(tmp_path)!r}, '--json']); "
        "assert rc == 0; assert 'ray' not in sys.modules, 'ray was imported'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
