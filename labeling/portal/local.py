"""The portal next to the local stack (``make demo``): settings, ``portal.env``, start and stop.

The portal's database is ``portal`` on the local stack's PostgreSQL (``labeling/orthanc/local_stack.py``:
127.0.0.1, the cluster's superuser ``orthanc`` with the generated password in ``credentials.json``);
``PORTAL_DB_CREATE=true`` lets ``migrate`` create it. Orthanc is reached with the stack's admin
credentials. The session secret is generated once into ``<workdir>/portal-session-secret`` (0600).
Cookies are not ``Secure`` here because the service is plain http on loopback only — the one case
:class:`~labeling.portal.settings.PortalSettings` allows.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import requests

from labeling.orthanc.local_stack import (REPO_ROOT, LocalStack, LocalStackError, free_port, port_is_free, read_cmdline,
                                  open_private_log, write_private)
from labeling.portal import names as N

PID_FILE = "portal.pid"
USERS_FILE = "portal-users.json"
# What the local portal writes into the stack's work directory (``portal down --purge`` removes them).
PORTAL_FILES = ("portal.env", "portal-session-secret", USERS_FILE, "portal.log", PID_FILE)
CACHE_DIR = "portal-cache"


def local_workers() -> int:
    """uvicorn workers for a portal on this machine: one per CPU it may use, at most 4 (each has its
    own database pool; the cloud task's count is set by components/portal.py's connection budget)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def portal_env(stack_workdir: Path | str, port: int = 8000) -> dict[str, str]:
    """``PORTAL_*``/``ORTHANC_*`` variables for a portal beside the stack in ``stack_workdir``."""
    stack = LocalStack(Path(stack_workdir))
    info = stack.status()
    if not info.running:
        raise LocalStackError(f"{stack_workdir}: the local stack is not running; run `python -m labeling local up`")
    creds = json.loads(stack.credentials_file.read_text())
    conn = stack.connection()
    secret_file = Path(stack_workdir) / "portal-session-secret"
    if not secret_file.is_file():
        write_private(secret_file, secrets.token_urlsafe(48) + "\n")
    return {
        N.DB_HOST: "127.0.0.1", N.DB_PORT: str(info.postgres_port), N.DB_NAME: "portal",
        N.DB_USER: creds["postgres_username"], N.DB_PASSWORD: creds["postgres_password"],
        N.DB_SSLMODE: "disable", N.DB_CREATE: "true", N.AUTH_MODE: "local",
        N.SESSION_SECRET: secret_file.read_text().strip(), N.COOKIE_SECURE: "false",
        N.HOST: "127.0.0.1", N.PORT: str(port),
        N.CACHE_DIR: str(Path(stack_workdir).resolve() / CACHE_DIR),  # absolute: _is_our_portal matches it
        N.WORKERS: str(local_workers()),
        N.ORTHANC_URL: conn.url, N.ORTHANC_USERNAME: conn.username, N.ORTHANC_PASSWORD: conn.password,
    }


def write_portal_env(stack_workdir: Path | str, port: int = 8000) -> Path:
    """``<workdir>/portal.env`` (0600): ``source`` it before ``python -m labeling portal …``."""
    env = portal_env(stack_workdir, port)
    path = Path(stack_workdir) / "portal.env"
    write_private(path, "".join(f"export {key}={value}\n" for key, value in env.items()))
    return path


def _cli(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labeling", "portal", *argv], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def start_local_portal(stack_workdir: Path | str, port: int = 0, *, timeout: float = 60.0,
                       log_path: Optional[Path] = None) -> tuple[str, subprocess.Popen]:
    """Migrate, then start ``portal serve`` on loopback; returns (base URL, process) once /healthz is 200."""
    port = port or free_port()
    env = {**os.environ, **portal_env(stack_workdir, port)}
    write_portal_env(stack_workdir, port)
    migrated = _cli(["migrate"], env)
    if migrated.returncode != 0:
        raise LocalStackError(f"portal migrate failed: {(migrated.stderr or migrated.stdout).strip()}")
    log = open_private_log(Path(log_path or Path(stack_workdir) / "portal.log"))
    process = subprocess.Popen([sys.executable, "-m", "labeling", "portal", "serve"], env=env, cwd=REPO_ROOT,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    write_private(Path(stack_workdir) / PID_FILE, f"{process.pid}\n")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, timeout, log_path or "portal.log")
    except LocalStackError:
        stop_local_portal(process)
        raise
    return url, process


