"""The offline auto-labeler: hindsight labels for every logged frame, from the logged scene.

:mod:`~dojo.data.autolabel.scene` pivots a drive's scene table into frames;
:mod:`~dojo.data.autolabel.teacher` runs the careful driver on them under the rig's visibility
rule and reads what it sees; :mod:`~dojo.data.autolabel.stage` is ``dojo autolabel``, writing
the labels beside the clips.
"""

from __future__ import annotations

from dojo.data.autolabel.scene import SceneFrames, scene_frames
from dojo.data.autolabel.stage import (
    AUTOLABELS,
    LABEL_SOURCE,
    VERSION,
    AutolabelConfig,
    AutolabelSummary,
    autolabel,
)
from dojo.data.autolabel.teacher import LABEL_FIELDS, careful_labels

__all__ = [
    "AUTOLABELS",
    "LABEL_FIELDS",
    "LABEL_SOURCE",
    "VERSION",
    "AutolabelConfig",
    "AutolabelSummary",
    "SceneFrames",
    "autolabel",
    "careful_labels",
    "scene_frames",
]
