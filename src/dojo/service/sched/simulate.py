"""Discrete-event replay of a job trace through the scheduler: ours beside strict FIFO.

Events are arrivals and completions; after the events of one moment, one scheduling pass. A
job runs ``duration_s`` on its chips; a preempted job checkpoints at once, keeps its progress,
and pays ``restart_s`` when it starts again. Reported per policy: utilization (busy chip-seconds
over the chip-seconds from the first submission to the last completion), mean and p95 job
completion time (JCT = completion - submission), mean wait, fragmentation (time average of the
share of free chips in partly used tiles), jobs placed across more cabinets than they need
("avoidable splits"), preemptions and backfilled starts.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dojo.compute.topology import Topology
from dojo.service.sched.scheduler import FairShare, SchedJob, Scheduler, avoidable_split
from dojo.service.sched.trace import TraceJob

_DONE, _ARRIVE = 0, 1  # at one moment, completions free chips before arrivals are seen


@dataclass
class SimResult:
    policy: str
    jobs: int
    utilization: float
    mean_jct_s: float
    p95_jct_s: float
    mean_wait_s: float
    makespan_s: float
    fragmentation: float
    avoidable_splits: int
    preemptions: int
    backfilled: int
    jct_s: dict[str, float] = field(repr=False, default_factory=dict)
    timeline: list[tuple[float, int]] = field(
        repr=False, default_factory=list
    )  # (t [s], busy chips)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("jct_s", "timeline")}


@dataclass
class _State:
    job: TraceJob
    done_s: float = 0.0  # work finished and checkpointed [s]
    runs: int = 0
    token: int = 0  # invalidates the completion event of a preempted run
    run_start: float = 0.0
    overhead_s: float = 0.0
    first_start: float | None = None
    end: float | None = None


def simulate(
    trace: Sequence[TraceJob],
    topology: Topology,
    policy: str = "ours",
    *,
    restart_s: float = 60.0,
    keep_within: str | None = None,
    half_life_s: float = 3600.0,
    on_event: Callable[[], None] | None = None,
) -> SimResult:
    """Replay ``trace`` on ``topology`` under ``policy`` (``ours`` or ``fifo``)."""
    sched = Scheduler(topology, policy=policy, keep_within=keep_within, fair=FairShare(half_life_s))
    total = topology.total_chips
    states = {j.id: _State(j) for j in trace}
    events: list[tuple[float, int, int, str, int]] = []
    for k, j in enumerate(trace):
        heapq.heappush(events, (j.submit_s, _ARRIVE, k, j.id, 0))
    seq = len(trace)
    queue: dict[str, SchedJob] = {}
    busy_by_tenant: dict[str, int] = {}
    t0 = min(j.submit_s for j in trace)
    last = t0
    busy_int = frag_int = 0.0
    busy = 0
    frag = 0.0
    timeline: list[tuple[float, int]] = [(t0, 0)]
    splits: set[str] = set()
    preemptions = backfilled = 0

    def sched_job(st: _State) -> SchedJob:
        j = st.job
        est = (j.estimate_s if j.estimate_s is not None else j.duration_s) - st.done_s
        est = max(est, 1.0) + (restart_s if st.runs else 0.0)
        return SchedJob(j.id, j.tenant, j.chips, j.priority, j.submit_s, est)

    while events:
        now = events[0][0]
        dt = now - last
        busy_int += busy * dt
        frag_int += frag * dt
        if policy == "ours" and dt > 0:
            for tenant, chips in busy_by_tenant.items():
                sched.fair.charge(tenant, chips * dt, now)
        last = now
        while events and events[0][0] == now:
            _, kind, _, job_id, token = heapq.heappop(events)
            st = states[job_id]
            if kind == _ARRIVE:
                queue[job_id] = sched_job(st)
            elif token == st.token and st.end is None and job_id in sched.running:
                sched.release(job_id)
                st.end = now
                busy -= st.job.chips
                busy_by_tenant[st.job.tenant] -= st.job.chips
            if on_event is not None:
                on_event()
        d = sched.schedule(list(queue.values()), now)
        for vid in d.preempt:  # checkpointed now: progress kept, back in the queue
            st = states[vid]
            st.done_s += max(0.0, now - st.run_start - st.overhead_s)
            st.token += 1
            preemptions += 1
            busy -= st.job.chips
            busy_by_tenant[st.job.tenant] -= st.job.chips
            queue[vid] = sched_job(st)
        for job, p in d.start:
            st = states[job.id]
            del queue[job.id]
            st.overhead_s = restart_s if st.runs else 0.0
            st.runs += 1
            st.run_start = now
            if st.first_start is None:
                st.first_start = now
            if avoidable_split(topology, p, sched.level):
                splits.add(job.id)
            busy += job.chips
            busy_by_tenant[job.tenant] = busy_by_tenant.get(job.tenant, 0) + job.chips
            end = now + st.overhead_s + (st.job.duration_s - st.done_s)
            seq += 1
            heapq.heappush(events, (end, _DONE, seq, job.id, st.token))
        backfilled += len(d.backfilled)
        frag = sched.pool.fragmentation()
        timeline.append((now, busy))
    stuck = [s.job.id for s in states.values() if s.end is None]
    if stuck:  # cannot happen with jobs no larger than the machine; a guard against a policy bug
        raise RuntimeError(f"{len(stuck)} jobs never finished under {policy}: {stuck[:5]}")
    jct = {s.job.id: float(s.end) - s.job.submit_s for s in states.values() if s.end is not None}
    waits = [
        float(s.first_start) - s.job.submit_s for s in states.values() if s.first_start is not None
    ]
    span = last - t0
    values = np.asarray(list(jct.values()))
    return SimResult(
        policy=policy,
        jobs=len(trace),
        utilization=busy_int / (total * span) if span > 0 else 0.0,
        mean_jct_s=float(values.mean()),
        p95_jct_s=float(np.percentile(values, 95)),
        mean_wait_s=float(np.mean(waits)),
        makespan_s=span,
        fragmentation=frag_int / span if span > 0 else 0.0,
        avoidable_splits=len(splits),
        preemptions=preemptions,
        backfilled=backfilled,
        jct_s=jct,
        timeline=timeline,
    )


def compare(
    trace: Sequence[TraceJob],
    topology: Topology,
    *,
    restart_s: float = 60.0,
    keep_within: str | None = None,
    on_event: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Ours and FIFO on the same trace; the figures of both and ours/FIFO ratios."""
    ours = simulate(
        trace, topology, "ours", restart_s=restart_s, keep_within=keep_within, on_event=on_event
    )
    fifo = simulate(
        trace, topology, "fifo", restart_s=restart_s, keep_within=keep_within, on_event=on_event
    )

    def ratio(a: float, b: float) -> float | None:
        return a / b if b > 0 else None

    return {
        "system": topology.name,
        "chips": topology.total_chips,
        "jobs": len(trace),
        "ours": ours.summary(),
        "fifo": fifo.summary(),
        "ratio": {
            "mean_jct": ratio(ours.mean_jct_s, fifo.mean_jct_s),
            "p95_jct": ratio(ours.p95_jct_s, fifo.p95_jct_s),
            "utilization": ratio(ours.utilization, fifo.utilization),
        },
        "_results": (ours, fifo),
    }


