"""Portal security against real PostgreSQL + Orthanc: access between annotators and jobs, blind
labeling, CSRF, roles, forged cookies, XSS in labels, path traversal, and SSO (alb-oidc) mode."""

from __future__ import annotations

import json
import secrets
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from labeling.portal.app import create_app
from labeling.portal.oidc import OidcVerifier
from tests.integration.portal_fixtures import *  # noqa: F401,F403 - fixtures
from tests.integration.portal_fixtures import SCHEMA, answer

pytestmark = pytest.mark.integration

XSS = '<img src=x onerror="alert(1)">'


def test_annotator_cannot_read_items_or_answers_not_theirs(as_user, make_user, make_job):
    job_one, _ = make_job(1, k=2)
    job_two, _ = make_job(1, k=1)
    a, b = as_user(make_user("annotator")), as_user(make_user("annotator"))
    t_b = b.post(f"/api/jobs/{job_one}/next").json()
    assert b.post(f"/api/assignments/{t_b['assignment_id']}/answer", json={"annotation": answer(True)}).status_code == 200
    t_b2 = b.post(f"/api/jobs/{job_two}/next").json()
    # A has no assignment on either item: image and item are "not found", whoever asks how.
    for item in (t_b["item_id"], t_b2["item_id"]):
        assert a.get(f"/api/items/{item}/image").status_code == 404
        assert a.get(f"/api/review/{item}").status_code == 403
    # B's assignment (and answer) is invisible and unanswerable for A.
    assert a.get(f"/api/assignments/{t_b['assignment_id']}").status_code == 404
    assert a.post(f"/api/assignments/{t_b2['assignment_id']}/answer", json={"annotation": answer(False)}).status_code == 404
    assert b.get(f"/api/assignments/{t_b['assignment_id']}").json()["answer"]["labels"][0]["present"] is True
    # Blind: once A takes the same item, A still sees no trace of B's answer.
    t_a = a.post(f"/api/jobs/{job_one}/next").json()
    assert t_a["item_id"] == t_b["item_id"] and t_a["initialAnswer"] is None
    mine = a.get(f"/api/assignments/{t_a['assignment_id']}").json()
    assert mine["answer"] is None and b.user.name not in json.dumps(mine)
    assert a.get(f"/api/items/{t_a['item_id']}/image").status_code == 200
    assert a.get("/api/review").status_code == 403
    assert a.get(f"/api/jobs/{job_one}/output.manifest").status_code == 403


def test_roles(as_user, make_user, make_job):
    job_id, _ = make_job(1, k=1)
    annotator, reviewer = as_user(make_user("annotator")), as_user(make_user("reviewer"))
    line = {"source": "0a9b4f3c-1d2e3f40-5a6b7c8d-9e0f1a2b-3c4d5e6f", "labels": ["Opacity", "Device", "Effusion"],
            "task_type": "classification+roi", "schema": "portal-it"}
    body = {"name": "nope-" + secrets.token_hex(3), "schema": SCHEMA, "manifest": [line]}
    assert annotator.post("/api/jobs", json=body).status_code == 403
    assert annotator.post(f"/api/jobs/{job_id}/close").status_code == 403
    assert reviewer.post(f"/api/jobs/{job_id}/next").status_code == 403
    assert reviewer.post(f"/api/jobs/{job_id}/export", json={}).status_code == 403
    assert annotator.get(f"/jobs/{job_id}", headers={"accept": "text/html"}).status_code == 403


def test_csrf_refused(as_user, make_user, make_job):
    job_id, _ = make_job(1, k=1)
    a = as_user(make_user("annotator"))
    assert a.post(f"/api/jobs/{job_id}/next", csrf="").status_code == 403
    assert a.post(f"/api/jobs/{job_id}/next", csrf="forged-token").status_code == 403
    other = as_user(make_user("annotator"))
    assert a.post(f"/api/jobs/{job_id}/next", csrf=other.csrf).status_code == 403  # bound to the session
    assert a.client.post("/logout", data={"csrf_token": "nope"}).status_code == 403
    assert a.get("/api/me").status_code == 200  # still logged in: the forged logout did nothing
    # Login without the pre-session token (login CSRF) is refused.
    fresh = as_user()
    user = make_user("annotator")
    refused = fresh.client.post("/login", data={"username": user.name, "password": user.password})
    assert refused.status_code == 403 and "portal_session" not in refused.headers.get("set-cookie", "")
    assert a.post(f"/api/jobs/{job_id}/next").status_code == 200


