"""A small, typed client for Orthanc's REST API (Orthanc 1.10+, the Debian bookworm package).

One :class:`requests.Session` per client keeps connections alive (Orthanc's ``KeepAlive: true``);
its pool is sized to the number of threads that share the client. Connection errors, timeouts and
5xx answers are retried with exponential backoff. That is safe for uploads because ``POST /instances``
is idempotent: Orthanc's IDs are hashes of the DICOM UIDs, and a second copy of an instance is
answered ``AlreadyStored`` (Orthanc Book, "REST API of Orthanc", uploading DICOM files).

Routes used (Orthanc Book, REST API cheat sheet): ``/system``, ``/statistics``, ``/instances``
(upload: one DICOM file, or a ZIP archive of DICOM files since Orthanc 1.8.2, answered per instance),
``/tools/find``, ``/instances/{id}/file|rendered|frames/{n}/rendered|tags|simplified-tags``,
``/{level}/{id}/metadata[/name]`` and ``/{level}/{id}/attachments[/name]``.
With ``CheckRevisions: true`` (our generator sets it) changing an existing metadata or attachment
requires its revision in ``If-Match``; :meth:`OrthancClient.set_metadata` handles that.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional

import requests
from requests.adapters import HTTPAdapter

from labeling.orthanc.connection import OrthancConnection

Level = Literal["Patient", "Study", "Series", "Instance"]
LEVELS: tuple[str, ...] = ("Patient", "Study", "Series", "Instance")
LEVEL_PLURALS: tuple[str, ...] = ("patients", "studies", "series", "instances")
UploadStatus = Literal["Success", "AlreadyStored"]

# 502/503/504 come from something between us and Orthanc (or Orthanc shutting down): worth waiting for.
GATEWAY_STATUSES = frozenset({502, 503, 504})
MAX_BACKOFF_S = 8.0
# Upload answers are small JSON: gzip (Orthanc's "HttpCompressionEnabled") would only cost its CPU.
_NO_COMPRESSION = {"Accept-Encoding": "identity"}


class OrthancError(Exception):
    """An Orthanc request failed.

    ``status`` is the HTTP status, or ``None`` when no answer came back (connection refused or
    reset, timeout). ``details`` holds Orthanc's JSON error body when it sent one
    (``Message``, ``Details``, ``OrthancError``, ``OrthancStatus``...).
    """

    def __init__(self, status: Optional[int], message: str, url: str,
                 details: Optional[Mapping[str, Any]] = None) -> None:
        self.status = status
        self.message = message
        self.url = url
        self.details = dict(details or {})
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{where} from {url}: {message}")

    def __reduce__(self):  # picklable across processes: rebuilt from its own arguments, not the message
        return (type(self), (self.status, self.message, self.url, self.details))

    @property
    def transient(self) -> bool:
        """True when waiting may help: nothing answered, or a gateway/unavailable status."""
        return self.status is None or self.status in GATEWAY_STATUSES

    @classmethod
    def from_response(cls, response: requests.Response) -> "OrthancError":
        details: dict[str, Any] = {}
        try:
            body = response.json()
            if isinstance(body, dict):
                details = body
        except ValueError:
            pass
        message = str(details.get("Details") or details.get("Message") or "").strip()
        if not message:
            message = response.reason or "error"
            text = response.text.strip()
            if text:
                message = f"{message}: {text[:200]}"
        if response.status_code == 401:
            message = "unauthorized: check the user name and password (ORTHANC_USERNAME/ORTHANC_PASSWORD)"
        return cls(response.status_code, message, response.url, details)


@dataclass(frozen=True)
class UploadResult:
    """Orthanc's answer for one stored instance (``POST /instances``)."""

    status: UploadStatus
    instance_id: str
    parent_series: str
    parent_study: str
    parent_patient: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "UploadResult":
        status = data.get("Status")
        if status not in ("Success", "AlreadyStored"):
            # e.g. "FilteredOut" when a Lua/plugin filter refused the instance
            raise OrthancError(200, f"instance not stored (status {status!r})", "/instances", data)
        return cls(status=status, instance_id=data["ID"], parent_series=data.get("ParentSeries", ""),
                   parent_study=data.get("ParentStudy", ""), parent_patient=data.get("ParentPatient", ""))


