"""/openapi.json is valid OpenAPI 3.1, covers every route, and the live service keeps to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from openapi_spec_validator import validate
from starlette.routing import Route

from service._app import build_routes
from service._openapi import openapi_document

from .conftest import Service

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
)


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_is_described() -> None:
    paths = openapi_document()["paths"]
    for route in build_routes():
        if not isinstance(route, Route):
            continue  # the static files
        assert route.path in paths, route.path
        described = {m.upper() for m in paths[route.path] if m != "parameters"}
        assert (route.methods or set()) - {"HEAD", "OPTIONS"} <= described, route.path


def test_the_service_serves_it(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == openapi_document()


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
