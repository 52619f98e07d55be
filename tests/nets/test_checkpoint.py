"""Policy checkpoints: round trip, atomic writes, and a clear error for every kind of bad file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

import dojo.nets.checkpoint as checkpoint_module
from dojo import atomic as atomic_module
from dojo.errors import DojoConfigError, StorageFullError
from dojo.nets import (
    DrivingPolicy,
    PolicyConfig,
    load_policy,
    load_policy_config,
    load_policy_extra,
    save_policy,
)

CFG = PolicyConfig(height=16, width=32, cameras=3, frames=2)


def make(cfg: PolicyConfig = CFG, seed: int = 0) -> DrivingPolicy:
    torch.manual_seed(seed)
    return DrivingPolicy(cfg)


def inputs(cfg: PolicyConfig = CFG, batch: int = 3) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, cfg.image_shape(batch), generator=g, dtype=torch.uint8)
    return images, torch.rand(batch, generator=g) * 30.0, torch.arange(batch) % cfg.commands


def raw(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = make().eval()
    extra = {"step": 12, "dataset": "v3", "loss": 0.25, "hist": [1, 2], "t": torch.ones(2)}
    path = save_policy(tmp_path / "policy.pt", model, extra=extra)
    assert path == tmp_path / "policy.pt"
    assert sorted(os.listdir(tmp_path)) == ["policy.pt"]  # no temporary left behind
    loaded = load_policy(path)
    assert isinstance(loaded, DrivingPolicy) and not loaded.training
    assert loaded.config == CFG == load_policy_config(path)
    with torch.no_grad():
        assert torch.equal(model(*inputs()), loaded(*inputs()))
    got = load_policy_extra(path)
    assert {k: v for k, v in got.items() if k != "t"} == {k: extra[k] for k in extra if k != "t"}
    assert torch.equal(got["t"], torch.ones(2))
    ckpt = raw(path)
    assert (ckpt["format"], ckpt["version"], ckpt["kind"]) == ("dojo.checkpoint", 1, "policy")
    assert ckpt["net_config"] == CFG.to_dict()


def test_saving_again_replaces_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "policy.pt"
    save_policy(path, make(seed=0))
    save_policy(path, make(seed=1))
    with torch.no_grad():
        assert torch.equal(load_policy(path)(*inputs()), make(seed=1).eval()(*inputs()))
    assert load_policy_extra(path) == {}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DojoConfigError, match=r"Checkpoint .*nope\.pt does not exist"):
        load_policy(tmp_path / "nope.pt")


def test_a_folder_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DojoConfigError, match="is a folder"):
        load_policy(tmp_path)
    with pytest.raises(DojoConfigError, match="is a folder"):
        save_policy(tmp_path, make())


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(DojoConfigError, match="could not be read as a torch file"):
        load_policy(path)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = save_policy(tmp_path / "policy.pt", make())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DojoConfigError, match="could not be read as a torch file"):
        load_policy(path)
    with pytest.raises(DojoConfigError, match="could not be read as a torch file"):
        load_policy_config(path)


@pytest.mark.parametrize("content", [{"a": 1}, torch.zeros(3), {"format": "other"}])
def test_a_torch_file_that_is_not_a_dojo_checkpoint(tmp_path: Path, content: object) -> None:
    path = tmp_path / "plain.pt"
    torch.save(content, path)
    with pytest.raises(DojoConfigError, match="is not a Dojo checkpoint"):
        load_policy(path)


def test_another_version_or_kind(tmp_path: Path) -> None:
    path = save_policy(tmp_path / "policy.pt", make())
    ckpt = raw(path)
    torch.save({**ckpt, "version": 2}, path)
    with pytest.raises(DojoConfigError, match="has version 2; this Dojo reads version 1"):
        load_policy(path)
    torch.save({**ckpt, "kind": "trainer"}, path)
    with pytest.raises(DojoConfigError, match="holds a 'trainer' checkpoint, not a 'policy'"):
        load_policy(path)


def test_bad_net_config(tmp_path: Path) -> None:
    path = save_policy(tmp_path / "policy.pt", make())
    ckpt = raw(path)
    torch.save({**ckpt, "net_config": {**ckpt["net_config"], "size": "huge"}}, path)
    with pytest.raises(DojoConfigError, match="bad net_config.*size='huge'"):
        load_policy_config(path)
    torch.save({k: v for k, v in ckpt.items() if k != "net_config"}, path)
    with pytest.raises(DojoConfigError, match="bad net_config"):
        load_policy(path)


def test_weights_that_do_not_fit_the_config_name_the_key(tmp_path: Path) -> None:
    path = save_policy(tmp_path / "policy.pt", make())
    ckpt = raw(path)
    torch.save({**ckpt, "net_config": {**ckpt["net_config"], "cameras": 5}}, path)
    with pytest.raises(
        DojoConfigError,
        match=r"'camera_embedding' has shape \(3, 64\), the network needs \(5, 64\)",
    ):
        load_policy(path)
    torch.save({**ckpt, "net_config": {**ckpt["net_config"], "frames": 3}}, path)
    with pytest.raises(
        DojoConfigError,
        match=r"'stem.weight' has shape \(16, 2, 4, 4\), the network needs \(16, 3, 4, 4\)",
    ):
        load_policy(path)
    torch.save({**ckpt, "net_config": {**ckpt["net_config"], "size": "base"}}, path)
    with pytest.raises(
        DojoConfigError, match="does not fit its policy config: weight '.+' has shape"
    ):
        load_policy(path)
    state = dict(ckpt["model"])
    del state["token.bias"]
    torch.save({**ckpt, "model": state}, path)
    with pytest.raises(DojoConfigError, match="weight 'token.bias' is missing"):
        load_policy(path)
    torch.save({**ckpt, "model": {**ckpt["model"], "spare.weight": torch.ones(1)}}, path)
    with pytest.raises(DojoConfigError, match="'spare.weight' is not part of the network"):
        load_policy(path)
    torch.save({**ckpt, "model": [1, 2]}, path)
    with pytest.raises(DojoConfigError, match="no valid 'model' entry"):
        load_policy(path)


def test_bad_device(tmp_path: Path) -> None:
    path = save_policy(tmp_path / "policy.pt", make())
    with pytest.raises(DojoConfigError, match="'toaster'"):
        load_policy(path, device="toaster")


def test_extra_must_be_plain_data(tmp_path: Path) -> None:
    with pytest.raises(DojoConfigError, match=r"extra\['when'\] is a object"):
        save_policy(tmp_path / "policy.pt", make(), extra={"when": object()})
    with pytest.raises(DojoConfigError, match="not a string"):
        save_policy(tmp_path / "policy.pt", make(), extra={1: "one"})  # type: ignore[dict-item]
    assert os.listdir(tmp_path) == []


def test_missing_folder_or_a_file_as_folder(tmp_path: Path) -> None:
    with pytest.raises(DojoConfigError, match="does not exist"):
        save_policy(tmp_path / "no" / "policy.pt", make())
    (tmp_path / "file").write_text("x")
    with pytest.raises(DojoConfigError, match="does not exist .its path runs through a file"):
        save_policy(tmp_path / "file" / "policy.pt", make())
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_disk_full_leaves_the_old_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_policy(tmp_path / "policy.pt", make(seed=0), extra={"step": 1})
    before = path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.os, "fsync", full)
    with pytest.raises(StorageFullError, match="policy.pt: the disk is full") as info:
        save_policy(path, make(seed=1), extra={"step": 2})
    assert info.value.path == str(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["policy.pt"]
    assert load_policy_extra(path) == {"step": 1}


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: file permissions do not stop root from writing",
)
def test_unwritable_folder_leaves_the_old_checkpoint_intact(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = save_policy(folder / "policy.pt", make(seed=0))
    before = path.read_bytes()
    folder.chmod(0o555)
    try:
        with pytest.raises(DojoConfigError, match="is not writable"):
            save_policy(path, make(seed=1))
    finally:
        folder.chmod(0o755)
    assert path.read_bytes() == before


def test_permission_denied_is_reported_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same branch as the test above, with the refusal simulated so it runs as root too."""
    path = save_policy(tmp_path / "policy.pt", make(seed=0))
    before = path.read_bytes()

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(atomic_module, "open", refuse, raising=False)  # the write's open()
    with pytest.raises(DojoConfigError, match="is not writable"):
        save_policy(path, make(seed=1))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["policy.pt"]
