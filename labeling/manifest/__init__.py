"""The labeling manifest: the file (``format``), built from an Orthanc query (``build``, with its
``filters``, non-image ``exclusions`` and the Orthanc walk ``query``), its incremental index
(``index``), the series-level manifest (``series``) and the ``manifest`` command (``cli``).
"""

# Where ``manifest`` keeps its index when ``--index-cache`` is not given (``index.default_index_file``);
# ``local up`` sets it in orthanc.env to a file in the stack's folder, which ``down --purge`` removes.
INDEX_FILE_ENV = "MANIFEST_INDEX_FILE"
