"""The credits HTTP API in a FastAPI app of our own (offload's lifespan and API-key auth)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from .conftest import ACME, GLOBEX


def _fund(client, user="42", amount=20, headers=ACME):
    assert client.put(f"/credits/{user}", json={"tier": "standard"}, headers=headers).status_code == 200
    response = client.post(f"/credits/{user}/additions", json={"amount": amount},
                           headers=headers | {"Idempotency-Key": f"fund-{user}"})
    assert response.status_code == 201, response.text


def test_every_route_needs_an_api_key(client):
    assert client.get("/credits/42").status_code == 401
    assert client.get("/credits/42", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/credits/holds/x/consume").status_code == 401


def test_hold_consume_release_and_history(client):
    _fund(client)
    assert client.get("/credits/42", headers=ACME).json() == {
        "user_id": "42", "tier": "standard", "balance": 20, "version": 2}
    hold = client.post("/credits/42/holds", json={"operation": "/search", "units": 2},
                       headers=ACME)
    assert hold.status_code == 201, hold.text
    body = hold.json()
    assert (body["amount"], body["status"], body["replayed"]) == (8, "active", False)
    assert client.get("/credits/42", headers=ACME).json()["balance"] == 12
    consumed = client.post(f"/credits/holds/{body['id']}/consume", headers=ACME)
    assert consumed.status_code == 200 and consumed.json()["status"] == "committed"
    again = client.post(f"/credits/holds/{body['id']}/consume", headers=ACME)
    assert again.status_code == 409
    assert again.json()["detail"]["error"] == "HoldAlreadyConsumed"
    second = client.post("/credits/42/holds", json={"operation": "/search"}, headers=ACME).json()
    released = client.post(f"/credits/holds/{second['id']}/release", headers=ACME)
    assert released.json()["status"] == "released"
    assert client.get("/credits/42", headers=ACME).json()["balance"] == 12
    page = client.get("/credits/42/transactions", params={"limit": 3}, headers=ACME).json()
    assert [t["type"] for t in page["items"]] == ["release", "hold", "deduction"]
    rest = client.get("/credits/42/transactions", params={"before": page["next_before"]},
                      headers=ACME).json()
    assert [t["type"] for t in rest["items"]] == ["hold", "addition"]
    assert rest["next_before"] is None


def test_domain_errors_are_4xx(client):
    assert client.get("/credits/nobody", headers=ACME).status_code == 404
    _fund(client, amount=3)
    short = client.post("/credits/42/holds", json={"operation": "/search"}, headers=ACME)
    assert short.status_code == 402
    assert short.json()["detail"] == {"error": "InsufficientCredits", "user_id": "42",
                                      "balance": 3, "required": 4,
                                      "message": "user '42' has 3 credits, needs 4"}
    unknown = client.post("/credits/42/holds", json={"operation": "/nope"}, headers=ACME)
    assert unknown.status_code == 404
    assert client.post("/credits/holds/missing/consume", headers=ACME).status_code == 404
    bad = client.post("/credits/42/holds", json={"operation": "/search", "units": 0},
                      headers=ACME)
    assert bad.status_code == 422
    float_amount = client.post("/credits/42/additions", json={"amount": 1.5},
                               headers=ACME | {"Idempotency-Key": "f"})
    assert float_amount.status_code == 422
    no_key = client.post("/credits/42/additions", json={"amount": 1}, headers=ACME)
    assert no_key.status_code == 422


@pytest.mark.parametrize("amount", [2.0, "2", True, 0, -1, 10**13])
def test_amounts_are_strict_whole_numbers(client, amount):
    _fund(client)
    added = client.post("/credits/42/additions", json={"amount": amount},
                        headers=ACME | {"Idempotency-Key": "a"})
    held = client.post("/credits/42/holds", json={"operation": "/search", "units": amount},
                       headers=ACME)
    assert (added.status_code, held.status_code) == (422, 422)
    assert client.get("/credits/42", headers=ACME).json()["balance"] == 20


def test_text_the_database_cannot_store_is_refused_not_a_500(client):
    # PostgreSQL text cannot hold NUL; ids beyond BIGINT overflow: both are 422, never 500
    _fund(client)
    assert client.get("/credits/a%00b", headers=ACME).status_code == 422
    assert client.post("/credits/holds/a%00b/consume", headers=ACME).status_code == 422
    for body in ({"operation": "/sea\u0000rch"}, {"operation": "/search", "description": "\u0000"}):
        assert client.post("/credits/42/holds", json=body, headers=ACME).status_code == 422
    notes = client.post("/credits/42/additions", json={"amount": 1, "notes": "x\u0000"},
                        headers=ACME | {"Idempotency-Key": "n"})
    assert notes.status_code == 422
    page = client.get("/credits/42/transactions", params={"before": 2**63}, headers=ACME)
    assert page.status_code == 422


def test_idempotency_key_replays_the_first_answer(client):
    _fund(client)
    headers = ACME | {"Idempotency-Key": "req-7"}
    first = client.post("/credits/42/holds", json={"operation": "/search"}, headers=headers)
    second = client.post("/credits/42/holds", json={"operation": "/search"}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"] and second.json()["replayed"]
    assert client.get("/credits/42", headers=ACME).json()["balance"] == 16
    conflict = client.post("/credits/42/holds", json={"operation": "/search", "units": 3},
                           headers=headers)
    assert conflict.status_code == 409


def test_tenants_never_see_each_others_accounts(client):
    _fund(client, user="42", amount=20, headers=ACME)
    # globex has no user 42 until it opens one, and then it is a different account
    assert client.get("/credits/42", headers=GLOBEX).status_code == 404
    _fund(client, user="42", amount=5, headers=GLOBEX)
    assert client.get("/credits/42", headers=GLOBEX).json()["balance"] == 5
    assert client.get("/credits/42", headers=ACME).json()["balance"] == 20
    hold = client.post("/credits/42/holds", json={"operation": "/search"}, headers=ACME).json()
    for action in ("consume", "release"):
        answer = client.post(f"/credits/holds/{hold['id']}/{action}", headers=GLOBEX)
        assert answer.status_code == 404
    history = client.get("/credits/42/transactions", headers=GLOBEX).json()["items"]
    assert [t["amount"] for t in history] == [5]
    assert client.get("/credits/42", headers=ACME).json()["balance"] == 16


def test_the_offload_service_mounts_the_router_and_migrates(make_settings, data_dir):
    # The real service: plug-in loader mounts offload.apps.credits.api.router and runs
    # offload.apps.credits.schema.upgrade at start-up on a fresh database
    from offload import create_worker_app
    from offload.server.app import create_api

    settings = make_settings(
        database_url=f"sqlite+aiosqlite:///{data_dir}/service.db",
        task_packages=["offload.apps.credits"], api_keys={"acme-key": "acme"},
        broker_url="memory://", result_backend="cache+memory://",
    )
    api = create_api(settings, create_worker_app(settings=settings))
    with TestClient(api) as client:
        assert client.get("/credits/7", headers=ACME).status_code == 404
        assert client.put("/credits/7", json={"tier": "premium"}, headers=ACME).json()[
            "tier"] == "premium"
        assert client.get("/credits/7", headers=ACME).json()["balance"] == 0
        assert client.get("/credits/7").status_code == 401
        paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/credits/{user_id}", "/credits/{user_id}/holds", "/credits/holds/{hold_id}/consume",
            "/credits/holds/{hold_id}/release", "/credits/{user_id}/transactions"} <= paths


def test_cli_commands(data_dir, monkeypatch):
    from typer.testing import CliRunner

    from offload.cli import build_cli

    monkeypatch.setenv("OFFLOAD_DATA_DIR", str(data_dir))
    monkeypatch.setenv("OFFLOAD_TASK_PACKAGES", '["offload.apps.credits"]')
    cli, runner = build_cli(), CliRunner()

    def run(*args):
        result = runner.invoke(cli, ["credits", *args])
        return result.exit_code, result.output

    assert run("set-rate", "/search", "4")[0] == 0
    assert run("open-account", "acme", "42", "--tier", "premium")[0] == 0
    assert run("add", "acme", "42", "10", "--key", "inv-1")[0] == 0
    assert run("add", "acme", "42", "10", "--key", "inv-1")[0] == 0  # replayed
    code, out = run("balance", "acme", "42")
    assert code == 0 and '"balance": 10' in out
    code, _ = run("balance", "acme", "nobody")
    assert code == 1