def _check_level_plural(level_plural: str) -> str:
    if level_plural not in LEVEL_PLURALS:
        raise ValueError(f"level {level_plural!r}: expected one of {', '.join(LEVEL_PLURALS)}")
    return level_plural


class OrthancClient:
    """Thread-safe client for one Orthanc server; share one instance between worker threads."""

    def __init__(self, url: str, username: str, password: str, *, timeout: float = 30.0,
                 retries: int = 5, backoff: float = 0.25, pool_size: int = 8) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._session = requests.Session()
        self._session.auth = (username, password)
        # max_retries=0: this class does the retrying, with backoff and on 5xx too.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @classmethod
    def from_connection(cls, conn: OrthancConnection, **kwargs: Any) -> "OrthancClient":
        return cls(conn.url, conn.username, conn.password, **kwargs)

    def __repr__(self) -> str:
        return f"OrthancClient({self.url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "OrthancClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with a little jitter, so parallel workers do not retry in step."""
        base = min(MAX_BACKOFF_S, self.backoff * (2 ** attempt))
        return base * (0.75 + 0.5 * random.random())

    def request(self, method: str, path: str, *, retries: Optional[int] = None,
                ok_statuses: tuple[int, ...] = (), **kwargs: Any) -> requests.Response:
        """Send one request, retrying connection errors, timeouts and 5xx; raise OrthancError.

        ``ok_statuses`` lists error statuses the caller handles itself (e.g. 404 for "absent").
        """
        url = self.url + path
        budget = self.retries if retries is None else retries
        connect_timeout = min(10.0, self.timeout)
        attempt = 0
        while True:
            try:
                response = self._session.request(method, url, timeout=(connect_timeout, self.timeout), **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                error = OrthancError(None, f"{type(exc).__name__}: {_short(exc)}", url)
            else:
                if response.status_code < 400 or response.status_code in ok_statuses:
                    return response
                error = OrthancError.from_response(response)
                if response.status_code < 500:
                    raise error  # the request itself is wrong: repeating it cannot help
            if attempt >= budget:
                raise error
            time.sleep(self._delay(attempt))
            attempt += 1

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise OrthancError(response.status_code, "answer is not JSON", response.url) from None

    # -- server -------------------------------------------------------------------------------

    def system(self, *, retries: Optional[int] = None) -> dict:
        """``GET /system``: version, name, ``DatabaseBackendPlugin``, ``CheckRevisions``...

        A command's first call passes ``retries=0``: a server that is not there fails at once.
        """
        return self._json("GET", "/system", retries=retries)

    def statistics(self) -> dict:
        """``GET /statistics``: counts of patients/studies/series/instances and disk usage."""
        return self._json("GET", "/statistics")

    def instances(self, *, since: Optional[int] = None, limit: Optional[int] = None) -> list[str]:
        """``GET /instances``: every instance ID (or a page of them with since/limit)."""
        params = {}
        if since is not None or limit is not None:
            params = {"since": since or 0, "limit": limit or 0}
        return self._json("GET", "/instances", params=params)

    # -- upload -------------------------------------------------------------------------------

    def upload(self, data: bytes, *, retries: Optional[int] = None) -> UploadResult:
        """Store one DICOM file (``POST /instances``); ``AlreadyStored`` when Orthanc had it."""
        body = self._json("POST", "/instances", data=data, retries=retries,
                          headers={"Content-Type": "application/dicom", **_NO_COMPRESSION})
        if isinstance(body, list):  # Orthanc recognised a ZIP archive
            raise OrthancError(200, "the body was a ZIP archive; use upload_zip()", self.url + "/instances")
        return UploadResult.from_json(body)

    def upload_zip(self, data: bytes, *, retries: Optional[int] = None) -> list[UploadResult]:
        """Store every DICOM file of a ZIP archive in one request (Orthanc >= 1.8.2).

        Orthanc answers one entry per stored instance, in archive order; members it cannot parse
        as DICOM are skipped (logged by Orthanc, absent from the answer), so callers must match the
        answer to their files by instance ID rather than by position.
        """
        body = self._json("POST", "/instances", data=data, retries=retries,
                          headers={"Content-Type": "application/zip", **_NO_COMPRESSION})
        if isinstance(body, dict):
            body = [body]
        results = []
        for entry in body:
            try:
                results.append(UploadResult.from_json(entry))
            except OrthancError:
                continue  # a filtered-out member: not stored, so not in the results
        return results

    # -- query --------------------------------------------------------------------------------

    def find(self, level: Level, query: Mapping[str, str], *, expand: bool = True,
             limit: Optional[int] = None, since: Optional[int] = None,
             case_sensitive: bool = True) -> list[dict]:
        """``POST /tools/find``: resources at ``level`` whose main DICOM tags match ``query``.

        Values follow C-FIND matching (PS3.4 C.2.2.2): ``*``/``?`` wildcards, ``A-B`` date
        ranges, ``\\``-separated lists. With ``expand`` every answer is the resource's full JSON
        (MainDicomTags, parent ID...), so a manifest needs no GET per instance. Without it the
        answer is a list of IDs, returned here as ``[{"ID": id}, ...]`` to keep one type.
        """
        if level not in LEVELS:
            raise ValueError(f"level {level!r}: expected one of {', '.join(LEVELS)}")
        body: dict[str, Any] = {"Level": level, "Query": dict(query), "Expand": expand,
                                "CaseSensitive": case_sensitive}
        if limit is not None:
            body["Limit"] = int(limit)
        if since is not None:
            body["Since"] = int(since)
        answer = self._json("POST", "/tools/find", json=body)
        if not expand:
            return [{"ID": item} for item in answer]
        return answer

    def series(self, series_id: str) -> dict:
        """``GET /series/{id}``: its ``Instances`` (Orthanc IDs), ``MainDicomTags``, ``ParentStudy``..."""
        return self._json("GET", f"/series/{series_id}")

    # -- instances ----------------------------------------------------------------------------

    def instance_exists(self, instance_id: str) -> bool:
        """``GET /instances/{id}``: 200 (a small JSON of the instance's identifiers) or 404."""
        return self.request("GET", f"/instances/{instance_id}", ok_statuses=(404,)).status_code != 404

    def instance_file(self, instance_id: str) -> bytes:
        """The stored DICOM file, byte for byte (``GET /instances/{id}/file``)."""
        return self.request("GET", f"/instances/{instance_id}/file").content

    def instance_rendered(self, instance_id: str, *, frame: Optional[int] = None) -> bytes:
        """A PNG rendering (``/instances/{id}/rendered`` or ``/frames/{n}/rendered``)."""
        path = (f"/instances/{instance_id}/rendered" if frame is None
                else f"/instances/{instance_id}/frames/{int(frame)}/rendered")
        return self.request("GET", path, headers={"Accept": "image/png"}).content

    def instance_tags(self, instance_id: str, simplified: bool = True) -> dict:
        """``/simplified-tags`` (keyword → value) or ``/tags`` (``gggg,eeee`` → {Name, Type, Value})."""
        route = "simplified-tags" if simplified else "tags"
        return self._json("GET", f"/instances/{instance_id}/{route}")

    def delete(self, level_plural: str, resource_id: str, *, missing_ok: bool = False) -> None:
        """``DELETE /{level}/{id}`` (with its children); ``missing_ok`` accepts an absent resource."""
        response = self.request("DELETE", f"/{_check_level_plural(level_plural)}/{resource_id}",
                                ok_statuses=(404,))
        if response.status_code == 404 and not missing_ok:
            raise OrthancError.from_response(response)

    # -- metadata -----------------------------------------------------------------------------

    def list_metadata(self, level_plural: str, resource_id: str) -> dict[str, str]:
        """All metadata of a resource, name → value (``GET .../metadata?expand``)."""
        return self._json("GET", f"/{_check_level_plural(level_plural)}/{resource_id}/metadata",
                          params={"expand": ""})

    def get_metadata(self, level_plural: str, resource_id: str, name: str) -> Optional[str]:
        """One metadata value, or ``None`` when the resource has no such metadata."""
        value, _ = self.get_metadata_with_revision(level_plural, resource_id, name)
        return value

    def get_metadata_with_revision(self, level_plural: str, resource_id: str,
                                   name: str) -> tuple[Optional[str], Optional[str]]:
        """``(value, revision)``; the revision (ETag) is what ``If-Match`` needs to change it."""
        path = f"/{_check_level_plural(level_plural)}/{resource_id}/metadata/{name}"
        response = self.request("GET", path, ok_statuses=(404,))
        if response.status_code == 404:
            return None, None
        return response.text, response.headers.get("ETag")

    def set_metadata(self, level_plural: str, resource_id: str, name: str, value: str, *,
                     revision: Optional[str] = None, overwrite: bool = True) -> None:
        """Set a metadata (``PUT .../metadata/{name}``).

        Metadata names are the ones Orthanc knows: user metadata must be declared in the
        ``UserMetadata`` configuration section, or be a number from 1024 to 65535.
        With ``CheckRevisions`` an existing value is replaced only with its current ``revision``;
        pass the one from :meth:`get_metadata_with_revision` to detect concurrent writers (409 →
        OrthancError), or leave it ``None`` with ``overwrite=True`` to replace whatever is there.
        """
        path = f"/{_check_level_plural(level_plural)}/{resource_id}/metadata/{name}"
        explicit = revision is not None
        for _ in range(3):
            headers = {"If-Match": revision} if revision else {}
            response = self.request("PUT", path, data=value.encode("utf-8"), headers=headers,
                                    ok_statuses=(409,))
            if response.status_code != 409:
                return
            if explicit or not overwrite:
                raise OrthancError.from_response(response)
            _, revision = self.get_metadata_with_revision(level_plural, resource_id, name)
            if revision is None:
                revision = ""  # deleted in between: try again without If-Match
        raise OrthancError(409, "metadata kept changing while we wrote it", self.url + path)

    def delete_metadata(self, level_plural: str, resource_id: str, name: str) -> None:
        path = f"/{_check_level_plural(level_plural)}/{resource_id}/metadata/{name}"
        _, revision = self.get_metadata_with_revision(level_plural, resource_id, name)
        if revision is None:
            return
        self.request("DELETE", path, headers={"If-Match": revision}, ok_statuses=(404,))

    # -- attachments --------------------------------------------------------------------------

    def list_attachments(self, level_plural: str, resource_id: str) -> list[str]:
        """Attachment names of a resource (``dicom`` for an instance's file, user ones >= 1024)."""
        return self._json("GET", f"/{_check_level_plural(level_plural)}/{resource_id}/attachments")

    def get_attachment(self, level_plural: str, resource_id: str, name: str) -> bytes:
        path = f"/{_check_level_plural(level_plural)}/{resource_id}/attachments/{name}/data"
        return self.request("GET", path).content

    def set_attachment(self, level_plural: str, resource_id: str, name: str, data: bytes, *,
                       revision: Optional[str] = None) -> None:
        """Store a user attachment (name declared in ``UserContentType`` or a number >= 1024)."""
        path = f"/{_check_level_plural(level_plural)}/{resource_id}/attachments/{name}"
        headers = {"Content-Type": "application/octet-stream"}
        if revision:
            headers["If-Match"] = revision
        self.request("PUT", path, data=data, headers=headers)


def _short(exc: Exception) -> str:
    """The cause in a few words where the exception chain names one (urllib3's retry story is long)."""
    cause: Optional[BaseException] = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"unknown host ({cause.strerror})"
        cause = cause.__cause__ or cause.__context__ or (cause.args[0] if cause.args and
                                                         isinstance(cause.args[0], BaseException) else None)
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."
