"""The label contract: the typed values every part of the project exchanges, defined once.

=====================  =======================================================================
module                 what it defines
=====================  =======================================================================
``shapes``             the ROI shape registry (names, point counts, meaning, SR graphic type)
``geometry``           an image's size (``ImageGeometry``) and an answer's image (``AnswerImage``)
``answer``             an answer in the label shape: ``LabelVerdict``, ``Roi``, ``Answer``,
                       ``parse_answer`` (validation, points inside the image)
``manifest_line``      one input-manifest line (``ManifestLine``: GT's input manifest + our keys)
``output_line``        one output-manifest line (``OutputRecord``, ``FailedLine``: GT's output format)
``ids``                the Orthanc instance ID check
``errors``             ``ContractError`` (``<field>: <reason>``), ``describe_value``
=====================  =======================================================================

Consolidation, the schema, the SR encoder, the output-manifest reader/writer, the manifest builder,
the GT handlers, the portal and training read and write through these classes; the architecture
notes (``docs/architecture.md``) say where each comes from.
"""

from labeling.contracts.answer import Answer, LabelVerdict, Roi, parse_answer, unwrap_answer
from labeling.contracts.errors import ContractError, describe_value
from labeling.contracts.geometry import AnswerImage, ImageGeometry
from labeling.contracts.shapes import (AREA_SHAPES, MAX_POINTS_PER_ROI, MAX_ROIS_PER_ANSWER, SHAPE_REGISTRY,
                                       SHAPES, ShapeSpec)

__all__ = [
    "AREA_SHAPES", "MAX_POINTS_PER_ROI", "MAX_ROIS_PER_ANSWER", "SHAPES", "SHAPE_REGISTRY", "Answer",
    "AnswerImage", "ContractError", "ImageGeometry", "LabelVerdict", "Roi", "ShapeSpec", "describe_value",
    "parse_answer", "unwrap_answer",
]
