"""Simulated annotators and a simulated reviewer that use the portal the way people do (``make demo``).

Each annotator logs in through the login form, asks ``POST /api/jobs/{id}/next`` for work, downloads
the (de-identified) image, and submits an answer with ``POST /api/assignments/{id}/answer`` and its
CSRF header — the same HTTP API the task page's JavaScript calls, so the demo exercises assignment,
leases, blind labeling, consolidation at K answers and the review queue for real.

What a simulated annotator *says* comes from the synthetic dataset's ground truth
(``ground_truth.jsonl`` of :mod:`devkit.synth`) and the worker model of :mod:`devkit.simulate`:
a finding that is present is reported with the worker's sensitivity, an absent one with
1 − specificity; reported true findings carry the true ROIs jittered (each missed with
``roi_miss``). The oracle that maps a portal item to its truth is the only thing a person would not
have: it reads the item's ``source`` (Orthanc ID) from the portal's database, never through the API,
which stays blind.

The simulated reviewer accepts the consolidated answer of every item in the review queue (a person
would look at the overlaid answers first; ``--interactive`` leaves the queue to people).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import requests

from devkit.simulate import SimWorker, jitter_roi
from labeling.contracts.ids import orthanc_instance_id

Answer = dict[str, Any]


class SimulationError(RuntimeError):
    """The portal refused a simulated person's request (the message names the step and the answer)."""


@dataclass(frozen=True)
class SimulatedAnnotator:
    """A portal user (name, password) answering like ``worker``."""

    name: str
    password: str
    worker: SimWorker


def orthanc_id_of(record: Mapping[str, Any]) -> str:
    """The Orthanc ID the file of a ``ground_truth.jsonl`` record gets (Orthanc Book, identifiers)."""
    return orthanc_instance_id(record["patient_id"], record["study_instance_uid"],
                               record["series_instance_uid"], record["sop_instance_uid"])


