"""Every policy rule fails a tiny bad stack and passes a tiny good one (components/checks/rules/).

Stack rules get the related resources they look at; references between resources use the ids the
mocks harness would answer (``<name>-id`` for an un-named resource, ``sg-…`` for security groups),
so the link index is exercised the way it is on the real recordings.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.checks.offline import PLACEHOLDER_SECRET, RecordedResource
from components.checks.graph import UNKNOWN, Context, build_context, mocked_identifiers
from components.checks.rules import RULES, RULES_BY_ID, counts, evaluate_context, run_rule

ids = mocked_identifiers("us-east-1")


def R(type_: str, name_: str, **inputs: Any) -> RecordedResource:
    return RecordedResource(type_, name_, inputs)


def sg_id(name: str) -> str:
    return next(i for i in ids(R("aws:ec2/securityGroup:SecurityGroup", name)) if i.startswith("sg-"))


KMS = "arn:aws:kms:us-east-1:123456789012:key/k"
BUCKET = "aws:s3/bucket:Bucket"
LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
RDS = "aws:rds/instance:Instance"
TASKDEF = "aws:ecs/taskDefinition:TaskDefinition"
FN = "aws:lambda/function:Function"
NOTEBOOK = "aws:sagemaker/notebookInstance:NotebookInstance"

GOOD_RDS = dict(storageEncrypted=True, publiclyAccessible=False, backupRetentionPeriod=7.0,
                deletionProtection=True, multiAz=True, autoMinorVersionUpgrade=True,
                engine="postgres", engineVersion="17", parameterGroupName="pg")


def rds(**over: Any) -> list[RecordedResource]:
    return [R(RDS, "db", **{**GOOD_RDS, **over}),
            R("aws:rds/parameterGroup:ParameterGroup", "pg", name="pg", family="postgres17",
              parameters=[{"name": "rds.force_ssl", "value": "1"}])]


def tls_policy(bucket_arn: str, deny: bool = True) -> str:
    statements = [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                   "Resource": [bucket_arn, f"{bucket_arn}/*"],
                   "Condition": {"Bool": {"aws:SecureTransport": "false"}}}] if deny else []
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def bucket(*, sse: str = "aws:kms", key: Any = KMS, versioning: str = "Enabled",
           block: bool = True, tls: bool = True, ownership: str = "BucketOwnerEnforced",
           alb_logs: bool = False) -> list[RecordedResource]:
    """A bucket and its configuration resources, each referring to it by its mocked id."""
    b = "b-id"
    default = {"sseAlgorithm": sse, **({"kmsMasterKeyId": key} if key else {})}
    out = [
        R(BUCKET, "b"),
        R("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
          "b-sse", bucket=b, rules=[{"applyServerSideEncryptionByDefault": default}]),
        R("aws:s3/bucketVersioning:BucketVersioning", "b-ver", bucket=b,
          versioningConfiguration={"status": versioning}),
        R("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "b-pab", bucket=b,
          blockPublicAcls=True, blockPublicPolicy=block, ignorePublicAcls=True, restrictPublicBuckets=True),
        R("aws:s3/bucketPolicy:BucketPolicy", "b-policy", bucket=b, policy=tls_policy("arn:aws:s3:::b", tls)),
        R("aws:s3/bucketOwnershipControls:BucketOwnershipControls", "b-own", bucket=b,
          rule={"objectOwnership": ownership}),
    ]
    if alb_logs:
        out.append(R(LB, "alb", loadBalancerType="application", accessLogs={"bucket": "b", "enabled": True}))
    return out


def alb_with_ingress(cidr: str, port: int, on_alb: bool = True) -> list[RecordedResource]:
    out = [R(SG, "alb-sg"),
           R(INGRESS, "alb-in", securityGroupId=sg_id("alb-sg"), cidrIpv4=cidr, fromPort=port, toPort=port,
             ipProtocol="tcp")]
    if on_alb:
        out.append(R(LB, "alb", loadBalancerType="application", securityGroups=[sg_id("alb-sg")]))
    return out


def container_defs(**container: Any) -> str:
    base = {"name": "orthanc", "image": "orthancteam/orthanc:25.1.1",
            "logConfiguration": {"logDriver": "awslogs", "options": {}}}
    return json.dumps([{**base, **container}])


def policy_doc(action: Any, resource: Any = "*", effect: str = "Allow") -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": effect, "Action": action, "Resource": resource}]})


def trust(principal: Any) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]})


GOOD_FN = dict(runtime="python3.12", vpcConfig={"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"]},
               tracingConfig={"mode": "Active"},
               environment={"variables": {"ORTHANC_URL": "http://orthanc.internal:8042",
                                          "ORTHANC_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x"}})
GOOD_NOTEBOOK = dict(subnetId="subnet-1", directInternetAccess="Disabled", rootAccess="Disabled", kmsKeyId=KMS)

DIST = "aws:cloudfront/distribution:Distribution"
OAC = "aws:cloudfront/originAccessControl:OriginAccessControl"
HEADERS = "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy"
RULE = "aws:lb/listenerRule:ListenerRule"
POOL = "aws:cognito/userPool:UserPool"
REPO = "aws:ecr/repository:Repository"
S3_ORIGIN = "b.s3.us-east-1.amazonaws.com"
DIST_ARN = "arn:aws:cloudfront::123456789012:distribution/E123"
ACM = "arn:aws:acm:us-east-1:123456789012:certificate/x"
GT_ORIGIN = "https://abc.labeling.us-east-1.sagemaker.aws"
GOOD_HEADERS = dict(corsConfig={"accessControlAllowOrigins": {"items": [GT_ORIGIN]},
                                "accessControlAllowCredentials": False},
                    securityHeadersConfig={"strictTransportSecurity": {"accessControlMaxAgeSec": 63072000},
                                           "contentTypeOptions": {"override": True}})
GOOD_POOL = dict(passwordPolicy={"minimumLength": 14.0, "requireLowercase": True, "requireUppercase": True,
                                 "requireNumbers": True, "requireSymbols": True,
                                 "temporaryPasswordValidityDays": 3.0},
                 adminCreateUserConfig={"allowAdminCreateUserOnly": True}, mfaConfiguration="ON",
                 softwareTokenMfaConfiguration={"enabled": True},
                 userPoolAddOns={"advancedSecurityMode": "ENFORCED"})


def distribution(**over: Any) -> RecordedResource:
    base = dict(defaultCacheBehavior={"viewerProtocolPolicy": "redirect-to-https"},
                viewerCertificate={"cloudfrontDefaultCertificate": True},
                origins=[{"originId": "o", "domainName": S3_ORIGIN, "originAccessControlId": "oac-id"}])
    return R(DIST, "cdn", **{**base, **over})


def oac(**over: Any) -> RecordedResource:
    return R(OAC, "oac", **{**dict(signingBehavior="always", signingProtocol="sigv4",
                                   originAccessControlOriginType="s3"), **over})


def portal_rule(actions: list[dict], protocol: str = "HTTPS") -> list[RecordedResource]:
    return [R(LISTENER, "https", protocol=protocol, port=443),
            R(RULE, "rule", listenerArn="https-id", actions=actions,
              conditions=[{"pathPattern": {"values": ["/portal", "/portal/*"]}}])]


AUTH = {"type": "authenticate-cognito", "order": 1.0,
        "authenticateCognito": {"userPoolArn": "arn:pool", "userPoolClientId": "c", "userPoolDomain": "d",
                                "onUnauthenticatedRequest": "authenticate"}}
FORWARD = {"type": "forward", "order": 2.0, "targetGroupArn": "arn:tg"}


def bucket_policy_doc(principal: Any, condition: Any = None) -> str:
    statement = {"Sid": "Read", "Effect": "Allow", "Principal": principal, "Action": "s3:GetObject",
                 "Resource": "arn:aws:s3:::b/*"}
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


# rule id -> (bad resources, good resources, context options)
CASES: dict[str, tuple[list[RecordedResource], list[RecordedResource], dict[str, Any]]] = {
    "rds-storage-encrypted": (rds(storageEncrypted=False), rds(), {}),
    "rds-instance-public-access-check": (rds(publiclyAccessible=True), rds(), {}),
    "rds-force-ssl": (
        [R(RDS, "db", **GOOD_RDS), R("aws:rds/parameterGroup:ParameterGroup", "pg", name="pg",
                                     parameters=[{"name": "rds.force_ssl", "value": "0"}])],
        rds(), {}),
    "rds-backup-retention": (rds(backupRetentionPeriod=1.0), rds(backupRetentionPeriod=35), {}),
    "rds-deletion-protection": (rds(deletionProtection=False), rds(), {"environment": "prod"}),
    "rds-multi-az": (rds(multiAz=False), rds(), {"environment": "prod"}),
    "rds-auto-minor-version-upgrade": (rds(autoMinorVersionUpgrade=False), rds(), {}),
    "rds-engine-version-supported": (rds(engineVersion="12.22"), rds(engineVersion="17.4"), {}),
    "s3-bucket-sse-kms": (bucket(sse="AES256", key=None), bucket(), {}),
    "s3-bucket-versioning-enabled": (bucket(versioning="Suspended"), bucket(), {}),
    "s3-bucket-public-access-block": (bucket(block=False), bucket(), {}),
    "s3-bucket-ssl-requests-only": (bucket(tls=False), bucket(), {}),
    "s3-bucket-ownership-enforced": (bucket(ownership="ObjectWriter"), bucket(), {}),
    "s3-bucket-cors-restricted-origins": (
        [R("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration", "cors",
           corsRules=[{"allowedOrigins": ["*"], "allowedMethods": ["GET"]}])],
        [R("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration", "cors",
           corsRules=[{"allowedOrigins": ["https://*.labeling.us-east-1.sagemaker.aws"],
                       "allowedMethods": ["GET"]}])], {}),
    "alb-http-to-https-redirection": (
        [R(LISTENER, "http", protocol="HTTP", port=80, defaultActions=[{"type": "forward"}])],
        [R(LISTENER, "http", protocol="HTTP", port=80, defaultActions=[
            {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}])],
        {}),
    "alb-https-tls-policy": (
        [R(LISTENER, "https", protocol="HTTPS", port=443, sslPolicy="ELBSecurityPolicy-2016-08",
           certificateArn="arn:aws:acm:us-east-1:1:certificate/x")],
        [R(LISTENER, "https", protocol="HTTPS", port=443, sslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06",
           certificateArn="arn:aws:acm:us-east-1:1:certificate/x")], {}),
    "alb-drop-invalid-headers": ([R(LB, "alb", dropInvalidHeaderFields=False)],
                                 [R(LB, "alb", dropInvalidHeaderFields=True)], {}),
    "alb-access-logs-enabled": ([R(LB, "alb", accessLogs={"bucket": "logs", "enabled": False})],
                                [R(LB, "alb", accessLogs={"bucket": "logs", "enabled": True})], {}),
    "elb-deletion-protection": ([R(LB, "alb", enableDeletionProtection=False)],
                                [R(LB, "alb", enableDeletionProtection=True)], {"environment": "prod"}),
    "no-unrestricted-ingress": (alb_with_ingress("0.0.0.0/0", 8042), alb_with_ingress("0.0.0.0/0", 443), {}),
    "security-group-ingress-named-source": (
        [R(SG, "db-sg", ingress=[{"protocol": "tcp", "fromPort": 5432, "toPort": 5432,
                                   "cidrBlocks": ["10.40.0.0/16"]}])],
        [R(SG, "db-sg", ingress=[{"protocol": "tcp", "fromPort": 5432, "toPort": 5432,
                                   "securityGroups": ["sg-orthanc"]}])], {}),
    "ecs-service-no-public-ip": (
        [R("aws:ecs/service:Service", "svc", launchType="FARGATE", networkConfiguration={"assignPublicIp": True})],
        [R("aws:ecs/service:Service", "svc", launchType="FARGATE", networkConfiguration={"assignPublicIp": False})],
        {}),
    "ecs-service-private-subnets": (
        [R(LB, "alb", loadBalancerType="application", internal=False, subnets=["subnet-pub-a", "subnet-pub-b"]),
         R("aws:ecs/service:Service", "svc", networkConfiguration={"subnets": ["subnet-pub-a", "subnet-priv-b"]})],
        [R(LB, "alb", loadBalancerType="application", internal=False, subnets=["subnet-pub-a", "subnet-pub-b"]),
         R("aws:ecs/service:Service", "svc", networkConfiguration={"subnets": ["subnet-priv-a", "subnet-priv-b"]})],
        {}),
    "ecs-fargate-latest-platform": (
        [R("aws:ecs/service:Service", "svc", launchType="FARGATE", platformVersion="1.3.0")],
        [R("aws:ecs/service:Service", "svc", launchType="FARGATE", platformVersion="LATEST")], {}),
    "ecs-task-no-privileged": ([R(TASKDEF, "td", containerDefinitions=container_defs(privileged=True))],
                               [R(TASKDEF, "td", containerDefinitions=container_defs(privileged=False))], {}),
    "ecs-secrets-not-in-env": (
        [R(TASKDEF, "td", containerDefinitions=container_defs(environment=[
            {"name": "ORTHANC__POSTGRESQL__PASSWORD", "value": "hunter2abc"}]))],
        [R(TASKDEF, "td", containerDefinitions=container_defs(
            environment=[{"name": "ORTHANC__POSTGRESQL__HOST", "value": "db.internal"}],
            secrets=[{"name": "ORTHANC__POSTGRESQL__PASSWORD", "valueFrom": "arn:aws:secretsmanager:x"}]))],
        {}),
    "ecs-task-log-configuration": (
        [R(TASKDEF, "td", containerDefinitions=container_defs(logConfiguration=None))],
        [R(TASKDEF, "td", containerDefinitions=container_defs())], {}),
    "ecs-container-insights": (
        [R("aws:ecs/cluster:Cluster", "c", settings=[{"name": "containerInsights", "value": "disabled"}])],
        [R("aws:ecs/cluster:Cluster", "c", settings=[{"name": "containerInsights", "value": "enabled"}])], {}),
    "kms-key-rotation-enabled": ([R("aws:kms/key:Key", "k", enableKeyRotation=False)],
                                 [R("aws:kms/key:Key", "k", enableKeyRotation=True)], {}),
    "cloudwatch-log-group-retention": (
        [R("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=30.0)],
        [R("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=365.0)], {"environment": "prod"}),
    "cloudwatch-log-group-encrypted": ([R("aws:cloudwatch/logGroup:LogGroup", "lg", retentionInDays=30)],
                                       [R("aws:cloudwatch/logGroup:LogGroup", "lg", kmsKeyId=KMS)], {}),
    "secretsmanager-kms": ([R("aws:secretsmanager/secret:Secret", "s")],
                           [R("aws:secretsmanager/secret:Secret", "s", kmsKeyId=KMS)], {}),
    "iam-no-wildcard-admin": (
        [R("aws:iam/rolePolicy:RolePolicy", "p", policy=policy_doc("*"))],
        [R("aws:iam/rolePolicy:RolePolicy", "p", policy=policy_doc(["s3:GetObject"], "arn:aws:s3:::b/*"))], {}),
    "iam-no-full-access-managed-policies": (
        [R("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "a",
           policyArn="arn:aws:iam::aws:policy/AmazonSageMakerFullAccess")],
        [R("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "a",
           policyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole")], {}),
    "iam-role-trust-no-wildcard-principal": (
        [R("aws:iam/role:Role", "r", assumeRolePolicy=trust({"AWS": "*"}))],
        [R("aws:iam/role:Role", "r", assumeRolePolicy=trust({"Service": "lambda.amazonaws.com"}))], {}),
    "lambda-inside-vpc": ([R(FN, "f", **{**GOOD_FN, "vpcConfig": None})], [R(FN, "f", **GOOD_FN)], {}),
    "lambda-runtime-supported": ([R(FN, "f", **{**GOOD_FN, "runtime": "python3.9"})],
                                 [R(FN, "f", **{**GOOD_FN, "runtime": "python3.13"})], {}),
    "lambda-env-no-secrets": (
        [R(FN, "f", **{**GOOD_FN, "environment": {"variables": {"ORTHANC_PASSWORD": PLACEHOLDER_SECRET + "Aa1"}}})],
        [R(FN, "f", **GOOD_FN)], {}),
    "lambda-tracing": ([R(FN, "f", **{**GOOD_FN, "tracingConfig": {"mode": "PassThrough"}})],
                       [R(FN, "f", **GOOD_FN)], {}),
    "lambda-function-public-access-prohibited": (
        [R("aws:lambda/permission:Permission", "p", principal="*", action="lambda:InvokeFunction")],
        [R("aws:lambda/permission:Permission", "p", principal="sagemaker.amazonaws.com",
           sourceAccount="123456789012", action="lambda:InvokeFunction")], {}),
    "sagemaker-notebook-no-direct-internet": (
        [R(NOTEBOOK, "nb", **{**GOOD_NOTEBOOK, "directInternetAccess": "Enabled"})],
        [R(NOTEBOOK, "nb", **GOOD_NOTEBOOK)], {"environment": "prod"}),
    "sagemaker-notebook-root-access-disabled": (
        [R(NOTEBOOK, "nb", **{**GOOD_NOTEBOOK, "rootAccess": "Enabled"})], [R(NOTEBOOK, "nb", **GOOD_NOTEBOOK)], {}),
    "sagemaker-notebook-kms": ([R(NOTEBOOK, "nb", **{**GOOD_NOTEBOOK, "kmsKeyId": None})],
                               [R(NOTEBOOK, "nb", **GOOD_NOTEBOOK)], {}),
    "vpc-flow-logs-enabled": (
        [R("aws:ec2/vpc:Vpc", "vpc", cidrBlock="10.40.0.0/16"),
         R("aws:ec2/flowLog:FlowLog", "fl", vpcId="some-other-vpc", trafficType="ALL")],
        [R("aws:ec2/vpc:Vpc", "vpc", cidrBlock="10.40.0.0/16"),
         R("aws:ec2/flowLog:FlowLog", "fl", vpcId="vpc-id", trafficType="ALL")], {}),
    "cloudfront-viewer-https": ([distribution(defaultCacheBehavior={"viewerProtocolPolicy": "allow-all"})],
                                [distribution()], {}),
    "cloudfront-tls-floor": (
        [distribution(viewerCertificate={"acmCertificateArn": ACM, "sslSupportMethod": "sni-only",
                                         "minimumProtocolVersion": "TLSv1"})],
        [distribution(viewerCertificate={"acmCertificateArn": ACM, "sslSupportMethod": "sni-only",
                                         "minimumProtocolVersion": "TLSv1.2_2021"})], {}),
    "cloudfront-origin-access-control": (
        [distribution(origins=[{"originId": "o", "domainName": S3_ORIGIN,
                                "s3OriginConfig": {"originAccessIdentity": "origin-access-identity/cloudfront/X"}}])],
        [oac(), distribution()], {}),
    "cloudfront-response-headers": (
        [R(HEADERS, "h", **{**GOOD_HEADERS, "corsConfig": {"accessControlAllowOrigins": {"items": ["*"]}}})],
        [R(HEADERS, "h", **GOOD_HEADERS)], {}),
    "s3-bucket-policy-not-public": (
        [R("aws:s3/bucketPolicy:BucketPolicy", "p", bucket="b-id", policy=bucket_policy_doc("*"))],
        [R("aws:s3/bucketPolicy:BucketPolicy", "p", bucket="b-id", policy=bucket_policy_doc(
            {"Service": "cloudfront.amazonaws.com"}, {"StringEquals": {"AWS:SourceArn": DIST_ARN}}))], {}),
    "alb-listener-rule-authenticates": (portal_rule([{**FORWARD, "order": 1.0}, {**AUTH, "order": 2.0}]),
                                        portal_rule([AUTH, FORWARD]), {}),
    "cognito-password-policy": (
        [R(POOL, "pool", **{**GOOD_POOL, "passwordPolicy": {**GOOD_POOL["passwordPolicy"], "minimumLength": 8.0}})],
        [R(POOL, "pool", **GOOD_POOL)], {}),
    "cognito-admin-only-sign-up": (
        [R(POOL, "pool", **{**GOOD_POOL, "adminCreateUserConfig": {"allowAdminCreateUserOnly": False}})],
        [R(POOL, "pool", **GOOD_POOL)], {}),
    "cognito-mfa-required": ([R(POOL, "pool", **{**GOOD_POOL, "mfaConfiguration": "OPTIONAL"})],
                             [R(POOL, "pool", **GOOD_POOL)], {"environment": "prod"}),
    "cognito-threat-protection": (
        [R(POOL, "pool", **{**GOOD_POOL, "userPoolAddOns": {"advancedSecurityMode": "AUDIT"}})],
        [R(POOL, "pool", **GOOD_POOL)], {}),
    "ecs-secrets-from-secrets-manager": (
        [R(TASKDEF, "td", containerDefinitions=container_defs(
            secrets=[{"name": "PORTAL_SESSION_SECRET", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/s"}]))],
        [R(TASKDEF, "td", containerDefinitions=container_defs(
            secrets=[{"name": "PORTAL_SESSION_SECRET",
                      "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:s-AbCdEf"}]))], {}),
    "ecr-image-scan-on-push": ([R(REPO, "repo", imageScanningConfiguration={"scanOnPush": False})],
                               [R(REPO, "repo", imageScanningConfiguration={"scanOnPush": True})], {}),
    "ecr-lifecycle-policy": (
        [R(REPO, "repo"), R("aws:ecr/lifecyclePolicy:LifecyclePolicy", "lp", repository="other")],
        [R(REPO, "repo"), R("aws:ecr/lifecyclePolicy:LifecyclePolicy", "lp", repository="repo")], {}),
}


def run(rule_id: str, resources: list[RecordedResource], **options: Any):
    ctx = build_context(resources, identifiers=ids, **options)
    (result,) = evaluate_context(ctx, [RULES_BY_ID[rule_id]])
    return result


def test_there_are_at_least_25_rules_with_unique_ids_and_controls():
    assert len(RULES) >= 25
    assert len({r.id for r in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.control, rule.id
        assert rule.resource_types and all(":" in t for t in rule.resource_types), rule.id
        assert rule.scope in ("resource", "stack"), rule.id
        assert rule.check.__doc__, f"{rule.id}: the check's docstring cites its control"


def test_every_rule_has_a_bad_and_a_good_case():
    assert set(CASES) == set(RULES_BY_ID)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fails_bad_and_passes_good(rule_id):
    bad, good, options = CASES[rule_id]
    failed = run(rule_id, bad, **options)
    assert failed.status == "fail", failed
    assert failed.violations and all(isinstance(v, str) and v for v in failed.violations)
    passed = run(rule_id, good, **options)
    assert passed.status == "pass", passed
    assert passed.checked >= 1


def test_rule_without_matching_resources_is_not_applicable():
    results = evaluate_context(build_context([R("aws:kms/alias:Alias", "a")], identifiers=ids))
    assert counts(results) == {"pass": 0, "fail": 0, "n/a": len(RULES)}


def test_prod_only_rules_are_not_applicable_in_dev():
    assert run("rds-multi-az", rds(multiAz=False), environment="dev").status == "n/a"
    assert run("rds-deletion-protection", rds(deletionProtection=False), environment="dev").status == "n/a"


def test_allow_http_exempts_the_http_listener_only_when_configured():
    bad, _, _ = CASES["alb-http-to-https-redirection"]
    assert run("alb-http-to-https-redirection", bad, allow_http=True).status == "pass"
    assert run("alb-http-to-https-redirection", bad, allow_http=False).status == "fail"


def test_alb_access_log_bucket_is_the_aes256_exception():
    assert run("s3-bucket-sse-kms", bucket(sse="AES256", key=None, alb_logs=True)).status == "pass"
    # …and only AES256: KMS on an ALB log bucket breaks log delivery.
    assert run("s3-bucket-sse-kms", bucket(alb_logs=True)).status == "fail"
    # The tag marks a log bucket whose load balancer is declared elsewhere.
    tagged = bucket(sse="AES256", key=None)
    tagged[0] = R(BUCKET, "b", tags={"purpose": "alb-access-logs"})
    assert run("s3-bucket-sse-kms", tagged).status == "pass"


def test_bucket_without_any_config_resource_fails_every_bucket_rule():
    lone = [R(BUCKET, "lonely")]
    for rule_id in ("s3-bucket-sse-kms", "s3-bucket-versioning-enabled", "s3-bucket-public-access-block",
                    "s3-bucket-ssl-requests-only", "s3-bucket-ownership-enforced"):
        result = run(rule_id, lone)
        assert result.status == "fail" and "lonely" in result.violations[0], rule_id


def test_config_resource_of_another_bucket_does_not_count():
    resources = bucket() + [R(BUCKET, "other")]
    result = run("s3-bucket-versioning-enabled", resources)
    assert result.status == "fail"
    assert result.violations == ("other: no BucketVersioning with status Enabled refers to this bucket",)


def test_world_ingress_on_a_non_alb_group_fails_even_on_443():
    assert run("no-unrestricted-ingress", alb_with_ingress("::/0", 443, on_alb=False)).status == "fail"


def test_interface_endpoint_group_may_allow_the_vpc_cidr():
    resources = [R(SG, "vpce-sg", ingress=[{"protocol": "tcp", "fromPort": 443, "toPort": 443,
                                            "cidrBlocks": ["10.40.0.0/16"]}]),
                 R("aws:ec2/vpcEndpoint:VpcEndpoint", "vpce", vpcEndpointType="Interface",
                   securityGroupIds=[sg_id("vpce-sg")])]
    assert run("security-group-ingress-named-source", resources).status == "pass"


def test_secret_reference_env_names_are_allowed_but_secret_values_are_not():
    ok = [R(FN, "f", **{**GOOD_FN, "environment": {"variables": {
        "ORTHANC_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x", "TOKEN_CACHE": "true"}}})]
    assert run("lambda-env-no-secrets", ok).status == "pass"
    leaked = [R(FN, "f", **{**GOOD_FN, "environment": {"variables": {
        "DATABASE_URL": "postgresql://orthanc:s3cretpw@db:5432/orthanc"}}})]
    result = run("lambda-env-no-secrets", leaked)
    assert result.status == "fail" and "s3cretpw" not in result.violations[0]


def test_inline_role_policy_with_admin_statement_fails():
    role = R("aws:iam/role:Role", "r", assumeRolePolicy=trust({"Service": "ecs-tasks.amazonaws.com"}),
             inlinePolicies=[{"name": "admin", "policy": policy_doc(["*"], ["*"])}])
    result = run("iam-no-wildcard-admin", [role])
    assert result.status == "fail" and "inline[admin]" in result.violations[0]


def test_unknown_preview_value_cannot_pass_silently():
    rule = RULES_BY_ID["rds-storage-encrypted"]
    db = R(RDS, "db", **{**GOOD_RDS, "storageEncrypted": UNKNOWN})
    (message,) = run_rule(rule, db, Context())
    assert "cannot evaluate" in message


def test_recorded_stacks_are_judged_by_the_rules(recordings):
    """The rules see the real program's resources: most apply to both stacks."""
    from components.checks.rules import evaluate

    for stack, recording in recordings.items():
        tally = counts(evaluate(recording))
        assert tally["pass"] + tally["fail"] >= 25, (stack, tally)


