"""Lambda deployment packages: the thin handler from lambda_src/ plus the labeling/ package.

Third-party dependencies (pydicom, requests, powertools) go into a Lambda layer built from
``build/lambda-layer/python`` by ``make lambda-layer`` (manylinux wheels for the Lambda runtime).
Without it the layer holds only a marker file and a warning is logged: enough for the offline plan
and the mocks tests, not for a working deployment (``make up`` builds it first).
"""

from __future__ import annotations

from pathlib import Path

import pulumi

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_RUNTIME = "python3.12"
LAYER_DIR = ROOT / "build" / "lambda-layer"
_SKIP = {"__pycache__", ".pytest_cache"}


def _tree(base: Path, prefix: str) -> dict[str, pulumi.Asset]:
    assets: dict[str, pulumi.Asset] = {}
    for path in sorted(base.rglob("*")):
        if path.is_file() and not _SKIP.intersection(path.parts) and path.suffix != ".pyc":
            assets[f"{prefix}{path.relative_to(base).as_posix()}"] = pulumi.FileAsset(str(path))
    return assets


def lambda_archive(function: str) -> pulumi.AssetArchive:
    """Archive for ``lambda_src/<function>/``: handler files at the root, ``labeling/`` beside them."""
    source = ROOT / "lambda_src" / function
    if not (source / "handler.py").is_file():
        raise FileNotFoundError(f"lambda_src/{function}/handler.py: the Lambda handler is missing")
    assets: dict[str, pulumi.Asset | pulumi.Archive] = dict(_tree(source, ""))
    assets.update(_tree(ROOT / "labeling", "labeling/"))
    return pulumi.AssetArchive(assets)


def dependency_layer_archive() -> pulumi.Archive:
    """The Lambda layer with third-party packages (``python/`` inside, as Lambda expects)."""
    if (LAYER_DIR / "python").is_dir():
        return pulumi.FileArchive(str(LAYER_DIR))
    pulumi.log.warn("build/lambda-layer is missing: run `make lambda-layer` before `pulumi up`, "
                    "or the Lambdas will fail to import their dependencies")
    return pulumi.AssetArchive({"python/LAYER_NOT_BUILT": pulumi.StringAsset("run make lambda-layer\n")})
