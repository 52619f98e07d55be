"""Request and response bodies of the HTTP API (pydantic v2; requests refuse unknown fields)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_TIME_LIMIT_S = 30 * 86_400  # a month

Text = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")]  # no control characters
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
JobKind = Literal["drive", "ingest", "train", "eval", "loop", "script"]
DatasetKind = Literal["drive_logs", "files"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuotasIn(_In):
    max_concurrent_jobs: int | None = Field(default=None, ge=0, le=1_000_000)
    max_chips: int | None = Field(default=None, ge=0, le=10_000_000)
    max_gpus: int | None = Field(default=None, ge=0, le=10_000_000)
    max_storage_bytes: int | None = Field(default=None, ge=0, le=2**62)


class TenantCreate(_In):
    name: Name
    quotas: QuotasIn = Field(default_factory=lambda: QuotasIn())


class TenantUpdate(_In):
    disabled: bool | None = None
    quotas: QuotasIn | None = None


class Quotas(BaseModel):
    max_concurrent_jobs: int
    max_chips: int
    max_gpus: int
    max_storage_bytes: int


class Usage(BaseModel):
    active_jobs: int
    chips: int
    gpus: int
    storage_bytes: int


class TenantOut(BaseModel):
    id: str
    name: str
    disabled: bool
    quotas: Quotas
    usage: Usage
    created_at: datetime


class TokenCreate(_In):
    name: Text = Field(default="", max_length=64)
    expires_in_s: float | None = Field(default=None, gt=0, le=10 * 365 * 86400)


class TokenOut(BaseModel):
    id: str
    tenant_id: str | None
    role: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="the secret; shown only in this response")


class TenantCreated(TenantOut):
    token: TokenCreated


class DatasetCreate(_In):
    name: Name
    uri: Text | None = Field(
        default=None,
        max_length=2048,
        description="register an existing store "
        "(s3://, gs://, az://, https://...) instead of uploading files",
    )
    kind: DatasetKind = Field(
        default="drive_logs",
        description="drive_logs: MCAP drive logs only (checked on upload); files: any files, "
        "for a script job to read",
    )


class DatasetFileOut(BaseModel):
    name: str
    size_bytes: int
    sha256: str
    created_at: datetime


class DatasetOut(BaseModel):
    id: str
    name: str
    source: Literal["upload", "store"]
    kind: DatasetKind
    uri: str | None
    size_bytes: int
    files: int
    created_at: datetime


class CodeOut(BaseModel):
    id: str
    name: str
    size_bytes: int = Field(description="the unpacked files, counted in the storage quota")
    files: int
    sha256: str = Field(description="of the archive as uploaded")
    created_at: datetime


class Compute(_In):
    """Exactly one of chips (D1), tiles (25 D1 each) or GPUs."""

    chips: int | None = Field(default=None, ge=1, le=300_000)
    tiles: int | None = Field(default=None, ge=1, le=12_000)
    gpus: int | None = Field(default=None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _one(self) -> Compute:
        given = [k for k in ("chips", "tiles", "gpus") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of chips, tiles or gpus")
        return self

    @property
    def unit(self) -> str:
        return next(k for k in ("chips", "tiles", "gpus") if getattr(self, k) is not None)

    @property
    def count(self) -> int:
        return int(getattr(self, self.unit))


class JobSubmit(_In):
    kind: JobKind
    name: Text = Field(default="", max_length=128)
    compute: Compute = Field(default_factory=lambda: Compute.model_validate({"chips": 1}))
    priority: int = Field(default=0, ge=-1000, le=1000, description="higher runs first")
    max_attempts: int = Field(
        default=3, ge=1, le=100, description="runs before a failing job stays failed"
    )
    time_limit_s: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TIME_LIMIT_S,
        description="a run longer than this is stopped and fails [s]; the "
        "scheduler also uses it to backfill short jobs before a reservation",
    )
    spec: dict[str, Any] = Field(
        default_factory=dict, description="the kind's settings (see specs)"
    )


class JobOut(BaseModel):
    id: str
    name: str
    kind: str
    status: str = Field(
        description="queued | placed | running | cancelling | succeeded | failed | cancelled"
    )
    priority: int
    compute: dict[str, int]
    spec: dict[str, Any]
    placement: dict[str, Any] | None
    attempt: int
    max_attempts: int
    time_limit_s: int | None
    exit_code: int | None
    error: str | None
    log_bytes: int
    metric_rows: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None


class JobList(BaseModel):
    jobs: list[JobOut]
    total: int


MetricValue = (
    Annotated[float, Field(allow_inf_nan=False)]
    | int
    | Annotated[Text, Field(max_length=1024)]
    | bool
    | None
)


class MetricsIn(_In):
    rows: list[dict[Annotated[Text, Field(min_length=1, max_length=64)], MetricValue]] = Field(
        min_length=1, description='flat rows, e.g. {"step": 10, "loss": 0.5}'
    )


class MetricsOut(BaseModel):
    rows: list[dict[str, Any]]
    next_seq: int = Field(description="pass as ?after to read only newer rows")


class ModelOut(BaseModel):
    id: str
    job_id: str
    name: str
    size_bytes: int
    sha256: str
    created_at: datetime


class Health(BaseModel):
    ok: bool
    schema_version: int
    database: str
