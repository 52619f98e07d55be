"""Policy checkpoints: one torch file holding the network's config and weights, written atomically.

Layout (a plain dict, readable with ``torch.load(path, weights_only=True)``)::

    {"format": "dojo.checkpoint", "version": 1, "kind": "policy",
     "net_config": PolicyConfig.to_dict(), "model": state_dict, "extra": {...}}

``extra`` holds whatever the caller adds (step, dataset version, metrics), restricted to tensors
and plain types (str, int, float, bool, None, lists, tuples and str-keyed dicts of them) so the
file loads without unpickling arbitrary objects.

Writes go through :func:`dojo.atomic.atomic_write` (a temporary file in the same folder, fsynced,
renamed over the target, the folder fsynced): a reader sees the old checkpoint or the new one,
never half of one, and a failed save leaves the old one as it was.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dojo.atomic import atomic_write
from dojo.errors import DojoConfigError, StorageFullError
from dojo.nets.policy import DrivingPolicy, PolicyConfig

FORMAT = "dojo.checkpoint"
VERSION = 1
KIND = "policy"
_PLAIN = (str, int, float, bool, type(None))


def save_policy(
    path: str | os.PathLike[str], model: DrivingPolicy, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` (config and weights) and ``extra`` to ``path`` atomically; returns the path.

    Raises StorageFullError when the disk is full, DojoConfigError when the folder is missing or
    unwritable or ``extra`` holds something other than tensors and plain types; the file already
    at ``path``, if any, is then left untouched.
    """
    if not isinstance(model, DrivingPolicy):
        raise DojoConfigError(f"save_policy needs a DrivingPolicy; got {type(model).__name__}.")
    target = Path(path)
    extra_dict: dict[str, Any] = {}
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise DojoConfigError(
                f"Checkpoint extra must be a mapping of str to plain values; got {type(extra).__name__}."
            )
        _check_plain(extra, "extra")
        extra_dict = dict(extra)
    if target.is_dir():
        raise DojoConfigError(f"Cannot save a checkpoint to {target}: it is a folder.")
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": KIND,
        "net_config": model.config.to_dict(),
        "model": state,
        "extra": extra_dict,
    }
    return save_atomic(payload, target)


def save_atomic(payload: Mapping[str, Any], target: Path) -> Path:
    """``torch.save`` ``payload`` over ``target`` with :func:`dojo.atomic.atomic_write`.

    The file at ``target``, if any, stays whole until the new one is complete; a failure
    removes the temporary file and raises one sentence naming ``target`` and why:
    :class:`~dojo.errors.StorageFullError` for a full disk or quota, ``DojoConfigError`` for a
    missing or unwritable folder.
    """
    try:
        with atomic_write(target, "wb") as f:
            torch.save(dict(payload), f)
    except StorageFullError as e:
        cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
        raise StorageFullError(
            f"Cannot save a checkpoint to {target}: {_why(cause, target)}.", path=str(target)
        ) from cause
    except OSError as e:
        raise DojoConfigError(f"Cannot save a checkpoint to {target}: {_why(e, target)}.") from e
    return target


