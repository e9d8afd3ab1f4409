"""DVC's experiment queue as `ugan grid` and `ugan queue` use it: start its workers, wait until
the experiments are done, and meanwhile keep the live jobs count (`UGAN_JOBS_FILE`) that the
workers' stages size torch's threads by: the experiments running, plus those queued that a free
worker takes at once. So when the last experiments run out, the ones still training take the
cores of those that ended (`ugan.core.runtime.ThreadsFollower`), and a grid of one experiment
on `--jobs 2` trains on every core instead of on half of them.

The count reaches the stages through the environment the workers start with: workers that were
already running when `ugan` started them (`dvc queue start` again) keep their own environment.
"""

from __future__ import annotations

import subprocess
import time

from ugan.pipeline import side_by_side

POLL_SECONDS = 5.0
ACTIVE = ("Queued", "Running")


def status(env: dict[str, str]) -> str:
    """`dvc queue status`: a table, one experiment per line, its state the last word."""
    command = ["dvc", "queue", "status"]
    return subprocess.run(command, env=env, capture_output=True, text=True).stdout


def states(text: str, names: list[str]) -> dict[str, str]:
    """{experiment name: Queued | Running | Success | Failed} of those of `names` that
    `status`'s text lists."""
    found = {}
    for line in text.splitlines():
        words = line.split()
        for name in names:
            if name in words:
                found[name] = words[-1]
    return found


def _last_words(text: str) -> list[str]:
    """Each listed experiment's state (and the header's and the workers' line's last words)."""
    return [line.split()[-1] for line in text.splitlines() if line.split()]


def load(text: str, jobs: int) -> int:
    """Stage processes the queue's workers run now or at once: Running, plus Queued up to the
    free workers; at least 1."""
    last_words = _last_words(text)
    return max(1, min(jobs, last_words.count("Running") + last_words.count("Queued")))


def active(text: str, names: list[str] | None) -> bool:
    """Whether any of `names` (any experiment when None) is still queued or running."""
    if names is None:
        return any(word in ACTIVE for word in _last_words(text))
    found = states(text, names)
    return any(found.get(name, "Queued") in ACTIVE for name in names)


def start_and_wait(
    jobs: int, env: dict[str, str], names: list[str] | None = None
) -> tuple[int, dict[str, str]]:
    """`dvc queue start -j jobs`, then poll until none of `names` (every experiment when None)
    is queued or running, keeping the jobs count meanwhile: `dvc queue start`'s exit status and
    the last states of `names`."""
    with side_by_side.live_jobs() as counter:
        env = env | counter.env
        counter.set(jobs)
        code = subprocess.call(["dvc", "queue", "start", "-j", str(jobs)], env=env)
        if code:
            return code, {}
        while True:
            text = status(env)
            counter.set(load(text, jobs))
            if not active(text, names):
                return 0, states(text, names or [])
            time.sleep(POLL_SECONDS)
