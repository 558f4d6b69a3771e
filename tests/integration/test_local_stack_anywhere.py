"""`python -m labeling local up` from any checkout location and as any user (issue 10).

Two cases a new user meets: root with the clone in a 0700 directory (Debian's ``/root``, any
``mktemp -d``), which the ``postgres`` user cannot enter; and a plain user without sudo. Each runs the
CLI from a copy of the package in a fresh 0700 directory, uses its Orthanc, and ``local down --purge``
must leave neither processes nor PostgreSQL's directory behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import requests

from labeling.orthanc.local_stack import REPO_ROOT, external_pg_home, read_cmdline

pytestmark = pytest.mark.integration


def copy_package(clone: Path) -> None:
    """What a clone needs to run ``python -m labeling local``: the package itself."""
    shutil.copytree(REPO_ROOT / "labeling", clone / "labeling",
                    ignore=shutil.ignore_patterns("__pycache__"))


def copy_imported_packages(dest: Path) -> None:
    """Copy into ``dest`` the top-level packages that ``python -m labeling local`` imports from
    site-packages (found by importing its modules in a child interpreter)."""
    probe = ("import sys, site, labeling.cli, labeling.orthanc.local_stack\n"
             "labeling.cli.build_parser(['local', 'up'])\n"
             "roots = [p for p in site.getsitepackages() if p]\n"
             "names = set()\n"
             "for m in list(sys.modules.values()):\n"
             "    f = getattr(m, '__file__', None) or ''\n"
             "    for r in roots:\n"
             "        if f.startswith(r + '/'):\n"
             "            names.add((r, f[len(r) + 1:].split('/')[0]))\n"
             "print('\\n'.join(f'{r}\\t{n}' for r, n in sorted(names)))\n")
    found = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    dest.mkdir()
    for root, name in zip(found[::2], found[1::2]):
        source = Path(root) / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)


def run_as(user: str | None, argv: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", user, "--"] if user else []
    return subprocess.run(prefix + ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv],
                          cwd=cwd, capture_output=True, text=True, timeout=180)


def check_up_use_purge(user: str | None, python: str | list[str], env: dict, clone: Path) -> Path:
    """up → Orthanc answers with the generated credentials → down --purge; returns the workdir."""
    workdir = clone / ".local" / "stack"
    python = [python] if isinstance(python, str) else python
    up = run_as(user, [*python, "-m", "labeling", "local", "up"], env, clone)
    try:
        assert up.returncode == 0, up.stderr
        assert str(workdir) in up.stdout  # the default work dir is the clone's own
        status = run_as(user, [*python, "-m", "labeling", "local", "status", "--json"], env, clone)
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        creds = json.loads((workdir / "credentials.json").read_text())
        answer = requests.get(f"{info['url']}/system", timeout=10,
                              auth=(creds["orthanc_username"], creds["orthanc_password"]))
        assert answer.status_code == 200 and answer.json()["DatabaseBackendPlugin"]
        if user is None:  # root: the postgres user cannot enter the clone, so the cluster is outside
            assert (external_pg_home(workdir) / "data" / "PG_VERSION").exists()
        for name in ("credentials.json", "orthanc.env", "orthanc.json"):
            assert (workdir / name).stat().st_mode & 0o077 == 0, name
        # The manifest index (PatientIDs) lives in the stack's folder, so purge takes it too.
        index_file = workdir / "manifest-index.json"
        assert f"export MANIFEST_INDEX_FILE={index_file}\n" in (workdir / "orthanc.env").read_text()
        run_as(user, [*python, "-c", f"open({str(index_file)!r}, 'w').write('{{}}')"], env, clone)
        assert index_file.exists()
    finally:
        down = run_as(user, [*python, "-m", "labeling", "local", "down", "--purge"], env, clone)
    assert down.returncode == 0, down.stderr
    assert not read_cmdline(info["orthanc_pid"]) and not read_cmdline(info["postgres_pid"])
    assert sorted(p.name for p in workdir.iterdir()) == [".lock"]
    return workdir


@pytest.fixture()
def private_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dicom-annotate-0700-"))
    try:
        assert path.stat().st_mode & 0o777 == 0o700
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_root_runs_the_stack_from_a_clone_in_a_0700_directory(private_dir: Path):
    assert os.geteuid() == 0, "this case is about root (the CI and a fresh Debian machine run as root)"
    clone = private_dir / "clone"
    copy_package(clone)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(clone), "HOME": str(private_dir)}
    workdir = check_up_use_purge(None, sys.executable, env, clone)
    assert not external_pg_home(workdir).exists(), "down --purge left PostgreSQL's directory behind"


def test_a_plain_user_runs_the_stack_from_a_0700_directory_without_sudo(private_dir: Path):
    user = f"da-it-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
    try:
        shutil.chown(private_dir, user)
        clone = private_dir / "clone"
        copy_package(clone)
        # The venv may sit under a 0700 directory this user cannot enter (a clone in root's home or a
        # mktemp -d, as CI's may): give the user Debian's python3 and a readable copy of what the CLI
        # imports from the venv, as a user with their own environment would have.
        python = ["/usr/bin/python3", "-S"]  # -S: no dist-packages, so the copy must be complete
        site_dir = private_dir / "site-packages"
        copy_imported_packages(site_dir)
        subprocess.run(["chown", "-R", user, str(clone), str(site_dir)], check=True)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(private_dir),
               "PYTHONPATH": os.pathsep.join([str(clone), str(site_dir)])}
        check_up_use_purge(user, python, env, clone)
    finally:
        subprocess.run(["userdel", user], check=False)
