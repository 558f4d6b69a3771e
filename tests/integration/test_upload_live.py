"""`python -m labeling upload` against the session's real Orthanc + PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

from labeling.orthanc.local_stack import REPO_ROOT
from labeling.orthanc.client import OrthancClient
from tests.integration.dicom_files import sop_uids_in_orthanc

pytestmark = pytest.mark.integration


def run_upload(env: dict, *args: str, timeout: float = 300) -> tuple[int, dict, str]:
    """Run the CLI; return (exit code, --report JSON, stdout + stderr)."""
    report = Path(tempfile.mkdtemp(prefix="upload-report-")) / "report.json"
    result = subprocess.run([sys.executable, "-m", "labeling", "upload", *args, "--report", str(report)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    data = json.loads(report.read_text()) if report.exists() else {}
    shutil.rmtree(report.parent, ignore_errors=True)
    return result.returncode, data, result.stdout + result.stderr


def by_name(report: dict) -> dict[str, dict]:
    return {Path(item["path"].split("!")[-1]).name: item for item in report["files"]}


def test_upload_folder_and_zip(client: OrthancClient, orthanc_env, make_series, tmp_path):
    folder = make_series(12, name="folder")
    zipped = make_series(8, name="zipped")
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in zipped.files:
            out.write(path, f"inner/{path.name}")

    code, report, output = run_upload(orthanc_env, str(folder.folder), str(archive))

    assert code == 0, output
    assert report["totals"] == {"stored": 20, "already_stored": 0, "rejected": 0, "failed": 0, "files": 20}
    members = [item["path"] for item in report["files"] if "!" in item["path"]]
    assert members == [f"{archive}!inner/{p.name}" for p in zipped.files]
    assert sop_uids_in_orthanc(client, folder.series_uid) == set(folder.sop_uids)
    assert sop_uids_in_orthanc(client, zipped.series_uid) == set(zipped.sop_uids)
    for item in report["files"]:  # the IDs we report are Orthanc's
        assert client.instance_tags(item["instance_id"])["SOPInstanceUID"] == item["sop_instance_uid"]


def test_reupload_is_all_already_stored(client: OrthancClient, orthanc_env, make_series):
    series = make_series(10)
    first, _, output = run_upload(orthanc_env, str(series.folder))
    assert first == 0, output
    before = client.statistics()["CountInstances"]

    code, report, output = run_upload(orthanc_env, str(series.folder), "--workers", "3")

    assert code == 0, output
    assert report["totals"]["already_stored"] == 10 and report["totals"]["stored"] == 0
    assert client.statistics()["CountInstances"] == before


def test_bad_inputs_rejected_and_absent_from_orthanc(client: OrthancClient, orthanc_env, make_series, tmp_path):
    good = make_series(3, name="good")
    doomed = make_series(2, name="doomed")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.dcm").write_bytes(b"")
    (bad / "notes.txt").write_text("not DICOM at all\n" * 20)
    data = doomed.files[0].read_bytes()
    (bad / "truncated.dcm").write_bytes(data[:len(data) // 2])             # pixel data cut short
    (bad / "header_cut.dcm").write_bytes(doomed.files[1].read_bytes()[:400])  # cut inside the header

    code, report, output = run_upload(orthanc_env, str(good.folder), str(bad))

    assert code == 1, output  # some files stored, some rejected
    outcomes = by_name(report)
    for name, words in (("empty.dcm", "empty file"), ("notes.txt", "not a DICOM file"),
                        ("truncated.dcm", "truncated: pixel data"), ("header_cut.dcm", "truncated")):
        assert outcomes[name]["outcome"] == "rejected"
        assert words in outcomes[name]["reason"]
        assert outcomes[name]["attempts"] == 0  # never sent
        lines = [line for line in output.splitlines() if line.startswith("rejected") and name in line]
        assert lines, f"no 'rejected' line for {name} in:\n{output}"
    assert report["totals"]["stored"] == 3
    assert sop_uids_in_orthanc(client, doomed.series_uid) == set()  # nothing partial left behind


def test_restart_during_upload_loses_nothing(local_stack, client: OrthancClient, orthanc_env, make_series):
    series = make_series(600, name="restart")
    before = client.statistics()["CountInstances"]
    env = dict(orthanc_env)
    box: dict = {}

    def upload() -> None:
        box["result"] = run_upload(env, str(series.folder), "--batch-size", "20", "--deadline", "60")

    worker = threading.Thread(target=upload)
    worker.start()
    # Restart once Orthanc holds a sixth of the files: the upload is well under way.
    deadline = time.monotonic() + 120
    while client.statistics()["CountInstances"] - before < 100:
        assert worker.is_alive(), "upload finished before the restart could happen"
        assert time.monotonic() < deadline, "upload did not progress"
        time.sleep(0.05)
    at_restart = client.statistics()["CountInstances"] - before
    # SIGTERM, then SIGKILL after 0.5 s: Orthanc would otherwise keep serving our keep-alive
    # connections until the upload ends (see LocalStack.restart_orthanc).
    restarted = local_stack.restart_orthanc(grace=0.5)
    worker.join(timeout=300)
    code, report, output = box["result"]

    in_orthanc = sop_uids_in_orthanc(client, series.series_uid)
    retried = sum(1 for item in report["files"] if item["attempts"] > 1)
    print(f"\nrestart test: {len(series.sop_uids)} files, Orthanc restarted (pid {restarted.orthanc_pid}) "
          f"after {at_restart} instances; report {report['totals']}; {retried} files needed a retry; "
          f"{len(in_orthanc)} of the files' SOP Instance UIDs in Orthanc, "
          f"{len(set(series.sop_uids) - in_orthanc)} missing")
    assert code == 0, output
    assert in_orthanc == set(series.sop_uids)
    assert report["totals"]["stored"] + report["totals"]["already_stored"] == 600
    assert retried > 0, "no request met the restart; the test did not test anything"


def pydicom_data_files() -> list[Path]:
    """Every file shipped in pydicom's data directory (test files, charsets, palettes, non-DICOM)."""
    import pydicom.data

    root = Path(pydicom.data.__file__).parent
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc"))


