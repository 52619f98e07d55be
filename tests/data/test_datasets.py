"""Versioned datasets: immutable versions, idempotent saves, splits by drive, cards, list/show/diff."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from dojo.data.datasets import (
    card,
    check_name,
    diff,
    format_diff,
    format_list,
    format_show,
    list_datasets,
    load_dataset,
    parse_ref,
    save_dataset,
    split_of,
)
from dojo.data.mine import mine
from dojo.errors import DojoConfigError
from tests.data.test_mining import new_store, write_drive

RECIPE: dict[str, Any] = {
    "triggers": ["collision"],
    "params": {"collision": {}},
    "sql": {},
    "window_s": [-5.0, 2.0],
    "sample_normal": 0.1,
    "seed": 0,
    "command": "dojo mine s --trigger collision --out d",
}


def _entry(
    drive: str,
    t0: float,
    triggers: list[str] | None = None,
    family: str = "highway",
    source: str = "human",
    clip: str | None = None,
) -> dict[str, Any]:
    return {
        "clip_id": clip or f"{drive}-{int(t0)}",
        "drive_id": drive,
        "t0_s": t0,
        "t1_s": t0 + 6.9,
        "frames": 70,
        "seconds": 7.0,
        "triggers": triggers or ["collision"],
        "content_hash": "h" + drive,
        "family": family,
        "label_source": source,
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return new_store(tmp_path / "store")


def test_versions_are_immutable_and_saving_the_same_windows_again_changes_nothing(
    store: Path,
) -> None:
    entries = [_entry("d1", 0.0), _entry("d2", 10.0)]
    v1 = save_dataset(store, "hard", entries, recipe=RECIPE)
    assert (v1.version, v1.created, v1.entries, v1.frames) == (1, True, 2, 140)
    manifest = store / "datasets" / "hard" / "v1" / "manifest.json"
    before = manifest.read_bytes()
    again = save_dataset(store, "hard", [dict(e) for e in entries], recipe=RECIPE)
    assert (again.version, again.created, again.content_hash) == (1, False, v1.content_hash)
    assert not (store / "datasets" / "hard" / "v2").exists()
    v2 = save_dataset(store, "hard", entries + [_entry("d3", 0.0)], recipe=RECIPE)
    assert (v2.version, v2.created, v2.entries) == (2, True, 3)
    assert manifest.read_bytes() == before  # v1 is never written again
    # a changed content hash of one clip is a different dataset
    v3 = save_dataset(
        store, "hard", [{**entries[0], "content_hash": "other"}, entries[1]], recipe=RECIPE
    )
    assert v3.version == 3
    assert [v.ref for v in list_datasets(store)] == ["hard@v1", "hard@v2", "hard@v3"]


def test_a_version_exists_only_once_its_manifest_does(store: Path) -> None:
    save_dataset(store, "d", [_entry("d1", 0.0)], recipe=RECIPE)
    crashed = store / "datasets" / "d" / "v2"
    crashed.mkdir()
    (crashed / "card.md").write_text("half written")
    assert [v.version for v in list_datasets(store)] == [1]
    assert load_dataset(store, "d@latest").version == 1
    with pytest.raises(DojoConfigError, match="'d@v2' does not exist; d has versions v1"):
        load_dataset(store, "d@v2")
    v = save_dataset(store, "d", [_entry("d2", 0.0)], recipe=RECIPE)
    assert v.version == 3  # the crashed folder's number is never reused
    assert (crashed / "card.md").read_text() == "half written"


def test_two_writers_never_share_a_version_number(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dojo.data.datasets as datasets

    save_dataset(store, "d", [_entry("d1", 0.0)], recipe=RECIPE)
    save_dataset(store, "d", [_entry("d2", 0.0)], recipe=RECIPE)
    v2 = (store / "datasets" / "d" / "v2" / "manifest.json").read_bytes()
    # a writer that listed the versions before the other one wrote v2
    real = datasets._version_dirs
    monkeypatch.setattr(
        datasets,
        "_version_dirs",
        lambda st, name: {k: h for k, h in real(st, name).items() if k < 2},
    )
    v = save_dataset(store, "d", [_entry("d3", 0.0)], recipe=RECIPE)
    assert v.version == 3
    assert (store / "datasets" / "d" / "v2" / "manifest.json").read_bytes() == v2


def test_the_manifest_holds_its_recipe_and_a_hash_of_its_entries(store: Path) -> None:
    v = save_dataset(
        store,
        "d",
        [_entry("d1", 0.0)],
        recipe=RECIPE,
        mining={"moments": {"collision": 3}},
        val_share=0.0,
        seed=3,
    )
    m = json.loads((store / "datasets" / "d" / "v1" / "manifest.json").read_text())
    assert m["name"] == "d" and m["version"] == 1 and m["store"] == str(store)
    assert m["recipe"] == RECIPE and m["mining"] == {"moments": {"collision": 3}}
    assert m["split"]["val_share"] == 0.0 and m["split"]["seed"] == 3
    canonical = json.dumps(m["entries"], sort_keys=True, separators=(",", ":")).encode()
    assert m["content_hash"] == v.content_hash == hashlib.sha256(canonical).hexdigest()
    assert m["entries"][0]["split"] == "train"
    assert m["totals"]["windows"] == 1 and m["totals"]["hours"] == pytest.approx(
        7.0 / 3600, abs=1e-6
    )
    assert m["created_at"].endswith("+00:00") and m["dojo_version"]


def test_a_modified_manifest_is_refused(store: Path) -> None:
    save_dataset(store, "d", [_entry("d1", 0.0)], recipe=RECIPE)
    path = store / "datasets" / "d" / "v1" / "manifest.json"
    m = json.loads(path.read_text())
    m["entries"][0]["split"] = "val"
    path.write_text(json.dumps(m))
    with pytest.raises(DojoConfigError, match="modified"):
        load_dataset(store, "d")
    path.write_text("{not json")
    with pytest.raises(DojoConfigError, match="unreadable manifest"):
        load_dataset(store, "d")


def test_the_split_is_by_drive_deterministic_and_near_the_share(store: Path) -> None:
    drives = [f"drive{k:03d}" for k in range(300)]
    entries = [_entry(d, t) for d in drives for t in (0.0, 20.0)]
    save_dataset(store, "big", entries, recipe=RECIPE, val_share=0.2, seed=7)
    ds = load_dataset(store, "big")
    side: dict[str, set[str]] = {}
    for e in ds.entries:
        side.setdefault(e["drive_id"], set()).add(e["split"])
    assert all(len(s) == 1 for s in side.values())  # no drive in both
    val = {d for d, s in side.items() if s == {"val"}}
    assert 0.14 < len(val) / len(drives) < 0.26
    assert len(ds.split("val")) == 2 * len(val) and len(ds.split("train")) == 2 * (300 - len(val))
    assert {d for d in drives if split_of(d, 7, 0.2) == "val"} == val  # depends on nothing else
    assert {d for d in drives if split_of(d, 8, 0.2) == "val"} != val
    assert all(split_of(d, 7, 0.0) == "train" for d in drives)
    with pytest.raises(DojoConfigError, match="split='test'"):
        ds.split("test")


def test_the_card_counts_triggers_families_and_label_sources_and_says_when_val_is_empty(
    store: Path,
) -> None:
    entries = [
        _entry("d1", 0.0, ["collision", "near_miss"], "stalled", "safety_driver"),
        _entry("d1", 20.0, ["normal"], "stalled", "network"),
        _entry("d2", 0.0, ["near_miss"], "cut_in", "human"),
    ]
    save_dataset(
        store,
        "c",
        entries,
        recipe=RECIPE,
        mining={"moments": {"collision": 4}, "dropped_no_video": {"collision": 3}},
        val_share=0.0,
    )
    text = (store / "datasets" / "c" / "v1" / "card.md").read_text()
    assert text.startswith("# Dataset c v1")
    assert "| collision | 4 | 3 | 1 | 70 | 7.0 |" in text
    assert "| near_miss |  |  | 2 | 140 | 14.0 |" in text
    assert "| normal |  |  | 1 | 70 | 7.0 |" in text
    assert "| stalled | 2 | 1 | 140 | 14.0 |" in text and "| cut_in | 1 | 1 | 70 | 7.0 |" in text
    assert "| safety_driver | 1 | 1 | 70 | 7.0 |" in text
    assert "| train | 3 | 2 | 210 | 21.0 |" in text and "| val | 0 | 0 | 0 | 0.0 |" in text
    assert "val is empty" in text and RECIPE["command"] in text
    assert "0.0058 hours" in text  # 21 s
    assert format_show(store, "c@v1").startswith(text.rstrip())
    (store / "datasets" / "c" / "v1" / "card.md").unlink()  # show rebuilds a lost card
    assert "| collision | 4 | 3 | 1 | 70 | 7.0 |" in format_show(store, "c")
    assert card(load_dataset(store, "c").manifest) == text


def test_diff_reports_added_removed_changed_windows_and_per_trigger_counts(store: Path) -> None:
    a = [_entry("d1", 0.0), _entry("d1", 20.0, ["near_miss"]), _entry("d2", 0.0)]
    b = [a[0], {**a[1], "label_source": "safety_driver"}, _entry("d3", 0.0, ["near_miss"])]
    save_dataset(store, "x", a, recipe=RECIPE)
    save_dataset(store, "x", b, recipe=RECIPE)
    d = diff(store, "x@v1", "x@v2")
    assert (d["a"], d["b"], d["same"]) == ("x@v1", "x@v2", False)
    assert [e["clip_id"] for e in d["added"]] == ["d3-0"]
    assert [e["clip_id"] for e in d["removed"]] == ["d2-0"]
    assert [(c["clip_id"], c["fields"], c["a"], c["b"]) for c in d["changed"]] == [
        ("d1-20", ["label_source"], {"label_source": "human"}, {"label_source": "safety_driver"})
    ]
    assert d["unchanged"] == 1
    assert (
        d["per_trigger"]["collision"]["windows"] == -1
        and d["per_trigger"]["near_miss"]["windows"] == 1
    )
    text = format_diff(store, "x@1", "x@latest")
    assert "1 windows added, 1 removed, 1 changed, 1 unchanged" in text
    assert "| collision | 2 | 1 | -1 | 140 | 70 | -70 |" in text and "label_source (1)" in text
    assert format_diff(store, "x@v2", "x") == "x@v2 and x@v2 hold the same windows."
    listing = format_list(store)
    assert "x@v1" in listing and "x@v2" in listing


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../x",
        "..",
        ".hidden",
        "a/b",
        "a\\b",
        "a b",
        "a..b",
        "x" * 101,
        "a\x00b",
        "naïve",
        None,
        3,
    ],
)
def test_bad_dataset_names_are_refused(store: Path, bad: Any) -> None:
    with pytest.raises(DojoConfigError, match="Dataset name"):
        check_name(bad)
    with pytest.raises(DojoConfigError):
        save_dataset(store, bad, [_entry("d1", 0.0)], recipe=RECIPE)
    assert not any((store / "datasets").iterdir())


def test_dataset_references_name_a_version_that_exists(store: Path) -> None:
    assert parse_ref("a") == ("a", None) and parse_ref("a@latest") == ("a", None)
    assert parse_ref("a.b-c_1@v12") == ("a.b-c_1", 12) and parse_ref("a@3") == ("a", 3)
    for bad in ("a@", "a@v", "a@vx", "a@v1@v2", "@v1", "a@newest"):
        with pytest.raises(DojoConfigError, match="must be NAME, NAME@vN or NAME@latest"):
            parse_ref(bad)
    with pytest.raises(DojoConfigError, match="version 0"):
        parse_ref("a@v0")
    with pytest.raises(DojoConfigError, match="Dataset 'nope' does not exist"):
        load_dataset(store, "nope")
    with pytest.raises(DojoConfigError, match="Dataset name '../etc'"):
        load_dataset(store, "../etc@v1")
    assert format_list(store).startswith("No datasets")
    with pytest.raises(DojoConfigError, match="lacks"):
        save_dataset(store, "d", [{"clip_id": "c"}], recipe=RECIPE)


def test_mining_into_versions_and_diffing_them(tmp_path: Path) -> None:
    root = new_store(tmp_path / "store")
    write_drive(
        root,
        "d1",
        duration_s=40.0,
        clips=((0.0, 39.9),),
        events=((10.0, "collision", True),),
        telemetry=lambda t: {"ttc_s": 1.0} if 20.0 <= t <= 20.3 else {},
    )
    v1 = mine(root, ["collision"], sample_normal=0.0, out="m")
    v2 = mine(root, ["collision", "near_miss"], sample_normal=0.0, out="m")
    assert (v1.version, v2.version) == (1, 2)
    d = diff(root, "m@v1", "m@v2")
    assert [(e["t0_s"], e["t1_s"], e["triggers"]) for e in d["added"]] == [
        (15.0, 22.0, ["near_miss"])
    ]
    assert d["removed"] == [] and d["per_trigger"]["near_miss"]["windows"] == 1
    assert load_dataset(root, "m@v1").summary().triggers == ("collision",)


def test_mining_and_datasets_work_on_an_fsspec_store(tmp_path: Path) -> None:
    import fsspec

    root = new_store(tmp_path / "store")
    write_drive(
        root, "d1", duration_s=30.0, clips=((0.0, 29.9),), events=((10.0, "collision", True),)
    )
    mem = fsspec.filesystem("memory")
    mem.put(str(root), "/dojo-test-datasets", recursive=True)
    try:
        url = "memory://dojo-test-datasets"
        v1 = mine(url, ["collision"], sample_normal=0.0, out="m")
        assert (v1.version, v1.entries) == (1, 1) and mine(
            url, ["collision"], sample_normal=0.0, out="m"
        ).version == 1
        assert mem.exists("/dojo-test-datasets/datasets/m/v1/card.md")
        ds = load_dataset(url, "m@v1")
        assert [(e["t0_s"], e["t1_s"]) for e in ds.entries] == [(5.0, 12.0)]
        assert ds.manifest["store"] == url and "m@v1" in format_list(url)
    finally:
        mem.rm("/dojo-test-datasets", recursive=True)
