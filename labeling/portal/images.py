"""Image delivery: Orthanc → de-identification → disk cache → the viewer (docs/architecture.md, security).

The browser never talks to Orthanc: the portal fetches ``/instances/{id}/file`` with its own
credentials (``ORTHANC_USERNAME``/``ORTHANC_PASSWORD`` locally, ``ORTHANC_SECRET_ARN`` on ECS),
de-identifies it with :func:`labeling.dicom.deidentify.deidentify_dataset` — the code the GT pre-label
Lambda runs, with the same salt setting, so both backends hand annotators identical files — and keeps
the result in ``PORTAL_CACHE_DIR/<d|r>/<orthanc id>.dcm`` (``d`` de-identified, ``r`` raw when
de-identification is off, so flipping the switch never serves a stale kind). Files are written to a
temporary name and renamed, so a reader never sees half a file; one lock per instance keeps
concurrent requests for the same image to a single Orthanc fetch. A file older than
:data:`REVALIDATE_S` is checked against Orthanc before it is served again (and its age reset), so an
instance deleted from Orthanc — a withdrawn or wrong-patient image — stops being shown within that time;
browsers keep an image no longer (:data:`IMAGE_CACHE_CONTROL`). The instance ID is validated
(:func:`labeling.contracts.ids.validate_instance_id`) before it becomes part of a path or URL.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pydicom

from labeling.orthanc.connection import SERVICE_RETRIES, SERVICE_TIMEOUT_S, ConnectionError_, resolve_connection
from labeling.dicom.deidentify import burned_in_annotation, deidentify_dataset, read_salt
from labeling.contracts.ids import validate_instance_id
from labeling.orthanc.client import OrthancClient
from labeling.outdir import atomic_file
from labeling.portal.settings import PortalSettings, SettingsError

_log = logging.getLogger(__name__)


class ImageError(RuntimeError):
    """The image could not be fetched or prepared; ``status`` is what the API answers."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


def orthanc_client_for(settings: PortalSettings, secrets_client: Any = None) -> OrthancClient:
    """The Orthanc client from the settings: a password locally, a Secrets Manager secret on ECS
    (:func:`labeling.orthanc.connection.resolve_connection`)."""
    try:
        conn = resolve_connection(settings.orthanc_url, settings.orthanc_username, settings.orthanc_password,
                                  settings.orthanc_secret_arn, secrets_client=secrets_client)
    except ConnectionError_ as exc:
        raise SettingsError(str(exc)) from None
    return OrthancClient.from_connection(conn, timeout=SERVICE_TIMEOUT_S, retries=SERVICE_RETRIES, pool_size=16)


def salt_for(settings: PortalSettings, secrets_client: Any = None) -> bytes:
    return read_salt(settings.deidentify_salt_secret_arn, settings.deidentify_salt, secrets_client)


REVALIDATE_S = 300  # a cached file older than this is checked against Orthanc before it is served
IMAGE_CACHE_CONTROL = f"private, max-age={REVALIDATE_S}"  # the image routes' answer header
CHECKED_INLINE = 2  # files a prefetch looks at in the request thread (a task's image and the next one)
PREFETCH_PENDING = 64  # prefetch jobs that may wait per process


