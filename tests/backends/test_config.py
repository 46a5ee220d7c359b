"""Configuration: URL forms, the old config keys, credentials rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import Celery

from offload.backends.config import SurrealConfig, is_embedded_url
from offload.backends.surrealdb import SurrealDBBackend
from offload.errors import ConfigurationError


class Conf(dict):
    """``app.conf`` for parsing tests (a mapping with ``get``)."""


def parse(url, **conf):
    return SurrealConfig.from_celery(url, Conf(conf))


@pytest.mark.parametrize(
    ("url", "scheme", "target"),
    [
        ("mem://", "mem", "mem://"),
        ("memory://", "mem", "mem://"),
        ("surrealkv:///var/lib/results", "surrealkv", "surrealkv:///var/lib/results"),
        ("ws://db.internal:8000/rpc", "ws", "ws://db.internal:8000/rpc"),
        ("ws://db.internal:8000", "ws", "ws://db.internal:8000/rpc"),
        ("wss://db.example.com/rpc", "wss", "wss://db.example.com/rpc"),
        ("surrealdb+wss://db.example.com/rpc", "wss", "wss://db.example.com/rpc"),
        ("surrealdb://db.internal:8000/rpc", "ws", "ws://db.internal:8000/rpc"),
    ],
)
def test_url_forms(url, scheme, target):
    config = parse(url)
    assert (config.scheme, config.target) == (scheme, target)


def test_celery_resolves_every_url_form_through_the_entry_point(tmp_path):
    for url in ("surrealdb+mem://", f"surrealdb+surrealkv://{tmp_path}/r",
                "surrealdb+ws://127.0.0.1:8000/rpc", "surrealdb+wss://db.example.com/rpc"):
        app = Celery("t", backend=url, set_as_current=False)
        assert isinstance(app.backend, SurrealDBBackend), url


def test_the_old_config_keys(tmp_path):
    app = Celery("t", backend="surrealdb", set_as_current=False)
    app.conf.update(surrealdb_url="ws://127.0.0.1:8000/rpc", surrealdb_namespace="ns1",
                    surrealdb_database="db1", surrealdb_username="u", surrealdb_password="p")
    config = app.backend.config
    assert (config.target, config.namespace, config.database) == (
        "ws://127.0.0.1:8000/rpc", "ns1", "db1")
    assert (config.username, config.password) == ("u", "p")


def test_defaults_match_the_older_package():
    config = parse(None)
    assert config.target == "ws://localhost:8000/rpc"
    assert (config.namespace, config.database) == ("celery", "results")


def test_url_parts_win_over_config_keys():
    config = parse("ws://alice:pw%40x@127.0.0.1:8000/rpc?ns=a&db=b",
                   surrealdb_namespace="x", surrealdb_database="y", surrealdb_username="bob",
                   surrealdb_password="other")
    assert (config.namespace, config.database, config.username, config.password) == (
        "a", "b", "alice", "pw@x")


def test_relative_embedded_paths_are_made_absolute():
    config = parse("surrealkv://data/results")
    assert config.path == Path.cwd() / "data" / "results"


def test_default_root_credentials_are_refused_off_loopback():
    with pytest.raises(ConfigurationError, match="root/root"):
        parse("ws://root:root@db.example.com:8000/rpc")
    with pytest.raises(ConfigurationError, match="root/root"):
        parse("wss://db.example.com/rpc", surrealdb_username="root", surrealdb_password="root")
    for loopback in ("127.0.0.1", "localhost", "[::1]", "127.0.0.2"):
        assert parse(f"ws://root:root@{loopback}:8000/rpc").username == "root"


def test_a_password_never_shows_in_the_description():
    config = parse("wss://celery:hunter2@db.example.com/rpc")
    assert "hunter2" not in config.redacted() and "hunter2" not in repr(config)
    app = Celery("t", backend="surrealdb+wss://celery:hunter2@db.example.com/rpc",
                 set_as_current=False)
    assert "hunter2" not in app.backend.as_uri()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://db:8000", "use ws://"),
        ("surrealdb+rocksdb:///var/lib/x", "no RocksDB"),
        ("redis://x", "unknown SurrealDB URL scheme"),
        ("surrealkv://", "needs a directory"),
        ("ws://:8000/rpc", "names no host"),
        ("ws://h/rpc?colour=red", "unknown SurrealDB URL option"),
        ("ws://u@h/rpc", "given together"),
    ],
)
def test_bad_urls_are_configuration_errors(url, message):
    with pytest.raises(ConfigurationError, match=message):
        parse(url)


def test_a_password_never_shows_in_a_url_error():
    for url in ("surrealdb+http://celery:hunter2@db:8000", "surrealdb+ftp://u:hunter2@h",
                "ws://u:hunter2@:8000/rpc"):
        with pytest.raises(ConfigurationError) as caught:
            parse(url)
        assert "hunter2" not in str(caught.value) and "u:***@" in str(caught.value).replace(
            "celery:***@", "u:***@")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("surrealdb+http://db:8000", "use ws://"),
        ("surrealdb+https://db", "use wss://"),
        ("surrealdb+rocksdb:///var/lib/x", "no RocksDB"),
        ("surrealdb+ws://root:root@db.example.com/rpc", "root/root"),
    ],
)
def test_offload_settings_refuse_what_the_backend_refuses_at_load(url, message):
    from offload.settings import load_settings

    with pytest.raises(ConfigurationError, match=message) as caught:
        load_settings(result_backend=url)
    assert "OFFLOAD_RESULT_BACKEND" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "embedded"),
    [("surrealdb+mem://", True), ("surrealdb+memory://", True), ("surrealdb+file:///tmp/r", True),
     ("surrealdb+surrealkv:///tmp/r", True), ("surrealdb+ws://127.0.0.1:8000/rpc", False),
     ("surrealdb://127.0.0.1:8000/rpc", False), ("redis://127.0.0.1:6379/1", False)],
)
def test_offload_settings_accept_every_backend_url_form(url, embedded):
    from offload.settings import load_settings

    settings = load_settings(result_backend=url)
    assert settings.results_embedded is embedded
    assert settings.pool == "threads"  # embedded results or the in-process broker


def test_is_embedded_url():
    assert is_embedded_url("surrealdb+mem://")
    assert is_embedded_url("surrealdb+surrealkv:///x")
    assert not is_embedded_url("surrealdb+ws://h/rpc")
    assert not is_embedded_url("redis://h")
    assert not is_embedded_url(None)


def test_importing_offload_backends_does_not_import_the_sdk():
    from .conftest import run_python

    done = run_python("import sys, offload.backends; print('surrealdb' in sys.modules)")
    assert done.stdout.strip() == "False", done.stderr
