"""The viewer asset location under Pulumi mocks: private bucket, CloudFront with OAC, files, template.

The program runs against a tiny fake viewer build (``viewer_build_dir``), so these tests do not
depend on ``make viewer`` and know every byte they assert on.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from components.config import ConfigError
from components.checks.offline import Recording, RecordedResource, _mock_state, run_program, stack_config_values
from tests.unit.programs import FAKE_VIEWER_FILES, fake_viewer_build, program, write_viewer_build
from components.viewer_cdn import CACHING_OPTIMIZED_POLICY_ID, IMMUTABLE_CACHE_CONTROL, assets_version
from labeling.gt import viewer_assets
from labeling.gt.contracts import MAX_TEMPLATE_CHARS
from labeling.gt.viewer_assets import ViewerAssetsError

CERT_US_EAST_1 = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-4333-8444-555555555555"


@pytest.fixture(scope="module")
def fake_build() -> Path:
    return fake_viewer_build()


@pytest.fixture(scope="module", params=["dev", "prod"])
def rec(request, fake_build) -> Recording:
    return program(request.param, viewer_build_dir=fake_build)


@pytest.fixture(scope="module")
def custom_domain(fake_build) -> Recording:
    values = stack_config_values("dev")
    values.update({"dicom-annotate:viewerAssetsDomain": "viewer.example.org",
                   "dicom-annotate:viewerAssetsCertificateArn": CERT_US_EAST_1})
    return program("dev", config=values, viewer_build_dir=fake_build)


def _v(rec: Recording, suffix: str) -> RecordedResource:
    return rec.named(f"da-{rec.stack}-labeling-viewer-{suffix}")


def _state(resource: RecordedResource) -> dict:
    return _mock_state(resource.type, resource.name, resource.inputs, "us-east-1")


def _children(rec: Recording, typ: str, bucket: RecordedResource) -> list[RecordedResource]:
    return [r for r in rec.of_type(typ) if r.inputs.get("bucket") == _state(bucket)["id"]]


# ------------------------------------------------------------------------------------------ files
def test_every_browser_file_is_uploaded_under_a_versioned_prefix_with_its_type(rec, fake_build):
    bucket = _v(rec, "bucket-bucket")
    objects = {o.inputs["key"]: o for o in _children(rec, "aws:s3/bucketObjectv2:BucketObjectv2", bucket)}
    version = assets_version(viewer_assets.asset_files(fake_build))
    assert len(version) == 16
    assert set(objects) == {f"viewer/{version}/{name}" for name in FAKE_VIEWER_FILES if name != "build-info.json"}
    types = {key.rsplit("/", 1)[1]: o.inputs["contentType"] for key, o in objects.items()}
    assert types["openjpegwasm_decode.wasm"] == "application/wasm"
    assert types["viewer.js"].startswith("text/javascript")
    key_arn = _state(_v(rec, "key"))["arn"]
    for o in objects.values():
        assert o.inputs["cacheControl"] == IMMUTABLE_CACHE_CONTROL
        assert o.inputs["serverSideEncryption"] == "aws:kms" and o.inputs["kmsKeyId"] == key_arn
    assert rec.outputs["viewerAssetsUrl"] == f"https://{_state(_v(rec, 'cdn'))['domainName']}/viewer/{version}"


def test_the_version_follows_the_bytes(tmp_path):
    build = write_viewer_build(tmp_path / "viewer")
    before = assets_version(viewer_assets.asset_files(build))
    assert assets_version(viewer_assets.asset_files(build)) == before
    (build / "viewer.js").write_text("export const mount = () => 'changed';\n")
    assert assets_version(viewer_assets.asset_files(build)) != before


def test_worker_template_loads_the_bundle_from_the_cdn_with_sri(rec, fake_build):
    template = rec.named(f"da-{rec.stack}-labeling-worker-template").inputs["content"]
    digest = hashlib.sha384(FAKE_VIEWER_FILES["viewer.js"].encode()).digest()
    integrity = "sha384-" + base64.b64encode(digest).decode()
    src = f'{rec.outputs["viewerAssetsUrl"]}/viewer.js'
    assert f'src="{src}" integrity="{integrity}" crossorigin="anonymous"' in template
    assert "__DA_VIEWER" not in template and len(template) < MAX_TEMPLATE_CHARS
    assert "<crowd-form" in template


# ------------------------------------------------------------------------------------------ bucket
def test_asset_bucket_is_private_encrypted_with_its_own_key(rec):
    bucket = _v(rec, "bucket-bucket")
    (block,) = _children(rec, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", bucket)
    assert all(block.inputs[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                 "restrictPublicBuckets"))
    (sse,) = _children(rec, "aws:s3/bucketServerSideEncryptionConfiguration:"
                            "BucketServerSideEncryptionConfiguration", bucket)
    default = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert default == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": _state(_v(rec, "key"))["arn"]}
    assert _v(rec, "key").inputs["enableKeyRotation"] is True


def test_only_this_distribution_may_read_the_bucket(rec):
    (policy,) = _children(rec, "aws:s3/bucketPolicy:BucketPolicy", _v(rec, "bucket-bucket"))
    statements = json.loads(policy.inputs["policy"])["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    distribution_arn = _state(_v(rec, "cdn"))["arn"]
    assert distribution_arn.startswith("arn:aws:cloudfront::123456789012:distribution/")
    assert allows == [{
        "Sid": "AllowCloudFrontDistributionRead", "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{_v(rec, 'bucket-bucket').name}/*",
        "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}}}]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)


def test_only_this_distribution_may_decrypt_and_the_data_key_never_trusts_cloudfront(rec):
    key_policy = _v(rec, "key-policy")
    assert key_policy.inputs["keyId"] == _state(_v(rec, "key"))["keyId"]
    statements = json.loads(key_policy.inputs["policy"])["Statement"]
    (cloudfront,) = [s for s in statements if s["Principal"] == {"Service": "cloudfront.amazonaws.com"}]
    assert cloudfront["Action"] == "kms:Decrypt"
    assert cloudfront["Condition"] == {"StringEquals": {"AWS:SourceArn": _state(_v(rec, "cdn"))["arn"]}}
    data_key = rec.named(f"da-{rec.stack}-data-key")
    assert "cloudfront" not in data_key.inputs["policy"]


# ------------------------------------------------------------------------------------ distribution
def test_distribution_reads_s3_through_oac_and_serves_https_only(rec):
    cdn = _v(rec, "cdn").inputs
    oac = _v(rec, "oac")
    assert oac.inputs["originAccessControlOriginType"] == "s3"
    assert (oac.inputs["signingBehavior"], oac.inputs["signingProtocol"]) == ("always", "sigv4")
    (origin,) = cdn["origins"]
    assert origin["originAccessControlId"] == _state(oac)["id"]
    assert origin["domainName"] == _state(_v(rec, "bucket-bucket"))["bucketRegionalDomainName"]
    assert "s3OriginConfig" not in origin
    behavior = cdn["defaultCacheBehavior"]
    assert behavior["viewerProtocolPolicy"] == "redirect-to-https"
    assert behavior["cachePolicyId"] == CACHING_OPTIMIZED_POLICY_ID
    assert behavior["responseHeadersPolicyId"] == _state(_v(rec, "headers"))["id"]
    assert set(behavior["allowedMethods"]) == {"GET", "HEAD", "OPTIONS"}
    assert cdn["viewerCertificate"] == {"cloudfrontDefaultCertificate": True}


def test_response_headers_send_hsts_nosniff_and_cors_for_the_gt_portal(rec):
    headers = _v(rec, "headers").inputs
    cors = headers["corsConfig"]
    assert cors["accessControlAllowOrigins"]["items"] == ["https://*.labeling.us-east-1.sagemaker.aws"]
    assert cors["accessControlAllowCredentials"] is False
    assert set(cors["accessControlAllowMethods"]["items"]) == {"GET", "HEAD", "OPTIONS"}
    security = headers["securityHeadersConfig"]
    assert security["strictTransportSecurity"]["accessControlMaxAgeSec"] >= 31_536_000
    assert security["contentTypeOptions"]["override"] is True


def test_custom_domain_gets_its_certificate_with_a_tls_1_2_floor(custom_domain):
    cdn = _v(custom_domain, "cdn").inputs
    assert cdn["aliases"] == ["viewer.example.org"]
    assert cdn["viewerCertificate"] == {"acmCertificateArn": CERT_US_EAST_1, "sslSupportMethod": "sni-only",
                                        "minimumProtocolVersion": "TLSv1.2_2021"}
    assert custom_domain.outputs["viewerAssetsUrl"].startswith("https://viewer.example.org/viewer/")


# ------------------------------------------------------------------------------------ errors
def test_missing_viewer_build_stops_the_program_with_make_viewer(tmp_path):
    with pytest.raises(ViewerAssetsError, match="make viewer"):
        run_program("dev", viewer_build_dir=tmp_path / "not-built")


def test_offline_harness_falls_back_to_a_placeholder_build_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(viewer_assets, "VIEWER_BUILD_DIR", tmp_path / "never-built")
    recording = run_program("dev")
    assert any("placeholder viewer files" in note and "make viewer" in note for note in recording.notes)
    assert viewer_assets.VIEWER_BUILD_DIR == tmp_path / "never-built"  # restored after the run
    keys = [o.inputs["key"] for o in recording.of_type("aws:s3/bucketObjectv2:BucketObjectv2")
            if o.inputs["key"].startswith("viewer/")]
    assert any(k.endswith("/viewer.js") for k in keys)


@pytest.mark.parametrize("values, key, words", [
    ({"viewerAssetsDomain": "viewer.example.org"}, "viewerAssetsCertificateArn", "go together"),
    ({"viewerAssetsDomain": "viewer.example.org",
      "viewerAssetsCertificateArn": CERT_US_EAST_1.replace("us-east-1", "eu-west-1")},
     "viewerAssetsCertificateArn", "us-east-1"),
    ({"viewerAssetsDomain": "https://viewer.example.org", "viewerAssetsCertificateArn": CERT_US_EAST_1},
     "viewerAssetsDomain", "not a DNS host name"),
])
def test_bad_viewer_asset_settings_name_the_key(values, key, words):
    config = stack_config_values("dev")
    config.update({f"dicom-annotate:{k}": v for k, v in values.items()})
    with pytest.raises(ConfigError) as err:
        run_program("dev", config=config)
    assert str(err.value).startswith(f"dicom-annotate:{key}:") and words in str(err.value)