def load_policy(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> DrivingPolicy:
    """The policy saved at ``path``, on ``device``, in eval mode.

    Raises DojoConfigError naming the file and the problem: missing, not a torch file (truncated,
    corrupt), not a Dojo checkpoint, another version or kind, or weights that do not fit the
    saved config (naming the key).
    """
    model = load_net(path, KIND, device)
    if not isinstance(model, DrivingPolicy):  # make_net("policy") builds one; for mypy
        raise TypeError(f"{path} built a {type(model).__name__}, not a DrivingPolicy.")
    return model


def load_net(
    path: str | os.PathLike[str], kind: str, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The ``kind`` net (see :func:`dojo.nets.make_net`) saved at ``path`` - a policy file or
    a training checkpoint of that net - on ``device``, in eval mode; the checks of
    :func:`load_policy`."""
    from dojo.nets.occupancy import make_net

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DojoConfigError(f"Device {device!r} is not a torch device: {e}.") from e
    ckpt = _read(path, kind)
    config = _net_config(ckpt, kind, path)
    state = ckpt.get("model")
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise DojoConfigError(
            f"Checkpoint {path} has no valid 'model' entry (a dict of name to tensor)."
        )
    model = make_net(kind, config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise DojoConfigError(
            f"Checkpoint {path} does not fit its policy config: weight {missing[0]!r} is missing"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}."
        )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise DojoConfigError(
            f"Checkpoint {path} does not fit its policy config: weight {unexpected[0]!r} is not "
            f"part of the network{f' (and {len(unexpected) - 1} more)' if len(unexpected) > 1 else ''}."
        )
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise DojoConfigError(
                f"Checkpoint {path} does not fit its policy config: weight {key!r} has shape "
                f"{tuple(got.shape)}, the network needs {tuple(want.shape)}."
            )
        if got.dtype != want.dtype and not (got.is_floating_point() and want.is_floating_point()):
            raise DojoConfigError(
                f"Checkpoint {path} does not fit its policy config: weight {key!r} is "
                f"{got.dtype}, the network needs {want.dtype}."
            )
    model.load_state_dict(state, strict=True)
    try:
        model.to(dev)
    except (RuntimeError, AssertionError) as e:
        what = "policy" if kind == KIND else f"{kind} net"
        raise DojoConfigError(f"Cannot put the {what} on device {device!r}: {e}.") from e
    return model.eval()


def load_net_config(path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """The config dict of the ``kind`` net saved at ``path`` (a policy file or a training
    checkpoint), checked as :func:`load_net` checks it, without building the net."""
    return _net_config(_read(path, kind), kind, path).to_dict()


def load_policy_config(path: str | os.PathLike[str]) -> PolicyConfig:
    """The :class:`PolicyConfig` saved at ``path`` (same checks as :func:`load_policy`)."""
    return _net_config(_read(path), KIND, path)


def load_policy_extra(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``extra`` dict given to :func:`save_policy` (empty if none)."""
    ckpt = _read(path)
    _net_config(ckpt, KIND, path)
    extra = ckpt.get("extra", {})
    if not isinstance(extra, dict):
        raise DojoConfigError(f"Checkpoint {path} has an 'extra' entry that is not a dict.")
    return extra


def _read(path: str | os.PathLike[str], want: str = KIND) -> dict[str, Any]:
    """The checkpoint dict at ``path`` with its format, version and kind checked."""
    p = Path(path)
    if not p.exists():
        raise DojoConfigError(f"Checkpoint {p} does not exist.")
    if p.is_dir():
        raise DojoConfigError(f"Checkpoint {p} is a folder, not a checkpoint file.")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a bad file; the user needs one message
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DojoConfigError(
            f"Checkpoint {p} could not be read as a torch file (truncated or corrupt?): {reason}"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DojoConfigError(
            f"Checkpoint {p} is not a Dojo checkpoint (no 'format': '{FORMAT}' marker)."
        )
    version = ckpt.get("version")
    if version != VERSION:
        raise DojoConfigError(
            f"Checkpoint {p} has version {version!r}; this Dojo reads version {VERSION}."
        )
    kind = ckpt.get("kind")
    if kind != want:
        raise DojoConfigError(f"Checkpoint {p} holds a {kind!r} checkpoint, not a {want!r} one.")
    return ckpt


def _net_config(ckpt: Mapping[str, Any], kind: str, path: str | os.PathLike[str]) -> PolicyConfig:
    """The config of the ``kind`` net in checkpoint dict ``ckpt`` (read from ``path``)."""
    from dojo.nets.occupancy import net_config

    try:
        return net_config(kind, ckpt.get("net_config"))  # type: ignore[arg-type]
    except DojoConfigError as e:
        raise DojoConfigError(f"Checkpoint {path} has a bad net_config: {e}") from e


def _check_plain(value: Any, where: str) -> None:
    """Raise unless ``value`` is a tensor or plain data that ``weights_only`` loading accepts."""
    if isinstance(value, (*_PLAIN, torch.Tensor)):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise DojoConfigError(f"Checkpoint {where} has a key {k!r} that is not a string.")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    raise DojoConfigError(
        f"Checkpoint {where} is a {type(value).__name__}; only tensors, str, int, float, bool, "
        "None, lists, tuples and str-keyed dicts can be saved."
    )


def _why(e: OSError, target: Path) -> str:
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno == errno.EDQUOT:
        return "the disk quota is exceeded"
    if isinstance(e, FileNotFoundError):
        return f"the folder {target.parent} does not exist"
    if isinstance(e, NotADirectoryError):
        return f"the folder {target.parent} does not exist (its path runs through a file)"
    if isinstance(e, PermissionError) or e.errno == errno.EROFS:
        return f"the folder {target.parent} is not writable"
    return e.strerror or str(e)
