"""Single sign-on behind the ALB: verify ``x-amzn-oidc-data`` and map Cognito groups to a role.

The ALB's ``authenticate-cognito`` action signs the user claims it forwards (AWS ELB docs,
"Authenticate users using an Application Load Balancer" → "User claims encoding and signature
verification"): ``x-amzn-oidc-data`` is a JWT signed with ES256 whose header carries ``kid``,
``signer`` (the ALB's ARN), ``iss``, ``client`` and ``exp``; the public key for ``kid`` is a PEM at
``https://public-keys.auth.elb.<region>.amazonaws.com/<kid>``. What we check, and refuse otherwise:

1. the header's ``alg`` is exactly ES256 (``none``/HS*/RS* refused before any key is used);
2. ``kid`` is a plain token (it becomes a URL path segment: no traversal, no other host);
3. ``signer`` equals ``PORTAL_OIDC_ALB_ARN`` — another ALB in the region signs with the same keys,
   so the signature alone does not prove the token was minted for us;
4. the signature, with the key fetched for ``kid`` (cached per kid);
5. ``exp`` (header and claims; ALB tokens carry it in both) is in the future.

Roles come from ``cognito:groups`` in ``x-amzn-oidc-accesstoken`` (the Cognito access token the
ALB forwards). It is an RS256 JWT verified against the user pool's JWKS
(``https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json``), with
``iss`` = that pool, ``token_use`` = ``access``, ``client_id`` = ``PORTAL_COGNITO_CLIENT_ID`` and the
same ``sub`` as the data token. Groups ``admin`` > ``reviewer`` > ``annotator`` give the role; a
user in none of them is refused (403).

Key fetchers are injectable, so tests sign with locally generated keys and never reach AWS.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import jwt
import requests
from jwt.algorithms import RSAAlgorithm

_KID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
ROLE_ORDER = ("admin", "reviewer", "annotator")


class OidcError(Exception):
    """The request's identity could not be verified; ``status`` is 401 (no/invalid token) or 403."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OidcIdentity:
    sub: str
    name: str
    role: str
    groups: tuple[str, ...]


def alb_key_url(region: str, kid: str) -> str:
    return f"https://public-keys.auth.elb.{region}.amazonaws.com/{kid}"


def cognito_issuer(region: str, pool_id: str) -> str:
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"


def http_alb_key_fetcher(region: str, timeout: float = 5.0) -> Callable[[str], str]:
    def fetch(kid: str) -> str:
        response = requests.get(alb_key_url(region, kid), timeout=timeout)
        response.raise_for_status()
        return response.text

    return fetch


def http_jwks_fetcher(region: str, pool_id: str, timeout: float = 5.0) -> Callable[[], Mapping[str, Any]]:
    def fetch() -> Mapping[str, Any]:
        response = requests.get(cognito_issuer(region, pool_id) + "/.well-known/jwks.json", timeout=timeout)
        response.raise_for_status()
        return response.json()

    return fetch


