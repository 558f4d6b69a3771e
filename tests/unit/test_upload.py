"""Unit tests of labeling/orthanc/upload.py, dicom_file.py, sources.py: file checks, Orthanc IDs, batching, discovery, retries.

No Orthanc here: a fake client plays Orthanc's answers (tests/integration has the real thing).
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Optional

import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from labeling.contracts import ids
from labeling.orthanc import dicom_file as df
from labeling.orthanc import sources as src
from labeling.orthanc import upload as up
from labeling.orthanc.client import OrthancError, UploadResult

SC = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage


def make_dicom(*, patient_id: str = "P1", rows: int = 8, sop_uid: Optional[str] = None,
               study_uid: str = "1.2.3.4", series_uid: str = "1.2.3.4.5", syntax=ExplicitVRLittleEndian,
               pixels: bool = True, sequence: bool = False, drop: tuple[str, ...] = ()) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SC
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "OT"
    if sequence:
        item = Dataset()
        item.CodeValue = "T-D3000"
        item.CodingSchemeDesignator = "SRT"
        ds.AnatomicRegionSequence = Sequence([item])
    if pixels:
        ds.Rows = ds.Columns = rows
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = bytes(rows * rows * 2)
    for keyword in drop:
        delattr(ds, keyword)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# --- Orthanc IDs ------------------------------------------------------------------------------


def test_orthanc_instance_id_matches_a_value_orthanc_gave():
    # Answer of Orthanc 1.10.1 for pydicom's rtdose_rle.dcm (PatientID is 'id11111 ' with VR UN).
    assert ids.orthanc_instance_id(
        "id11111 ", "1.2.999.999.99.9.9999.8888", "1.2.777.777.77.7.7777.7777",
        "1.9.999.999.99.9.9999.9999.20030818153516") == "ad37e374-bfed7063-7a623e83-273dc020-50b0bee4"


def test_orthanc_hash_format():
    value = ids.orthanc_hash("x")
    assert [len(part) for part in value.split("-")] == [8] * 5


# --- validation -------------------------------------------------------------------------------


def test_valid_file_gives_identity_and_id():
    data = make_dicom(patient_id="P7", sop_uid="1.2.3.4.5.6")
    identity = df.validate_dicom(data)
    assert identity.sop_instance_uid == "1.2.3.4.5.6"
    assert identity.patient_id == "P7"
    assert identity.orthanc_id == ids.orthanc_instance_id("P7", "1.2.3.4", "1.2.3.4.5", "1.2.3.4.5.6")


@pytest.mark.parametrize("data, words", [
    (b"", "empty file"),
    (b"hello\n", "not a DICOM file"),
    (b"x" * 4000, "not a DICOM file"),
])
def test_non_dicom_rejected(data, words):
    with pytest.raises(df.InvalidDicom, match=words):
        df.validate_dicom(data)


def test_a_data_set_without_the_part10_header_is_left_to_orthanc():
    """rtstruct.dcm has no preamble/'DICM'; Orthanc (DCMTK) stores it, so the pre-check must pass it."""
    identity = df.validate_dicom(_sample("rtstruct.dcm"))
    assert identity.sop_instance_uid == "1.2.826.0.1.3680043.8.498.2010020400001"


def test_truncated_pixel_data_rejected():
    data = make_dicom(rows=64)
    with pytest.raises(df.InvalidDicom, match="truncated: pixel data declares 8192 bytes"):
        df.validate_dicom(data[:-100])


def test_truncated_header_rejected():
    data = make_dicom(rows=64)
    cut = data.index(b"OT") + 1  # inside the Modality value, before the pixel data
    with pytest.raises(df.InvalidDicom, match="truncated"):
        df.validate_dicom(data[:cut])


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_missing_uid_rejected(keyword):
    with pytest.raises(df.InvalidDicom, match=f"missing {keyword}"):
        df.validate_dicom(make_dicom(drop=(keyword,)))


def test_file_without_pixel_data_is_fine():
    assert df.validate_dicom(make_dicom(pixels=False)).sop_instance_uid


def test_sequences_walked_in_both_encodings():
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        data = make_dicom(sequence=True, syntax=syntax)
        assert df.validate_dicom(data)
        with pytest.raises(df.InvalidDicom, match="truncated"):
            df.validate_dicom(data[:data.index(b"SRT") + 2])


def test_trailing_padding_after_pixels_is_fine():
    data = make_dicom()
    padding = struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, 4) + b"\0" * 4  # (FFFC,FFFC) PS3.10
    assert df.validate_dicom(data + padding)


def _sample(name: str) -> bytes:
    return Path(get_testdata_file(name, download=False)).read_bytes()  # files shipped with pydicom


@pytest.mark.parametrize("name", ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm",
                                  "JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_rle_2frame.dcm",
                                  "JPEG2000-embedded-sequence-delimiter.dcm", "rtplan.dcm", "test-SR.dcm"])
def test_pydicom_samples_accepted(name):
    assert df.validate_dicom(_sample(name)).sop_instance_uid


@pytest.mark.parametrize("name, words", [
    ("MR_truncated.dcm", "truncated: pixel data declares 8192 bytes"),   # Orthanc 1.10.1: 400 too
    ("rtplan_truncated.dcm", "truncated: element (300A,00B0)"),          # Orthanc 1.10.1: 400 too
    ("meta_missing_tsyntax.dcm", "no TransferSyntaxUID"),
    ("no_meta.dcm", "no DICOM data set with the UIDs"),  # Orthanc 1.10.1: 400 too
    ("SC_rgb_jpeg.dcm", "has no valid VR"),  # declares explicit VR, holds implicit: Orthanc refuses it too
])
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's own complaint about the same file
def test_pydicom_broken_samples_rejected(name, words):
    with pytest.raises(df.InvalidDicom, match=words.replace("(", r"\(").replace(")", r"\)")):
        df.validate_dicom(_sample(name))


def test_truncated_encapsulated_pixel_data_rejected():
    data = _sample("JPEG2000.dcm")
    with pytest.raises(df.InvalidDicom, match="truncated"):
        df.validate_dicom(data[:-20])  # loses the sequence delimiter and part of the last fragment


# --- batching and ZIP bodies ------------------------------------------------------------------


def _sources(sizes):
    return [src.Source(i, f"f{i}", Path(f"f{i}"), size=s) for i, s in enumerate(sizes)]


def test_batches_group_small_files_and_isolate_large_ones():
    sizes = [100] * 120 + [up.LARGE_FILE_BYTES + 1] + [100] * 3
    batches = up.plan_batches(_sources(sizes), batch_size=50)
    assert [len(b.sources) for b in batches] == [50, 50, 1, 23]
    assert [b.per_file for b in batches] == [False, False, True, False]
    assert sorted(s.index for b in batches for s in b.sources) == list(range(124))


def test_batches_respect_byte_limit_and_batch_size_one():
    batches = up.plan_batches(_sources([600] * 5), batch_size=50, max_batch_bytes=1000)
    assert [len(b.sources) for b in batches] == [1, 1, 1, 1, 1]
    assert all(b.per_file for b in up.plan_batches(_sources([10] * 3), batch_size=1))


def test_build_zip_is_stored_and_ordered():
    body = up.build_zip([("a.dcm", b"1" * 10), ("b.dcm", b"2" * 20)])
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.namelist() == ["a.dcm", "b.dcm"]
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
        assert archive.read("b.dcm") == b"2" * 20


# --- discovery --------------------------------------------------------------------------------


def test_discover_walks_folders_zips_and_reports_problems(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.dcm").write_bytes(b"b")
    (tmp_path / "d" / "sub" / "a.dcm").write_bytes(b"a")
    (tmp_path / "d" / ".hidden").write_bytes(b"h")
    (tmp_path / "d" / "dataset.json").write_text("{}")
    with zipfile.ZipFile(tmp_path / "d" / "c.zip", "w") as archive:
        archive.writestr("x/one.dcm", b"1")
        archive.writestr("__MACOSX/._one.dcm", b"junk")
        archive.writestr("dir/", b"")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    sources, skipped = src.discover([tmp_path / "d", tmp_path / "d" / "b.dcm", tmp_path / "bad.zip",
                                    tmp_path / "missing"])
    names = [s.display.replace(str(tmp_path), "") for s in sources]
    assert names == ["/d/b.dcm", "/d/c.zip!x/one.dcm", "/d/sub/a.dcm", "/bad.zip", "/missing"]
    assert skipped == 2  # .hidden and dataset.json
    problems = {s.display.replace(str(tmp_path), ""): s.problem for s in sources if s.problem}
    assert "not a readable ZIP archive" in problems["/bad.zip"]
    assert problems["/missing"] == "no such file or directory"
    assert src.SourceReader().read(sources[1]) == b"1"


# --- the uploader, against a fake Orthanc -----------------------------------------------------


class FakeOrthanc:
    """Plays POST /instances: stores by ID, skips bad ZIP members, can fail on demand."""

    url = "http://fake"

    def __init__(self, *, down_for: int = 0, zip_status: Optional[int] = None,
                 refuse: tuple[bytes, ...] = ()) -> None:
        self.stored: set[str] = set()
        self.down_for = down_for      # the next N requests get no answer
        self.zip_status = zip_status  # every ZIP body answered with this HTTP error
        self.refuse = refuse          # bodies Orthanc calls invalid (400, or skipped in a ZIP)
        self.calls: list[str] = []

    def _maybe_down(self):
        if self.down_for:
            self.down_for -= 1
            raise OrthancError(None, "ConnectionError: refused", self.url)

    def _store(self, data: bytes) -> UploadResult:
        identity = df.validate_dicom(data)
        status = "AlreadyStored" if identity.orthanc_id in self.stored else "Success"
        self.stored.add(identity.orthanc_id)
        return UploadResult(status, identity.orthanc_id, "s", "st", "p")

    def upload(self, data: bytes, *, retries=None) -> UploadResult:
        self.calls.append("file")
        self._maybe_down()
        if data in self.refuse:
            raise OrthancError(400, "Bad file format", self.url + "/instances")
        return self._store(data)

    def upload_zip(self, data: bytes, *, retries=None) -> list[UploadResult]:
        self.calls.append("zip")
        self._maybe_down()
        if self.zip_status:
            raise OrthancError(self.zip_status, "Internal error", self.url + "/instances")
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [archive.read(name) for name in archive.namelist()]
        return [self._store(m) for m in members if m not in self.refuse]


def _files(tmp_path, count, **kwargs):
    paths = []
    for i in range(count):
        path = tmp_path / f"f{i:03d}.dcm"
        path.write_bytes(make_dicom(**kwargs))
        paths.append(path)
    return paths


def _run(client, paths, **kwargs):
    sources, _ = src.discover(paths)
    uploader = up.Uploader(client, sleep=lambda s: None, **kwargs)
    return uploader.run(sources)


def test_all_files_stored_through_zip_bodies(tmp_path):
    paths = _files(tmp_path, 7)
    fake = FakeOrthanc()
    outcomes = _run(fake, paths, batch_size=3, workers=2)
    assert [o.outcome for o in outcomes] == ["stored"] * 7
    assert [o.path for o in outcomes] == [str(p) for p in paths]
    assert fake.calls.count("zip") == 2 and fake.calls.count("file") == 1  # 3 + 3 + a lone file
    again = _run(fake, paths, batch_size=3)
    assert {o.outcome for o in again} == {"already_stored"}


def test_member_orthanc_skips_gets_its_own_request_and_reason(tmp_path):
    paths = _files(tmp_path, 4)
    bad = paths[2].read_bytes()
    fake = FakeOrthanc(refuse=(bad,))
    outcomes = _run(fake, paths, batch_size=10)
    assert [o.outcome for o in outcomes] == ["stored", "stored", "rejected", "stored"]
    assert "Orthanc refused it: Bad file format" in outcomes[2].reason
    assert fake.calls == ["zip", "file"]


def test_local_rejects_never_sent(tmp_path):
    good = _files(tmp_path, 2)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 100)
    fake = FakeOrthanc()
    outcomes = {Path(o.path).name: o for o in _run(fake, [*good, empty, text], batch_size=10)}
    assert outcomes["empty.dcm"].outcome == "rejected" and outcomes["empty.dcm"].reason == "empty file"
    assert "not a DICOM file" in outcomes["notes.txt"].reason
    assert outcomes["empty.dcm"].attempts == 0
    assert len(fake.stored) == 2


def test_zip_refused_as_a_whole_falls_back_per_file(tmp_path):
    paths = _files(tmp_path, 3)
    fake = FakeOrthanc(zip_status=500)
    outcomes = _run(fake, paths, batch_size=10)
    assert [o.outcome for o in outcomes] == ["stored"] * 3
    assert fake.calls == ["zip"] * (1 + up.SERVER_ERROR_RETRIES) + ["file"] * 3


def test_connection_errors_retried_and_counted(tmp_path):
    paths = _files(tmp_path, 3)
    fake = FakeOrthanc(down_for=4)
    outcomes = _run(fake, paths, batch_size=10, deadline=60)
    assert [o.outcome for o in outcomes] == ["stored"] * 3
    assert {o.attempts for o in outcomes} == {5}


def test_outage_past_deadline_fails_files_and_later_ones_fast(tmp_path):
    paths = _files(tmp_path, 6)
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    fake = FakeOrthanc(down_for=10_000)
    sources, _ = src.discover(paths)
    uploader = up.Uploader(fake, batch_size=2, workers=1, deadline=5.0, sleep=sleep, clock=lambda: now[0])
    outcomes = uploader.run(sources)
    assert {o.outcome for o in outcomes} == {"failed"}
    assert "unreachable for 5 s" in outcomes[0].reason
    assert outcomes[0].attempts > 1
    assert outcomes[-1].attempts == 1  # the outage already outlived the deadline: no more waiting


def test_duplicates_in_one_batch_map_to_stored_then_already_stored(tmp_path):
    data = make_dicom(sop_uid="1.2.3.9")
    paths = []
    for name in ("a.dcm", "b.dcm"):
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    outcomes = _run(FakeOrthanc(), paths, batch_size=10)
    assert [o.outcome for o in outcomes] == ["stored", "already_stored"]


def test_outage_clock():
    now = [0.0]
    clock = up.OutageClock(10, clock=lambda: now[0])
    assert clock.failed()
    now[0] = 9.0
    assert clock.failed()
    now[0] = 10.5
    assert not clock.failed()
    clock.succeeded()
    assert clock.failed() and clock.elapsed() == 0.0


def test_report_json_totals(tmp_path):
    outcomes = [up.FileOutcome("a", "stored", attempts=1), up.FileOutcome("b", "rejected", reason="x")]
    report = up.UploadReport(outcomes, elapsed_s=2.0)
    data = report.to_json()
    assert data["totals"] == {"stored": 1, "already_stored": 0, "rejected": 1, "failed": 0, "files": 2}
    assert data["instances_per_s"] == 0.5
    assert set(data["files"][0]) == {"path", "outcome", "instance_id", "sop_instance_uid", "reason",
                                      "attempts", "size"}
    assert not report.ok


def test_send_failed_pickles_with_its_orthanc_error():
    import pickle

    failed = up.SendFailed(OrthancError(None, "connection refused", "http://127.0.0.1:1/instances"), 3, True)
    again = pickle.loads(pickle.dumps(failed))
    assert (str(again), again.attempts, again.gave_up, again.error.status, again.error.url) == (
        str(failed), 3, True, None, "http://127.0.0.1:1/instances")
