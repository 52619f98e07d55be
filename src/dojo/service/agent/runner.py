"""``dojo agent``: on each host, claim placed jobs from the shared job store and run them.

One loop: requeue the jobs of agents that stopped heartbeating (``jobstore.requeue_stale``,
any agent may do it), run a scheduling pass (``dispatch.schedule_pass``, serialised in the
database), claim the most urgent placed job (``jobstore.claim_next``: ``SELECT ... FOR UPDATE
SKIP LOCKED`` on PostgreSQL, a guarded UPDATE everywhere, so two agents never run the same job),
and run it as a subprocess:

- ``drive``, ``ingest``, ``eval``, ``loop``: the matching ``dojo`` command;
- ``script``: the tenant's own code under torchrun, only ever in the sandbox
  (:mod:`dojo.service.agent.script`; refused, the job failed with the reason, where bubblewrap
  cannot run);
- ``train``: ``dojo train`` in the job's run folder, with ``--nproc`` from the allocation
  (capped by ``--max-nproc``; more than one starts torchrun) and ``--resume`` when the folder
  already holds a checkpoint, so a requeued job continues from it.

While it runs the agent heartbeats every ``heartbeat_s``, appends the child's output to the
job's log in the store and, for ``train``, uploads new rows of ``metrics.jsonl``. A job asked
to cancel is stopped and closed ``cancelled``; a job the scheduler preempts is stopped and
requeued (its checkpoint stays in the run folder); a job another agent has requeued meanwhile
(``lost``) is stopped and left alone. The child dies with its agent (``PR_SET_PDEATHSIG`` on
Linux), so a ``kill -9``'d agent leaves no orphan running the job twice.

Files: ``DATA_DIR/tenants/<tenant>/jobs/<job>/run`` (the job's working folder) and
``DATA_DIR/tenants/<tenant>/store`` (the tenant's clip store, for ingest and train). The data
folder must be shared by all agents (and the service) for resumes on another host.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dojo.compute.topology import Topology
from dojo.errors import DojoConfigError
from dojo.loop.commands import LOOP_FLAG_NAMES
from dojo.proc import die_with_parent
from dojo.service import placement
from dojo.service.agent import sandbox, script
from dojo.service.agent.drive_logs import store_drive_logs
from dojo.service.api.problems import ApiError
from dojo.service.config import MiB, ServiceConfig
from dojo.service.placement import Placement
from dojo.service.sched.dispatch import preempt_requested, requeue_preempted, schedule_pass
from dojo.service.specs import STAGE_FIELDS
from dojo.service.store import jobstore
from dojo.service.store.db import Database
from dojo.service.store.schema import CodeArchive, Dataset, Job, MetricRow, Model
from dojo.service.store.storage import Storage
from dojo.settings import argv_for

CHECKPOINT_FILE = "checkpoint.pt"  # what dojo train writes in its --out folder
LOOP_JOURNAL_FILE = (
    "progress.json"  # what dojo loop writes in its --out folder (its resume journal)
)
MAX_LOG_BYTES = 256 * MiB


@dataclass
class JobContext:
    """Everything needed to turn a claimed job into a command line."""

    id: str
    tenant_id: str
    kind: str
    spec: dict[str, Any]
    placement: Placement | None
    attempt: int
    data_dir: Path
    run_dir: Path
    max_nproc: int = 1
    time_limit_s: int | None = None  # the run is stopped and fails after this long [s]
    dojo: list[str] = field(
        default_factory=lambda: [sys.executable, "-m", "dojo.cli"]
    )  # the command to call
    paths: dict[str, str] = field(default_factory=dict)  # ds_/mdl_ id -> local path or store URI

    @property
    def store(self) -> Path:
        return self.data_dir / "tenants" / self.tenant_id / "store"

    @property
    def nproc(self) -> int:
        count = self.placement.count if self.placement is not None else None
        return max(1, min(count or 1, self.max_nproc))


def _ref(ctx: JobContext, value: str) -> str:
    if value.startswith(("mdl_", "ds_")):
        if value not in ctx.paths:
            raise DojoConfigError(f"{value} is not known to the job store.")
        return ctx.paths[value]
    return value


def train_out(ctx: JobContext) -> Path:
    return ctx.run_dir / "train"


def _stage_flags(ctx: JobContext) -> list[str]:
    """The stage's flags for the job's spec fields, through the config fields they declare."""
    config, names = STAGE_FIELDS[ctx.kind]
    values: dict[str, Any] = {path: ctx.spec.get(api) for path, api in names.items()}
    for path, api in names.items():
        if api == "policy" and isinstance(values[path], str):  # a model id: its file here
            values[path] = _ref(ctx, values[path])
    return argv_for(config, values, names, LOOP_FLAG_NAMES if ctx.kind == "loop" else None)


def command_for(ctx: JobContext) -> list[str]:
    """The command line that runs ``ctx``'s job (the ``dojo`` stage command of its kind)."""
    sp, dojo = ctx.spec, list(ctx.dojo)
    if ctx.kind == "drive":
        return [*dojo, "drive", *_stage_flags(ctx), "--out", str(ctx.run_dir / "logs"), "--json"]
    if ctx.kind == "ingest":
        cmd = [*dojo, "ingest", _ref(ctx, sp["dataset"]), "--store", str(ctx.store), "--json"]
        return cmd + (["--workers", str(sp["workers"])] if sp.get("workers") else [])
    if ctx.kind == "train":
        out = train_out(ctx)
        cmd = [*dojo, "train", *_stage_flags(ctx), "--store", str(ctx.store), "--out", str(out)]
        cmd += ["--no-progress", "--json"]
        if ctx.nproc > 1:
            cmd += ["--nproc", str(ctx.nproc)]
        if sp.get("resume_from"):  # fine-tune a stored model; a later attempt's --resume takes over
            cmd += ["--init-from", _ref(ctx, sp["resume_from"])]
        return cmd + (["--resume"] if (out / CHECKPOINT_FILE).exists() else [])
    if ctx.kind == "eval":
        return [*dojo, "eval", *_stage_flags(ctx), "--json"]
    if ctx.kind == "script":  # run inside the sandbox (run_job wraps it)
        if sp["code"] not in ctx.paths:
            raise DojoConfigError(f"{sp['code']} is not known to the job store.")
        return script.inner_command(ctx)
    if ctx.kind == "loop":
        out = ctx.run_dir / "loop"
        if (
            out / LOOP_JOURNAL_FILE
        ).exists():  # a rerun (its agent lost): on from the last finished stage
            return [*dojo, "loop", "--resume", str(out), "--json"]
        if sp.get("policy", "naive") == "expert":
            raise DojoConfigError(
                "a loop cannot deploy 'expert' (it drives on the world's ground truth); "
                "start from naive or a stored model."
            )
        return [*dojo, "loop", *_stage_flags(ctx), "--out", str(out), "--json"]
    raise DojoConfigError(f"Job kind {ctx.kind!r} has no runner.")


