"""Is it a DICOM file Orthanc will store, and which instance ID will Orthanc give it?

The upload checks every file here first (:mod:`labeling.orthanc.upload`), so a rejected one never
leaves the machine, and computes its Orthanc instance ID locally: Orthanc's IDs are SHA-1 hashes
of ``PatientID|StudyInstanceUID|SeriesInstanceUID|SOPInstanceUID`` (Orthanc Book, "Orthanc
identifiers").

Never stricter than Orthanc: the checks refuse only what Orthanc certainly refuses (an empty file,
truncated data, bytes that are no DICOM data set at all, a data set without the UIDs Orthanc
indexes by). A data set without the Part 10 header (no preamble/``DICM``), which DCMTK still reads,
passes when it holds those UIDs, and Orthanc judges it.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Optional

from labeling.contracts.ids import orthanc_instance_id

DICM_OFFSET = 128  # PS3.10 §7.1: 128-byte preamble, then the four bytes "DICM"
PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # (Float/Double)PixelData
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
# PS3.5 7.1.2: explicit-VR elements with a 2-byte reserved field and a 4-byte length.
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                      b"UT", b"UV"})


class InvalidDicom(ValueError):
    """The bytes are not a complete DICOM Part 10 file; the message says what is wrong."""


@dataclass(frozen=True)
class DicomIdentity:
    """The UIDs Orthanc indexes an instance by, and the instance ID it will give it."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str

    @property
    def orthanc_id(self) -> str:
        return orthanc_instance_id(self.patient_id, self.study_uid, self.series_uid, self.sop_instance_uid)


def validate_dicom(data: bytes) -> DicomIdentity:
    """Check that ``data`` is a complete DICOM Part 10 file Orthanc can index; return its identity.

    1. 128-byte preamble and ``DICM`` (PS3.10 §7.1); 2. every element's length, down to the pixel
    data and its encapsulated fragments, fits in the file — pydicom alone accepts a truncated file
    silently, Orthanc (DCMTK) refuses it; 3. the three UIDs Orthanc requires are present
    (PS3.3 C.7.2.1, C.7.3.1, C.12.1).

    The common case (a plain encoding, ASCII identifiers) is read by the length walk itself, which
    costs a fraction of a pydicom parse — client CPU competes with Orthanc on a small machine.
    Anything unusual (deflated data set, odd VR bytes, non-ASCII PatientID, missing transfer
    syntax) is parsed by pydicom (``stop_before_pixels``) and then walked with its encoding.
    """
    if not data:
        raise InvalidDicom("empty file")
    if len(data) < DICM_OFFSET + 4 or data[DICM_OFFSET:DICM_OFFSET + 4] != b"DICM":
        return _headerless_identity(data)
    identity = _fast_identity(data)
    return identity if identity is not None else _pydicom_identity(data)


def _headerless_identity(data: bytes) -> DicomIdentity:
    """A data set without the PS3.10 header (preamble, ``DICM``, group 0002): DCMTK, hence Orthanc,
    still reads one, guessing its encoding — so does pydicom (``force``). Refused only when no data
    set with the UIDs Orthanc indexes by comes out; the encoding is a guess, so no length walk."""
    import pydicom  # here, not at the top: numpy + pydicom cost every command's start-up ~0.5 s

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        values = {name: str(dataset.get(name, "") or "").rstrip("\0 ") for name in CAPTURED_TAGS.values()}
    except Exception:  # pydicom raises many types on garbage; any of them means "no data set"
        values = {}
    if not all(values.get(keyword) for keyword, _ in REQUIRED_UIDS):
        raise InvalidDicom("not a DICOM file: no PS3.10 header ('DICM' after a 128-byte preamble) and "
                           "no DICOM data set with the UIDs Orthanc indexes by")
    return _identity(values)


class _Unusual(Exception):
    """The fast path met something it leaves to pydicom."""


# Transfer syntaxes whose data set encoding differs from explicit VR little endian (PS3.5 A.1-A.5).
IMPLICIT_LITTLE = "1.2.840.10008.1.2"
EXPLICIT_BIG = "1.2.840.10008.1.2.2"
DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})
CAPTURED_TAGS = {0x00100020: "PatientID", 0x0020000D: "StudyInstanceUID",
                 0x0020000E: "SeriesInstanceUID", 0x00080018: "SOPInstanceUID"}
