"""The service's ``dojo`` subcommands: serve, submit, jobs, admin. Thin over the library."""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from dojo.errors import DojoConfigError

QUOTA_FLAGS = (
    ("--max-concurrent-jobs", "max_concurrent_jobs"),
    ("--max-chips", "max_chips"),
    ("--max-gpus", "max_gpus"),
    ("--max-storage-bytes", "max_storage_bytes"),
)


def _need_service_packages() -> None:
    import importlib.util

    missing = [
        m
        for m in ("fastapi", "uvicorn", "sqlalchemy", "httpx")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise DojoConfigError(
            f"The service needs {', '.join(missing)}: pip install 'dojo[service]'."
        )


def db_url(args: argparse.Namespace) -> str:
    """The job store URL from ``--db``, else ``$DOJO_DB``, else the data folder's SQLite file."""
    from dojo.service.config import ServiceConfig

    _need_service_packages()
    url = args.db or os.environ.get("DOJO_DB") or ""
    return ServiceConfig(db_url=url, data_dir=Path(args.data_dir)).resolved_db_url


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from dojo.service.api.app import CONFIG_ENV, app_from_env, config_to_env, create_app
    from dojo.service.config import ServiceConfig

    if not 0 < args.port < 65536:
        raise DojoConfigError(f"--port {args.port} must be between 1 and 65535.")
    if not 1 <= args.workers <= 64:
        raise DojoConfigError(f"--workers {args.workers} must be between 1 and 64.")
    config = ServiceConfig(
        db_url=db_url(args), data_dir=Path(args.data_dir), max_upload_bytes=args.max_upload_bytes
    )
    app = create_app(config)  # migrates the job store; a clear error if it cannot be reached
    print(
        f"dojo service on http://{args.host}:{args.port} (job store {app.state.ctx.db.dialect}, "
        f"files in {Path(args.data_dir).resolve()}, {args.workers} worker process"
        f"{'es' if args.workers > 1 else ''})",
        file=sys.stderr,
    )
    if args.workers > 1:
        # each worker is a fresh process (one interpreter lock each) that builds its own app
        app.state.ctx.db.dispose()
        os.environ[CONFIG_ENV] = config_to_env(config)
        uvicorn.run(
            f"{app_from_env.__module__}:{app_from_env.__name__}",
            factory=True,
            workers=args.workers,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
        )
        return 0
    # what start-up loaded stays for the life of the server: out of the collector's sight, a full
    # collection no longer walks it (under load those walks stalled every request for ~0.1-0.5 s)
    gc.freeze()
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        gc.unfreeze()  # let exit tear the objects down as usual (extension modules report leaks otherwise)
    return 0


def _client(args: argparse.Namespace) -> Any:
    _need_service_packages()
    from dojo.service.client import Client

    return Client(args.url, args.token)


def _parse_spec(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if args.spec:
        text = args.spec
        if not text.lstrip().startswith("{"):
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as e:
                raise DojoConfigError(
                    f"--spec {args.spec} is neither JSON nor a readable file ({e})."
                ) from None
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as e:
            raise DojoConfigError(f"--spec {args.spec[:80]} is not valid JSON ({e}).") from None
        if not isinstance(loaded, dict):
            raise DojoConfigError(f"--spec {args.spec[:80]} must be a JSON object.")
        spec.update(loaded)
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise DojoConfigError(f"--set {item!r} must look like KEY=VALUE.")
        try:
            spec[key] = json.loads(raw)
        except json.JSONDecodeError:
            spec[key] = raw  # a bare string
    return spec


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration_s(text: str) -> int:
    """``"90"``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1.5d"`` -> whole seconds (at least 1)."""
    m = _DURATION.fullmatch(text.strip())
    if not m or float(m.group(1)) * _UNIT_S[m.group(2)] < 1:
        raise DojoConfigError(
            f"--time-limit {text!r} must be a duration of at least 1 s, like 90, 30m, 2h or 1d."
        )
    return round(float(m.group(1)) * _UNIT_S[m.group(2)])


def _submit(args: argparse.Namespace) -> int:
    given = [
        (u, n)
        for u, n in (("chips", args.chips), ("tiles", args.tiles), ("gpus", args.gpus))
        if n is not None
    ]
    if len(given) > 1:
        raise DojoConfigError("Give one of --chips, --tiles or --gpus, not several.")
    compute = dict(given) if given else {"chips": 1}
    spec = _parse_spec(args)
    script_flags = (args.code, args.entry, args.dataset, args.arg)
    if args.kind != "script" and any(script_flags):
        raise DojoConfigError("--code, --entry, --dataset and --arg are for `dojo submit script`.")
    with _client(args) as c:
        if args.kind == "script":
            from dojo.service.tenant_commands import code_id

            if not (args.code or spec.get("code")) or not (args.entry or spec.get("entry")):
                raise DojoConfigError("dojo submit script needs --code DIR and --entry FILE.")
            if args.code:
                spec["code"] = code_id(c, args.code)
            spec.update({k: v for k, v in (("entry", args.entry), ("dataset", args.dataset)) if v})
            if args.arg:
                spec["args"] = list(args.arg)
        job = c.submit(
            args.kind,
            spec,
            compute,
            priority=args.priority,
            name=args.name,
            time_limit_s=None if args.time_limit is None else parse_duration_s(args.time_limit),
        )
    print(json.dumps(job, indent=2) if args.json else job["id"])
    return 0


def _fmt_job(j: dict[str, Any]) -> str:
    ((unit, n),) = j["compute"].items()
    return f"{j['id']:<21}{j['kind']:<8}{j['status']:<11}{j['priority']:>5}  {n} {unit:<6}  {j['name']}"


def _jobs_list(args: argparse.Namespace) -> int:
    with _client(args) as c:
        out = c.jobs(status=args.status, kind=args.kind, limit=args.limit)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'id':<21}{'kind':<8}{'status':<11}{'prio':>5}  compute   name")
    for j in out["jobs"]:
        print(_fmt_job(j))
    print(f"({len(out['jobs'])} of {out['total']})")
    return 0


def _job_id(text: str) -> str:
    if not re.fullmatch(r"job_[0-9a-f]{16}", text):
        raise DojoConfigError(
            f"{text!r} is not a job id (job_ and 16 hex digits, see `dojo jobs list`)."
        )
    return text


def _jobs_show(args: argparse.Namespace) -> int:
    _job_id(args.job)
    with _client(args) as c:
        print(json.dumps(c.job(args.job), indent=2))
    return 0


def _jobs_logs(args: argparse.Namespace) -> int:
    if args.offset < 0:
        raise DojoConfigError(f"--offset {args.offset} must be >= 0.")
    _job_id(args.job)
    with _client(args) as c:
        for chunk in c.logs(args.job, offset=args.offset, follow=args.follow):
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
    return 0


def _jobs_cancel(args: argparse.Namespace) -> int:
    _job_id(args.job)
    with _client(args) as c:
        job = c.cancel(args.job)
    print(f"{job['id']} {job['status']}")
    return 0


def _quota_values(args: argparse.Namespace) -> dict[str, int | None]:
    return {dest: getattr(args, dest) for _, dest in QUOTA_FLAGS}


def _admin_tenant_create(args: argparse.Namespace) -> int:
    from dojo.service.api import admin

    out = admin.tenant_create(db_url(args), args.name, _quota_values(args))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"tenant {out['name']} ({out['id']}) created; its token, shown only this once:")
        print(out["token"])
    return 0


