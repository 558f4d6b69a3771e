"""The single Orthanc configuration generator (labeling/orthanc/config.py): container and local renderings."""

from __future__ import annotations

import json

import pytest

from labeling.orthanc.config import (
    CONTAINER_PLUGIN_SWITCHES,
    DEFAULT_RESERVED_CONNECTIONS,
    MAX_INDEX_CONNECTIONS_PER_TASK,
    POSTGRES_PASSWORD,
    REGISTERED_USERS,
    FilesystemStorage,
    OrthancConfigError,
    OrthancSettings,
    PostgresIndex,
    S3Storage,
    build_config,
    LOCAL_POSTGRES_SETTINGS,
    connection_budget,
    container_environment,
    env_name,
    postgres_server_options,
    registered_users,
    render_json,
)

DB_PASSWORD = "Db-pass-Xy9"
ADMIN = registered_users("admin", "Adm1nPassw0rd")


def _settings(storage=None, **overrides) -> OrthancSettings:
    index = PostgresIndex(host="db.internal", index_connections=4)
    return OrthancSettings(index=index, storage=storage or S3Storage(bucket="dicom-bucket", region="eu-west-1"),
                           **overrides)


def _json_paths(node, prefix=()) -> set[tuple[str, ...]]:
    paths = set()
    for key, value in node.items():
        paths.add(prefix + (key,))
        if isinstance(value, dict):
            paths |= _json_paths(value, prefix + (key,))
    return paths


def _env_path(name: str, config: dict) -> tuple[str, ...]:
    """Map ORTHANC__SECTION__KEY back onto the keys of a configuration (case-insensitive, _ ignored)."""
    def norm(key: str) -> str:
        return key.replace("_", "").lower()
    by_norm = {tuple(norm(k) for k in path): path for path in _json_paths(config)}
    return by_norm[tuple(norm(part) for part in name.removeprefix("ORTHANC__").split("__"))]


# ------------------------------------------------------------------------------------ container
def test_orthanc_json_holds_no_secret():
    env = container_environment(_settings())
    document = json.loads(env.environment["ORTHANC_JSON"])
    assert "RegisteredUsers" not in document
    assert "Password" not in document["PostgreSQL"]
    assert "SecretRef" not in env.environment["ORTHANC_JSON"]
    assert document["AuthenticationEnabled"] is True


def test_secret_variables_follow_the_image_naming_rule():
    env = container_environment(_settings())
    assert env.secrets == {"ORTHANC__POSTGRESQL__PASSWORD": POSTGRES_PASSWORD,
                           "ORTHANC__REGISTERED_USERS": REGISTERED_USERS}
    assert env_name(("AwsS3Storage", "BucketName")) == "ORTHANC__AWS_S3_STORAGE__BUCKET_NAME"
    assert env_name(("DicomWeb", "Enable")) == "ORTHANC__DICOM_WEB__ENABLE"


def test_no_key_is_set_twice():
    settings = _settings()
    env = container_environment(settings)
    assert not set(env.secrets) & set(env.environment)
    document = json.loads(env.environment["ORTHANC_JSON"])
    full = build_config(settings)  # with the SecretRefs, so every variable maps to a known key
    for variable in env.secrets:
        assert _env_path(variable, full) not in _json_paths(document), variable
    # The only other variables are the image's own switches, not configuration keys.
    others = set(env.environment) - {"ORTHANC_JSON"}
    assert others <= set(CONTAINER_PLUGIN_SWITCHES.values()) | {"VERBOSE_STARTUP"}
    assert not [v for v in env.environment if v.startswith("ORTHANC__")]


def test_s3_storage_turns_the_plugin_on_and_names_the_bucket():
    env = container_environment(_settings())
    document = json.loads(env.environment["ORTHANC_JSON"])
    assert env.environment[CONTAINER_PLUGIN_SWITCHES["s3"]] == "true"
    assert document["AwsS3Storage"]["BucketName"] == "dicom-bucket"
    assert document["AwsS3Storage"]["Region"] == "eu-west-1"
    assert "StorageDirectory" not in document
    # No static credentials: the task role provides them.
    assert not {"AccessKey", "SecretKey"} & set(document["AwsS3Storage"])


