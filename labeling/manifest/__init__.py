"""The labeling manifest: the file (``format``), built from an Orthanc query (``build``, with its
``filters``, non-image ``exclusions`` and the Orthanc walk ``query``), its incremental index
(``index``), the series-level manifest (``series``) and the ``manifest`` command (``cli``).
"""
