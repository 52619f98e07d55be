"""`dojo bench service`: the API's latency under an open-loop load, beside a bare uvicorn+FastAPI floor.

Both servers run as real processes on a free loopback port (ours is `dojo serve`, the floor a
one-route FastAPI app under the same uvicorn). The client issues requests on a fixed schedule
(``rate`` per second) whether or not earlier ones have answered, and a request's latency runs from
the moment it was *scheduled*, not sent: a slow answer cannot hide the requests queued behind it
(no coordinated omission). Any non-2xx answer, timeout or connection error is an error.

The target (issue 8): 200 requests/s of mixed list/submit/show for 60 s, p99 < 50 ms, no error.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dojo.errors import DojoConfigError
from dojo.validate import whole

TARGET_P99_MS = 50.0
TARGET_RATE = 200
TARGET_SECONDS = 60
KINDS = ("list", "submit", "show")
DEFAULT_MIX = {"list": 1.0, "submit": 1.0, "show": 1.0}
JOB = {
    "kind": "eval",
    "name": "bench",
    "compute": {"chips": 1},
    "spec": {"policy": "naive", "decisions": 1000},
}  # small, valid, no references to resolve
FLOOR_APP = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/v1/ping")
def ping() -> dict[str, bool]:  # a sync route, run in the thread pool like the service's own
    return {"ok": True}
"""
Log = Callable[[str], None]
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank), max and mean of ``values`` [ms]; zeros when empty."""
    if not values:
        return {
            "count": 0,
            "p50_ms": 0.0,
            "p95_ms": 0.0,
            "p99_ms": 0.0,
            "max_ms": 0.0,
            "mean_ms": 0.0,
        }
    xs = sorted(values)

    def rank(q: float) -> float:
        return xs[min(len(xs) - 1, max(0, int(-(-q * len(xs) // 1)) - 1))]

    return {
        "count": len(xs),
        "p50_ms": rank(0.50),
        "p95_ms": rank(0.95),
        "p99_ms": rank(0.99),
        "max_ms": xs[-1],
        "mean_ms": sum(xs) / len(xs),
    }


@contextmanager
def _process(
    cmd: list[str], url: str, cwd: Path, log: Log, name: str, startup_s: float = 60.0
) -> Iterator[None]:
    """Run ``cmd`` until the block ends; wait for ``url`` to answer first."""
    import httpx

    err_path = cwd / f"{name}.stderr"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + startup_s
        with httpx.Client(
            timeout=1.0
        ) as poll:  # one client: each new one loads the CA store (~0.1 s)
            while True:
                if proc.poll() is not None:
                    tail = err_path.read_text(errors="replace")[-2000:]
                    raise DojoConfigError(
                        f"The {name} server exited at start (code {proc.returncode}): {tail}"
                    )
                try:
                    if poll.get(url).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise DojoConfigError(
                        f"The {name} server did not answer {url} within {startup_s:.0f} s."
                    )
                time.sleep(0.05)
        log(f"{name} server up (pid {proc.pid})")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _job_store(db: str | None, folder: Path, log: Log) -> Iterator[tuple[str, str]]:
    """A fresh job store: ``(url, dialect)``; a PostgreSQL database gets a schema of its own, dropped after."""
    if not db or db == "sqlite":
        (folder / "data").mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{(folder / 'data' / 'dojo.db').resolve()}", "sqlite"
        return
    if not db.startswith(("postgresql://", "postgres://")):
        raise DojoConfigError(
            f"--db {db!r} must be 'sqlite' or a postgresql://USER@HOST[:PORT]/DB URL."
        )
    import psycopg

    parts = urlsplit(db)
    connect = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": parts.username or "postgres",
        "dbname": parts.path.lstrip("/") or "postgres",
    }
    if parts.password:
        connect["password"] = parts.password
    schema = f"dojo_bench_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(**connect, autocommit=True, connect_timeout=5) as conn:  # type: ignore[arg-type]
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as e:
        raise DojoConfigError(
            f"Cannot reach PostgreSQL at {parts.hostname}:{parts.port or 5432} ({e})."
        ) from None
    log(f"PostgreSQL schema {schema}")
    sep = "&" if parts.query else "?"
    try:
        yield f"{db}{sep}options=-csearch_path%3D{schema}", "postgresql"
    finally:
        with psycopg.connect(**connect, autocommit=True, connect_timeout=5) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


async def _drive(
    base_url: str,
    headers: dict[str, str],
    rate: float,
    seconds: float,
    mix: dict[str, float],
    seed: int,
    timeout_s: float,
    warmup_s: float,
    connections: int = 64,
) -> dict[str, Any]:
    """Issue ``rate`` x ``seconds`` requests on a fixed schedule; latencies from the scheduled instant.

    The client is aiohttp on uvloop where installed: the client shares the machine's cores with
    the server, and httpx spent a whole core of the two at 200 requests/s, more than the server.
    """
    import aiohttp

    rng = random.Random(seed)
    names = [k for k, w in mix.items() if w > 0]
    weights = [mix[k] for k in names]
    job_ids: list[str] = []
    lat: dict[str, list[float]] = {k: [] for k in names}
    service: list[float] = []  # from the actual send (a connection free), for the record
    errors: dict[str, int] = {k: 0 for k in names}
    samples: list[str] = []
    body = json.dumps(JOB).encode()
    post_headers = {**headers, "Content-Type": "application/json"}
    # requests beyond the pool queue on a semaphore; their latency still runs from the scheduled instant
    gate = asyncio.Semaphore(connections)
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    async with aiohttp.ClientSession(
        base_url,
        headers=headers,
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as client:

        async def request(kind: str) -> tuple[int, bytes]:
            if kind == "submit":
                ctx = client.post("/v1/jobs", data=body, headers=post_headers)
            elif kind == "list":
                ctx = client.get("/v1/jobs", params={"limit": "20"})
            elif kind == "show":
                ctx = client.get(f"/v1/jobs/{rng.choice(job_ids)}")
            else:
                ctx = client.get("/v1/ping")
            async with ctx as r:
                return r.status, await r.read()

        async def one(kind: str, scheduled: float, record: bool) -> None:
            sent = time.perf_counter()
            try:
                async with gate:
                    sent = time.perf_counter()
                    status, data = await request(kind)
                ok = 200 <= status < 300
                if ok and kind == "submit":
                    job_ids.append(json.loads(data)["id"])
                what = f"{kind}: HTTP {status} {data[:200].decode(errors='replace')}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                ok, what = False, f"{kind}: {type(e).__name__} {e}"
            done = time.perf_counter()
            if not record:
                return
            lat[kind].append((done - scheduled) * 1e3)
            service.append((done - sent) * 1e3)
            if not ok:
                errors[kind] += 1
                if len(samples) < 10:
                    samples.append(what)

        if "show" in names:  # jobs to show
            for _ in range(5):
                await one("submit", time.perf_counter(), False)
            if not job_ids:
                status, data = await request("submit")
                raise DojoConfigError(
                    f"Cannot submit the benchmark's jobs: HTTP {status} {data[:300]!r}"
                )
        if warmup_s > 0:  # the same schedule, not recorded
            t0 = time.perf_counter()
            n_warm = int(rate * warmup_s)
            warm = []
            for i in range(n_warm):
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                warm.append(
                    asyncio.create_task(one(rng.choices(names, weights)[0], t0 + i / rate, False))
                )
            await asyncio.gather(*warm)
        n = max(1, round(rate * seconds))
        tasks = []
        lag = 0.0
        t0 = time.perf_counter()
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lag = max(lag, time.perf_counter() - scheduled)
            tasks.append(asyncio.create_task(one(rng.choices(names, weights)[0], scheduled, True)))
        issue_end = time.perf_counter()
        # an overloaded server leaves a backlog: give it the timeout, then count what is left as errors
        _, pending = await asyncio.wait(tasks, timeout=timeout_s + 5.0)
        end = time.perf_counter()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        unanswered = len(pending)
    everything = [x for k in names for x in lat[k]]
    n_errors = sum(errors.values()) + unanswered
    return {
        "issued": n,
        "completed": len(everything),
        "errors": n_errors,
        "unanswered": unanswered,
        "errors_by_kind": errors,
        "error_samples": samples,
        "scheduled_rate": rate,
        "issue_rate": n / max(issue_end - t0, 1e-9) if n > 1 else float(n),
        "achieved_rate": (len(everything) - sum(errors.values())) / max(end - t0, 1e-9),
        "wall_s": end - t0,
        "max_issue_lag_ms": lag * 1e3,
        "latency": {
            "overall": _percentiles(everything),
            **{k: _percentiles(lat[k]) for k in names},
        },
        "service_time": _percentiles(service),
    }


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop where it is installed (it is with the service's packages)."""
    gc.freeze()  # the CLI's imports (torch among them) are out of the collector's walk: no pauses
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        return uvloop.run(coro)
    finally:
        gc.unfreeze()


