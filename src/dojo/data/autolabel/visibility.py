"""The rig's visibility rule applied to a logged scene: which objects a drive's cameras showed.

The rig is the one the drive was logged with: named in its drive config (``rig``), or, for logs
written before rigs had names, the named rig whose cameras the log lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dojo.data.autolabel.scene import SceneFrames
from dojo.errors import CorruptLogError
from dojo.world.camera import CameraRig
from dojo.world.rigs import RIGS
from dojo.world.visibility import visible


def drive_rig(drive: dict[str, Any]) -> CameraRig:
    """The camera rig a drive was logged with (its ``drives`` row, ``config`` parsed)."""
    width, height = int(drive.get("width_px") or 96), int(drive.get("height_px") or 48)
    rgb = bool(drive.get("rgb"))
    name = (drive.get("config") or {}).get("rig")
    cameras = list(drive.get("cameras") or [])
    if not name:
        for candidate in RIGS:
            if CameraRig.named(candidate, rgb, width, height).names == cameras:
                name = candidate
                break
    if not name or name not in RIGS:
        why = f"its cameras {cameras} match no named rig ({', '.join(RIGS)})"
        raise CorruptLogError(f"Drive {drive.get('drive_id')}: {why}.", reason=why)
    return CameraRig.named(str(name), rgb, width, height)


def scene_visibility(scene: SceneFrames, drive: dict[str, Any]) -> np.ndarray:
    """(F, K) bool: the objects of each frame the drive's rig showed its ego (the ego: True)."""
    rig = drive_rig(drive)
    v = scene.values
    x0, y0, yaw0 = v["x_m"][:, :1], v["y_m"][:, :1], v["yaw_rad"][:, :1]
    dx, dy = v["x_m"] - x0, v["y_m"] - y0
    c, s = np.cos(yaw0), np.sin(yaw0)
    others = slice(1, None)
    present = scene.present[:, others]

    def size(name: str) -> np.ndarray:
        return np.where(present, v[name][:, others], 1.0)  # absent slots: any valid box

    shown = visible(
        rig,
        (c * dx + s * dy)[:, others],
        (-s * dx + c * dy)[:, others],
        (v["yaw_rad"] - yaw0)[:, others],
        size("length_m"),
        size("width_m"),
        size("height_m"),
        present,
    )
    return np.concatenate([np.ones((scene.frames, 1), dtype=bool), shown], axis=1)


__all__ = ["drive_rig", "scene_visibility"]
