"""The scheduler's policy: gang, topology-aware, priorities with preemption, fair share, backfill.

A pure core: no database, no clock. :class:`Scheduler` holds what runs where (a
:class:`Pool`, i.e. the compute :class:`~dojo.compute.placement.Allocator` of one topology)
and answers ``schedule(queue, now)`` with a :class:`Decision`: the jobs to start with their
placements, the running jobs to preempt, and the reservation held for the head of the queue.
The discrete-event simulator (:mod:`dojo.service.sched.simulate`) and the database layer
(:mod:`dojo.service.sched.dispatch`) drive the same object.

Policy ``"ours"``, one pass:

1. **Order** the queue by priority (higher first), then the tenant's fair share (decayed chip
   usage over its weight, lower first), then submit time.
2. **Gang, topology-aware**: a job gets all its chips or none, through ``Allocator.allocate``
   (smallest block level that holds it, fullest such block first). A placement that spans more
   cabinets than the job needs (``keep_within``: a 20-chip job over two cabinets) is refused and
   the job waits instead, so no job is split across cabinets when one cabinet could hold it.
3. **Preemption**: when the first job that cannot start outranks running jobs, the fewest
   lower-priority jobs whose chips let it start (lowest priority, latest started first) are
   preempted: they checkpoint and go back to the queue with their progress.
4. **EASY backfill**: otherwise that job is the head and gets a reservation: the earliest time
   (from the running jobs' expected ends) at which it can be placed, and the chips it would get.
   Later jobs start now only if they fit and either end before that time (``estimate_s``) or
   keep off the reserved chips, so the head never starts later because of them.

Policy ``"fifo"``: submit order, the same placement, no preemption, no backfill, no cabinet
rule: the first job that does not fit blocks the queue.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dojo.compute.placement import Allocator, Placement
from dojo.compute.topology import Topology
from dojo.errors import DojoConfigError

POLICIES = ("ours", "fifo")
_HELD = np.iinfo(np.int64).max  # owner mark of chips kept free for a reservation


@dataclass(frozen=True)
class SchedJob:
    """A job as the policy sees it. ``estimate_s``: expected run time still to go [s] (None:
    unknown, treated as never ending before a reservation)."""

    id: str
    tenant: str
    chips: int
    priority: int = 0
    submitted: float = 0.0  # [s]
    estimate_s: float | None = None


@dataclass
class Running:
    job: SchedJob
    started: float  # [s]
    placement: Placement
    preempting: bool = False  # asked to checkpoint and stop; its chips are not free yet

    @property
    def expected_end(self) -> float:
        if self.preempting:
            return self.started
        return math.inf if self.job.estimate_s is None else self.started + self.job.estimate_s


@dataclass(frozen=True)
class Reservation:
    job_id: str
    at_s: float  # earliest start the running jobs' estimates allow (inf: unknown)
    chips: frozenset[int]


@dataclass
class Decision:
    start: list[tuple[SchedJob, Placement]] = field(default_factory=list)
    preempt: list[str] = field(default_factory=list)
    reservation: Reservation | None = None
    backfilled: list[str] = field(default_factory=list)  # started past a blocked head


class Pool(Allocator):
    """An :class:`Allocator` that can also take given chips (to rebuild state from a database),
    be copied (to look ahead) and hold free chips aside (for a reservation)."""

    def pin(self, job_id: str, chips: Iterable[int]) -> Placement:
        """Record ``job_id`` on exactly ``chips`` (all must be free)."""
        idx = np.asarray(sorted(set(int(c) for c in chips)), dtype=np.int64)
        if job_id in self._placements:
            raise DojoConfigError(f"Job {job_id!r} is placed already; free it first.")
        if len(idx) == 0 or idx[0] < 0 or idx[-1] >= self.topology.total_chips:
            raise DojoConfigError(
                f"Job {job_id!r}: chips outside 0..{self.topology.total_chips - 1}."
            )
        if (self._owner[idx] >= 0).any():
            raise DojoConfigError(f"Job {job_id!r}: some of its chips are held by another job.")
        slot = self._next_slot
        self._next_slot += 1
        self._owner[idx] = slot
        self._slots[job_id] = slot
        p = self._describe(job_id, idx.tolist(), self.topology.smallest_level_for(len(idx)))
        self._placements[job_id] = p
        return p

    def clone(self) -> Pool:
        other = Pool(self.topology)
        other._owner = self._owner.copy()
        other._slots = dict(self._slots)
        other._placements = dict(self._placements)
        other._next_slot = self._next_slot
        return other

    def hold(self, chips: np.ndarray) -> np.ndarray:
        """Mark the free ones of ``chips`` taken; returns them, for :meth:`release_held`."""
        free = chips[self._owner[chips] < 0]
        self._owner[free] = _HELD
        return free

    def release_held(self, held: np.ndarray) -> None:
        self._owner[held] = -1


def split_level(topology: Topology, keep_within: str | None) -> int:
    """Index of the level a job must not spread over more blocks of than it needs."""
    if keep_within is not None:
        return topology.level_index(keep_within)
    names = [lv.name for lv in topology.levels]
    return names.index("cabinet") if "cabinet" in names else max(0, topology.top - 1)


def avoidable_split(topology: Topology, p: Placement, level: int) -> bool:
    """True when ``p`` touches more ``level`` blocks than its chips need."""
    need = -(-p.size // topology.chips_per_block(level))
    return p.blocks_touched[level] > need


class FairShare:
    """Chip-seconds used per tenant, decaying with ``half_life_s``, over each tenant's weight."""

    def __init__(
        self, half_life_s: float = 3600.0, weights: Mapping[str, float] | None = None
    ) -> None:
        if not half_life_s > 0:
            raise DojoConfigError(f"half_life_s={half_life_s!r} must be > 0.")
        self.half_life_s = half_life_s
        self.weights = dict(weights or {})
        self._usage: dict[str, float] = {}
        self._at = 0.0

    def _decay_to(self, now: float) -> None:
        if now > self._at:
            f = 0.5 ** ((now - self._at) / self.half_life_s)
            for t in self._usage:
                self._usage[t] *= f
            self._at = now

    def charge(self, tenant: str, chip_s: float, now: float) -> None:
        self._decay_to(now)
        self._usage[tenant] = self._usage.get(tenant, 0.0) + chip_s

    def charge_interval(
        self, tenant: str, chips: int, start: float, end: float, now: float
    ) -> None:
        """Charge ``chips`` used from ``start`` to ``end`` (<= now), each moment decayed to ``now``."""
        self._decay_to(now)
        if end <= start:
            return
        k = math.log(2) / self.half_life_s
        self._usage[tenant] = (
            self._usage.get(tenant, 0.0)
            + chips * (math.exp(-k * (now - end)) - math.exp(-k * (now - start))) / k
        )

    def share(self, tenant: str) -> float:
        return self._usage.get(tenant, 0.0) / self.weights.get(tenant, 1.0)


