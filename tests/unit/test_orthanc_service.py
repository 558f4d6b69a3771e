"""OrthancService under Pulumi mocks: the security floor of docs/architecture.md, resource by resource."""

from __future__ import annotations

import ipaddress
import json

import pytest

from components.config import StackConfig, rds_max_connections
from tests.unit.programs import (
    MIRROR_IMAGE, MODALITIES, dev_https_values, dev_variant_values, prod_variant_values, program,
)
from components.checks.offline import (
    ACCOUNT_ID,
    PLACEHOLDER_SECRET,
    mock_password,
    Recording,
    RecordedResource,
    _mock_state,
   
    stack_config_values,
)
from components.fargate import DEPLOYMENT_MAX_PERCENT
from components.orthanc import admin_secret_document
from components.platform import TLS_POLICY
from labeling.orthanc.config import OrthancConfigError

MOCK_PUBLIC = ["subnet-0a000000000000", "subnet-0a100000000000"]
MOCK_PRIVATE = ["subnet-0b000000000000", "subnet-0b100000000000"]
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker of a secret value
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


# ------------------------------------------------------------------------------------ helpers
def _config(rec: Recording, values: dict | None = None) -> StackConfig:
    return StackConfig.from_mapping(values or stack_config_values(rec.stack), stack=rec.stack)


def _o(rec: Recording, suffix: str) -> RecordedResource:
    return rec.named(f"da-{rec.stack}-orthanc-{suffix}")


def _mock_id(resource: RecordedResource) -> str:
    return _mock_state(resource.type, resource.name, resource.inputs, "us-east-1")["id"]


def _children(rec: Recording, typ: str, bucket: RecordedResource) -> list[RecordedResource]:
    return [r for r in rec.of_type(typ) if r.inputs.get("bucket") == _mock_id(bucket)]


def _container(rec: Recording) -> dict:
    (definition,) = json.loads(_o(rec, "taskdef").inputs["containerDefinitions"])
    return definition


def _env(rec: Recording) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(rec)["environment"]}


def _orthanc_json(rec: Recording) -> dict:
    return json.loads(_env(rec)["ORTHANC_JSON"])


def _ingress_into(rec: Recording, sg: RecordedResource) -> list[RecordedResource]:
    return [r for r in rec.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == _mock_id(sg)]


def _statements(resource: RecordedResource, key: str = "policy") -> list[dict]:
    return json.loads(resource.inputs[key])["Statement"]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def nlb_variant() -> tuple[Recording, dict]:
    """prod with the DICOM NLB for two modality CIDRs (and no portal)."""
    values = prod_variant_values()
    return program("prod", config=values), values


@pytest.fixture(scope="module")
def dev_https() -> Recording:
    """dev with a certificate (allowHttp off): the same edge as prod."""
    return program("dev", config=dev_https_values())