def bench_service(
    rate: float = TARGET_RATE,
    seconds: float = TARGET_SECONDS,
    db: str | None = None,
    mix: dict[str, float] | None = None,
    floor: bool = True,
    log_level: str = "warning",
    timeout_s: float = 10.0,
    warmup_s: float = 1.0,
    seed: int = 0,
    workers: int = 2,
    log: Log | None = None,
) -> dict[str, Any]:
    """Drive `dojo serve` (then the bare floor) at ``rate`` requests/s for ``seconds``; see the module doc."""
    say: Log = log or (lambda _m: None)
    if not rate > 0 or not seconds > 0:
        raise DojoConfigError(f"rate={rate!r} and seconds={seconds!r} must be positive.")
    whole("workers", workers, 1, 64)
    weights = dict(mix or DEFAULT_MIX)
    if (
        not weights
        or any(k not in KINDS or w < 0 for k, w in weights.items())
        or sum(weights.values()) <= 0
    ):
        raise DojoConfigError(
            f"mix {weights!r} must weigh some of {', '.join(KINDS)} (weights >= 0)."
        )
    import importlib.util

    if importlib.util.find_spec("aiohttp") is None:
        raise DojoConfigError(
            "dojo bench service drives the load with aiohttp: pip install 'dojo[bench]'."
        )
    from dojo.service.api import admin

    result: dict[str, Any] = {
        "rate": rate,
        "seconds": seconds,
        "mix": weights,
        "workers": workers,
        "cpus": os.cpu_count(),
        "log_level": log_level,
    }
    with tempfile.TemporaryDirectory(prefix="dojo-bench-service-") as tmp:
        folder = Path(tmp)
        with _job_store(db, folder, say) as (db_url, dialect):
            result["db"] = dialect
            tenant = admin.tenant_create(
                db_url,
                "bench",
                {
                    "max_concurrent_jobs": 1_000_000,
                    "max_chips": 10_000_000,
                    "max_gpus": 10_000_000,
                    "max_storage_bytes": None,
                },
            )
            headers = {"Authorization": f"Bearer {tenant['token']}"}
            port = _free_port()
            cmd = [
                sys.executable,
                "-c",
                "import sys; from dojo.cli import main; sys.exit(main(sys.argv[1:]))",
                "serve",
                "--db",
                db_url,
                "--data-dir",
                str(folder / "data"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                log_level,
                "--workers",
                str(workers),
            ]
            base = f"http://127.0.0.1:{port}"
            with _process(cmd, f"{base}/healthz", folder, say, "dojo"):
                say(f"ours: {rate:g} req/s for {seconds:g} s ({dialect})")
                result["ours"] = _run(
                    _drive(base, headers, rate, seconds, weights, seed, timeout_s, warmup_s)
                )
        if floor:
            (folder / "floor_app.py").write_text(FLOOR_APP, encoding="utf-8")
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "floor_app:app",
                "--app-dir",
                str(folder),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                log_level,
                "--workers",
                str(workers),
            ]
            with _process(cmd, f"{base}/v1/ping", folder, say, "floor"):
                say(f"floor: {rate:g} req/s for {seconds:g} s (bare uvicorn + FastAPI)")
                result["floor"] = _run(
                    _drive(base, {}, rate, seconds, {"ping": 1.0}, seed, timeout_s, warmup_s)
                )
    ours = result["ours"]
    p99 = ours["latency"]["overall"]["p99_ms"]
    result["target"] = {
        "p99_ms": TARGET_P99_MS,
        "p99_ok": p99 < TARGET_P99_MS,
        "no_error": ours["errors"] == 0,
        "at_target_load": rate >= TARGET_RATE and seconds >= TARGET_SECONDS,
    }
    result["target"]["met"] = result["target"]["p99_ok"] and result["target"]["no_error"]
    if floor:
        floor_p99 = result["floor"]["latency"]["overall"]["p99_ms"]
        result["p99_ratio_vs_floor"] = p99 / floor_p99 if floor_p99 > 0 else None
    return result


