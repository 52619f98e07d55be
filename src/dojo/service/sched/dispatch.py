"""The scheduler on the job store: one pass reads the jobs table, runs the policy, writes back.

``schedule_pass(db)`` rebuilds the machine from the ``placement`` of every placed, running or
cancelling job, hands the queued chip jobs to :class:`~dojo.service.sched.scheduler.Scheduler`
(policy ``ours``, with fair share from the tenants' recent usage) and applies its decision:

- a job to start: ``queued -> placed`` with its placement (guarded ``UPDATE ... WHERE status =
  'queued'``, so a job cancelled meanwhile stays cancelled); an agent then claims it with
  ``jobstore.claim_next(status="placed")``;
- a job to preempt: a placed one goes straight back to ``queued``; a running one gets
  ``placement.preempt = true``, and its agent stops it (the trainer has checkpointed every
  ``checkpoint_every`` steps) and calls :func:`requeue_preempted`: back to ``queued`` without
  counting an attempt, so it resumes from its checkpoint when it is placed again. Its chips stay
  taken until then.

Passes are serialised (a PostgreSQL advisory lock; SQLite's write lock), so any number of agents
may run them. A job's ``time_limit_s`` is the scheduler's run-time estimate (the agent stops a
run that outlasts it): the reservation for a blocked head is at the end of the limits of the
running jobs it waits for, and a job with a limit that ends before then may start on reserved
chips (EASY backfill). Jobs without a limit never end as far as the scheduler knows: they
start past a blocked head only where the head will not go.
GPU jobs are placed as a count (no GPU topology here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from dojo.compute.placement import Placement as Allocation
from dojo.compute.topology import Topology
from dojo.errors import DojoConfigError
from dojo.service import placement
from dojo.service.placement import Placement
from dojo.service.sched.scheduler import FairShare, SchedJob, Scheduler
from dojo.service.store import jobstore
from dojo.service.store.db import Database
from dojo.service.store.schema import Job, aware, utcnow

_PG_SCHED_LOCK = 0x646F6A73  # "dojs": held while a scheduling pass runs
HALF_LIFE_S = 3600.0


def default_topology() -> Topology:
    from dojo.compute.topology import parse_system

    return parse_system("exapod")


def chip_ranges(chips: tuple[int, ...] | list[int]) -> list[list[int]]:
    """``[0, 1, 2, 7]`` -> ``[[0, 3], [7, 8]]`` (half-open ranges, for the placement column)."""
    return [[first, stop] for first, stop in placement.chip_ranges(chips)]


def chips_of(column: dict[str, Any]) -> list[int]:
    """The chips a ``placement`` column holds (see :class:`~dojo.service.placement.Placement`)."""
    return Placement.from_dict(column).chips


def placement_of(topology: Topology, p: Allocation) -> Placement:
    """Where a chip job runs: its chips, the block holding them, their tiles and cabinets."""
    names = [lv.name for lv in topology.levels]
    tiles = sorted({topology.chip_block(c, "tile") for c in p.chips}) if "tile" in names else []
    cabinets = (
        sorted({topology.block("cabinet", topology.chip_block(c, "cabinet")).name for c in p.chips})
        if "cabinet" in names
        else []
    )
    return Placement.for_chips(
        system=topology.name,
        chips=p.chips,
        block=p.block,
        level=p.level,
        contiguous=p.contiguous,
        tiles=[topology.block("tile", t).name for t in tiles],
        hosts=cabinets,
    )


def placement_json(topology: Topology, p: Allocation) -> dict[str, Any]:
    """What the ``placement`` column holds for a chip job."""
    return placement_of(topology, p).to_dict()


@dataclass
class PassResult:
    placed: list[str] = field(default_factory=list)
    preempted: list[str] = field(default_factory=list)
    reservation: dict[str, Any] | None = None


def _seconds(dt: datetime | None) -> float:
    a = aware(dt)
    return a.timestamp() if a is not None else 0.0


def fair_share(s: Session, now: datetime, half_life_s: float = HALF_LIFE_S) -> FairShare:
    """Each tenant's chip-seconds of the last few half-lives, decayed to ``now``."""
    fair = FairShare(half_life_s)
    since = now - timedelta(seconds=8 * half_life_s)
    rows = s.execute(
        select(Job.tenant_id, Job.chips, Job.started_at, Job.finished_at, Job.status).where(
            Job.chips > 0,
            Job.started_at.is_not(None),
            or_(Job.finished_at.is_(None), Job.finished_at >= since),
        )
    )
    t_now = now.timestamp()
    for tenant, chips, started, finished, status in rows:
        end = _seconds(finished) if finished is not None else t_now
        if finished is None and status not in ("running", "cancelling"):
            continue  # requeued: its earlier runs are not counted here
        fair.charge_interval(
            tenant, int(chips), max(_seconds(started), t_now - 8 * half_life_s), end, t_now
        )
    return fair


