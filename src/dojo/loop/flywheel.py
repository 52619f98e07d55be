"""The fleet-learning loop: deploy → drive → ingest → mine → aggregate → train → evaluate → gate.

>>> result = run_loop(LoopConfig(out="out/loop", loops=4))
>>> [(r["loop"], r["nines_low"], r["promoted"]) for r in result["loops"]]

One turn, ``k``:

1. **Drive.** Turn 0: every car is driven by the human-driver model (manual mode). Later turns
   deploy the current model: even cars run it in shadow mode beside a human, odd cars drive
   autonomously with the safety driver. Fresh training seeds every turn; every frame is logged.
2. **Ingest** the turn's logs into one clip store shared by all turns.
3. **Mine** the whole store: hazards (near misses, hard brakes, cut-ins, shadow disagreements,
   collisions) with the lead-up to each, takeovers from the moment the safety driver acts, and
   a sample of normal driving. Only windows a person drove (the human, or the safety driver
   during a takeover) are kept as imitation targets: that is HG-DAgger, and because the store
   keeps every turn's drives, the dataset aggregates over turns as DAgger asks.
4. **Train** a candidate on that dataset version, from the deployed network's weights
   (``warm_start``; from scratch while ``naive`` is deployed).
5. **Evaluate** it in closed loop on the held-out suite, on the same seeds as the deployed model
   and both baselines, so their counts compare directly.
6. **Gate** (:mod:`dojo.loop.gate`): promote only if its lower bound on nines is not below the
   deployed model's and no family regresses significantly. The deployed model of turn 0 is
   ``naive``, the constant-speed, keep-lane car the fleet starts with.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dojo.data import datasets as ds
from dojo.data.ingest import ingest
from dojo.data.mine import mine_entries
from dojo.errors import DojoConfigError
from dojo.eval.evaluate import evaluate, get_suite
from dojo.fleet.config import DriveConfig
from dojo.fleet.drive import Fleet
from dojo.loop.config import HAZARD_TRIGGERS, LABEL_SOURCES, TAKEOVER_TRIGGERS, LoopConfig
from dojo.loop.gate import gate
from dojo.train.config import TrainConfig
from dojo.train.trainer import train
from dojo.world.scenarios import TRAIN_SEEDS

DATASET = "loop"  # the dataset name every turn adds a version to
RESULT_FILE = "loop.json"
SEEDS_PER_TURN = 100_000  # training seeds set aside for each turn's drives (turns never share a scenario)
Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_out(config: LoopConfig) -> Path:
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise DojoConfigError(f"--out {out} is a file; the loop needs a folder.")
    if out.is_dir() and any(out.iterdir()):
        raise DojoConfigError(f"--out {out} already holds files (an earlier loop?); choose an empty or new folder.")
    return out


def _eval_summary(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("policy", "suite", "decisions", "miles", "critical_interventions", "noncritical_interventions",
            "collisions", "nines", "nines_low", "nines_high", "nines_is_bound", "wall_s")
    return {k: result[k] for k in keys if k in result}


class _Flywheel:
    def __init__(self, config: LoopConfig, log: Log, progress: bool) -> None:
        self.config, self.log, self.progress = config, log, progress
        self.out = _check_out(config)
        get_suite(config.suite, config.suites_file)  # an unknown suite fails before any car moves
        self.store_path = self.out / "store"
        self.evals: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ stages
    def drive(self, turn: int, policy: str) -> dict[str, Any]:
        cfg = self.config
        mode = "manual" if turn == 0 else "mixed"
        seed = TRAIN_SEEDS.start + (cfg.seed + turn * SEEDS_PER_TURN) % len(TRAIN_SEEDS)
        drive_cfg = DriveConfig(cars=cfg.cars, minutes=cfg.drive_minutes, mode=mode, policy=policy, seed=seed,
                                out=str(self.out / "drives" / f"loop{turn}"), logging="full")
        fleet = Fleet(drive_cfg)
        with tqdm(total=drive_cfg.steps, desc=f"loop {turn} drive ({mode})", unit="step", leave=False,
                  disable=not self.progress) as bar:
            fleet.on_step = lambda s: bar.update(1)
            summary = fleet.run()
        if summary.interrupted:
            raise KeyboardInterrupt
        return summary.as_dict()

    def mine(self, turn: int) -> tuple[ds.DatasetVersion, list[dict[str, Any]], dict[str, Any]]:
        cfg = self.config
        hazards = mine_entries(self.store_path, HAZARD_TRIGGERS, cfg.hazard_window_s, cfg.sample_normal, cfg.seed)
        takeovers = mine_entries(self.store_path, TAKEOVER_TRIGGERS, cfg.takeover_window_s, 0.0, cfg.seed)
        seen: set[tuple[str, float, float]] = set()
        entries: list[dict[str, Any]] = []
        dropped: Counter[str] = Counter()
        for e in hazards.entries + takeovers.entries:
            key = (e["clip_id"], e["t0_s"], e["t1_s"])
            if key in seen:
                continue
            seen.add(key)
            if e["label_source"] in LABEL_SOURCES:
                entries.append(e)
            else:
                dropped[e["label_source"]] += 1
        if not entries:
            raise DojoConfigError(
                f"Loop {turn} mined no window a person drove; drive longer (drive_minutes={cfg.drive_minutes:g}) "
                f"or with more cars (cars={cfg.cars})."
            )
        entries.sort(key=lambda e: (e["drive_id"], e["t0_s"], e["clip_id"]))
        recipe = {
            "command": f"dojo loop --out {self.out} (turn {turn})",
            "triggers": hazards.triggers + takeovers.triggers,
            "parts": [{"triggers": m.triggers, "window_s": list(m.window_s), "params": m.params, "sql": m.sql}
                      for m in (hazards, takeovers)],
            "sample_normal": hazards.sample_normal,
            "label_sources": list(LABEL_SOURCES),
            "seed": cfg.seed,
        }
        mining = {"moments": {**hazards.moments, **takeovers.moments},
                  "dropped_no_video": {**hazards.dropped_no_video, **takeovers.dropped_no_video},
                  "dropped_network_driven": dict(dropped)}
        version = ds.save_dataset(self.store_path, DATASET, entries, recipe=recipe, mining=mining,
                                  val_share=cfg.val_share, seed=cfg.seed)
        return version, entries, mining

    def train(self, turn: int, ref: str, deployed: str) -> dict[str, Any]:
        cfg = self.config
        init = deployed if cfg.warm_start and cfg.net == "policy" and deployed not in ("naive", "expert") else None
        tc = TrainConfig(dataset=ref, store=str(self.store_path), out=str(self.out / "runs" / f"loop{turn}"),
                         net=cfg.net, size=cfg.size, steps=cfg.train_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                         frames=cfg.frames, seed=cfg.seed + turn, checkpoint_every=0, val_every=cfg.train_steps,
                         buffer_windows=cfg.shuffle_windows, init_from=init,
                         progress=self.progress)
        return train(tc)

    def evaluate(self, name: str, policy: str) -> dict[str, Any]:
        cfg = self.config
        with tqdm(total=cfg.eval_decisions, desc=f"eval {name}", unit="decision", leave=False,
                  disable=not self.progress) as bar:
            def tick(done: int, planned: int) -> None:
                bar.total = planned
                bar.update(done - bar.n)

            result = evaluate(policy, cfg.suite, cfg.eval_decisions, cfg.eval_cars, suites_file=cfg.suites_file,
                              progress=tick)
        folder = self.out / "eval"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
        self.evals[name] = result
        return result

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        cfg = self.config
        start = time.perf_counter()
        budget_s = cfg.budget_minutes * 60.0
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        self.log(f"baselines on suite {cfg.suite} ({cfg.eval_decisions:,} decisions each)")
        naive = self.evaluate("naive", "naive")
        expert = self.evaluate("expert", "expert")
        self.log(f"  naive  {_nines_words(naive)}\n  expert {_nines_words(expert)}")
        deployed: dict[str, Any] = {"model": "naive", "loop": None, "eval": naive}
        rows: list[dict[str, Any]] = []
        stopped: str | None = None
        slowest_s = 0.0
        for turn in range(cfg.loops):
            elapsed = time.perf_counter() - start
            if turn > 0 and elapsed + slowest_s > budget_s:
                stopped = (f"budget: {elapsed / 60:.1f} of {cfg.budget_minutes:g} min spent and a turn takes "
                           f"up to {slowest_s / 60:.1f} min; stopped before loop {turn}")
                self.log(stopped)
                break
            t0 = time.perf_counter()
            row = self.turn(turn, deployed)
            if row["promoted"]:
                deployed = {"model": row["candidate"], "loop": turn, "eval": self.evals[f"loop{turn}"]}
            row["deployed"] = deployed["model"]
            row["wall_s"] = time.perf_counter() - t0
            slowest_s = max(slowest_s, row["wall_s"])
            rows.append(row)
            self.log(format_row(row, header=turn == 0))
        result = {
            "config": cfg.to_dict(),
            "suite": cfg.suite,
            "loops": rows,
            "naive": _eval_summary(naive),
            "expert": _eval_summary(expert),
            "naive_nines": naive["nines"], "naive_nines_low": naive["nines_low"], "naive_nines_high": naive["nines_high"],
            "expert_nines": expert["nines"], "expert_nines_low": expert["nines_low"],
            "expert_nines_high": expert["nines_high"], "expert_nines_is_bound": expert["nines_is_bound"],
            "deployed": {"model": deployed["model"], "loop": deployed["loop"], **_eval_summary(deployed["eval"])},
            "stopped_early": stopped,
            "wall_s": time.perf_counter() - start,
        }
        result["versus_naive"] = _versus(deployed["eval"], naive)
        result["versus_expert"] = _versus(deployed["eval"], expert)
        (self.out / RESULT_FILE).write_text(json.dumps(result, indent=1, default=str))
        return result

    def turn(self, turn: int, deployed: dict[str, Any]) -> dict[str, Any]:
        times: dict[str, float] = {}
        t = time.perf_counter()
        drive = self.drive(turn, deployed["model"])
        times["drive_s"] = time.perf_counter() - t
        t = time.perf_counter()
        summary = ingest([self.out / "drives" / f"loop{turn}"], self.store_path)
        if summary.files_quarantined:
            self.log(f"loop {turn}: {summary.files_quarantined} drive log(s) quarantined: {summary.quarantined}")
        times["ingest_s"] = time.perf_counter() - t
        t = time.perf_counter()
        version, entries, mining = self.mine(turn)
        times["mine_s"] = time.perf_counter() - t
        t = time.perf_counter()
        trained = self.train(turn, version.ref, deployed["model"])
        times["train_s"] = time.perf_counter() - t
        candidate = str(Path(trained["run"]) / "policy.pt")
        t = time.perf_counter()
        result = self.evaluate(f"loop{turn}", candidate)
        times["eval_s"] = time.perf_counter() - t
        decision = gate(result, deployed["eval"], self.config.alpha)
        by_trigger: Counter[str] = Counter(trig for e in entries for trig in e["triggers"])
        return {
            "loop": turn,
            "drive": {k: drive[k] for k in ("mode", "policy", "cars", "decisions", "critical_interventions",
                                             "noncritical_interventions", "shadow_disagreements", "collisions")},
            "dataset": version.ref,
            "windows": len(entries),
            "windows_by_trigger": dict(sorted(by_trigger.items())),
            "windows_by_label_source": dict(Counter(e["label_source"] for e in entries)),
            "dropped_network_driven": mining["dropped_network_driven"],
            "train_loss": _train_loss(trained),
            "val_loss": trained["val_loss"],
            "occupancy_iou": trained.get("val_iou"),
            "candidate": candidate,
            "started_from": trained.get("init_from") or "scratch",
            "decisions": result["decisions"],
            "critical_interventions": result["critical_interventions"],
            "noncritical_interventions": result["noncritical_interventions"],
            "collisions": result["collisions"],
            "nines": result["nines"],
            "nines_low": result["nines_low"],
            "nines_high": result["nines_high"],
            "nines_is_bound": result["nines_is_bound"],
            "families": {f: {k: r[k] for k in ("decisions", "critical_interventions", "nines", "nines_low", "nines_high")}
                         for f, r in result["families"].items()},
            "promoted": decision.promoted,
            "gate": decision.reason,
            "against": deployed["model"],
            "stage_s": times,
        }


def recent_loss(run: str | Path, share: float = 0.1) -> float | None:
    """Mean training loss over the last ``share`` of a run's steps (its ``metrics.jsonl``): one
    step's loss is one batch's, too noisy to compare turns by."""
    losses: list[float] = []
    try:
        with open(Path(run) / "metrics.jsonl", encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and "step" in row and isinstance(row.get("loss"), (int, float)):
                    losses.append(float(row["loss"]))
    except OSError:
        return None
    if not losses:
        return None
    tail = losses[-max(1, int(len(losses) * share)):]
    return sum(tail) / len(tail)


def _train_loss(trained: dict[str, Any]) -> float:
    """The run's recent mean loss; its last step's when no metrics were written."""
    recent = recent_loss(trained["run"])
    return float(trained["loss"]) if recent is None else recent


def _versus(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    from dojo.eval.evaluate import compare_results

    c = compare_results(a, b)
    safer = {"a": a["policy"], "b": b["policy"]}.get(c["better"])  # None when not significant
    return {"p_value": c["p_value"], "significant": c["significant"], "safer": safer}


def _nines_words(r: dict[str, Any]) -> str:
    high = "inf" if r["nines_high"] is None or math.isinf(r["nines_high"]) else f"{r['nines_high']:.2f}"
    point = (">=" if r["nines_is_bound"] else "") + f"{r['nines']:.2f}"
    return (f"{r['critical_interventions']:>5,} critical in {r['decisions']:,} decisions: "
            f"nines {point} [{r['nines_low']:.2f}, {high}]")


_HEAD = f"{'loop':>4}  {'windows (by trigger)':<44}{'loss':>8}{'IoU':>6}{'decisions':>11}{'critical':>9}  {'nines [95%]':<20}promoted"


def format_row(row: dict[str, Any], header: bool = False) -> str:
    """One printed line per turn (with the header before the first)."""
    trig = ", ".join(f"{k} {v}" for k, v in row["windows_by_trigger"].items())
    windows = f"{row['windows']} ({trig})"
    if len(windows) > 43:
        windows = windows[:40] + "..."
    iou = "-" if row["occupancy_iou"] is None else f"{row['occupancy_iou']:.2f}"
    high = "inf" if row["nines_high"] is None or math.isinf(row["nines_high"]) else f"{row['nines_high']:.2f}"
    nines = (">=" if row["nines_is_bound"] else "") + f"{row['nines']:.2f} [{row['nines_low']:.2f}, {high}]"
    promoted = "yes" if row["promoted"] else f"no: {row['gate']}"
    line = (f"{row['loop']:>4}  {windows:<44}{row['train_loss']:>8.4f}{iou:>6}{row['decisions']:>11,}"
            f"{row['critical_interventions']:>9,}  {nines:<20}{promoted}")
    return (_HEAD + "\n" + line) if header else line


def run_loop(config: LoopConfig, log: Log | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``config.loops`` turns of the flywheel; the rows, the baselines and the deployed model.

    Writes under ``config.out``: ``drives/loopK/`` (MCAP logs), ``store/`` (clip store and the
    ``loop`` dataset's versions), ``runs/loopK/`` (training runs), ``eval/*.json`` and
    ``loop.json`` (the result). ``log`` receives the printed lines (default: stderr).
    """
    if not isinstance(config, LoopConfig):
        raise DojoConfigError(f"config must be a LoopConfig; got {type(config).__name__}.")
    return _Flywheel(config, log or _stderr, progress).run()


__all__ = ["DATASET", "RESULT_FILE", "format_row", "run_loop"]
