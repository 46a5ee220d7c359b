"""The rules of `make test` / CI: under CI=true a missing service fails, so does an empty run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTER_MAKE_AND_CI = {"CI", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}

PROBE = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("suite_conftest", {str(ROOT / "tests" / "conftest.py")!r})
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)

def test_needs_a_service_nobody_runs():
    suite.require_service("Nothing", "127.0.0.1", 1)
"""


def _pytest(path: Path, ci: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "PYTEST_ADDOPTS"}}
    env.update(CI=ci, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")  # a bare pytest starts fast
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(path.parent), str(path)],
        check=False, capture_output=True, text=True, timeout=60, env=env, cwd=path.parent,
    )


def test_a_missing_service_skips_locally_and_fails_under_ci(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    local, ci = _pytest(probe, ""), _pytest(probe, "true")
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    assert ci.returncode == 1, ci.stdout
    assert "CI=true: Nothing is not reachable on 127.0.0.1:1" in ci.stdout


def test_make_test_fails_when_pytest_collects_nothing():
    # (-o: neither reinstall the venv nor start services; only the pytest step runs)
    out = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "-o", "services", "test",
         "PYTEST_ARGS=-q -p no:cacheprovider tests/foundation/test_ci_rules.py -k no_such_test"],
        check=False, capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in OUTER_MAKE_AND_CI},
             "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert out.returncode != 0
    assert "pytest collected no test: that is a failure" in out.stderr
