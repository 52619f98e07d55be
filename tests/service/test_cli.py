"""The command line against a real server on loopback (uvicorn), and a server killed with -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from dojo.cli import main
from dojo.service.api.app import create_app
from dojo.service.config import ServiceConfig

from .conftest import MCAP

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL, database URL) of a uvicorn server on a free loopback port, in a thread."""
    db_url = f"sqlite:///{tmp_path / 'svc.db'}"
    app = create_app(ServiceConfig(db_url=db_url, data_dir=tmp_path / "data", min_free_bytes=0))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", db_url
    srv.should_exit = True
    thread.join(5)
    app.state.ctx.db.dispose()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_admin_submit_and_jobs_commands(server, capsys, monkeypatch) -> None:
    url, db = server
    code, out, _ = _run(capsys, "admin", "tenant", "create", "acme", "--db", db, "--max-gpus", "2")
    assert code == 0 and "shown only this once" in out
    token = out.strip().splitlines()[-1]
    assert token.startswith("dojo_")
    monkeypatch.setenv("DOJO_URL", url)
    monkeypatch.setenv("DOJO_TOKEN", token)
    code, out, _ = _run(
        capsys,
        "submit",
        "eval",
        "--set",
        "policy=expert",
        "--set",
        "decisions=500",
        "--tiles",
        "2",
        "--priority",
        "5",
        "--name",
        "nightly",
        "--time-limit",
        "1.5h",
    )
    assert code == 0
    job = out.strip()
    assert job.startswith("job_")
    code, out, _ = _run(capsys, "jobs", "list")
    assert code == 0 and job in out and "nightly" in out and "2 tiles" in out
    code, out, _ = _run(capsys, "jobs", "show", job)
    shown = json.loads(out)
    assert (
        shown["spec"]["decisions"] == 500
        and shown["priority"] == 5
        and shown["time_limit_s"] == 5400
    )
    httpx.post(
        f"{url}/v1/jobs/{job}/logs",
        content=b"hello from the runner\n",
        headers={"Authorization": f"Bearer {token}"},
    ).raise_for_status()
    code, out, _ = _run(capsys, "jobs", "logs", job)
    assert out == "hello from the runner\n"
    code, out, _ = _run(capsys, "jobs", "cancel", job)
    assert code == 0 and out.strip() == f"{job} cancelled"
    code, out, _ = _run(capsys, "jobs", "logs", job, "--follow")  # ended: returns at once
    assert code == 0 and out == "hello from the runner\n"
    code, _, err = _run(capsys, "submit", "train", "--gpus", "3", "--set", "dataset=cuts")
    assert code == 2 and "max_gpus" in err and "HTTP 403" in err
    for bad in ("soon", "0", "5 minutes", "2w", "0.1s"):
        code, _, err = _run(capsys, "submit", "eval", "--set", "policy=naive", "--time-limit", bad)
        assert code == 2 and f"--time-limit {bad!r}" in err, (bad, err)
    code, out, _ = _run(capsys, "admin", "tenant", "set", "acme", "--max-gpus", "4", "--db", db)
    assert json.loads(out)["quotas"]["max_gpus"] == 4
    code, out, _ = _run(capsys, "admin", "token", "create", "--admin", "--db", db)
    admin = out.strip()
    listed = httpx.get(f"{url}/v1/tenants", headers={"Authorization": f"Bearer {admin}"}).json()
    assert [t["name"] for t in listed] == ["acme"]


BAD_ARGS = [
    (["submit", "eval", "--spec", "{bad json"], "not valid JSON"),
    (["submit", "eval", "--spec", "[1]"], "neither JSON nor a readable file"),
    (["submit", "eval", "--chips", "1", "--gpus", "1"], "one of --chips"),
    (["submit", "eval", "--set", "novalue"], "KEY=VALUE"),
    (["submit", "fly"], None),  # argparse: invalid choice
    (["jobs", "show", "job_0123456789abcdef"], "not found"),
    (["jobs", "show", "../../v1/tenants"], "is not a job id"),
    (["jobs", "cancel", "job_0123456789abcdef"], "not found"),
    (["submit", "eval", "--set", "policy=expert", "--set", "decisions=-1"], "decisions"),
    (["jobs", "logs", "x", "--offset", "-5"], "--offset -5"),
]


