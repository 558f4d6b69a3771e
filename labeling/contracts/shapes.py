"""The ROI shape registry: every shape an annotator can draw, defined once.

A shape's name, how many points it carries and what they mean are the label contract's (see
``docs/architecture.md``, "The label shape"); the viewer's table (``viewer/src/answer.js``,
``SHAPE_POINTS``) is checked against this one by ``tests/unit/test_contracts.py``. Points are image
pixels ``[x, y]``: x = column, y = row, origin at the top-left corner of the frame's top-left pixel
(the DICOM SCOORD convention, PS3.3 C.18.6.1.1), so they lie within ``[0, columns] x [0, rows]``.

Adding a shape touches this registry, ROI fusion (``labeling/consolidation/rois.py``: overlap and
fusion per shape), the SR graphic (``labeling/dicom/sr.py``: ``roi_graphic`` and its reading back) and the
viewer tool (``viewer/src/answer.js`` and the Cornerstone tool in ``viewer/src/viewer.js``), and nothing
else: the GT template's tool help (``labeling/gt/viewer_assets.py``) and the simulated annotators
(``devkit/simulate.py``) follow the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Mapping, Optional

MAX_ROIS_PER_ANSWER: Final = 1_000
"""ROIs one answer may carry: far above any real image, low enough to bound a request's work."""
MAX_POINTS_PER_ROI: Final = 10_000
"""Vertices one ROI may carry: a freehand polygon drawn across a 4k image stays well below."""


@dataclass(frozen=True)
class ShapeSpec:
    """One ROI shape: ``min_points``..``max_points`` (None: no upper bound but
    :data:`MAX_POINTS_PER_ROI`), what the points mean, whether it encloses an area, the SR
    graphic type that encodes it (PS3.3 C.18.6.1.2) and the viewer tool's shortcut key (the GT
    template's help lists it; ``tests/unit/test_contracts.py`` checks ``viewer/src/viewer.js``)."""

    name: str
    min_points: int
    max_points: Optional[int]
    meaning: str
    area: bool
    sr_graphic_type: str
    key: str

    def count_problem(self, count: int) -> Optional[str]:
        """Why ``count`` points do not make this shape; None when they do."""
        high = self.max_points if self.max_points is not None else MAX_POINTS_PER_ROI
        if self.min_points <= count <= high:
            return None
        if self.min_points == self.max_points:
            want = f"exactly {self.min_points}"
        elif self.max_points is None and count >= self.min_points:
            want = f"at most {MAX_POINTS_PER_ROI}"
        else:
            want = f"at least {self.min_points}"
        return f"a {self.name} needs {want} point(s), got {count}"


_SPECS: Final = (
    ShapeSpec("rectangle", 2, 2, "two opposite corners of an axis-aligned box", True, "POLYLINE", "R"),
    ShapeSpec("ellipse", 2, 2, "two opposite corners of the axis-aligned box the ellipse fills", True,
              "ELLIPSE", "E"),
    ShapeSpec("polygon", 3, None, "the vertices of a closed polygon, in drawing order", True, "POLYLINE",
              "F"),
    ShapeSpec("point", 1, 1, "one point", False, "POINT", "O"),
)

_BY_NAME: Final[dict[str, ShapeSpec]] = {spec.name: spec for spec in _SPECS}
SHAPE_REGISTRY: Final[Mapping[str, ShapeSpec]] = MappingProxyType(_BY_NAME)
"""Shape name -> :class:`ShapeSpec`, in canonical order."""

SHAPES: Final = tuple(SHAPE_REGISTRY)
"""ROI shape names in canonical order: ``("rectangle", "ellipse", "polygon", "point")``."""

AREA_SHAPES: Final = tuple(spec.name for spec in _SPECS if spec.area)
"""Shapes that enclose an area (compared by overlap; the others by distance)."""
