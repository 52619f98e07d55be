"""Mining: from trigger moments to the clip windows of a dataset.

>>> mine("store", ["critical_intervention", "near_miss"], window=(-5.0, 2.0), out="hard_cases")

For every moment ``t`` a trigger finds on a drive, the window ``[t + before, t + after]`` is cut
by that drive's clips: one piece per clip it overlaps, reduced to the camera frames of that clip
inside the window (``t0_s``/``t1_s`` are then the first and last of those frames). A moment whose
window holds no camera frame at all (in a trigger-only log, video exists only where the car
uploaded it) is counted as ``dropped_no_video`` and reported, not silently lost. Pieces of the
same clip that share or touch a frame merge into one window, which keeps the names of all the
triggers that made it.

Normal driving (``sample_normal``): each drive's timeline is cut into slots of the window's
length ``L = after - before``, at multiples of ``L`` from ``t = 0``. A slot is a candidate when
it holds camera frames and no trigger window touches it; each candidate is kept with
probability ``sample_normal``, drawn from a hash of ``(seed, drive_id, slot)``. So
``sample_normal`` is the expected share of the drive's untriggered video slots that is added,
about that share of its video time no trigger window comes near; the draw for a drive never
changes when other drives are added to the store, so datasets grow by additions. Kept slots are
cut by clips like trigger windows, under the pseudo-trigger ``normal``.

Every window says where its action labels come from (``label_source``): the driver in control
for most of its telemetry steps, ``human``, ``safety_driver`` or ``network``. The training loop
learns from human and safety-driver windows (HG-DAgger); a ``network`` window is what the
network did itself, useful for perception labels but not as an action target.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shlex
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from dojo.data import datasets as ds
from dojo.data.catalog import connect
from dojo.data.store import Store
from dojo.data.triggers import NORMAL, Trigger, registry, run_trigger
from dojo.errors import DojoConfigError

EPS_S = 1e-6  # float slack when comparing drive times [s]
# ties between drivers go to the one whose labels the loop can use, the safety driver first
_LABEL_ORDER = ("safety_driver", "human", "network")
_NUMBER = r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))"
_WINDOW = re.compile(rf"\s*{_NUMBER}\s*s?\s*:\s*{_NUMBER}\s*s?\s*")


def parse_window(text: str | Sequence[float]) -> tuple[float, float]:
    """``"-5s:+2s"`` → ``(-5.0, 2.0)``: seconds before and after a moment (a pair passes through)."""
    if isinstance(text, str):
        m = _WINDOW.fullmatch(text)
        if m is None:
            raise DojoConfigError(
                f"window={text!r} must look like BEFORE:AFTER in seconds, e.g. -5s:+2s."
            )
        before, after = float(m.group(1)), float(m.group(2))
    else:
        try:
            before, after = (float(x) for x in text)
        except (TypeError, ValueError) as e:
            raise DojoConfigError(
                f"window={text!r} must be two numbers (before, after) in seconds."
            ) from e
    if not (math.isfinite(before) and math.isfinite(after)):
        raise DojoConfigError(f"window={text!r} must be finite.")
    if after <= before:
        raise DojoConfigError(
            f"window={text!r} ends at or before it starts; give BEFORE:AFTER with AFTER later, e.g. -5s:+2s."
        )
    return before, after


def _trigger_names(triggers: str | Iterable[str], known: Mapping[str, Trigger]) -> list[str]:
    items = [triggers] if isinstance(triggers, str) else list(triggers)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise DojoConfigError(f"trigger={item!r} must be a trigger name.")
        for part in item.split(","):
            name = part.strip()
            if name not in known:
                raise DojoConfigError(
                    f"Unknown trigger {name!r}; known triggers: {', '.join(sorted(known))}."
                )
            if name not in names:
                names.append(name)
    if not names:
        raise DojoConfigError(f"triggers={triggers!r} names no trigger; give at least one.")
    return names


def _share(name: str, value: float, top_open: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0.0 or value > 1.0 or (top_open and value >= 1.0):
        bound = "[0, 1)" if top_open else "[0, 1]"
        raise DojoConfigError(f"{name}={value!r} must be a share in {bound}.")
    return float(value)


def _unit(*key: object) -> float:
    """A uniform number in [0, 1) that depends only on ``key``: a draw that never moves."""
    digest = hashlib.sha256(":".join(str(k) for k in key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass
class Mined:
    """What mining found, before it becomes a dataset version."""

    entries: list[dict[str, Any]]
    triggers: list[str]
    params: dict[str, dict[str, Any]]
    sql: dict[str, str]  # the SQL of every trigger mined, so a dataset says how it was made
    window_s: tuple[float, float]
    sample_normal: float
    seed: int
    moments: dict[str, int] = field(default_factory=dict)  # per trigger
    dropped_no_video: dict[str, int] = field(default_factory=dict)  # per trigger
    normal_slots: dict[str, int] = field(default_factory=dict)  # candidates, kept


@dataclass
class _Clip:
    clip_id: str
    drive_id: str
    t0_s: float
    t1_s: float
    content_hash: str
    family: str
    times: np.ndarray  # (F,) drive times of the clip's frames, sorted [s]


def _load_clips(con: Any) -> dict[str, list[_Clip]]:
    """Every clip with its frame times, by drive, in time order."""
    clips = con.execute(
        "SELECT clip_id, drive_id, t0_s, t1_s, content_hash, family FROM clips ORDER BY drive_id, t0_s"
    ).fetchall()
    frames = con.execute(
        "SELECT clip_id, t_s FROM frames GROUP BY clip_id, frame, t_s ORDER BY clip_id, t_s"
    ).fetchnumpy()
    ids = np.asarray(frames["clip_id"], dtype=object)
    times = np.asarray(frames["t_s"], dtype=np.float64)
    by_clip: dict[str, np.ndarray] = {}
    if len(ids):
        cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(ids)], strict=True):
            by_clip[str(ids[lo])] = times[lo:hi]
    out: dict[str, list[_Clip]] = defaultdict(list)
    for clip_id, drive_id, t0, t1, content_hash, family in clips:
        out[drive_id].append(
            _Clip(
                clip_id,
                drive_id,
                float(t0),
                float(t1),
                content_hash,
                family,
                by_clip.get(clip_id, np.empty(0)),
            )
        )
    return out


def _frame_range(clip: _Clip, lo: float, hi: float, open_end: bool = False) -> tuple[int, int]:
    """Indices [i0, i1) of the clip's frames in [lo, hi] (or [lo, hi) with ``open_end``)."""
    i0 = int(np.searchsorted(clip.times, lo - EPS_S, "left"))
    i1 = int(
        np.searchsorted(
            clip.times, hi - EPS_S if open_end else hi + EPS_S, "left" if open_end else "right"
        )
    )
    return i0, max(i0, i1)