def truth_by_orthanc_id(ground_truth: Path | str) -> dict[str, Mapping[str, Any]]:
    """``ground_truth.jsonl`` records keyed by :func:`orthanc_id_of`."""
    out: dict[str, Mapping[str, Any]] = {}
    with open(ground_truth, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            try:
                out[orthanc_id_of(record)] = record
            except KeyError as exc:
                raise SimulationError(f"{ground_truth}:{number}: ground-truth record lacks {exc}") from None
    return out


def simulated_answer(record: Mapping[str, Any], worker: SimWorker, rng: np.random.Generator) -> Answer:
    """One annotator's answer (the label shape of docs/architecture.md) to the image ``record`` describes."""
    labels, rois = [], []
    image = record.get("image") or {}
    # Clamped to the image, as the viewer clamps a drawing: the label contract rejects points outside.
    size = (int(image["rows"]), int(image["columns"])) if image.get("rows") and image.get("columns") else None
    for entry in record["labels"]:
        name, present = entry["name"], bool(entry["present"])
        rate = worker.rate("sensitivity", name) if present else 1.0 - worker.rate("specificity", name)
        said = bool(rng.random() < rate)
        labels.append({"name": name, "present": said})
        if said and present:
            rois.extend(jitter_roi(rng, roi, worker.roi_jitter, image=size) for roi in record.get("rois", ())
                        if roi["label"] == name and rng.random() >= worker.roi_miss)
    return {"labels": labels, "rois": rois,
            "image": {"rows": int(image.get("rows", 0)), "columns": int(image.get("columns", 0)), "frame": 0}}


class PortalUser:
    """A logged-in browser-like session: cookie jar + the CSRF token the pages' JavaScript sends."""

    def __init__(self, url: str, name: str, password: str, timeout: float = 60.0) -> None:
        self.url, self.name, self.timeout = url.rstrip("/"), name, timeout
        self.http = requests.Session()
        form = self._check("login page", self.http.get(f"{self.url}/login", timeout=timeout))
        try:
            token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        except IndexError:
            raise SimulationError(f"{name}: the login page has no CSRF field") from None
        self._check("login", self.http.post(f"{self.url}/login", timeout=timeout, allow_redirects=False,
                                            data={"username": name, "password": password, "csrf_token": token}))
        self.csrf = self.get("/api/me")["csrf"]

    def _check(self, step: str, response: requests.Response) -> requests.Response:
        if response.status_code >= 400:
            raise SimulationError(f"{self.name}: {step} answered HTTP {response.status_code}: {response.text[:200]}")
        return response

    def get(self, path: str) -> Any:
        return self._check(f"GET {path}", self.http.get(f"{self.url}{path}", timeout=self.timeout)).json()

    def get_bytes(self, url: str) -> bytes:
        return self._check(f"GET {url}", self.http.get(url, timeout=self.timeout)).content

    def post(self, path: str, body: Optional[Mapping[str, Any]] = None) -> Any:
        response = self.http.post(f"{self.url}{path}", json=body, timeout=self.timeout,
                                  headers={"X-CSRF-Token": self.csrf})
        return self._check(f"POST {path}", response).json()

    def close(self) -> None:
        self.http.close()


def job_id(user: PortalUser, job_name: str) -> int:
    for job in user.get("/api/jobs"):
        if job["name"] == job_name:
            return int(job["id"])
    raise SimulationError(f"the portal has no job named {job_name!r} visible to {user.name}")


def annotate(url: str, annotator: SimulatedAnnotator, job_name: str, truth_of_item: Callable[[int], Mapping[str, Any]],
             *, seed: int = 0, on_answer: Optional[Callable[[str], None]] = None,
             answer_for: Callable[[Mapping[str, Any], SimWorker, np.random.Generator], Answer] | None = None) -> int:
    """Let one simulated annotator label until the portal has nothing more for them; the answer count.
    ``answer_for(truth, worker, rng)``: what they say (default :func:`simulated_answer`; a series job
    passes :func:`devkit.simulate_series.simulate_series_answer`'s). A series task's every slice is
    downloaded, as the viewer does."""
    answer_for = answer_for or simulated_answer
    rng = np.random.default_rng(seed)
    user = PortalUser(url, annotator.name, annotator.password)
    try:
        jid, answered = job_id(user, job_name), 0
        while True:
            task = user.post(f"/api/jobs/{jid}/next")
            if task.get("done") or "assignment_id" not in task:
                return answered
            for image_url in [s["url"] for s in task.get("slices") or ()] or [task["image_url"]]:
                image = user.get_bytes(image_url if image_url.startswith("http") else f"{url.rstrip('/')}{image_url}")
                if image[128:132] != b"DICM":
                    raise SimulationError(f"{annotator.name}: item {task['item_id']}'s image is not DICOM Part 10")
            answer = answer_for(truth_of_item(int(task["item_id"])), annotator.worker, rng)
            user.post(f"/api/assignments/{task['assignment_id']}/answer", {"annotation": answer})
            answered += 1
            if on_answer is not None:
                on_answer(annotator.name)
    finally:
        user.close()


def review(url: str, name: str, password: str, job_name: str) -> int:
    """The simulated reviewer: accept the consolidated answer of each of the job's items under review."""
    user = PortalUser(url, name, password)
    try:
        jid = job_id(user, job_name)
        queue = [entry for entry in user.get("/api/review") if int(entry["job_id"]) == jid]
        for entry in queue:
            user.post(f"/api/review/{entry['item_id']}", {"action": "accept"})
        return len(queue)
    finally:
        user.close()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 5.0) -> bool:
    """Poll ``predicate`` (``--interactive``: people are labeling) until true or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def item_sources(settings_env: Mapping[str, str], job_name: str) -> dict[int, str]:
    """The oracle's view: portal item id → Orthanc instance ID, read from the portal database."""
    from sqlalchemy import select

    from labeling.portal.db import make_engine, session_factory, transaction
    from labeling.portal.models import Item, Job
    from labeling.portal.settings import PortalSettings

    engine = make_engine(PortalSettings.from_env(dict(settings_env)))
    factory = session_factory(engine)
    try:
        with transaction(factory) as session:
            job = session.scalars(select(Job).where(Job.name == job_name)).one()
            return {item.id: item.source for item in session.scalars(select(Item).where(Item.job_id == job.id))}
    finally:
        engine.dispose()


def default_workers(names: Iterable[str], seed: int = 0) -> list[SimWorker]:
    """Annotators of known, different quality: sensitivity 0.98, 0.92, 0.86, … (floor 0.7), specificity
    a little higher. Measured with devkit/demo_labels.py: annotators of 0.85–0.98 consolidate to
    about 97 % correct labels, enough for the model to learn every finding; 0.75–0.95 gives about
    92 %, and Opacity is no longer learnable from them."""
    rng = np.random.default_rng(seed)
    out = []
    for i, name in enumerate(names):
        base = max(0.98 - 0.06 * i, 0.7)
        out.append(SimWorker(name, sensitivity=round(base, 2), specificity=round(min(base + 0.01, 0.99), 2),
                             roi_jitter=float(rng.uniform(0.02, 0.05))))
    return out