def test_forged_or_stale_session_cookie_refused(as_user, make_user, portal_app):
    a = as_user(make_user("annotator"))
    cookie = a.client.cookies.get("portal_session")
    sid, sig = cookie.split(".")

    def changed(text: str) -> str:  # its last two characters replaced by others (1 in 1,024 ends "AA")
        return text[:-2] + ("BB" if text.endswith("AA") else "AA")

    for forged in (f"{sid}.{changed(sig)}", f"{changed(sid)}.{sig}", sid):
        assert forged != cookie
        client = TestClient(portal_app, base_url="http://127.0.0.1", cookies={"portal_session": forged})
        assert client.get("/api/me").status_code == 401
    # Logout ends the session server-side: the old cookie no longer works.
    assert a.client.post("/logout", data={"csrf_token": a.csrf}, follow_redirects=False).status_code == 303
    replay = TestClient(portal_app, base_url="http://127.0.0.1", cookies={"portal_session": cookie})
    assert replay.get("/api/me").status_code == 401


def test_xss_label_and_instructions_escaped(as_user, make_user, make_job):
    schema = dict(SCHEMA, instructions=f"Read this {XSS}",
                  labels=[{"name": XSS, "shapes": ["rectangle"]}, {"name": "Device"}, {"name": "Effusion"}])
    job_id, _ = make_job(1, k=2, schema=schema)
    a, b = as_user(make_user("annotator")), as_user(make_user("annotator"))
    page = a.get(f"/jobs/{job_id}/label", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert XSS not in page.text  # the viewer shows the instructions itself, as text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    labels = [{"name": XSS, "present": True}, {"name": "Device", "present": False}, {"name": "Effusion", "present": False}]
    for user in (a, b):
        task = user.post(f"/api/jobs/{job_id}/next").json()
        present = user is a
        body = {"labels": [dict(labels[0], present=present), *labels[1:]], "rois": []}
        assert user.post(f"/api/assignments/{task['assignment_id']}/answer", json={"annotation": body}).status_code == 200
    reviewer = as_user(make_user("reviewer"))
    listing = reviewer.get("/review", headers={"accept": "text/html"})
    review = reviewer.get(f"/review/{task['item_id']}", headers={"accept": "text/html"})
    assert review.status_code == 200 and listing.status_code == 200
    for text in (review.text, listing.text):
        assert XSS not in text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in review.text
    assert "\\u003cimg src=x" in review.text  # the JSON data block for the viewer escapes '<' 


def test_path_traversal_and_bad_ids_refused(as_user, make_user, make_job, portal_db):
    a = as_user(make_user("admin"))
    for path in ("/api/items/..%2F..%2Fetc%2Fpasswd/image", "/api/items/-1/image", "/api/items/0/image",
                 "/api/items/99999999999/image", "/api/items/1e3/image", "/static/viewer/..%2F..%2Fpyproject.toml",
                 "/static/viewer/%2e%2e/secret.js", "/static/portal/..%2Fapp.py", "/static/viewer/build-info.json"):
        response = a.get(path)
        assert response.status_code in (404, 422), (path, response.status_code)
        assert "root:" not in response.text and "import" not in response.text
    bad_manifest = [{"source": "../../../etc/passwd", "labels": ["Opacity", "Device", "Effusion"],
                     "task_type": "classification+roi", "schema": "portal-it"}]
    created = a.post("/api/jobs", json={"name": "trav-" + secrets.token_hex(3), "schema": SCHEMA,
                                        "manifest": bad_manifest})
    assert created.status_code == 422 and "not an Orthanc instance ID" in created.json()["detail"]


def test_viewer_assets_served_with_their_content_types(as_user):
    client = as_user()
    js = client.get("/static/viewer/viewer.js")
    if js.status_code == 404:
        pytest.fail("build/viewer/viewer.js missing: run `make viewer` before the portal tests")
    assert js.headers["content-type"].startswith("text/javascript")
    wasm = client.get("/static/viewer/openjpegwasm_decode.wasm")
    assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
    assert client.get("/static/portal/portal.js").headers["content-type"].startswith("text/javascript")


def test_favicon_named_by_every_page_and_answered_at_the_root(as_user):
    """The browser's /favicon.ico was a 404 in every log (reviewer finding): pages name an icon, and
    the root path answers it too, without a session."""
    anonymous = as_user(None)
    login_page = anonymous.get("/login")
    assert '<link rel="icon" href="/static/portal/favicon.svg"' in login_page.text
    for path in ("/favicon.ico", "/static/portal/favicon.svg"):
        icon = anonymous.get(path)
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml", path
        assert icon.content.startswith(b"<svg")


# ------------------------------------------------------------------------------ SSO (alb-oidc)

ALB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/portal-it/abcdef0123456789"
POOL = "us-east-1_ItPool01"
CLIENT = "itclient"
ISS = f"https://cognito-idp.us-east-1.amazonaws.com/{POOL}"


@pytest.fixture(scope="module")
def sso(portal_settings, portal_engine):
    alb_key = ec.generate_private_key(ec.SECP256R1())
    pool_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = alb_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    jwk = dict(json.loads(RSAAlgorithm.to_jwk(pool_key.public_key())), kid="pool-1")

    def fetch(kid: str) -> str:
        if kid != "alb-1":
            raise LookupError(kid)
        return pem

    verifier = OidcVerifier(region="us-east-1", alb_arn=ALB, user_pool_id=POOL, client_id=CLIENT,
                            alb_key_fetcher=fetch, jwks_fetcher=lambda: {"keys": [jwk]})
    settings = portal_settings.with_(auth_mode="alb-oidc", oidc_region="us-east-1", oidc_alb_arn=ALB,
                                     cognito_user_pool_id=POOL, cognito_client_id=CLIENT, root_path="/portal")
    app = create_app(settings, engine=portal_engine, oidc_verifier=verifier)

    def tokens(sub: str, groups: list[str], *, key=alb_key, exp: int = 60, signer: str = ALB, kid="alb-1"):
        e = int(time.time()) + exp
        data = jwt.encode({"sub": sub, "email": f"{sub}@example.org", "exp": e}, key, algorithm="ES256",
                          headers={"kid": kid, "signer": signer, "exp": e, "client": CLIENT})
        access = jwt.encode({"sub": sub, "client_id": CLIENT, "token_use": "access", "iss": ISS, "exp": e,
                             "cognito:groups": groups}, pool_key, algorithm="RS256", headers={"kid": "pool-1"})
        return {"x-amzn-oidc-data": data, "x-amzn-oidc-accesstoken": access}

    return TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False), tokens


