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


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, lambda cores: cores),
        ({"UGAN_JOBS": "2"}, lambda cores: max(1, cores // 2)),
        ({"UGAN_JOBS": "64"}, lambda cores: 1),
        ({"UGAN_THREADS": "3", "UGAN_JOBS": "2"}, lambda cores: 3),
        ({"OMP_NUM_THREADS": "1", "UGAN_JOBS": "1"}, lambda cores: 1),
    ],
)
def test_a_stage_sizes_torch_threads_by_the_jobs_sharing_the_machine(env, expected):
    """In a fresh process, as DVC starts a stage: torch's pool is the cores this process may
    use divided by UGAN_JOBS, unless the user set UGAN_THREADS or OMP_NUM_THREADS."""
    import os
    import subprocess

    from ugan.core.runtime import available_cores

    code = (
        "import torch\n"
        "from ugan.core.runtime import entry_point\n"
        "entry_point(lambda: print(torch.get_num_threads()))()\n"
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "UGAN_JOBS", "UGAN_THREADS")
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == expected(available_cores())
