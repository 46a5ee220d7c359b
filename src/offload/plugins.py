"""The task-package plug-in convention, read by the server and the CLI.

For each package in ``settings.task_packages`` (when the module exists):

==================  =================================================================
``<pkg>.tasks``     Celery tasks (imported by the factory)
``<pkg>.api``       ``router: fastapi.APIRouter``, mounted on the HTTP service
``<pkg>.schema``    ``async def upgrade(engine)``, run at service start and by ``offload migrate``
``<pkg>.cli``       ``def register(app: typer.Typer) -> None``, adds ``offload`` sub-commands;
                    optionally ``async def on_dev_start(dev: DevContext)``, run once by
                    ``offload dev`` when the service is up (see :class:`offload.cli.DevContext`)
==================  =================================================================

A module that does not exist is skipped; one that exists but fails to import is an error.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from offload.errors import ConfigurationError

__all__ = ["plugin_hooks", "plugin_module", "plugin_modules", "upgrade_schemas"]


def plugin_module(package: str, name: str) -> ModuleType | None:
    """``<package>.<name>`` imported, or None when the package has no such module."""
    try:
        spec = importlib.util.find_spec(f"{package}.{name}")
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        return None
    try:
        return importlib.import_module(f"{package}.{name}")
    except ImportError as exc:
        raise ConfigurationError(
            f"{package}.{name} exists but failed to import: {exc}"
        ) from exc


def plugin_modules(packages: Iterable[str], name: str) -> Iterator[tuple[str, ModuleType]]:
    for package in packages:
        module = plugin_module(package, name)
        if module is not None:
            yield package, module


def plugin_hooks(packages: Iterable[str], module: str, attribute: str) -> list[tuple[str, Any]]:
    """Every ``<pkg>.<module>.<attribute>`` that exists, as ``(package, object)``."""
    return [
        (package, getattr(mod, attribute))
        for package, mod in plugin_modules(packages, module)
        if getattr(mod, attribute, None) is not None
    ]


async def upgrade_schemas(packages: Iterable[str], engine: Any) -> list[str]:
    """Run ``<pkg>.schema.upgrade(engine)`` of each package that has one, in order; return
    the packages migrated (``offload migrate`` and the service's start-up)."""
    done = []
    for package, upgrade in plugin_hooks(packages, "schema", "upgrade"):
        await upgrade(engine)
        done.append(package)
    return done
