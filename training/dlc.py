"""SageMaker PyTorch Deep Learning Container images, from the SageMaker Python SDK's own image table.

``training/dlc_images.json`` holds the ``training`` and ``inference`` entries of the SDK's
``image_uri_config/pytorch.json`` for the pinned versions, unchanged (registry account per region,
Python version, repository), with its provenance. Tags are built as the SDK builds them
(``image_uris._format_tag``: ``<version>-<cpu|gpu>-<py_version>``). To move to a newer container::

    pip download --no-deps sagemaker-core==X.Y.Z -d /tmp/sm && unzip -j /tmp/sm/*.whl \\
        'sagemaker/core/image_uri_config/pytorch.json' -d /tmp/sm
    python -m training.dlc --update /tmp/sm/pytorch.json --training 2.8.0 --inference 2.6.0 \\
        --source "PyPI sagemaker-core==X.Y.Z"

Stdlib only: the Pulumi program (components/notebook.py) reads the same table for the
registry account its execution role may pull from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

DATA_FILE = Path(__file__).resolve().with_name("dlc_images.json")
SCOPES = ("training", "inference")


@lru_cache(maxsize=1)
def image_table() -> dict[str, Any]:
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class DlcImage:
    """One PyTorch DLC (training or inference): repository, version, Python, registry per region."""

    scope: str

    @property
    def _entry(self) -> dict[str, Any]:
        return image_table()[self.scope]

    @property
    def repository(self) -> str:
        return self._entry["repository"]

    @property
    def version(self) -> str:
        return self._entry["version"]

    @property
    def py_version(self) -> str:
        return self._entry["py_versions"][-1]

    def tag(self, gpu: bool) -> str:
        processor = "gpu" if gpu else "cpu"
        if processor not in self._entry["processors"]:
            raise ValueError(f"{self.repository} {self.version}: no {processor} image in the SDK table")
        return f"{self.version}-{processor}-{self.py_version}"

    @property
    def cpu_tag(self) -> str:
        return self.tag(False)

    @property
    def gpu_tag(self) -> str:
        return self.tag(True)

    def uri(self, region: str, gpu: bool) -> str:
        domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        return f"{registry_account(region, self.scope)}.dkr.ecr.{region}.{domain}/{self.repository}:{self.tag(gpu)}"


def registry_account(region: str, scope: str = "training") -> str:
    """The account that publishes the DLC in ``region``; ValueError for a region without one."""
    registries = image_table()[scope]["registries"]
    if region not in registries:
        raise ValueError(f"region {region!r}: the SageMaker SDK lists no PyTorch {scope} container there "
                         f"(regions: {', '.join(sorted(registries))})")
    return registries[region]


TRAINING_IMAGE = DlcImage("training")
INFERENCE_IMAGE = DlcImage("inference")


def extract(sdk_table: dict[str, Any], versions: dict[str, str], source: str, source_sha256: str) -> dict[str, Any]:
    """The data file's content: the chosen version entries of the SDK's pytorch.json, unchanged."""
    out: dict[str, Any] = {"_provenance": {
        "source": f"{source}, file image_uri_config/pytorch.json",
        "source_sha256": source_sha256,
        "extracted": f"{date.today().isoformat()} by `python -m training.dlc --update` (entries unchanged)",
        "tag_format": "<version>-<cpu|gpu>-<py_version>, as the SDK's image_uris._format_tag builds it",
    }}
    for scope in SCOPES:
        version = versions[scope]
        entries = sdk_table[scope]["versions"]
        if version not in entries:
            raise ValueError(f"--{scope} {version}: not in the SDK table ({', '.join(entries)})")
        out[scope] = {"processors": sdk_table[scope]["processors"], "version": version, **entries[version]}
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.dlc",
                                     description="Show the pinned PyTorch DLC images, or refresh them from the SDK table.")
    parser.add_argument("--update", metavar="PYTORCH_JSON", help="the SDK's image_uri_config/pytorch.json")
    parser.add_argument("--training", default=None, help="training container version (default: unchanged)")
    parser.add_argument("--inference", default=None, help="inference container version (default: unchanged)")
    parser.add_argument("--source", default="PyPI sagemaker-core", help="where pytorch.json came from")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    if args.update:
        raw = Path(args.update).read_bytes()
        versions = {"training": args.training or TRAINING_IMAGE.version,
                    "inference": args.inference or INFERENCE_IMAGE.version}
        try:
            data = extract(json.loads(raw), versions, args.source, hashlib.sha256(raw).hexdigest())
        except (ValueError, KeyError) as exc:
            print(f"error: {args.update}: {exc}", file=sys.stderr)
            return 2
        DATA_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        image_table.cache_clear()
    for image in (TRAINING_IMAGE, INFERENCE_IMAGE):
        print(image.uri(args.region, gpu=False))
        print(image.uri(args.region, gpu=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
