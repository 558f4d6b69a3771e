"""The local stack runner and the config generator, checked on the running Orthanc + PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from labeling.orthanc.local_stack import REPO_ROOT, LocalStack, LocalStackError, read_cmdline
from labeling.orthanc.client import OrthancClient
from labeling.orthanc.config import LOCAL_POSTGRES_SETTINGS, POSTGRES_PASSWORD, REGISTERED_USERS, registered_users, render_json

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labeling", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def test_orthanc_runs_the_generated_config_with_the_postgresql_index(local_stack: LocalStack,
                                                                      client: OrthancClient):
    info = local_stack.status()
    creds = json.loads(local_stack.credentials_file.read_text())
    written = json.loads(local_stack.config_file.read_text())
    expected = render_json(local_stack.settings(info.http_port, info.postgres_port), secrets={
        POSTGRES_PASSWORD: creds["postgres_password"],
        REGISTERED_USERS: registered_users(creds["orthanc_username"], creds["orthanc_password"])})
    assert written == expected  # orthanc.json is exactly the generator's output

    system = client.system()
    index_plugin = next(p for p in written["Plugins"] if "PostgreSQLIndex" in p)
    # Orthanc 1.10.1 reports the resolved library path (…/libOrthancPostgreSQLIndex.so.4.0).
    assert system["DatabaseBackendPlugin"]
    assert os.path.realpath(system["DatabaseBackendPlugin"]) == os.path.realpath(index_plugin)
    assert system["CheckRevisions"] is True and system["Version"].startswith("1.")
    assert written["PostgreSQL"]["Port"] == info.postgres_port
    assert written["RemoteAccessAllowed"] is False
    # The local cluster runs with the measured settings (asynchronous commit; bench/ingest.py).
    postmaster = " ".join(read_cmdline(info.postgres_pid))
    for name, value in LOCAL_POSTGRES_SETTINGS.items():
        assert f"{name}={value}" in postmaster, postmaster


def test_passwords_stay_out_of_logs_status_and_world_readable_files(local_stack: LocalStack, orthanc_env):
    creds = json.loads(local_stack.credentials_file.read_text())
    secrets = [creds["orthanc_password"], creds["postgres_password"]]
    assert all(any(c.isalpha() for c in s) for s in secrets)
    for log in (local_stack.orthanc_log, local_stack.pg_log):
        text = log.read_text(errors="replace")
        assert text and not any(s in text for s in secrets), f"a password appears in {log}"

    status = cli("local", "status", "--workdir", str(local_stack.workdir), "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert not any(s in status.stdout for s in secrets)
    assert data["url"] == orthanc_env["ORTHANC_URL"]
    assert data["orthanc_alive"] and data["postgres_alive"]
    assert data["orthanc_pid"] and data["postgres_pid"] and data["http_port"] and data["postgres_port"]

    for path in (local_stack.env_file, local_stack.config_file, local_stack.credentials_file,
                 local_stack.orthanc_log, local_stack.orthanc_pid_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    sourced = subprocess.run(["bash", "-c", f"source {local_stack.env_file}; echo $ORTHANC_URL $ORTHANC_USERNAME"
                              " $ORTHANC_PASSWORD"], capture_output=True, text=True, env={})
    assert sourced.stdout.split() == [orthanc_env["ORTHANC_URL"], creds["orthanc_username"],
                                      creds["orthanc_password"]]


def test_up_twice_is_idempotent(local_stack: LocalStack):
    before = local_stack.status()
    again = cli("local", "up", "--workdir", str(local_stack.workdir))
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    after = local_stack.status()
    assert (after.orthanc_pid, after.postgres_pid) == (before.orthanc_pid, before.postgres_pid)


def test_down_stops_only_its_own_pids(local_stack: LocalStack):
    workdir = Path(tempfile.mkdtemp(prefix="dicom-annotate-it-second-"))
    second = LocalStack(workdir)
    decoy = subprocess.Popen(["sleep", "300"])
    try:
        info = second.up(timeout=90)
        assert info.running and info.http_port != local_stack.status().http_port
        session_pids = local_stack.status()

        down = cli("local", "down", "--workdir", str(workdir))
        assert down.returncode == 0, down.stderr
        assert not read_cmdline(info.orthanc_pid) and not read_cmdline(info.postgres_pid)
        still = local_stack.status()
        assert still.running and still.orthanc_pid == session_pids.orthanc_pid

        # A pid file naming a process that is not ours (pid reuse) is left alone.
        second.orthanc_pid_file.write_text(f"{decoy.pid}\n")
        lines = second.down()
        assert decoy.poll() is None, "down killed a process it did not start"
        assert any("left alone" in line for line in lines)
    finally:
        decoy.kill()
        decoy.wait()
        second.down()
        shutil.rmtree(workdir, ignore_errors=True)


def test_failed_start_quotes_the_log_and_stops_what_it_started(tmp_path, monkeypatch):
    fake = tmp_path / "Orthanc"
    fake.write_text("#!/bin/sh\necho 'E1127 simulated failure: cannot open the index' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("ORTHANC_BINARY", str(fake))
    workdir = Path(tempfile.mkdtemp(prefix="dicom-annotate-it-fail-"))
    stack = LocalStack(workdir)
    try:
        with pytest.raises(LocalStackError) as failure:
            stack.up(timeout=30)
        message = str(failure.value)
        assert "Orthanc exited with status 3" in message
        assert "simulated failure: cannot open the index" in message
        status = stack.status()
        assert not status.postgres_alive and not status.orthanc_alive  # PostgreSQL was stopped again
    finally:
        stack.down()
        shutil.rmtree(workdir, ignore_errors=True)