# ------------------------------------------------------------------------------- viewer CDN + portal rules
def test_oac_that_does_not_always_sign_fails():
    result = run("cloudfront-origin-access-control", [oac(signingBehavior="no-override"), distribution()])
    assert result.status == "fail" and "always/sigv4" in result.violations[0]
    # An OAC id that no declared OAC answers to cannot be judged as signing: it fails too.
    assert run("cloudfront-origin-access-control", [distribution()]).status == "fail"


def test_cloudfront_default_certificate_is_accepted_but_a_custom_one_needs_sni():
    assert run("cloudfront-tls-floor", [distribution()]).status == "pass"
    vip = distribution(viewerCertificate={"acmCertificateArn": ACM, "sslSupportMethod": "vip",
                                          "minimumProtocolVersion": "TLSv1.2_2021"})
    assert run("cloudfront-tls-floor", [vip]).status == "fail"


def test_cloudfront_read_without_the_distribution_condition_fails():
    policy = R("aws:s3/bucketPolicy:BucketPolicy", "p", bucket="b-id",
               policy=bucket_policy_doc({"Service": "cloudfront.amazonaws.com"}))
    result = run("s3-bucket-policy-not-public", [policy])
    assert result.status == "fail" and "AWS:SourceArn" in result.violations[0]
    wildcard = R("aws:s3/bucketPolicy:BucketPolicy", "p", bucket="b-id", policy=bucket_policy_doc(
        {"Service": "cloudfront.amazonaws.com"},
        {"StringEquals": {"AWS:SourceArn": "arn:aws:cloudfront::123456789012:distribution/*"}}))
    assert run("s3-bucket-policy-not-public", [wildcard]).status == "fail"


