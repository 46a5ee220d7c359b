"""The deployment files speak the real CLI and the real settings (they are not run here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml

from offload.cli import build_cli
from offload.settings import Settings, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _cli_options() -> dict[str, set[str]]:
    """Every ``offload`` sub-command with the option names it accepts."""
    group = typer.main.get_command(build_cli())
    return {name: {opt for param in command.params for opt in param.opts}
            for name, command in group.commands.items()}


def _offload_commands() -> list[tuple[str, list[str]]]:
    found = []
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        command = service.get("command")
        if isinstance(command, list) and command[0] == "offload":
            found.append((f"compose:{name}", command[1:]))
    for document in yaml.safe_load_all((DEPLOY / "k8s" / "worker-deployment.yaml").read_text()):
        if document["kind"] != "Deployment":
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            argv = container["command"] + container.get("args", [])
            found.append((f"k8s:{container['name']}", argv[1:]))
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    found.append(("Dockerfile", yaml.safe_load(cmd[4:])[1:]))
    return found


@pytest.mark.parametrize(("where", "argv"), _offload_commands(), ids=lambda v: str(v)[:30])
def test_each_offload_command_exists_with_its_options(where, argv):
    options = _cli_options()
    assert argv[0] in options, f"{where}: no `offload {argv[0]}`"
    for token in argv[1:]:
        if token.startswith("-"):
            assert token.split("=", 1)[0] in options[argv[0]], f"{where}: {shlex.join(argv)}"


def _environments() -> list[tuple[str, dict[str, str]]]:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    envs = [("compose", compose["x-offload"]["environment"])]
    for document in yaml.safe_load_all((DEPLOY / "k8s" / "worker-deployment.yaml").read_text()):
        if document["kind"] == "ConfigMap":
            envs.append(("k8s", document["data"]))
    return envs


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` as its default; ``${VAR:?error}`` (must be set) as the
    value an operator would give (API keys are the only one)."""
    return re.sub(r"\$\{(\w+):([-?])([^}]*)\}",
                  lambda m: m[3] if m[2] == "-" else '{"s3cret": "acme"}', value)


@pytest.mark.parametrize(("where", "env"), _environments(), ids=lambda v: str(v)[:10])
def test_each_deployment_setting_exists_and_is_valid(where, env, monkeypatch, tmp_path):
    fields = {f"OFFLOAD_{name.upper()}" for name in Settings.model_fields}
    offload_env = {k: str(v) for k, v in env.items() if k.startswith("OFFLOAD_")}
    assert set(offload_env) <= fields, f"{where}: unknown {set(offload_env) - fields}"
    for key, value in offload_env.items():
        monkeypatch.setenv(key, _interpolate(value))
    monkeypatch.chdir(tmp_path)  # no stray .env file
    settings = load_settings()
    assert settings.broker_url and settings.result_backend and not settings.results_embedded
