"""The package itself: public surface, and no side effects at import."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import offload


def test_all_matches_what_is_exported():
    # Every public name of the package is in __all__, and everything in __all__ exists.
    # The names are loaded lazily (module __getattr__): dir() lists them, getattr loads them.
    exported = {
        name for name in dir(offload)
        if not name.startswith("_") and not isinstance(getattr(offload, name), types.ModuleType)
    }
    assert set(offload.__all__) == exported
    assert len(offload.__all__) == len(set(offload.__all__))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = offload.nothing_here


def test_importing_offload_is_cheap():
    # `import offload` (and offload.errors) must not pull in Celery, SQLAlchemy or pydantic;
    # the public names load on first use.
    script = (
        "import sys, offload, offload.errors\n"
        "heavy = [m for m in ('celery', 'kombu', 'sqlalchemy', 'pydantic', 'offload.tasks',\n"
        "         'offload.factory', 'offload.settings') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert offload.simple_task.__module__ == 'offload.tasks.decorators'\n"
        "assert 'celery' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_importing_offload_opens_no_connection_and_reads_no_environment():
    # Given a fresh interpreter that records environment reads and refuses connections
    script = r"""
import json, os, socket, sys
reads = []
original_getitem = os._Environ.__getitem__
def getitem(self, key):
    # a lookup by name (os.environ[...], .get, getenv); copying the whole environment
    # (wsgiref does at import) iterates and is not a read of offload's settings
    if sys._getframe(1).f_code.co_name != "__iter__":
        reads.append(key)
    return original_getitem(self, key)
os._Environ.__getitem__ = getitem
connects = []
def refuse(self, *args, **kwargs):
    connects.append(repr(args))
    raise OSError("no connections at import")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
before = set(sys.modules)
import offload, offload.factory, offload.settings, offload.integrations, offload.status
import offload.cli, offload.server
print(json.dumps({"reads": [k for k in reads if k.startswith("OFFLOAD")],
                  "connects": connects,
                  "apps": [m for m in sys.modules if m.startswith("offload.apps")]}))
"""
    env = {"PATH": "/usr/bin:/bin", "OFFLOAD_BROKER_URL": "redis://127.0.0.1:6379/0"}
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # Then nothing read OFFLOAD_* and nothing connected anywhere
    assert report == {"reads": [], "connects": [], "apps": []}


