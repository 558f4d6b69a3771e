"""What a new user met trying the portal (issue 12 "Done when", task C), each fixed and kept fixed here:

- after drawing a region the viewport has the focus, and Cornerstone prevents every key that reaches
  it, so Enter (submit), K (skip) and G (flag) did nothing until the annotator clicked elsewhere;
- on the new-job page, choosing a schema or manifest file left its radio unchecked, so the job was
  silently made from the schema list / an Orthanc query of every image instead;
- a refusal of the API's request checks was shown as FastAPI's raw JSON, which echoes the whole body
  (an uploaded manifest: tens of MB of text that froze the tab);
- on a laptop-sized window (1024 × 700) the buttons and the message saying what is still missing were
  below the fold, so Enter on an incomplete answer seemed to do nothing;
- on the users page a refused change (an admin disabling themselves) left the control showing the
  change, and "User … added." vanished with the reload that lists the new user;
- a missing image showed a black viewport with the viewer's "decode failed" beside the portal's "The
  image is missing" (the reviewer's page likewise);
- "Close and consolidate", next to Pause, ended the job at one click with no way back;
- an API call after the session ended said "session expired; log in again" with no way to do so
  short of editing the address bar.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from psycopg import connect

from devkit import synth
from labeling.portal.local import add_user, portal_env
from tests.browser.conftest import SCREENSHOTS
from tests.browser.portal_pages import login, portal  # noqa: F401 - the fixture
from tests.browser.viewer_driver import ViewerDriver

pytestmark = pytest.mark.browser

PASSWORD = "trial password 123"
UNCERTAIN_SCHEMA = """name: trial-uncertain
task_type: classification+roi
uncertain: true
labels:
  - name: Opacity
    shapes: [rectangle, ellipse]
  - name: Device
    shapes: [rectangle]