def test_portal_rule_on_http_or_letting_anonymous_through_fails():
    on_http = run("alb-listener-rule-authenticates", portal_rule([AUTH, FORWARD], protocol="HTTP"))
    assert on_http.status == "fail" and "HTTPS listener" in on_http.violations[0]
    anonymous = {**AUTH, "authenticateCognito": {**AUTH["authenticateCognito"], "onUnauthenticatedRequest": "allow"}}
    assert run("alb-listener-rule-authenticates", portal_rule([anonymous, FORWARD])).status == "fail"
    # Forward only, on a /portal path: no sign-in at all.
    assert run("alb-listener-rule-authenticates", portal_rule([FORWARD])).status == "fail"


def test_listener_rules_of_other_paths_are_not_the_portal_rules_business():
    other = [R(LISTENER, "https", protocol="HTTPS", port=443),
             R(RULE, "rule", listenerArn="https-id", actions=[FORWARD],
               conditions=[{"pathPattern": {"values": ["/dicom-web/*"]}}])]
    assert run("alb-listener-rule-authenticates", other).status == "n/a"


def test_mfa_is_not_required_in_dev():
    optional = [R(POOL, "pool", **{**GOOD_POOL, "mfaConfiguration": "OPTIONAL"})]
    assert run("cognito-mfa-required", optional, environment="dev").status == "n/a"


def test_the_recorded_portal_stack_passes_the_new_rules(recordings):
    from components.checks.rules import evaluate

    results = {r.rule_id: r for r in evaluate(recordings["prod"])}
    for rule_id in ("ecs-service-private-subnets", "cloudfront-viewer-https", "cloudfront-origin-access-control", "cloudfront-response-headers",
                    "s3-bucket-policy-not-public", "alb-listener-rule-authenticates", "cognito-password-policy",
                    "cognito-admin-only-sign-up", "cognito-mfa-required", "cognito-threat-protection",
                    "ecs-secrets-from-secrets-manager", "ecr-image-scan-on-push", "ecr-lifecycle-policy"):
        assert results[rule_id].status == "pass" and results[rule_id].checked >= 1, results[rule_id]