def test_filesystem_storage_has_no_s3_plugin():
    env = container_environment(_settings(FilesystemStorage("/var/lib/orthanc/db")))
    document = json.loads(env.environment["ORTHANC_JSON"])
    assert CONTAINER_PLUGIN_SWITCHES["s3"] not in env.environment
    assert "AwsS3Storage" not in document
    assert document["StorageDirectory"] == "/var/lib/orthanc/db"


def test_index_is_shared_safely_between_tasks():
    document = json.loads(container_environment(_settings()).environment["ORTHANC_JSON"])
    pg = document["PostgreSQL"]
    assert pg["Lock"] is False and pg["EnableIndex"] is True and pg["EnableStorage"] is False
    assert pg["IndexConnectionsCount"] == 4 and pg["EnableSsl"] is True
    assert pg["TransactionMode"] == "ReadCommitted"  # concurrent writers on the image's plugin (>= 6.0)
    assert document["CheckRevisions"] is True and document["SaveJobs"] is False


# ------------------------------------------------------------------------------------ local rendering
def test_render_json_fills_secrets_for_the_local_server():
    settings = _settings(FilesystemStorage("/tmp/orthanc"))
    rendered = render_json(settings, {POSTGRES_PASSWORD: DB_PASSWORD, REGISTERED_USERS: ADMIN})
    assert rendered["PostgreSQL"]["Password"] == DB_PASSWORD
    assert rendered["RegisteredUsers"] == ADMIN
    assert any(p.endswith("libOrthancPostgreSQLIndex.so") for p in rendered["Plugins"])
    # Same settings, same non-secret configuration as the container's.
    container = json.loads(container_environment(settings).environment["ORTHANC_JSON"])
    stripped = {k: v for k, v in rendered.items() if k not in ("RegisteredUsers", "Plugins")}
    stripped["PostgreSQL"] = {k: v for k, v in rendered["PostgreSQL"].items() if k != "Password"}
    assert stripped == container


def test_render_json_refuses_s3_and_missing_secrets():
    with pytest.raises(OrthancConfigError, match="S3"):
        render_json(_settings(), {POSTGRES_PASSWORD: DB_PASSWORD, REGISTERED_USERS: ADMIN})
    with pytest.raises(OrthancConfigError, match=REGISTERED_USERS):
        render_json(_settings(FilesystemStorage("/tmp/o")), {POSTGRES_PASSWORD: DB_PASSWORD})


# ------------------------------------------------------------------------------------ passwords
@pytest.mark.parametrize("password", ["", "1234567890", "000"])
def test_all_digit_or_empty_password_is_refused(password):
    with pytest.raises(OrthancConfigError, match="password"):
        registered_users("admin", password)


def test_password_with_letters_is_accepted():
    assert registered_users("admin", "12ab34") == {"admin": "12ab34"}


# ------------------------------------------------------------------------------------ connection budget
@pytest.mark.parametrize("max_connections, tasks, expected", [
    (101, 2, MAX_INDEX_CONNECTIONS_PER_TASK),   # db.t4g.micro, dev: capped
    (30, 4, 2),                                 # (30 - 20) // 4
    (21, 1, 1),                                 # exactly one connection left
    (811, 12, MAX_INDEX_CONNECTIONS_PER_TASK),  # db.m7g.large, prod at deployment peak
])
def test_connection_budget(max_connections, tasks, expected):
    per_task = connection_budget(max_connections, tasks)
    assert per_task == expected
    assert per_task * tasks <= max_connections - DEFAULT_RESERVED_CONNECTIONS


@pytest.mark.parametrize("max_connections, tasks, words", [
    (20, 1, "no connection"),
    (40, 30, "no connection"),
    (100, 0, "at least 1"),
])
def test_connection_budget_errors(max_connections, tasks, words):
    with pytest.raises(OrthancConfigError, match=words):
        connection_budget(max_connections, tasks)


