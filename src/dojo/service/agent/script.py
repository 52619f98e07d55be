"""A ``script`` job: a tenant's own training code, run under ``torchrun`` in the sandbox.

What the code sees (:mod:`dojo.service.agent.sandbox` mounts it): its code read-only at
``/job/code``, its dataset read-only at ``/job/data``, and the job's run folder read-write at
``/job/work``. The run folder is kept across preemptions and retries, so these are too:

- ``DOJO_CHECKPOINT_DIR`` (``/job/work/checkpoints``): where it saves and finds its checkpoint;
- ``DOJO_OUTPUT_DIR`` (``/job/work/output``): each file left here when the job succeeds becomes
  one of the tenant's models (``GET /v1/models?job_id=...``), stored like an upload (quota
  checked, SHA-256 recorded);
- ``DOJO_METRICS_FILE`` (``/job/work/metrics.jsonl``): rows ``dojo.client.report`` appends, which
  the agent sends to the job's metrics as they appear;
- ``DOJO_DATA_DIR`` (``/job/data``, only with a dataset), ``DOJO_JOB_ID``, ``DOJO_JOB_ATTEMPT``;
  and ``torchrun``'s ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``.

``torchrun --standalone`` starts one process per allocated chip or GPU (capped by the agent's
``--max-nproc``); its rendezvous runs over the sandbox's loopback. Before a preemption the
job's processes get SIGTERM (not bubblewrap, which would take them down at once) and
``stop_grace_s`` to checkpoint, as ``dojo train``'s do.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from dojo.service.agent import sandbox
from dojo.service.api.problems import ApiError
from dojo.service.api.uploads import add_model, store_path
from dojo.service.store.db import Database
from dojo.service.store.schema import Model
from dojo.service.store.storage import Storage, Stored, safe_name

if TYPE_CHECKING:
    from dojo.service.agent.runner import JobContext

OUTPUT, CHECKPOINTS, METRICS = "output", "checkpoints", "metrics.jsonl"  # in the run folder
THREADS_PER_PROCESS = 128  # the pids cap per training process (torch's and gloo's threads)


def inner_command(ctx: JobContext) -> list[str]:
    """What runs inside the sandbox: torchrun over the tenant's entry point and arguments."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher += ["--nnodes", "1", "--nproc-per-node", str(ctx.nproc)]
    return [*launcher, f"{sandbox.CODE}/{ctx.spec['entry']}", *ctx.spec.get("args", [])]


def environment(ctx: JobContext) -> dict[str, str]:
    work = sandbox.WORK
    env = {
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # the code is read-only
        "DOJO_JOB_ID": ctx.id,
        "DOJO_JOB_ATTEMPT": str(ctx.attempt),
        "DOJO_OUTPUT_DIR": f"{work}/{OUTPUT}",
        "DOJO_CHECKPOINT_DIR": f"{work}/{CHECKPOINTS}",
        "DOJO_METRICS_FILE": f"{work}/{METRICS}",
    }
    if ctx.spec.get("dataset"):
        env["DOJO_DATA_DIR"] = sandbox.DATA
    return env


def limits(ctx: JobContext) -> sandbox.Limits:
    return sandbox.Limits(processes=THREADS_PER_PROCESS * (ctx.nproc + 1))


def dataset_dir(ctx: JobContext) -> Path | None:
    ds = ctx.spec.get("dataset")
    if not ds:
        return None
    path = Path(ctx.paths[ds])
    path.mkdir(parents=True, exist_ok=True)  # an empty dataset has no folder yet
    return path


def prepare(ctx: JobContext) -> None:
    for name in (OUTPUT, CHECKPOINTS):
        (ctx.run_dir / name).mkdir(parents=True, exist_ok=True)


def store_outputs(
    db: Database, storage: Storage, tenant_id: str, job_id: str, out_dir: Path, *, cap: int
) -> tuple[int, list[str]]:
    """Each file under ``out_dir`` as a model of the job (a path's ``/`` becomes ``_``); returns
    (how many were new, the files refused with why). A name already recorded is skipped, so a
    job run again stores each file once."""
    with db.session(readonly=True) as s:
        held = set(s.scalars(select(Model.name).where(Model.job_id == job_id)))
    folder = storage.checkpoint_dir(tenant_id, job_id)
    added, refused = 0, []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        name = path.relative_to(out_dir).as_posix().replace("/", "_")
        if name in held:
            continue
        try:
            safe_name(name)
        except ApiError as e:
            refused.append(f"{name[:80]!r}: {e.detail}")
            continue

        def commit(s: Session, stored: Stored, name: str = name) -> Model:
            return add_model(s, storage, tenant_id, job_id, name, stored)

        store_path(db, storage, tenant_id, folder, name, path, cap=cap, magic=None, commit=commit)
        added += 1
    return added, refused


__all__ = [
    "CHECKPOINTS",
    "METRICS",
    "OUTPUT",
    "environment",
    "inner_command",
    "limits",
    "prepare",
    "store_outputs",
]