def _normal_slots(
    drive_id: str,
    clips: list[_Clip],
    windows: list[tuple[float, float]],
    length: float,
    share: float,
    seed: int,
) -> tuple[int, list[int]]:
    """(candidate slots, kept slot numbers) of one drive; see the module docstring."""
    with_video: set[int] = set()
    for clip in clips:
        if len(clip.times):
            with_video.update(np.floor((clip.times + EPS_S) / length).astype(np.int64).tolist())
    for w0, w1 in windows:
        with_video.difference_update(
            range(math.floor((w0 + EPS_S) / length), math.floor((w1 + EPS_S) / length) + 1)
        )
    kept = sorted(k for k in with_video if _unit(seed, drive_id, k) < share)
    return len(with_video), kept


def _merge(pieces: list[tuple[int, int, set[str]]]) -> list[tuple[int, int, set[str]]]:
    """Frame ranges of one clip, merged where they share or touch a frame."""
    out: list[tuple[int, int, set[str]]] = []
    for i0, i1, names in sorted(pieces, key=lambda p: (p[0], p[1])):
        if out and i0 <= out[-1][1]:
            a0, a1, have = out[-1]
            out[-1] = (a0, max(a1, i1), have | names)
        else:
            out.append((i0, i1, set(names)))
    return out