def test_upload_stores_every_pydicom_file_that_orthanc_stores(client: OrthancClient, orthanc_env, tmp_path):
    """The pre-checks are never stricter than Orthanc: what direct POSTs store, `upload` stores."""
    files = pydicom_data_files()
    folder = tmp_path / "pydicom"
    for index, path in enumerate(files):  # flat, numbered: the default --exclude would skip *.json
        target = folder / f"{index:04d}-{path.name}.bin"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)
    code, report, output = run_upload(orthanc_env, str(folder), "--exclude", "")
    assert code == 1, output  # pydicom ships non-DICOM and broken files too
    assert report["totals"]["files"] == len(files)  # every file has one outcome
    uploaded = {item["instance_id"] for item in report["files"] if item["outcome"] in ("stored", "already_stored")}

    direct = set()
    for path in files:
        try:
            direct.add(client.upload(path.read_bytes(), retries=0).instance_id)
        except Exception:  # noqa: BLE001 — refused by Orthanc: not counted
            pass
    assert len(direct) > 100
    assert uploaded == direct, (f"upload missed {len(direct - uploaded)}, added {len(uploaded - direct)}: "
                                f"{[i['path'] for i in report['files'] if i['outcome'] == 'rejected']}")
    rejected = [line for line in output.splitlines() if line.startswith("rejected ")]
    assert len(rejected) == report["totals"]["rejected"]  # one line each, no table repeating them


def test_upload_error_cases_are_one_line(orthanc_env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, output = run_upload(orthanc_env, str(empty))
    assert code == 2 and output.strip() == f"upload: error: nothing to upload: no file in {empty} " \
                                           "(hidden entries and --exclude matches are skipped)", output

    (empty / "notes.txt").write_text("not DICOM\n")
    code, report, output = run_upload(orthanc_env, str(empty))
    assert code == 2, output
    assert output.strip().splitlines()[-1] == "upload: error: nothing uploaded: all 1 files were rejected (listed above)"
    assert len(output.strip().splitlines()) == 3  # the file's line, the summary, the error
    assert report["totals"]["rejected"] == 1

    env = dict(orthanc_env, ORTHANC_URL="http://127.0.0.1:1")
    started = time.monotonic()
    code, _, output = run_upload(env, str(empty))
    assert code == 3 and time.monotonic() - started < 8, output
    assert output.strip() == ("upload: error: cannot reach Orthanc at http://127.0.0.1:1/system: ConnectionError: "
                              "connection refused; is the local stack up? python -m labeling local up, "
                              "then source WORKDIR/orthanc.env")

    result = subprocess.run([sys.executable, "-m", "labeling", "upload", str(empty), "--report",
                             str(tmp_path / "no" / "r.json")], cwd=REPO_ROOT, env=orthanc_env,
                            capture_output=True, text=True, timeout=60)
    code, output = result.returncode, result.stdout + result.stderr
    assert code == 2 and "parent directory" in output and "--parents" in output and len(output.strip().splitlines()) == 1
