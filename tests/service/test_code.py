"""Code uploads, files datasets and script specs through the HTTP API: every bad archive and bad
spec gets a clear 4xx before anything runs, and nothing already stored changes."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dojo.service.tenant_commands import pack
from tests.service.conftest import Service, files_under, upload


def _tar(members: list[tuple[str, bytes | None, str]]) -> bytes:
    """A tar.gz of (name, data, type): type "file", "dir", "sym" (data = its target) or "hard"."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[
                kind
            ]
            info.linkname = (data or b"").decode()
            tar.addfile(info)
    return buf.getvalue()


def _zip(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16) | 0x20  # a symbolic link's mode
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _post_code(svc: Service, h: dict[str, str], data: bytes, name: str = "c") -> Any:
    return svc.client.post(
        "/v1/code",
        params={"name": name},
        content=data,
        headers={**h, "Content-Type": "application/octet-stream"},
    )


GOOD = _tar([("train.py", b"print('hi')\n", "file"), ("pkg", None, "dir"),
             ("pkg/model.py", b"X = 1\n", "file")])  # fmt: skip
BOMB = _zip({"train.py": b"1", "zeros.bin": b"\0" * (40 << 20)})  # 40 MiB in ~40 KiB

BAD_ARCHIVES = [
    ("absolute path", _tar([("/etc/cron.d/x", b"x", "file")]), 422, "absolute"),
    ("dot-dot", _tar([("../../outside.py", b"x", "file")]), 422, ".."),
    ("dot-dot inside", _tar([("a/../../b.py", b"x", "file")]), 422, ".."),
    ("symlink out", _tar([("train.py", b"x", "file"), ("l", b"/etc/passwd", "sym")]), 422, "link"),
    ("hard link", _tar([("train.py", b"x", "file"), ("h", b"train.py", "hard")]), 422, "link"),
    ("zip symlink", _zip({"train.py": b"x"}, symlink="l"), 422, "link"),
    ("zip absolute", _zip({"/abs.py": b"x"}), 422, "absolute"),
    ("zip dot-dot", _zip({"../x.py": b"x"}), 422, ".."),
    ("hidden file", _tar([(".bashrc", b"x", "file")]), 422, "dot"),
    ("twice", _tar([("a.py", b"1", "file"), ("a.py", b"2", "file")]), 422, "twice"),
    ("file and folder", _tar([("a", b"1", "file"), ("a/b.py", b"2", "file")]), 422, "both"),
    ("folder and file", _zip({"a/b.py": b"2", "a": b"1"}), 422, "both"),
    ("zip bomb", BOMB, 413, "zip bomb"),
    ("not an archive", b"#!/bin/sh\nrm -rf /\n", 422, "tar.gz or a .zip"),
    ("truncated", GOOD[: len(GOOD) // 2], 422, "archive"),
    ("corrupt zip", b"PK\x03\x04" + b"\xff" * 200, 422, "zip"),
    ("empty", b"", 422, "archive"),
]


@pytest.mark.parametrize(
    ("why", "data", "status", "says"), BAD_ARCHIVES, ids=[b[0] for b in BAD_ARCHIVES]
)
def test_bad_archives_get_a_clear_4xx_and_store_nothing(
    svc: Service, why: str, data: bytes, status: int, says: str
) -> None:
    h = svc.tenant("acme", max_storage_bytes=200 << 20)
    kept = _post_code(svc, h, GOOD, "kept")
    assert kept.status_code == 201, kept.text
    before = files_under(svc.data_dir)
    r = _post_code(svc, h, data)
    assert r.status_code == status, (why, r.text)
    assert says in r.json()["detail"], (why, r.json()["detail"])
    assert files_under(svc.data_dir) == before  # nothing half-unpacked, no archive left
    assert [c["name"] for c in svc.client.get("/v1/code", headers=h).json()] == ["kept"]
    assert svc.client.get("/v1/me", headers=h).json()["usage"]["storage_bytes"] == sum(
        len(d) for d in (b"print('hi')\n", b"X = 1\n")
    )


def test_code_is_unpacked_listed_counted_and_deleted(svc: Service, tmp_path: Path) -> None:
    h, other = svc.tenant("acme"), svc.tenant("rival")
    folder = tmp_path / "proj"
    (folder / "pkg").mkdir(parents=True)
    (folder / "train.py").write_text("import pkg\n")
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("secret")  # hidden: never packed
    assert pack(folder) == pack(folder)  # byte-identical, so the CLI uploads a folder once
    r = _post_code(svc, h, pack(folder), "proj")
    assert r.status_code == 201, r.text
    code = r.json()
    assert code["files"] == 2 and code["size_bytes"] == len("import pkg\n")
    files = svc.client.get(f"/v1/code/{code['id']}/files", headers=h).json()
    assert files == ["pkg/__init__.py", "train.py"]
    assert svc.client.get("/v1/me", headers=h).json()["usage"]["storage_bytes"] == 11
    assert _post_code(svc, h, pack(folder), "proj").status_code == 409  # names are unique
    for path in (f"/v1/code/{code['id']}", f"/v1/code/{code['id']}/files"):
        assert svc.client.get(path, headers=other).status_code == 404  # another tenant's
    assert svc.client.delete(f"/v1/code/{code['id']}", headers=other).status_code == 404
    # in use by an active job: kept
    job = _script(svc, h, {"code": code["id"], "entry": "train.py"})
    assert job.status_code == 201, job.text
    assert svc.client.delete(f"/v1/code/{code['id']}", headers=h).status_code == 409
    svc.client.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=h)
    assert svc.client.delete(f"/v1/code/{code['id']}", headers=h).status_code == 204
    assert svc.client.get("/v1/code", headers=h).json() == []
    assert svc.client.get("/v1/me", headers=h).json()["usage"]["storage_bytes"] == 0
    assert not svc.ctx.storage.code_dir(svc.tenants["acme"]["id"], code["id"]).exists()


def test_code_counts_against_the_storage_quota(svc: Service) -> None:
    h = svc.tenant("acme", max_storage_bytes=1000)
    big = _tar([("train.py", b"x" * 600, "file")])
    assert _post_code(svc, h, big, "a").status_code == 201
    r = _post_code(svc, h, big, "b")  # 600 + 600 > 1000
    # the archive itself fits; what it unpacks to does not: the quota's own answer
    assert r.status_code == 403 and r.json()["quota"] == "max_storage_bytes", r.text
    assert [c["name"] for c in svc.client.get("/v1/code", headers=h).json()] == ["a"]


def _script(svc: Service, h: dict[str, str], spec: dict[str, Any]) -> Any:
    return svc.client.post(
        "/v1/jobs", json={"kind": "script", "spec": spec, "compute": {"chips": 1}}, headers=h
    )


def test_bad_script_specs_get_a_clear_4xx_and_queue_nothing(svc: Service) -> None:
    h, other = svc.tenant("acme"), svc.tenant("rival")
    code = _post_code(svc, h, GOOD, "mine").json()["id"]
    theirs = _post_code(svc, other, GOOD, "theirs").json()["id"]
    their_ds = svc.client.post("/v1/datasets", json={"name": "d"}, headers=other).json()["id"]
    logs = svc.client.post("/v1/datasets", json={"name": "logs"}, headers=h).json()["id"]
    store = svc.client.post(
        "/v1/datasets", json={"name": "s3", "uri": "s3://bucket/x", "kind": "files"}, headers=h
    ).json()["id"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"code": code, "entry": "missing.py"}, 422, "not a file in code"),
        ({"code": code, "entry": "pkg"}, 422, "not a file in code"),  # a folder
        ({"code": code, "entry": "../../etc/passwd"}, 422, "entry"),
        ({"code": code, "entry": "/job/code/train.py"}, 422, "entry"),
        ({"code": code, "entry": ".hidden.py"}, 422, "entry"),
        ({"code": code, "entry": "train.py", "args": [1, 2]}, 422, "args.0"),
        ({"code": code, "entry": "train.py", "args": "--epochs 3"}, 422, "args"),
        ({"code": code, "entry": "train.py", "args": ["a\x00b"]}, 422, "args.0"),
        ({"code": code, "entry": "train.py", "shell": "rm -rf /"}, 422, "shell"),
        ({"entry": "train.py"}, 422, "code"),
        ({"code": "code_../../x", "entry": "train.py"}, 422, "code"),
        ({"code": theirs, "entry": "train.py"}, 404, "not found"),
        ({"code": code, "entry": "train.py", "dataset": their_ds}, 404, "not found"),
        ({"code": code, "entry": "train.py", "dataset": store}, 422, "registered store"),
    ]
    for spec, status, says in cases:
        r = _script(svc, h, spec)
        assert r.status_code == status, (spec, r.text)
        assert says in r.json()["detail"], (spec, r.json()["detail"])
    ok = _script(svc, h, {"code": code, "entry": "pkg/model.py", "dataset": logs})
    assert ok.status_code == 201, ok.text
    assert svc.client.get("/v1/jobs", headers=h).json()["total"] == 1  # only the good one