# ------------------------------------------------------------------------------------ buckets
def test_every_bucket_has_the_storage_floor(recording):
    buckets = recording.of_type("aws:s3/bucket:Bucket")
    assert len(buckets) >= 2
    for bucket in buckets:
        (versioning,) = _children(recording, "aws:s3/bucketVersioning:BucketVersioning", bucket)
        assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled", bucket.name
        (block,) = _children(recording, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", bucket)
        assert all(block.inputs[k] is True for k in ("blockPublicAcls", "blockPublicPolicy",
                                                     "ignorePublicAcls", "restrictPublicBuckets")), bucket.name
        (policy,) = _children(recording, "aws:s3/bucketPolicy:BucketPolicy", bucket)
        denies = [s for s in _statements(policy) if s["Effect"] == "Deny"
                  and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
        assert denies, f"{bucket.name}: no TLS-only statement"
        (sse,) = _children(recording, "aws:s3/bucketServerSideEncryptionConfiguration:"
                                      "BucketServerSideEncryptionConfiguration", bucket)
        default = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        if bucket.name.endswith("-alb-logs-bucket"):
            # ELB log delivery supports SSE-S3 only.
            assert default["sseAlgorithm"] == "AES256"
        elif bucket.name.endswith("-viewer-bucket-bucket"):
            # The public viewer bundle has a key of its own that trusts its CloudFront distribution.
            viewer_key = recording.named(bucket.name.removesuffix("-bucket-bucket") + "-key")
            assert default["sseAlgorithm"] == "aws:kms"
            assert default["kmsMasterKeyId"] == _mock_state(viewer_key.type, viewer_key.name, viewer_key.inputs,
                                                            "us-east-1")["arn"]
            assert default["kmsMasterKeyId"] != recording.outputs["kmsKeyArn"]
        else:
            assert default["sseAlgorithm"] == "aws:kms", bucket.name
            assert default["kmsMasterKeyId"] == recording.outputs["kmsKeyArn"], bucket.name


def test_storage_bucket_moves_to_intelligent_tiering(recording):
    bucket = _o(recording, "storage-bucket")
    assert recording.outputs["storageBucket"] == bucket.name
    (lifecycle,) = _children(recording, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", bucket)
    transitions = [t for rule in lifecycle.inputs["rules"] for t in rule.get("transitions", [])]
    assert [t["storageClass"] for t in transitions] == ["INTELLIGENT_TIERING"]


def test_alb_access_logs_go_to_a_bucket_only_elb_may_write(recording):
    bucket = _o(recording, "alb-logs-bucket")
    alb = _o(recording, "alb")
    assert alb.inputs["accessLogs"] == {"bucket": _mock_id(bucket), "prefix": "alb", "enabled": True}
    (policy,) = _children(recording, "aws:s3/bucketPolicy:BucketPolicy", bucket)
    allows = [s for s in _statements(policy) if s["Effect"] == "Allow"]
    resource = f"arn:aws:s3:::{bucket.name}/alb/AWSLogs/{ACCOUNT_ID}/*"
    # Newer regions deliver as the service principal, older ones (us-east-1) as the ELB account.
    assert allows == [{
        "Sid": "AllowElbLogDelivery", "Effect": "Allow",
        "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
        "Action": "s3:PutObject", "Resource": resource,
    }, {
        "Sid": "AllowRegionalElbAccount", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::127311923021:root"},
        "Action": "s3:PutObject", "Resource": resource,
    }]


# ------------------------------------------------------------------------------------ database
def test_database_is_encrypted_private_and_its_password_is_in_our_secret(recording):
    config = _config(recording)
    db = _o(recording, "db")
    assert db.type == "aws:rds/instance:Instance"
    assert db.inputs["engine"] == "postgres" and db.inputs["engineVersion"] == config.db_engine_version
    assert db.inputs["instanceClass"] == config.db_instance_class
    assert db.inputs["storageEncrypted"] is True
    assert db.inputs["kmsKeyId"] == recording.outputs["kmsKeyArn"]
    assert db.inputs["publiclyAccessible"] is False
    # A generated password kept in our KMS-encrypted secret (an RDS-managed one rotates under
    # running Orthanc tasks); the container reads that secret's `password` key.
    assert "manageMasterUserPassword" not in db.inputs
    password = _o(recording, "db-password")
    assert password.type == "random:index/randomPassword:RandomPassword" and password.inputs["special"] is False
    secret = _o(recording, "db-secret")
    assert secret.inputs["kmsKeyId"] == recording.outputs["kmsKeyArn"]
    version = _o(recording, "db-secret-value")
    assert SECRET_SIG in version.inputs["secretString"], "the secret string must stay a Pulumi secret"
    document = json.loads(version.inputs["secretString"]["value"])
    assert document["password"] == mock_password(password.name) and document["username"] == db.inputs["username"]
    # Only the database and its secret version hold that password.
    holders = {r.name for r in recording.resources if mock_password(password.name) in json.dumps(r.inputs, default=str)}
    assert holders == {db.name, version.name}
    assert db.inputs["maxAllocatedStorage"] > db.inputs["allocatedStorage"]
    assert db.inputs["copyTagsToSnapshot"] is True and db.inputs["autoMinorVersionUpgrade"] is True
    subnets = _o(recording, "db-subnets")
    assert subnets.inputs["subnetIds"] == MOCK_PRIVATE
    assert db.inputs["dbSubnetGroupName"] == subnets.name


def test_database_parameter_group_forces_tls(recording):
    params = _o(recording, "db-params")
    assert params.inputs["family"] == f"postgres{_config(recording).db_engine_version.split('.')[0]}"
    assert {(p["name"], p["value"]) for p in params.inputs["parameters"]} >= {("rds.force_ssl", "1")}
    assert _o(recording, "db").inputs["parameterGroupName"] == params.name


def test_database_max_connections_is_pinned_to_the_number_the_budgets_use(recording):
    # Every connection budget comes from this number, so RDS must not compute another default.
    (param,) = [p for p in _o(recording, "db-params").inputs["parameters"] if p["name"] == "max_connections"]
    assert int(param["value"]) == _config(recording).db_max_connections
    assert param["applyMethod"] == "pending-reboot"  # a static parameter


@pytest.mark.parametrize("stack, retention, prod", [("dev", 7, False), ("prod", 35, True)])
def test_database_resilience_follows_the_environment(recordings, stack, retention, prod):
    db = _o(recordings[stack], "db")
    assert db.inputs["backupRetentionPeriod"] == retention
    assert db.inputs["multiAz"] is prod
    assert db.inputs["deletionProtection"] is prod
    assert db.inputs["skipFinalSnapshot"] is (not prod)
    assert bool(db.inputs.get("finalSnapshotIdentifier")) is prod
    assert db.inputs["performanceInsightsEnabled"] is prod
    assert (db.inputs["monitoringInterval"] > 0) is prod


def test_database_log_exports_land_in_log_groups_we_own(recording):
    db = _o(recording, "db")
    names = {g.inputs["name"] for g in recording.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert db.inputs["enabledCloudwatchLogsExports"]
    for export in db.inputs["enabledCloudwatchLogsExports"]:
        assert f"/aws/rds/instance/{db.inputs['identifier']}/{export}" in names


def test_database_accepts_only_the_orthanc_and_portal_tasks(recording):
    rules = _ingress_into(recording, _o(recording, "db-sg"))
    expected = [(5432, _mock_id(_o(recording, "service-sg")))]
    if "portalUrl" in recording.outputs:  # prod: the portal (and its deploy-time role function) share it
        expected += [(5432, _mock_id(recording.named(f"da-{recording.stack}-portal-{sg}")))
                     for sg in ("sg", "db-role-sg")]
    assert sorted((r.inputs["fromPort"], r.inputs.get("referencedSecurityGroupId")) for r in rules) == \
        sorted(expected)
    assert _o(recording, "db").inputs["vpcSecurityGroupIds"] == [_mock_id(_o(recording, "db-sg"))]


# ------------------------------------------------------------------------------------ network edges
def test_ingress_rules_name_their_source_and_only_the_alb_faces_the_internet(recording):
    alb_sg = _mock_id(_o(recording, "alb-sg"))
    rules = recording.of_type(SG_INGRESS)
    assert rules
    for rule in rules:
        sources = [k for k in ("referencedSecurityGroupId", "cidrIpv4", "prefixListId", "cidrIpv6")
                   if rule.inputs.get(k)]
        assert len(sources) == 1, f"{rule.name}: names {sources}"
        assert rule.inputs.get("description"), rule.name
        cidr = rule.inputs.get("cidrIpv4")
        if cidr and ipaddress.ip_network(cidr).prefixlen == 0:
            assert rule.inputs["securityGroupId"] == alb_sg, rule.name
            assert rule.inputs["fromPort"] in (80, 443) and rule.inputs["toPort"] == rule.inputs["fromPort"]


def test_orthanc_port_is_open_only_to_the_alb_and_the_client_group(recording):
    rules = _ingress_into(recording, _o(recording, "service-sg"))
    sources = {(r.inputs["fromPort"], r.inputs.get("referencedSecurityGroupId")) for r in rules}
    assert sources == {(8042, _mock_id(_o(recording, "alb-sg"))), (8042, _mock_id(_o(recording, "client-sg")))}
    client_egress = [r for r in recording.of_type(SG_EGRESS)
                     if r.inputs["securityGroupId"] == _mock_id(_o(recording, "client-sg"))]
    assert [(r.inputs["fromPort"], r.inputs["referencedSecurityGroupId"]) for r in client_egress] == \
        [(8042, _mock_id(_o(recording, "service-sg")))]


def test_alb_ports_follow_https(recordings):
    rec = recordings["prod"]
    rules = _ingress_into(rec, _o(rec, "alb-sg"))
    assert {r.inputs["fromPort"] for r in rules} == {80, 443}
    assert {r.inputs["cidrIpv4"] for r in rules} == set(_config(rec).alb_ingress_cidrs) == {"0.0.0.0/0"}


def test_plain_http_alb_admits_only_the_configured_cidrs_and_nobody_by_default(recordings):
    # Orthanc's admin basic-auth crosses plain HTTP in dev: no internet-wide listener.
    dev = recordings["dev"]
    assert _ingress_into(dev, _o(dev, "alb-sg")) == []
    rec = program("dev", config=dev_variant_values())  # albIngressCidrs: OFFICE_CIDRS
    rules = _ingress_into(rec, _o(rec, "alb-sg"))
    assert sorted((r.inputs["fromPort"], r.inputs["cidrIpv4"]) for r in rules) == \
        [(80, "198.51.100.7/32"), (80, "203.0.113.0/24")]


def test_alb_is_public_and_drops_invalid_headers(recording):
    alb = _o(recording, "alb")
    assert alb.inputs["loadBalancerType"] == "application" and alb.inputs["internal"] is False
    assert alb.inputs["dropInvalidHeaderFields"] is True
    assert alb.inputs["subnets"] == MOCK_PUBLIC
    assert alb.inputs["securityGroups"] == [_mock_id(_o(recording, "alb-sg"))]


def test_prod_serves_https_with_a_modern_policy_and_http_only_redirects(recordings):
    rec = recordings["prod"]
    https = _o(rec, "https-listener")
    assert https.inputs["protocol"] == "HTTPS" and https.inputs["port"] == 443
    assert https.inputs["certificateArn"] == _config(rec).certificate_arn
    assert https.inputs["sslPolicy"] == TLS_POLICY
    http = _o(rec, "http-listener")
    assert [a["type"] for a in http.inputs["defaultActions"]] == ["redirect"]
    assert http.inputs["defaultActions"][0]["redirect"] == {"port": "443", "protocol": "HTTPS",
                                                            "statusCode": "HTTP_301"}
    assert rec.outputs["orthancUrl"].startswith("https://")


def test_dev_forwards_plain_http_only_because_allow_http(recordings, dev_https):
    dev = recordings["dev"]
    assert _config(dev).allow_http is True
    http = _o(dev, "http-listener")
    assert [a["type"] for a in http.inputs["defaultActions"]] == ["forward"]
    assert not [r for r in dev.of_type("aws:lb/listener:Listener") if r.inputs.get("protocol") == "HTTPS"]
    assert dev.outputs["orthancUrl"].startswith("http://")
    # The same dev stack with a certificate: HTTP redirects, as in prod.
    redirect = _o(dev_https, "http-listener")
    assert [a["type"] for a in redirect.inputs["defaultActions"]] == ["redirect"]
    assert _o(dev_https, "https-listener").inputs["sslPolicy"] == TLS_POLICY
    assert dev_https.outputs["orthancUrl"].startswith("https://")


def test_target_group_health_check_accepts_the_auth_challenge(recording):
    tg = _o(recording, "tg")
    assert tg.inputs["port"] == 8042 and tg.inputs["protocol"] == "HTTP" and tg.inputs["targetType"] == "ip"
    assert tg.inputs["healthCheck"]["path"] == "/system"
    assert "401" in tg.inputs["healthCheck"]["matcher"].split(",")


def test_no_dicom_exposure_without_the_nlb(recording):
    assert recording.outputs["dicomEndpoint"] == ""
    assert not [lb for lb in recording.of_type("aws:lb/loadBalancer:LoadBalancer")
                if lb.inputs["loadBalancerType"] == "network"]
    assert not [r for r in recording.of_type(SG_INGRESS) if r.inputs["fromPort"] == 4242]
    assert [p["containerPort"] for p in _container(recording)["portMappings"]] == [8042]
    assert _orthanc_json(recording)["DicomServerEnabled"] is False


def test_dicom_nlb_is_restricted_to_the_modality_cidrs(nlb_variant):
    rec, _ = nlb_variant
    nlb = _o(rec, "nlb")
    assert nlb.inputs["loadBalancerType"] == "network" and nlb.inputs["subnets"] == MOCK_PUBLIC
    listener = _o(rec, "dicom-listener")
    assert listener.inputs["port"] == 4242 and listener.inputs["protocol"] == "TCP"
    nlb_rules = _ingress_into(rec, _o(rec, "nlb-sg"))
    assert sorted(r.inputs["cidrIpv4"] for r in nlb_rules) == sorted(MODALITIES)
    assert {r.inputs["fromPort"] for r in nlb_rules} == {4242}
    dicom_into_service = [r for r in _ingress_into(rec, _o(rec, "service-sg")) if r.inputs["fromPort"] == 4242]
    assert {r.inputs.get("cidrIpv4") or r.inputs["referencedSecurityGroupId"] for r in dicom_into_service} == \
        set(MODALITIES) | {_mock_id(_o(rec, "nlb-sg"))}
    assert rec.outputs["dicomEndpoint"].endswith(":4242")
    assert [p["containerPort"] for p in _container(rec)["portMappings"]] == [8042, 4242]
    assert _orthanc_json(rec)["DicomServerEnabled"] is True
    service = _o(rec, "service")
    assert sorted(lb["containerPort"] for lb in service.inputs["loadBalancers"]) == [4242, 8042]


# ------------------------------------------------------------------------------------ container
def test_container_gets_its_secrets_from_secrets_manager(recording):
    container = _container(recording)
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    db_secret = _o(recording, "db-secret")
    db_secret_arn = _mock_state(db_secret.type, db_secret.name, db_secret.inputs, "us-east-1")["arn"]
    assert set(secrets) == {"ORTHANC__POSTGRESQL__PASSWORD", "ORTHANC__REGISTERED_USERS"}
    assert secrets["ORTHANC__POSTGRESQL__PASSWORD"] == f"{db_secret_arn}:password::"
    assert secrets["ORTHANC__REGISTERED_USERS"] == \
        f"{recording.outputs['orthancAdminSecretArn']}:registered_users::"
    assert not set(secrets) & set(_env(recording)), "a variable is both plain and secret"


def test_orthanc_json_carries_no_secret(recording):
    config = _orthanc_json(recording)
    assert "RegisteredUsers" not in config and "Password" not in config["PostgreSQL"]
    plain = json.dumps(_container(recording)["environment"])
    assert PLACEHOLDER_SECRET not in plain  # every mocked password contains it
    assert config["AuthenticationEnabled"] is True


def test_generated_password_lives_only_in_its_secret_version(recording):
    admin_password = mock_password(f"da-{recording.stack}-orthanc-admin-password")
    holders = [r.name for r in recording.resources if admin_password in json.dumps(r.inputs, default=str)]
    assert holders == [f"da-{recording.stack}-orthanc-admin-secret-value"]
    assert admin_password not in json.dumps(recording.outputs)
    secret_string = _o(recording, "admin-secret-value").inputs["secretString"]
    assert SECRET_SIG in secret_string, "the secret string must stay a Pulumi secret"
    document = json.loads(secret_string["value"])
    assert set(document) == {"username", "password", "registered_users"}
    assert json.loads(document["registered_users"]) == {document["username"]: document["password"]}


def test_generated_password_contains_letters(recording):
    password = _o(recording, "admin-password")
    assert password.inputs["special"] is False
    assert password.inputs["minUpper"] >= 1 and password.inputs["minLower"] >= 1
    assert password.inputs["minNumeric"] >= 1
    with pytest.raises(OrthancConfigError):
        admin_secret_document("admin", "12345678901234567890")


def test_orthanc_index_and_storage_settings(recording):
    config = _orthanc_json(recording)
    pg = config["PostgreSQL"]
    assert pg["Host"] == f"da-{recording.stack}-orthanc-db.abc.us-east-1.rds.amazonaws.com"
    assert pg["Lock"] is False and pg["EnableSsl"] is True and pg["EnableIndex"] is True
    assert config["CheckRevisions"] is True
    assert config["AwsS3Storage"]["BucketName"] == recording.outputs["storageBucket"]
    assert config["AwsS3Storage"]["Region"] == "us-east-1"
    env = _env(recording)
    assert env["AWS_S3_STORAGE_PLUGIN_ENABLED"] == "true" and env["POSTGRESQL_PLUGIN_ENABLED"] == "true"
    assert config["DicomWeb"]["Enable"] is True


def test_connection_budget_fits_the_database_class_even_during_a_deployment(recording):
    config = _config(recording)
    per_task = _orthanc_json(recording)["PostgreSQL"]["IndexConnectionsCount"]
    peak_tasks = config.max_tasks * DEPLOYMENT_MAX_PERCENT // 100
    assert per_task >= 1
    assert per_task * peak_tasks < rds_max_connections(config.db_instance_class)
    assert _o(recording, "service").inputs["deploymentMaximumPercent"] == DEPLOYMENT_MAX_PERCENT


def test_container_is_pinned_healthy_and_unprivileged(recording):
    container = _container(recording)
    assert container["image"] == _config(recording).orthanc_image
    assert container["healthCheck"]["command"] == ["CMD-SHELL", "/probes/test-aliveness.py || exit 1"]
    assert container["healthCheck"]["startPeriod"] >= 60
    assert container["privileged"] is False
    logs = container["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert logs["options"]["awslogs-group"] == _o(recording, "logs").inputs["name"]
    task = _o(recording, "taskdef")
    assert task.inputs["requiresCompatibilities"] == ["FARGATE"] and task.inputs["networkMode"] == "awsvpc"
    assert task.inputs["cpu"] == str(_config(recording).orthanc_cpu)


# ------------------------------------------------------------------------------------ service
def test_service_runs_privately_with_rollback_and_no_exec(recording):
    service = _o(recording, "service")
    network = service.inputs["networkConfiguration"]
    assert network["assignPublicIp"] is False and network["subnets"] == MOCK_PRIVATE
    assert network["securityGroups"] == [_mock_id(_o(recording, "service-sg"))]
    assert service.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service.inputs["enableExecuteCommand"] is False
    assert service.inputs["launchType"] == "FARGATE"
    assert service.inputs["serviceRegistries"]["registryArn"].endswith("servicediscovery/orthanc")
    # `pulumi up` fails on a crash-looping service instead of reporting success.
    assert service.inputs["waitForSteadyState"] is True


def test_service_scales_on_cpu_between_the_configured_bounds(recording):
    config = _config(recording)
    target = _o(recording, "scaling")
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (config.min_tasks, config.max_tasks)
    assert target.inputs["scalableDimension"] == "ecs:service:DesiredCount"
    policy = _o(recording, "cpu")
    tracking = policy.inputs["targetTrackingScalingPolicyConfiguration"]
    assert tracking["targetValue"] == config.cpu_target_percent
    assert tracking["predefinedMetricSpecification"]["predefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert _o(recording, "service").inputs["desiredCount"] == config.min_tasks


def test_cluster_has_container_insights(recording):
    cluster = _o(recording, "cluster")
    assert {"name": "containerInsights", "value": "enabled"} in cluster.inputs["settings"]
    assert recording.outputs["ecsClusterName"] == cluster.name


def test_internal_name_resolves_through_cloud_map(recording):
    namespace = _o(recording, "ns")
    assert namespace.inputs["name"] == f"da-{recording.stack}.internal"
    assert namespace.inputs["vpc"] == recording.outputs["vpcId"]
    discovery = _o(recording, "discovery")
    assert discovery.inputs["name"] == "orthanc"
    assert discovery.inputs["dnsConfig"]["dnsRecords"] == [{"ttl": 10, "type": "A"}]
    assert recording.outputs["orthancInternalUrl"] == f"http://orthanc.da-{recording.stack}.internal:8042"


# ------------------------------------------------------------------------------------ IAM
def test_execution_role_reads_only_its_two_secrets(recording):
    statements = _statements(_o(recording, "execution-policy"))
    secret_reads = [s for s in statements if "secretsmanager:GetSecretValue" in _as_list(s["Action"])]
    secret = _o(recording, "db-secret")
    db_secret = _mock_state(secret.type, secret.name, secret.inputs, "us-east-1")["arn"]
    assert len(secret_reads) == 1
    assert sorted(_as_list(secret_reads[0]["Resource"])) == \
        sorted([db_secret, recording.outputs["orthancAdminSecretArn"]])
    decrypt = [s for s in statements if "kms:Decrypt" in _as_list(s["Action"])]
    assert [s["Resource"] for s in decrypt] == [recording.outputs["kmsKeyArn"]]
    logs = [s for s in statements if "logs:PutLogEvents" in _as_list(s["Action"])]
    assert [s["Resource"] for s in logs] == [
        f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:/ecs/da-{recording.stack}-orthanc:*"]


def test_docker_hub_image_gets_no_ecr_grant(recording):
    statements = _statements(_o(recording, "execution-policy"))
    assert not [a for s in statements for a in _as_list(s["Action"]) if a.startswith("ecr:")]


def test_ecr_mirror_image_is_pulled_by_digest_with_grants_on_that_repository_only():
    image = MIRROR_IMAGE
    rec = program("dev", config=dev_variant_values())
    (container,) = json.loads(_o(rec, "taskdef").inputs["containerDefinitions"])
    assert container["image"] == image
    statements = {s["Sid"]: s for s in _statements(_o(rec, "execution-policy"))}
    assert statements["EcrPull"]["Resource"] == \
        f"arn:aws:ecr:us-east-1:{ACCOUNT_ID}:repository/docker-hub/orthancteam/orthanc"
    # A pull-through cache creates the repository and imports the image on the first pull.
    assert {"ecr:BatchGetImage", "ecr:BatchImportUpstreamImage", "ecr:CreateRepository"} <= \
        set(statements["EcrPull"]["Action"])


def test_task_role_reaches_only_the_storage_bucket_and_key(recording):
    bucket_arn = f"arn:aws:s3:::{recording.outputs['storageBucket']}"
    for statement in _statements(_o(recording, "task-policy")):
        for resource in _as_list(statement["Resource"]):
            assert resource in (bucket_arn, f"{bucket_arn}/*", recording.outputs["kmsKeyArn"]), resource
        assert not [a for a in _as_list(statement["Action"]) if a.endswith(":*") or a == "*"]


def test_task_roles_trust_only_ecs_tasks_of_this_account(recording):
    for suffix in ("execution-role", "task-role"):
        (statement,) = _statements(_o(recording, suffix), "assumeRolePolicy")
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT_ID


def test_no_iam_policy_grants_every_action_on_every_resource(recording):
    policies = recording.of_type("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")
    assert policies
    for policy in policies:
        for statement in _statements(policy):
            if statement["Effect"] != "Allow":
                continue
            wildcard_action = any(a in ("*", "*:*") for a in _as_list(statement.get("Action", [])))
            assert not (wildcard_action and "*" in _as_list(statement.get("Resource", []))), policy.name
    attached = [a.inputs["policyArn"] for a in recording.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")]
    assert not [arn for arn in attached if arn.endswith("FullAccess")]


# ------------------------------------------------------------------------------------ logs, tags, outputs
def test_every_log_group_has_retention_and_kms(recording):
    config = _config(recording)
    groups = recording.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert len(groups) >= 3
    for group in groups:
        assert group.inputs["retentionInDays"] == config.log_retention_days, group.name
        assert group.inputs["kmsKeyId"] == recording.outputs["kmsKeyArn"], group.name


def test_admin_secret_is_encrypted_with_the_data_key(recording):
    secret = _o(recording, "admin-secret")
    assert secret.inputs["kmsKeyId"] == recording.outputs["kmsKeyArn"]
    assert recording.outputs["orthancAdminSecretArn"].startswith("arn:aws:secretsmanager:")


TAGGABLE = ("aws:ec2/securityGroup:SecurityGroup", SG_INGRESS, SG_EGRESS, "aws:rds/instance:Instance",
            "aws:rds/subnetGroup:SubnetGroup", "aws:rds/parameterGroup:ParameterGroup",
            "aws:cloudwatch/logGroup:LogGroup", "aws:secretsmanager/secret:Secret", "aws:iam/role:Role",
            "aws:ecs/cluster:Cluster", "aws:ecs/taskDefinition:TaskDefinition", "aws:ecs/service:Service",
            "aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup", "aws:lb/listener:Listener",
            "aws:appautoscaling/target:Target", "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace",
            "aws:servicediscovery/service:Service", "aws:s3/bucket:Bucket")


def test_orthanc_resources_carry_the_stack_tags(recording):
    expected = {"project": "dicom-annotate", "stack": recording.stack, **_config(recording).tags}
    mine = [r for r in recording.of_type(*TAGGABLE) if r.name.startswith(f"da-{recording.stack}-orthanc-")]
    assert len(mine) > 20
    for resource in mine:
        assert expected.items() <= (resource.inputs.get("tags") or {}).items(), resource.name


def test_outputs_hold_no_secret_values(recording):
    text = json.dumps(recording.outputs)
    assert PLACEHOLDER_SECRET not in text  # every mocked password contains it
    assert not recording.secret_outputs
