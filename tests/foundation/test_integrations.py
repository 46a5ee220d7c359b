"""Flask, FastAPI and Django: each runs a real task through a real worker in its context."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from offload.factory import create_worker_app, settings_of
from offload.integrations.fastapi import (
    current_tenant,
    get_celery_app,
    get_session,
    get_settings,
    offload_lifespan,
    task_belongs_to,
    tenant_of_key,
    tenant_task_id,
)

from .conftest import running_worker


# --- Flask ----------------------------------------------------------------------------------
@pytest.fixture
def flask_setup(tmp_path, redis_url):
    """A Flask app with Flask-SQLAlchemy whose sessions record commit/rollback/close."""
    import flask
    from flask_sqlalchemy import SQLAlchemy
    from flask_sqlalchemy.session import Session

    from offload.integrations.flask import init_app

    calls: list[tuple[str, bool]] = []  # (what, was a Flask app context active)

    class RecordingSession(Session):
        def commit(self):
            calls.append(("commit", flask.has_app_context()))
            super().commit()

        def rollback(self):
            calls.append(("rollback", flask.has_app_context()))
            super().rollback()

        def close(self):
            calls.append(("close", flask.has_app_context()))
            super().close()

    flask_app = flask.Flask("fdn_flask")
    flask_app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'flask.db'}"
    flask_app.config["CELERY"] = {
        "broker_url": redis_url,
        "result_backend": redis_url,
        "data_dir": str(tmp_path / "data"),
        "worker_max_tasks_per_child": 7,  # a plain Celery setting passes through
    }
    flask_app.config["FDN_MARKER"] = "flask-context"
    db = SQLAlchemy(flask_app, session_options={"class_": RecordingSession})

    class Note(db.Model):
        id = db.Column(db.Integer, primary_key=True)
        text = db.Column(db.String(50), nullable=False, unique=True)

    with flask_app.app_context():
        db.create_all()
    celery = init_app(flask_app)

    @celery.task(name="fdn_flask.add_note", shared=False)
    def add_note(text):
        db.session.add(Note(text=text))  # committed by the task base
        return flask.current_app.config["FDN_MARKER"]

    @celery.task(name="fdn_flask.add_note_then_fail", shared=False)
    def add_note_then_fail(text):
        db.session.add(Note(text=text))
        db.session.flush()
        raise RuntimeError("boom")

    def notes() -> list[str]:
        with flask_app.app_context():
            texts = [n.text for n in db.session.scalars(db.select(Note).order_by(Note.id))]
        calls.clear()
        return texts

    calls.clear()
    return SimpleNamespace(app=flask_app, db=db, celery=celery, calls=calls, notes=notes,
                           add_note=add_note, add_note_then_fail=add_note_then_fail)


def test_flask_configuration_and_extension(flask_setup, redis_url):
    from offload.integrations.flask import FlaskTask

    celery = flask_setup.celery
    # The Celery app is configured from config["CELERY"] and stored in the extensions
    assert flask_setup.app.extensions["celery"] is celery
    assert celery.conf.broker_url == redis_url
    assert celery.conf.worker_max_tasks_per_child == 7
    assert settings_of(celery).task_packages == []
    assert isinstance(flask_setup.add_note, FlaskTask)


def test_flask_task_runs_in_app_context_and_manages_the_session(flask_setup):
    calls = flask_setup.calls
    with running_worker(flask_setup.celery):
        # When a task returns normally in a real worker (no app context of its own there)
        assert flask_setup.add_note.delay("kept").get(timeout=20) == "flask-context"
        # Then it ran in the app context, and its session was committed, then removed
        assert calls == [("commit", True), ("close", True)]
        calls.clear()
        # When a task raises after writing
        failed = flask_setup.add_note_then_fail.delay("dropped")
        with pytest.raises(RuntimeError, match="boom"):
            failed.get(timeout=20)
        # Then its session was rolled back (not committed), then removed
        assert calls == [("rollback", True), ("close", True)]
        calls.clear()
        # When the commit itself fails (a duplicate), the task fails and the session is
        # rolled back and removed too
        duplicate = flask_setup.add_note.delay("kept")
        assert duplicate.get(timeout=20, propagate=False) is not None
        assert duplicate.state == "FAILURE" and "UNIQUE" in duplicate.traceback
        assert calls == [("commit", True), ("rollback", True), ("close", True)]
    # and only the first note is in the database
    assert flask_setup.notes() == ["kept"]


def test_flask_task_called_inside_a_context_leaves_the_session_alone(flask_setup):
    # Given an active app context (a task called eagerly during a request)
    with flask_setup.app.app_context():
        # When the task runs in it
        assert flask_setup.add_note("inline") == "flask-context"
        # Then the task base neither commits nor removes the caller's session
        assert flask_setup.calls == []
        flask_setup.db.session.rollback()
    assert flask_setup.notes() == []


# --- FastAPI --------------------------------------------------------------------------------
def _fastapi_routes(web: FastAPI) -> None:
    @web.post("/add")
    def add(body: dict, tenant: str = Depends(current_tenant),
            celery=Depends(get_celery_app)) -> dict:
        result = celery.tasks["fdn.add"].apply_async(
            args=(body["a"], body["b"]), task_id=tenant_task_id(tenant))
        return {"task_id": result.id}

    @web.get("/result/{task_id}")
    def result(task_id: str, tenant: str = Depends(current_tenant),
               celery=Depends(get_celery_app), settings=Depends(get_settings)) -> dict:
        if not task_belongs_to(task_id, tenant):
            return {"mine": False}
        return {"mine": True, "value": celery.AsyncResult(task_id).get(timeout=20),
                "packages": settings.task_packages}

    @web.get("/db")
    async def db(session=Depends(get_session)) -> dict:
        from sqlalchemy import text

        return {"one": (await session.execute(text("SELECT 1"))).scalar_one()}


def test_fastapi_app_bound_by_the_factory_runs_a_task(redis_settings):
    # Given a FastAPI app bound to the worker app by the factory
    web = FastAPI()
    _fastapi_routes(web)
    settings = redis_settings(api_keys={"key-a": "acme", "key-b": "globex"})
    celery = create_worker_app(web_app=web, settings=settings)
    assert web.state.celery_app is celery
    with running_worker(celery), TestClient(web) as client:
        # When a tenant submits through a route that depends on get_celery_app
        task_id = client.post("/add", json={"a": 2, "b": 40},
                              headers={"Authorization": "Bearer key-a"}).json()["task_id"]
        # Then the task id carries the tenant and the real worker ran it
        assert task_belongs_to(task_id, "acme") and not task_belongs_to(task_id, "globex")
        mine = client.get(f"/result/{task_id}", headers={"Authorization": "Bearer key-a"})
        assert mine.json() == {"mine": True, "value": 42, "packages": ["fdn_demo"]}
        other = client.get(f"/result/{task_id}", headers={"Authorization": "Bearer key-b"})
        assert other.json() == {"mine": False}
        # and the lifespan opened a database engine for the routes
        assert client.get("/db").json() == {"one": 1}
        # and requests without a known key are refused
        assert client.post("/add", json={"a": 1, "b": 1}).status_code == 401
        bad = client.post("/add", json={"a": 1, "b": 1}, headers={"Authorization": "Bearer x"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    assert web.state.engine is None  # closed by the lifespan


def test_fastapi_lifespan_builds_and_closes_resources(redis_settings):
    settings = redis_settings(api_keys={"key-a": "acme"})
    web = FastAPI(lifespan=offload_lifespan(settings))
    _fastapi_routes(web)
    with TestClient(web) as client:
        celery = web.state.celery_app
        assert settings_of(celery) is settings
        with running_worker(celery):
            task_id = client.post("/add", json={"a": 1, "b": 2},
                                  headers={"Authorization": "Bearer key-a"}).json()["task_id"]
            assert client.get(f"/result/{task_id}",
                              headers={"Authorization": "Bearer key-a"}).json()["value"] == 3
    assert web.state.engine is None


def test_tenant_task_ids():
    first, second = tenant_task_id("acme"), tenant_task_id("acme")
    assert first != second
    assert task_belongs_to(first, "acme") and task_belongs_to(second, "acme")
    assert not task_belongs_to(first, "acme2")
    assert not task_belongs_to("d5592686-186c-47a2-82c3-4c6c108c7c5f", "acme")
    assert not task_belongs_to("", "acme")
    # only the exact shape tenant_task_id makes: no suffix, no other text after the hash
    assert not task_belongs_to(first + "0", "acme")
    assert not task_belongs_to(first[:17] + "../../etc/passwd", "acme")
    assert not task_belongs_to(first[:17] + first[17:].upper(), "acme")


def test_tenant_of_key_needs_the_whole_key():
    keys = {"k3y-acme": "acme", "k3y-globex": "globex"}
    assert tenant_of_key("k3y-acme", keys) == "acme"
    assert tenant_of_key("k3y-globex", keys) == "globex"
    for wrong in ("", "k3y", "k3y-acm", "k3y-acme ", "K3Y-ACME", "k3y-acme-and-more"):
        assert tenant_of_key(wrong, keys) is None, wrong


# --- Django ---------------------------------------------------------------------------------
def test_django_settings_and_installed_apps_tasks(tmp_path_factory, redis_url):
    from django.conf import settings as django_settings

    # Given a Django project whose CELERY_* settings configure offload and Celery
    if not django_settings.configured:
        django_settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "fdn_django"],
            DATABASES={"default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(tmp_path_factory.mktemp("django") / "db.sqlite3"),
            }},
            USE_TZ=True,
            FDN_MARKER="django-settings",
            CELERY_BROKER_URL=redis_url,
            CELERY_RESULT_BACKEND=redis_url,
            CELERY_DATA_DIR=str(tmp_path_factory.mktemp("django-data")),
            CELERY_WORKER_MAX_TASKS_PER_CHILD=9,
        )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from offload.integrations.django import create_celery_app

    # When the worker app is created from them
    celery = create_celery_app()
    # Then offload settings and plain Celery settings both came from Django
    assert celery.conf.broker_url == redis_url
    assert celery.conf.worker_max_tasks_per_child == 9
    assert settings_of(celery).task_packages == []
    # and the installed app's tasks.py was discovered
    assert "fdn_django.make_group" in celery.tasks
    # and a real worker runs it against the Django ORM
    with running_worker(celery):
        first = celery.tasks["fdn_django.make_group"].delay("one").get(timeout=20)
        second = celery.send_task("fdn_django.make_group", args=("two",)).get(timeout=20)
    assert first == {"groups": 1, "marker": "django-settings"}
    assert second["groups"] == 2


def test_unknown_web_framework_is_a_clear_error(make_settings):
    from offload import ConfigurationError

    with pytest.raises(ConfigurationError, match="Flask and FastAPI"):
        create_worker_app(web_app=object(), settings=make_settings(task_packages=[]))
