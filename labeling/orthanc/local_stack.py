"""A private Orthanc + PostgreSQL on loopback: ``python -m labeling local up|down|status``.

``up`` initialises a PostgreSQL cluster in a work directory, starts it on ``127.0.0.1`` and a free
port, then starts Debian's Orthanc 1.10 with the PostgreSQL index, DICOMweb and GDCM plugins on
another free port. Orthanc's ``orthanc.json`` comes from the project's one configuration generator
(:mod:`labeling.orthanc.config`), so the local stack runs the configuration the cloud runs.

Work directory layout (default ``.local/stack`` under the repository)::

    orthanc.env        0600  export ORTHANC_URL / ORTHANC_USERNAME / ORTHANC_PASSWORD (``source`` it)
    orthanc.json       0600  Orthanc configuration (holds the secrets, hence 0600)
    credentials.json   0600  generated Orthanc admin and PostgreSQL passwords
    stack.json         0600  ports and user names (no secret)
    orthanc.pid / postgres.pid   pids of what ``up`` started; ``down`` stops only those
    orthanc.log        Orthanc's log (stdout + stderr)
    orthanc-storage/   Orthanc's file storage (the DICOM files themselves)
    postgres/          data/, socket/, postgres.log (as root, when the postgres user cannot reach
                       the work dir: ``<postgres home>/dicom-annotate/<key>/`` instead, see below)

Why things are done this way:

* PostgreSQL refuses to run as root (``initdb``/``postgres`` exit), so as root every PostgreSQL
  command runs as the ``postgres`` user through ``runuser`` on a directory that user owns.
  When that user cannot reach the work directory (a clone under Debian's 0700 ``/root``, any
  ``mktemp -d``), the cluster lives instead in ``<postgres home>/dicom-annotate/<key>``, a 0700
  directory the ``postgres`` user owns, where ``<key>`` is a hash of the work directory's path, so
  two work directories never share a cluster. ``local down --purge`` removes it with the rest.
* Run as any other user, PostgreSQL runs as that user on the work directory itself: no sudo.
* The cluster accepts TCP only on 127.0.0.1 with SCRAM passwords; its Unix socket lives in a
  0700 directory of the work dir, where ``trust`` authentication is safe (only its owner can reach it).
* Orthanc 1.10 has no bind-address option: it listens on every interface but, with
  ``RemoteAccessAllowed: false`` (the generator's ``remote_access=False``), refuses any client
  that is not on loopback (Orthanc Book, "Configuration of Orthanc", security options).
* A pid is trusted only while ``/proc/<pid>/cmdline`` still names our binary and our config or
  data directory, so ``down`` can never kill an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import requests

from labeling.orthanc.connection import OrthancConnection
from labeling.orthanc.local_host import (  # noqa: F401 - generate_password, read_cmdline… re-exported (portal, tests)
    ORTHANC_BIN_CANDIDATES, LocalStackError, check_plugins, external_pg_home, find_orthanc_binary, find_pg_bindir,
    free_port, generate_password, log_tail, open_private_log, port_is_free, postgres_can_reach, process_matches, read_cmdline,
    read_pid, reap, runuser, wait_gone, write_private)
from labeling.orthanc.config import (
    POSTGRES_PASSWORD,
    REGISTERED_USERS,
    FilesystemStorage,
    OrthancSettings,
    PostgresIndex,
    postgres_server_options,
    registered_users,
    render_json,
)

from labeling.manifest import INDEX_FILE_ENV  # the package's __init__ only (no numpy)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORKDIR = REPO_ROOT / ".local" / "stack"
ORTHANC_USER = "admin"
PG_USER = "orthanc"
PG_DATABASE = "orthanc"
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class StackInfo:
    """Where the local stack is and whether its processes run (never holds a password)."""

    workdir: str
    url: str
    username: str
    http_port: int
    postgres_port: int
    orthanc_pid: Optional[int]
    postgres_pid: Optional[int]
    orthanc_alive: bool
    postgres_alive: bool
    env_file: str
    already_running: bool = False

    @property
    def running(self) -> bool:
        return self.orthanc_alive and self.postgres_alive

    @property
    def explorer_url(self) -> str:
        return f"{self.url}/app/explorer.html"

    def to_json(self) -> dict:
        data = asdict(self)
        data["running"] = self.running
        data["explorer_url"] = self.explorer_url
        return data


# ---------------------------------------------------------------------------------------------
# the stack


class LocalStack:
    """One PostgreSQL cluster and one Orthanc, both owned by a work directory."""

    def __init__(self, workdir: Path | str = DEFAULT_WORKDIR) -> None:
        self.workdir = Path(workdir).resolve()
        self._as_root = os.geteuid() == 0
        self.pg_dir = self._pg_home()
        self.storage_dir = self.workdir / "orthanc-storage"
        self.config_file = self.workdir / "orthanc.json"
        self.env_file = self.workdir / "orthanc.env"
        self.manifest_index_file = self.workdir / "manifest-index.json"  # PatientIDs: purge removes it
        self.credentials_file = self.workdir / "credentials.json"
        self.state_file = self.workdir / "stack.json"
        self.orthanc_log = self.workdir / "orthanc.log"
        self.orthanc_pid_file = self.workdir / "orthanc.pid"
        self.postgres_pid_file = self.workdir / "postgres.pid"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket(self) -> Path:
        return self.pg_dir / "socket"

    @property
    def pg_log(self) -> Path:
        return self.pg_dir / "postgres.log"

    def _pg_home(self) -> Path:
        """Where PostgreSQL's data, socket and log live: the work dir's ``postgres/`` when the server
        user can reach it, else a directory keyed by the work dir in the ``postgres`` user's home.
        Once made, the choice sticks (whichever of the two exists)."""
        inside = self.workdir / "postgres"
        if not self._as_root:
            return inside
        try:
            outside = external_pg_home(self.workdir)
        except KeyError:  # no postgres user: PostgreSQL is not installed; find_pg_bindir says so
            return inside
        if inside.exists() or (not outside.exists() and postgres_can_reach(self.workdir)):
            return inside
        return outside

    # -- public API ---------------------------------------------------------------------------

    def up(self, timeout: float = 60.0) -> StackInfo:
        """Start whatever is not running and wait until Orthanc answers; idempotent.

        On failure stop what this call started and raise :class:`LocalStackError` quoting the log tail.
        """
        self._prepare_workdir()
        with self._lock():
            before = self.status()
            if before.running:
                return _replace(before, already_running=True)
            orthanc_bin = find_orthanc_binary()
            pg_bin = find_pg_bindir()
            check_plugins()
            deadline = time.monotonic() + timeout
            creds = self._credentials()
            state = self._state()
            started_pg = started_orthanc = False
            orthanc_alive = before.orthanc_alive
            if orthanc_alive and not before.postgres_alive:
                self._stop_orthanc()  # its index connection died with PostgreSQL: start both afresh
                orthanc_alive = False
            try:
                if not before.postgres_alive:
                    self._drop_stale_pid(self.postgres_pid_file)
                    state["postgres_port"] = self._pick_port(state.get("postgres_port"))
                    self._save_state(state)
                    self._start_postgres(pg_bin, creds["postgres_password"], state["postgres_port"], deadline)
                    started_pg = True
                self._ensure_database(pg_bin, state["postgres_port"])
                if not orthanc_alive:
                    self._drop_stale_pid(self.orthanc_pid_file)
                    state["http_port"] = self._pick_port(state.get("http_port"),
                                                         avoid={state["postgres_port"]})
                    self._save_state(state)
                    self._write_orthanc_files(creds, state)
                    started_orthanc = True
                    self._start_orthanc(orthanc_bin, deadline)
            except BaseException:
                if started_orthanc:
                    self._stop_orthanc()
                if started_pg:
                    self._stop_postgres(pg_bin)
                raise
            return self.status()

    def down(self) -> list[str]:
        """Stop the processes whose pid files ``up`` wrote (only if they are still ours).

        Returns one line per action, for the CLI to print.
        """
        if not self.workdir.exists():
            return [f"nothing to stop: {self.workdir} does not exist"]
        with self._lock():
            actions = [self._stop_orthanc()]
            try:
                pg_bin: Optional[Path] = find_pg_bindir()
            except LocalStackError:
                pg_bin = None
            actions.append(self._stop_postgres(pg_bin))
            return actions

    def status(self) -> StackInfo:
        state = self._state()
        http_port = int(state.get("http_port") or 0)
        orthanc_pid = read_pid(self.orthanc_pid_file)
        postgres_pid = read_pid(self.postgres_pid_file)
        return StackInfo(
            workdir=str(self.workdir),
            url=f"http://127.0.0.1:{http_port}" if http_port else "",
            username=state.get("orthanc_username", ORTHANC_USER),
            http_port=http_port,
            postgres_port=int(state.get("postgres_port") or 0),
            orthanc_pid=orthanc_pid,
            postgres_pid=postgres_pid,
            orthanc_alive=self._orthanc_is_ours(orthanc_pid),
            postgres_alive=self._postgres_is_ours(postgres_pid),
            env_file=str(self.env_file),
        )

    def restart_orthanc(self, timeout: float = 60.0, *, grace: float = STOP_TIMEOUT_S) -> StackInfo:
        """Stop Orthanc and start it again on the same port and database.

        Orthanc gets SIGTERM, then SIGKILL after ``grace`` seconds, as ECS does on a task stop
        (``stopTimeout``). Orthanc 1.10 finishes serving its keep-alive connections before it
        exits, so while a client keeps sending, only the SIGKILL really stops it; a short
        ``grace`` is how a test restarts it under load.
        """
        with self._lock():
            info = self.status()
            if not info.postgres_alive:
                raise LocalStackError(f"PostgreSQL of {self.workdir} is not running: run `local up` first")
            self._stop_orthanc(grace)
            self._start_orthanc(find_orthanc_binary(), time.monotonic() + timeout)
            return self.status()

    def connection(self) -> OrthancConnection:
        """How to reach this stack's Orthanc (URL and the generated admin credentials)."""
        info = self.status()
        if not info.url:
            raise LocalStackError(f"{self.workdir}: no stack was started here (run `local up`)")
        creds = self._load_credentials()
        if creds is None:
            raise LocalStackError(f"{self.credentials_file}: missing; run `local up`")
        return OrthancConnection(url=info.url, username=creds["orthanc_username"],
                                 password=creds["orthanc_password"])

    def reset_database(self, timeout: float = 60.0) -> StackInfo:
        """Empty Orthanc: stop it, recreate its database and storage, start it again.

        Far faster than deleting every patient through the REST API, and leaves no background
        deletion work that would skew a benchmark run right after it.
        """
        with self._lock():
            info = self.status()
            if not info.postgres_alive:
                raise LocalStackError(f"PostgreSQL of {self.workdir} is not running: run `local up` first")
            pg_bin = find_pg_bindir()
            self._stop_orthanc(grace=5.0)  # its data is being thrown away: no need to wait long
            self._run_pg([str(pg_bin / "dropdb"), "--if-exists", *self._pg_conn_args(info.postgres_port),
                          PG_DATABASE], "dropdb")
            shutil.rmtree(self.storage_dir, ignore_errors=True)
            self.storage_dir.mkdir(mode=0o700)
            self._ensure_database(pg_bin, info.postgres_port)
            self._start_orthanc(find_orthanc_binary(), time.monotonic() + timeout)
            return self.status()

    # -- state files --------------------------------------------------------------------------

    def _prepare_workdir(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not any(p.name != ".lock" for p in self.workdir.iterdir()):
            # A fresh directory is ours to set up (mkdtemp makes it 0700): 0711 lets the postgres
            # user traverse to postgres/ while nobody else may list the files.
            os.chmod(self.workdir, 0o711)
        self.storage_dir.mkdir(mode=0o700, exist_ok=True)
        self.pg_dir = self._pg_home()  # the chmod above may have made the work dir reachable
        self.pg_dir.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.pg_dir.mkdir(mode=0o700, exist_ok=True)
        if self._as_root:
            shutil.chown(self.pg_dir, "postgres", "postgres")
            if self.pg_dir.parent != self.workdir:
                shutil.chown(self.pg_dir.parent, "postgres", "postgres")
                (self.pg_dir / "workdir").write_text(f"{self.workdir}\n")  # which work dir made it
                shutil.chown(self.pg_dir / "workdir", "postgres", "postgres")

    def purge(self) -> list[str]:
        """Stop everything (as :meth:`down`) and delete all that ``up`` made: the work directory's
        stack files and, when PostgreSQL lived outside it, that directory too."""
        actions = self.down()
        if not self.workdir.exists():
            return actions
        with self._lock():
            removed = []
            if self.pg_dir.parent != self.workdir and self.pg_dir.exists():
                shutil.rmtree(self.pg_dir)
                removed.append(str(self.pg_dir))
            for path in (self.workdir / "postgres", self.storage_dir):
                if path.exists():
                    shutil.rmtree(path)
                    removed.append(str(path))
            for path in (self.config_file, self.env_file, self.credentials_file, self.state_file,
                         self.orthanc_log, self.orthanc_pid_file, self.postgres_pid_file,
                         self.manifest_index_file):
                if path.exists():
                    path.unlink()
                    removed.append(str(path))
        return actions + [f"removed {path}" for path in removed]

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise up/down/restart on one work directory (two `up` at once would race on ports)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.workdir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save_state(self, state: dict) -> None:
        write_private(self.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n")

    def _load_credentials(self) -> Optional[dict]:
        try:
            return json.loads(self.credentials_file.read_text())
        except (OSError, ValueError):
            return None

    def _credentials(self) -> dict:
        creds = self._load_credentials()
        if creds is None:
            creds = {"orthanc_username": ORTHANC_USER, "orthanc_password": generate_password(),
                     "postgres_username": PG_USER, "postgres_password": generate_password()}
            write_private(self.credentials_file, json.dumps(creds, indent=2) + "\n")
        return creds

    def _pick_port(self, previous: Optional[int], avoid: frozenset | set = frozenset()) -> int:
        if previous and previous not in avoid and port_is_free(int(previous)):
            return int(previous)  # keep the URL stable across down/up when possible
        while True:
            port = free_port()
            if port not in avoid:
                return port

    def _drop_stale_pid(self, pid_file: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()

    # -- PostgreSQL ---------------------------------------------------------------------------

    def _pg_prefix(self) -> list[str]:
        return [runuser(), "-u", "postgres", "--"] if self._as_root else []

    def _run_pg(self, argv: Sequence[str], what: str, timeout: float = 60.0,
                check: bool = True) -> subprocess.CompletedProcess:
        try:
            result = subprocess.run(self._pg_prefix() + list(argv), capture_output=True, text=True,
                                    timeout=timeout, cwd=self.pg_dir, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LocalStackError(f"PostgreSQL {what}: no answer within {timeout:.0f} s\n"
                                  f"--- {self.pg_log} (tail) ---\n{log_tail(self.pg_log)}") from None
        if check and result.returncode != 0:
            raise LocalStackError(f"PostgreSQL {what} failed (exit {result.returncode}): "
                                  f"{(result.stderr or result.stdout).strip()}\n"
                                  f"--- {self.pg_log} (tail) ---\n{log_tail(self.pg_log)}")
        return result

    def _pg_conn_args(self, port: int) -> list[str]:
        return ["-h", str(self.pg_socket), "-p", str(port), "-U", PG_USER]

    def _start_postgres(self, pg_bin: Path, password: str, port: int, deadline: float) -> None:
        self.pg_socket.mkdir(mode=0o700, exist_ok=True)
        if self._as_root:
            shutil.chown(self.pg_socket, "postgres", "postgres")
        if not (self.pg_data / "PG_VERSION").exists():
            self._initdb(pg_bin, password)
        remaining = max(5, int(deadline - time.monotonic()))
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {self.pg_socket} "
                   # A bounded footprint on a laptop.
                   "-c max_connections=50 -c shared_buffers=64MB "
                   # Asynchronous commit, local only (its trade-off: labeling.orthanc.config).
                   + " ".join(postgres_server_options()))
        self._run_pg([str(pg_bin / "pg_ctl"), "-D", str(self.pg_data), "-l", str(self.pg_log),
                      "-w", "-t", str(remaining), "-o", options, "start"], "start", timeout=remaining + 10)
        pid = read_pid(self.pg_data / "postmaster.pid")
        if not pid:
            raise LocalStackError(f"PostgreSQL started but wrote no {self.pg_data}/postmaster.pid\n"
                                  f"--- {self.pg_log} (tail) ---\n{log_tail(self.pg_log)}")
        self.postgres_pid_file.write_text(f"{pid}\n")

    def _initdb(self, pg_bin: Path, password: str) -> None:
        pwfile = self.pg_dir / "initdb.pw"
        write_private(pwfile, password + "\n")
        if self._as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            self._run_pg([str(pg_bin / "initdb"), "-D", str(self.pg_data), "-U", PG_USER,
                          f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                          "-E", "UTF8", "--no-locale"], "initdb", timeout=120)
        finally:
            with contextlib.suppress(FileNotFoundError):
                pwfile.unlink()

    def _ensure_database(self, pg_bin: Path, port: int) -> None:
        query = f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"
        found = self._run_pg([str(pg_bin / "psql"), *self._pg_conn_args(port), "-d", "postgres",
                              "-tAc", query], "database check")
        if found.stdout.strip() != "1":
            self._run_pg([str(pg_bin / "createdb"), *self._pg_conn_args(port), PG_DATABASE], "createdb")

    def _postgres_is_ours(self, pid: Optional[int]) -> bool:
        return process_matches(pid, "postgres", str(self.pg_data))

    def _stop_postgres(self, pg_bin: Optional[Path]) -> str:
        pid = read_pid(self.postgres_pid_file)
        if pid is None:
            return "postgres: not started by this work dir (no postgres.pid)"
        if not self._postgres_is_ours(pid):
            self._drop_stale_pid(self.postgres_pid_file)
            return f"postgres: pid {pid} is no longer ours (gone or another program); left alone"
        stopped = False
        if pg_bin is not None:
            result = self._run_pg([str(pg_bin / "pg_ctl"), "-D", str(self.pg_data), "-m", "fast", "-w",
                                   "-t", str(int(STOP_TIMEOUT_S)), "stop"], "stop",
                                  timeout=STOP_TIMEOUT_S + 10, check=False)
            stopped = result.returncode == 0 and wait_gone(pid, 5)
        if not stopped and self._postgres_is_ours(pid):
            os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast shutdown" signal
            if not wait_gone(pid, STOP_TIMEOUT_S):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 5)
        self._drop_stale_pid(self.postgres_pid_file)
        return f"postgres: stopped pid {pid}"

    # -- Orthanc ------------------------------------------------------------------------------

    def settings(self, http_port: int, postgres_port: int) -> OrthancSettings:
        """The typed settings of the local Orthanc (rendered by the project's one generator)."""
        return OrthancSettings(
            index=PostgresIndex(host="127.0.0.1", port=postgres_port, database=PG_DATABASE,
                                username=PG_USER, ssl=False),
            storage=FilesystemStorage(str(self.storage_dir)),
            name="dicom-annotate-local",
            http_port=http_port,
            dicom_server=False,
            remote_access=False,
        )

    def _write_orthanc_files(self, creds: dict, state: dict) -> None:
        settings = self.settings(state["http_port"], state["postgres_port"])
        config = render_json(settings, secrets={
            POSTGRES_PASSWORD: creds["postgres_password"],
            REGISTERED_USERS: registered_users(creds["orthanc_username"], creds["orthanc_password"]),
        })
        write_private(self.config_file, json.dumps(config, indent=2) + "\n")
        url = f"http://127.0.0.1:{state['http_port']}"
        write_private(self.env_file,
                      f"# written by `python -m labeling local up`; `source` this file\n"
                      f"export ORTHANC_URL={url}\n"
                      f"export ORTHANC_USERNAME={creds['orthanc_username']}\n"
                      f"export ORTHANC_PASSWORD={creds['orthanc_password']}\n"
                      f"export {INDEX_FILE_ENV}={self.manifest_index_file}\n")
        state["orthanc_username"] = creds["orthanc_username"]
        self._save_state(state)

    def _orthanc_is_ours(self, pid: Optional[int]) -> bool:
        return process_matches(pid, Path(find_orthanc_binary_or_default()).name, str(self.config_file))

    def _start_orthanc(self, orthanc_bin: str, deadline: float) -> None:
        state = self._state()
        port = int(state["http_port"])
        port_deadline = time.monotonic() + 5  # a just-stopped Orthanc may hold it a moment longer
        while not port_is_free(port):
            if time.monotonic() >= port_deadline:
                raise LocalStackError(f"Orthanc port 127.0.0.1:{port} is taken by another program; "
                                      "run `local down` and `local up` to pick a new one")
            time.sleep(0.1)
        with open_private_log(self.orthanc_log) as log:
            log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} starting Orthanc ----\n".encode())
            log.flush()
            process = subprocess.Popen([orthanc_bin, str(self.config_file)], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                       start_new_session=True)  # outlives `local up`; no terminal signals
        write_private(self.orthanc_pid_file, f"{process.pid}\n")
        self._wait_orthanc_ready(process, state, deadline)

    def _wait_orthanc_ready(self, process: subprocess.Popen, state: dict, deadline: float) -> None:
        """Poll GET /system (the cheapest authenticated route) until it answers 200."""
        creds = self._credentials()
        url = f"http://127.0.0.1:{state['http_port']}/system"
        auth = (creds["orthanc_username"], creds["orthanc_password"])
        last = "no answer yet"
        with requests.Session() as session:
            while True:
                code = process.poll()
                if code is not None:
                    raise LocalStackError(f"Orthanc exited with status {code} while starting\n"
                                          f"--- {self.orthanc_log} (tail) ---\n{log_tail(self.orthanc_log)}")
                try:
                    answer = session.get(url, auth=auth, timeout=2)
                    if answer.status_code == 200:
                        return
                    last = f"HTTP {answer.status_code}"
                except requests.RequestException as exc:
                    last = type(exc).__name__
                if time.monotonic() >= deadline:
                    raise LocalStackError(f"Orthanc did not become ready on {url} in time ({last})\n"
                                          f"--- {self.orthanc_log} (tail) ---\n{log_tail(self.orthanc_log)}")
                time.sleep(0.1)

    def _stop_orthanc(self, grace: float = STOP_TIMEOUT_S) -> str:
        pid = read_pid(self.orthanc_pid_file)
        if pid is None:
            return "orthanc: not started by this work dir (no orthanc.pid)"
        if not self._orthanc_is_ours(pid):
            reap(pid)
            self._drop_stale_pid(self.orthanc_pid_file)
            return f"orthanc: pid {pid} is no longer ours (gone or another program); left alone"
        os.kill(pid, signal.SIGTERM)  # Orthanc finishes its requests and closes the index cleanly
        if wait_gone(pid, grace):
            how = "stopped"
        else:
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 5)
            how = f"killed (still serving after {grace:.0f} s)"
        self._drop_stale_pid(self.orthanc_pid_file)
        return f"orthanc: {how} pid {pid}"


def find_orthanc_binary_or_default() -> str:
    try:
        return find_orthanc_binary()
    except LocalStackError:
        return ORTHANC_BIN_CANDIDATES[0]


def _replace(info: StackInfo, **changes) -> StackInfo:
    data = asdict(info)
    data.update(changes)
    return StackInfo(**data)
