"""What the local stack (:mod:`labeling.orthanc.local_stack`) needs of this machine: free loopback
ports, its own processes recognised by ``/proc/<pid>/cmdline``, private files, generated passwords,
and the installed Orthanc and PostgreSQL binaries (found by path globs, never a hard-coded version).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import string
import subprocess
import time
from pathlib import Path
from typing import BinaryIO, Optional

from labeling.orthanc.config import DEBIAN_PLUGIN_DIR, DEBIAN_PLUGINS

ORTHANC_BIN_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
LOG_TAIL_LINES = 30


class LocalStackError(RuntimeError):
    """The local stack could not be started, stopped or inspected; the message says why."""



def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice, so no collision with peers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def generate_password(length: int = 32) -> str:
    """Random letters and digits with at least one of each.

    At least one letter: the orthancteam image parses environment values as JSON, so an all-digit
    password would become a number (docs/architecture.md, Orthanc facts). URL-safe characters only so the
    value needs no quoting in ``orthanc.env`` or a PostgreSQL connection string.
    """
    alphabet = string.ascii_letters + string.digits
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(length))
        if any(c.isalpha() for c in value) and any(c.isdigit() for c in value):
            return value


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (no window where it is 0644)."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def open_private_log(path: Path) -> BinaryIO:
    """``path`` opened for appending, mode 0600 (a log may name patients' images, requests and errors;
    the work directory is 0711 so PostgreSQL can reach its socket): created so, or narrowed if older."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def read_cmdline(pid: int) -> list[str]:
    """``argv`` of a live process, or ``[]`` when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def process_matches(pid: Optional[int], executable_name: str, marker: str) -> bool:
    """Is ``pid`` alive and still the process we started (its argv names our binary and ``marker``)?"""
    if not pid:
        return False
    argv = read_cmdline(pid)
    if not argv:
        return False
    return Path(argv[0]).name == executable_name and any(marker in arg for arg in argv)


def reap(pid: int) -> None:
    """Collect a child that has exited so it does not linger as a zombie (no-op for non-children)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def process_gone(pid: int) -> bool:
    """True once ``pid`` has fully exited (no such process, or a zombie).

    Not "its cmdline is empty": a process that is still exiting has already dropped its memory
    (empty cmdline) but may not yet have closed its sockets, so its port would still be taken.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat[stat.rindex(")") + 2:].split(" ", 1)[0] in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        reap(pid)
        if process_gone(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"({path} is empty)"


def read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def find_orthanc_binary() -> str:
    override = os.environ.get("ORTHANC_BINARY")
    for candidate in ([override] if override else []) + list(ORTHANC_BIN_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("Orthanc")
    if found:
        return found
    raise LocalStackError(
        "Orthanc is not installed (looked for /usr/sbin/Orthanc): "
        "apt-get install orthanc orthanc-postgresql orthanc-dicomweb orthanc-gdcm")


def find_pg_bindir() -> Path:
    override = os.environ.get("PG_BINDIR")
    candidates = [Path(override)] if override else []
    candidates += sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")),
                         key=lambda p: _version_key(p.parent.name), reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise LocalStackError(
        "PostgreSQL server binaries not found (looked for /usr/lib/postgresql/*/bin/initdb): "
        "apt-get install postgresql")


def _version_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in name.split("."))


def check_plugins(plugin_dir: str = DEBIAN_PLUGIN_DIR) -> None:
    for package, filename in (("orthanc-postgresql", DEBIAN_PLUGINS["postgresql"]),
                              ("orthanc-dicomweb", DEBIAN_PLUGINS["dicomweb"]),
                              ("orthanc-gdcm", DEBIAN_PLUGINS["gdcm"])):
        if not Path(plugin_dir, filename).exists():
            raise LocalStackError(f"Orthanc plugin {plugin_dir}/{filename} is missing: apt-get install {package}")


def runuser() -> str:
    """util-linux's runuser, also when /usr/sbin is not on PATH (a plain user's PATH, cron)."""
    return shutil.which("runuser") or "/usr/sbin/runuser"


def postgres_can_reach(directory: Path) -> bool:
    """Can the ``postgres`` user enter ``directory`` (every parent searchable by it)?"""
    probe = subprocess.run([runuser(), "-u", "postgres", "--", "test", "-x", str(directory)],
                           capture_output=True)
    return probe.returncode == 0


def external_pg_home(workdir: Path) -> Path:
    """``<postgres user's home>/dicom-annotate/<hash of workdir>``: short (the socket path must stay
    under 108 bytes, unix(7)) and one per work directory."""
    home = Path(pwd.getpwnam("postgres").pw_dir)
    key = hashlib.sha256(str(workdir).encode()).hexdigest()[:16]
    return home / "dicom-annotate" / key
