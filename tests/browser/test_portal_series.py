"""A series job in the portal, in Chromium (issue 14): a synthetic CT series and its multi-frame twin
from ``manifest --level series`` become portal items; the annotator's page mounts the viewer's stack
from the task's ``slices`` (each served de-identified by the portal's slice route), scrolls, outlines
the nodule on the slice where the ground truth says it is largest, answers the series-level label
and submits; the stored answer references that slice's instance. The page is saved to
``build/screenshots/portal-series-task.png`` (the README's series screenshot).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from devkit.synth_series import generate_series_dataset
from labeling.contracts.schema import load_schema
from labeling.manifest.build import build_manifest, parse_filters, write_manifest
from labeling.orthanc.local_stack import REPO_ROOT
from labeling.portal.local import add_user, portal_env
from tests.browser.conftest import SCREENSHOTS
from tests.browser.portal_pages import login, portal  # noqa: F401 - the fixture
from tests.browser.viewer_driver import ViewerDriver

pytestmark = pytest.mark.browser

PASSWORD = "series password 123"
SLICES = 16
SIZE = 96


def test_series_job_in_the_portal(browser, portal, local_stack, client, tmp_path):  # noqa: F811
    url, tag = portal, secrets.token_hex(3)
    seed = int(tag, 16) % 100_000
    generate_series_dataset(tmp_path / "ct", series=1, slices=SLICES, size=SIZE, seed=seed, prevalence=1.0,
                            progress=False)
    truth = {r["level"]: r for r in map(json.loads, (tmp_path / "ct" / "ground_truth.jsonl").open())}
    for path in sorted((tmp_path / "ct").rglob("*.dcm")):
        client.upload(path.read_bytes())
    schema = load_schema(REPO_ROOT / "schemas" / "ct-nodule.yaml")
    built = build_manifest(client, schema_name=schema.name, labels=schema.label_names, task_type=schema.task_type,
                           filters=parse_filters(patient_id=truth["series"]["patient_id"]), level="series")
    series_line = next(line for line in built.lines if line.extra["level"] == "series")
    write_manifest([series_line], tmp_path / "ct.jsonl")
    env = {**os.environ, **portal_env(local_stack.workdir)}
    job, annotator = f"ct-{tag}", f"ct-annotator-{tag}"
    add_user(local_stack.workdir, annotator, "annotator", PASSWORD)
    created = subprocess.run([sys.executable, "-m", "labeling", "portal", "job", "create", "--name", job,
                              "--manifest", str(tmp_path / "ct.jsonl"), "--schema", str(REPO_ROOT / "schemas" /
                                                                                       "ct-nodule.yaml"),
                              "--annotators-per-item", "1"], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120)
    assert created.returncode == 0, created.stderr
    job_id = int(created.stdout.split("(id ", 1)[1].split(")", 1)[0])

    page = login(browser, url, annotator, PASSWORD)
    page.goto(f"{url}/jobs/{job_id}/label")
    page.wait_for_function("() => document.body.dataset.state === 'labeling'", timeout=60_000)
    assert page.inner_text("#position").startswith("Series 1 of 1")
    driver = ViewerDriver(page)
    driver.wait_rendered()
    assert page.inner_text("[data-da-slice]").strip() == f"1 / {SLICES}"

    # the nodule's largest cross-section (ground truth), at its place in the manifest's slice order
    instances = list(series_line.extra["instances"])
    rois = [r for r in truth["series"]["rois"] if r["nodule"] == 0]
    biggest = max(rois, key=lambda r: r["points"][1][0] - r["points"][0][0])
    index = instances.index(biggest["instance"])
    driver.call("goToSlice", index)
    page.wait_for_function(f"() => document.querySelector('[data-da-slice]').textContent.trim() === "
                           f"'{index + 1} / {SLICES}'", timeout=30_000)
    driver.set_label("Nodule", True)
    driver.draw_ellipse("Nodule", *biggest["points"])
    assert driver.validate() == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "portal-series-task.png"), full_page=True)
    before = int(page.evaluate("() => Number(document.body.dataset.submitted || 0)"))
    page.click("#submit")
    page.wait_for_function(f"() => Number(document.body.dataset.submitted || 0) > {before}", timeout=30_000)
    page.wait_for_function("() => document.body.dataset.state === 'done'", timeout=30_000)
    assert not page.errors

    # K=1: the item is consolidated at once; its ROI is on the slice it was drawn on
    from sqlalchemy import select

    from labeling.portal.db import make_engine, session_factory, transaction
    from labeling.portal.models import Item, Job
    from labeling.portal.settings import PortalSettings

    engine = make_engine(PortalSettings.from_env(portal_env(local_stack.workdir)))
    try:
        with transaction(session_factory(engine)) as session:
            item = session.scalars(select(Item).join(Job, Job.id == Item.job_id).where(Job.name == job)).one()
            assert item.state == "done" and item.source == series_line.source
            assert [(r["instance"], r["frame"]) for r in item.final["rois"]] == [(biggest["instance"], 0)]
            assert item.final["labels"][0]["present"] is True
            item_id = item.id
    finally:
        engine.dispose()

    # The review page opens on the slice of the first region, not on slice 1 where nothing is drawn.
    reviewer = f"ct-reviewer-{tag}"
    add_user(local_stack.workdir, reviewer, "reviewer", PASSWORD)
    page = login(browser, url, reviewer, PASSWORD)
    page.goto(f"{url}/review/{item_id}")
    page.wait_for_function("() => document.body.dataset.state === 'reviewing'", timeout=60_000)
    assert page.inner_text("[data-da-slice]").strip() == f"{index + 1} / {SLICES}"
    assert page.inner_text("h1").strip() == f"Review: {job}, series 1"
    page.screenshot(path=str(SCREENSHOTS / "portal-series-review.png"), full_page=True)
    assert not page.errors
    page.goto(f"{url}/jobs/{job_id}")  # the job page counts series, not images
    assert "1 series · K = 1 ·" in page.inner_text("#progress-card")
    assert "Series/hour" in page.inner_text("#annotators") and "image" not in page.inner_text("#annotators")
    assert (SCREENSHOTS / "portal-series-task.png").stat().st_size > 10_000
