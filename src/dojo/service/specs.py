"""What each job kind accepts (pydantic v2, unknown fields refused).

These are the service's own, deliberately small views of the stage commands (``dojo drive``,
``dojo data ingest``, ``dojo train``, ``dojo eval``, ``dojo loop``); the agent that runs a job
turns a spec into the stage's typed config, which checks it again. References to the tenant's
objects are ids: ``dataset`` (``ds_...``) and models (``mdl_...``, as ``policy`` or
``resume_from``); the API answers 404 for an id the tenant does not own.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DatasetId = Annotated[str, Field(pattern=r"^ds_[0-9a-f]{16}$", description="a dataset id")]
ModelId = Annotated[str, Field(pattern=r"^mdl_[0-9a-f]{16}$", description="a model id")]
Policy = Annotated[
    str,
    Field(
        pattern=r"^(naive|expert|mdl_[0-9a-f]{16})$",
        description="naive | expert | a model id (mdl_...)",
    ),
]
Family = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
DatasetRef = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(@(v[0-9]+|latest))?$",
        description="a dataset version in the tenant's clip store: NAME, NAME@vN or NAME@latest",
    ),
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DriveSpec(_Spec):
    cars: int = Field(8, ge=1, le=4096)
    minutes: float = Field(2.0, gt=0, le=24 * 60, description="simulated minutes per car")
    mode: Literal["manual", "shadow", "autonomous", "mixed"] = "shadow"
    policy: Policy = "naive"
    scenarios: list[Family] = Field(default_factory=list, max_length=64)
    seed: int = Field(0, ge=0)
    drive_seconds: float = Field(40.0, gt=0, le=3600)
    logging: Literal["full", "triggers", "none"] = "full"
    heldout: bool = False
    dataset: DatasetId | None = Field(None, description="upload the logs into this dataset")


class IngestSpec(_Spec):
    dataset: DatasetId
    workers: int | None = Field(None, ge=1, le=1024)


class TrainSpec(_Spec):
    dataset: DatasetRef
    net: Literal["policy", "occupancy", "both"] = "policy"
    size: Literal["tiny", "base", "large"] = "tiny"
    steps: int = Field(1000, ge=1, le=10_000_000)
    batch_size: int = Field(32, ge=1, le=1_048_576)
    lr: float = Field(3e-4, gt=0, le=1)
    precision: Literal["fp32", "bf16"] = "fp32"
    resume_from: ModelId | None = None


class EvalSpec(_Spec):
    policy: Policy
    suite: Family = "heldout"
    decisions: int = Field(10_000, ge=1, le=10**10)
    cars: int = Field(16, ge=1, le=4096)
    seed: int | None = Field(None, ge=0)


class LoopSpec(_Spec):
    turns: int = Field(1, ge=1, le=1000)
    policy: Policy = "naive"
    cars: int = Field(8, ge=1, le=4096)
    minutes: float = Field(2.0, gt=0, le=24 * 60)
    train_steps: int = Field(1000, ge=1, le=10_000_000)
    eval_decisions: int = Field(10_000, ge=1, le=10**10)


SPECS: dict[str, type[_Spec]] = {
    "drive": DriveSpec,
    "ingest": IngestSpec,
    "train": TrainSpec,
    "eval": EvalSpec,
    "loop": LoopSpec,
}


def references(spec: BaseModel) -> list[tuple[str, str]]:
    """The tenant objects a spec names: ``[("dataset", "ds_..."), ("model", "mdl_..."), ...]``."""
    refs: list[tuple[str, str]] = []
    data: dict[str, Any] = spec.model_dump()
    for key in ("policy", "resume_from"):
        value = data.get(key)
        if isinstance(value, str) and value.startswith("mdl_"):
            refs.append(("model", value))
    value = data.get("dataset")
    if isinstance(value, str) and value.startswith("ds_"):
        refs.append(("dataset", value))
    return refs
