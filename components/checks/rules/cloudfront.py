"""CloudFront (the viewer asset location).

Rules read resources through :mod:`components.checks.graph`; :data:`RULES` lists this module's.
"""

from __future__ import annotations

from typing import Any, Mapping

from components.checks.graph import (
    Context, DISTRIBUTIONS, ORIGIN_ACCESS_CONTROLS, RESPONSE_HEADERS_POLICIES, Rule, as_list,
    get, truthy,
)


def _cache_behaviors(r: Any) -> list[tuple[str, Mapping[str, Any]]]:
    behaviors = [("defaultCacheBehavior", get(r, "defaultCacheBehavior") or {})]
    behaviors += [(f"orderedCacheBehaviors[{i}]", b) for i, b in enumerate(as_list(get(r, "orderedCacheBehaviors")))
                  if isinstance(b, Mapping)]
    return behaviors


def check_cloudfront_viewer_https(r: Any, ctx: Context) -> list[str]:
    """FSBP CloudFront.3: CloudFront distributions should require encryption in transit
    (every cache behavior's viewerProtocolPolicy is redirect-to-https or https-only)."""
    return [f"{r.name}: {where}.viewerProtocolPolicy is {b.get('viewerProtocolPolicy')!r}, "
            f"needs redirect-to-https or https-only"
            for where, b in _cache_behaviors(r)
            if b.get("viewerProtocolPolicy") not in ("redirect-to-https", "https-only")]


# CloudFront security policies with TLS 1.2 as the floor (TLSv1.2_2018 and older admit weaker ciphers).
CLOUDFRONT_TLS_POLICIES = ("TLSv1.2_2021", "TLSv1.2_2025", "TLSv1.3_2025")


def check_cloudfront_tls_floor(r: Any, ctx: Context) -> list[str]:
    """FSBP CloudFront.7/CloudFront.8 spirit + docs/architecture.md floor: a custom certificate is served by
    SNI with a TLS 1.2_2021+ security policy. The *.cloudfront.net default certificate's policy is
    fixed by AWS and cannot be raised; it is accepted for the public viewer bundle."""
    cert = get(r, "viewerCertificate") or {}
    if not isinstance(cert, Mapping):
        return [f"{r.name}: no viewerCertificate"]
    if truthy(cert.get("cloudfrontDefaultCertificate")) and not cert.get("acmCertificateArn"):
        return []
    problems = []
    if cert.get("minimumProtocolVersion") not in CLOUDFRONT_TLS_POLICIES:
        problems.append(f"{r.name}: minimumProtocolVersion {cert.get('minimumProtocolVersion')!r} is below "
                        f"TLSv1.2_2021")
    if cert.get("sslSupportMethod") != "sni-only":
        problems.append(f"{r.name}: sslSupportMethod {cert.get('sslSupportMethod')!r}; use sni-only")
    return problems


def _is_s3_origin(origin: Mapping[str, Any]) -> bool:
    return ".s3." in str(origin.get("domainName", "")) or ".s3-" in str(origin.get("domainName", ""))


def check_cloudfront_origin_access_control(r: Any, ctx: Context) -> list[str]:
    """FSBP CloudFront.13: CloudFront distributions should use origin access control (S3 origins);
    the OAC signs always with SigV4 (no legacy origin access identity, no unsigned requests)."""
    problems = []
    for i, origin in enumerate(as_list(get(r, "origins"))):
        if not isinstance(origin, Mapping) or not _is_s3_origin(origin):
            continue
        where = f"{r.name}: origins[{i}] ({origin.get('originId')})"
        if (origin.get("s3OriginConfig") or {}).get("originAccessIdentity"):
            problems.append(f"{where} uses a legacy origin access identity; use origin access control")
        if not origin.get("originAccessControlId"):
            problems.append(f"{where} has no originAccessControlId")
    controls = ctx.targets(r, "origins", ORIGIN_ACCESS_CONTROLS)
    if any(isinstance(o, Mapping) and _is_s3_origin(o) and o.get("originAccessControlId")
           for o in as_list(get(r, "origins"))):
        if not controls:
            problems.append(f"{r.name}: its origin access control is not declared in this stack")
        for oac in controls:
            if get(oac, "signingBehavior") != "always" or get(oac, "signingProtocol") != "sigv4":
                problems.append(f"{r.name}: origin access control {oac.name} signs "
                                f"{get(oac, 'signingBehavior')!r}/{get(oac, 'signingProtocol')!r}, needs always/sigv4")
    return problems


def check_cloudfront_cors_origins(r: Any, ctx: Context) -> list[str]:
    """Project floor: a response-headers policy's CORS names https origins (never ``*``), and sends HSTS
    and nosniff (the viewer bundle is loaded cross-origin by the GT worker portal)."""
    problems = []
    cors = get(r, "corsConfig") or {}
    origins = ((cors.get("accessControlAllowOrigins") or {}).get("items") if isinstance(cors, Mapping) else None)
    for origin in as_list(origins):
        if origin == "*" or not str(origin).startswith("https://"):
            problems.append(f"{r.name}: CORS allows origin {origin!r}; name https:// origins")
    if isinstance(cors, Mapping) and truthy(cors.get("accessControlAllowCredentials")):
        problems.append(f"{r.name}: CORS allows credentials; the public bundle needs none")
    security = get(r, "securityHeadersConfig") or {}
    if not (security.get("strictTransportSecurity") if isinstance(security, Mapping) else None):
        problems.append(f"{r.name}: no Strict-Transport-Security header")
    if not (security.get("contentTypeOptions") if isinstance(security, Mapping) else None):
        problems.append(f"{r.name}: no X-Content-Type-Options: nosniff header")
    return problems


RULES: tuple[Rule, ...] = (
    Rule("cloudfront-viewer-https", "CloudFront serves viewers over HTTPS only (HTTP redirects)",
         DISTRIBUTIONS, check_cloudfront_viewer_https, "FSBP CloudFront.3"),
    Rule("cloudfront-tls-floor", "CloudFront custom certificates use SNI and TLSv1.2_2021 or newer",
         DISTRIBUTIONS, check_cloudfront_tls_floor, "FSBP CloudFront.8 / docs/architecture.md TLS floor",
         severity="medium"),
    Rule("cloudfront-origin-access-control", "CloudFront reads S3 through OAC (SigV4, always signed)",
         DISTRIBUTIONS, check_cloudfront_origin_access_control, "FSBP CloudFront.13", scope="stack"),
    Rule("cloudfront-response-headers", "CloudFront CORS names https origins; HSTS and nosniff are sent",
         RESPONSE_HEADERS_POLICIES, check_cloudfront_cors_origins, "docs/architecture.md security posture",
         severity="medium"),
)
