"""dojo.errors: one type per kind of failure, each a DojoError, each printed by the CLI as one line."""

from __future__ import annotations

import argparse
import pickle

import pytest

from dojo import cli
from dojo.errors import (
    ConfigError,
    CorruptLogError,
    DojoConfigError,
    DojoError,
    ServiceError,
    StorageFullError,
    TrainingDivergedError,
)

KINDS = [
    ConfigError("loop cars=0 must be a whole number >= 1."),
    CorruptLogError("drive.mcap is truncated.", reason="truncated", path="logs/drive.mcap"),
    StorageFullError("Cannot write state.json: the disk is full.", path="out/state.json"),
    TrainingDivergedError("The loss became nan at step 12.", step=12),
    ServiceError("The service answered 503: no workers.", status=503),
]


def test_the_hierarchy() -> None:
    assert DojoConfigError is ConfigError
    assert issubclass(ConfigError, DojoError) and issubclass(ConfigError, ValueError)
    assert issubclass(CorruptLogError, DojoError) and issubclass(CorruptLogError, ValueError)
    assert issubclass(StorageFullError, DojoError) and issubclass(StorageFullError, OSError)
    assert issubclass(TrainingDivergedError, DojoError)
    assert issubclass(TrainingDivergedError, RuntimeError)
    assert issubclass(ServiceError, DojoError) and issubclass(ServiceError, RuntimeError)
    assert issubclass(DojoError, Exception)
    # the kinds are distinct: catching one does not catch another
    for a in KINDS:
        for b in KINDS:
            assert isinstance(a, type(b)) == (type(a) is type(b))


def test_attributes_default_to_none() -> None:
    assert CorruptLogError("x").reason == "corrupt" and CorruptLogError("x").path is None
    assert StorageFullError("x").path is None
    assert TrainingDivergedError("x").step is None
    assert ServiceError("x").status is None


@pytest.mark.parametrize("err", KINDS, ids=lambda e: type(e).__name__)
def test_each_kind_pickles_with_its_attributes(err: DojoError) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.args == err.args
    assert vars(back) == vars(err)


def test_storage_full_stays_an_os_error_after_pickling() -> None:
    back = pickle.loads(pickle.dumps(StorageFullError("full", path="/x")))
    assert isinstance(back, StorageFullError) and isinstance(back, OSError)
    assert back.path == "/x"


class _Failing:
    """Stands in for the CLI's parser: whatever the arguments, the command raises ``err``."""

    def __init__(self, err: BaseException) -> None:
        self.err = err

    def parse_args(self, argv: object = None) -> argparse.Namespace:
        return argparse.Namespace(func=self.fail)

    def fail(self, _: argparse.Namespace) -> int:
        raise self.err


def _raise(err: BaseException) -> _Failing:
    return _Failing(err)


@pytest.mark.parametrize("err", KINDS, ids=lambda e: type(e).__name__)
def test_the_cli_prints_one_sentence_for_each_kind(
    err: DojoError, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "build_parser", lambda: _raise(err))
    assert cli.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"dojo: error: {err}\n"
    assert "Traceback" not in captured.err


def test_the_cli_lets_other_errors_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "build_parser", lambda: _raise(KeyError("bug")))
    with pytest.raises(KeyError):
        cli.main([])


def test_a_real_config_error_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["world", "survey", "--worlds", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dojo: error: ") and err.count("\n") == 1
