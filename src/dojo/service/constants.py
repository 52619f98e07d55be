"""Names shared by the schema, the API and the command line (importing this loads nothing else)."""

JOB_KINDS = ("drive", "ingest", "train", "eval", "loop", "script")
ACTIVE = ("queued", "placed", "running", "cancelling")  # count against quotas
TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ACTIVE + TERMINAL
COMPUTE_UNITS = ("chips", "tiles", "gpus")
CHIPS_PER_TILE = 25  # D1 chips on a training tile
