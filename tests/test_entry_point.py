"""A command's errors: only a `UserError` (one the user can act on) prints one line and exits 2;
any other exception is a bug and keeps its traceback, so the Prefect flow does not mistake it
for a config error (which it never retries)."""

from __future__ import annotations

import sys

import pytest

from ugan.core.errors import ConfigError, InputMissingError, UserError
from ugan.core.runtime import entry_point


def _run(monkeypatch, error: BaseException) -> None:
    def main(*argv: str) -> None:
        assert argv == ("key",)
        raise error

    monkeypatch.setattr(sys, "argv", ["stage.py", "key"])
    entry_point(main)()


@pytest.mark.parametrize("error", [ConfigError("gan.loss: got 'x'"), InputMissingError("no data")])
def test_a_user_error_is_one_line_and_exit_2(monkeypatch, capsys, error):
    with pytest.raises(SystemExit) as stopped:
        _run(monkeypatch, error)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == f"error: {error}\n"


@pytest.mark.parametrize("error", [ValueError("a bug"), FileNotFoundError("a bug"), KeyError("k")])
def test_any_other_error_keeps_its_traceback(monkeypatch, error):
    assert not isinstance(error, UserError)
    with pytest.raises(type(error)):
        _run(monkeypatch, error)


def test_ctrl_c_exits_130(monkeypatch, capsys):
    with pytest.raises(SystemExit) as stopped:
        _run(monkeypatch, KeyboardInterrupt())
    assert stopped.value.code == 130 and "interrupted" in capsys.readouterr().err