def _label_sources(con: Any, entries: list[dict[str, Any]]) -> None:
    """Set each entry's ``label_source``, the driver in control for most of its telemetry steps,
    and ``drivers``, the steps of each (a critical intervention's window is mostly the network
    before the takeover; the loop can pick the safety driver's steps from it)."""
    if not entries:
        return
    table = pa.table(
        {
            "i": pa.array(range(len(entries)), pa.int64()),
            "drive_id": pa.array([e["drive_id"] for e in entries], pa.string()),
            "t0_s": pa.array([e["t0_s"] for e in entries], pa.float64()),
            "t1_s": pa.array([e["t1_s"] for e in entries], pa.float64()),
        }
    )
    con.register("_mined_windows", table)
    try:
        rows = con.execute(
            "SELECT w.i, t.driver, count(*) FROM _mined_windows w JOIN telemetry t "
            "ON t.drive_id = w.drive_id AND t.t_s >= w.t0_s - $eps AND t.t_s <= w.t1_s + $eps "
            "GROUP BY ALL",
            {"eps": EPS_S},
        ).fetchall()
    finally:
        con.unregister("_mined_windows")
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for i, driver, n in rows:
        counts[int(i)][str(driver)] = int(n)
    rank = {d: k for k, d in enumerate(_LABEL_ORDER)}
    for i, entry in enumerate(entries):
        seen = counts.get(i)
        entry["label_source"] = (
            min(seen, key=lambda d: (-seen[d], rank.get(d, len(rank)), d)) if seen else "unknown"
        )
        entry["drivers"] = dict(sorted((seen or {}).items()))


def mine_entries(
    store: Store | str | os.PathLike[str],
    triggers: str | Iterable[str],
    window: str | Sequence[float] = (-5.0, 2.0),
    sample_normal: float = 0.1,
    seed: int = 0,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    user_triggers_file: str | os.PathLike[str] | None = None,
) -> Mined:
    """The windows ``mine`` would store (no split yet), and what was found and dropped."""
    known = registry(user_triggers_file)
    names = _trigger_names(triggers, known)
    before, after = parse_window(window)
    share = _share("sample_normal", sample_normal)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DojoConfigError(f"seed={seed!r} must be an integer.")
    given = dict(params or {})
    stray = sorted(set(given) - set(names))
    if stray:
        raise DojoConfigError(
            f"Parameters were given for {', '.join(map(repr, stray))}, which is not mined "
            f"(mined: {', '.join(names)})."
        )
    resolved = {n: known[n].resolve(given.get(n)) for n in names}
    st = store if isinstance(store, Store) else Store(store)

    con = connect(st)
    try:
        clips = _load_clips(con)
        fps = dict(con.execute("SELECT drive_id, fps FROM drives").fetchall())
        moments = {n: run_trigger(con, known[n], **resolved[n]) for n in names}
        # pieces[clip_id] = [(i0, i1, {trigger})]; windows[drive] = raw trigger windows
        pieces: dict[str, list[tuple[int, int, set[str]]]] = defaultdict(list)
        windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
        dropped = dict.fromkeys(names, 0)
        for name in names:
            for drive_id, t in moments[name]:
                lo, hi = t + before, t + after
                windows[drive_id].append((lo, hi))
                found = False
                for clip in clips.get(drive_id, ()):
                    if clip.t0_s > hi + EPS_S or clip.t1_s < lo - EPS_S:
                        continue
                    i0, i1 = _frame_range(clip, lo, hi)
                    if i1 > i0:
                        pieces[clip.clip_id].append((i0, i1, {name}))
                        found = True
                dropped[name] += not found

        by_id = {c.clip_id: c for cs in clips.values() for c in cs}
        spans: list[tuple[_Clip, int, int, list[str]]] = [
            (by_id[cid], i0, i1, sorted(used))
            for cid, ps in pieces.items()
            for i0, i1, used in _merge(ps)
        ]
        candidates = kept_slots = 0
        if share > 0.0:
            length = after - before
            for drive_id, cs in clips.items():
                n, kept = _normal_slots(
                    drive_id, cs, windows.get(drive_id, []), length, share, seed
                )
                candidates += n
                kept_slots += len(kept)
                for k in kept:
                    for clip in cs:
                        i0, i1 = _frame_range(clip, k * length, (k + 1) * length, open_end=True)
                        if i1 > i0:
                            spans.append((clip, i0, i1, [NORMAL]))

        entries: list[dict[str, Any]] = []
        for clip, i0, i1, used in spans:
            rate = fps.get(clip.drive_id) or 0.0
            entries.append(
                {
                    "clip_id": clip.clip_id,
                    "drive_id": clip.drive_id,
                    "t0_s": round(float(clip.times[i0]), 6),
                    "t1_s": round(float(clip.times[i1 - 1]), 6),
                    "frames": i1 - i0,
                    "seconds": round((i1 - i0) / rate, 6) if rate > 0 else 0.0,
                    "triggers": used,
                    "content_hash": clip.content_hash,
                    "family": clip.family,
                }
            )
        entries.sort(key=lambda e: (e["drive_id"], e["t0_s"], e["clip_id"]))
        _label_sources(con, entries)
    finally:
        con.close()
    return Mined(
        entries=entries,
        triggers=names,
        params=resolved,
        sql={n: known[n].sql.strip() for n in names},
        window_s=(before, after),
        sample_normal=share,
        seed=seed,
        moments={n: len(moments[n]) for n in names},
        dropped_no_video=dropped,
        normal_slots={"candidates": candidates, "kept": kept_slots},
    )


