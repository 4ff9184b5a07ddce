"""/openapi.json is made from the guest's description of itself: it is valid OpenAPI 3.1, covers
every route the service answers, follows a guest with other rules without a host change, and
the live service keeps to it. A guest whose description is not valid is refused."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from service import GuestLoadError
from service._description import HOST_PATHS, MAX_DESCRIPTION_BYTES, read_description
from service._guest import DEFAULT_MODULE
from service._openapi import openapi_document
from service._routes import build_routes

from .conftest import ENGINES, ROOT, Db, Service, least_privilege
from .wat_guests import DESCRIPTION_AT, RESPOND, build, load, wat_guest

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        # valid requests the document describes are accepted: the rules and the schemas agree
        "positive_data_acceptance",
    ]
)
SNAPSHOT = ROOT / "guest" / "abi" / "describe.json"


def document() -> dict[str, Any]:
    """The document for the orders guest (tests/test_describe.py: the built guest says the snapshot)."""
    return openapi_document(read_description(json.dumps(json.loads(SNAPSHOT.read_text())).encode(), "orders"))


def test_the_document_is_valid_openapi_3_1() -> None:
    assert document()["openapi"] == "3.1.0"
    validate(document())


def test_every_route_is_described() -> None:
    paths = document()["paths"]
    for route in json.loads(SNAPSHOT.read_text())["routes"]:
        assert {m.lower() for m in route["methods"]} == set(paths[route["path"]]), route["path"]
    for host in build_routes():
        if isinstance(host, Route):  # the guest's routes are one route of their own; static files
            assert host.path in paths, host.path
            assert {m.lower() for m in (host.methods or set())} - {"head", "options"} <= set(paths[host.path])


def test_the_host_keeps_from_guests_exactly_the_paths_it_serves() -> None:
    host = {route.path for route in build_routes() if isinstance(route, Route)}
    assert host == set(HOST_PATHS)


def test_the_service_serves_it(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(document()))


def test_host_errors_and_guest_errors_are_both_described() -> None:
    create = document()["paths"]["/api/orders"]["post"]["responses"]
    assert create["413"]["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/HostProblem"}
    assert "invalid_order" in create["422"]["description"]
    assert create["503"]["headers"]["Retry-After"]
    legacy = document()["paths"]["/orders"]["get"]["responses"]
    assert "413" not in legacy and "408" not in legacy  # no body, so no body errors
    assert set(legacy["503"]["content"]) == {"application/json"}


# --- a guest with other rules ---------------------------------------------------------------------

WIDGETS = {
    "abi_version": 4,
    "routes": [{"path": "/api/widgets/{widget_id}", "api": "rest", "methods": {"GET": "widget", "DELETE": "scrap"}}],
    "operations": {
        "widget": {
            "api": "rest",
            "changes": False,
            "summary": "One widget",
            "parameters": [{"in": "path", "name": "widget_id", "required": True, "schema": {"type": "integer", "maximum": 9}}],
            "responses": {
                "200": {
                    "description": "The widget",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Widget"}}},
                }
            },
        },
        "scrap": {"api": "rest", "changes": True, "summary": "Scrap it", "responses": {"204": {"description": "Gone"}}},
    },
    "schemas": {"Widget": {"type": "object", "properties": {"status": {"const": True}}}},
}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_with_other_rules_is_routed_and_described_by_its_own_description(
    engine: str, guest_db: Db, tmp_path: Path
) -> None:
    """No host change: the service routes the guest's own paths, answers 404 for the orders
    routes it does not have, gives its CORS methods, and describes it in /openapi.json."""
    module = tmp_path / "widgets.wasm"
    module.write_bytes(build(wat_guest(RESPOND, description=json.dumps(WIDGETS)), tmp_path))
    service = Service({"GUEST_MODULE": str(module), "WASM_ENGINE": engine, **least_privilege(guest_db)}, tmp_path / "svc.log")
    try:
        answer = service.client.get("/api/widgets/7")
        assert (answer.status_code, answer.json()) == (200, {"status": True})
        assert answer.headers["access-control-allow-methods"] == "GET, DELETE, OPTIONS"
        assert service.client.head("/api/widgets/7").status_code == 200
        assert service.client.post("/api/widgets/7").headers["allow"] == "GET, DELETE, HEAD, OPTIONS"
        assert service.client.get("/api/orders/7").status_code == 404
        assert service.client.get("/orders").status_code == 404
        described = service.client.get("/openapi.json").json()
        validate(described)
        assert [p for p in described["paths"] if p.startswith("/api")] == ["/api/widgets/{widget_id}"]
        assert described["paths"]["/api/widgets/{widget_id}"]["get"]["parameters"][0]["schema"]["maximum"] == 9
        assert "Widget" in described["components"]["schemas"] and "Order" not in described["components"]["schemas"]
    finally:
        service.stop()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_with_other_rules_loaded_by_sighup_is_routed_and_described_by_its_own_description(
    engine: str, guest_db: Db, tmp_path: Path
) -> None:
    """The running service, sent SIGHUP, serves and describes the new guest's routes, answers
    their CORS preflight with the new methods, and answers 404 on the routes it had before."""
    module = tmp_path / "guest.wasm"
    shutil.copy(DEFAULT_MODULE, module)
    service = Service({"GUEST_MODULE": str(module), "WASM_ENGINE": engine, **least_privilege(guest_db)}, tmp_path / "svc.log")
    preflight = {"origin": "http://elsewhere", "access-control-request-method": "DELETE"}
    try:
        assert "/api/orders/{order_id}" in service.client.get("/openapi.json").json()["paths"]
        assert service.client.options("/api/widgets/7", headers=preflight).status_code == 404
        module.write_bytes(build(wat_guest(RESPOND, description=json.dumps(WIDGETS)), tmp_path))
        service.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "guest module reloaded" not in service.log():
            assert time.monotonic() < deadline, f"no reload in 30 s:\n{service.log()}"
            time.sleep(0.05)
        described = service.client.get("/openapi.json").json()
        validate(described)
        assert [p for p in described["paths"] if p.startswith("/api")] == ["/api/widgets/{widget_id}"]
        assert described["paths"]["/api/widgets/{widget_id}"]["get"]["parameters"][0]["schema"]["maximum"] == 9
        assert "Widget" in described["components"]["schemas"] and "Order" not in described["components"]["schemas"]
        answer = service.client.get("/api/widgets/7")
        assert (answer.status_code, answer.json()) == (200, {"status": True})
        assert answer.headers["access-control-allow-methods"] == "GET, DELETE, OPTIONS"
        asked = service.client.options("/api/widgets/7", headers=preflight)
        assert asked.status_code == 204
        assert asked.headers["access-control-allow-methods"] == "GET, DELETE, OPTIONS"
        assert service.client.post("/api/widgets/7").headers["allow"] == "GET, DELETE, HEAD, OPTIONS"
        for gone in ("/api/orders/7", "/api/orders", "/orders", "/create_order"):
            assert service.client.get(gone).status_code == 404, gone
    finally:
        service.stop()


# --- descriptions a guest must not give -----------------------------------------------------------

ROUTE = {"path": "/things", "api": "legacy", "methods": {"GET": "things"}}
THINGS = {"things": {"api": "legacy", "changes": False}}
BAD = {
    "not JSON": "{routes",
    "not an object": "[]",
    "the host's own path": json.dumps({"routes": [{**ROUTE, "path": "/healthz"}], "operations": THINGS}),
    "under the host's static files": json.dumps({"routes": [{**ROUTE, "path": "/static/x"}], "operations": THINGS}),
    "a path twice": json.dumps({"routes": [ROUTE, ROUTE], "operations": THINGS}),
    "an unknown operation": json.dumps({"routes": [{**ROUTE, "methods": {"GET": "nothing"}}], "operations": THINGS}),
    "a method the host does not route": json.dumps({"routes": [{**ROUTE, "methods": {"TRACE": "things"}}], "operations": THINGS}),
    "a path that is not plain": json.dumps({"routes": [{**ROUTE, "path": "/a/../b?x"}], "operations": THINGS}),
    "a regex in a path": json.dumps({"routes": [{**ROUTE, "path": "/a/{x:path}"}], "operations": THINGS}),
    "an operation of the other API": json.dumps({"routes": [{**ROUTE, "api": "rest"}], "operations": THINGS}),
    "an operation without changes": json.dumps({"routes": [ROUTE], "operations": {"things": {"api": "legacy"}}}),
    "too many routes": json.dumps({"routes": [{**ROUTE, "path": f"/t{i}"} for i in range(65)], "operations": THINGS}),
    "too deep": json.dumps({"routes": [], "operations": {}, "schemas": {"x": json.loads("[" * 40 + "]" * 40)}}),
    "too big": "{}",  # said to be one byte over the limit, below
    "outside its memory": "{}",  # said to be at the end of its memory, below
    "invalid UTF-8": '{"routes": [], "note": "~"}',  # the ~ becomes a byte 0xff below
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("why", sorted(BAD))
def test_a_guest_that_describes_itself_wrongly_is_refused_in_one_line(engine: str, why: str, tmp_path: Path) -> None:
    description = BAD[why]
    wat = wat_guest(RESPOND, description=description)
    if why == "invalid UTF-8":
        wat = wat.replace("\\7e", "\\ff")
    said = {"too big": (DESCRIPTION_AT, MAX_DESCRIPTION_BYTES + 1), "outside its memory": (4 * 65536 - 1, 2)}.get(why)
    if said is not None:
        wat = wat.replace(f"(i64.const {(DESCRIPTION_AT << 32) | 2})", f"(i64.const {(said[0] << 32) | said[1]})")
    with pytest.raises(GuestLoadError, match="describ") as refused:
        load(engine, build(wat, tmp_path))
    assert "\n" not in str(refused.value)


def test_schemathesis_finds_nothing(service: Service, tmp_path: Path) -> None:
    """Property-based requests from the document against the live service and MariaDB."""
    cli = Path(sys.executable).with_name("schemathesis")
    done = subprocess.run(
        [
            str(cli),
            "run",
            f"{service.base}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--seed",
            "20261123",
            "--no-color",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout
