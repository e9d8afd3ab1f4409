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


def test_a_stage_without_torch_is_not_made_to_import_it_to_size_threads():
    """prepare and report never import torch; sizing threads must not import it for them."""
    import subprocess

    code = (
        "import sys\n"
        "from ugan.core.runtime import entry_point\n"
        "entry_point(lambda: print('torch' in sys.modules))()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# A stage script: a thread still writing, an atexit hook, output left unflushed, and an object
# whose __del__ runs only in the interpreter's module teardown.
FINISHING_STAGE = """
import atexit, sys, threading, time
from pathlib import Path
from ugan.core.runtime import entry_point

class Teardown:
    def __del__(self):
        print("module teardown ran")

kept = Teardown()

def late_write():
    time.sleep(0.3)
    Path("thread.txt").write_text("done")

@entry_point
def main(*argv):
    threading.Thread(target=late_write).start()
    atexit.register(lambda: Path("atexit.txt").write_text("done"))
    sys.stdout.write("unflushed line")

if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("fast", ["1", "0"])
def test_a_finished_stage_skips_module_teardown_but_loses_nothing(tmp_path, fast):
    """A stage run as a program ends without the interpreter's teardown of every module (≈1 s
    per stage): its threads still finish, its atexit hooks still run and its output is
    flushed. UGAN_FAST_EXIT=0 keeps the slow, full teardown."""
    import os
    import subprocess

    (tmp_path / "stage.py").write_text(FINISHING_STAGE)
    result = subprocess.run(
        [sys.executable, "stage.py"],
        cwd=tmp_path,
        env=os.environ | {"UGAN_FAST_EXIT": fast},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("unflushed line")
    assert (tmp_path / "thread.txt").read_text() == "done"
    assert (tmp_path / "atexit.txt").read_text() == "done"
    assert ("module teardown ran" in result.stdout) == (fast == "0")


def test_a_stage_called_from_python_does_not_end_the_caller(monkeypatch):
    """Called by a test or another module (not the program Python started), main returns."""
    monkeypatch.setattr(sys, "argv", ["stage.py"])
    ran: list[int] = []
    entry_point(lambda: ran.append(1))()  # os._exit here would end pytest, failing the run
    assert ran == [1]
