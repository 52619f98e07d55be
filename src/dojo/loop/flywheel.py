"""The fleet-learning loop: deploy → drive → ingest → mine → aggregate → train → evaluate → gate.

>>> result = run_loop(LoopConfig(out="out/loop", loops=5))
>>> [(r["loop"], r["nines_low"], r["promoted"]) for r in result["loops"]]

One turn, ``k``:

1. **Drive.** Turn 0: every car is driven by the human-driver model (manual mode). Later turns
   deploy the current model: even cars run it in shadow mode beside a human, odd cars drive
   autonomously with the safety driver. Fresh training seeds every turn; every frame is logged.
2. **Ingest** the turn's logs into one clip store shared by all turns.
3. **Auto-label** (with ``train.labels='autolabel'``): every frame of the turn's drives gets
   the offline teacher's action, from what the rig showed, with a second of hindsight
   (:mod:`dojo.data.autolabel`), the frames the network drove included.
4. **Mine** the whole store: hazards (near misses, hard brakes, cut-ins, shadow disagreements,
   collisions) with the lead-up to each, takeovers from the moment the safety driver acts, and
   a sample of normal driving. With auto-labels every window is a target: the loop is DAgger
   with a hindsight labeler. With the logged controls (``train.labels='telemetry'``) only
   windows a person drove (the human, or the safety driver during a takeover) are kept:
   HG-DAgger. Either way the store keeps every turn's drives, so the dataset aggregates over
   turns as DAgger asks.
5. **Train** a candidate on that dataset version, from the deployed network's weights
   (``warm_start``: its policy file, or for ``perception`` the checkpoint the planner reads;
   from scratch while ``naive`` is deployed, and for ``both``, whose deployed file is a policy).
6. **Evaluate** the candidate and the deployed model in closed loop on the held-out suite, both
   on the same seeds, fresh each turn (:meth:`_Flywheel.turn_seed`): the comparison is paired,
   and the deployed model is judged on a new draw rather than the one that promoted it.
7. **Gate** (:mod:`dojo.loop.gate`): promote only if its lower bound on nines is not below the
   deployed model's and no family regresses significantly. The deployed model of turn 0 is
   ``naive``, the constant-speed, keep-lane car the fleet starts with.

At the end the deployed model is evaluated once more on the baselines' seeds, so the result's
``deployed`` row compares with naive and the expert seed for seed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from tqdm import tqdm

from dojo.atomic import write_text
from dojo.data import datasets as ds
from dojo.data.ingest import ingest
from dojo.data.mine import mine_entries
from dojo.errors import DojoConfigError
from dojo.eval.evaluate import evaluate, get_suite
from dojo.fleet.config import PLANNER_PREFIX
from dojo.fleet.split import drive_batches
from dojo.loop.config import HAZARD_TRIGGERS, TAKEOVER_TRIGGERS, LoopConfig, label_sources
from dojo.loop.gate import gate
from dojo.loop.moments import fixed_and_broken, suite_fixed_and_broken
from dojo.loop.rows import format_row, nines_words, train_loss, versus
from dojo.train.config import CHECKPOINT_FILE
from dojo.train.trainer import train
from dojo.world.scenarios import TRAIN_SEEDS

DATASET = "loop"  # the dataset name every turn adds a version to
RESULT_FILE = "loop.json"
CONFIG_FILE = "config.json"
JOURNAL_FILE = "progress.json"  # the stages completed so far: what `dojo loop --resume` skips
SUITE_FILE = "moments.toml"  # the fleet's critical moments: the regression suite of every turn
SEEDS_PER_TURN = (
    100_000  # training seeds set aside for each turn's drives (turns never share a scenario)
)
Log = Callable[[str], None]


def candidate_policy(net: str, run: Path) -> str:
    """The policy spec of a turn's trained ``net`` in folder ``run``: its ``policy.pt``, or for
    ``perception`` its checkpoint driving the planner (:class:`dojo.fleet.PerceptionPlanner`)."""
    if net == "perception":
        return f"{PLANNER_PREFIX}{run / CHECKPOINT_FILE}"
    return str(run / "policy.pt")


def warm_start_from(net: str, deployed: str) -> str | None:
    """The weights a turn's ``net`` candidate starts from: the deployed model's where it is a
    net of that kind (a policy file for ``policy``; the checkpoint behind ``planner:`` for
    ``perception``), else ``None`` (from scratch: a baseline, or a net of another kind)."""
    if deployed in ("naive", "expert"):
        return None
    planner = deployed.startswith(PLANNER_PREFIX)
    if net == "perception" and planner:
        return deployed.removeprefix(PLANNER_PREFIX)
    return deployed if net == "policy" and not planner else None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_out(config: LoopConfig) -> Path:
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise DojoConfigError(f"--out {out} is a file; the loop needs a folder.")
    if out.is_dir() and any(out.iterdir()):
        raise DojoConfigError(
            f"--out {out} already holds files (an earlier loop?); choose an empty or new folder."
        )
    return out


def _eval_summary(result: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "policy",
        "suite",
        "decisions",
        "miles",
        "critical_interventions",
        "noncritical_interventions",
        "collisions",
        "nines",
        "nines_low",
        "nines_high",
        "nines_is_bound",
        "drives",
        "interval_method",
        "reasons",
        "wall_s",
    )
    return {k: result[k] for k in keys if k in result}


def _write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON atomically: a reader (or a resume after kill -9) sees old or new, never half."""
    write_text(path, json.dumps(value, indent=1, default=str))


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (paths as strings), so a resumed run holds the same."""
    return json.loads(json.dumps(value, default=str))


def load_config(out: str | Path) -> LoopConfig:
    """The :class:`LoopConfig` a loop folder was started with (its ``config.json``)."""
    path = Path(out) / CONFIG_FILE
    if not Path(out).is_dir():
        raise DojoConfigError(f"--resume {out}: no such folder.")
    try:
        saved = json.loads(path.read_text())
        assert isinstance(saved, dict)
    except FileNotFoundError:
        raise DojoConfigError(
            f"--resume {out}: it holds no loop ({CONFIG_FILE} is missing)."
        ) from None
    except (OSError, ValueError, AssertionError) as e:
        raise DojoConfigError(
            f"--resume {out}: {path} cannot be read as a loop's config ({e})."
        ) from e
    try:  # nested, or the flat form loops written before the configs were nested hold
        return LoopConfig.from_dict(saved)
    except (TypeError, DojoConfigError) as e:
        raise DojoConfigError(
            f"--resume {out}: {path} is not a loop config this Dojo reads ({e})."
        ) from e


class _Flywheel:
    def __init__(
        self,
        config: LoopConfig,
        log: Log,
        progress: bool,
        resume: bool = False,
        ray: str | None = None,
    ) -> None:
        self.config, self.log, self.progress = config, log, progress
        self.ray = ray  # a Ray cluster's address: drive, evaluate, ingest and label there
        self.out = Path(config.out) if resume else _check_out(config)
        get_suite(
            config.eval.suite, config.eval.suites_file
        )  # an unknown suite fails before any car moves
        self.store_path = self.out / "store"
        self.evals: dict[str, dict[str, Any]] = {}
        self.journal: dict[str, Any] = {"baselines": {}, "turns": {}}
        if resume:
            path = self.out / JOURNAL_FILE
            try:
                self.journal = json.loads(path.read_text()) if path.exists() else self.journal
                assert isinstance(self.journal.get("turns"), dict) and isinstance(
                    self.journal.get("baselines"), dict
                )
            except (OSError, ValueError, AssertionError) as e:
                raise DojoConfigError(f"--resume {self.out}: {path} cannot be read ({e}).") from e
            done = sorted(int(k) for k, t in self.journal["turns"].items() if "row" in t)
            self.log(
                f"resuming {self.out}: {len(done)} turn(s) complete"
                + (
                    f", turn {len(done)} from its last completed stage"
                    if len(done) < config.loops
                    else ""
                )
            )

    def _save_journal(self) -> None:
        _write_json(self.out / JOURNAL_FILE, self.journal)

    def _turn_journal(self, turn: int) -> dict[str, Any]:
        return cast(dict[str, Any], self.journal["turns"].setdefault(str(turn), {}))

    def baseline(self, name: str, policy: str | None = None) -> dict[str, Any]:
        """A baseline's evaluation (of ``policy``, by default the policy called ``name``), read
        back when an earlier run of this loop finished it."""
        done = self.journal["baselines"].get(name)
        if done is not None:
            result = cast(dict[str, Any], json.loads((self.out / done).read_text()))
            self.evals[name] = result
            return result
        result = self.evaluate(name, policy or name)
        self.journal["baselines"][name] = f"eval/{name}.json"
        self._save_journal()
        return result

    # ------------------------------------------------------------------ stages
    def drive(self, turn: int, policy: str) -> dict[str, Any]:
        cfg = self.config
        mode = "manual" if turn == 0 else "mixed"
        seed = TRAIN_SEEDS.start + (cfg.seed + turn * SEEDS_PER_TURN) % len(TRAIN_SEEDS)
        drive_cfg = replace(
            cfg.drive,
            mode=mode,
            policy=policy,
            seed=seed,
            out=str(self.out / "drives" / f"loop{turn}"),
            logging="full",
        )
        with tqdm(
            total=drive_cfg.steps * drive_cfg.cars,
            desc=f"loop {turn} drive ({mode})",
            unit="decision",
            leave=False,
            disable=not self.progress,
        ) as bar:
            summary = drive_batches(
                drive_cfg, ray=self.ray, progress=lambda done, *_: bar.update(done - bar.n)
            )
        if summary.interrupted:
            raise KeyboardInterrupt
        return summary.as_dict()

    def mine(self, turn: int) -> tuple[ds.DatasetVersion, list[dict[str, Any]], dict[str, Any]]:
        cfg = self.config
        hazards = mine_entries(
            self.store_path, HAZARD_TRIGGERS, cfg.hazard_window_s, cfg.sample_normal, cfg.seed
        )
        takeovers = mine_entries(
            self.store_path, TAKEOVER_TRIGGERS, cfg.takeover_window_s, 0.0, cfg.seed
        )
        # with auto-labels every frame has a target, the network's own too (DAgger); with the
        # logged controls only what a person drove does (HG-DAgger)
        sources = label_sources(cfg.train.labels)
        seen: set[tuple[str, float, float]] = set()
        entries: list[dict[str, Any]] = []
        dropped: Counter[str] = Counter()
        for e in hazards.entries + takeovers.entries:
            key = (e["clip_id"], e["t0_s"], e["t1_s"])
            if key in seen:
                continue
            seen.add(key)
            if e["label_source"] in sources:
                entries.append(e)
            else:
                dropped[e["label_source"]] += 1
        if not entries:
            raise DojoConfigError(
                f"Loop {turn} mined no window with a label; drive longer (drive_minutes={cfg.drive.minutes:g}) "
                f"or with more cars (cars={cfg.drive.cars})."
            )
        entries.sort(key=lambda e: (e["drive_id"], e["t0_s"], e["clip_id"]))
        recipe = {
            "command": f"dojo loop --out {self.out} (turn {turn})",
            "triggers": hazards.triggers + takeovers.triggers,
            "parts": [
                {
                    "triggers": m.triggers,
                    "window_s": list(m.window_s),
                    "params": m.params,
                    "sql": m.sql,
                }
                for m in (hazards, takeovers)
            ],
            "sample_normal": hazards.sample_normal,
            "label_sources": list(sources),
            "seed": cfg.seed,
        }
        mining = {
            "moments": {**hazards.moments, **takeovers.moments},
            "dropped_no_video": {**hazards.dropped_no_video, **takeovers.dropped_no_video},
            "dropped_network_driven": dict(dropped),
        }
        version = ds.save_dataset(
            self.store_path,
            DATASET,
            entries,
            recipe=recipe,
            mining=mining,
            val_share=cfg.val_share,
            seed=cfg.seed,
        )
        return version, entries, mining

    def train(self, turn: int, ref: str, deployed: str) -> dict[str, Any]:
        cfg = self.config
        init = warm_start_from(cfg.train.net, deployed) if cfg.warm_start else None
        run = self.out / "runs" / f"loop{turn}"
        # an interrupted run continues from its last checkpoint; one stopped before its first starts again
        resume = (run / CHECKPOINT_FILE).exists()
        if run.exists() and not resume:
            shutil.rmtree(run)
        tc = replace(  # the loop's train settings; the data, folder and start are this turn's
            cfg.train,
            dataset=ref,
            store=str(self.store_path),
            out=str(run),
            seed=cfg.seed + turn,
            checkpoint_every=max(cfg.train.steps // 4, 1),
            val_every=cfg.train.steps,
            init_from=init,
            resume=resume,
            progress=self.progress,
        )
        return train(tc)

    def evaluate(self, name: str, policy: str, seed: int | None = None) -> dict[str, Any]:
        """Evaluate ``policy`` on the suite from held-out ``seed`` (default: the suite's first,
        where the baselines are), saved as ``eval/NAME.json``."""
        cfg = self.config
        with tqdm(
            total=cfg.eval.decisions,
            desc=f"eval {name}",
            unit="decision",
            leave=False,
            disable=not self.progress,
        ) as bar:

            def tick(done: int, planned: int) -> None:
                bar.total = planned
                bar.update(done - bar.n)

            result = evaluate(
                policy,
                cfg.eval.suite,
                cfg.eval.decisions,
                cfg.eval.cars,
                seed=seed,
                suites_file=cfg.eval.suites_file,
                progress=tick,
                ray=self.ray,
            )
        folder = self.out / "eval"
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / f"{name}.json", result)  # whole or absent: the journal points at it
        self.evals[name] = result
        return result

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        cfg = self.config
        start = time.perf_counter()
        budget_s = cfg.budget_minutes * 60.0
        self.out.mkdir(parents=True, exist_ok=True)
        if not (self.out / CONFIG_FILE).exists():
            _write_json(self.out / CONFIG_FILE, cfg.to_dict())
        self.log(f"baselines on suite {cfg.eval.suite} ({cfg.eval.decisions:,} decisions each)")
        naive = self.baseline("naive")
        expert = self.baseline("expert")
        self.log(f"  naive  {nines_words(naive)}\n  expert {nines_words(expert)}")
        # the deployed model and the turn that promoted it (None: deployed before turn 0); its
        # evaluations are fresh every turn and at the end, never carried over
        deployed: dict[str, Any] = {"model": "naive", "loop": None}
        if cfg.start_policy != "naive":  # a team's current network, deployed before turn 0
            first = self.baseline("start", cfg.start_policy)
            self.log(f"  start  {nines_words(first)} ({cfg.start_policy})")
            deployed = {"model": cfg.start_policy, "loop": None}
        rows: list[dict[str, Any]] = []
        stopped: str | None = None
        slowest_s = 0.0
        for turn in range(cfg.loops):
            journal = self._turn_journal(turn)
            done = journal.get("row")
            if done is not None:  # finished before a resume: its row stands as it was
                if done["promoted"]:
                    deployed = {"model": done["candidate"], "loop": turn}
                slowest_s = max(slowest_s, float(done["wall_s"]))
                rows.append(done)
                self.log(format_row(done, header=turn == 0))
                continue
            elapsed = time.perf_counter() - start
            if len(rows) > 0 and elapsed + slowest_s > budget_s:
                stopped = (
                    f"budget: {elapsed / 60:.1f} of {cfg.budget_minutes:g} min spent and a turn takes "
                    f"up to {slowest_s / 60:.1f} min; stopped before loop {turn}"
                )
                self.log(stopped)
                break
            t0 = time.perf_counter()
            row = self.turn(turn, deployed)
            if row["promoted"]:
                deployed = {"model": row["candidate"], "loop": turn}
            row["deployed"] = deployed["model"]
            row["wall_s"] = time.perf_counter() - t0 + row.pop("resumed_s", 0.0)
            slowest_s = max(slowest_s, row["wall_s"])
            rows.append(row)
            self._turn_journal(turn)["row"] = _plain(row)
            self._save_journal()
            self.log(format_row(row, header=turn == 0))
        final = self.final_eval(deployed)
        result = {
            "config": cfg.to_dict(),
            "suite": cfg.eval.suite,
            "loops": rows,
            "naive": _eval_summary(naive),
            "expert": _eval_summary(expert),
            "naive_nines": naive["nines"],
            "naive_nines_low": naive["nines_low"],
            "naive_nines_high": naive["nines_high"],
            "expert_nines": expert["nines"],
            "expert_nines_low": expert["nines_low"],
            "expert_nines_high": expert["nines_high"],
            "expert_nines_is_bound": expert["nines_is_bound"],
            "deployed": {
                "model": deployed["model"],
                "loop": deployed["loop"],
                **_eval_summary(final),
            },
            "start": {"model": cfg.start_policy, **_eval_summary(self.evals.get("start", naive))},
            "stopped_early": stopped,
            "wall_s": time.perf_counter() - start,
        }
        result["versus_naive"] = versus(final, naive)
        result["versus_expert"] = versus(final, expert)
        (self.out / RESULT_FILE).write_text(json.dumps(result, indent=1, default=str))
        return result

    def _stage(self, turn: int, name: str, work: Callable[[], Any]) -> Any:
        """Stage ``name`` of ``turn``: its journaled result when an earlier run finished it, else run it."""
        journal = self._turn_journal(turn)
        if name in journal:
            return journal[name]
        t = time.perf_counter()
        value = _plain(work())
        journal[name] = value
        journal.setdefault("stage_s", {})[f"{name}_s"] = time.perf_counter() - t
        self._save_journal()
        return value

    def _drive_afresh(self, turn: int, policy: str) -> dict[str, Any]:
        folder = self.out / "drives" / f"loop{turn}"
        if folder.exists():  # logs of a drive cut short: drive the turn again from its start
            shutil.rmtree(folder)
        return self.drive(turn, policy)

    def _ingest(self, turn: int) -> dict[str, Any]:
        summary = ingest(
            [self.out / "drives" / f"loop{turn}"], self.store_path, ray=self.ray
        )  # idempotent: safe to repeat
        if summary.files_quarantined:
            self.log(
                f"loop {turn}: {summary.files_quarantined} drive log(s) quarantined: {summary.quarantined}"
            )
        return {
            "files_ingested": summary.files_ingested,
            "files_quarantined": summary.files_quarantined,
            "quarantined": summary.quarantined,
        }

    def _autolabel(self, turn: int) -> dict[str, Any]:
        """Label every frame of the store's drives not yet labelled (this turn's): the teacher's
        action from what the rig showed, with a second of hindsight."""
        from dojo.data.autolabel import autolabel
        from dojo.data.autolabel.visibility import scene_visibility

        summary = autolabel(self.store_path, scene_visibility, ray=self.ray).as_dict()
        keys = ("drives_labelled", "frames", "frames_labelled", "frames_network_driven_labelled")
        return {k: summary[k] for k in keys if k in summary}

    def _mine(self, turn: int) -> dict[str, Any]:
        version, entries, mining = self.mine(turn)
        by_trigger: Counter[str] = Counter(trig for e in entries for trig in e["triggers"])
        return {
            "dataset": version.ref,
            "windows": len(entries),
            "windows_by_trigger": dict(sorted(by_trigger.items())),
            "windows_by_label_source": dict(Counter(e["label_source"] for e in entries)),
            "dropped_network_driven": mining["dropped_network_driven"],
        }

    def _write_suite(self) -> dict[str, Any]:
        """The regression suite of every critical moment the store holds, rewritten each turn
        (the store only grows, so the suite does); its store is named relative to it."""
        from dojo.eval.suite import suite_from_store, write_suite

        found = suite_from_store(self.store_path)
        write_suite(replace(found, store="store"), self.out / SUITE_FILE)
        return {"file": SUITE_FILE, "moments": len(found.moments)}

    def _suite_eval(self, name: str, policy: str) -> str:
        from dojo.eval.suite import evaluate_suite, load_suite

        result = evaluate_suite(policy, load_suite(self.out / SUITE_FILE))
        self.evals[name] = result
        _write_json(self.out / "eval" / f"{name}.json", result)
        return f"eval/{name}.json"

    def turn_seed(self, turn: int) -> int:
        """The first held-out seed of turn ``turn``'s evaluations: fresh every turn, past the
        baselines' seeds and every earlier turn's, wrapping inside the suite."""
        suite = get_suite(self.config.eval.suite, self.config.eval.suites_file)
        span = max(int(f["drives"]) for f in self.evals["naive"]["families"].values())
        return suite.seed_lo + ((turn + 1) * span) % (suite.seed_hi - suite.seed_lo)

    def _evaluate_at(self, name: str, policy: str, seed: int) -> str:
        self.evaluate(name, policy, seed)
        return f"eval/{name}.json"

    def _eval_result(self, name: str, file: str) -> dict[str, Any]:
        result = self.evals.get(name) or json.loads((self.out / file).read_text())
        self.evals[name] = result
        return cast(dict[str, Any], result)

    def final_eval(self, deployed: dict[str, Any]) -> dict[str, Any]:
        """The deployed model on the baselines' seeds, evaluated afresh (not the evaluation that
        promoted it, its luckiest draw), so it compares with naive and the expert seed for seed."""
        if deployed["model"] == "naive":
            return self.evals["naive"]
        if deployed["loop"] is None:  # the team's start policy, evaluated there already
            return self.evals["start"]
        return self.baseline(f"final-loop{deployed['loop']}", deployed["model"])

    def turn(self, turn: int, deployed: dict[str, Any]) -> dict[str, Any]:
        journal = self._turn_journal(turn)
        resumed_s = sum(
            journal.get("stage_s", {}).values()
        )  # time the stages done before a resume took
        drive = self._stage(turn, "drive", lambda: self._drive_afresh(turn, deployed["model"]))
        self._stage(turn, "ingest", lambda: self._ingest(turn))
        if self.config.train.labels == "autolabel":
            self._stage(turn, "autolabel", lambda: self._autolabel(turn))
        mined = self._stage(turn, "mine", lambda: self._mine(turn))
        trained = self._stage(
            turn, "train", lambda: self.train(turn, mined["dataset"], deployed["model"])
        )
        candidate = candidate_policy(self.config.train.net, Path(trained["run"]))
        # the candidate and the deployed model on the same fresh held-out seeds: paired, and the
        # deployed model's count is a new draw rather than the one that promoted it
        seed = self.turn_seed(turn)
        name, incumbent_name = f"loop{turn}", f"loop{turn}-deployed"
        eval_file = self._stage(turn, "eval", lambda: self._evaluate_at(name, candidate, seed))
        inc_file = self._stage(
            turn,
            "eval_deployed",
            lambda: self._evaluate_at(incumbent_name, deployed["model"], seed),
        )
        # the fleet's critical moments so far (this turn's drives included), driven by both
        self._stage(turn, "suite", self._write_suite)
        cand_moments = self._stage(
            turn, "suite_eval", lambda: self._suite_eval(f"{name}-moments", candidate)
        )
        dep_moments = self._stage(
            turn,
            "suite_eval_deployed",
            lambda: self._suite_eval(f"{incumbent_name}-moments", deployed["model"]),
        )
        result = self._eval_result(name, eval_file)
        incumbent = self._eval_result(incumbent_name, inc_file)
        times = dict(journal["stage_s"])
        decision = gate(result, incumbent, self.config.alpha, paired=True)
        suite = suite_fixed_and_broken(
            self._eval_result(f"{name}-moments", cand_moments),
            self._eval_result(f"{incumbent_name}-moments", dep_moments),
            self.config.moment_rule,
        )
        promoted = decision.promoted and suite["verdict"] != "refused"
        reasons = [] if decision.promoted else [decision.reason]
        if suite["verdict"] != "passed":
            reasons.append(
                f"fleet moments {suite['verdict']}: broke {suite['broken']}, fixed "
                f"{suite['fixed']} of {suite['paired']} (rule {suite['rule']})"
            )
        return {
            "loop": turn,
            "drive": {
                k: drive[k]
                for k in (
                    "mode",
                    "policy",
                    "cars",
                    "decisions",
                    "critical_interventions",
                    "noncritical_interventions",
                    "shadow_disagreements",
                    "collisions",
                )
            },
            "dataset": mined["dataset"],
            "windows": mined["windows"],
            "windows_by_trigger": mined["windows_by_trigger"],
            "windows_by_label_source": mined["windows_by_label_source"],
            "dropped_network_driven": mined["dropped_network_driven"],
            "resumed_s": resumed_s,
            "train_loss": train_loss(trained),
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
            "families": {
                f: {
                    k: r[k]
                    for k in (
                        "decisions",
                        "critical_interventions",
                        "nines",
                        "nines_low",
                        "nines_high",
                    )
                }
                for f, r in result["families"].items()
            },
            "eval_seed": seed,
            "against_eval": _eval_summary(incumbent),
            "moments": fixed_and_broken(result, incumbent),
            "suite_moments": suite,
            "reasons": dict(result.get("reasons") or {}),
            "promoted": promoted,
            "gate": "; ".join(reasons) or "passed",
            "against": deployed["model"],
            "stage_s": times,
        }


def run_loop(
    config: LoopConfig, log: Log | None = None, progress: bool = True, ray: str | None = None
) -> dict[str, Any]:
    """Run ``config.loops`` turns of the flywheel; the rows, the baselines and the deployed model.

    Writes under ``config.out``: ``drives/loopK/`` (MCAP logs), ``store/`` (clip store and the
    ``loop`` dataset's versions), ``runs/loopK/`` (training runs), ``eval/*.json`` and
    ``loop.json`` (the result). ``log`` receives the printed lines (default: stderr). ``ray``:
    a Ray cluster's address; the drives, evaluations, ingest and auto-labeling run there as
    tasks (training stays here, or on torchrun's nodes), with the same result.
    """
    if not isinstance(config, LoopConfig):
        raise DojoConfigError(f"config must be a LoopConfig; got {type(config).__name__}.")
    return _Flywheel(config, log or _stderr, progress, ray=ray).run()


def resume_loop(
    out: str | Path, log: Log | None = None, progress: bool = True, ray: str | None = None
) -> dict[str, Any]:
    """Continue the loop in ``out`` (stopped, killed or crashed) from its last completed stage.

    The settings are those it was started with (``out/config.json``); finished turns keep their
    rows, and the turn that was cut short goes on from the stage after its last finished one
    (a training run from its last checkpoint). The result is what an uninterrupted run gives.
    """
    config = load_config(out)
    if Path(config.out).resolve() != Path(out).resolve():
        config = replace(config, out=str(out))  # the folder was moved
    return _Flywheel(config, log or _stderr, progress, resume=True, ray=ray).run()


__all__ = [
    "DATASET",
    "JOURNAL_FILE",
    "RESULT_FILE",
    "format_row",
    "load_config",
    "resume_loop",
    "run_loop",
]
