"""Lambda deployment packages: the thin handler from lambda_src/ plus the labeling/ package.

Third-party dependencies (pydicom, requests, powertools) go into a Lambda layer built from
``build/lambda-layer/python`` by ``make lambda-layer`` (manylinux wheels for the Lambda runtime).
Without it ``pulumi up`` stops (both Lambdas would fail to import their dependencies);
``pulumi preview``, the offline plan and the mocks tests get a layer holding only a marker file
and a warning (``make up`` and the deploy workflow build the layer first).
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from components.config import is_offline_run

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


def package_archive(*packages: str) -> pulumi.AssetArchive:
    """The named top-level packages (``training``, ``labeling``) as one archive, paths kept."""
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {}
    for package in packages:
        assets.update(_tree(ROOT / package, f"{package}/"))
    return pulumi.AssetArchive(assets)


def lambda_archive(function: str, with_labeling: bool = True) -> pulumi.AssetArchive:
    """Archive for ``lambda_src/<function>/``: handler files at the root, ``labeling/`` beside them
    (``with_labeling``; a function that does not import it goes without)."""
    source = ROOT / "lambda_src" / function
    if not (source / "handler.py").is_file():
        raise FileNotFoundError(f"lambda_src/{function}/handler.py: the Lambda handler is missing")
    assets: dict[str, pulumi.Asset | pulumi.Archive] = dict(_tree(source, ""))
    if with_labeling:
        assets.update(_tree(ROOT / "labeling", "labeling/"))
    return pulumi.AssetArchive(assets)


class LambdaLayerMissing(RuntimeError):
    """``pulumi up`` without ``make lambda-layer``: the Lambdas could not import their packages."""


def layer_built() -> bool:
    return (LAYER_DIR / "python").is_dir() and any((LAYER_DIR / "python").iterdir())


def dependency_layer_archive() -> pulumi.Archive:
    """The Lambda layer with third-party packages (``python/`` inside, as Lambda expects)."""
    if layer_built():
        return pulumi.FileArchive(str(LAYER_DIR))
    if not (is_offline_run() or pulumi.runtime.is_dry_run()):
        raise LambdaLayerMissing(f"{LAYER_DIR}/python is missing or empty: run `make "
                                 "lambda-layer` before `pulumi up` (the GT Lambdas import pydicom, requests and "
                                 "numpy from it)")
    pulumi.log.warn("build/lambda-layer is missing: run `make lambda-layer` before `pulumi up`, "
                    "or the Lambdas will fail to import their dependencies")
    return pulumi.AssetArchive({"python/LAYER_NOT_BUILT": pulumi.StringAsset("run make lambda-layer\n")})
