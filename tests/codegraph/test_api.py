"""The HTTP API over a real service, worker and store: submit, follow, query; tenancy."""

from __future__ import annotations

from urllib.parse import quote

from celery.signals import before_task_publish

from .conftest import ACME, GLOBEX, wait_for_task
from .graphkit import FIXTURES


def test_parse_is_queued_and_followed_to_its_result(service):
    published = []

    def capture(sender=None, body=None, headers=None, **_):
        published.append((sender, body, headers))

    before_task_publish.connect(capture)
    try:
        response = service.post("/repositories/parse", headers=ACME,
                                json={"repo_path": str(FIXTURES / "go")})
    finally:
        before_task_publish.disconnect(capture)
    assert response.status_code == 202
    # the message carries ids and a path: the tenant (from the key), never the key itself
    ((sender, (_args, kwargs, _embed), _headers),) = published
    assert sender == "codegraph.parse_and_index_repository"
    assert kwargs == {"tenant_id": "acme", "repo_id": "go", "repo_path": str(FIXTURES / "go")}
    assert "key-acme" not in repr(published)
    body = response.json()
    assert body["status"] == "queued" and body["repo_id"] == "go"
    assert body["status_url"] == f"/tasks/{body['task_id']}"
    status = wait_for_task(service, body["task_id"], ACME)
    assert status["state"] == "SUCCESS", status
    result = status["result"]
    assert result["success"] is True and result["files_parsed"] == 3
    assert {"nodes_created", "edges_created", "files_skipped", "files_unchanged",
            "duration_s"} <= set(result)
    # the progress stream ends with the result
    events = service.get(f"/tasks/{body['task_id']}/events", headers=ACME).text
    assert "event: done" in events


def test_repositories_and_symbol_search(service):
    repos = service.get("/repositories", headers=ACME).json()
    assert "shop" in [r["repo_id"] for r in repos]
    repo = service.get("/repositories/shop", headers=ACME).json()
    assert repo["stats"]["files"] == 4 and repo["generation"] == 1
    page = service.get("/repositories/shop/symbols", params={"q": "to_dict"},
                       headers=ACME).json()
    assert [s["qualified_name"] for s in page["symbols"]] == [
        "shop.models.Base.to_dict", "shop.models.Order.to_dict"]
    assert page["symbols"][0] == {
        "qualified_name": "shop.models.Base.to_dict", "name": "to_dict", "kind": "method",
        "path": "shop/models.py", "start_line": 9, "end_line": 10, "language": "python"}
    classes = service.get("/repositories/shop/symbols",
                          params={"kind": "class", "limit": 1}, headers=ACME).json()
    assert [s["kind"] for s in classes["symbols"]] == ["class"]
    assert classes["next_offset"] == 1
    # LIKE wildcards are plain characters
    assert service.get("/repositories/shop/symbols", params={"q": "%"},
                       headers=ACME).json()["symbols"] == []


def test_callers_and_callees(service):
    callers = service.get("/repositories/shop/symbols/shop.models.Base.to_dict/callers",
                          headers=ACME).json()
    assert sorted(c["qualified_name"] for c in callers["callers"]) == [
        "shop.models.Base.save", "shop.models.Order.to_dict"]
    assert callers["symbol"]["kind"] == "method"
    # an external name has callers but no node
    external = service.get("/repositories/shop/symbols/json.dumps/callers", headers=ACME).json()
    assert external["symbol"] is None
    assert [c["qualified_name"] for c in external["callers"]] == ["shop.models.Base.save"]
    callees = service.get("/repositories/shop/symbols/shop.service.place/callees",
                          headers=ACME).json()["callees"]
    by_name = {c["qualified_name"]: c for c in callees}
    assert by_name["shop.models.Order"]["resolution"] == "resolved"
    assert by_name["shop.models.Order"]["path"] == "shop/models.py"
    assert by_name["order.save"]["resolution"] == "unresolved"
    assert by_name["shop.service.audit"]["lines"] == [10]


def test_outline_nests_definitions(service):
    outline = service.get("/repositories/shop/files/shop/service.py/outline",
                          headers=ACME).json()
    assert outline["language"] == "python" and outline["lines"] == 16
    tree = [(s["name"], [c["name"] for c in s["children"]]) for s in outline["symbols"]]
    assert tree == [("place", []), ("audit", ["fmt"])]


def test_encoded_names_and_not_found(service):
    missing = service.get("/repositories/shop/symbols/no.such/callees", headers=ACME)
    assert missing.status_code == 404
    assert missing.json()["detail"]["error"] == "symbol_not_found"
    odd = service.get(f"/repositories/shop/symbols/{quote('a#b?c', safe='')}/callers",
                      headers=ACME)
    assert odd.status_code == 404
    assert service.get("/repositories/nope/symbols", headers=ACME).status_code == 404
    assert service.get("/repositories/shop/files/nope.py/outline",
                       headers=ACME).status_code == 404


def test_tenants_see_only_their_own_repositories_and_tasks(service):
    assert service.get("/repositories", headers=GLOBEX).json() == []
    for path in ("/repositories/shop", "/repositories/shop/symbols",
                 "/repositories/shop/symbols/shop.service.place/callers",
                 "/repositories/shop/files/shop/models.py/outline"):
        assert service.get(path, headers=GLOBEX).status_code == 404, path
    task = service.post("/repositories/parse", headers=ACME,
                        json={"repo_path": str(FIXTURES / "java")}).json()["task_id"]
    assert service.get(f"/tasks/{task}", headers=GLOBEX).status_code == 404
    assert service.get(f"/tasks/{task}/events", headers=GLOBEX).status_code == 404
    wait_for_task(service, task, ACME)


def test_authentication_and_validation(service):
    assert service.get("/repositories").status_code == 401
    assert service.get("/repositories", headers={"Authorization": "Bearer nope"}
                       ).status_code == 401
    cases = [
        ({"repo_path": "relative/path"}, "absolute"),
        ({"repo_path": "/etc"}, "OFFLOAD_CODEGRAPH_ROOTS"),
        ({"repo_path": str(FIXTURES), "repo_id": "../x"}, "repo_id"),
        ({"repo_path": str(FIXTURES), "tenant_id": "globex"}, "tenant comes from the API key"),
        ({"repo_path": str(FIXTURES), "colour": "red"}, "colour"),
        ({}, "repo_path"),
    ]
    for body, words in cases:
        response = service.post("/repositories/parse", headers=ACME, json=body)
        assert response.status_code == 422, (body, response.text)
        assert words in response.text
    assert service.get("/repositories/shop/symbols", params={"kind": "banana"},
                       headers=ACME).status_code == 422
    assert service.get("/repositories/shop/symbols", params={"limit": 0},
                       headers=ACME).status_code == 422