REQUIRED_UIDS = (("StudyInstanceUID", "(0020,000D)"), ("SeriesInstanceUID", "(0020,000E)"),
                 ("SOPInstanceUID", "(0008,0018)"))


def _fast_identity(data: bytes) -> Optional[DicomIdentity]:
    start, syntax = _read_meta(data)
    if not syntax or syntax in DEFLATED:
        return None
    captured: dict[str, bytes] = {}
    try:
        _check_elements(data, start, len(data), syntax == IMPLICIT_LITTLE, syntax != EXPLICIT_BIG,
                        depth=0, capture=captured)
    except _Unusual:
        return None
    try:
        values = {name: raw.decode("ascii").rstrip("\0 ") for name, raw in captured.items()}
    except UnicodeDecodeError:
        return None  # a PatientID in another character set: pydicom decodes it (PS3.5 6.1)
    return _identity(values)


def _pydicom_identity(data: bytes) -> DicomIdentity:
    import pydicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        syntax = dataset.file_meta.get("TransferSyntaxUID")
    except Exception as exc:  # pydicom raises many types on garbage; any of them means "unreadable"
        raise InvalidDicom(f"unreadable DICOM header ({type(exc).__name__}: {exc})") from None
    if not syntax:
        raise InvalidDicom("File Meta Information has no TransferSyntaxUID (0002,0010)")
    if not syntax.is_deflated:  # a deflated data set is zlib data: Orthanc's inflater checks it
        # The declared encoding, as DCMTK reads it: Orthanc refuses a file that declares explicit
        # VR but holds implicit VR (pydicom would guess and accept it).
        try:
            _check_elements(data, _read_meta(data)[0], len(data), syntax.is_implicit_VR,
                            syntax.is_little_endian, depth=0)
        except _Unusual as exc:
            raise InvalidDicom(f"malformed: {exc}") from None
    try:
        values = {name: str(dataset.get(name, "") or "").rstrip("\0 ") for name in CAPTURED_TAGS.values()}
    except Exception as exc:
        raise InvalidDicom(f"unreadable identifying attributes ({type(exc).__name__}: {exc})") from None
    return _identity(values)


def _identity(values: dict[str, str]) -> DicomIdentity:
    for keyword, tag in REQUIRED_UIDS:
        if not values.get(keyword):
            raise InvalidDicom(f"missing {keyword} {tag}, which Orthanc needs to index the instance")
    return DicomIdentity(values.get("PatientID", ""), values["StudyInstanceUID"],
                         values["SeriesInstanceUID"], values["SOPInstanceUID"])


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def _read_meta(data: bytes) -> tuple[int, Optional[str]]:
    """(offset of the data set, Transfer Syntax UID) — group 0002 is explicit VR little endian."""
    pos = DICM_OFFSET + 4
    syntax = None
    size = len(data)
    while pos + 8 <= size:
        if _U16.unpack_from(data, pos)[0] != 0x0002:
            break
        element = _U16.unpack_from(data, pos + 2)[0]
        if data[pos + 4:pos + 6] in LONG_VRS:
            length = _U32.unpack_from(data, pos + 8)[0] if pos + 12 <= size else 0
            header = 12
        else:
            length = _U16.unpack_from(data, pos + 6)[0]
            header = 8
        if element == 0x0010:
            syntax = data[pos + header:pos + header + length].decode("ascii", "replace").rstrip("\0 ")
        pos += header + length
    return pos, syntax


