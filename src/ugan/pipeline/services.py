"""The shared services of a cluster: PostgreSQL, an MLflow tracking server backed by it (artifacts
proxied by the server), and a Prefect server (its own database in the same PostgreSQL).

    ugan services up [--host 127.0.0.1] [--home .ugan/services]   # start all three, detached
    ugan services status
    ugan services down

Everything a service keeps lives under `--home`: the PostgreSQL data folder (unless
`--pg-data`), MLflow's artifacts, Prefect's home, the logs and pid files. Each service binds to
`--host` (127.0.0.1 by default; the LAN address for a real cluster). The database password is
`UGAN_DB_PASSWORD` when set, else a random one written to `<home>/db-password` (mode 0600):
never in params.yaml, never in git. PostgreSQL refuses to run as root: as root, its programs run
as the OS user `postgres` (`runuser`), and its data folder must be reachable by that user.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ugan.core.errors import UserError

PG_BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14")]
DB_USER = "ugan"
DATABASES = ("mlflow", "prefect")
PASSWORD_ENV = "UGAN_DB_PASSWORD"
START_TIMEOUT = 240.0  # seconds for a server to answer its health check on a busy machine


class ServiceError(UserError):
    """A service cannot be installed, started or reached; the message says what to do."""


@dataclass
class Services:
    home: Path
    host: str = "127.0.0.1"
    pg_port: int = 5432
    mlflow_port: int = 5000
    prefect_port: int = 4200
    pg_data: Path | None = None
    mlflow_workers: int = 1

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        self.pg_data = Path(self.pg_data or self.home / "postgres").resolve()
        self._procs: dict[str, subprocess.Popen] = {}

    # -- addresses ---------------------------------------------------------------------------

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def prefect_api(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"

    def database_url(self, name: str, driver: str = "postgresql") -> str:
        return f"{driver}://{DB_USER}:{self.password()}@{self.host}:{self.pg_port}/{name}"

    def password(self) -> str:
        if os.environ.get(PASSWORD_ENV):
            return os.environ[PASSWORD_ENV]
        path = self.home / "db-password"
        if not path.is_file():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def env(self) -> dict[str, str]:
        """What a user (or a worker on this machine) exports to use the services."""
        return {"MLFLOW_TRACKING_URI": self.mlflow_uri, "PREFECT_API_URL": self.prefect_api}

    # -- PostgreSQL --------------------------------------------------------------------------

    def _pg(self, program: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """A PostgreSQL program, as the `postgres` OS user when we are root."""
        binary = pg_binary(program)
        cmd = [str(binary), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(cmd, cwd="/", **kwargs)

    def _psql(self, sql: str, database: str = "postgres") -> str:
        result = self._pg(
            "psql", "-h", str(self.pg_data), "-p", str(self.pg_port), "-U", "postgres",
            "-d", database, "-tAc", sql,
        )  # fmt: skip
        if result.returncode:
            raise ServiceError(f"psql: {sql.split()[0]} …: {result.stderr.strip()}")
        return result.stdout.strip()

    def start_postgres(self) -> None:
        data = self.pg_data
        if not (data / "PG_VERSION").is_file():
            data.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(data, "postgres", "postgres")
            data.chmod(0o700)
            result = self._pg(
                "initdb", "-D", str(data), "-U", "postgres", "--auth-local=trust",
                "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions",
            )  # fmt: skip
            if result.returncode:
                raise ServiceError(
                    f"initdb {data} failed: {result.stderr.strip()[-800:]} (as root, the OS user "
                    "`postgres` must be able to reach this folder: pass --pg-data)"
                )
            with open(data / "pg_hba.conf", "a") as hba:  # other machines: password only
                hba.write(f"host all {DB_USER} all scram-sha-256\n")
        if self._pg("pg_ctl", "-D", str(data), "status").returncode != 0:
            options = f"-h {self.host} -p {self.pg_port} -k {data}"
            result = self._pg(
                "pg_ctl", "-D", str(data), "-l", str(data / "server.log"), "-o", options,
                "-w", "-t", str(int(START_TIMEOUT)), "start",
            )  # fmt: skip
            if result.returncode:
                log = (data / "server.log").read_text()[-1500:] if os.geteuid() else ""
                raise ServiceError(f"PostgreSQL did not start: {result.stdout}{log}")
        self._create_databases()

    def _create_databases(self) -> None:
        quoted = self.password().replace("'", "''")
        if not self._psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}'"):
            self._psql(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{quoted}'")
        else:
            self._psql(f"ALTER ROLE {DB_USER} PASSWORD '{quoted}'")
        for name in DATABASES:
            if not self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
                self._psql(f"CREATE DATABASE {name} OWNER {DB_USER}")

    def stop_postgres(self) -> None:
        if (self.pg_data / "PG_VERSION").is_file():
            self._pg("pg_ctl", "-D", str(self.pg_data), "-m", "fast", "-w", "stop")

    # -- the servers -------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        if _alive(self._pid(name)):
            return
        log = open(self.home / f"{name}.log", "ab")
        proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home,
        )  # fmt: skip
        (self.home / f"{name}.pid").write_text(str(proc.pid))
        self._procs[name] = proc  # polled (not a zombie) while we wait for it to answer

    def _pid(self, name: str) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.home / f"{name}.pid").read_text())
        return None

    def start_mlflow(self) -> None:
        cmd = [
            sys.executable, "-m", "mlflow", "server", "--host", self.host,
            "--port", str(self.mlflow_port), "--workers", str(self.mlflow_workers),
            "--artifacts-destination", str(self.home / "artifacts"),
        ]  # fmt: skip
        env = {
            "MLFLOW_BACKEND_STORE_URI": self.database_url("mlflow"),  # not in argv (ps)
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        self._spawn("mlflow", cmd, env)

    def start_prefect(self) -> None:
        cmd = [
            str(Path(sys.executable).with_name("prefect")), "server", "start",
            "--host", self.host, "--port", str(self.prefect_port),
        ]  # fmt: skip
        env = {
            "PREFECT_HOME": str(self.home / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url(
                "prefect", "postgresql+asyncpg"
            ),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": self.prefect_api,
        }
        self._spawn("prefect", cmd, env)

    def up(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "artifacts").mkdir(exist_ok=True)
        self.start_postgres()
        self.start_mlflow()
        self.start_prefect()
        for name, url in (("mlflow", f"{self.mlflow_uri}/health"),
                          ("prefect", f"{self.prefect_api}/health")):  # fmt: skip
            _wait_healthy(name, url, self._procs.get(name), self.home / f"{name}.log")
        (self.home / "services.json").write_text(json.dumps(self.describe(), indent=2))
        return self.env()

    def down(self) -> list[str]:
        stopped = []
        for name in ("prefect", "mlflow"):
            pid = self._pid(name)
            if _alive(pid):
                _stop_group(pid)
                stopped.append(name)
            (self.home / f"{name}.pid").unlink(missing_ok=True)
        if (self.pg_data / "postmaster.pid").is_file():
            self.stop_postgres()
            stopped.append("postgres")
        return stopped

    def status(self) -> dict[str, bool]:
        pg = (self.pg_data / "PG_VERSION").is_file() and (
            self._pg("pg_ctl", "-D", str(self.pg_data), "status").returncode == 0
        )
        return {
            "postgres": pg,
            "mlflow": _healthy(f"{self.mlflow_uri}/health"),
            "prefect": _healthy(f"{self.prefect_api}/health"),
        }

    def describe(self) -> dict:
        return {
            "host": self.host,
            "postgres": f"{self.host}:{self.pg_port} (databases {', '.join(DATABASES)}, "
            f"user {DB_USER})",
            **self.env(),
            "artifacts": str(self.home / "artifacts"),
            "pg_data": str(self.pg_data),
        }


def pg_binary(program: str) -> Path:
    found = shutil.which(program)
    for folder in PG_BIN_DIRS:
        if (folder / program).is_file():
            return folder / program
    if found:
        return Path(found)
    raise ServiceError(
        f"PostgreSQL's `{program}` is not installed: `apt-get install -y postgresql` "
        "(as root), or point MLFLOW_TRACKING_URI at an existing server"
    )


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(pid: int, grace: float = 20.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:
        return False


def _wait_healthy(name: str, url: str, proc: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _healthy(url):
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise ServiceError(f"the {name} server exited; its log ({log}) ends:\n{tail}")
        time.sleep(0.5)
    raise ServiceError(f"the {name} server did not answer {url} within {START_TIMEOUT:.0f} s")