class ImageStore:
    def __init__(self, settings: PortalSettings, orthanc_factory: Callable[[], OrthancClient],
                 salt_factory: Callable[[], bytes]) -> None:
        self.deidentify = settings.deidentify
        self.root = Path(settings.cache_dir) / ("d" if settings.deidentify else "r")
        self._orthanc_factory = orthanc_factory
        self._salt_factory = salt_factory
        self._orthanc: Optional[OrthancClient] = None
        self._salt: Optional[bytes] = None
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._prefetcher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="portal-prefetch")
        self._pending: set[tuple[str, ...]] = set()  # prefetch jobs queued or running

    def orthanc(self) -> OrthancClient:
        with self._guard:
            if self._orthanc is None:
                self._orthanc = self._orthanc_factory()
            return self._orthanc

    def _lock_for(self, instance_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(instance_id, threading.Lock())

    def path(self, instance_id: str) -> Path:
        return self.root / f"{validate_instance_id(instance_id)}.dcm"

    @staticmethod
    def _age(target: Path) -> Optional[float]:
        """Seconds since the file was written or last checked against Orthanc; None when absent."""
        try:
            return time.time() - target.stat().st_mtime
        except FileNotFoundError:
            return None

    @classmethod
    def _fresh(cls, target: Path) -> bool:
        """Cached and checked against Orthanc less than :data:`REVALIDATE_S` ago: served as it is."""
        age = cls._age(target)
        return age is not None and age < REVALIDATE_S

    def get(self, instance_id: str) -> Path:
        """The cached (de-identified) file for an instance, fetching it on first use and checking it
        is still in Orthanc when it is older than :data:`REVALIDATE_S`."""
        target = self.path(instance_id)
        if self._fresh(target):
            return target
        with self._lock_for(instance_id):
            from labeling.orthanc.client import OrthancError

            if self._fresh(target):
                return target
            if target.is_file():
                try:
                    present = self.orthanc().instance_exists(instance_id)
                except OrthancError as exc:  # Orthanc down: the copy already checked stays usable
                    _log.warning("instance %s: could not recheck in Orthanc (%s); serving the cached copy",
                                 instance_id, exc)
                    return target
                if not present:
                    target.unlink(missing_ok=True)
                    raise ImageError(f"instance {instance_id}: not in Orthanc (deleted since it was cached)",
                                     status=404)
                os.utime(target)  # checked now
                return target
            try:
                data = self.orthanc().instance_file(instance_id)
            except OrthancError as exc:
                if exc.status == 404:
                    raise ImageError(f"instance {instance_id}: not in Orthanc", status=404) from None
                raise ImageError(f"instance {instance_id}: Orthanc unavailable ({exc.status})") from None
            body = self._prepare(instance_id, data)
            # Owner-only folders: the file names are Orthanc IDs (hashes of PatientID and UIDs), and
            # without de-identification the files hold PHI; the files themselves are 0600.
            self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.root.mkdir(mode=0o700, exist_ok=True)
            with atomic_file(target) as out:
                out.write(body)
        return target

    def _prepare(self, instance_id: str, data: bytes) -> bytes:
        if not self.deidentify:
            return data
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - pydicom raises several types
            raise ImageError(f"instance {instance_id}: not readable DICOM ({exc})") from None
        if burned_in_annotation(ds):
            _log.warning("instance %s declares BurnedInAnnotation=YES; pixels are not cleaned", instance_id)
        with self._guard:
            if self._salt is None:
                self._salt = self._salt_factory()
            salt = self._salt
        deidentify_dataset(ds, salt=salt)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    def prefetch(self, instance_ids: Sequence[str]) -> None:
        """Warm the cache for images likely served next (a task's image and the next one, or every
        slice of a series), off the request path: the request thread looks at most at the first
        :data:`CHECKED_INLINE` files (a stat each); the rest are checked and fetched in the prefetch
        threads, as one job per call. At most :data:`PREFETCH_PENDING` jobs wait, and a job already
        waiting is not queued twice; beyond that a prefetch is dropped (the image route fetches on
        demand). Errors are only logged."""
        # a stale copy too: its recheck in Orthanc then happens here, off the request path
        todo = tuple(i for i in instance_ids[:CHECKED_INLINE] if not self._fresh(self.path(i))) + \
            tuple(instance_ids[CHECKED_INLINE:])
        if not todo:
            return
        with self._guard:
            if todo in self._pending or len(self._pending) >= PREFETCH_PENDING:
                return
            self._pending.add(todo)

        def run() -> None:
            try:
                for instance_id in todo:
                    try:
                        self.get(instance_id)
                    except Exception as exc:  # noqa: BLE001 - a prefetch must never fail a request
                        _log.info("prefetch of %s failed: %s", instance_id, exc)
            finally:
                with self._guard:
                    self._pending.discard(todo)

        self._prefetcher.submit(run)

    def close(self) -> None:
        self._prefetcher.shutdown(wait=False, cancel_futures=True)
        if self._orthanc is not None:
            self._orthanc.close()