def _hours(s: float) -> str:
    return f"{s / 3600:.2f} h" if math.isfinite(s) else "inf"


def format_comparison(out: dict[str, Any]) -> str:
    o, f, r = out["ours"], out["fifo"], out["ratio"]
    rows = [
        ("utilization", f"{o['utilization']:.1%}", f"{f['utilization']:.1%}", r["utilization"]),
        ("mean JCT", _hours(o["mean_jct_s"]), _hours(f["mean_jct_s"]), r["mean_jct"]),
        ("p95 JCT", _hours(o["p95_jct_s"]), _hours(f["p95_jct_s"]), r["p95_jct"]),
        ("mean wait", _hours(o["mean_wait_s"]), _hours(f["mean_wait_s"]), None),
        ("makespan", _hours(o["makespan_s"]), _hours(f["makespan_s"]), None),
        ("fragmentation", f"{o['fragmentation']:.1%}", f"{f['fragmentation']:.1%}", None),
        ("avoidable cabinet splits", str(o["avoidable_splits"]), str(f["avoidable_splits"]), None),
        ("preemptions", str(o["preemptions"]), str(f["preemptions"]), None),
        ("backfilled starts", str(o["backfilled"]), str(f["backfilled"]), None),
    ]
    lines = [
        f"{out['jobs']} jobs on {out['system']} ({out['chips']:,} chips)",
        f"{'':<26}{'ours':>12}{'FIFO':>12}{'ours/FIFO':>11}",
    ]
    for name, a, b, q in rows:
        lines.append(f"{name:<26}{a:>12}{b:>12}{'' if q is None else f'{q:.3f}':>11}")
    return "\n".join(lines)


def plot(out: dict[str, Any], path: str, *, bins: int = 400) -> None:
    """Utilization over time (ours and FIFO) and the JCT distributions, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours, fifo = out["_results"]
    end = max(ours.timeline[-1][0], fifo.timeline[-1][0])
    start = min(ours.timeline[0][0], fifo.timeline[0][0])
    grid = np.linspace(start, end, bins + 1)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [2.2, 1]})
    for res, colour in ((ours, "tab:orange"), (fifo, "tab:blue")):
        t = np.asarray([p[0] for p in res.timeline])
        b = np.asarray([p[1] for p in res.timeline], dtype=float)
        # average busy share in each bin: integrate the step function
        cum = np.concatenate([[0.0], np.cumsum(b[:-1] * np.diff(t))])
        at = np.interp(grid, t, cum)  # exact: the cumulative is linear between events
        share = np.diff(at) / np.diff(grid) / out["chips"]
        ax.plot(
            (grid[:-1] - start) / 3600,
            share * 100,
            color=colour,
            lw=1,
            label=f"{res.policy}: mean {res.utilization:.1%}, done at {res.makespan_s / 3600:.0f} h",
        )
        jct = np.sort(np.asarray(list(res.jct_s.values()))) / 3600
        bx.plot(
            jct,
            np.arange(1, len(jct) + 1) / len(jct),
            color=colour,
            label=f"{res.policy}: mean {res.mean_jct_s / 3600:.1f} h, p95 {res.p95_jct_s / 3600:.1f} h",
        )
    ax.set(
        xlabel="time [h]",
        ylabel="chips busy [%]",
        ylim=(0, 105),
        title=f"{out['jobs']} jobs on {out['system']} ({out['chips']:,} chips)",
    )
    ax.legend(loc="lower right")
    bx.set(
        xscale="log",
        xlabel="job completion time [h]",
        ylabel="share of jobs",
        title="JCT distribution",
    )
    bx.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["SimResult", "compare", "format_comparison", "plot", "simulate"]
