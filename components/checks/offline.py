"""Run the Pulumi program offline, under ``pulumi.runtime.set_mocks``, and record what it declares.

Used by the unit tests (assert the security floor resource by resource), the policy rules and the
offline plan (``make plan STACK=dev``). No Pulumi CLI, plugin or AWS account is needed: every
resource registration is answered by :class:`RecordingMocks`, which keeps the inputs.

awsx components are remote (multi-language) components: under mocks they are opaque, so their
inputs are recorded and their outputs are mocked in :data:`COMPONENT_OUTPUTS`.

The program publishes the viewer build (``build/viewer``); :func:`viewer_build` gives each run a
snapshot of it, or a placeholder (noted in :attr:`Recording.notes`) when it is not built.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import runpy
import shutil
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from components.config import offline_run

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_ID = "123456789012"
PLACEHOLDER_SECRET = "placeholder-secret-value"
BYO_VPC_CIDR = "172.31.0.0/16"


@dataclass
class RecordedResource:
    """One declared resource: Pulumi type token, logical name, inputs (camelCase wire names)."""

    type: str
    name: str
    inputs: dict[str, Any]
    parent: Optional[str] = None
    custom: bool = True
    # The mock monitor's URN and the aliases as sent (alias specs as dicts, or URN strings):
    # tools/mock_recording.py turns them into the engine's URNs to check a refactoring.
    urn: str = ""
    aliases: list[Any] = field(default_factory=list)
    # URNs it waits for: its explicit depends_on and the resources its inputs come from.
    dependencies: list[str] = field(default_factory=list)

    def get(self, *path: str, default: Any = None) -> Any:
        node: Any = self.inputs
        for key in path:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and key < len(node):
                node = node[key]
            else:
                return default
        return node

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "inputs": self.inputs,
                "parent": self.parent, "custom": self.custom}


@dataclass
class Recording:
    """Everything one program run declared, plus its stack outputs."""

    stack: str
    resources: list[RecordedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    # What the harness substituted (e.g. a placeholder viewer build); the plan prints these.
    notes: list[str] = field(default_factory=list)

    def of_type(self, *types: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type in types]

    def named(self, name: str) -> RecordedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def to_json(self) -> str:
        return json.dumps({"stack": self.stack, "resources": [r.to_dict() for r in self.resources],
                           "outputs": self.outputs, "secret_outputs": sorted(self.secret_outputs),
                           "notes": self.notes},
                          indent=1, sort_keys=True, default=str)


def _stable_hash(text: str) -> int:
    """Same mocked ids in every process (Python's hash() of a str changes per run)."""
    return zlib.crc32(text.encode("utf-8"))


def _arn(service: str, name: str, region: str, kind: str = "") -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{kind}{name}"


# Mocked outputs of opaque (remote) components, by type token.
def _awsx_vpc_outputs(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "vpcId": f"vpc-0{_stable_hash(name) % 10**8:08x}"[:12],
        "publicSubnetIds": [f"subnet-0a{i}00000000000" for i in range(2)],
        "privateSubnetIds": [f"subnet-0b{i}00000000000" for i in range(2)],
        "isolatedSubnetIds": [],
        "natGateways": [],
    }


def _awsx_image_outputs(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    digest = f"{_stable_hash(name):08x}" * 8
    return {"imageUri": f"{inputs.get('repositoryUrl', name)}@sha256:{digest}"}


COMPONENT_OUTPUTS = {"awsx:ec2:Vpc": _awsx_vpc_outputs, "awsx:ecr:Image": _awsx_image_outputs}


def _mock_state(typ: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    """Computed attributes a real provider would return, enough for the program to wire things."""
    state = dict(inputs)
    if typ in COMPONENT_OUTPUTS:
        state.update(COMPONENT_OUTPUTS[typ](name, inputs))
        return state
    parts = typ.split(":")
    service = parts[1].split("/")[0] if len(parts) > 1 else "unknown"
    physical = inputs.get("name") or inputs.get("bucket") or name
    state.setdefault("arn", _arn(service, str(physical), region, f"{service}/"))
    state.setdefault("id", f"{physical}-id")
    if typ == "aws:s3/bucket:Bucket":
        state.update(bucket=physical, arn=f"arn:aws:s3:::{physical}",
                     bucketRegionalDomainName=f"{physical}.s3.{region}.amazonaws.com")
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        state.update(arn=_arn("logs", str(physical), region, "log-group:"), name=physical)
    elif typ == "aws:iam/role:Role":
        state.update(arn=f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}", name=physical)
    elif typ == "aws:kms/key:Key":
        state.update(keyId=f"{name}-key-id", arn=_arn("kms", f"{name}-key-id", region, "key/"))
    elif typ == "aws:rds/instance:Instance":
        state.update(address=f"{name}.abc.{region}.rds.amazonaws.com", endpoint=f"{name}.rds:5432",
                     port=inputs.get("port", 5432),
                     masterUserSecrets=[{"secretArn": _arn("secretsmanager", f"rds!{name}", region,
                                                           "secret:"), "secretStatus": "active",
                                         "kmsKeyId": inputs.get("masterUserSecretKmsKeyId")}])
    elif typ == "aws:lb/loadBalancer:LoadBalancer":
        state.update(dnsName=f"{name}.{region}.elb.amazonaws.com", zoneId="Z35SXDOTRQ7X7K",
                     arnSuffix=f"app/{name}/0123456789abcdef")
    elif typ == "aws:lb/targetGroup:TargetGroup":
        state.update(arnSuffix=f"targetgroup/{name}/0123456789abcdef")
    elif typ == "aws:ec2/securityGroup:SecurityGroup":
        state["id"] = f"sg-{_stable_hash(name) % 10**12:012d}"
    elif typ in ("aws:rds/parameterGroup:ParameterGroup", "aws:rds/subnetGroup:SubnetGroup"):
        state["name"] = physical  # auto-named in a real deployment; referenced by the instance
    elif typ == "aws:ecs/cluster:Cluster":
        state["name"] = inputs.get("name", name)
    elif typ == "aws:ecs/service:Service":
        state["name"] = inputs.get("name", name)
    elif typ == "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace":
        state["hostedZone"] = "Z0123456789"
    elif typ == "aws:cloudfront/distribution:Distribution":
        distribution_id = f"E{_stable_hash(name) % 10**12:012d}"
        state.update(id=distribution_id, domainName=f"d{_stable_hash(name) % 10**8}.cloudfront.net",
                     arn=f"arn:aws:cloudfront::{ACCOUNT_ID}:distribution/{distribution_id}")
    elif typ == "aws:cognito/userPool:UserPool":
        pool_id = f"{region}_{_stable_hash(name) % 10**9:09d}"
        state.update(id=pool_id, arn=_arn("cognito-idp", pool_id, region, "userpool/"),
                     endpoint=f"cognito-idp.{region}.amazonaws.com/{pool_id}")
    elif typ == "aws:cognito/userPoolClient:UserPoolClient":
        state["id"] = f"client{_stable_hash(name):010d}"
    elif typ == "aws:cognito/userPoolDomain:UserPoolDomain":
        state["id"] = str(inputs.get("domain", name))
    elif typ == "aws:ecr/repository:Repository":
        state.update(name=physical, arn=_arn("ecr", str(physical), region, "repository/"),
                     repositoryUrl=f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{physical}")
    elif typ == "aws:sagemaker/notebookInstance:NotebookInstance":
        state["url"] = f"{physical}.notebook.{region}.sagemaker.aws"
    elif typ == "aws:secretsmanager/secret:Secret":
        state["arn"] = _arn("secretsmanager", f"{physical}-AbCdEf", region, "secret:")
    elif typ == "aws:secretsmanager/secretVersion:SecretVersion":
        state["versionId"] = f"{_stable_hash(name):08x}-0000-4000-8000-000000000000"
    elif typ == "random:index/randomPassword:RandomPassword":
        state["result"] = mock_password(name)
    return state


def mock_password(resource_name: str) -> str:
    """What the mocks answer for a RandomPassword's result: distinct per resource, with letters."""
    return f"{PLACEHOLDER_SECRET}-{resource_name}-Aa1"


def _mock_call(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/mock",
                "userId": "AIDMOCK", "id": ACCOUNT_ID}
    if token in ("aws:index/getRegion:getRegion", "aws:index/getRegion:getRegionResult"):
        return {"name": region, "region": region, "id": region, "description": region}
    if token == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {"names": [f"{region}a", f"{region}b", f"{region}c"],
                "zoneIds": ["use1-az1", "use1-az2", "use1-az4"], "id": region}
    if token == "aws:elb/getServiceAccount:getServiceAccount":
        return {"arn": "arn:aws:iam::127311923021:root", "id": "127311923021"}
    if token == "aws:ec2/getVpc:getVpc":
        # A brought VPC: its CIDR is looked up by id.
        return {"id": args.get("id", "vpc-0byo0000"), "cidrBlock": BYO_VPC_CIDR,
                "arn": _arn("ec2", str(args.get("id")), region, "vpc/"), "state": "available"}
    if token == "aws:ec2/getRouteTables:getRouteTables":
        vpc = str(args.get("vpcId", "vpc"))
        return {"id": region, "vpcId": vpc, "ids": [f"rtb-{vpc[-6:]}{i}" for i in range(3)]}
    if token == "aws:iam/getPolicyDocument:getPolicyDocument":
        return {"json": json.dumps(args), "id": "policy"}
    return {}


def stack_config_values(stack: str, root: Path = ROOT) -> dict[str, Any]:
    """The ``config:`` mapping of ``Pulumi.<stack>.yaml``; ``secure:`` values get a placeholder."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such stack file (expected Pulumi.{stack}.yaml)")
    data = yaml.safe_load(path.read_text()) or {}
    values = data.get("config") or {}
    return {k: PLACEHOLDER_SECRET if isinstance(v, dict) and "secure" in v else v
            for k, v in values.items()}


# Files of a placeholder viewer build: enough for the program to declare its objects offline.
PLACEHOLDER_VIEWER_FILES = {
    "viewer.js": "/* placeholder: run `make viewer` for the real Cornerstone3D bundle */\n",
    "decodeImageFrameWorker.js": "/* placeholder decode worker */\n",
    "placeholder.wasm": "\0asm",
}


@contextlib.contextmanager
def viewer_build(build_dir: Optional[Path], recording: "Recording"):
    """Point ``labeling.gt.viewer_assets`` at a viewer build while the program runs.

    ``build_dir`` given: that directory (tests; a missing build raises the module's error).
    ``None``: a snapshot of the real ``build/viewer`` when it is built (so a rebuild running at the
    same time cannot change files under the program), else a placeholder build — like the Lambda
    layer's marker in components/packaging.py: enough for the offline plan and the mocks tests, not
    for a deployment, where ``pulumi up`` stops with "run `make viewer`".
    """
    from labeling.gt import viewer_assets

    original = viewer_assets.VIEWER_BUILD_DIR
    scratch: Optional[Path] = None
    if build_dir is None:
        scratch = Path(tempfile.mkdtemp(prefix="viewer-build-"))
        build_dir = scratch / "viewer"
        try:
            shutil.copytree(original, build_dir)
        except (OSError, shutil.Error):
            shutil.rmtree(build_dir, ignore_errors=True)
        if not (build_dir / viewer_assets.BUNDLE).is_file():
            shutil.rmtree(build_dir, ignore_errors=True)
            build_dir.mkdir(parents=True)
            for file_name, text in PLACEHOLDER_VIEWER_FILES.items():
                (build_dir / file_name).write_text(text)
            recording.notes.append(f"{original} is not built: the plan uses placeholder viewer files "
                                   "(run `make viewer` before `pulumi up`)")
    viewer_assets.VIEWER_BUILD_DIR = Path(build_dir)
    try:
        yield
    finally:
        viewer_assets.VIEWER_BUILD_DIR = original
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _current_event_loop() -> None:
    """Pulumi's mocks run on the thread's current asyncio loop; ``asyncio.run`` (a caller's, or an
    earlier test's in the same process) leaves none, or a closed one: then set a new one."""
    try:
        closed = asyncio.get_event_loop_policy().get_event_loop().is_closed()
    except RuntimeError:
        closed = True
    if closed:
        asyncio.set_event_loop(asyncio.new_event_loop())


def run_program(stack: str, config: Optional[dict[str, Any]] = None, root: Path = ROOT,
                viewer_build_dir: Optional[Path] = None, *, strict: bool = False,
                preview: bool = False) -> Recording:
    """Run ``__main__.py`` under mocks for ``stack`` and return what it declared.

    ``config`` defaults to the stack's YAML; pass a mapping to exercise other settings.
    ``viewer_build_dir`` overrides the viewer build the program publishes (see :func:`viewer_build`).
    ``strict`` runs the program as ``pulumi preview``/``up`` do, without the offline allowances
    (:func:`components.config.offline_run`: placeholder certificates and domains, a missing Lambda
    layer); ``preview`` tells the program it runs as a preview (``pulumi.runtime.is_dry_run``).
    Raises whatever the program raises (for example ``ConfigError``).
    """
    import pulumi
    from pulumi.runtime import mocks as pulumi_mocks
    from pulumi.runtime import settings as pulumi_settings
    from pulumi.runtime.stack import run_pulumi_func

    values = stack_config_values(stack, root) if config is None else dict(config)
    region = str(values.get("aws:region", "us-east-1"))
    recording = Recording(stack=stack)
    registering = threading.local()

    class RecordingMocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            state = _mock_state(args.typ, args.name, dict(args.inputs), region)
            registering.inputs = dict(args.inputs)  # RecordingMonitor, same thread, records them
            return [state.get("id", f"{args.name}-id"), state]

        def call(self, args: pulumi.runtime.MockCallArgs):
            return _mock_call(args.token, dict(args.args), region)

    class RecordingMonitor(pulumi_mocks.MockMonitor):
        """Records each registration with what only the request carries: parent and aliases."""

        def RegisterResource(self, request):
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                urn = response.urn
                recording.resources.append(RecordedResource(
                    request.type, request.name, registering.inputs, parent=request.parent or None,
                    custom=bool(request.custom), urn=urn, aliases=[_alias(a) for a in request.aliases],
                    dependencies=sorted(request.dependencies)))
            return response

    _current_event_loop()
    pulumi_settings.reset_options()
    pulumi.runtime.set_mocks(RecordingMocks(), project=PROJECT, stack=stack, preview=preview,
                             monitor=RecordingMonitor(RecordingMocks()))
    pulumi.runtime.set_all_config({k if ":" in k else f"dicom-annotate:{k}": _config_text(v)
                                   for k, v in values.items()})

    def program() -> None:
        old_path = list(sys.path)
        sys.path.insert(0, str(root))
        try:
            runpy.run_path(str(root / "__main__.py"), run_name="__main__")
        finally:
            sys.path[:] = old_path

    from components.packaging import layer_built

    if not strict and not layer_built():
        recording.notes.append("build/lambda-layer is not built: the plan uses a marker layer "
                               "(`make lambda-layer` before `pulumi up`, which refuses to deploy without it)")
    with viewer_build(viewer_build_dir, recording), (contextlib.nullcontext() if strict else offline_run()):
        pulumi_mocks._sync_await(run_pulumi_func(program))
    stack_resource = pulumi_settings.get_root_resource()
    for name, value in getattr(stack_resource, "outputs", {}).items():
        resolved, secret = _resolve(value)
        recording.outputs[name] = resolved
        if secret:
            recording.secret_outputs.add(name)
    return recording


def _alias(alias: Any) -> Any:
    """An alias as the monitor received it: a URN string, or its spec (omitted fields: the resource's own)."""
    if alias.WhichOneof("alias") == "urn":
        return alias.urn
    spec = alias.spec
    fields = {"name": spec.name, "type": spec.type, "stack": spec.stack, "project": spec.project}
    found = {k: v for k, v in fields.items() if v}
    parent = spec.WhichOneof("parent")
    if parent == "parentUrn":
        found["parentUrn"] = spec.parentUrn
    elif parent == "noParent" and spec.noParent:
        found["noParent"] = True
    return found


# ---------------------------------------------------------------------- URNs as the engine makes them
PROJECT = "dicom-annotate"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def _engine_urn(stack: str, qualified_type: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{qualified_type}::{name}"


def _qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def _child_urn(stack: str, parent_urn: Optional[str], type_: str, name: str) -> str:
    """The engine's URN: the parent's qualified type chain, nothing for the root stack."""
    if parent_urn and _qualified_type(parent_urn) != ROOT_STACK_TYPE:
        return _engine_urn(stack, f"{_qualified_type(parent_urn)}${type_}", name)
    return _engine_urn(stack, type_, name)


def engine_view(recording: Recording) -> list[dict[str, Any]]:
    """Each resource with its engine URN and the URNs of all its aliases (explicit and inherited)."""
    stack = recording.stack
    by_mock = {r.urn: r for r in recording.resources}
    real: dict[str, str] = {}
    aliases: dict[str, list[str]] = {}

    def real_urn(mock: Optional[str]) -> Optional[str]:
        if not mock:
            return None
        if mock in by_mock:
            resolve(by_mock[mock])
            return real[mock]
        return mock  # a root stack URN, or a URN written in the program (an old parent)

    def resolve(r: Any) -> None:
        if r.urn in real:
            return
        parent = real_urn(r.parent)
        real[r.urn] = _child_urn(stack, parent, r.type, r.name)
        own = []
        for alias in r.aliases:
            if isinstance(alias, str):
                own.append(alias)
                continue
            alias_parent = (None if alias.get("noParent") else
                            real_urn(alias["parentUrn"]) if "parentUrn" in alias else parent)
            own.append(_child_urn(alias.get("stack", stack), alias_parent, alias.get("type", r.type),
                                  alias.get("name", r.name)))
        inherited = []
        parent_resource = by_mock.get(r.parent or "")
        if parent_resource is not None:
            # pulumi.runtime.resource.inherited_child_alias: a child named "<parent name>-x" follows
            # its parent's old name.
            for parent_alias in aliases[parent_resource.urn]:
                old_parent_name = parent_alias.rsplit("::", 1)[1]
                names = {r.name}
                if r.name.startswith(parent_resource.name):
                    names = {old_parent_name + r.name[len(parent_resource.name):]}
                for name in names:
                    inherited.append(_child_urn(stack, parent_alias, r.type, name))
                for alias_urn in own:
                    inherited.append(_child_urn(stack, parent_alias, alias_urn.split("::")[2].split("$")[-1],
                                                alias_urn.rsplit("::", 1)[1]))
        aliases[r.urn] = own + inherited

    for r in recording.resources:
        resolve(r)
    return [{"type": r.type, "name": r.name, "custom": r.custom, "inputs": r.inputs, "urn": real[r.urn],
             "aliases": sorted(set(aliases[r.urn]))} for r in recording.resources]


def _config_text(value: Any) -> str:
    if isinstance(value, (dict, list, bool, int, float)) and not isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _resolve(value: Any) -> tuple[Any, bool]:
    """Resolve an Output (or plain value) to (value, is_secret) after the program ran."""
    import pulumi
    from pulumi.runtime import mocks as pulumi_mocks

    output = pulumi.Output.from_input(value)
    resolved = pulumi_mocks._sync_await(output.future())
    secret = bool(pulumi_mocks._sync_await(output.is_secret()))
    return resolved, secret


def main(argv: Optional[Iterable[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run the Pulumi program under mocks; print JSON.")
    parser.add_argument("--stack", default=os.environ.get("STACK", "dev"))
    args = parser.parse_args(list(argv) if argv is not None else None)
    print(run_program(args.stack).to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