def wait_healthy(url: str, process: subprocess.Popen, timeout: float, log: object) -> None:
    """Return once ``url``/healthz answers 200; LocalStackError when the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalStackError(f"portal exited with {process.returncode}; see {log}")
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise LocalStackError(f"portal did not answer on {url}/healthz within {timeout:.0f} s")


def stop_local_portal(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop the process :func:`start_local_portal` started (only that pid)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def add_user(stack_workdir: Path | str, name: str, role: str, password: str) -> bool:
    """The user ``name`` with ``password`` unless that user exists (the demo's and the tests' users):
    :func:`ensure_user`; True when it was created."""
    return ensure_user(stack_workdir, name, role, password)[0]


def _is_portal_serve(pid: int) -> bool:
    """Is ``pid`` a live ``python -m labeling portal serve``?"""
    return read_cmdline(pid)[1:5] == ["-m", "labeling", "portal", "serve"]


def _is_our_portal(pid: int, stack_workdir: Path) -> bool:
    """Is ``pid`` a ``labeling portal serve`` started for this work directory (argv + environment)?"""
    if not _is_portal_serve(pid):
        return False
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    # The work directory as the portal got it, resolved (`make demo` passes it absolute, `make demo-down`
    # relative); the second form matches portals started before the variable was made absolute.
    wanted = {f"{N.CACHE_DIR}={Path(stack_workdir).resolve() / CACHE_DIR}".encode(),
              f"{N.CACHE_DIR}={Path(stack_workdir) / CACHE_DIR}".encode()}
    return not wanted.isdisjoint(environ)


def stop_portal_in(stack_workdir: Path | str, timeout: float = 10.0) -> bool:
    """Stop the portal :func:`start_local_portal` left running for ``stack_workdir`` (``make demo-down``).

    Only the recorded pid, and only while it is still that portal; True when one was stopped.
    """
    import signal

    workdir = Path(stack_workdir)
    pid_file = workdir / PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    stopped = False
    if _is_our_portal(pid, workdir):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _is_our_portal(pid, workdir):
            time.sleep(0.1)
        if _is_our_portal(pid, workdir):
            os.kill(pid, signal.SIGKILL)
        stopped = True
    if stopped or not _is_portal_serve(pid):
        pid_file.unlink(missing_ok=True)  # a live portal we could not match keeps its record
    return stopped


def prepare_demo(stack_workdir: Path | str, manifest: Path, schema: Path, *, job_name: str = "chest-xray-demo",
                 annotators: int = 2) -> dict:
    """Users (admin, reviewer, ``annotators`` annotators; generated passwords) and a job for the demo.

    The passwords go to ``<workdir>/portal-users.json`` (0600) and are reused on a rerun; the job is
    created once (a rerun reports it exists). Returns ``{"users_file", "users": {name: role}, "job"}``.
    """
    from labeling.orthanc.local_stack import generate_password

    workdir = Path(stack_workdir)
    users_file = workdir / USERS_FILE
    if users_file.is_file():
        users = json.loads(users_file.read_text())
    else:
        roles = {"admin": "admin", "reviewer": "reviewer",
                 **{f"annotator{n}": "annotator" for n in range(1, annotators + 1)}}
        users = {name: {"role": role, "password": generate_password(20)} for name, role in roles.items()}
        write_private(users_file, json.dumps(users, indent=2) + "\n")
    for name, entry in users.items():
        add_user(workdir, name, entry["role"], entry["password"])
    env = {**os.environ, **portal_env(workdir)}
    created = _cli(["job", "create", "--name", job_name, "--manifest", str(manifest), "--schema", str(schema),
                    "--annotators-per-item", str(annotators)], env)
    if created.returncode != 0 and "already exists" not in created.stderr:
        raise LocalStackError(f"portal job create: {created.stderr.strip()}")
    return {"users_file": str(users_file), "users": {n: e["role"] for n, e in users.items()}, "job": job_name}


# ------------------------------------------------------------------------- `portal up` / `down`

DEFAULT_PORT = 8000


@dataclass(frozen=True)
class PortalUp:
    """What ``portal up`` did: the URL, whether it (re)started anything, and the first admin."""

    url: str
    env_file: Path
    already_running: bool
    stack_already_running: bool
    admin_name: str
    admin_created: bool
    admin_password: Optional[str] = field(default=None, repr=False)  # only when generated here


def running_portal_url(stack_workdir: Path | str) -> Optional[str]:
    """The URL of the portal ``portal up`` left running for ``stack_workdir``, if it still runs."""
    workdir = Path(stack_workdir)
    try:
        pid = int((workdir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if not _is_our_portal(pid, workdir):
        return None
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    port = next((entry.split(b"=", 1)[1].decode() for entry in environ if entry.startswith(f"{N.PORT}=".encode())), "")
    return f"http://127.0.0.1:{port}" if port.isdigit() else None


def read_password_file(path: Path, option: str = "--password-file") -> str:
    """A password from a file (stripped); one error naming the option and the file otherwise."""
    from labeling.portal.security import MIN_PASSWORD_LENGTH

    try:
        password = path.read_text().strip()
    except OSError as exc:
        raise LocalStackError(f"{option} {path}: cannot read ({exc.strerror})") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise LocalStackError(f"{option} {path}: the password needs at least {MIN_PASSWORD_LENGTH} characters")
    return password


def ensure_user(stack_workdir: Path | str, name: str, role: str,
                password: Optional[str]) -> tuple[bool, Optional[str]]:
    """Create ``name`` with ``role`` unless that user exists — the one way the local portal makes users
    (``portal up``'s admin, the demo's users): (created, generated password or None). A password
    given must be :data:`~labeling.portal.security.MIN_PASSWORD_LENGTH` long, as ``portal user add``'s."""
    from labeling.orthanc.local_stack import generate_password
    from labeling.portal import jobs
    from labeling.portal.db import make_engine, session_factory, transaction
    from labeling.portal.security import MIN_PASSWORD_LENGTH, hash_password
    from labeling.portal.settings import PortalSettings

    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise LocalStackError(f"user {name}: the password needs at least {MIN_PASSWORD_LENGTH} characters")
    settings = PortalSettings.from_env(portal_env(stack_workdir))
    engine = make_engine(settings, pool_size=1, max_overflow=0)
    try:
        with transaction(session_factory(engine)) as session:
            if jobs.find_user(session, name) is not None:
                return False, None
            generated = None if password else generate_password(20)
            try:
                jobs.add_user(session, name, role, hash_password(password or generated or ""))
            except jobs.PortalError as exc:
                raise LocalStackError(f"user {name}: {exc.message}") from None
            return True, generated
    finally:
        engine.dispose()


