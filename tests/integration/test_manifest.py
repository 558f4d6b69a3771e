"""``python -m labeling manifest`` against a real Orthanc 1.10.1 + PostgreSQL (tier 2).

Data uploaded once for this module: two synthetic sets (DX, seed 4242: patients ``SYN4242-*``; CR,
seed 4243), pydicom's sample files, and one hand-made study (patient ``MANIFEST-TEST-MIXED``) that
holds one object of each exclusion path: an SR, a KO, an encapsulated PDF with Modality DOC (all
excluded by Modality), an encapsulated PDF with Modality OT (excluded by SOP class), a secondary
capture without Modality (kept after its SOP class check) and a two-image DX series.

The Orthanc is shared with other test modules, so every assertion is scoped to these patients, or
is a subset check (pydicom samples may be uploaded by other tests too; same files, same IDs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from labeling.cli import main as cli_main
from labeling.manifest.build import build_manifest
from labeling.manifest.filters import parse_filters
from labeling.manifest.format import ManifestLine, read_manifest
from devkit.samples import copy_samples
from labeling.contracts.schema import load_schema
from devkit.synth import generate_dataset

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "schemas" / "chest-xray.yaml"
SEED_DX, SEED_CR = 4242, 4243
MIXED_PATIENT = "MANIFEST-TEST-MIXED"
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's prefix; entropy makes them ours

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.11"   # Basic Text SR Storage
KO_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"   # Key Object Selection Document Storage
PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"       # Secondary Capture Image Storage
DX_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"     # Digital X-Ray Image Storage - For Presentation


@dataclass
class Loaded:
    dx_truth: list[dict]          # synth ground-truth records (sop/study/series UIDs, patient)
    cr_truth: list[dict]
    mixed: dict[str, str]         # role -> Orthanc instance ID
    sample_ids: dict[str, str]    # Orthanc instance ID -> sample modality (pydicom samples)


def _uid(name: str) -> str:
    return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=["dicom-annotate manifest test", name]))


def _base(sop_class: str, name: str, *, modality: str | None, series: str, series_number: int,
          instance_number: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _uid(f"{name}/sop")
    ds.PatientName = "Test^Mixed"
    ds.PatientID = MIXED_PATIENT
    ds.StudyInstanceUID = _uid("study")
    ds.StudyDate = "20230615"
    ds.StudyTime = "120000"
    ds.SeriesInstanceUID = _uid(f"{series}/series")
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    if modality is not None:
        ds.Modality = modality
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _image(ds: Dataset) -> Dataset:
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(64))
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _document(ds: Dataset, template: str) -> Dataset:
    """The SR Document General/Content parts both SR and KO carry (PS3.3 C.17)."""
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentDate, ds.ContentTime = "20230615", "120000"
    ds.ConceptNameCodeSequence = Sequence([_code(*{"sr": ("18748-4", "LN", "Diagnostic Imaging Report"),
                                                   "ko": ("113000", "DCM", "Of Interest")}[template])])
    if template == "sr":
        ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
        text = Dataset()
        text.RelationshipType, text.ValueType, text.TextValue = "CONTAINS", "TEXT", "No acute findings."
        text.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
        ds.ContentSequence = Sequence([text])
    else:
        ds.ContentSequence = Sequence()
    return ds


def _pdf(ds: Dataset) -> Dataset:
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "report"
    ds.BurnedInAnnotation = "YES"
    ds.ConceptNameCodeSequence = Sequence()
    ds.EncapsulatedDocument = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    return ds


def mixed_study() -> dict[str, Dataset]:
    """role -> dataset; roles starting with ``image`` must be in the manifest, the others not."""
    return {
        "image-dx-10": _image(_base(DX_CLASS, "dx10", modality="DX", series="dx", series_number=1, instance_number=10)),
        "image-dx-2": _image(_base(DX_CLASS, "dx2", modality="DX", series="dx", series_number=1, instance_number=2)),
        "sr": _document(_base(SR_CLASS, "sr", modality="SR", series="sr", series_number=2, instance_number=1), "sr"),
        "ko": _document(_base(KO_CLASS, "ko", modality="KO", series="ko", series_number=3, instance_number=1), "ko"),
        "pdf-ot": _pdf(_base(PDF_CLASS, "pdf-ot", modality="OT", series="pdf-ot", series_number=4, instance_number=1)),
        "pdf-doc": _pdf(_base(PDF_CLASS, "pdf-doc", modality="DOC", series="pdf-doc", series_number=6, instance_number=1)),
        "image-sc-no-modality": _image(_base(SC_CLASS, "sc", modality=None, series="sc", series_number=5, instance_number=1)),
    }


def _to_bytes(ds: Dataset, path: Path) -> bytes:
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _truth(folder: Path) -> list[dict]:
    with open(folder / "ground_truth.jsonl", encoding="utf-8") as handle:
        return [json.loads(row) for row in handle]


@pytest.fixture(scope="module")
def loaded(client, tmp_path_factory) -> Loaded:
    root = tmp_path_factory.mktemp("manifest-data")
    generate_dataset(root / "dx", patients=3, studies_per_patient=2, size=64, seed=SEED_DX, progress=False)
    generate_dataset(root / "cr", patients=2, studies_per_patient=1, size=64, seed=SEED_CR, modality="CR",
                     progress=False)
    for folder in ("dx", "cr"):
        for path in sorted((root / folder).rglob("*.dcm")):
            client.upload(path.read_bytes())

    mixed: dict[str, str] = {}
    (root / "mixed").mkdir()
    for role, ds in mixed_study().items():
        mixed[role] = client.upload(_to_bytes(ds, root / "mixed" / f"{role}.dcm")).instance_id

    sample_ids: dict[str, str] = {}
    for sample in copy_samples(root / "samples"):
        try:
            result = client.upload((root / "samples" / sample.file).read_bytes())
        except Exception:  # noqa: BLE001 - a sample Orthanc refuses is simply not part of the check
            continue
        sample_ids[result.instance_id] = sample.modality
    return Loaded(_truth(root / "dx"), _truth(root / "cr"), mixed, sample_ids)


@pytest.fixture(scope="module")
def schema():
    return load_schema(SCHEMA_PATH)


def build(client, schema, **kw: Any):
    return build_manifest(client, schema_name=schema.name, labels=schema.label_names,
                          task_type=schema.task_type, **kw)


def sops(lines: list[ManifestLine]) -> set[str]:
    return {line.sop_instance_uid for line in lines}


# ------------------------------------------------------------------------------------ filters


def test_modality_and_patient_filters_one_find_and_two_bulk_reads(client, schema, loaded):
    result = build(client, schema, filters=parse_filters(modalities=["DX"], patient_id=f"SYN{SEED_DX}-*"))
    assert sops(result.lines) == {t["sop_instance_uid"] for t in loaded.dx_truth}
    assert {line.modality for line in result.lines} == {"DX"}
    # the query, then one bulk read for the studies and one for the instances: no GET per instance
    assert result.requests == {"find": 1, "bulk": 2}
    first = result.lines[0].to_dict()
    assert first["labels"] == ["Opacity", "Device", "Effusion"]
    assert first["task_type"] == "classification+roi" and first["schema"] == "chest-xray"
    assert "patient_id" not in first and "study_date" not in first  # PHI only with include_phi

    cr = build(client, schema, filters=parse_filters(modalities=["cr"], patient_id=f"SYN{SEED_CR}-*"))
    assert sops(cr.lines) == {t["sop_instance_uid"] for t in loaded.cr_truth}
    both = build(client, schema, filters=parse_filters(modalities=["DX,CR"], patient_id="SYN424?-*"))
    assert sops(both.lines) == sops(result.lines) | sops(cr.lines)
    none = build(client, schema, filters=parse_filters(modalities=["CR"], patient_id=f"SYN{SEED_DX}-*"))
    assert none.lines == [] and none.matched == 0


def test_patient_study_and_series_filters(client, schema, loaded):
    patient = loaded.dx_truth[0]["patient_id"]
    result = build(client, schema, filters=parse_filters(patient_id=patient))
    assert sops(result.lines) == {t["sop_instance_uid"] for t in loaded.dx_truth if t["patient_id"] == patient}

    study = loaded.dx_truth[1]["study_instance_uid"]
    result = build(client, schema, filters=parse_filters(study_uids=[study]))
    assert [line.study_instance_uid for line in result.lines] == [study]

    wanted = [loaded.dx_truth[2]["series_instance_uid"], loaded.cr_truth[0]["series_instance_uid"]]
    result = build(client, schema, filters=parse_filters(series_uids=wanted))
    assert sorted(line.series_instance_uid for line in result.lines) == sorted(wanted)
    assert result.requests == {"find": 1, "bulk": 2}
    assert result.warnings == []


def test_study_date_range_in_both_formats(client, schema, loaded):
    everything = build(client, schema, include_phi=True, filters=parse_filters(patient_id=f"SYN{SEED_DX}-*"))
    dates = sorted(line.study_date for line in everything.lines)
    assert all(len(d) == 8 and d.isdigit() for d in dates)
    middle = dates[len(dates) // 2]
    iso = f"{middle[:4]}-{middle[4:6]}-{middle[6:]}"

    def sources_between(low: str | None, high: str | None) -> set[str]:
        return {line.source for line in everything.lines
                if (low is None or line.study_date >= low) and (high is None or line.study_date <= high)}

    for low, high in ((iso, None), (None, middle), (iso, middle)):
        result = build(client, schema, filters=parse_filters(
            patient_id=f"SYN{SEED_DX}-*", study_date_from=low, study_date_to=high))
        assert {line.source for line in result.lines} == sources_between(
            middle if low else None, middle if high else None), (low, high)
    assert everything.lines[0].patient_id.startswith(f"SYN{SEED_DX}-")


def test_metadata_filter_reads_instance_metadata(client, schema, loaded):
    dx = build(client, schema, filters=parse_filters(patient_id=f"SYN{SEED_DX}-*"))
    assert len(build(client, schema, filters=parse_filters(
        patient_id=f"SYN{SEED_DX}-*", metadata=["Origin=RestApi"])).lines) == len(dx.lines)
    tagged = [dx.lines[0].source, dx.lines[3].source]
    for instance_id in tagged:
        # 1024..65535 are user metadata indices Orthanc accepts without a UserMetadata declaration
        client.set_metadata("instances", instance_id, "1030", "manifest-test")
    result = build(client, schema, filters=parse_filters(patient_id=f"SYN{SEED_DX}-*", metadata=["1030=manifest-test"]))
    assert [line.source for line in result.lines] == tagged  # manifest order kept
    assert result.metadata_mismatch == len(dx.lines) - 2
    assert result.requests == {"find": 1, "bulk": 2}  # the metadata came with the bulk read


# --------------------------------------------------------------------------------- exclusions


def test_non_images_are_excluded_and_counted_with_reasons(client, schema, loaded):
    result = build(client, schema, filters=parse_filters(patient_id=MIXED_PATIENT))
    images = [loaded.mixed[r] for r in ("image-dx-2", "image-dx-10", "image-sc-no-modality")]
    assert [line.source for line in result.lines] == images  # series 1 (instances 2, 10), then series 5
    assert result.matched == 7
    assert dict(result.excluded) == {
        "modality SR: structured reports": 1,
        "modality KO: key object selections": 1,
        "modality DOC: encapsulated documents": 1,
        f"SOP class Encapsulated PDF Storage ({PDF_CLASS}): encapsulated document": 1,
    }
    assert result.excluded_examples["modality SR: structured reports"] == [loaded.mixed["sr"]]
    # SR, KO and DOC series are dropped by Modality without reading their instances; bulk reads:
    # the study, the DX images, the OT and Modality-less instances with their SOP class metadata
    assert result.requests == {"find": 1, "bulk": 3}
    assert result.lines[2].to_dict().get("modality") is None


def test_check_sop_class_reads_every_instance(client, schema, loaded):
    result = build(client, schema, check_all_sop_classes=True, filters=parse_filters(patient_id=MIXED_PATIENT))
    assert len(result.lines) == 3 and result.unknown_sop_class == 0 and sum(result.excluded.values()) == 4
    assert result.requests == {"find": 1, "bulk": 2}  # the study; every instance with metadata


def test_pydicom_samples_keep_images_and_drop_non_images(client, schema, loaded):
    result = build(client, schema)  # no filter: the whole (shared) Orthanc
    written = {line.source for line in result.lines}
    non_image = {iid for iid, modality in loaded.sample_ids.items() if modality in ("SR", "SEG", "RTDOSE", "RTPLAN")}
    images = set(loaded.sample_ids) - non_image
    assert non_image and images
    assert not non_image & written
    assert images <= written
    for modality in {loaded.sample_ids[i] for i in non_image}:
        assert any(reason.startswith(f"modality {modality}:") for reason in result.excluded), modality
    assert result.requests["find"] == 1 and set(result.requests) == {"find", "bulk"}


# ----------------------------------------------------------------------------- manifest index


@pytest.mark.parametrize("filters, check_all", [
    (dict(modalities=["DX"], patient_id=f"SYN{SEED_DX}-*"), False),
    (dict(modalities=["DX,CR"], patient_id="SYN424?-*"), False),
    (dict(patient_id=MIXED_PATIENT), False),
    (dict(patient_id=MIXED_PATIENT), True),
    (dict(patient_id=f"SYN{SEED_DX}-*", study_date_from="2000-01-01", study_date_to="2030-12-31"), False),
    (dict(patient_id=f"SYN{SEED_DX}-*", metadata=["Origin=RestApi"]), False),
    (dict(modalities=["MR"]), False),
    ({}, False),
])
def test_index_builds_the_manifest_the_find_builds(client, schema, loaded, filters, check_all):
    wanted = build(client, schema, include_phi=True, check_all_sop_classes=check_all, filters=parse_filters(**filters))
    got = build(client, schema, include_phi=True, check_all_sop_classes=check_all, filters=parse_filters(**filters),
                use_index=True)
    assert got.lines == wanted.lines and got.lines or not filters
    assert (got.matched, got.excluded, got.metadata_mismatch) == (wanted.matched, wanted.excluded, wanted.metadata_mismatch)
    assert got.index == "full" and "find" not in got.requests and "list" in got.requests


def test_index_uids_filters_match_like_the_find(client, schema, loaded):
    for filters in (dict(study_uids=[loaded.dx_truth[1]["study_instance_uid"]]),
                    dict(series_uids=[loaded.dx_truth[2]["series_instance_uid"], loaded.cr_truth[0]["series_instance_uid"]]),
                    dict(patient_id=loaded.dx_truth[0]["patient_id"])):
        wanted = build(client, schema, filters=parse_filters(**filters))
        assert wanted.lines and build(client, schema, filters=parse_filters(**filters), use_index=True).lines == wanted.lines


INDEX_PATIENT = "MANIFEST-TEST-INDEX"


def _index_image(name: str, modality: str = "DX") -> bytes:
    ds = _image(_base(DX_CLASS, f"index-{name}", modality=modality, series=f"index-{name}", series_number=1,
                      instance_number=1))
    ds.PatientID = INDEX_PATIENT
    ds.StudyInstanceUID = _uid(f"index-{name}/study")
    from io import BytesIO

    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_incremental_index_serves_nothing_stale(client, schema, loaded, tmp_path):
    index_file = tmp_path / "index.json"
    only = parse_filters(patient_id=INDEX_PATIENT)
    first = client.upload(_index_image("a")).instance_id
    kept = client.upload(_index_image("b")).instance_id
    added = ""
    try:
        full = build(client, schema, filters=only, use_index=True, index_file=index_file)
        assert full.index == "full" and {ln.source for ln in full.lines} == {first, kept}
        assert full.lines == build(client, schema, filters=only).lines
        assert oct(index_file.stat().st_mode & 0o777) == "0o600"

        added = client.upload(_index_image("c")).instance_id
        grown = build(client, schema, filters=only, use_index=True, index_file=index_file)
        assert grown.index == "incremental" and "list" not in grown.requests
        assert added in {ln.source for ln in grown.lines}
        assert grown.lines == build(client, schema, filters=only).lines

        # deleted: never served again (Orthanc 1.10 logs no change for it; the ID lists show it)
        client.delete("instances", kept)
        shrunk = build(client, schema, filters=only, use_index=True, index_file=index_file)
        assert shrunk.index == "incremental" and {ln.source for ln in shrunk.lines} == {first, added}
        kept = client.upload(_index_image("b")).instance_id

        # modified: stored again under the same Orthanc ID (same UIDs) with another Modality
        client.delete("instances", first)
        assert client.upload(_index_image("a", modality="CR")).instance_id == first
        modified = build(client, schema, filters=only, use_index=True, index_file=index_file)
        assert modified.index == "incremental"
        assert {ln.source: ln.modality for ln in modified.lines} == {first: "CR", kept: "DX", added: "DX"}
        assert modified.lines == build(client, schema, filters=only).lines

        # an index that disagrees with Orthanc's ID lists (changes it never saw) is corrected
        data = json.loads(index_file.read_text())
        series_id = data["instances"].pop(kept)[0]
        data["instances"]["0000-gone"] = [series_id, "1.2.3", 1, None, None, None]
        index_file.write_text(json.dumps(data))
        again = build(client, schema, filters=only, use_index=True, index_file=index_file)
        assert again.index == "incremental" and again.lines == modified.lines

        # a server whose changes log went backwards (a database reset) is listed again
        data = json.loads(index_file.read_text())
        data["last_change"] += 10**9
        index_file.write_text(json.dumps(data))
        assert build(client, schema, filters=only, use_index=True, index_file=index_file).index == "full"
    finally:
        for instance_id in (first, kept, added):
            client.delete("instances", instance_id, missing_ok=True)


def test_cli_saves_the_index_where_asked_and_not_with_no_index_cache(cli, loaded, tmp_path):
    index_file = tmp_path / "idx" / "orthanc.json"
    out = tmp_path / "m.jsonl"
    assert cli("--modality", "CR", "--no-index-cache", "--out", str(out)) == 0
    assert not (tmp_path / "cache").exists() and not index_file.exists()
    assert cli("--modality", "CR", "--index-cache", str(index_file), "--out", str(out)) == 0
    assert index_file.exists() and oct(index_file.parent.stat().st_mode & 0o777) == "0o700"
    report = tmp_path / "r.json"
    assert cli("--modality", "CR", "--index-cache", str(index_file), "--out", str(out), "--report", str(report)) == 0
    assert json.loads(report.read_text())["index"] == "incremental"


# ------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def cli(connection, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the manifest index goes there
    password = tmp_path / "password"
    password.write_text(connection.password)
    password.chmod(0o600)

    def run(*argv: str, password_file: Path = password) -> int:
        return cli_main(["manifest", "--schema", str(SCHEMA_PATH), "--orthanc-url", connection.url,
                         "--username", connection.username, "--password-file", str(password_file),
                         "--quiet", *argv])

    return run


def test_cli_order_is_stable_and_sorted_and_limit_takes_the_head(cli, loaded, tmp_path):
    args = ("--patient-id", "SYN424?-*", "--include-phi")
    assert cli(*args, "--out", str(tmp_path / "a.jsonl")) == 0
    assert cli(*args, "--out", str(tmp_path / "b.jsonl")) == 0
    first = (tmp_path / "a.jsonl").read_bytes()
    assert first == (tmp_path / "b.jsonl").read_bytes()
    lines = read_manifest(tmp_path / "a.jsonl")
    assert len(lines) == len(loaded.dx_truth) + len(loaded.cr_truth)
    keys = [(line.study_date, line.study_instance_uid) for line in lines]
    assert keys == sorted(keys)

    assert cli(*args, "--limit", "3", "--out", str(tmp_path / "head.jsonl")) == 0
    assert (tmp_path / "head.jsonl").read_bytes() == b"".join(first.splitlines(keepends=True)[:3])


def test_cli_report_counts_exclusions(cli, loaded, tmp_path):
    report = tmp_path / "report.json"
    assert cli("--patient-id", MIXED_PATIENT, "--out", str(tmp_path / "m.jsonl"), "--report", str(report)) == 0
    data = json.loads(report.read_text())
    assert data["matched"] == 7 and data["written"] == 3 and data["excluded"]["total"] == 4
    assert data["excluded"]["by_reason"]["modality KO: key object selections"] == 1
    assert data["requests"] == {"find": 1, "bulk": 3}
    assert data["filters"]["patient_id"] == MIXED_PATIENT
    assert [line.source for line in read_manifest(tmp_path / "m.jsonl")][0] == loaded.mixed["image-dx-2"]


def test_cli_exit_codes(cli, loaded, tmp_path, capsys):
    out = tmp_path / "m.jsonl"
    assert cli("--patient-id", "NOBODY-MANIFEST-*", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "no image instance matches the filters" in err and "--patient-id NOBODY-MANIFEST-*" in err
    assert not out.exists()

    (tmp_path / "pw").write_text("x")
    unreachable = cli_main(["manifest", "--schema", str(SCHEMA_PATH), "--orthanc-url", "http://127.0.0.1:1",
                            "--username", "u", "--password-file", str(tmp_path / "pw"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert unreachable == 3 and err.startswith("manifest: error: cannot reach Orthanc at http://127.0.0.1:1")
    assert err.endswith("is the local stack up? python -m labeling local up, then source WORKDIR/orthanc.env")

    assert cli("--out", str(tmp_path / "missing" / "m.jsonl")) == 2
    assert capsys.readouterr().err.strip().endswith("does not exist; create it, or pass --parents")

    # only a non-image matches: exit 2, and the message says what was excluded
    assert cli("--series-uid", _uid("sr/series"), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "1 instances matched the query, 1 excluded as non-image (modality SR: structured reports: 1)" in err

    # a non-image modality cannot be asked for
    assert cli("--modality", "ko", "--out", str(out)) == 2
    assert "--modality: KO objects are key object selections, not images" in capsys.readouterr().err

    assert cli("--series-uid", "1.2.3.", "--out", str(out)) == 2
    assert "--series-uid: '1.2.3.' is not a DICOM UID" in capsys.readouterr().err

    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    assert cli("--out", str(out), password_file=wrong) == 3  # a service refusing (README, exit codes)
    err = capsys.readouterr().err
    assert "refused the credentials (HTTP 401)" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
