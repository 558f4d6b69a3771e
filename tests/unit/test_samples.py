"""pydicom's real-world sample files (devkit/samples.py): what is copied, what is skipped, why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000, JPEG2000Lossless, RLELossless

from devkit import samples
from devkit.samples import MANIFEST_FILE, SampleFile, SkippedFile, copy_samples, inspect_file, scan_samples
from devkit.synth import OutputDirError


@pytest.fixture(scope="module")
def copied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SampleFile]]:
    out = tmp_path_factory.mktemp("samples") / "out"
    return out, copy_samples(out)


def local(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path, name
    return Path(path)


def test_compressed_variety_is_copied(copied: tuple[Path, list[SampleFile]]) -> None:
    _, files = copied
    syntaxes = {f.transfer_syntax_uid for f in files}
    assert syntaxes & {JPEG2000, JPEG2000Lossless}, "no JPEG 2000 sample"
    assert RLELossless in syntaxes, "no RLE sample"
    assert any(f.frames > 1 for f in files), "no multi-frame sample"
    assert any(f.kind == "sr" for f in files), "no structured report"
    assert len(syntaxes) >= 8


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")  # a sample's own oddity
def test_copies_are_byte_identical_and_readable(copied: tuple[Path, list[SampleFile]]) -> None:
    out, files = copied
    assert files and all(f.verbatim for f in files)
    for sample in files:
        target = out / sample.file
        assert target.read_bytes() == sample.source.read_bytes(), sample.file
        ds = pydicom.dcmread(target)
        assert str(ds.file_meta.TransferSyntaxUID) == sample.transfer_syntax_uid
        assert str(ds.SOPInstanceUID) == sample.sop_instance_uid
    names = {p.name for p in out.iterdir()}
    assert names == {f.file for f in files} | {MANIFEST_FILE}  # flat, nothing else
    assert all(name.endswith(".dcm") for name in names - {MANIFEST_FILE})


def test_manifest_lists_copied_and_skipped(copied: tuple[Path, list[SampleFile]]) -> None:
    out, files = copied
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert [f["file"] for f in manifest["files"]] == [f.file for f in files]
    reasons = {Path(s["source"]).name: s["reason"] for s in manifest["skipped"]}
    assert reasons["README.txt"] == "not DICOM Part-10"
    assert reasons["no_meta.dcm"] == "not DICOM Part-10"
    assert reasons["MR_truncated.dcm"] == "pixel data damaged"
    assert reasons["meta_missing_tsyntax.dcm"] == "no transfer syntax"
    assert reasons["DICOMDIR"] == "DICOMDIR"
    assert reasons["rtplan.dcm"] == "no pixel data"  # neither an image nor an SR
    assert reasons["JPEGLSNearLossless_08.dcm"] == "missing UIDs"


def test_shared_sop_instance_uids_are_marked(copied: tuple[Path, list[SampleFile]]) -> None:
    _, files = copied
    by_name = {f.file: f for f in files}
    assert by_name["MR_small.dcm"].duplicate_of is None
    assert by_name["MR_small_RLE.dcm"].duplicate_of == "MR_small.dcm"
    firsts = {}
    for sample in files:
        first = firsts.setdefault(sample.sop_instance_uid, sample.file)
        assert sample.duplicate_of == (None if first == sample.file else first)


def test_distinct_uids_gives_every_copy_its_own_instance(tmp_path: Path) -> None:
    sources = [local(n) for n in ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "JPEGLSNearLossless_08.dcm")]
    scan = scan_samples(sources, distinct_uids=True)
    files = copy_samples(tmp_path / "out", scan=scan)
    assert len(files) == 4 and not scan.skipped
    seen = set()
    for sample in files:
        original, copy = pydicom.dcmread(sample.source), pydicom.dcmread(tmp_path / "out" / sample.file)
        assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert copy.PixelData == original.PixelData  # never re-encoded
        assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID == sample.sop_instance_uid
        assert copy.StudyInstanceUID and copy.SeriesInstanceUID
        seen.add(copy.SOPInstanceUID)
    assert len(seen) == 4
    # derived, not random: a second scan plans the same UIDs
    assert scan_samples(sources, distinct_uids=True) == scan


def test_damaged_encapsulated_pixel_data_is_skipped(tmp_path: Path) -> None:
    broken = tmp_path / "broken_rle.dcm"
    broken.write_bytes(local("MR_small_RLE.dcm").read_bytes()[:-600])  # cut into the last fragment
    result = inspect_file(broken)
    assert isinstance(result, SkippedFile)
    assert result.reason == "truncated"
    assert "End of file reached before delimiter" in result.detail


def test_non_empty_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(OutputDirError, match="not empty"):
        copy_samples(tmp_path, scan=scan_samples([local("CT_small.dcm")]))
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def samples_parser() -> argparse.ArgumentParser:
    from devkit.cli import build_parser  # the real parser: one-line errors come from labeling.cli

    return build_parser(["samples"])


def test_cli_help_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        samples_parser().parse_args(["samples", "--help"])
    assert info.value.code == 0
    assert "--distinct-uids" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        samples_parser().parse_args(["samples"])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "python -m devkit samples: error: the following arguments are required: --out (see --help)\n"
    )


def test_cli_refuses_a_file_as_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    args = samples_parser().parse_args(["samples", "--out", str(target)])
    assert args.func(args) == 2
    assert capsys.readouterr().err == f"samples: error: --out {target}: exists and is not a directory\n"


def test_cli_prints_the_table_and_skip_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    subset = [local(n) for n in ("CT_small.dcm", "MR_small_RLE.dcm", "MR_truncated.dcm", "README.txt")]
    monkeypatch.setattr(samples, "sample_sources", lambda: subset)
    args = samples_parser().parse_args(["samples", "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "2 sample files copied" in out and "RLELossless" in out
    assert "2 files skipped" in out and "pixel data damaged" in out and "not DICOM Part-10" in out


def test_sample_that_upload_would_reject_is_skipped_with_the_reason() -> None:
    # SC_rgb_jpeg.dcm declares explicit VR but is written implicit: pydicom reads it, Orthanc
    # refuses it, and so does the upload check — the sample set must not carry it.
    result = inspect_file(Path(get_testdata_file("SC_rgb_jpeg.dcm")))
    assert isinstance(result, SkippedFile)
    assert result.reason == "malformed encoding"
    assert "VR" in result.detail
