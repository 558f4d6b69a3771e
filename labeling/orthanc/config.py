"""The single generator of Orthanc's configuration.

Both deployment targets are rendered from one typed :class:`OrthancSettings`:

* the ECS task definition of ``orthancteam/orthanc`` (``components/orthanc.py``) gets
  :func:`container_environment` — the whole non-secret configuration as ``ORTHANC_JSON`` plus one
  ``ORTHANC__SECTION__KEY`` variable per secret, filled by ECS ``secrets`` from Secrets Manager;
* the local Debian Orthanc 1.10 (``labeling/orthanc/local_stack.py``) gets :func:`render_json`, the same
  dictionary with the secrets filled in and the Debian plugin paths added.

So the local integration tests exercise the configuration the cloud runs. Keys follow the Orthanc
Book ("Configuration of Orthanc", PostgreSQL plugin 4.x, DICOMweb plugin, AWS S3 storage plugin).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final, Mapping, Union

# Secret slots: the configuration holds a SecretRef where a secret goes; renderers fill or route it.
POSTGRES_PASSWORD = "postgres_password"
REGISTERED_USERS = "registered_users"

# Debian bookworm's plugin files (packages orthanc-postgresql, orthanc-dicomweb, orthanc-gdcm).
DEBIAN_PLUGIN_DIR = "/usr/share/orthanc/plugins"
DEBIAN_PLUGINS = {
    "postgresql": "libOrthancPostgreSQLIndex.so",
    "dicomweb": "libOrthancDicomWeb.so",
    "gdcm": "libOrthancGdcm.so",
}

# orthancteam/orthanc enables a bundled plugin with <NAME>_PLUGIN_ENABLED=true.
CONTAINER_PLUGIN_SWITCHES = {
    "postgresql": "POSTGRESQL_PLUGIN_ENABLED",
    "dicomweb": "DICOM_WEB_PLUGIN_ENABLED",
    "gdcm": "GDCM_PLUGIN_ENABLED",
    "s3": "AWS_S3_STORAGE_PLUGIN_ENABLED",
}

# Connections Orthanc may not use on the database server: the RDS admin and the portal's pool.
TRANSACTION_MODES = ("Serializable", "ReadCommitted")  # PostgreSQL plugin >= 6.0
DEFAULT_RESERVED_CONNECTIONS = 20
MAX_INDEX_CONNECTIONS_PER_TASK = 5


class OrthancConfigError(ValueError):
    """Raised when settings cannot produce a safe configuration; the message names the setting."""


# Settings of the local stack's own PostgreSQL cluster (never of RDS, which keeps PostgreSQL's
# durable defaults). synchronous_commit=off: a commit returns before its WAL reaches the disk, so an
# operating-system crash or power loss may lose the last ~0.6 s (3 × wal_writer_delay) of
# acknowledged writes -- instances Orthanc answered as stored, whose files are on disk but whose
# index rows are not: re-upload them -- but never corrupts the database (PostgreSQL 15 manual,
# "Asynchronous Commit", https://www.postgresql.org/docs/15/wal-async-commit.html); a crash of
# Orthanc alone loses nothing. Measured with bench/ingest.py (README, Benchmarks):
# Orthanc 1.10's index plugin commits once per instance on one connection, so waiting for that
# flush bounds ingest.
LOCAL_POSTGRES_SETTINGS: Final[Mapping[str, str]] = {"synchronous_commit": "off"}


def postgres_server_options(settings: Mapping[str, str] = LOCAL_POSTGRES_SETTINGS) -> list[str]:
    """``postgres`` command-line options (``-c name=value`` each) for the local cluster."""
    for name, value in settings.items():
        if not re.fullmatch(r"[a-z_]+", name) or not re.fullmatch(r"[A-Za-z0-9_.]+", value):
            raise OrthancConfigError(f"postgres setting {name}={value!r}: not a plain name=value")
    return [option for name, value in sorted(settings.items()) for option in ("-c", f"{name}={value}")]


@dataclass(frozen=True)
class SecretRef:
    """Placeholder for a secret value; never rendered into files or environment in clear."""

    name: str


@dataclass(frozen=True)
class PostgresIndex:
    """PostgreSQL index plugin settings (Orthanc Book, PostgreSQL plugin 4.x)."""

    host: str
    port: int = 5432
    database: str = "orthanc"
    username: str = "orthanc"
    ssl: bool = True
    # Connections per Orthanc process; see connection_budget(). The local stack keeps 1: measured
    # with PostgreSQL plugin 4.0 (Debian bookworm), 2 or 4 connections made a 1,000-file upload
    # 1.5-1.8x slower (its serializable transactions conflict and Orthanc retries them).
    index_connections: int = 1
    # PostgreSQL plugin >= 6.0 (the ECS image orthancteam/orthanc 25.x): "ReadCommitted" lets the
    # index connections write concurrently (Orthanc Book, "Scalability of Orthanc": since Orthanc
    # 1.12.3 and PostgreSQL plugins 6.0). Plugin 4.0 (local Debian) has no such option and ignores it.
    transaction_mode: str = "ReadCommitted"
    # Several tasks share one database: the plugin's lock must be off (Orthanc Book, scalability).
    lock: bool = False


@dataclass(frozen=True)
class S3Storage:
    """AWS S3 storage plugin; credentials come from the ECS task role, never from keys."""

    bucket: str
    region: str
    # RootPath / StorageStructure cannot change after the first upload.
    root_path: str = ""
    storage_structure: str = "flat"


@dataclass(frozen=True)
class FilesystemStorage:
    """Orthanc's default file storage, used on the laptop."""

    directory: str
    # SyncStorageArea: fsync() after each file written (Orthanc >= 1.7.4 default true).
    sync: bool = True