def _admin_tenant_list(args: argparse.Namespace) -> int:
    from dojo.service.api import admin

    print(json.dumps(admin.tenant_list(db_url(args)), indent=2))
    return 0


def _admin_tenant_set(args: argparse.Namespace) -> int:
    from dojo.service.api import admin

    disabled = True if args.disable else False if args.enable else None
    print(
        json.dumps(
            admin.tenant_update(db_url(args), args.tenant, _quota_values(args), disabled), indent=2
        )
    )
    return 0


def _admin_token_create(args: argparse.Namespace) -> int:
    from dojo.service.api import admin

    if (args.tenant is None) == (not args.admin):
        raise DojoConfigError(
            "Give --tenant NAME for a tenant token, or --admin for an admin token."
        )
    print(admin.token_create(db_url(args), args.tenant, args.name))
    return 0


def _admin_invoice(args: argparse.Namespace) -> int:
    from dojo.service.api import admin

    out = admin.invoice(db_url(args), args.tenant, args.month, args.prices)
    print(json.dumps(out, indent=2) if args.json else admin.format_invoice(out))
    return 0


def store_flags(
    p: argparse.ArgumentParser, data_dir_help: str = "folder of uploads and checkpoints"
) -> None:
    """``--db`` and ``--data-dir``: where the job store and the service's files are."""
    p.add_argument(
        "--db",
        default=None,
        help="job store URL: sqlite:///PATH or postgresql://USER@HOST/DB "
        "(default: $DOJO_DB, else DATA_DIR/dojo.db)",
    )
    p.add_argument("--data-dir", default="dojo-service", help=data_dir_help)


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url", default=None, help="service URL (default: $DOJO_URL, else http://127.0.0.1:8000)"
    )
    p.add_argument("--token", default=None, help="API token (default: $DOJO_TOKEN)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``serve``, ``submit``, ``jobs`` and ``admin`` on the top-level ``dojo`` parser."""
    from dojo.service import tenant_commands
    from dojo.service.constants import JOB_KINDS

    sv = sub.add_parser(
        "serve", help="run the multi-tenant training service (REST API, OpenAPI at /openapi.json)"
    )
    store_flags(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument(
        "--max-upload-bytes", type=int, default=8 * 1024**3, help="largest uploaded file"
    )
    sv.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (each its own Python interpreter lock)",
    )
    sv.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    sv.set_defaults(func=_serve)

    sm = sub.add_parser(
        "submit", help="submit a job to the service (drive, ingest, train, eval, loop, script)"
    )
    sm.add_argument("kind", choices=JOB_KINDS)
    sm.add_argument(
        "--spec", default=None, help="the job's settings: a JSON object or a .json file"
    )
    sm.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one setting (VALUE read as JSON, else as a string); repeatable",
    )
    sm.add_argument("--chips", type=int, default=None, help="D1 chips to run on")
    sm.add_argument("--tiles", type=int, default=None, help="training tiles (25 D1 each) to run on")
    sm.add_argument("--gpus", type=int, default=None, help="GPUs to run on")
    sm.add_argument("--priority", type=int, default=0, help="higher runs first (-1000..1000)")
    sm.add_argument("--name", default="", help="a label")
    sm.add_argument(
        "--time-limit",
        default=None,
        metavar="DURATION",
        help="stop a run that lasts longer (90, 30m, 2h, 1d); lets the scheduler backfill the job",
    )
    sm.add_argument(
        "--json", action="store_true", help="print the whole job as JSON, not just its id"
    )
    scr = sm.add_argument_group("script jobs (your own training code)")
    scr.add_argument("--code", default=None, help="a folder (packed and uploaded) or a code id")
    scr.add_argument("--entry", default=None, help="the script to run, a path in --code")
    scr.add_argument("--dataset", default=None, help="a dataset id, read-only at DOJO_DATA_DIR")
    scr.add_argument(
        "--arg", action="append", default=[], help="an argument of the script; repeatable"
    )
    _client_flags(sm)
    sm.set_defaults(func=_submit)
    tenant_commands.add_commands(sub, _client_flags)

    jobs = sub.add_parser(
        "jobs", help="the service's jobs: list, show, logs, cancel"
    ).add_subparsers(dest="jobs_command", required=True)
    jl = jobs.add_parser("list", help="your jobs, newest first")
    jl.add_argument("--status", default=None, help="comma-separated statuses, e.g. queued,running")
    jl.add_argument("--kind", default=None, choices=JOB_KINDS)
    jl.add_argument("--limit", type=int, default=50)
    jl.add_argument("--json", action="store_true")
    jl.set_defaults(func=_jobs_list)
    for name, func, text in (
        ("show", _jobs_show, "one job as JSON"),
        ("cancel", _jobs_cancel, "cancel a job"),
    ):
        p = jobs.add_parser(name, help=text)
        p.add_argument("job", help="job id")
        p.set_defaults(func=func)
        _client_flags(p)
    lg = jobs.add_parser("logs", help="a job's log; --follow streams it until the job ends")
    lg.add_argument("job", help="job id")
    lg.add_argument("--follow", "-f", action="store_true")
    lg.add_argument("--offset", type=int, default=0, help="start at this byte of the log")
    lg.set_defaults(func=_jobs_logs)
    for p in (jl, lg):
        _client_flags(p)

    adm = sub.add_parser(
        "admin", help="operator commands on the job store: tenants, quotas, tokens, invoices"
    )
    asub = adm.add_subparsers(dest="admin_command", required=True)
    ten = asub.add_parser("tenant", help="create, list or change tenants").add_subparsers(
        dest="tenant_command", required=True
    )
    tc = ten.add_parser("create", help="a new tenant; prints its token once")
    tc.add_argument("name")
    tc.add_argument("--json", action="store_true")
    tc.set_defaults(func=_admin_tenant_create)
    tl = ten.add_parser("list", help="every tenant with quotas and usage (JSON)")
    tl.set_defaults(func=_admin_tenant_list)
    ts = ten.add_parser("set", help="change a tenant's quotas, or disable/enable it")
    ts.add_argument("tenant", help="tenant name or id")
    onoff = ts.add_mutually_exclusive_group()
    onoff.add_argument("--disable", action="store_true")
    onoff.add_argument("--enable", action="store_true")
    ts.set_defaults(func=_admin_tenant_set)
    for p in (tc, ts):
        for flag, dest in QUOTA_FLAGS:
            p.add_argument(flag, dest=dest, type=int, default=None)
    tk = asub.add_parser("token", help="issue tokens").add_subparsers(
        dest="token_command", required=True
    )
    tkc = tk.add_parser("create", help="a new token (printed once): --tenant NAME, or --admin")
    tkc.add_argument("--tenant", default=None, help="tenant name or id")
    tkc.add_argument(
        "--admin", action="store_true", help="an admin token (manages tenants and quotas)"
    )
    tkc.add_argument("--name", default="", help="a label for the token")
    tkc.set_defaults(func=_admin_token_create)
    inv = asub.add_parser("invoice", help="a tenant's bill for a month: usage lines and total")
    inv.add_argument("tenant", help="tenant name or id")
    inv.add_argument("--month", required=True, help="the month to bill, YYYY-MM (UTC)")
    inv.add_argument(
        "--prices", default=None, help="a price list TOML (default: $DOJO_PRICES, else packaged)"
    )
    inv.add_argument("--json", action="store_true")
    inv.set_defaults(func=_admin_invoice)
    for p in (tc, tl, ts, tkc, inv):
        store_flags(p)
