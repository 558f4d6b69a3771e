"""ALB OIDC verification with locally generated keys: valid, forged, expired, unsigned, HS256,
wrong signer, wrong/unknown kid, missing group, mismatched access token, key caching."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from labeling.portal.oidc import OidcError, OidcVerifier, alb_key_url

REGION = "eu-west-1"
ALB = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/dicom-annotate/0123456789abcdef"
POOL = "eu-west-1_AbCdEf123"
CLIENT = "portalclient123"
ISS = f"https://cognito-idp.{REGION}.amazonaws.com/{POOL}"


def _pem(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class Keys:
    def __init__(self) -> None:
        self.alb = ec.generate_private_key(ec.SECP256R1())
        self.other = ec.generate_private_key(ec.SECP256R1())
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.fetched: list[str] = []

    def alb_fetch(self, kid: str) -> str:
        self.fetched.append(kid)
        if kid != "kid-1":
            raise KeyError(kid)  # the endpoint answers 404 for an unknown kid
        return _pem(self.alb)

    def jwks(self) -> dict:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key()))
        jwk.update(kid="rsa+kid/1=", alg="RS256", use="sig")
        return {"keys": [jwk]}

    def data(self, *, key=None, kid="kid-1", signer=ALB, exp_offset=60, alg="ES256", sub="user-sub-1",
             email="ann@example.org") -> str:
        exp = int(time.time()) + exp_offset
        headers = {"kid": kid, "signer": signer, "iss": ISS, "client": CLIENT, "exp": exp}
        return jwt.encode({"sub": sub, "email": email, "exp": exp, "iss": ISS}, key or self.alb,
                          algorithm=alg, headers=headers)

    def access(self, *, groups=("annotator",), sub="user-sub-1", client_id=CLIENT, token_use="access",
               exp_offset=60, iss=ISS) -> str:
        claims = {"sub": sub, "client_id": client_id, "token_use": token_use, "iss": iss,
                  "exp": int(time.time()) + exp_offset, "cognito:groups": list(groups), "username": "ann"}
        return jwt.encode(claims, self.rsa, algorithm="RS256", headers={"kid": "rsa+kid/1="})


@pytest.fixture()
def keys() -> Keys:
    return Keys()


@pytest.fixture()
def verifier(keys: Keys) -> OidcVerifier:
    return OidcVerifier(region=REGION, alb_arn=ALB, user_pool_id=POOL, client_id=CLIENT,
                        alb_key_fetcher=keys.alb_fetch, jwks_fetcher=keys.jwks)


def headers(data: str, access: str) -> dict[str, str]:
    return {"x-amzn-oidc-data": data, "x-amzn-oidc-accesstoken": access}


def test_valid_tokens_give_identity_and_role(verifier: OidcVerifier, keys: Keys):
    identity = verifier.identify(headers(keys.data(), keys.access(groups=("annotator", "reviewer"))))
    assert (identity.sub, identity.name, identity.role) == ("user-sub-1", "ann@example.org", "reviewer")
    assert verifier.identify(headers(keys.data(), keys.access(groups=("admin", "annotator")))).role == "admin"
    assert keys.fetched == ["kid-1"]  # key fetched once, then cached


def test_alb_padded_base64_segments_are_accepted(verifier: OidcVerifier, keys: Keys):
    # ALB tokens may carry '=' padding in their base64 segments; the signature covers them as sent.
    header = {"alg": "ES256", "kid": "kid-1", "signer": ALB, "exp": int(time.time()) + 60}
    payload = {"sub": "user-sub-1", "exp": int(time.time()) + 60, "email": "padded@example.org!"}
    seg = [base64.urlsafe_b64encode(json.dumps(p).encode()).decode() for p in (header, payload)]
    signing_input = ".".join(seg).encode()
    algorithm = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256)
    signature = base64.urlsafe_b64encode(algorithm.sign(signing_input, keys.alb)).decode().rstrip("=")
    claims = verifier.verify_data(f"{seg[0]}.{seg[1]}.{signature}")
    assert claims["email"] == "padded@example.org!"


@pytest.mark.parametrize("case,match", [
    ("forged", "invalid"),
    ("expired", "expired"),
    ("wrong signer", "another load balancer"),
    ("unknown kid", "no public key"),
    ("traversal kid", "kid"),
    ("missing", "missing"),
    ("garbage", "not a JWT"),
])
def test_bad_data_tokens_refused(verifier: OidcVerifier, keys: Keys, case: str, match: str):
    token = {
        "forged": lambda: keys.data(key=keys.other),
        "expired": lambda: keys.data(exp_offset=-5),
        "wrong signer": lambda: keys.data(signer=ALB.replace("0123456789abcdef", "fedcba9876543210")),
        "unknown kid": lambda: keys.data(kid="kid-2"),
        "traversal kid": lambda: keys.data(kid="../../evil.example.org/kid"),
        "missing": lambda: "",
        "garbage": lambda: "not.a.jwt",
    }[case]()
    with pytest.raises(OidcError, match=match) as info:
        verifier.identify(headers(token, keys.access()))
    assert info.value.status == 401
    assert "../" not in "".join(keys.fetched)


def test_unsigned_and_hmac_tokens_refused_before_any_key_use(verifier: OidcVerifier, keys: Keys):
    exp = int(time.time()) + 60
    unsigned = jwt.encode({"sub": "x", "exp": exp}, None, algorithm="none",
                          headers={"kid": "kid-1", "signer": ALB, "exp": exp})
    # The classic confusion attack: HS256 keyed with the public key's PEM.
    # (built by hand: PyJWT itself refuses to sign HS256 with a PEM).
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing_input = ".".join(b64(json.dumps(p).encode()) for p in (
        {"alg": "HS256", "kid": "kid-1", "signer": ALB, "exp": exp}, {"sub": "x", "exp": exp}))
    mac = hmac.new(_pem(keys.alb).encode(), signing_input.encode(), hashlib.sha256).digest()
    hs = f"{signing_input}.{b64(mac)}"
    for token in (unsigned, hs):
        with pytest.raises(OidcError, match="refused"):
            verifier.verify_data(token)
    assert keys.fetched == []


@pytest.mark.parametrize("change,status,match", [
    ({"groups": ()}, 403, "none of the groups"),
    ({"sub": "someone-else"}, 401, "another user"),
    ({"client_id": "other-client"}, 401, "another app client"),
    ({"token_use": "id"}, 401, "not an access token"),
    ({"exp_offset": -5}, 401, "invalid"),
    ({"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"}, 401, "invalid"),
])
def test_access_token_checks(verifier: OidcVerifier, keys: Keys, change: dict, status: int, match: str):
    with pytest.raises(OidcError, match=match) as info:
        verifier.identify(headers(keys.data(), keys.access(**change)))
    assert info.value.status == status


def test_access_token_signed_by_another_key_refused(verifier: OidcVerifier, keys: Keys):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": "user-sub-1", "client_id": CLIENT, "token_use": "access", "iss": ISS,
                        "exp": int(time.time()) + 60, "cognito:groups": ["admin"]}, other, algorithm="RS256",
                       headers={"kid": "rsa+kid/1="})
    with pytest.raises(OidcError, match="invalid"):
        verifier.identify(headers(keys.data(), token))


def test_key_url_is_the_regional_endpoint():
    assert alb_key_url("us-east-2", "abc-123") == "https://public-keys.auth.elb.us-east-2.amazonaws.com/abc-123"
