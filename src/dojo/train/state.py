"""Training checkpoints: everything a run needs to go on as if it had never stopped.

One file, ``OUT/checkpoint.pt``, written by rank 0 to a temporary name, fsynced and renamed over
the old one (``os.replace``): a reader sees the previous checkpoint or the new one, never half.
For ``--net policy`` it is a policy checkpoint as :mod:`dojo.nets.checkpoint` reads it
(``load_policy`` loads the network from it as it stands); the other nets write their own
``kind`` (``occupancy``, ``both``), which ``load_policy`` refuses by name. The training state
sits beside the network::

    {"format": "dojo.checkpoint", "version": 1, "kind": "policy" | "occupancy" | "both",
     "net_config": {...}, "model": state_dict,                    # the network (load_policy)
     "extra": {"step", "dataset", "dataset_hash", "train_loss"},  # plain values, for people
     "train": {"format": "dojo.train-state", "version": 1,
               "config": resolved config (identity of the run),
               "step", "epoch", "step_in_epoch",
               "optimizer": AdamW state_dict, "scheduler": LambdaLR state_dict,
               "rng": [per rank: python, numpy, torch, cuda],
               "data": merged WindowDataset position (dojo.data.loader.merge_states),
               "dataset": name@vN, "dataset_hash": content hash, "world_size"}}

Everything in it is a tensor or plain data, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dojo.errors import DojoConfigError
from dojo.nets.checkpoint import FORMAT, KIND, VERSION, save_atomic

TRAIN_FORMAT = "dojo.train-state"
TRAIN_VERSION = 1


def rng_state() -> dict[str, Any]:
    """This process's random states, as plain data and tensors (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002 (the global state is what we restore)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (:func:`dojo.nets.checkpoint.save_atomic`)."""
    return save_atomic(payload, path)


def build_payload(
    *,
    model_state: dict[str, torch.Tensor],
    net_config: dict[str, Any],
    train: dict[str, Any],
    extra: dict[str, Any],
    kind: str = KIND,
) -> dict[str, Any]:
    """The checkpoint dict (see the module docstring); tensors are copied to the CPU.

    ``kind`` is the net (``policy``, ``occupancy``, ``both``): only a ``policy`` checkpoint is
    one ``load_policy`` reads, and a resume checks it against the net asked for.
    """
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "net_config": net_config,
        "model": {k: v.detach().to("cpu", copy=True) for k, v in model_state.items()},
        "extra": extra,
        "train": {"format": TRAIN_FORMAT, "version": TRAIN_VERSION, **train},
    }


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, its training part checked for format and version."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a bad file; the user needs one message
        raise DojoConfigError(
            f"Checkpoint {path} cannot be read (truncated or corrupt?): {e}"
        ) from e
    train = payload.get("train") if isinstance(payload, dict) else None
    if not isinstance(train, dict) or train.get("format") != TRAIN_FORMAT:
        raise DojoConfigError(
            f"Checkpoint {path} is not a Dojo training checkpoint (no 'train' state)."
        )
    if train.get("version") != TRAIN_VERSION:
        raise DojoConfigError(
            f"Checkpoint {path} has training-state version {train.get('version')!r}; this Dojo reads {TRAIN_VERSION}."
        )
    return payload


__all__ = ["build_payload", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]
