"""The labeling manifest: built from an Orthanc query (``build``), its incremental index (``index``)
and the series-level manifest (``series``).
"""