def _check_elements(data: bytes, pos: int, end: int, implicit: bool, little: bool, depth: int,
                    capture: Optional[dict[str, bytes]] = None) -> int:
    """Walk data elements from ``pos`` to ``end`` (or a delimiter); raise InvalidDicom if cut short.

    Only tags and lengths are read (PS3.5 §7.1, §7.5): cheap, and it finds truncation anywhere —
    in the header, in the pixel data, or in encapsulated fragments (PS3.5 A.4). ``capture`` collects
    the raw values of :data:`CAPTURED_TAGS` at the top level.
    """
    order = "<" if little else ">"
    tag_struct = struct.Struct(order + "HH")
    u16 = struct.Struct(order + "H")
    u32 = struct.Struct(order + "I")
    while pos < end:
        if pos + 8 > end:
            raise InvalidDicom(f"truncated: incomplete element header at byte {pos} of {len(data)}")
        group, element = tag_struct.unpack_from(data, pos)
        tag = (group << 16) | element
        if tag == ITEM_END or tag == SEQUENCE_END:
            return pos + 8  # delimiter of the enclosing item or sequence
        if tag == ITEM:
            raise InvalidDicom(f"malformed: item tag outside a sequence at byte {pos}")
        vr = b""
        if implicit:
            length = u32.unpack_from(data, pos + 4)[0]
            header = 8
        else:
            vr = data[pos + 4:pos + 6]
            if vr in LONG_VRS:
                if pos + 12 > end:
                    raise InvalidDicom(f"truncated: incomplete element header at byte {pos} of {len(data)}")
                length = u32.unpack_from(data, pos + 8)[0]
                header = 12
            elif vr.isalpha() and vr.isupper():
                length = u16.unpack_from(data, pos + 6)[0]
                header = 8
            else:
                raise _Unusual(f"element ({group:04X},{element:04X}) at byte {pos} has no valid VR")
        pos += header
        if length == UNDEFINED_LENGTH:
            if tag in PIXEL_DATA_TAGS:
                pos = _check_items(data, pos, end, implicit=True, little=little, depth=depth,
                                   fragments=True, delimited=True)
            else:  # a sequence (SQ, or UN/implicit with undefined length, PS3.5 6.2.2)
                pos = _check_items(data, pos, end, implicit=implicit or vr == b"UN", little=little,
                                   depth=depth, fragments=False, delimited=True)
            continue
        if pos + length > end:
            what = "pixel data" if tag in PIXEL_DATA_TAGS else f"element ({group:04X},{element:04X})"
            raise InvalidDicom(f"truncated: {what} declares {length} bytes at byte {pos} but only "
                               f"{end - pos} remain")
        if capture is not None and tag in CAPTURED_TAGS:
            capture[CAPTURED_TAGS[tag]] = data[pos:pos + length]
        if vr == b"SQ" or (implicit and length and _is_defined_length_sequence(data, pos, order)):
            _check_items(data, pos, pos + length, implicit=implicit, little=little, depth=depth,
                         fragments=False, delimited=False)
        pos += length
    return pos


def _is_defined_length_sequence(data: bytes, pos: int, order: str) -> bool:
    """In implicit VR the VR is unknown: a value starting with an item tag is treated as a sequence."""
    if pos + 4 > len(data):
        return False
    group, element = struct.unpack_from(order + "HH", data, pos)
    return (group << 16 | element) == ITEM


def _check_items(data: bytes, pos: int, end: int, *, implicit: bool, little: bool, depth: int,
                 fragments: bool, delimited: bool) -> int:
    """Walk the items of a sequence or of encapsulated pixel data.

    ``delimited``: undefined length, so a sequence delimiter must come before ``end``; otherwise
    the items fill exactly up to ``end`` (a defined-length sequence).
    """
    if depth > 32:
        raise InvalidDicom("malformed: sequences nested more than 32 deep")
    order = "<" if little else ">"
    while pos < end:
        if pos + 8 > end:
            raise InvalidDicom(f"truncated: incomplete item header at byte {pos} of {len(data)}")
        group, element, length = struct.unpack_from(order + "HHI", data, pos)
        tag = (group << 16) | element
        pos += 8
        if tag == SEQUENCE_END:
            return pos
        if tag != ITEM:
            raise InvalidDicom(f"malformed: expected an item at byte {pos - 8}, found "
                               f"({group:04X},{element:04X})")
        if length == UNDEFINED_LENGTH:
            if fragments:
                raise InvalidDicom(f"malformed: pixel data fragment of undefined length at byte {pos - 8}")
            pos = _check_elements(data, pos, end, implicit, little, depth + 1)
            continue
        if pos + length > end:
            what = "pixel data fragment" if fragments else "sequence item"
            raise InvalidDicom(f"truncated: {what} declares {length} bytes at byte {pos} but only "
                               f"{end - pos} remain")
        if not fragments:
            _check_elements(data, pos, pos + length, implicit, little, depth + 1)
        pos += length
    if not delimited:
        return pos
    what = "encapsulated pixel data" if fragments else "sequence"
    raise InvalidDicom(f"truncated: {what} has no end delimiter (file ends at byte {len(data)})")

