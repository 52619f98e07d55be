"""Dojo beyond one machine: the fleet, evaluation, ingest and auto-labeling as Ray tasks.

Commands take ``--ray [ADDRESS]`` (or ``$DOJO_RAY_ADDRESS``); without it Ray is not imported.
See docs/scale.md.
"""

from dojo.cluster.tasks import (
    AUTO,
    ENV,
    MAX_RETRIES,
    add_ray_flag,
    check_shared_path,
    cluster_cpus,
    connect,
    map_tasks,
    resolve_address,
)

__all__ = [
    "AUTO",
    "ENV",
    "MAX_RETRIES",
    "add_ray_flag",
    "check_shared_path",
    "cluster_cpus",
    "connect",
    "map_tasks",
    "resolve_address",
]
