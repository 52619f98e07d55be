"""The service's job specs take each default from the stage config that declares it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dojo.service.specs import SPECS, STAGE_FIELDS
from dojo.settings import default_of

REQUIRED = {"train": {"dataset": "fleet@v1"}, "eval": {"policy": "naive"}}


@pytest.mark.parametrize("kind", ["drive", "train", "eval", "loop"])
def test_every_spec_default_is_the_stage_configs_default(kind: str) -> None:
    from dojo.loop.config import LoopConfig

    config, names = STAGE_FIELDS[kind]
    source = LoopConfig() if kind == "loop" else config  # a loop job runs the loop's defaults
    spec = SPECS[kind].model_validate(REQUIRED.get(kind, {})).model_dump()
    for path, api in names.items():
        if api in REQUIRED.get(kind, {}):
            continue
        want = default_of(source, path)
        assert spec[api] == (list(want) if isinstance(want, tuple) else want), (kind, path)


def test_the_learning_rate_has_one_default() -> None:
    from dojo.train.config import TrainConfig

    assert (
        SPECS["train"].model_validate(REQUIRED["train"]).model_dump()["lr"]
        == TrainConfig.__dataclass_fields__["lr"].default
    )


def test_specs_stay_strict_with_the_services_bounds_and_descriptions() -> None:
    for bad in ({"cars": 5000}, {"cars": "4"}, {"mode": "fly"}, {"wheels": 4}):
        with pytest.raises(ValidationError):
            SPECS["drive"].model_validate(bad)
    schema = SPECS["drive"].model_json_schema()["properties"]
    assert schema["cars"]["maximum"] == 4096 and schema["cars"]["minimum"] == 1
    assert schema["minutes"]["description"].startswith("simulated minutes per car")
    assert schema["mode"]["enum"] == ["manual", "shadow", "autonomous", "mixed"]
    with pytest.raises(ValidationError):
        SPECS["eval"].model_validate({})  # the service asks for a policy