def test_files_datasets_take_any_files_in_folders_and_drive_log_datasets_only_mcap(
    svc: Service,
) -> None:
    h = svc.tenant("acme")
    files = svc.client.post("/v1/datasets", json={"name": "imgs", "kind": "files"}, headers=h)
    logs = svc.client.post("/v1/datasets", json={"name": "logs"}, headers=h)
    assert files.json()["kind"] == "files" and logs.json()["kind"] == "drive_logs"
    fid, lid = files.json()["id"], logs.json()["id"]
    for name in ("ok/0001.png", "defect/deep/0002.png", "shard-000.tar", "table.parquet"):
        r = upload(svc, h, fid, name, b"\x89PNG anything")
        assert r.status_code == 201, (name, r.text)
    listed = [f["name"] for f in svc.client.get(f"/v1/datasets/{fid}/files", headers=h).json()]
    assert listed == sorted(
        ["ok/0001.png", "defect/deep/0002.png", "shard-000.tar", "table.parquet"]
    )
    folder = svc.ctx.storage.dataset_dir(svc.tenants["acme"]["id"], fid)
    assert (folder / "defect" / "deep" / "0002.png").read_bytes() == b"\x89PNG anything"
    before = files_under(svc.data_dir)
    for name in (
        "../x.png",
        "ok/../../x.png",
        "/abs.png",
        "ok//x.png",
        "ok/.hidden",
        "a/" * 17 + "x",
    ):
        r = upload(svc, h, fid, name, b"x")
        assert r.status_code == 422, (name, r.text)
    assert upload(svc, h, lid, "ok/0001.mcap").status_code == 422  # drive logs lie side by side
    assert upload(svc, h, lid, "x.png", b"\x89PNG").status_code == 422  # and are MCAP
    assert upload(svc, h, fid, "ok/0001.png", b"again").status_code == 409  # never replaced
    assert files_under(svc.data_dir) == before
    # ingest reads drive logs only
    r = svc.client.post(
        "/v1/jobs", json={"kind": "ingest", "spec": {"dataset": fid}, "compute": {"chips": 1}},
        headers=h,
    )  # fmt: skip
    assert r.status_code == 422 and "not drive logs" in r.json()["detail"], r.text
