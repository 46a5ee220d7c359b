"""Django integration: Celery configured from ``CELERY_``-prefixed Django settings.

In your project's ``celery.py``::

    import os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from offload.integrations.django import create_celery_app
    app = create_celery_app()

``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``, ``CELERY_TASK_MODULES`` ... that name an offload
setting configure offload; every other ``CELERY_`` setting (``CELERY_TASK_ALWAYS_EAGER``,
``CELERY_WORKER_PREFETCH_MULTIPLIER`` ...) is applied to the Celery app as is. The ``tasks.py``
module of every app in ``INSTALLED_APPS`` is imported. Celery's Django fix-up is installed, so
database connections are closed around each task the way Django expects.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

try:
    import django
    from django.conf import settings as django_settings
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "offload.integrations.django needs Django: pip install 'offload[django]'"
    ) from exc

from offload.integrations import settings_from, split_config
from offload.settings import Settings

__all__ = ["create_celery_app", "settings_for"]

PREFIX = "CELERY_"


def _split_settings() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(offload setting overrides, other Celery settings)`` from ``CELERY_*`` settings."""
    return split_config({
        name.removeprefix(PREFIX): getattr(django_settings, name)
        for name in dir(django_settings)
        if name.startswith(PREFIX) and name.isupper()
    })


def settings_for(**overrides: Any) -> Settings:
    """Offload settings from the environment, then ``CELERY_*`` Django settings, then
    ``overrides``. Only your project's task modules are loaded unless ``CELERY_TASK_PACKAGES``
    says otherwise."""
    return settings_from(_split_settings()[0], overrides)


def _installed_packages() -> list[str]:
    from django.apps import apps

    if not apps.ready:
        django.setup()
    return [config.name for config in apps.get_app_configs()]


def create_celery_app(
    name: str = "offload_worker", settings: Settings | None = None, **overrides: Any
) -> Celery:
    """The worker app of a Django project: offload's configuration, the project's
    ``CELERY_*`` settings, and ``tasks.py`` of each installed app imported."""
    from celery.fixups.django import DjangoFixup

    from offload.factory import create_worker_app

    settings = settings or settings_for(**overrides)
    packages = _installed_packages()  # django.setup() before any task module is imported
    app = create_worker_app(
        name=name, settings=settings, task_cls="celery.contrib.django.task:DjangoTask"
    )
    _, celery_conf = _split_settings()
    if celery_conf:
        app.conf.update(celery_conf)
    if not any(isinstance(fixup, DjangoFixup) for fixup in app._fixups):
        app._fixups.append(DjangoFixup(app).install())
    app.autodiscover_tasks(packages, related_name="tasks", force=True)
    return app
