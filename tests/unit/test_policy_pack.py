"""The CrossGuard pack in policy/ registers every rule and adapts CrossGuard props to the rules.

The pack is imported without a Pulumi engine (``build_policies`` only constructs policy objects;
``main`` — which starts the analyzer server — runs only when Pulumi executes the file).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    PolicyResource, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from components.checks import graph, rules

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pack():
    spec = importlib.util.spec_from_file_location("dicom_annotate_policy_pack", ROOT / "policy" / "__main__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def dev(pack):
    return lambda: pack.StackSettings("dev", False, "dev")


def policies_by_name(pack, settings=None):
    return {p.name: p for p in pack.build_policies(settings or dev(pack))}


def validate_resource(policy, type_: str, props: dict[str, Any]) -> list[str]:
    reported: list[str] = []
    args = ResourceValidationArgs(type_, unknown_checking_proxy(props), f"urn:pulumi:dev::p::{type_}::r", "r",
                                  None, None)
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


def test_pack_files_are_present_and_pinned():
    assert "runtime:" in (ROOT / "policy" / "PulumiPolicy.yaml").read_text()
    pins = (ROOT / "policy" / "requirements.txt").read_text()
    assert "pulumi-policy==1.21.0" in pins and "pulumi==3.272.0" in pins


def test_every_rule_is_registered_once_with_the_right_kind(pack):
    policies = pack.build_policies(dev(pack))
    names = [p.name for p in policies]
    assert sorted(names) == sorted(rule.id for rule in rules.RULES)
    by_name = {p.name: p for p in policies}
    for rule in rules.RULES:
        kind = StackValidationPolicy if rule.scope == "stack" else ResourceValidationPolicy
        assert isinstance(by_name[rule.id], kind), rule.id
        assert rule.control in by_name[rule.id].description


def test_adapter_turns_proxied_props_into_plain_inputs_with_unknowns_marked(pack):
    props = unknown_checking_proxy({"a": {"b": [1, UNKNOWN_STRING_VALUE]}, "c": UNKNOWN_STRING_VALUE})
    resource = pack.resource_from_props("aws:x/y:Z", "n", props)
    assert resource.inputs == {"a": {"b": [1, graph.UNKNOWN]}, "c": graph.UNKNOWN}


def test_resource_policy_reports_the_rule_violation(pack):
    policy = policies_by_name(pack)["rds-storage-encrypted"]
    bad = validate_resource(policy, "aws:rds/instance:Instance", {"storageEncrypted": False})
    assert bad and "storageEncrypted" in bad[0]
    assert validate_resource(policy, "aws:rds/instance:Instance", {"storageEncrypted": True}) == []
    # Other types are not this policy's business.
    assert validate_resource(policy, "aws:s3/bucket:Bucket", {"storageEncrypted": False}) == []


def test_unknown_value_is_reported_as_undecidable_not_passed(pack):
    policy = policies_by_name(pack)["rds-storage-encrypted"]
    with pytest.raises(UnknownValueError):
        validate_resource(policy, "aws:rds/instance:Instance", {"storageEncrypted": UNKNOWN_STRING_VALUE})


def test_stack_settings_reach_the_rules(pack):
    listener = {"protocol": "HTTP", "port": 80, "defaultActions": [{"type": "forward"}]}
    strict = policies_by_name(pack)["alb-http-to-https-redirection"]
    assert validate_resource(strict, "aws:lb/listener:Listener", listener)
    lenient = policies_by_name(pack, lambda: pack.StackSettings("dev", True, "dev"))["alb-http-to-https-redirection"]
    assert validate_resource(lenient, "aws:lb/listener:Listener", listener) == []
    prod_only = policies_by_name(pack)["rds-multi-az"]
    assert validate_resource(prod_only, "aws:rds/instance:Instance", {"multiAz": False}) == []
    prod = policies_by_name(pack, lambda: pack.StackSettings("prod", False, "prod"))["rds-multi-az"]
    assert validate_resource(prod, "aws:rds/instance:Instance", {"multiAz": False})


def _policy_resource(type_: str, name: str, props: dict[str, Any]) -> PolicyResource:
    return PolicyResource(type_, unknown_checking_proxy(props), f"urn:pulumi:dev::p::{type_}::{name}", name,
                          None, None, None, [], {})


def test_stack_policy_links_by_property_dependencies_during_preview(pack):
    """In a preview the bucket id is unknown; Pulumi's property dependencies still link them."""
    policy = policies_by_name(pack)["s3-bucket-versioning-enabled"]
    bucket = _policy_resource("aws:s3/bucket:Bucket", "data", {"bucket": UNKNOWN_STRING_VALUE})
    orphan = _policy_resource("aws:s3/bucket:Bucket", "orphan", {})
    versioning = _policy_resource("aws:s3/bucketVersioning:BucketVersioning", "data-versioning",
                                  {"bucket": UNKNOWN_STRING_VALUE, "versioningConfiguration": {"status": "Enabled"}})
    versioning.property_dependencies["bucket"] = [bucket]
    reported: list[tuple[str, Any]] = []
    policy.validate(StackValidationArgs([bucket, orphan, versioning]),
                    lambda message, urn=None: reported.append((message, urn)))
    assert reported == [("orphan: no BucketVersioning with status Enabled refers to this bucket", orphan.urn)]


def test_stack_policy_links_by_value_after_deploy(pack):
    """After `up` the ids are known: the policy's bucket name is matched to the bucket's output."""
    policy = policies_by_name(pack)["s3-bucket-ssl-requests-only"]
    arn = "arn:aws:s3:::da-dev-data-1234"
    bucket = _policy_resource("aws:s3/bucket:Bucket", "data", {"bucket": "da-dev-data-1234", "arn": arn})
    document = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                               "Resource": [arn, f"{arn}/*"],
                               "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    bucket_policy = _policy_resource("aws:s3/bucketPolicy:BucketPolicy", "data-policy",
                                     {"bucket": "da-dev-data-1234", "policy": json.dumps(document)})
    reported: list[str] = []
    policy.validate(StackValidationArgs([bucket, bucket_policy]), lambda m, urn=None: reported.append(m))
    assert reported == []
    policy.validate(StackValidationArgs([bucket]), lambda m, urn=None: reported.append(m))
    assert reported and "no bucket policy" in reported[0]


def test_portal_listener_rule_is_judged_on_its_listener_during_preview(pack):
    """The rule's listener ARN is unknown in a preview: the property dependency still finds the
    listener, so a portal rule on plain HTTP is refused before anything is created."""
    policy = policies_by_name(pack)["alb-listener-rule-authenticates"]
    actions = [{"type": "authenticate-cognito", "order": 1,
                "authenticateCognito": {"onUnauthenticatedRequest": "authenticate"}},
               {"type": "forward", "order": 2}]
    conditions = [{"pathPattern": {"values": ["/portal", "/portal/*"]}}]
    reported: list[str] = []
    for protocol in ("HTTPS", "HTTP"):
        listener = _policy_resource("aws:lb/listener:Listener", f"front-{protocol}",
                                    {"protocol": protocol, "arn": UNKNOWN_STRING_VALUE})
        rule = _policy_resource("aws:lb/listenerRule:ListenerRule", "portal-rule",
                                {"listenerArn": UNKNOWN_STRING_VALUE, "actions": actions, "conditions": conditions})
        rule.property_dependencies["listenerArn"] = [listener]
        policy.validate(StackValidationArgs([listener, rule]), lambda m, urn=None: reported.append(m))
        if protocol == "HTTPS":
            assert reported == []
    assert len(reported) == 1 and "HTTPS listener" in reported[0]