def schedule_pass(
    db: Database, topology: Topology | None = None, *, now: datetime | None = None
) -> PassResult:
    """One scheduling pass over the job store (see the module doc)."""
    topo = topology or default_topology()
    now = now or utcnow()
    t_now = now.timestamp()
    out = PassResult()
    with db.session() as s:
        if db.dialect == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHED_LOCK})
        sched = Scheduler(topo, policy="ours", fair=fair_share(s, now), preempt_frees_now=False)
        active = s.scalars(
            select(Job).where(Job.status.in_(("queued", "placed", "running", "cancelling")))
        ).all()
        queue: list[SchedJob] = []
        for job in active:
            sj = SchedJob(
                job.id,
                job.tenant_id,
                job.chips,
                job.priority,
                _seconds(job.created_at),
                estimate_s=None if job.time_limit_s is None else float(job.time_limit_s),
            )
            if job.status == "queued":
                if job.chips > 0:
                    if job.chips <= topo.total_chips:
                        queue.append(sj)
                elif job.gpus > 0 and _place_gpus(s, job, now):
                    out.placed.append(job.id)
                continue
            held = placement.read(job.placement)
            if held is not None and held.kind == "chips":
                try:
                    sched.restore(
                        sj,
                        held.chips,
                        _seconds(job.started_at or job.updated_at),
                        preempting=held.preempt,
                    )
                except DojoConfigError:  # another system's chips, or overlapping: leave it be
                    continue
        d = sched.schedule(queue, t_now)
        for sj, p in d.start:
            done = s.execute(
                update(Job)
                .where(Job.id == sj.id, Job.status == "queued")
                .values(status="placed", placement=placement_json(topo, p), updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                out.placed.append(sj.id)
        for vid in d.preempt:
            victim = s.get(Job, vid, with_for_update=True)
            if victim is None:
                continue
            if victim.status == "placed":
                victim.status, victim.placement = "queued", None
            elif (
                victim.status == "running"
                and (held := placement.read(victim.placement)) is not None
            ):
                victim.placement = held.preempting().to_dict()
            else:
                continue
            victim.updated_at = now
            out.preempted.append(vid)
        if d.reservation is not None:
            at = d.reservation.at_s
            out.reservation = {
                "job": d.reservation.job_id,
                "at_s": None if math.isinf(at) else at,
                "chips": len(d.reservation.chips),
            }
    return out


def _place_gpus(s: Session, job: Job, now: datetime) -> bool:
    done = s.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "queued")
        .values(status="placed", placement=Placement.for_gpus(job.gpus).to_dict(), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def preempt_requested(s: Session, job_id: str) -> bool:
    held = placement.read(s.scalar(select(Job.placement).where(Job.id == job_id)))
    return held is not None and held.preempt


def requeue_preempted(s: Session, job_id: str, agent: str) -> bool:
    """The agent stopped a preempted job: back to ``queued``; the run does not count as an attempt."""
    job = s.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None or job.agent != agent or job.status != "running":
        return False
    jobstore.close_run(s, job, "preempted")
    job.status, job.agent, job.placement, job.heartbeat_at = "queued", None, None, None
    job.attempt = max(0, job.attempt - 1)
    job.updated_at = utcnow()
    return True


__all__ = [
    "PassResult",
    "chip_ranges",
    "chips_of",
    "fair_share",
    "placement_json",
    "placement_of",
    "preempt_requested",
    "requeue_preempted",
    "schedule_pass",
]
