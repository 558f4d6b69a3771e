"""The server side of ``bench/ingest.py``: the Orthanc/PostgreSQL settings tried, a local stack that
switches between them, and CPU accounting from /proc (who used the machine during a run)."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from labeling.orthanc.config import LOCAL_POSTGRES_SETTINGS, OrthancSettings

if TYPE_CHECKING:
    from labeling.orthanc.local_stack import LocalStack

# ---------------------------------------------------------------------------------------------
# the Orthanc under test, and the server settings tried


@dataclass(frozen=True)
class ServerConfig:
    """One server configuration: changes to the generated Orthanc settings, PostgreSQL options."""

    what: str
    settings: Callable[[OrthancSettings], OrthancSettings] = lambda settings: settings
    postgres: tuple[tuple[str, str], ...] = ()  # ALTER ROLE <Orthanc's> SET name = value (others RESET)


# Not tried: StoreMD5ForAttachments false (Orthanc 1.10 refuses to start with it while CheckRevisions,
# which several tasks sharing one index need, is on); StorageCompression, SaveJobs and
# OverwriteInstances are already false in the generated configuration.
SERVER_CONFIGS: dict[str, ServerConfig] = {
    "base": ServerConfig("as labeling.orthanc.config generates it for the local stack"),
    "conn2": ServerConfig("IndexConnectionsCount 2",
                          lambda s: replace(s, index=replace(s.index, index_connections=2))),
    "conn4": ServerConfig("IndexConnectionsCount 4",
                          lambda s: replace(s, index=replace(s.index, index_connections=4))),
    "fsync": ServerConfig("SyncStorageArea true (fsync after each file written)",
                          lambda s: replace(s, storage=replace(s.storage, sync=True))),
    "nofsync": ServerConfig("SyncStorageArea false (no fsync after each file written)",
                            lambda s: replace(s, storage=replace(s.storage, sync=False))),
    "nometrics": ServerConfig("MetricsEnabled false",
                              lambda s: replace(s, extra={**s.extra, "MetricsEnabled": False})),
    "pgsync": ServerConfig("PostgreSQL synchronous_commit on (its default; RDS's)",
                           postgres=(("synchronous_commit", "on"),)),
    "pgasync": ServerConfig("PostgreSQL " + ", ".join(f"{k} {v}" for k, v in LOCAL_POSTGRES_SETTINGS.items())
                            + " (labeling.orthanc.config.LOCAL_POSTGRES_SETTINGS)",
                            postgres=tuple(LOCAL_POSTGRES_SETTINGS.items())),
}
POSTGRES_OPTIONS = sorted({name for config in SERVER_CONFIGS.values() for name, _ in config.postgres})


def server_config(name: str) -> ServerConfig:
    """A :data:`SERVER_CONFIGS` entry, or several joined by ``+`` (applied left to right)."""
    parts = [SERVER_CONFIGS[part] for part in name.split("+")]  # KeyError: unknown name
    if len(parts) == 1:
        return parts[0]

    def settings(value: OrthancSettings) -> OrthancSettings:
        for part in parts:
            value = part.settings(value)
        return value

    return ServerConfig(" + ".join(part.what for part in parts), settings,
                        tuple(option for part in parts for option in part.postgres))


def bench_stack_class() -> type:
    """LocalStack whose Orthanc settings and PostgreSQL options can be switched between runs."""
    from labeling.orthanc.local_stack import PG_USER, LocalStack, find_pg_bindir

    class BenchStack(LocalStack):
        server: ServerConfig = SERVER_CONFIGS["base"]

        def settings(self, http_port: int, postgres_port: int) -> OrthancSettings:
            return self.server.settings(super().settings(http_port, postgres_port))

        def configure(self, server: ServerConfig) -> None:
            """Switch to ``server`` (applied by the next reset, which restarts Orthanc)."""
            if server == self.server:
                return
            self.server = server
            self._write_orthanc_files(self._credentials(), self._state())
            # Per role: survives the database's drop + create, and overrides the server's own
            # options (command line, files) for Orthanc's sessions, which start after the reset.
            wanted = dict(server.postgres)
            port = self.status().postgres_port
            for name in POSTGRES_OPTIONS:
                sql = (f"ALTER ROLE {PG_USER} SET {name} = '{wanted[name]}'" if name in wanted
                       else f"ALTER ROLE {PG_USER} RESET {name}")
                self._run_pg([str(find_pg_bindir() / "psql"), *self._pg_conn_args(port), "-d", "postgres",
                              "-tAc", sql], "alter role")
                if name in wanted:  # what a new session of Orthanc's user gets
                    shown = self._run_pg([str(find_pg_bindir() / "psql"), *self._pg_conn_args(port), "-d",
                                          "postgres", "-tAc", f"SHOW {name}"], "show").stdout.strip()
                    if shown != wanted[name]:
                        raise SystemExit(f"PostgreSQL {name}: {shown!r} after ALTER ROLE, expected {wanted[name]!r}")

    return BenchStack


# ---------------------------------------------------------------------------------------------
# CPU accounting: who used the machine during a run


TICK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1


def _cpu_line() -> list[int]:
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, /proc/stat)."""
    fields = _cpu_line()
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def machine_iowait_s() -> float:
    """CPU seconds the machine sat idle with disk I/O outstanding (all CPUs, /proc/stat)."""
    return _cpu_line()[4] / TICK


def process_cpu_s(pid: int, with_children: bool = False) -> float:
    """utime + stime of ``pid`` (all its threads), plus its reaped children's with ``with_children``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def run_queue_wait_s(pid: int) -> float:
    """Seconds the live threads of ``pid`` spent runnable but waiting for a CPU
    (``/proc/<pid>/task/*/schedstat``, second field): the cost of sharing the cores."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


@dataclass(frozen=True)
class ServerCpu:
    orthanc: float
    postgres: float
    waited: float   # run-queue wait of Orthanc's and PostgreSQL's live threads


def server_cpu_s(stack: Optional[LocalStack]) -> Optional[ServerCpu]:
    """CPU seconds of our Orthanc and of PostgreSQL (postmaster + backends, live and exited)."""
    if stack is None:
        return None
    info = stack.status()
    if not info.orthanc_pid or not info.postgres_pid:
        return None
    postgres = process_cpu_s(info.postgres_pid, with_children=True)
    waited = run_queue_wait_s(info.orthanc_pid) + run_queue_wait_s(info.postgres_pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == info.postgres_pid:
                postgres += process_cpu_s(int(entry.name))
                waited += run_queue_wait_s(int(entry.name))
    return ServerCpu(process_cpu_s(info.orthanc_pid), postgres, waited)


def pressure_s(resource_name: str) -> Optional[float]:
    """Seconds during which some task waited for ``cpu`` or ``io`` (Linux PSI, /proc/pressure)."""
    try:
        first = Path(f"/proc/pressure/{resource_name}").read_text().split("\n", 1)[0]
    except OSError:
        return None
    return int(first.rsplit("total=", 1)[1]) / 1e6


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children (the client runs as one)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait`` s) until other programs use < ``threshold`` CPUs; return their load."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, own0, t0 = machine_busy_s(), time.process_time(), time.monotonic()
        time.sleep(1.0)
        load = (machine_busy_s() - busy0 - (time.process_time() - own0)) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= deadline:
            return load
