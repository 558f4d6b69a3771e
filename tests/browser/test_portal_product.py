"""The portal as a new user meets it (issue 12), all in Chromium, no Python typed by the people:

an admin creates a job from an Orthanc query in the UI and adds the annotators and a reviewer; one
annotator labels with the keyboard only and flags one image; a second annotator disagrees on one
image; the reviewer resolves the disagreement and excludes the flagged image; the admin downloads
the export. A screenshot of each page goes to ``build/screenshots/portal-*.png`` (users, new-job, task-keyboard, flag, review-queue, review-disagreement, review-flag, job).
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from devkit import synth
from labeling.gt.output_manifest import read_output_manifest
from labeling.portal.local import add_user
from tests.browser.conftest import SCREENSHOTS
from tests.browser.portal_pages import login, portal  # noqa: F401 - the fixture
from tests.browser.viewer_driver import ViewerDriver

pytestmark = pytest.mark.browser

PASSWORD = "product password 123"


def _login(browser: Any, url: str, name: str) -> Any:
    return login(browser, url, name, PASSWORD)


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"portal-{name}.png"), full_page=True)


def _wait_item(page: Any, previous: str = "") -> str:
    page.wait_for_function(f"() => document.body.dataset.state === 'labeling' && document.body.dataset.item !== '{previous}'",
                           timeout=30_000)
    ViewerDriver(page).wait_rendered()
    return page.evaluate("() => document.body.dataset.item")


def test_admin_query_job_keyboard_labeling_flag_review_download(browser, portal, local_stack, client, tmp_path):  # noqa: F811
    url = portal
    tag = secrets.token_hex(3)
    seed = int(tag, 16)
    admin_name = f"admin-{tag}"
    add_user(local_stack.workdir, admin_name, "admin", PASSWORD)  # what `portal up` creates
    params = synth.make_params(patients=3, studies_per_patient=1, size=256, seed=seed)
    for patient in range(3):
        synth.write_image(params, tmp_path / "synth", (patient, 0))
    for path in sorted((tmp_path / "synth").rglob("*.dcm")):
        client.upload(path.read_bytes())

    # --- admin: users, then a job from a query, all in the browser
    admin = _login(browser, url, admin_name)
    admin.click("#nav-users")
    people = {"ann1": f"ann1-{tag}", "ann2": f"ann2-{tag}", "rev": f"rev-{tag}"}
    for key, name in people.items():
        admin.fill("#new-name", name)
        admin.select_option("#new-role", "reviewer" if key == "rev" else "annotator")
        admin.fill("#new-password", PASSWORD)
        admin.click("#add-user-submit")
        admin.wait_for_selector(f"tr[data-user='{name}']")
    _shot(admin, "users")

    admin.click("#nav-new-job")
    job = f"prod-{tag}"
    admin.fill("#job-name", job)
    admin.fill("#job-k", "2")
    admin.select_option("#schema-file", "chest-xray.yaml")
    admin.fill("#q-modality", "DX")
    admin.fill("#q-patient", f"SYN{seed}-*")
    _shot(admin, "new-job")
    admin.click("#create-job")
    admin.wait_for_url(f"{url}/jobs/*", timeout=60_000)
    job_url = admin.url
    assert "3 images" in admin.content()

    # --- annotator 1: keyboard only. Image 1 and 3: Y/N per finding + Enter; image 2: flagged (G).
    ann1 = _login(browser, url, people["ann1"])
    ann1.click(f"tr[data-job='{job}'] a.button")
    first = _wait_item(ann1)
    assert "Image 1 of 3" in ann1.inner_text("#position")
    assert "Opacity" in ann1.inner_text("#problems")  # says what is still missing
    # Issue 12 "Why": no W/L presets for DX, a light page. Automatic percentile windows; dark by default.
    presets = ann1.eval_on_selector_all("select[data-da-preset] option", "os => os.map(o => o.textContent)")
    assert any(p.startswith("Auto 1–99") for p in presets), presets
    background = ann1.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert sum(int(v) for v in background[background.index("(") + 1:-1].split(",")[:3]) < 150, background
    ann1.keyboard.press("y")  # Opacity present
    assert "Opacity" not in ann1.inner_text("#problems") and "Device" in ann1.inner_text("#problems")
    ann1.keyboard.press("n")  # Device absent
    ann1.keyboard.press("n")  # Effusion absent
    assert ann1.inner_text("#problems") == "" and "Complete" in ann1.inner_text("#status")
    _shot(ann1, "task-keyboard")
    ann1.keyboard.press("Enter")
    second = _wait_item(ann1, first)
    assert "Image 2 of 3" in ann1.inner_text("#position")
    ann1.keyboard.press("g")
    ann1.wait_for_selector("#flag-form:not([hidden])")
    ann1.keyboard.type("3")  # "3. burned-in text / PHI"
    assert ann1.eval_on_selector("#flag-reason", "s => s.value") == "burned-in-phi"
    ann1.keyboard.press("Tab")
    ann1.keyboard.type("name printed top left")
    _shot(ann1, "flag")
    ann1.keyboard.press("Enter")  # sends the flag
    third = _wait_item(ann1, second)
    assert "Image 3 of 3" in ann1.inner_text("#position")
    for key in ("n", "n", "n"):
        ann1.keyboard.press(key)
    ann1.keyboard.press("Enter")
    ann1.wait_for_function("() => document.body.dataset.state === 'done'")
    assert ann1.evaluate("() => document.body.dataset.flagged") == "1"

    # --- annotator 2: disagrees on image 1 (Opacity absent), agrees on image 3; image 2 is flagged away
    ann2 = _login(browser, url, people["ann2"])
    ann2.click(f"tr[data-job='{job}'] a.button")
    got = _wait_item(ann2)
    assert got == first
    for key in ("n", "n", "n"):
        ann2.keyboard.press(key)
    ann2.keyboard.press("Enter")
    assert _wait_item(ann2, got) == third
    for key in ("n", "n", "n"):
        ann2.keyboard.press(key)
    ann2.keyboard.press("Enter")
    ann2.wait_for_function("() => document.body.dataset.state === 'done'")

    # --- reviewer: the disagreement and the flag are in the queue
    rev = _login(browser, url, people["rev"])
    rev.goto(f"{url}/review")
    rows = rev.eval_on_selector_all("tr.review-item", "rows => rows.map(r => r.dataset.item)")
    assert first in rows and second in rows and third not in rows
    # One numbering (issue 12: the review page said "#1" and "Item 42" for one item): image N of the job.
    assert "image 1" in rev.inner_text(f"tr.review-item[data-item='{first}']")
    assert "burned-in text / PHI" in rev.content()
    _shot(rev, "review-queue")
    rev.click(f"tr.review-item[data-item='{first}'] a.button")
    rev.wait_for_function("() => document.body.dataset.state === 'reviewing'", timeout=30_000)
    ViewerDriver(rev).wait_rendered()
    assert "image 1" in rev.inner_text("h1") and f"Item {first}" not in rev.content()
    _shot(rev, "review-disagreement")
    driver = ViewerDriver(rev)
    driver.set_label("Opacity", True)
    driver.set_label("Device", False)
    driver.set_label("Effusion", False)
    rev.click("#save-edit")
    rev.wait_for_function("() => document.body.dataset.state === 'decided'")
    rev.goto(f"{url}/review/{second}")
    assert "name printed top left" in rev.content() and "burned-in text / PHI" in rev.content()
    _shot(rev, "review-flag")
    rev.click("#exclude")
    rev.wait_for_function("() => document.body.dataset.state === 'decided'")

    # --- admin: job page, then the export as a download
    admin.goto(job_url)
    assert "Opacity sens / spec" in admin.content()
    _shot(admin, "job")
    with admin.expect_download() as info:
        admin.click("#download")
    path = tmp_path / "export.manifest"
    info.value.save_as(path)
    records = read_output_manifest(path)
    assert len(records) == 2  # image 2 excluded
    labels = [r.labels for r in records]
    assert {"Opacity": True, "Device": False, "Effusion": False} in labels
    for page in (admin, ann1, ann2, rev):
        assert not page.errors, page.errors
        page.context.close()