def test_sso_request_with_valid_alb_token(sso):
    client, tokens = sso
    sub = "sso-" + secrets.token_hex(4)
    me = client.get("/portal/api/me", headers=tokens(sub, ["reviewer"]))
    assert me.status_code == 200 and me.json()["role"] == "reviewer" and me.json()["name"] == f"{sub}@example.org"
    # Groups are the source of truth: a changed group changes the role on the next request.
    assert client.get("/portal/api/me", headers=tokens(sub, ["admin"])).json()["role"] == "admin"
    assert client.get("/portal/healthz").status_code == 200       # health stays open (ALB target check)
    assert client.get("/healthz").status_code == 404              # routes live under the root path
    # CSRF is still required for state changes in SSO mode.
    assert client.post("/portal/api/jobs/1/close", headers=tokens(sub, ["admin"])).status_code == 403
    csrf = client.get("/portal/api/me", headers=tokens(sub, ["admin"])).json()["csrf"]
    closed = client.post("/portal/api/jobs/2147483000/close", headers={**tokens(sub, ["admin"]), "X-CSRF-Token": csrf})
    assert closed.status_code == 404
    # Password login does not exist in SSO mode.
    assert client.post("/portal/login", data={"username": "x", "password": "y"}).status_code == 404


def test_sso_refuses_bad_tokens(sso):
    client, tokens = sso
    other_key = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "none": {},
        "forged": tokens("sso-x", ["admin"], key=other_key),
        "expired": tokens("sso-x", ["admin"], exp=-10),
        "wrong signer": tokens("sso-x", ["admin"], signer=ALB.replace("portal-it", "other")),
        "wrong kid": tokens("sso-x", ["admin"], kid="alb-2"),
    }
    for name, headers in cases.items():
        response = client.get("/portal/api/me", headers=headers)
        assert response.status_code == 401, name
    assert client.get("/portal/api/me", headers=tokens("sso-nogroup", [])).status_code == 403
    page = client.get("/portal/", headers={**tokens("sso-x", ["admin"], exp=-10), "accept": "text/html"})
    assert page.status_code == 401


def test_sso_image_route_serves_an_annotator_only_their_items(sso, make_job):
    """alb-oidc: the image route's visibility rule (leasing.ITEM_SOURCE) after the claims' user lookup."""
    client, tokens = sso
    job, _ = make_job(2, k=1)
    mine, other = f"sso-a-{secrets.token_hex(3)}", f"sso-b-{secrets.token_hex(3)}"
    csrf = client.get("/portal/api/me", headers=tokens(mine, ["annotator"])).json()["csrf"]
    task = client.post(f"/portal/api/jobs/{job}/next", headers={**tokens(mine, ["annotator"]), "X-CSRF-Token": csrf}).json()
    url = f"/portal/api/items/{task['item_id']}/image"
    assert client.get(url, headers=tokens(mine, ["annotator"])).content[128:132] == b"DICM"
    assert client.get(url, headers=tokens(other, ["annotator"])).status_code == 404
    assert client.get(url, headers=tokens(other, ["reviewer"])).status_code == 200
    # The prefetch token of the task lets its own browser read the upcoming item early, nobody else's.
    early = {"X-Prefetch-Token": task["prefetch"]["token"]}
    upcoming = f"/portal/api/items/{task['prefetch']['image_url'].split('/')[-2]}/image"
    assert client.get(upcoming, headers=tokens(mine, ["annotator"])).status_code == 404
    assert client.get(upcoming, headers={**tokens(mine, ["annotator"]), **early}).status_code == 200
    assert client.get(upcoming, headers={**tokens(other, ["annotator"]), **early}).status_code == 404
