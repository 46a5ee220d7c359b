"""Flask integration: Celery configured from ``app.config["CELERY"]``, tasks run in the app.

::

    app = Flask(__name__)
    app.config["CELERY"] = {"broker_url": "redis://127.0.0.1:6379/0", "task_ignore_result": False}
    celery = init_app(app)                 # also in app.extensions["celery"]

    @celery.task
    def add_user(name):                    # runs inside app.app_context()
        db.session.add(User(name=name))    # committed when the task returns, rolled back on error

Keys of ``CELERY`` that are offload settings (``broker_url``, ``result_backend``,
``task_modules``, ...) configure offload; every other key is a Celery setting and is applied to
the Celery app as is.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

try:
    import flask
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "offload.integrations.flask needs Flask: pip install 'offload[flask]'"
    ) from exc

from offload.integrations import settings_from, split_config
from offload.settings import Settings

__all__ = ["FlaskTask", "bind", "init_app", "settings_for", "task_base"]


def _split_config(flask_app: flask.Flask) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(offload setting overrides, other Celery settings)`` from ``config["CELERY"]``."""
    return split_config(dict(flask_app.config.get("CELERY") or {}))


def settings_for(flask_app: flask.Flask, **overrides: Any) -> Settings:
    """Settings from the environment, then ``config["CELERY"]``, then ``overrides``. Only your
    own task modules are loaded unless ``task_packages`` is set there."""
    return settings_from(_split_config(flask_app)[0], overrides)


class FlaskTask(Task):
    """Runs the task inside the Flask app context (pushed when none is active) and manages the
    Flask-SQLAlchemy session: commit on normal return, rollback on failure, removed always."""

    abstract = True
    flask_app: flask.Flask | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Inside an active context (an eager call during a request) the session belongs to
        # whoever pushed that context: run the task as is and leave the session alone.
        if flask.has_app_context() or self.flask_app is None:
            return super().__call__(*args, **kwargs)
        with self.flask_app.app_context():
            db = self.flask_app.extensions.get("sqlalchemy")
            if db is None:
                return super().__call__(*args, **kwargs)
            try:
                result = super().__call__(*args, **kwargs)
                db.session.commit()
                return result
            except BaseException:
                db.session.rollback()
                raise
            finally:
                db.session.remove()


def task_base(flask_app: flask.Flask) -> type[FlaskTask]:
    """A :class:`FlaskTask` subclass bound to ``flask_app`` (the worker app's task class)."""
    return type("FlaskTask", (FlaskTask,), {"flask_app": flask_app, "abstract": True,
                                              "__module__": __name__})


def bind(celery_app: Celery, flask_app: flask.Flask) -> None:
    """Apply the Celery keys of ``config["CELERY"]``, store the app in
    ``flask_app.extensions["celery"]`` and make it the default app (for ``shared_task``)."""
    _, celery_conf = _split_config(flask_app)
    if celery_conf:
        celery_app.conf.update(celery_conf)
    if not issubclass(celery_app.Task, FlaskTask):
        celery_app.Task = task_base(flask_app)  # tasks defined from now on run in the app
    flask_app.extensions["celery"] = celery_app
    from offload.factory import make_default

    make_default(celery_app)


def init_app(flask_app: flask.Flask, settings: Settings | None = None, **overrides: Any) -> Celery:
    """Build the worker app for ``flask_app`` (the Flask ``init_app`` pattern)."""
    from offload.factory import create_worker_app

    return create_worker_app(
        web_app=flask_app, settings=settings or settings_for(flask_app, **overrides)
    )
