"""What each job kind accepts (pydantic v2, unknown fields refused).

These are the service's own, deliberately small views of the stage commands (``dojo drive``,
``dojo data ingest``, ``dojo train``, ``dojo eval``, ``dojo loop``) and of a tenant's own
script (``script``), generated from the stages'
configs: a default is the stage's own (the loop's for a loop job). The agent that runs a job
turns a spec into the stage's command line through the same fields, and the stage's typed
config checks it again. References to the tenant's
objects are ids: ``dataset`` (``ds_...``) and models (``mdl_...``, as ``policy`` or
``resume_from``); the API answers 404 for an id the tenant does not own.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from dojo.eval.config import EvalConfig
from dojo.fleet.config import DriveConfig
from dojo.loop.config import LoopConfig
from dojo.settings import spec_model
from dojo.train.config import TrainConfig

DatasetId = Annotated[str, Field(pattern=r"^ds_[0-9a-f]{16}$", description="a dataset id")]
CodeId = Annotated[str, Field(pattern=r"^code_[0-9a-f]{16}$", description="a code archive id")]
# a relative path whose components start with a letter, digit or _: no "..", nothing hidden
EntryPath = Annotated[
    str,
    Field(
        max_length=255,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$",
        description="the script to run: a path in the code archive, e.g. train.py",
    ),
]
Arg = Annotated[str, Field(max_length=4096, pattern=r"^[^\x00]*$")]
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


# Each spec is generated from its stage's config (dojo.settings.spec_model): a field's type,
# default and description are the config's, declared once; the bounds here are the service's
# own limits (how big a job a tenant may ask for). {config path: (API name, bounds)}.
DRIVE_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "cars": ("cars", {"ge": 1, "le": 4096}),
    "minutes": ("minutes", {"gt": 0, "le": 24 * 60}),
    "mode": ("mode", {}),
    "policy": ("policy", {"annotation": Policy}),
    "families": ("scenarios", {"annotation": list[Family], "max_length": 64}),
    "seed": ("seed", {"ge": 0}),
    "drive_s": ("drive_seconds", {"gt": 0, "le": 3600}),
    "logging": ("logging", {}),
    "heldout": ("heldout", {}),
}
TRAIN_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "dataset": ("dataset", {"annotation": DatasetRef}),
    "net": ("net", {}),
    "size": ("size", {}),
    "steps": ("steps", {"ge": 1, "le": 10_000_000}),
    "batch_size": ("batch_size", {"ge": 1, "le": 1_048_576}),
    "lr": ("lr", {"gt": 0, "le": 1}),
    "precision": ("precision", {}),
}
EVAL_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "policy": ("policy", {"annotation": Policy, "required": True}),
    "suite": ("suite", {"annotation": Family}),
    "decisions": ("decisions", {"ge": 1, "le": 10**10}),
    "cars": ("cars", {"ge": 1, "le": 4096}),
    "seed": ("seed", {"ge": 0}),
}
LOOP_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "loops": ("turns", {"ge": 1, "le": 1000}),
    "start_policy": ("policy", {"annotation": Policy}),
    "drive.cars": ("cars", {"ge": 1, "le": 4096}),
    "drive.minutes": ("minutes", {"gt": 0, "le": 24 * 60}),
    "train.steps": ("train_steps", {"ge": 1, "le": 10_000_000}),
    "eval.decisions": ("eval_decisions", {"ge": 1, "le": 10**10}),
}

DriveSpec = spec_model(
    "DriveSpec",
    _Spec,
    DriveConfig,
    DRIVE_FIELDS,
    {
        "dataset": (
            DatasetId | None,
            Field(None, description="upload the logs into this dataset"),
        )
    },
)


class ScriptSpec(_Spec):
    """A tenant's own training script, run under torchrun in the sandbox (see the agent)."""

    code: CodeId
    entry: EntryPath
    args: list[Arg] = Field(default_factory=list, max_length=256, description="its arguments")
    dataset: DatasetId | None = Field(
        None, description="a dataset of the tenant's, read-only at DOJO_DATA_DIR"
    )


class IngestSpec(_Spec):
    dataset: DatasetId
    workers: int | None = Field(default=None, ge=1, le=1024)


TrainSpec = spec_model(
    "TrainSpec",
    _Spec,
    TrainConfig,
    TRAIN_FIELDS,
    {
        "resume_from": (
            ModelId | None,
            Field(None, description="fine-tune this stored model (its weights start the run)"),
        )
    },
)
EvalSpec = spec_model("EvalSpec", _Spec, EvalConfig, EVAL_FIELDS)
LoopSpec = spec_model("LoopSpec", _Spec, LoopConfig(), LOOP_FIELDS)

# a spec field's flag on its stage's command line, for the agent: {kind: (config, {path: api})}
STAGE_FIELDS: dict[str, tuple[type, dict[str, str]]] = {
    "drive": (DriveConfig, {p: name for p, (name, _) in DRIVE_FIELDS.items()}),
    "train": (TrainConfig, {p: name for p, (name, _) in TRAIN_FIELDS.items()}),
    "eval": (EvalConfig, {p: name for p, (name, _) in EVAL_FIELDS.items()}),
    "loop": (LoopConfig, {p: name for p, (name, _) in LOOP_FIELDS.items()}),
}


SPECS: dict[str, type[_Spec]] = {
    "drive": DriveSpec,
    "ingest": IngestSpec,
    "train": TrainSpec,
    "eval": EvalSpec,
    "loop": LoopSpec,
    "script": ScriptSpec,
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
    value = data.get("code")
    if isinstance(value, str) and value.startswith("code_"):
        refs.append(("code", value))
    return refs
