"""Unit tests of labeling/orthanc/local_stack.py and local_host.py pieces that need no PostgreSQL or Orthanc."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time

from labeling.orthanc import local_host as host
from labeling.orthanc import local_stack as ls
from labeling.orthanc.config import POSTGRES_PASSWORD, REGISTERED_USERS, registered_users, render_json


def test_generated_passwords_have_letters_and_digits_and_differ():
    values = {host.generate_password() for _ in range(50)}
    assert len(values) == 50
    for value in values:
        assert len(value) == 32 and value.isalnum()
        assert any(c.isalpha() for c in value) and any(c.isdigit() for c in value)
        registered_users("admin", value)  # the generator's guard accepts it


def test_open_private_log_is_0600_and_narrows_an_older_log(tmp_path):
    fresh, older = tmp_path / "fresh.log", tmp_path / "older.log"
    older.write_bytes(b"before\n")
    older.chmod(0o644)
    for path in (fresh, older):
        with host.open_private_log(path) as log:
            log.write(b"line\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert older.read_bytes() == b"before\nline\n"  # appended, not truncated


def test_write_private_is_0600(tmp_path):
    path = tmp_path / "secret"
    host.write_private(path, "x")
    host.write_private(path, "y")  # replacing keeps the mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "y"


def test_free_port_is_bindable_on_loopback():
    port = host.free_port()
    assert host.port_is_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not host.port_is_free(port)


def test_process_matches_checks_binary_and_marker():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "marker-xyz"])
    try:
        deadline = time.monotonic() + 10
        while "marker-xyz" not in host.read_cmdline(child.pid):  # until the child has exec'd
            assert time.monotonic() < deadline
            time.sleep(0.01)
        name = os.path.basename(host.read_cmdline(child.pid)[0])
        assert host.process_matches(child.pid, name, "marker-xyz")
        assert not host.process_matches(child.pid, name, "other-marker")
        assert not host.process_matches(child.pid, "Orthanc", "marker-xyz")
    finally:
        child.kill()
        child.wait()
    assert not host.process_matches(child.pid, name, "marker-xyz")
    assert not host.process_matches(None, name, "marker-xyz")


def test_status_of_an_empty_workdir_is_dead_and_has_no_secret(tmp_path):
    info = ls.LocalStack(tmp_path / "nothing").status()
    assert not info.running and info.orthanc_pid is None
    data = info.to_json()
    assert {"url", "http_port", "postgres_port", "orthanc_pid", "postgres_pid", "running"} <= set(data)
    assert not any("password" in key for key in data)


def test_local_settings_render_a_loopback_config(tmp_path):
    stack = ls.LocalStack(tmp_path)
    settings = stack.settings(http_port=18042, postgres_port=15432)
    config = render_json(settings, secrets={POSTGRES_PASSWORD: "pgPw1",
                                            REGISTERED_USERS: registered_users("admin", "orthancPw1")})
    assert config["RemoteAccessAllowed"] is False and config["DicomServerEnabled"] is False
    assert config["HttpPort"] == 18042 and config["AuthenticationEnabled"] is True
    index = config["PostgreSQL"]
    assert (index["Host"], index["Port"], index["EnableSsl"], index["Lock"]) == ("127.0.0.1", 15432, False, False)
    assert config["StorageDirectory"] == str(stack.storage_dir)
    assert any(p.endswith("libOrthancPostgreSQLIndex.so") for p in config["Plugins"])
    json.dumps(config)  # serialisable as orthanc.json


def test_log_tail(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)))
    assert host.log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert "no log" in host.log_tail(tmp_path / "missing.log")