def _seconds(x: float) -> str:
    return f"{x:+g}s"


def mining_command(
    store: Store | str | os.PathLike[str],
    triggers: Sequence[str],
    window: tuple[float, float],
    sample_normal: float,
    seed: int,
    out: str,
    val_share: float,
    params: Mapping[str, Mapping[str, Any]],
    user_triggers_file: str | os.PathLike[str] | None,
) -> str:
    """The ``dojo mine`` command line that makes the same dataset."""
    url = store.url if isinstance(store, Store) else os.fspath(store)
    words = [
        "dojo",
        "mine",
        url,
        "--trigger",
        ",".join(triggers),
        "--window",
        f"{_seconds(window[0])}:{_seconds(window[1])}",
        "--sample-normal",
        f"{sample_normal:g}",
        "--seed",
        str(seed),
        "--val-share",
        f"{val_share:g}",
    ]
    for name in triggers:
        for key, value in sorted(params.get(name, {}).items()):
            words += ["--param", f"{name}.{key}={value}"]
    if user_triggers_file is not None:
        words += ["--triggers-file", os.fspath(user_triggers_file)]
    words += ["--out", out]
    return shlex.join(words)


def mine(
    store: Store | str | os.PathLike[str],
    triggers: str | Iterable[str],
    window: str | Sequence[float] = (-5.0, 2.0),
    sample_normal: float = 0.1,
    seed: int = 0,
    *,
    out: str,
    val_share: float = 0.2,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    user_triggers_file: str | os.PathLike[str] | None = None,
    command: str | None = None,
) -> ds.DatasetVersion:
    """Mine ``triggers`` on the store and save the windows as dataset ``out`` (a new version,
    or the latest one unchanged when its windows are the same); ``command`` is recorded as the
    command that made it (by default the equivalent ``dojo mine`` line)."""
    ds.check_name(out)
    split_share = _share("val_share", val_share, top_open=True)
    st = store if isinstance(store, Store) else Store(store)
    mined = mine_entries(st, triggers, window, sample_normal, seed, params, user_triggers_file)
    if command is None:
        command = mining_command(
            st,
            mined.triggers,
            mined.window_s,
            mined.sample_normal,
            seed,
            out,
            split_share,
            {n: dict((params or {}).get(n, {})) for n in mined.triggers},
            user_triggers_file,
        )
    recipe = {
        "triggers": mined.triggers,
        "params": mined.params,
        "sql": mined.sql,
        "window_s": list(mined.window_s),
        "sample_normal": mined.sample_normal,
        "seed": seed,
        "user_triggers_file": None if user_triggers_file is None else os.fspath(user_triggers_file),
        "command": command,
    }
    mining = {
        "moments": mined.moments,
        "dropped_no_video": mined.dropped_no_video,
        "normal_slots": mined.normal_slots,
    }
    return ds.save_dataset(
        st, out, mined.entries, recipe=recipe, mining=mining, val_share=split_share, seed=seed
    )


__all__ = ["Mined", "mine", "mine_entries", "mining_command", "parse_window"]
