"""Image geometry: what size an image is, and which frame of it an answer was drawn on.

Rows (0028,0010) and Columns (0028,0011) are the Image Pixel Module's (PS3.3 C.7.6.3); Number of
Frames (0028,0008) the Multi-frame Module's (PS3.3 C.7.6.6), 1 for a single-frame image. The manifest
line records an image's geometry when the builder knows it (:class:`ImageGeometry`); an answer says
which size it saw and which 0-based frame it annotated (:class:`AnswerImage`, the label shape's
``image``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from labeling.contracts.errors import ContractError, describe_value


def _int_at_least(raw: Any, minimum: int, field: str) -> int:
    # bool is an int subclass: `"rows": true` is a mistake, not 1.
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise ContractError(field, f"expected an integer >= {minimum}, got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class ImageGeometry:
    """An image's size: ``rows`` x ``columns`` pixels, ``frames`` frames (PS3.3 C.7.6.3, C.7.6.6)."""

    rows: int
    columns: int
    frames: int = 1

    def __post_init__(self) -> None:
        _int_at_least(self.rows, 1, "rows")
        _int_at_least(self.columns, 1, "columns")
        _int_at_least(self.frames, 1, "frames")

    @classmethod
    def from_dataset(cls, ds: Any) -> ImageGeometry:
        """From a pydicom dataset's Rows, Columns and NumberOfFrames (absent: 1)."""
        return cls(int(ds.Rows), int(ds.Columns), int(ds.get("NumberOfFrames") or 1))

    @classmethod
    def from_dict(cls, raw: Any, field: str = "image_geometry") -> ImageGeometry:
        """From ``{"rows", "columns", "frames"?}``; ContractError names ``field.<key>`` (``<key>``
        when ``field`` is empty: a manifest line keeps the keys at its top level)."""
        if not isinstance(raw, Mapping):
            raise ContractError(field, f"expected an object, got {describe_value(raw, json=True)}")

        def path(key: str) -> str:
            return f"{field}.{key}" if field else key

        for key in ("rows", "columns"):
            if key not in raw:
                raise ContractError(path(key), "missing")
        return cls(_int_at_least(raw["rows"], 1, path("rows")),
                   _int_at_least(raw["columns"], 1, path("columns")),
                   _int_at_least(raw.get("frames", 1), 1, path("frames")))

    def to_dict(self) -> dict[str, int]:
        return {"rows": self.rows, "columns": self.columns, "frames": self.frames}


@dataclass(frozen=True)
class AnswerImage:
    """The label shape's ``image``: the size the annotator saw and the 0-based ``frame`` annotated.

    ``rows``/``columns`` may be unknown (None) in an answer; ``to_dict`` leaves them out then.
    """

    rows: Optional[int] = None
    columns: Optional[int] = None
    frame: int = 0

    @classmethod
    def parse(cls, raw: Any) -> Optional[AnswerImage]:
        """The answer's ``image`` value (None or a mapping); None when it says nothing."""
        if raw is None:
            return None
        if type(raw) is dict:  # fast path for the common, complete case
            rows, cols, frame = raw.get("rows"), raw.get("columns"), raw.get("frame", 0)
            if (type(rows) is int and type(cols) is int and type(frame) is int
                    and rows >= 1 and cols >= 1 and frame >= 0):
                return cls(rows, cols, frame)
        if not isinstance(raw, Mapping):
            raise ContractError("image", f"expected an object, got {type(raw).__name__}")
        out: dict[str, int] = {}
        for key, minimum in (("rows", 1), ("columns", 1), ("frame", 0)):
            if key in raw and raw[key] is not None:
                out[key] = _int_at_least(raw[key], minimum, f"image.{key}")
        return cls(**out) if out else None

    def to_dict(self) -> dict[str, int]:
        out = {key: value for key, value in (("rows", self.rows), ("columns", self.columns))
               if value is not None}
        out["frame"] = self.frame
        return out

    def check_against(self, geometry: ImageGeometry) -> None:
        """ContractError when this answer's size or frame does not fit the recorded ``geometry``."""
        for key in ("rows", "columns"):
            seen = getattr(self, key)
            if seen is not None and seen != getattr(geometry, key):
                raise ContractError(f"image.{key}", f"{seen} but the image has {getattr(geometry, key)}")
        if self.frame >= geometry.frames:
            raise ContractError("image.frame", f"frame {self.frame} is outside the image's "
                                               f"{geometry.frames} frame(s) (0-based)")