class OidcVerifier:
    def __init__(self, *, region: str, alb_arn: str, user_pool_id: str, client_id: str,
                 alb_key_fetcher: Optional[Callable[[str], str]] = None,
                 jwks_fetcher: Optional[Callable[[], Mapping[str, Any]]] = None,
                 leeway_s: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self.region = region
        self.alb_arn = alb_arn
        self.client_id = client_id
        self.issuer = cognito_issuer(region, user_pool_id)
        self._fetch_alb_key = alb_key_fetcher or http_alb_key_fetcher(region)
        self._fetch_jwks = jwks_fetcher or http_jwks_fetcher(region, user_pool_id)
        self._alb_keys: dict[str, Any] = {}
        self._jwks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.leeway_s = leeway_s
        self.clock = clock

    # -- keys --------------------------------------------------------------------------------

    def _alb_key(self, kid: str) -> Any:
        with self._lock:
            key = self._alb_keys.get(kid)
        if key is None:
            try:
                pem = self._fetch_alb_key(kid)
                key = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).prepare_key(pem)
            except Exception:  # noqa: BLE001 - unknown kid, network, not a PEM: all "cannot verify"
                raise OidcError(f"x-amzn-oidc-data: no public key for kid {kid!r}") from None
            with self._lock:
                self._alb_keys[kid] = key
        return key

    def _cognito_key(self, kid: str) -> Any:
        with self._lock:
            key = self._jwks.get(kid)
        if key is None:
            try:
                keys = {k["kid"]: RSAAlgorithm.from_jwk(json.dumps(k)) for k in self._fetch_jwks()["keys"]}
            except Exception:  # noqa: BLE001
                raise OidcError("x-amzn-oidc-accesstoken: the user pool's JWKS could not be read") from None
            with self._lock:
                self._jwks.update(keys)
                key = self._jwks.get(kid)
            if key is None:
                raise OidcError(f"x-amzn-oidc-accesstoken: no key for kid {kid!r} in the user pool's JWKS")
        return key

    # -- tokens ------------------------------------------------------------------------------

    @staticmethod
    def _header(token: Optional[str], name: str, alg: str, missing: str = "missing") -> dict[str, Any]:
        """The unverified JOSE header of ``token`` (header ``name``), refused unless its alg is ``alg``."""
        if not token:
            raise OidcError(f"{name}: {missing}")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OidcError(f"{name}: not a JWT") from None
        if header.get("alg") != alg:
            raise OidcError(f"{name}: algorithm {header.get('alg')!r} refused ({alg} only)")
        return header

    def verify_data(self, token: Optional[str]) -> dict[str, Any]:
        header = self._header(token, "x-amzn-oidc-data", "ES256",
                              "missing (the portal only serves requests through the ALB)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise OidcError("x-amzn-oidc-data: kid missing or malformed")
        if header.get("signer") != self.alb_arn:
            raise OidcError("x-amzn-oidc-data: signed by another load balancer")
        exp = header.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp + self.leeway_s < self.clock():
            raise OidcError("x-amzn-oidc-data: expired")
        try:
            claims = jwt.decode(token, self._alb_key(kid), algorithms=["ES256"],
                                options={"require": ["exp", "sub"], "verify_aud": False},
                                leeway=self.leeway_s)
        except jwt.ExpiredSignatureError:
            raise OidcError("x-amzn-oidc-data: expired") from None
        except jwt.PyJWTError as exc:
            raise OidcError(f"x-amzn-oidc-data: invalid ({exc})") from None
        return claims

    def verify_access(self, token: Optional[str], sub: str) -> dict[str, Any]:
        header = self._header(token, "x-amzn-oidc-accesstoken", "RS256")
        kid = header.get("kid")
        # Cognito kids are standard base64 (``+/=``); used only as a dictionary key here.
        if not isinstance(kid, str) or not 0 < len(kid) <= 256:
            raise OidcError("x-amzn-oidc-accesstoken: kid missing or malformed")
        try:
            claims = jwt.decode(token, self._cognito_key(kid), algorithms=["RS256"], issuer=self.issuer,
                                options={"require": ["exp", "sub", "iss"], "verify_aud": False},
                                leeway=self.leeway_s)
        except jwt.PyJWTError as exc:
            raise OidcError(f"x-amzn-oidc-accesstoken: invalid ({exc})") from None
        if claims.get("token_use") != "access":
            raise OidcError("x-amzn-oidc-accesstoken: not an access token")
        if claims.get("client_id") != self.client_id:
            raise OidcError("x-amzn-oidc-accesstoken: issued to another app client")
        if claims.get("sub") != sub:
            raise OidcError("x-amzn-oidc-accesstoken: belongs to another user than x-amzn-oidc-data")
        return claims

    def identify(self, headers: Mapping[str, str]) -> OidcIdentity:
        data = self.verify_data(headers.get("x-amzn-oidc-data"))
        sub = str(data["sub"])
        access = self.verify_access(headers.get("x-amzn-oidc-accesstoken"), sub)
        groups = access.get("cognito:groups") or []
        if not isinstance(groups, list):
            groups = []
        role = next((r for r in ROLE_ORDER if r in groups), None)
        if role is None:
            raise OidcError("your account is in none of the groups admin, reviewer, annotator", status=403)
        name = str(data.get("email") or data.get("username") or access.get("username") or sub)[:128]
        return OidcIdentity(sub=sub, name=name, role=role, groups=tuple(str(g) for g in groups))