"""


@pytest.fixture(scope="module")
def trial(portal, local_stack, client, tmp_path_factory) -> dict[str, Any]:  # noqa: F811
    """Two synthetic images of one fresh patient in Orthanc, an admin and an annotator."""
    tag = secrets.token_hex(3)
    seed = int(tag, 16)
    out = tmp_path_factory.mktemp("trial")
    params = synth.make_params(patients=2, studies_per_patient=1, size=256, seed=seed)
    for patient in range(2):
        synth.write_image(params, out / "synth", (patient, 0))
    for path in sorted((out / "synth").rglob("*.dcm")):
        client.upload(path.read_bytes())
    (out / "uncertain.yaml").write_text(UNCERTAIN_SCHEMA)
    names = {"admin": f"tadmin-{tag}", "annotator": f"tann-{tag}"}
    for role, name in names.items():
        add_user(local_stack.workdir, name, role, PASSWORD)
    return {"url": portal, "tag": tag, "patient": f"SYN{seed}-*", "names": names, "dir": out}


def _create_job(browser: Any, trial: dict[str, Any], name: str, patient: str = "") -> None:
    """The admin makes a job of the trial's images (or ``patient``'s; K = 1) with an uploaded schema."""
    admin = login(browser, trial["url"], trial["names"]["admin"], PASSWORD)
    schema = trial["dir"] / "uncertain.yaml"
    admin.click("#nav-new-job")
    admin.wait_for_load_state()  # the form's handlers are attached
    admin.fill("#job-name", name)
    admin.fill("#job-k", "1")
    admin.check("input[name=schema-source][value=upload]")
    admin.set_input_files("#schema-upload", str(schema))
    admin.fill("#q-patient", patient or trial["patient"])
    admin.click("#create-job")
    admin.wait_for_url(f"{trial['url']}/jobs/*", timeout=60_000)
    if not patient:
        assert "2 images" in admin.content()
    assert not admin.errors, admin.errors
    admin.context.close()


def _label_new_job(browser: Any, trial: dict[str, Any], what: str, viewport: Any = None) -> Any:
    """A new job (:func:`_create_job`) opened by the annotator on its label page, image 1 shown."""
    job = f"trial-{what}-{trial['tag']}"
    _create_job(browser, trial, job)
    page = login(browser, trial["url"], trial["names"]["annotator"], PASSWORD)
    if viewport:
        page.set_viewport_size(viewport)
    page.click(f"tr[data-job='{job}'] a.button")
    page.wait_for_function("() => document.body.dataset.state === 'labeling'", timeout=30_000)
    ViewerDriver(page).wait_rendered()
    return page


def test_new_job_chosen_files_select_their_source_and_refusals_read_as_words(browser, trial):
    url = trial["url"]
    admin = login(browser, url, trial["names"]["admin"], PASSWORD)
    admin.click("#nav-new-job")
    admin.wait_for_load_state()  # the form's handlers are attached
    admin.set_input_files("#schema-upload", str(trial["dir"] / "uncertain.yaml"))
    assert admin.is_checked("input[name=schema-source][value=upload]")
    admin.select_option("#schema-file", "chest-xray.yaml")
    assert admin.is_checked("input[name=schema-source][value=file]")
    # A manifest file chosen while the radio still says "Orthanc query": the file is what is sent
    # (before, an empty query made a job of every image in Orthanc).
    manifest = trial["dir"] / "bad.manifest"
    manifest.write_text(json.dumps(["not", "an", "object"]) + "\n")
    admin.fill("#job-name", f"trial-bad-{trial['tag']}")
    admin.set_input_files("#manifest-upload", str(manifest))
    assert admin.is_checked("input[name=image-source][value=manifest]")
    admin.click("#create-job")
    admin.wait_for_function("() => document.getElementById('problems').textContent")
    problem = admin.inner_text("#problems")
    # FastAPI's check of the body, in words; not its JSON with the body echoed back.
    assert problem == "manifest[0]: Input should be a valid dictionary", problem
    assert admin.url.endswith("/admin/jobs/new")
    # Typing a filter goes back to the query.
    admin.fill("#q-modality", "DX")
    assert admin.is_checked("input[name=image-source][value=query]")
    assert not admin.errors, admin.errors
    admin.context.close()


def test_enter_skip_and_flag_work_after_drawing_a_region(browser, trial):
    page = _label_new_job(browser, trial, "keys")
    driver = ViewerDriver(page)
    assert page.locator(".da-viewer [data-da-value='uncertain']").count() == 2  # the uploaded schema's
    first = page.evaluate("() => document.body.dataset.item")
    page.keyboard.press("y")  # Opacity present
    page.keyboard.press("?")  # Device uncertain
    page.keyboard.press("r")  # rectangle tool; label 1 (Opacity) is the default region label
    driver.drag([(60, 60), (120, 110)])
    assert page.evaluate("() => document.activeElement.matches('[data-da-viewport]')")  # where a drag leaves it
    assert driver.validate() == []
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.body.dataset.submitted === '1'", timeout=10_000)
    page.wait_for_function(f"() => document.body.dataset.state === 'labeling' && document.body.dataset.item !== '{first}'",
                           timeout=30_000)
    assert "Image 2 of 2" in page.inner_text("#position")
    driver.wait_rendered()
    driver.drag([(80, 80), (90, 90)])  # a window/level drag: the focus is in the viewport again
    page.keyboard.press("g")
    page.wait_for_selector("#flag-form:not([hidden])", timeout=5_000)
    assert not page.errors, page.errors
    page.context.close()


def test_a_call_after_the_session_ended_offers_the_login(browser, trial, local_stack):
    name = trial["names"]["annotator"]
    page = _label_new_job(browser, trial, "expiry")
    page.keyboard.press("n")
    page.keyboard.press("n")
    env = portal_env(local_stack.workdir)
    with connect(host="127.0.0.1", port=int(env["PORTAL_DB_PORT"]), dbname=env["PORTAL_DB_NAME"],
                 user=env["PORTAL_DB_USER"], password=env["PORTAL_DB_PASSWORD"], autocommit=True) as conn:
        conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second' "
                     "WHERE user_id = (SELECT id FROM users WHERE name = %s)", (name,))
    page.keyboard.press("Enter")
    link = page.wait_for_selector("#problems a[href$='/login']", timeout=10_000)
    assert "session expired" in page.inner_text("#problems")
    link.click()
    page.wait_for_url(f"{trial['url']}/login")
    page.context.close()


def test_two_tabs_a_done_image_moves_on_and_the_end_says_so(browser, trial):
    """The same annotator in two tabs: the tab whose image was answered in the other one said only
    "assignment N: already answered" and stayed on it; the last image left an empty viewer."""
    job = f"trial-tabs-{trial['tag']}"
    _create_job(browser, trial, job)
    first = login(browser, trial["url"], trial["names"]["annotator"], PASSWORD)
    first.click(f"tr[data-job='{job}'] a.button")
    second = first.context.new_page()
    second.errors = []
    second.on("pageerror", lambda exc: second.errors.append(str(exc)))
    second.goto(first.url)
    for page in (first, second):  # one lease: both tabs show image 1
        page.wait_for_function("() => document.body.dataset.state === 'labeling'", timeout=30_000)
        ViewerDriver(page).wait_rendered()
        assert "Image 1 of 2" in page.inner_text("#position")
        page.keyboard.press("n")
        page.keyboard.press("n")
    first.bring_to_front()
    first.keyboard.press("Enter")
    first.wait_for_function("() => document.body.dataset.submitted === '1'", timeout=10_000)
    second.bring_to_front()
    second.keyboard.press("Enter")
    second.wait_for_function("() => document.getElementById('status').textContent.startsWith('Not saved: ')",
                             timeout=30_000)
    assert "already answered" in second.inner_text("#status")
    assert "Image 2 of 2" in second.inner_text("#position") and second.inner_text("#problems") != ""
    second.wait_for_function("() => document.body.dataset.state === 'labeling'", timeout=30_000)
    ViewerDriver(second).wait_rendered()
    second.keyboard.press("n")
    second.keyboard.press("n")
    second.keyboard.press("Enter")
    second.wait_for_function("() => document.body.dataset.state === 'done'", timeout=30_000)
    assert second.is_hidden("#viewer") and second.is_hidden("#submit")
    second.click("#status a")
    second.wait_for_url(f"{trial['url']}/")
    assert not first.errors and not second.errors, (first.errors, second.errors)
    first.context.close()


def test_buttons_and_what_is_missing_stay_in_a_small_window(browser, trial):
    page = _label_new_job(browser, trial, "small", viewport={"width": 1024, "height": 700})
    page.keyboard.press("y")
    page.keyboard.press("Enter")  # Device not answered yet: nothing is sent, the message says why
    assert page.evaluate("() => document.body.dataset.submitted") is None
    assert "Device" in page.inner_text("#problems")
    for selector in ("#submit", "#skip", "#flag", "#problems"):
        box = page.locator(selector).bounding_box()
        assert box and 0 <= box["y"] and box["y"] + box["height"] <= 700, (selector, box)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "portal-task-small-window.png"))
    page.keyboard.press("g")
    box = page.locator("#flag-send").bounding_box()
    assert box and box["y"] + box["height"] <= 700, box
    assert not page.errors, page.errors
    page.context.close()


def test_closing_a_job_asks_first(browser, trial):
    job = f"trial-close-{trial['tag']}"
    _create_job(browser, trial, job)
    admin = login(browser, trial["url"], trial["names"]["admin"], PASSWORD)
    admin.click(f"tr[data-job='{job}'] a")
    asked = []

    def answer(dialog: Any, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    admin.once("dialog", lambda dialog: answer(dialog, False))
    admin.click("#close")
    admin.wait_for_timeout(500)
    admin.reload()
    assert asked and "for good" in asked[0] and admin.inner_text("#job-state") == "active"
    admin.once("dialog", lambda dialog: answer(dialog, True))
    admin.click("#close")
    admin.wait_for_function("() => document.getElementById('job-state')?.textContent === 'closed'", timeout=30_000)
    assert len(asked) == 2 and not admin.errors, admin.errors
    admin.context.close()


def test_users_page_shows_what_is_stored(browser, trial):
    me = trial["names"]["admin"]
    admin = login(browser, trial["url"], me, PASSWORD)
    admin.click("#nav-users")
    admin.wait_for_load_state()  # the page's module has attached its handlers
    row = f"tr[data-user='{me}']"
    # a click, not uncheck(): the page puts a refused change back at once, and uncheck() fails when the
    # box is checked again before it looks
    admin.click(f"{row} .user-active")
    admin.wait_for_function("() => document.getElementById('problems').textContent", timeout=10_000)
    assert "cannot disable yourself" in admin.inner_text("#problems")
    assert admin.is_checked(f"{row} .user-active")  # back to what the server kept
    admin.select_option(f"{row} .user-role", "annotator")
    admin.wait_for_function(f"() => document.querySelector(\"{row} .user-role\").value === 'admin'", timeout=10_000)
    name = f"tnew-{trial['tag']}"
    admin.fill("#new-name", name)
    admin.fill("#new-password", PASSWORD)
    admin.click("#add-user-submit")
    admin.wait_for_selector(f"tr[data-user='{name}']")
    admin.wait_for_function("() => document.getElementById('status').textContent", timeout=10_000)  # the module ran
    assert admin.inner_text("#status") == f"User {name} (annotator) added."
    assert not admin.errors, admin.errors
    admin.context.close()


def test_a_missing_image_says_so_where_the_image_would_be(browser, trial, client):
    # An image nobody has opened yet (the portal's cache does not have it), deleted after the job was made.
    seed = int(trial["tag"], 16) + 1
    params = synth.make_params(patients=1, studies_per_patient=1, size=256, seed=seed)
    synth.write_image(params, trial["dir"] / "gone", (0, 0))
    instance = client.upload(next((trial["dir"] / "gone").rglob("*.dcm")).read_bytes()).instance_id
    _create_job(browser, trial, f"trial-gone-{trial['tag']}", patient=f"SYN{seed}-*")
    client.delete("instances", instance)
    page = login(browser, trial["url"], trial["names"]["annotator"], PASSWORD)
    page.click(f"tr[data-job='trial-gone-{trial['tag']}'] a.button")
    page.wait_for_function("() => document.body.dataset.state === 'image-error'", timeout=30_000)
    box = page.wait_for_selector("#viewer .image-error", timeout=10_000)
    assert f"The image is missing: instance {instance}: not in Orthanc." in box.inner_text()
    assert page.inner_text("#problems") == "Skip it (K) or flag it (G)."
    assert page.locator(".da-viewer").count() == 0  # no black viewport, no "decode failed"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "portal-missing-image.png"))
    page.keyboard.press("g")
    page.wait_for_selector("#flag-form:not([hidden])")
    page.keyboard.press("Enter")  # "1. not readable"
    page.wait_for_function("() => document.body.dataset.state === 'done'", timeout=30_000)
    page.context.close()