def test_connection_budget_honours_a_custom_reserve():
    assert connection_budget(50, 3, reserved=41) == 3
    with pytest.raises(OrthancConfigError):
        connection_budget(50, 3, reserved=50)


# ------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("overrides, words", [
    ({"http_port": 0}, "http_port"),
    ({"dicom_port": 8042}, "dicom_port"),
    ({"dicom_aet": "NOT A VALID AE TITLE!"}, "dicom_aet"),
    ({"extra": {"RegisteredUsers": {}}}, "extra"),
    ({"extra": {"PostgreSQL": {}}}, "extra"),
])
def test_unsafe_settings_are_refused(overrides, words):
    with pytest.raises(OrthancConfigError, match=words):
        container_environment(_settings(**overrides))


def test_index_lock_and_connection_range_are_refused():
    s3 = S3Storage(bucket="b", region="us-east-1")
    with pytest.raises(OrthancConfigError, match="lock"):
        build_config(OrthancSettings(index=PostgresIndex(host="h", lock=True), storage=s3))
    with pytest.raises(OrthancConfigError, match="transaction_mode: 'READ COMMITTED'"):
        build_config(OrthancSettings(index=PostgresIndex(host="h", transaction_mode="READ COMMITTED"), storage=s3))
    with pytest.raises(OrthancConfigError, match="index_connections"):
        build_config(OrthancSettings(index=PostgresIndex(host="h", index_connections=0), storage=s3))
    with pytest.raises(OrthancConfigError, match="storage_structure"):
        build_config(OrthancSettings(index=PostgresIndex(host="h"),
                                     storage=S3Storage(bucket="b", region="r", storage_structure="nested")))


# ------------------------------------------------------------------------------ ingest settings
def test_ingest_settings_generated_for_both_targets():
    """What bench/ingest.py measured (README, Benchmarks) is what the generator writes."""
    for storage in (FilesystemStorage("/tmp/orthanc"), S3Storage(bucket="b", region="eu-west-1")):
        document = json.loads(container_environment(_settings(storage)).environment["ORTHANC_JSON"])
        assert document["StorageCompression"] is False and document["SaveJobs"] is False
        assert document["OverwriteInstances"] is False
        # StoreMD5ForAttachments stays on: Orthanc 1.10 refuses CheckRevisions without it
        assert document["CheckRevisions"] is True and "StoreMD5ForAttachments" not in document
        assert document["PostgreSQL"]["MaximumConnectionRetries"] == 10
    local = render_json(_settings(FilesystemStorage("/tmp/orthanc")), {POSTGRES_PASSWORD: DB_PASSWORD, REGISTERED_USERS: ADMIN})
    assert local["SyncStorageArea"] is True  # fsync per file: turning it off did not measurably help
    assert render_json(_settings(FilesystemStorage("/tmp/o", sync=False)),
                       {POSTGRES_PASSWORD: DB_PASSWORD, REGISTERED_USERS: ADMIN})["SyncStorageArea"] is False
    s3 = json.loads(container_environment(_settings()).environment["ORTHANC_JSON"])
    assert "SyncStorageArea" not in s3  # only the filesystem storage has it
    # the local stack keeps one index connection (PostgreSQL plugin 4.0: more conflict and retry)
    assert PostgresIndex(host="127.0.0.1").index_connections == 1


def test_local_postgres_settings_ask_for_asynchronous_commit_only():
    assert LOCAL_POSTGRES_SETTINGS == {"synchronous_commit": "off"}
    assert postgres_server_options() == ["-c", "synchronous_commit=off"]
    assert postgres_server_options({"b_setting": "2", "a_setting": "on"}) == ["-c", "a_setting=on", "-c", "b_setting=2"]
    for bad in ({"synchronous_commit": "off; DROP"}, {"Bad Name": "1"}, {"x": ""}):
        with pytest.raises(OrthancConfigError, match="not a plain name=value"):
            postgres_server_options(bad)
    # nothing of it reaches the ECS task: RDS keeps PostgreSQL's durable default
    env = container_environment(_settings())
    assert "synchronous_commit" not in json.dumps(env.environment)
