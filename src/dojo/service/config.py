"""Service settings: where the job store and the files live, request limits and default quotas."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dojo.errors import DojoConfigError
from dojo.validate import whole

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_DIR = Path("dojo-service")  # relative to the working directory of `dojo serve`


@dataclass(frozen=True)
class Quotas:
    """Per-tenant limits. Compute counts every *active* job (queued, placed, running, cancelling).

    ``max_chips`` is in D1 chips; a tile counts 25 chips. ``max_storage_bytes`` covers uploaded
    dataset files and checkpoints.
    """

    max_concurrent_jobs: int = 16
    max_chips: int = 3000  # one ExaPOD
    max_gpus: int = 64
    max_storage_bytes: int = 100 * GiB


@dataclass(frozen=True)
class ServiceConfig:
    """Everything `dojo serve` needs; checked on construction."""

    db_url: str = ""
    data_dir: Path = DEFAULT_DIR
    max_json_bytes: int = 1 * MiB  # any request body that is not an upload
    max_upload_bytes: int = 8 * GiB  # one uploaded file
    max_log_bytes_per_job: int = 256 * MiB
    max_metric_rows_per_request: int = 10_000
    min_free_bytes: int = 256 * MiB  # uploads stop (507) rather than fill the disk past this
    follow_poll_s: float = 0.25  # how often ?follow polls for new log lines [s]
    follow_timeout_s: float = 3600.0  # a follow stream ends after this long [s]
    default_quotas: Quotas = field(default_factory=Quotas)

    def __post_init__(self) -> None:
        for name in (
            "max_json_bytes",
            "max_upload_bytes",
            "max_log_bytes_per_job",
            "max_metric_rows_per_request",
        ):
            whole(name, getattr(self, name), 1)
        if self.min_free_bytes < 0:
            raise DojoConfigError(f"min_free_bytes={self.min_free_bytes!r} must be >= 0.")
        if not self.follow_poll_s > 0 or not self.follow_timeout_s > 0:
            raise DojoConfigError("follow_poll_s and follow_timeout_s must be > 0.")

    @property
    def resolved_db_url(self) -> str:
        """The job store URL; the default is a SQLite file inside ``data_dir``."""
        return self.db_url or f"sqlite:///{(Path(self.data_dir) / 'dojo.db').resolve()}"