def test_bad_client_input_is_one_clear_line(server, capsys, monkeypatch) -> None:
    url, db = server
    code, out, _ = _run(capsys, "admin", "tenant", "create", "acme", "--db", db)
    monkeypatch.setenv("DOJO_URL", url)
    monkeypatch.setenv("DOJO_TOKEN", out.strip().splitlines()[-1])
    for argv, words in BAD_ARGS:
        if words is None:
            with pytest.raises(SystemExit):
                main(argv)
            capsys.readouterr()
            continue
        code, _, err = _run(capsys, *argv)
        assert code == 2 and words in err and err.count("\n") == 1, (argv, err)


def test_missing_token_and_unreachable_service(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("DOJO_TOKEN", raising=False)
    code, _, err = _run(capsys, "jobs", "list", "--url", "http://127.0.0.1:9")
    assert code == 2 and "No token" in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    code, _, err = _run(
        capsys, "jobs", "list", "--url", f"http://127.0.0.1:{port}", "--token", "dojo_x"
    )
    assert code == 2 and "Cannot reach the Dojo service" in err
    code, _, err = _run(
        capsys, "admin", "tenant", "create", "bad name!", "--db", str(tmp_path / "x.db")
    )
    assert code == 2 and "bad name!" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(db_url: str, data: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dojo.cli",
            "serve",
            "--db",
            db_url,
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--log-level",
            "warning",
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "server died")
    proc.kill()
    raise AssertionError("server did not start")


def test_kill_9_the_server_and_everything_is_still_there(tmp_path: Path, capsys) -> None:
    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"  # PostgreSQL's durability is PostgreSQL's
    code, out, _ = _run(capsys, "admin", "tenant", "create", "acme", "--db", db_url)
    h = {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(db_url, tmp_path / "data", port)
    try:
        ds = httpx.post(f"{url}/v1/datasets", json={"name": "logs"}, headers=h).json()["id"]
        httpx.post(
            f"{url}/v1/datasets/{ds}/files", params={"name": "a.mcap"}, content=MCAP, headers=h
        ).raise_for_status()
        jobs = [
            httpx.post(
                f"{url}/v1/jobs", json={"kind": "ingest", "spec": {"dataset": ds}}, headers=h
            ).json()["id"]
            for _ in range(3)
        ]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    proc = _start(db_url, tmp_path / "data", port)
    try:
        listed = httpx.get(f"{url}/v1/jobs", headers=h).json()
        assert sorted(j["id"] for j in listed["jobs"]) == sorted(jobs)
        files = httpx.get(f"{url}/v1/datasets/{ds}/files", headers=h).json()
        assert [f["name"] for f in files] == ["a.mcap"] and files[0]["size_bytes"] == len(MCAP)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return [int(x) for x in out.split()]


def test_serve_with_two_workers_runs_two_processes_over_one_store_and_stops_cleanly(
    tmp_path: Path, capsys
) -> None:
    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    code, out, _ = _run(capsys, "admin", "tenant", "create", "acme", "--db", db_url)
    h = {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(db_url, tmp_path / "data", port, "--workers", "2")
    try:
        workers = [p for p in _children(proc.pid) if _children(p) == []]  # uvicorn's processes
        assert len(workers) >= 2, workers
        # each request on a new connection, so the kernel spreads them over both processes
        ids = [
            httpx.post(f"{url}/v1/jobs", json={"kind": "drive"}, headers=h).json()["id"]
            for _ in range(12)
        ]
        listed = httpx.get(f"{url}/v1/jobs", params={"limit": 100}, headers=h).json()
        assert listed["total"] == 12 and sorted(j["id"] for j in listed["jobs"]) == sorted(ids)
        assert all(httpx.get(f"{url}/v1/jobs/{i}", headers=h).status_code == 200 for i in ids)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert _children(proc.pid) == []


def test_serve_refuses_a_bad_worker_count(tmp_path: Path, capsys) -> None:
    code, _, err = _run(capsys, "serve", "--data-dir", str(tmp_path), "--workers", "0")
    assert code == 2 and "--workers 0" in err


def test_jobs_logs_prints_a_log_longer_than_one_answer(server, capsys, monkeypatch) -> None:
    url, db = server
    code, out, _ = _run(capsys, "admin", "tenant", "create", "acme", "--db", db)
    token = out.strip().splitlines()[-1]
    h = {"Authorization": f"Bearer {token}"}
    job = httpx.post(f"{url}/v1/jobs", json={"kind": "drive"}, headers=h).json()["id"]
    lines = [f"{i:07d} {'x' * 92}\n" for i in range(15_000)]  # 1.5 MB, over the 1 MiB per answer
    for i in range(0, len(lines), 5000):
        httpx.post(
            f"{url}/v1/jobs/{job}/logs", content="".join(lines[i : i + 5000]).encode(), headers=h
        ).raise_for_status()
    code, out, _ = _run(capsys, "jobs", "logs", job, "--url", url, "--token", token)
    assert code == 0 and out == "".join(lines)
    code, out, _ = _run(
        capsys, "jobs", "logs", job, "--url", url, "--token", token, "--offset", "100"
    )
    assert out == "".join(lines)[100:]


def test_cloud_commands_and_submit_script_upload_a_folder_once(
    server, capsys, monkeypatch, tmp_path
) -> None:
    url, db = server
    code, out, _ = _run(capsys, "admin", "tenant", "create", "acme", "--db", db)
    monkeypatch.setenv("DOJO_URL", url)
    monkeypatch.setenv("DOJO_TOKEN", out.strip().splitlines()[-1])
    code, out, _ = _run(capsys, "cloud", "datasets", "create", "imgs", "--kind", "files")
    assert code == 0 and out.startswith("ds_")
    ds = out.strip()
    images = tmp_path / "images"
    (images / "ok").mkdir(parents=True)
    (images / "ok" / "1.png").write_bytes(b"png")
    (images / ".DS_Store").write_bytes(b"junk")  # hidden: left out
    code, out, _ = _run(capsys, "cloud", "datasets", "upload", ds, str(images), "--no-progress")
    assert code == 0 and "uploaded 1 file(s)" in out
    code, out, _ = _run(capsys, "cloud", "datasets", "list", "--json")
    assert json.loads(out)[0]["kind"] == "files" and json.loads(out)[0]["files"] == 1
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.py").write_text("print('hi')\n")
    argv = ["submit", "script", "--code", str(proj), "--entry", "train.py", "--dataset", ds]
    jobs = []
    for _ in range(2):
        code, out, err = _run(capsys, *argv, "--arg=--epochs", "--arg", "3", "--json")
        assert code == 0, err
        jobs.append(json.loads(out))
    assert jobs[0]["spec"]["code"] == jobs[1]["spec"]["code"]  # the same folder: uploaded once
    assert jobs[0]["spec"]["args"] == ["--epochs", "3"]
    code, out, _ = _run(capsys, "cloud", "code", "list", "--json")
    assert [c["id"] for c in json.loads(out)] == [jobs[0]["spec"]["code"]]
    code, _, err = _run(capsys, "submit", "script", "--code", str(proj), "--entry", "nope.py")
    assert code == 2 and "nope.py" in err and "HTTP 422" in err
    code, _, err = _run(capsys, "submit", "script", "--code", str(tmp_path / "missing"))
    assert code == 2 and "--entry" in err
    code, _, err = _run(
        capsys, "submit", "script", "--entry", "t.py", "--code", str(tmp_path / "x")
    )
    assert code == 2 and "is not a folder" in err
    code, _, err = _run(capsys, "submit", "eval", "--code", str(proj))
    assert code == 2 and "dojo submit script" in err
    code, _, err = _run(capsys, "cloud", "models", "download", "mdl_0123456789abcdef")
    assert code == 2 and "not one of yours" in err
    weights = bytes(range(256)) * 4096  # 1 MiB, streamed to the file
    stored = httpx.post(
        f"{url}/v1/jobs/{jobs[0]['id']}/checkpoints",
        params={"name": "model.pt"},
        content=weights,
        headers={"Authorization": f"Bearer {os.environ['DOJO_TOKEN']}"},
    )
    assert stored.status_code == 201, stored.text
    out = tmp_path / "got.pt"
    code, printed, err = _run(
        capsys, "cloud", "models", "download", stored.json()["id"], "--out", str(out)
    )
    assert code == 0 and printed.strip() == str(out), err
    assert out.read_bytes() == weights and not list(tmp_path.glob(".*.part"))
