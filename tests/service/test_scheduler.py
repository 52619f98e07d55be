"""The scheduler's policy (pure) and its database pass."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy.orm import Session

from dojo.compute.topology import parse_system
from dojo.service.sched.scheduler import FairShare, SchedJob, Scheduler, avoidable_split
from dojo.service.store.schema import Job, utcnow


def _job(s: Session, job_id: str) -> Job:
    """The job row ``job_id``, which the test made."""
    job = s.get(Job, job_id)
    assert job is not None, job_id
    return job


def test_gang_never_partial_and_no_chip_twice() -> None:
    topo = parse_system("cabinet")  # 300 chips
    sched = Scheduler(topo)
    rng = np.random.default_rng(1)
    queue = [
        SchedJob(
            f"j{i}",
            "t",
            int(rng.integers(1, 200)),
            submitted=i,
            estimate_s=float(rng.integers(1, 50)),
        )
        for i in range(60)
    ]
    now = 0.0
    for _ in range(500):
        if not queue:
            break
        d = sched.schedule(queue, now)
        for job, p in d.start:
            assert p.size == job.chips  # all its chips or none
        started = {j.id for j, _ in d.start}
        queue = [j for j in queue if j.id not in started]
        owners = [c for r in sched.running.values() for c in r.placement.chips]
        assert len(owners) == len(set(owners)) <= topo.total_chips
        if sched.running:  # the first to end leaves
            first = min(sched.running.values(), key=lambda r: r.expected_end)
            now = first.expected_end
            sched.release(first.job.id)
    assert not queue


def test_small_job_goes_to_one_tile() -> None:
    sched = Scheduler(parse_system("exapod"))
    d = sched.schedule([SchedJob("a", "t", 20)], 0.0)
    ((_, p),) = d.start
    assert p.level == "tile" and p.contiguous


def _fill_each_cabinet(sched: Scheduler, chips: int) -> None:
    topo = sched.topology
    for k in range(topo.blocks_at("cabinet")):
        first = topo.block("cabinet", k).chips.start
        sched.restore(
            SchedJob(f"filler{k}", "t", chips, estimate_s=100.0), range(first, first + chips), 0.0
        )


def test_no_cabinet_split_when_one_cabinet_could_hold_it() -> None:
    # Every cabinet has 200 of 300 chips free (2,000 free in all); a 250-chip job fits no cabinet now.
    ours, fifo = Scheduler(parse_system("exapod")), Scheduler(parse_system("exapod"), policy="fifo")
    for s in (ours, fifo):
        _fill_each_cabinet(s, 100)
    job = SchedJob("big", "t", 250)
    d_fifo = fifo.schedule([job], 0.0)
    ((_, p),) = d_fifo.start  # FIFO takes what the allocator gives: two cabinets
    assert avoidable_split(fifo.topology, p, fifo.level)
    d = ours.schedule([job], 0.0)
    assert d.start == []  # ours waits for a cabinet instead
    assert d.reservation is not None and d.reservation.at_s == 100.0
    cabinets = {c // 300 for c in d.reservation.chips}
    assert len(cabinets) == 1 and len(d.reservation.chips) == 250


def test_backfill_only_what_does_not_delay_the_head() -> None:
    sched = Scheduler(parse_system("cabinet"))
    sched.restore(SchedJob("a", "t", 200, estimate_s=100.0), range(0, 200), 0.0)
    head = SchedJob("head", "t", 300, submitted=1.0, estimate_s=100.0)
    long = SchedJob("long", "t", 100, submitted=2.0, estimate_s=500.0)
    short = SchedJob("short", "t", 100, submitted=3.0, estimate_s=50.0)
    d = sched.schedule([head, long, short], 10.0)
    assert (
        d.reservation is not None and d.reservation.job_id == "head" and d.reservation.at_s == 100.0
    )
    assert (
        [j.id for j, _ in d.start] == ["short"] == d.backfilled
    )  # 10 + 50 <= 100; long would delay head


def test_backfill_long_job_keeps_off_reserved_chips() -> None:
    sched = Scheduler(parse_system("cabinet"))
    sched.restore(SchedJob("a", "t", 100, estimate_s=100.0), range(0, 100), 0.0)
    head = SchedJob("head", "t", 250, submitted=1.0)
    long = SchedJob(
        "long", "t", 50, submitted=2.0
    )  # unknown run time: only where the head won't go
    d = sched.schedule([head, long], 0.0)
    assert d.reservation is not None
    ((job, p),) = d.start
    assert job.id == "long" and not set(p.chips) & d.reservation.chips


def test_fifo_head_blocks_the_queue() -> None:
    sched = Scheduler(parse_system("cabinet"), policy="fifo")
    sched.restore(SchedJob("a", "t", 200, estimate_s=100.0), range(0, 200), 0.0)
    d = sched.schedule(
        [
            SchedJob("head", "t", 300, submitted=1.0),
            SchedJob("small", "t", 10, submitted=2.0, estimate_s=1.0),
        ],
        0.0,
    )
    assert d.start == [] and d.reservation is None


def test_preemption_takes_the_fewest_lower_priority_jobs() -> None:
    sched = Scheduler(parse_system("cabinet"))
    sched.restore(SchedJob("old", "t", 150, priority=0, estimate_s=1000.0), range(0, 150), 0.0)
    sched.restore(SchedJob("new", "t", 150, priority=0, estimate_s=1000.0), range(150, 300), 50.0)
    d = sched.schedule([SchedJob("urgent", "t", 100, priority=10)], 60.0)
    assert d.preempt == ["new"]  # latest started goes first; one is enough
    assert [j.id for j, _ in d.start] == ["urgent"]
    assert "old" in sched.running and "new" not in sched.running


def test_preemption_never_for_equal_priority() -> None:
    sched = Scheduler(parse_system("cabinet"))
    sched.restore(SchedJob("a", "t", 300, priority=5, estimate_s=1000.0), range(0, 300), 0.0)
    d = sched.schedule([SchedJob("b", "t", 10, priority=5)], 1.0)
    assert d.preempt == [] and d.start == []


def test_preemption_waits_for_the_agent_when_chips_are_not_freed_at_once() -> None:
    sched = Scheduler(parse_system("cabinet"), preempt_frees_now=False)
    sched.restore(SchedJob("low", "t", 300, priority=0, estimate_s=1000.0), range(0, 300), 0.0)
    urgent = SchedJob("urgent", "t", 100, priority=10)
    d = sched.schedule([urgent], 1.0)
    assert d.preempt == ["low"] and d.start == [] and sched.running["low"].preempting
    d2 = sched.schedule([urgent], 2.0)
    assert d2.preempt == []  # already on its way out: nothing more is preempted
    sched.release("low")
    assert [j.id for j, _ in sched.schedule([urgent], 3.0).start] == ["urgent"]


def test_fair_share_orders_tenants_by_decayed_usage() -> None:
    fair = FairShare(half_life_s=100.0)
    fair.charge("heavy", 1000.0, 0.0)
    sched = Scheduler(parse_system("cabinet"), fair=fair)
    order = sched.order(
        [SchedJob("h", "heavy", 10, submitted=0.0), SchedJob("l", "light", 10, submitted=5.0)]
    )
    assert [j.id for j in order] == ["l", "h"]  # submitted later, but its tenant has used less
    fair.charge("light", 0.0, 100.0)  # one half-life later the heavy tenant's usage has halved
    assert fair.share("heavy") == pytest.approx(500.0)


def test_fair_share_interval_matches_the_integral() -> None:
    fair = FairShare(half_life_s=50.0)
    fair.charge_interval("t", 4, 0.0, 100.0, 100.0)
    k = math.log(2) / 50.0
    assert fair.share("t") == pytest.approx(4 * (1 - math.exp(-k * 100.0)) / k)


# --- the pass on the job store --------------------------------------------------------------------


def _tenant_and_jobs(db_url: str, specs: list[tuple[int, int]]) -> list[str]:
    from dojo.service.api import admin

    admin.tenant_create(db_url, "acme", {})
    return _tenant_and_jobs_more(db_url, specs)


def test_schedule_pass_places_preempts_and_rebuilds_from_the_table(db_url: str) -> None:
    from dojo.service.sched.dispatch import chips_of, requeue_preempted, schedule_pass
    from dojo.service.store import jobstore
    from dojo.service.store.db import Database

    topo = parse_system("cabinet")
    low, mid = _tenant_and_jobs(db_url, [(200, 0), (100, 0)])
    db = Database(db_url)
    r = schedule_pass(db, topo)
    assert sorted(r.placed) == sorted([low, mid])
    with db.session() as s:
        placements = {j.id: j.placement for j in s.query(Job).all()}
        at_low, at_mid = placements[low], placements[mid]
        assert at_low is not None and at_mid is not None
        assert at_low["count"] == 200 and at_low["hosts"] == ["cabinet0"]
        assert not set(chips_of(at_low)) & set(chips_of(at_mid))
        claimed = jobstore.claim_next(s, "agent-1", status="placed")
        assert claimed is not None and claimed.id == low  # equal priority: the older first
    (urgent,) = _tenant_and_jobs_more(db_url, [(250, 10)])
    r = schedule_pass(db, topo)
    # mid is only placed: straight back to queued; low is running: flagged for its agent
    assert set(r.preempted) == {low, mid} and r.placed == []
    with db.session() as s:
        assert _job(s, mid).status == "queued"
        job_low = _job(s, low)
        assert job_low.status == "running"
        assert job_low.placement is not None and job_low.placement["preempt"] is True
        assert requeue_preempted(s, low, "agent-1")
    r = schedule_pass(db, topo)
    assert r.placed == [urgent]
    with db.session() as s:
        job_low = _job(s, low)
        assert job_low.status == "queued" and job_low.attempt == 0 and job_low.placement is None
    db.dispose()


def _tenant_and_jobs_more(
    db_url: str, specs: list[tuple[int, int]], time_limit_s: list[int | None] | None = None
) -> list[str]:
    from dojo.service.api.models import JobSubmit
    from dojo.service.store import jobstore
    from dojo.service.store.db import Database
    from dojo.service.store.schema import Tenant

    limits = time_limit_s or [None] * len(specs)
    db = Database(db_url)
    with db.session() as s:
        tid = s.query(Tenant).one().id
        ids = [
            jobstore.submit(
                s,
                tid,
                JobSubmit.model_validate(
                    {
                        "kind": "eval",
                        "spec": {"policy": "naive"},
                        "compute": {"chips": c},
                        "priority": p,
                        "time_limit_s": limit,
                    }
                ),
            ).id
            for (c, p), limit in zip(specs, limits, strict=True)
        ]
    db.dispose()
    return ids


def test_time_limits_let_the_pass_backfill_a_short_job_before_the_reservation(db_url: str) -> None:
    from dojo.service.sched.dispatch import schedule_pass
    from dojo.service.store import jobstore
    from dojo.service.store.db import Database

    topo = parse_system("cabinet")  # 300 chips
    (running,) = _tenant_and_jobs(db_url, [(200, 0)])
    db = Database(db_url)
    with db.session() as s:  # 200 chips taken for at most 100 s
        _job(s, running).time_limit_s = 100
    assert schedule_pass(db, topo).placed == [running]
    with db.session() as s:
        claimed = jobstore.claim_next(s, "agent-1", status="placed")
        assert claimed is not None and claimed.id == running
    head, long, short, unknown = _tenant_and_jobs_more(
        db_url, [(300, 0), (100, 0), (100, 0), (100, 0)], time_limit_s=[None, 500, 50, None]
    )
    r = schedule_pass(db, topo, now=utcnow() + timedelta(seconds=10))
    # the head waits for the running job's limit; only the job that ends before then may use its chips
    assert r.reservation is not None and r.reservation["job"] == head
    assert r.reservation["at_s"] is not None
    assert r.placed == [short]
    with db.session() as s:
        status = {j: _job(s, j).status for j in (head, long, short, unknown)}
    assert status == {head: "queued", long: "queued", short: "placed", unknown: "queued"}
    db.dispose()


def test_fair_share_from_the_table(db_url: str) -> None:
    from dojo.service.sched.dispatch import fair_share
    from dojo.service.store.db import Database

    (a,) = _tenant_and_jobs(db_url, [(100, 0)])
    db = Database(db_url)
    now = utcnow()
    with db.session() as s:
        job = _job(s, a)
        job.status, job.started_at, job.finished_at = "succeeded", now - timedelta(seconds=100), now
        tenant = job.tenant_id
    with db.session() as s:
        fair = fair_share(s, now, half_life_s=1e9)
    assert fair.share(tenant) == pytest.approx(100 * 100, rel=1e-3)
    db.dispose()