def ensure_admin(stack_workdir: Path | str, name: str, password: Optional[str]) -> tuple[bool, Optional[str]]:
    """The first admin of ``portal up``: :func:`ensure_user` with the role admin."""
    return ensure_user(stack_workdir, name, "admin", password)


def portal_up(stack_workdir: Path | str, *, port: int = 0, admin_name: str = "admin",
              admin_password_file: Optional[Path] = None, timeout: float = 60.0) -> PortalUp:
    """The one command to a running portal: local stack (reused or started), ``portal.env`` (0600),
    migration, the first admin, ``portal serve`` on loopback. A portal already running there is reused."""
    password = read_password_file(admin_password_file, "--admin-password-file") if admin_password_file else None
    workdir = Path(stack_workdir)
    info = LocalStack(workdir).up(timeout=timeout)
    url = running_portal_url(workdir)
    already = url is not None
    if url is None:
        port = port or (DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port())
        url, _ = start_local_portal(workdir, port, timeout=timeout)  # writes portal.env, migrates
    created, generated = ensure_admin(workdir, admin_name, password)
    return PortalUp(url=url, env_file=workdir / "portal.env", already_running=already,
                    stack_already_running=info.already_running, admin_name=admin_name,
                    admin_created=created, admin_password=generated)


def portal_down(stack_workdir: Path | str, *, keep_stack: bool = False, purge: bool = False) -> list[str]:
    """Stop the portal of ``stack_workdir`` and (unless ``keep_stack``) its local stack; one line per action.

    ``purge`` also deletes what ``portal up`` and ``local up`` wrote: the stack's data (as ``local down
    --purge``), the portal's settings, secrets, log and image cache."""
    if keep_stack and purge:
        raise ValueError("--purge deletes the stack's data; it cannot be combined with --keep-stack")
    workdir = Path(stack_workdir)
    stopped = stop_portal_in(workdir)
    actions = [f"portal: {'stopped' if stopped else 'not running'}"]
    if purge:
        stack = LocalStack(workdir)
        actions += stack.purge()
        workdir = stack.workdir  # absolute, as the stack's own lines
        removed = [workdir / CACHE_DIR] if (workdir / CACHE_DIR).exists() else []
        if removed:
            shutil.rmtree(removed[0])
        for name in PORTAL_FILES:
            if (workdir / name).exists():
                (workdir / name).unlink()
                removed.append(workdir / name)
        actions += [f"removed {path}" for path in removed]
    elif not keep_stack:
        actions += LocalStack(workdir).down()
    return actions
