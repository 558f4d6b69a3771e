"""dicom-annotate domain package: Orthanc access, manifests, labeling contracts, consolidation.

Importable without Pulumi; the Lambdas, the portal, the CLI and the tests all use it.
"""

__version__ = "0.1.0"
