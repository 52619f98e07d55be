"""Versioned datasets: immutable manifests of clip windows, split by drive, with a dataset card.

Layout in the clip store::

    ROOT/datasets/<name>/v<N>/card.md          statistics, for people (written first)
    ROOT/datasets/<name>/v<N>/manifest.json    the dataset, for programs (written last)

A version exists once its ``manifest.json`` does, and is never written again: the version
folder is claimed before anything is written into it (an exclusive ``mkdir`` on a local disk),
so two writers never share a number, and a folder left without a manifest by a crash is skipped,
never reused. Saving windows identical to the latest version's (same ``content_hash``, the
SHA-256 of the canonical JSON of the entries, splits included) returns that version unchanged,
so mining twice is idempotent; the recipe that made the same windows is then not recorded again.

The split is by drive, so no drive is in both train and val: a drive goes to val when a hash of
``(seed, drive_id)`` falls under ``val_share``. It depends on nothing else, so a drive stays on
its side as the dataset grows; with few drives val may well be empty (the card says so).

>>> ds = load_dataset("store", "hard_cases@latest")
>>> train = ds.split("train")
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import posixpath
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dojo
from dojo.data.dataset_card import SPLITS, card, markdown_table, statistics, totals
from dojo.data.store import Store
from dojo.errors import DojoConfigError

FORMAT = "dojo-dataset"
FORMAT_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_REF = re.compile(r"(?P<name>[^@]+)(?:@(?:v?(?P<version>\d{1,9})|(?P<latest>latest)))?")
_ENTRY_KEYS = (
    "clip_id",
    "drive_id",
    "t0_s",
    "t1_s",
    "frames",
    "seconds",
    "triggers",
    "content_hash",
    "family",
    "label_source",
)


def check_name(name: object) -> str:
    """``name`` if it is a safe dataset name (a single path component), else DojoConfigError."""
    if (
        not isinstance(name, str)
        or not _NAME.fullmatch(name)
        or name.startswith(".")
        or ".." in name
    ):
        raise DojoConfigError(
            f"Dataset name {name!r} must be 1-100 of A-Z a-z 0-9 _ . - , not start with '.' "
            "and not contain '..'."
        )
    return name


def parse_ref(ref: object) -> tuple[str, int | None]:
    """``"name"``, ``"name@latest"`` → (name, None); ``"name@v2"`` or ``"name@2"`` → (name, 2)."""
    m = _REF.fullmatch(ref) if isinstance(ref, str) else None
    if m is None:
        raise DojoConfigError(f"Dataset {ref!r} must be NAME, NAME@vN or NAME@latest.")
    version = m.group("version")
    if version is not None and int(version) < 1:
        raise DojoConfigError(f"Dataset {ref!r} names version 0; versions start at v1.")
    return check_name(m.group("name")), None if version is None else int(version)


def entries_hash(entries: list[dict[str, Any]]) -> str:
    """SHA-256 of the entries' canonical JSON (sorted keys, no spaces): equal content, equal hash."""
    text = json.dumps(
        entries, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


def split_of(drive_id: str, seed: int, val_share: float) -> str:
    """``val`` when the hash of (seed, drive_id) falls under ``val_share``, else ``train``."""
    digest = hashlib.sha256(f"{seed}:{drive_id}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2.0**64 < val_share else "train"


@dataclass(frozen=True)
class DatasetVersion:
    """One saved version, summarised; ``created`` says whether this call wrote it."""

    name: str
    version: int
    created_at: str
    content_hash: str
    entries: int
    frames: int
    hours: float
    drives: int
    triggers: tuple[str, ...]
    path: str  # the version's folder in the store
    created: bool = False
    moments: dict[str, int] = field(default_factory=dict)  # per trigger, as mined
    dropped_no_video: dict[str, int] = field(default_factory=dict)  # per trigger

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"


@dataclass
class Dataset:
    """A loaded version: its manifest and its windows (``entries``, each with ``split``)."""

    name: str
    version: int
    manifest: dict[str, Any]
    entries: list[dict[str, Any]]
    path: str

    def split(self, which: str) -> list[dict[str, Any]]:
        """The windows of ``train`` or ``val``."""
        if which not in SPLITS:
            raise DojoConfigError(f"split={which!r} must be one of {', '.join(SPLITS)}.")
        return [e for e in self.entries if e["split"] == which]

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    def summary(self) -> DatasetVersion:
        return _summary(self.manifest, self.path)


# ----------------------------------------------------------------------------------- store
def _store(store: Store | str | os.PathLike[str]) -> Store:
    return store if isinstance(store, Store) else Store(store)


def _version_dirs(st: Store, name: str) -> dict[int, bool]:
    """Every v<N> folder of dataset ``name`` → whether it holds a manifest (is a version)."""
    out: dict[int, bool] = {}
    base = st.path("datasets", name)
    if not st.fs.isdir(base):
        return out
    for p in st.fs.ls(base, detail=False):
        m = re.fullmatch(r"v(\d{1,9})", posixpath.basename(str(p).rstrip("/")))
        if m:
            out[int(m.group(1))] = bool(st.fs.exists(posixpath.join(str(p), "manifest.json")))
    return out


def _claim(st: Store, name: str, start: int) -> int:
    """Reserve the first free version number from ``start``: its folder is made, exclusively."""
    n = start
    while True:
        folder = st.path("datasets", name, f"v{n}")
        if st.local:
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            try:
                os.mkdir(folder)
                return n
            except FileExistsError:
                n += 1
                continue
        if not st.fs.exists(folder):  # an object store has no exclusive create; best effort
            st.fs.makedirs(folder, exist_ok=True)
            return n
        n += 1


def _read_manifest(st: Store, name: str, version: int) -> dict[str, Any]:
    path = st.path("datasets", name, f"v{version}", "manifest.json")
    try:
        with st.fs.open(path, "rb") as f:
            manifest = json.load(f)
    except FileNotFoundError as e:
        raise DojoConfigError(
            f"Dataset {name}@v{version} does not exist in store {st.url!r}."
        ) from e
    except (OSError, ValueError) as e:
        raise DojoConfigError(f"Dataset {name}@v{version} has an unreadable manifest ({e}).") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DojoConfigError(
            f"Dataset {name}@v{version} has a manifest that is not a Dojo dataset's."
        )
    entries = manifest.get("entries")
    if not isinstance(entries, list) or entries_hash(entries) != manifest.get("content_hash"):
        raise DojoConfigError(
            f"Dataset {name}@v{version} has entries that do not match its content_hash; "
            "the manifest was modified after it was written."
        )
    return manifest


def _summary(manifest: Mapping[str, Any], path: str) -> DatasetVersion:
    totals = manifest["totals"]
    return DatasetVersion(
        name=manifest["name"],
        version=int(manifest["version"]),
        created_at=manifest["created_at"],
        content_hash=manifest["content_hash"],
        entries=int(totals["windows"]),
        frames=int(totals["frames"]),
        hours=float(totals["hours"]),
        drives=int(totals["drives"]),
        triggers=tuple(manifest["recipe"]["triggers"]),
        path=path,
        moments=dict(manifest.get("mining", {}).get("moments", {})),
        dropped_no_video=dict(manifest.get("mining", {}).get("dropped_no_video", {})),
    )


def save_dataset(
    store: Store | str | os.PathLike[str],
    name: str,
    entries: list[dict[str, Any]],
    *,
    recipe: Mapping[str, Any],
    mining: Mapping[str, Any] | None = None,
    val_share: float = 0.2,
    seed: int = 0,
) -> DatasetVersion:
    """Save ``entries`` (mined windows, without ``split``) as the next version of ``name``, or
    return the latest version unchanged when it holds exactly the same windows."""
    check_name(name)
    st = _store(store)
    rows = []
    for e in entries:
        missing = [k for k in _ENTRY_KEYS if k not in e]
        if missing:
            raise DojoConfigError(f"Dataset entry {e!r} lacks {', '.join(missing)}.")
        rows.append({**e, "split": split_of(e["drive_id"], seed, val_share)})
    content_hash = entries_hash(rows)
    dirs = _version_dirs(st, name)
    existing = [v for v, has in dirs.items() if has]
    if existing:
        latest = max(existing)
        manifest = _read_manifest(st, name, latest)
        if manifest["content_hash"] == content_hash:
            return _summary(manifest, st.path("datasets", name, f"v{latest}"))
    version = _claim(st, name, max(dirs, default=0) + 1)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dojo_version": dojo.__version__,
        "store": st.root if st.local else st.url,
        "recipe": dict(recipe),
        "split": {
            "rule": "by drive: val when sha256(f'{seed}:{drive_id}')[:8] / 2**64 < val_share",
            "seed": seed,
            "val_share": val_share,
        },
        "mining": dict(mining or {}),
        "totals": statistics(rows),
        "content_hash": content_hash,
        "entries": rows,
    }
    folder = posixpath.join("datasets", name, f"v{version}")
    st.write_atomic(posixpath.join(folder, "card.md"), card(manifest).encode())
    st.write_atomic(
        posixpath.join(folder, "manifest.json"),
        json.dumps(manifest, indent=1, allow_nan=False).encode(),
    )
    return dataclasses.replace(_summary(manifest, st.path(folder)), created=True)


def _resolve(st: Store, ref: str) -> tuple[str, int]:
    name, version = parse_ref(ref)
    existing = sorted(v for v, has in _version_dirs(st, name).items() if has)
    if not existing:
        raise DojoConfigError(f"Dataset {name!r} does not exist in store {st.url!r}.")
    if version is None:
        return name, existing[-1]
    if version not in existing:
        have = ", ".join(f"v{v}" for v in existing)
        raise DojoConfigError(f"Dataset {ref!r} does not exist; {name} has versions {have}.")
    return name, version


def load_dataset(store: Store | str | os.PathLike[str], ref: str) -> Dataset:
    """The version ``ref`` names (``name``, ``name@latest``, ``name@vN``), checked against its hash."""
    st = _store(store)
    name, version = _resolve(st, ref)
    manifest = _read_manifest(st, name, version)
    return Dataset(
        name, version, manifest, manifest["entries"], st.path("datasets", name, f"v{version}")
    )


def list_datasets(store: Store | str | os.PathLike[str]) -> list[DatasetVersion]:
    """Every version of every dataset in the store, by name then version."""
    st = _store(store)
    out: list[DatasetVersion] = []
    base = st.path("datasets")
    if not st.fs.isdir(base):
        return out
    for p in sorted(st.fs.ls(base, detail=False)):
        name = posixpath.basename(str(p).rstrip("/"))
        try:
            check_name(name)
        except DojoConfigError:
            continue  # not a dataset folder of ours
        for version, has in sorted(_version_dirs(st, name).items()):
            if has:
                manifest = _read_manifest(st, name, version)
                out.append(_summary(manifest, st.path("datasets", name, f"v{version}")))
    return out


# ------------------------------------------------------------------------------------ diff
def _key(e: Mapping[str, Any]) -> tuple[str, float, float]:
    return (e["clip_id"], e["t0_s"], e["t1_s"])


def diff(store: Store | str | os.PathLike[str], a: str, b: str) -> dict[str, Any]:
    """What changed from dataset ``a`` to ``b``: windows (a clip and its time span) added,
    removed, or kept with other fields (triggers, split, label source, hash), and the
    totals per trigger on both sides."""
    st = _store(store)
    da, db = load_dataset(st, a), load_dataset(st, b)
    ea = {_key(e): e for e in da.entries}
    eb = {_key(e): e for e in db.entries}
    changed = []
    for k in sorted(ea.keys() & eb.keys()):
        fields = sorted(f for f in set(ea[k]) | set(eb[k]) if ea[k].get(f) != eb[k].get(f))
        if fields:
            changed.append(
                {
                    "clip_id": k[0],
                    "t0_s": k[1],
                    "t1_s": k[2],
                    "fields": fields,
                    "a": {f: ea[k].get(f) for f in fields},
                    "b": {f: eb[k].get(f) for f in fields},
                }
            )
    ta, tb = da.manifest["totals"]["per_trigger"], db.manifest["totals"]["per_trigger"]
    zero = totals([])
    per_trigger = {
        t: {
            "a": ta.get(t, zero),
            "b": tb.get(t, zero),
            "windows": tb.get(t, zero)["windows"] - ta.get(t, zero)["windows"],
            "frames": tb.get(t, zero)["frames"] - ta.get(t, zero)["frames"],
        }
        for t in sorted(set(ta) | set(tb))
    }
    return {
        "a": da.ref,
        "b": db.ref,
        "same": da.manifest["content_hash"] == db.manifest["content_hash"],
        "added": [eb[k] for k in sorted(eb.keys() - ea.keys())],
        "removed": [ea[k] for k in sorted(ea.keys() - eb.keys())],
        "changed": changed,
        "unchanged": len(ea.keys() & eb.keys()) - len(changed),
        "per_trigger": per_trigger,
        "totals": {"a": da.manifest["totals"], "b": db.manifest["totals"]},
    }


# ---------------------------------------------------------------------------- text output
def format_saved(v: DatasetVersion) -> str:
    """``dojo mine``'s report: the version made (or found unchanged), its size, what was dropped."""
    state = (
        "new version" if v.created else "unchanged: the latest version already holds these windows"
    )
    text = (
        f"{v.ref} ({state}): {v.entries} windows, {v.frames} frames, {v.hours:.4f} hours, "
        f"{v.drives} drives; {sum(v.moments.values())} moments "
        f"({', '.join(f'{k} {n}' for k, n in v.moments.items()) or 'none'})."
    )
    lost = {k: n for k, n in v.dropped_no_video.items() if n}
    if lost:
        text += (
            f" {sum(lost.values())} moments had no camera frames in their window and were dropped "
            f"({', '.join(f'{k} {n}' for k, n in lost.items())})."
        )
    return text + f"\nManifest: {posixpath.join(v.path, 'manifest.json')}"


def format_list(store: Store | str | os.PathLike[str]) -> str:
    """``dojo datasets list``: one line per version."""
    versions = list_datasets(store)
    if not versions:
        return "No datasets in this store; `dojo mine` makes one."
    rows = [
        [
            v.ref,
            v.created_at,
            v.entries,
            v.frames,
            f"{v.hours:.3f}",
            v.drives,
            ",".join(v.triggers),
            v.content_hash[:12],
        ]
        for v in versions
    ]
    return markdown_table(
        ["dataset", "created", "windows", "frames", "hours", "drives", "triggers", "hash"], rows
    )


def format_show(store: Store | str | os.PathLike[str], ref: str) -> str:
    """``dojo datasets show``: the version's card (rebuilt from the manifest if the card is gone)."""
    st = _store(store)
    ds = load_dataset(st, ref)
    path = posixpath.join(ds.path, "card.md")
    try:
        with st.fs.open(path, "rb") as f:
            text: str = f.read().decode()
    except (FileNotFoundError, UnicodeDecodeError):
        text = card(ds.manifest)
    return f"{text.rstrip()}\n\nManifest: {posixpath.join(ds.path, 'manifest.json')}\n"


def format_diff(store: Store | str | os.PathLike[str], a: str, b: str) -> str:
    """``dojo datasets diff``: the changes from ``a`` to ``b`` in a few lines and a table."""
    d = diff(store, a, b)
    if d["same"]:
        return f"{d['a']} and {d['b']} hold the same windows."
    ta, tb = d["totals"]["a"], d["totals"]["b"]
    out = [
        f"{d['a']} → {d['b']}: {len(d['added'])} windows added, {len(d['removed'])} removed, "
        f"{len(d['changed'])} changed, {d['unchanged']} unchanged.",
        f"frames {ta['frames']} → {tb['frames']}, hours {ta['hours']:.4f} → {tb['hours']:.4f}, "
        f"drives {ta['drives']} → {tb['drives']}.",
        "",
        markdown_table(
            ["trigger", "windows a", "windows b", "Δ windows", "frames a", "frames b", "Δ frames"],
            [
                [
                    n,
                    v["a"]["windows"],
                    v["b"]["windows"],
                    f"{v['windows']:+d}",
                    v["a"]["frames"],
                    v["b"]["frames"],
                    f"{v['frames']:+d}",
                ]
                for n, v in d["per_trigger"].items()
            ],
        ),
    ]
    if d["changed"]:
        fields = Counter(f for c in d["changed"] for f in c["fields"])
        out += ["", "Changed fields: " + ", ".join(f"{f} ({n})" for f, n in sorted(fields.items()))]
    return "\n".join(out) + "\n"


__all__ = [
    "Dataset",
    "DatasetVersion",
    "card",
    "check_name",
    "diff",
    "entries_hash",
    "format_diff",
    "format_list",
    "format_saved",
    "format_show",
    "list_datasets",
    "load_dataset",
    "parse_ref",
    "save_dataset",
    "split_of",
    "statistics",
]
