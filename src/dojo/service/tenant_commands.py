"""A tenant's ``dojo cloud`` commands for its files on the service: datasets, code and models
(thin over the client).

``dojo cloud datasets create|list|upload``, ``dojo cloud code list``, ``dojo cloud models
list|download`` (``dojo datasets`` is the local clip store's), and
what ``dojo submit script --code DIR`` does with a folder: pack it (:func:`pack`) and upload it
once (its name carries the archive's SHA-256, so the same folder is not uploaded twice).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from dojo.errors import DojoConfigError

SKIPPED = ("__pycache__",)  # and anything hidden (.git, .venv, ...): never part of the code
CODE_ID = re.compile(r"^code_[0-9a-f]{16}$")


def _kept(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return not any(p.startswith(".") or p in SKIPPED or p.endswith(".pyc") for p in parts)


def pack(folder: Path) -> bytes:
    """The folder's files as a tar.gz (paths relative to it; hidden files, ``__pycache__`` and
    links left out), byte-identical for identical files: sorted, times and owners zeroed."""
    if not folder.is_dir():
        raise DojoConfigError(f"--code {folder} is not a folder (nor a code id, code_...).")
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file() or not _kept(path, folder):
                continue
            info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def code_id(client: Any, code: str) -> str:
    """``code`` if it is a code id; else the folder it names, packed and uploaded (or the code
    already uploaded from identical files)."""
    if CODE_ID.match(code):
        return code
    folder = Path(code)
    archive = pack(folder)
    base = re.sub(r"[^A-Za-z0-9._-]", "-", folder.resolve().name).lstrip("._-") or "code"
    name = f"{base[:40]}-{hashlib.sha256(archive).hexdigest()[:12]}"
    for known in client.code():
        if known["name"] == name:
            return str(known["id"])
    return str(client.upload_code(archive, name)["id"])


def _client(args: argparse.Namespace) -> Any:
    from dojo.service.commands import _client as make

    return make(args)


def _print(rows: Any, as_json: bool, columns: tuple[str, ...]) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print("  ".join(str(row.get(c, "")) for c in columns))


def _datasets_create(args: argparse.Namespace) -> int:
    with _client(args) as c:
        ds = c.create_dataset(args.name, uri=args.uri, kind=args.kind)
    print(json.dumps(ds, indent=2) if args.json else ds["id"])
    return 0


def _datasets_list(args: argparse.Namespace) -> int:
    with _client(args) as c:
        _print(c.datasets(), args.json, ("id", "name", "kind", "files", "size_bytes"))
    return 0


def _files_of(paths: list[str]) -> list[tuple[Path, str]]:
    """(file, its name in the dataset): a file by its name, a folder's files by their paths
    below it (hidden files left out)."""
    out: list[tuple[Path, str]] = []
    for text in paths:
        path = Path(text)
        if path.is_file():
            out.append((path, path.name))
        elif path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and not f.is_symlink() and _kept(f, path):
                    out.append((f, f.relative_to(path).as_posix()))
        else:
            raise DojoConfigError(f"{text} is neither a file nor a folder.")
    return out


def _datasets_upload(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    files = _files_of(args.paths)
    with _client(args) as c:
        for path, name in tqdm(files, desc="upload", unit="file", disable=args.no_progress):
            c.upload(args.dataset, path, name)
    print(f"uploaded {len(files)} file(s) to {args.dataset}")
    return 0


def _code_list(args: argparse.Namespace) -> int:
    with _client(args) as c:
        _print(c.code(), args.json, ("id", "name", "files", "size_bytes"))
    return 0


def _models_list(args: argparse.Namespace) -> int:
    with _client(args) as c:
        _print(c.models(args.job), args.json, ("id", "job_id", "name", "size_bytes"))
    return 0


def _models_download(args: argparse.Namespace) -> int:
    with _client(args) as c:
        out = Path(args.out) if args.out else None
        if out is None:
            known = {m["id"]: m for m in c.models()}
            if args.model not in known:
                raise DojoConfigError(
                    f"Model {args.model} is not one of yours (dojo cloud models list)."
                )
            out = Path(known[args.model]["name"])
        print(c.download_model(args.model, out))
    return 0


def add_commands(sub: argparse._SubParsersAction, client_flags: Any) -> None:
    """Register ``cloud datasets|code|models`` on the top-level ``dojo`` parser."""
    cloud = sub.add_parser(
        "cloud", help="your files on the service: datasets, code, models"
    ).add_subparsers(dest="cloud_command", required=True)
    ds = cloud.add_parser("datasets", help="your datasets on the service").add_subparsers(
        dest="datasets_command", required=True
    )
    dc = ds.add_parser("create", help="a new dataset to upload into; prints its id")
    dc.add_argument("name")
    dc.add_argument(
        "--kind",
        default="drive_logs",
        choices=("drive_logs", "files"),
        help="drive_logs: MCAP drive logs; files: any files, for a script job",
    )
    dc.add_argument("--uri", default=None, help="register a remote store instead (s3://...)")
    dc.add_argument("--json", action="store_true")
    dc.set_defaults(func=_datasets_create)
    dl = ds.add_parser("list", help="your datasets")
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=_datasets_list)
    du = ds.add_parser("upload", help="upload files, or folders' files by their paths")
    du.add_argument("dataset", help="dataset id (ds_...)")
    du.add_argument("paths", nargs="+", help="files or folders")
    du.add_argument("--no-progress", action="store_true")
    du.set_defaults(func=_datasets_upload)

    code = cloud.add_parser("code", help="your code archives on the service").add_subparsers(
        dest="code_command", required=True
    )
    cl = code.add_parser("list", help="your uploaded code (dojo submit script --code uploads)")
    cl.add_argument("--json", action="store_true")
    cl.set_defaults(func=_code_list)

    models = cloud.add_parser("models", help="your models on the service").add_subparsers(
        dest="models_command", required=True
    )
    ml = models.add_parser("list", help="your models (checkpoints and script outputs)")
    ml.add_argument("--job", default=None, help="only this job's")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=_models_list)
    md = models.add_parser("download", help="save a model's file (checked against its SHA-256)")
    md.add_argument("model", help="model id (mdl_...)")
    md.add_argument("--out", default=None, help="file to write (default: the model's name)")
    md.set_defaults(func=_models_download)
    for p in (dc, dl, du, cl, ml, md):
        client_flags(p)


__all__ = ["add_commands", "code_id", "pack"]