def format_result(result: dict[str, Any]) -> str:
    """A table: latency per kind for ours and the floor, errors, achieved rate, the target verdict."""
    lines = [
        f"dojo bench service: {result['rate']:g} req/s open-loop for {result['seconds']:g} s, "
        f"job store {result['db']}, {result['workers']} server worker process(es) each side, "
        f"{result['cpus']} CPUs, uvicorn log level {result['log_level']}",
        "latency from the scheduled instant (no coordinated omission), ms",
        f"{'':<8}{'kind':<8}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'errors':>8}",
    ]
    for side in ("ours", "floor"):
        if side not in result:
            continue
        r = result[side]
        for kind, p in r["latency"].items():
            errs = r["errors"] if kind == "overall" else r["errors_by_kind"].get(kind, 0)
            lines.append(
                f"{side:<8}{kind:<8}{p['count']:>7}{p['p50_ms']:>9.2f}{p['p95_ms']:>9.2f}"
                f"{p['p99_ms']:>9.2f}{p['max_ms']:>9.2f}{errs:>8}"
            )
        lines.append(
            f"{side:<8}achieved {r['achieved_rate']:.1f} req/s (issued {r['issued']} at "
            f"{r['issue_rate']:.1f}/s, max issue lag {r['max_issue_lag_ms']:.1f} ms, "
            f"{r['unanswered']} unanswered after the run + timeout)"
        )
    for sample in result["ours"]["error_samples"]:
        lines.append(f"  error: {sample}")
    if result.get("p99_ratio_vs_floor") is not None:
        lines.append(f"p99 ours / floor: {result['p99_ratio_vs_floor']:.2f}x")
    t = result["target"]
    verdict = "MET" if t["met"] else "NOT MET"
    note = (
        ""
        if t["at_target_load"]
        else f" (at {result['rate']:g} req/s x {result['seconds']:g} s, "
        f"not the target's {TARGET_RATE} x {TARGET_SECONDS})"
    )
    lines.append(f"target p99 < {t['p99_ms']:g} ms and no error: {verdict}{note}")
    return "\n".join(lines)