def metrics_file(ctx: JobContext) -> Path | None:
    if ctx.kind == "script":
        return ctx.run_dir / script.METRICS
    return train_out(ctx) / "metrics.jsonl" if ctx.kind == "train" else None


class _Output:
    """The child's stdout and stderr, read by a thread, taken in pieces by the agent."""

    def __init__(self, stream: Any) -> None:
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        fd = stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self._lock:
                self._buf += chunk
        stream.close()

    def take(self) -> bytes:
        with self._lock:
            data = bytes(self._buf)
            self._buf.clear()
        return data

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)


class Agent:
    """Claims and runs jobs of one job store; see the module doc."""

    def __init__(
        self,
        db_url: str,
        *,
        data_dir: str | Path = "dojo-service",
        host_name: str | None = None,
        heartbeat_s: float = 5.0,
        stale_after_s: float = 60.0,
        poll_s: float = 2.0,
        max_nproc: int = 1,
        schedule: bool = True,
        topology: Topology | None = None,
        claim_status: str = "placed",
        stop_grace_s: float = 10.0,
        command: Callable[[JobContext], list[str]] = command_for,
        dojo: list[str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not heartbeat_s > 0 or not poll_s > 0 or not stop_grace_s >= 0:
            raise DojoConfigError("--heartbeat-s and --poll-s must be > 0.")
        if not stale_after_s > heartbeat_s:
            raise DojoConfigError(
                f"--stale-after-s {stale_after_s:g} must exceed --heartbeat-s {heartbeat_s:g}."
            )
        if max_nproc < 1:
            raise DojoConfigError(f"--max-nproc {max_nproc} must be at least 1.")
        if claim_status not in ("placed", "queued"):
            raise DojoConfigError(f"claim_status={claim_status!r} must be 'placed' or 'queued'.")
        self.db = Database(db_url)
        self.db.migrate()
        self.data_dir = Path(data_dir).resolve()
        # what a job leaves is stored as an upload is, within the service's defaults (the free
        # disk kept, the largest file)
        limits = ServiceConfig()
        self.storage = Storage(self.data_dir, limits.min_free_bytes)
        self.max_file_bytes = limits.max_upload_bytes
        self.name = f"{host_name or socket.gethostname()}/{os.getpid()}"
        self.heartbeat_s, self.stale_after_s, self.poll_s = heartbeat_s, stale_after_s, poll_s
        self.max_nproc, self.schedule, self.topology = max_nproc, schedule, topology
        self.claim_status, self.stop_grace_s, self.command = claim_status, stop_grace_s, command
        self.dojo = list(dojo) if dojo else [sys.executable, "-m", "dojo.cli"]
        self.log = log or (
            lambda m: print(f"dojo agent {self.name}: {m}", file=sys.stderr, flush=True)
        )
        self._stop = False

    # ------------------------------------------------------------------ the loop
    def run(self, *, once: bool = False) -> int:
        """Claim and run jobs until stopped (SIGTERM/SIGINT); ``once``: at most one job."""

        def stop(_sig: int, _frame: Any) -> None:
            self._stop = True

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, stop)
        ran = 0
        while not self._stop:
            outcome = self.step()
            if outcome is not None:
                ran += 1
            if once:
                break
            if outcome is None:
                time.sleep(self.poll_s)
        return ran

    def step(self) -> str | None:
        """Requeue stale jobs, schedule, claim one job and run it; its outcome, or None."""
        with self.db.session() as s:
            stale = jobstore.requeue_stale(s, self.stale_after_s)
        if stale:
            self.log(f"requeued {', '.join(stale)} (no heartbeat for {self.stale_after_s:g} s)")
        if self.schedule:
            schedule_pass(self.db, self.topology)
        with self.db.session() as s:
            job = jobstore.claim_next(s, self.name, status=self.claim_status)
            if job is None:
                return None
            ctx = self._context(s, job)
        return self.run_job(ctx)

    def _context(self, s: Any, job: Job) -> JobContext:
        paths: dict[str, str] = {}
        for key in ("policy", "resume_from", "dataset", "code"):
            ref = job.spec.get(key)
            if isinstance(ref, str) and ref.startswith("code_"):
                c = s.get(CodeArchive, ref)
                if c is not None and c.tenant_id == job.tenant_id:
                    paths[ref] = str(self.data_dir / "tenants" / job.tenant_id / "code" / c.id)
            elif isinstance(ref, str) and ref.startswith("mdl_"):
                m = s.get(Model, ref)
                if m is not None and m.tenant_id == job.tenant_id:
                    paths[ref] = str(self.data_dir / m.path)
            elif isinstance(ref, str) and ref.startswith("ds_"):
                d = s.get(Dataset, ref)
                if d is not None and d.tenant_id == job.tenant_id:
                    paths[ref] = d.uri or str(
                        self.data_dir / "tenants" / job.tenant_id / "datasets" / d.id
                    )
        run_dir = self.data_dir / "tenants" / job.tenant_id / "jobs" / job.id / "run"
        return JobContext(
            id=job.id,
            tenant_id=job.tenant_id,
            kind=job.kind,
            spec=dict(job.spec),
            placement=placement.read(job.placement),
            attempt=job.attempt,
            data_dir=self.data_dir,
            run_dir=run_dir,
            max_nproc=self.max_nproc,
            time_limit_s=job.time_limit_s,
            dojo=self.dojo,
            paths=paths,
        )

    # ------------------------------------------------------------------ one job
    def run_job(self, ctx: JobContext) -> str:
        """Run a claimed job to its end; returns succeeded, failed, cancelled, preempted or lost."""
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            argv = self.command(ctx)
        except (DojoConfigError, KeyError) as e:
            return self._close(ctx.id, "failed", None, f"cannot run this job: {e}")
        self.log(f"{ctx.id} attempt {ctx.attempt}: {' '.join(argv)}")
        self._append(
            ctx.id, f"[agent {self.name}] attempt {ctx.attempt}: {' '.join(argv)}\n".encode()
        )
        sent = self._sent_metrics(ctx.id)
        group: sandbox.PidsGroup | None = None
        try:
            if ctx.kind == "script":  # tenant code: only ever in the sandbox
                why = sandbox.available()
                if why is not None:
                    return self._close(
                        ctx.id, "failed", None, f"this agent cannot sandbox tenant code: {why}"
                    )
                script.prepare(ctx)
                proc, group = sandbox.popen(
                    argv,
                    code=ctx.paths[ctx.spec["code"]],
                    work=ctx.run_dir,
                    data=script.dataset_dir(ctx),
                    env=script.environment(ctx),
                    limits=script.limits(ctx),
                    in_child=die_with_parent(signal.SIGKILL),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            else:
                env = {
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    "DOJO_JOB_ID": ctx.id,
                    "DOJO_JOB_ATTEMPT": str(ctx.attempt),
                }
                proc = subprocess.Popen(
                    argv,
                    cwd=ctx.run_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent(signal.SIGKILL),
                )
        except OSError as e:
            return self._close(ctx.id, "failed", None, f"cannot start {argv[0]}: {e.strerror}")
        try:
            return self._watch(ctx, proc, group, sent)
        finally:
            if group is not None:
                group.close()

    def _watch(
        self,
        ctx: JobContext,
        proc: subprocess.Popen[bytes],
        group: sandbox.PidsGroup | None,
        sent: set[tuple[int, str]],
    ) -> str:
        """Heartbeat, log and stop the started job until it ends; its outcome (see run_job)."""
        out = _Output(proc.stdout)
        verdict: str | None = None
        deadline = math.inf if ctx.time_limit_s is None else time.monotonic() + ctx.time_limit_s
        while True:
            try:
                rc: int | None = proc.wait(
                    timeout=max(0.0, min(self.heartbeat_s, deadline - time.monotonic()))
                )
            except subprocess.TimeoutExpired:
                rc = None
            self._flush(ctx, out, sent)
            if rc is not None or self._stop:
                break
            if time.monotonic() >= deadline:
                verdict = "timeout"
                break
            with self.db.session() as s:
                status = jobstore.heartbeat(s, ctx.id, self.name)
                if status == "running" and preempt_requested(s, ctx.id):
                    status = "preempt"
            if status != "running":
                verdict = status
                break
        if rc is None:
            rc = sandbox.stop(proc, group, grace_s=self.stop_grace_s)
        out.join()
        self._flush(ctx, out, sent)
        if verdict == "lost":
            self.log(f"{ctx.id}: lost (requeued by another agent); stopped")
            return "lost"
        if verdict == "preempt":
            with self.db.session() as s:
                requeue_preempted(s, ctx.id, self.name)
            self.log(f"{ctx.id}: preempted; requeued, resumes from its checkpoint")
            return "preempted"
        if verdict == "cancelling":
            return self._close(ctx.id, "cancelled", rc, None)
        if (
            verdict == "timeout"
        ):  # ends failed, like Slurm's TIMEOUT; a train run checkpointed on the SIGTERM
            return self._close(
                ctx.id, "failed", rc, f"stopped at its time limit of {ctx.time_limit_s} s"
            )
        if self._stop:  # the agent itself was asked to stop: give the job back
            with self.db.session() as s:
                requeue_preempted(s, ctx.id, self.name)
            return "preempted"
        if rc == 0 and ctx.kind == "drive" and ctx.spec.get("dataset"):
            dataset = ctx.spec["dataset"]
            try:
                n = store_drive_logs(
                    self.db,
                    self.storage,
                    ctx.tenant_id,
                    dataset,
                    ctx.id,
                    ctx.run_dir / "logs",
                    cap=self.max_file_bytes,
                )
            except ApiError as e:
                return self._close(
                    ctx.id,
                    "failed",
                    0,
                    f"the drive's logs were not stored in {dataset}: {e.detail}",
                )
            self._append(
                ctx.id,
                f"[agent {self.name}] stored {n} drive log(s) in dataset {dataset}\n".encode(),
            )
        if ctx.kind == "script":
            outputs = self._script_outputs(ctx, rc)
            if outputs is not None:
                return outputs
        if rc == 0:
            return self._close(ctx.id, "succeeded", 0, None)
        return self._close(ctx.id, "failed", rc, f"exit code {rc}")

    def _script_outputs(self, ctx: JobContext, rc: int) -> str | None:
        """A finished script's folder checked against its output limit and, on success, its
        output files stored as models; the job's outcome if that decides it, else None."""
        cap = script.limits(ctx).output_bytes
        size = sandbox.folder_bytes(ctx.run_dir)
        if size > cap:
            return self._close(
                ctx.id, "failed", rc, f"the job folder holds {size} bytes, over its {cap} limit"
            )
        if rc != 0:
            return None
        try:
            n, refused = script.store_outputs(
                self.db,
                self.storage,
                ctx.tenant_id,
                ctx.id,
                ctx.run_dir / script.OUTPUT,
                cap=self.max_file_bytes,
            )
        except ApiError as e:
            return self._close(
                ctx.id, "failed", 0, f"the job's outputs were not stored: {e.detail}"
            )
        for why in refused:
            self._append(ctx.id, f"[agent {self.name}] output not stored: {why}\n".encode())
        self._append(ctx.id, f"[agent {self.name}] stored {n} output file(s) as models\n".encode())
        return None

    def _close(self, job_id: str, status: str, rc: int | None, error: str | None) -> str:
        if error:
            self._append(job_id, f"[agent {self.name}] {error}\n".encode())
        with self.db.session() as s:
            ok = jobstore.finish(s, job_id, self.name, status=status, exit_code=rc, error=error)
        self.log(
            f"{job_id}: {status}"
            + (f" ({error})" if error else "")
            + ("" if ok else " (no longer ours)")
        )
        return status if ok else "lost"

    # ------------------------------------------------------------------ logs and metrics
    def _append(self, job_id: str, data: bytes) -> None:
        if not data:
            return
        with self.db.session() as s:
            job = s.scalar(select(Job).where(Job.id == job_id).with_for_update())
            if job is None or job.agent != self.name or job.status not in ("running", "cancelling"):
                return
            room = MAX_LOG_BYTES - job.log_bytes
            if room <= 0:
                return
            with contextlib.suppress(ApiError):
                jobstore.append_log(s, job, data[:room], MAX_LOG_BYTES)

    def _sent_metrics(self, job_id: str) -> set[tuple[int, str]]:
        with self.db.session() as s:
            rows = s.scalars(select(MetricRow.data).where(MetricRow.job_id == job_id)).all()
        return {_metric_key(r) for r in rows if isinstance(r, dict)}

    def _flush(self, ctx: JobContext, out: _Output, sent: set[tuple[int, str]]) -> None:
        self._append(ctx.id, out.take())
        path = metrics_file(ctx)
        if path is None or not path.exists():
            return
        rows = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line being written
            if isinstance(row, dict) and "step" in row and _metric_key(row) not in sent:
                rows.append(row)
        if not rows:
            return
        with self.db.session() as s:
            job = s.scalar(select(Job).where(Job.id == ctx.id).with_for_update())
            if job is None or job.agent != self.name or job.status not in ("running", "cancelling"):
                return
            for i in range(0, len(rows), 10_000):
                jobstore.add_metrics(s, job, rows[i : i + 10_000])
        sent.update(_metric_key(r) for r in rows)


def _metric_key(row: dict[str, Any]) -> tuple[int, str]:
    """A row's identity for sending each once: its step and the names it reports (a train
    row and a validation row of one step differ; so do a script's reports of different
    values)."""
    return int(row.get("step", 0)), ",".join(sorted(k for k in row if k != "step"))


__all__ = ["Agent", "JobContext", "command_for", "metrics_file", "train_out"]