Storage = Union[S3Storage, FilesystemStorage]


@dataclass(frozen=True)
class OrthancSettings:
    """Typed settings from which every Orthanc configuration of the project is generated."""

    index: PostgresIndex
    storage: Storage
    name: str = "dicom-annotate"
    http_port: int = 8042
    dicom_server: bool = True
    dicom_port: int = 4242
    dicom_aet: str = "ORTHANC"
    # Loopback-only locally; in the VPC the ALB and Lambdas connect over the task's private address.
    remote_access: bool = True
    dicomweb: bool = True
    gdcm: bool = True
    # Jobs are per node: with several tasks only a single-writer setup may persist them.
    save_jobs: bool = False
    concurrent_jobs: int = 2
    http_threads: int = 50
    stable_age_seconds: int = 60
    extra: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise OrthancConfigError naming the first unsafe or impossible setting."""
        for label, port in (("http_port", self.http_port), ("dicom_port", self.dicom_port),
                            ("index.port", self.index.port)):
            if not 1 <= int(port) <= 65535:
                raise OrthancConfigError(f"orthanc {label}: {port} is not a TCP port (1-65535)")
        if self.dicom_server and self.http_port == self.dicom_port:
            raise OrthancConfigError("orthanc dicom_port: must differ from http_port")
        if not re.fullmatch(r"[A-Za-z0-9_\-. ]{1,16}", self.dicom_aet):
            raise OrthancConfigError(
                f"orthanc dicom_aet: {self.dicom_aet!r} is not a DICOM AE title (1-16 characters)")
        if not 1 <= self.index.index_connections <= 100:
            raise OrthancConfigError(
                f"orthanc index.index_connections: {self.index.index_connections} is not in 1..100")
        if self.index.transaction_mode not in TRANSACTION_MODES:
            raise OrthancConfigError(
                f"orthanc index.transaction_mode: {self.index.transaction_mode!r} is not one of "
                f"{', '.join(TRANSACTION_MODES)}")
        if self.index.lock:
            # A lock held by one task makes every other task fail to start.
            raise OrthancConfigError("orthanc index.lock: must be false (several Orthanc tasks share the index)")
        if isinstance(self.storage, S3Storage):
            if self.storage.storage_structure not in ("flat", "legacy"):
                raise OrthancConfigError(
                    f"orthanc storage.storage_structure: {self.storage.storage_structure!r} is not flat|legacy")
            if not self.storage.bucket or not self.storage.region:
                raise OrthancConfigError("orthanc storage: S3 bucket and region are required")
        reserved = {"PostgreSQL", "AwsS3Storage", "RegisteredUsers", "AuthenticationEnabled",
                    "DicomWeb", "Plugins", "StorageDirectory", "IndexDirectory"}
        clash = reserved.intersection(self.extra)
        if clash:
            raise OrthancConfigError(
                f"orthanc extra: {sorted(clash)} are generated; set them through OrthancSettings")


def connection_budget(max_connections: int, max_tasks: int,
                      reserved: int = DEFAULT_RESERVED_CONNECTIONS) -> int:
    """IndexConnectionsCount per task so that ``max_tasks`` tasks fit under ``max_connections``.

    Orthanc Book (PostgreSQL plugin, "IndexConnectionsCount"): each Orthanc process opens that
    many connections; with N tasks the server must accept N × count plus its other clients.
    """
    if max_tasks < 1:
        raise OrthancConfigError(f"orthanc max_tasks: {max_tasks} must be at least 1")
    available = max_connections - reserved
    per_task = available // max_tasks
    if per_task < 1:
        raise OrthancConfigError(
            f"database max_connections {max_connections} leaves no connection for {max_tasks} Orthanc "
            f"tasks after {reserved} reserved; choose a larger database class or fewer tasks")
    return min(per_task, MAX_INDEX_CONNECTIONS_PER_TASK)


def build_config(settings: OrthancSettings) -> dict[str, Any]:
    """The Orthanc configuration as a dictionary, with :class:`SecretRef` where secrets go."""
    settings.validate()
    index = settings.index
    config: dict[str, Any] = {
        "Name": settings.name,
        "HttpPort": settings.http_port,
        "HttpThreadsCount": settings.http_threads,
        "KeepAlive": True,
        "RemoteAccessAllowed": settings.remote_access,
        "AuthenticationEnabled": True,
        "RegisteredUsers": SecretRef(REGISTERED_USERS),
        "DicomServerEnabled": settings.dicom_server,
        "DicomPort": settings.dicom_port,
        "DicomAet": settings.dicom_aet,
        "DicomCheckCalledAet": False,
        "StorageCompression": False,
        "OverwriteInstances": False,
        # Concurrent writers (several tasks, the portal) must not lose metadata updates.
        "CheckRevisions": True,
        "SaveJobs": settings.save_jobs,
        "ConcurrentJobs": settings.concurrent_jobs,
        "StableAge": settings.stable_age_seconds,
        "PostgreSQL": {
            "EnableIndex": True,
            "EnableStorage": False,
            "Host": index.host,
            "Port": index.port,
            "Database": index.database,
            "Username": index.username,
            "Password": SecretRef(POSTGRES_PASSWORD),
            "EnableSsl": index.ssl,
            "Lock": index.lock,
            "IndexConnectionsCount": index.index_connections,
            "TransactionMode": index.transaction_mode,
            "MaximumConnectionRetries": 10,
            "ConnectionRetryInterval": 5,
        },
    }
    if settings.dicomweb:
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                              "WadoRoot": "/wado", "StudiesMetadata": "Full", "SeriesMetadata": "Full"}
    if settings.gdcm:
        config["Gdcm"] = {"Enable": True}
    storage = settings.storage
    if isinstance(storage, S3Storage):
        config["AwsS3Storage"] = {
            "BucketName": storage.bucket,
            "Region": storage.region,
            "RootPath": storage.root_path,
            "StorageStructure": storage.storage_structure,
            "EnableAwsSdkLogs": False,
            # The bucket's default SSE-KMS encrypts; no client-side keys in the config.
        }
    else:
        config["StorageDirectory"] = storage.directory
        config["IndexDirectory"] = storage.directory
        config["SyncStorageArea"] = storage.sync  # only meaningful for the filesystem storage
    config.update(copy.deepcopy(dict(settings.extra)))
    return config


def _secret_paths(node: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], SecretRef]]:
    if isinstance(node, SecretRef):
        return [(path, node)]
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            found.extend(_secret_paths(value, path + (key,)))
        return found
    return []


def _fill(node: Any, secrets: Mapping[str, Any]) -> Any:
    if isinstance(node, SecretRef):
        if node.name not in secrets:
            raise OrthancConfigError(f"orthanc secret {node.name!r}: no value was given")
        return secrets[node.name]
    if isinstance(node, dict):
        return {key: _fill(value, secrets) for key, value in node.items()}
    return node


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if not isinstance(v, SecretRef)}
    return node


def registered_users(username: str, password: str) -> dict[str, str]:
    """The ``RegisteredUsers`` value for one admin user.

    Orthanc's docker image parses environment values as JSON, so an all-digit password would turn
    into a number; generated passwords always contain letters and this guard keeps it that way.
    """
    if not password or password.isdigit():
        raise OrthancConfigError("orthanc admin password: must be non-empty and contain a non-digit")
    return {username: password}


def render_json(settings: OrthancSettings, secrets: Mapping[str, Any],
                plugin_dir: str = DEBIAN_PLUGIN_DIR) -> dict[str, Any]:
    """The complete ``orthanc.json`` for a Debian Orthanc: secrets filled, plugins listed.

    ``secrets`` maps :data:`POSTGRES_PASSWORD` to the database password and
    :data:`REGISTERED_USERS` to the :func:`registered_users` dictionary. The file that holds the
    result must be written with 0600 permissions by the caller.
    """
    if isinstance(settings.storage, S3Storage):
        raise OrthancConfigError("orthanc storage: the Debian package has no S3 plugin; use FilesystemStorage")
    config = _fill(build_config(settings), secrets)
    plugins = [f"{plugin_dir}/{DEBIAN_PLUGINS['postgresql']}"]
    if settings.dicomweb:
        plugins.append(f"{plugin_dir}/{DEBIAN_PLUGINS['dicomweb']}")
    if settings.gdcm:
        plugins.append(f"{plugin_dir}/{DEBIAN_PLUGINS['gdcm']}")
    config["Plugins"] = plugins
    return config


@dataclass(frozen=True)
class ContainerEnvironment:
    """What the ECS container definition needs: plain variables and secret-backed variables.

    ``secrets`` maps an environment variable name to a secret slot name (:data:`POSTGRES_PASSWORD`,
    :data:`REGISTERED_USERS`); the component resolves each slot to a Secrets Manager ARN.
    """

    environment: dict[str, str]
    secrets: dict[str, str]


_ENV_SEGMENT = {"PostgreSQL": "POSTGRESQL", "AwsS3Storage": "AWS_S3_STORAGE", "DicomWeb": "DICOM_WEB"}


def env_name(path: tuple[str, ...]) -> str:
    """``("PostgreSQL", "Password")`` → ``ORTHANC__POSTGRESQL__PASSWORD`` (orthancteam/orthanc rule)."""
    parts = []
    for key in path:
        parts.append(_ENV_SEGMENT.get(key) or re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).upper())
    return "ORTHANC__" + "__".join(parts)


def container_environment(settings: OrthancSettings) -> ContainerEnvironment:
    """Environment for ``orthancteam/orthanc``: ``ORTHANC_JSON`` without secrets + one var per secret.

    No key is set both in ``ORTHANC_JSON`` and as a variable (the image refuses that).
    """
    config = build_config(settings)
    secrets = {env_name(path): ref.name for path, ref in _secret_paths(config)}
    environment = {
        "ORTHANC_JSON": json.dumps(_strip(config), sort_keys=True, separators=(",", ":")),
        CONTAINER_PLUGIN_SWITCHES["postgresql"]: "true",
        "VERBOSE_STARTUP": "false",
    }
    if settings.dicomweb:
        environment[CONTAINER_PLUGIN_SWITCHES["dicomweb"]] = "true"
    if settings.gdcm:
        environment[CONTAINER_PLUGIN_SWITCHES["gdcm"]] = "true"
    if isinstance(settings.storage, S3Storage):
        environment[CONTAINER_PLUGIN_SWITCHES["s3"]] = "true"
    return ContainerEnvironment(environment=environment, secrets=secrets)