def _bench_service(args: argparse.Namespace) -> int:
    mix: dict[str, float] = {}
    for item in args.mix.split(","):
        key, sep, raw = item.partition(":")
        try:
            mix[key.strip()] = float(raw) if sep else 1.0
        except ValueError:
            raise DojoConfigError(
                f"--mix {args.mix!r} must look like list:1,submit:1,show:1."
            ) from None
    result = bench_service(
        rate=args.rate,
        seconds=args.seconds,
        db=args.db,
        mix=mix,
        floor=not args.no_floor,
        log_level=args.log_level,
        workers=args.workers,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


def add_bench_command(bench: argparse._SubParsersAction) -> None:
    """Register ``service`` under ``dojo bench``."""
    b = bench.add_parser(
        "service",
        help="API p50/p95/p99 under an open-loop list/submit/show load "
        "vs a bare uvicorn+FastAPI floor",
    )
    b.add_argument(
        "--rate", type=float, default=TARGET_RATE, help="requests per second, on a fixed schedule"
    )
    b.add_argument("--seconds", type=float, default=TARGET_SECONDS)
    b.add_argument(
        "--db",
        default=None,
        help="'sqlite' (default: WAL, in a temporary folder) or "
        "postgresql://USER@HOST[:PORT]/DB (a schema of its own, dropped afterwards)",
    )
    b.add_argument(
        "--mix", default="list:1,submit:1,show:1", help="request kinds and their weights"
    )
    b.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level for both servers (info logs every request)",
    )
    b.add_argument(
        "--workers",
        type=int,
        default=2,
        help="server processes, for ours (dojo serve --workers) and the floor alike",
    )
    b.add_argument(
        "--no-floor", action="store_true", help="skip the bare uvicorn+FastAPI reference"
    )
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_bench_service)