class Scheduler:
    """What runs where on one topology, and the policy that decides what starts next."""

    def __init__(
        self,
        topology: Topology,
        *,
        policy: str = "ours",
        keep_within: str | None = None,
        fair: FairShare | None = None,
        preempt_frees_now: bool = True,
    ) -> None:
        if policy not in POLICIES:
            raise DojoConfigError(f"policy={policy!r} must be one of {', '.join(POLICIES)}.")
        self.topology = topology
        self.policy = policy
        self.pool = Pool(topology)
        self.level = split_level(topology, keep_within)
        self.fair = fair or FairShare()
        # True (simulation): a preempted job checkpoints at once and its chips serve the preemptor
        # in the same pass. False (agents): its chips stay held until its agent has stopped it.
        self.preempt_frees_now = preempt_frees_now
        self.running: dict[str, Running] = {}

    # ------------------------------------------------------------------ state
    def start(self, job: SchedJob, placement: Placement, now: float) -> None:
        self.running[job.id] = Running(job, now, placement)

    def restore(
        self, job: SchedJob, chips: Iterable[int], started: float, *, preempting: bool = False
    ) -> None:
        """Record a job a database says runs on ``chips``."""
        self.running[job.id] = Running(job, started, self.pool.pin(job.id, chips), preempting)

    def release(self, job_id: str) -> Running:
        """The job ended (or stopped for a preemption): its chips are free."""
        self.pool.free(job_id)
        return self.running.pop(job_id)

    def _may_fit(self, pool: Pool, job: SchedJob) -> bool:
        """A quick necessary condition for an acceptable placement: the ``need`` emptiest
        blocks of the split level hold enough free chips."""
        if self.policy != "ours":
            return job.chips <= pool.free_chips()
        free = pool._free_per_block(self.level)
        need = -(-job.chips // self.topology.chips_per_block(self.level))
        if need == 1:
            return bool(free.max() >= job.chips)
        return bool(np.sort(free)[-need:].sum() >= job.chips)

    def _place(self, pool: Pool, job: SchedJob) -> Placement | None:
        if not self._may_fit(pool, job):
            return None
        p = pool.allocate(job.id, job.chips)
        if (
            p is not None
            and self.policy == "ours"
            and avoidable_split(self.topology, p, self.level)
        ):
            pool.free(job.id)
            return None
        return p

    def order(self, queue: Sequence[SchedJob]) -> list[SchedJob]:
        if self.policy == "fifo":
            return sorted(queue, key=lambda j: (j.submitted, j.id))
        return sorted(
            queue, key=lambda j: (-j.priority, self.fair.share(j.tenant), j.submitted, j.id)
        )

    # ------------------------------------------------------------------ the pass
    def schedule(self, queue: Sequence[SchedJob], now: float) -> Decision:
        """Start what can start now; preempt or reserve for the first job that cannot."""
        total = self.topology.total_chips
        for j in queue:
            if j.chips < 1 or j.chips > total:
                raise DojoConfigError(
                    f"Job {j.id!r} asks for {j.chips} chips; this pool has 1..{total}."
                )
            if j.id in self.running:
                raise DojoConfigError(f"Job {j.id!r} is queued and running at once.")
        d = Decision()
        ordered = self.order(queue)
        head: SchedJob | None = None
        rest: list[SchedJob] = []
        for i, job in enumerate(ordered):
            p = self._place(self.pool, job)
            if p is not None:
                self.start(job, p, now)
                d.start.append((job, p))
                continue
            if self.policy == "fifo":
                return d
            victims = self._victims(job)
            if victims:
                d.preempt += [v for v in victims if not self.running[v].preempting]
                if self.preempt_frees_now:
                    for v in victims:
                        self.release(v)
                    p = self._place(self.pool, job)
                    assert p is not None, "the victims were chosen so that the job fits"
                    self.start(job, p, now)
                    d.start.append((job, p))
                    continue
                for v in victims:
                    self.running[v].preempting = True
            head, rest = job, ordered[i + 1 :]
            break
        if head is None:
            return d
        d.reservation = self._reserve(head, now)
        self._backfill(rest, d, now)
        return d

    def _victims(self, job: SchedJob) -> list[str]:
        """The fewest lower-priority running jobs whose chips let ``job`` start; [] if none do."""
        cands = [r for r in self.running.values() if r.preempting or r.job.priority < job.priority]
        if not cands or self.pool.free_chips() + sum(r.job.chips for r in cands) < job.chips:
            return []
        cands.sort(key=lambda r: (not r.preempting, r.job.priority, -r.started, r.job.id))
        look = self.pool.clone()
        chosen: list[Running] = []
        for r in cands:
            look.free(r.job.id)
            chosen.append(r)
            p = self._place(look, job)
            if p is None:
                continue
            look.free(job.id)
            needed = list(chosen)
            for v in reversed(chosen[:-1]):  # give back those the job can do without
                look.pin(v.job.id, v.placement.chips)
                if (q := self._place(look, job)) is not None:
                    look.free(job.id)
                    needed.remove(v)
                    del q
                else:
                    look.free(v.job.id)
            return [v.job.id for v in needed]
        return []

    def _reserve(self, head: SchedJob, now: float) -> Reservation:
        """Earliest start of ``head`` from the running jobs' expected ends, and its chips."""
        look = self.pool.clone()
        for r in sorted(self.running.values(), key=lambda r: (r.expected_end, r.job.id)):
            look.free(r.job.id)
            if math.isinf(r.expected_end):
                continue
            p = self._place(look, head)
            if p is not None:
                return Reservation(head.id, max(now, r.expected_end), frozenset(p.chips))
        p = self._place(look, head)  # everything freed: where it goes once the machine drains
        chips = frozenset(p.chips) if p is not None else frozenset()
        return Reservation(head.id, math.inf, chips)

    def _backfill(self, rest: Sequence[SchedJob], d: Decision, now: float) -> None:
        res = d.reservation
        assert res is not None
        reserved = np.asarray(sorted(res.chips), dtype=np.int64)
        cpb = self.topology.chips_per_block(self.level)
        # The smallest size that failed, per (short, blocks needed): a larger one fails as well
        # (until something starts), which spares most tries on a long queue.
        smallest_failed: dict[tuple[bool, int], int] = {}
        never = self.topology.total_chips + 1
        for job in rest:
            short = job.estimate_s is not None and now + job.estimate_s <= res.at_s
            bucket = (short, -(-job.chips // cpb))
            if (
                job.chips >= smallest_failed.get(bucket, never)
                or job.chips > self.pool.free_chips()
            ):
                continue
            held = None if short else self.pool.hold(reserved)
            p = self._place(self.pool, job)
            if held is not None:
                self.pool.release_held(held)
            if p is None:
                smallest_failed[bucket] = job.chips
                continue
            self.start(job, p, now)
            d.start.append((job, p))
            d.backfilled.append(job.id)
            smallest_failed.clear()


__all__ = [
    "POLICIES",
    "Decision",
    "FairShare",
    "Pool",
    "Reservation",
    "Running",
    "SchedJob",
    "Scheduler",
    "avoidable_split",
    "split_level",
]
