"""The app in this process (Starlette's TestClient, no server, no sockets) with the real built
guest on every installed engine and the suite's MariaDB: routing, the host's own answers, CORS,
request ids, the access line, body reading, and what is left open at shutdown. Seconds, where the
end-to-end suite takes minutes."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.requests import ClientDisconnect
from starlette.testclient import TestClient
from starlette.types import Message

from service import DatabaseURL, Settings, create_app
from service._cors import CORS_HEADERS, REST_CORS_HEADERS
from service._http import PayloadTooLarge, read_body

from .conftest import NEW_ORDER, ROOT, Db, EmbeddedMariaDB, least_privilege, make_database

INDEX = "The valid endpoints are /init /create_order /create_orders /update_order /orders /delete_order"
LEGACY_CORS = {k.decode(): v.decode() for k, v in CORS_HEADERS}
REST_CORS = {k.decode(): v.decode() for k, v in REST_CORS_HEADERS}
# On its REST routes, the methods the guest's description gives each route.
DESCRIBED = {r["path"]: r["methods"] for r in json.loads((ROOT / "guest" / "abi" / "describe.json").read_text())["routes"]}


# The host's own pages (and the page's files) take GET and HEAD, and OPTIONS as a preflight.
HOST_CORS = {**REST_CORS, "access-control-allow-methods": "GET, HEAD, OPTIONS"}
HOST_PAGES = ["/openapi.json", "/healthz", "/readyz", "/metrics", "/static/app.js", "/static/index.html"]


def rest_cors(route: str) -> dict[str, str]:
    return {**REST_CORS, "access-control-allow-methods": ", ".join([*DESCRIBED[route], "OPTIONS"])}
MAX_BODY = 16 * 1024
MAX_UNSENT = 70_000  # less than GET /orders answers once the table holds 600 orders


def settings_for(env: dict[str, str], engine: str, **changes: Any) -> Settings:
    base = Settings.from_environ({**env, "WASM_ENGINE": engine, "ORDERS_ALLOW_RESET": "1", "GUEST_CACHE_DIR": "off"})
    fields = {"max_body_bytes": MAX_BODY, "max_unsent_bytes": MAX_UNSENT, "client_timeout": 0.5, **changes}
    return type(base)(**{**base.__dict__, **fields})


@pytest.fixture(scope="module")
def db(mariadb: EmbeddedMariaDB) -> Db:
    return make_database(mariadb, "orders_inprocess")


@pytest.fixture(scope="module")
def env(db: Db) -> dict[str, str]:
    return least_privilege(db)


@pytest.fixture(scope="module")
def app_client(env: dict[str, str], engine: str) -> Iterator[TestClient]:
    """The app on one engine, its lifespan run (the guest loaded on the client's event loop thread)."""
    with TestClient(create_app(settings_for(env, engine)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client(app_client: TestClient, db: Db) -> TestClient:
    db.run("TRUNCATE TABLE orders")
    return app_client


# One error shape per API, whoever makes the error (the guest's, in guest/src/error.rs): these
# keys, written compactly as the guest writes them.
PROBLEM_KEYS = {"type", "title", "status", "detail", "errors", "error_id", "limit"}
LEGACY_ERROR_KEYS = {"code", "message", "field", "errors", "error_id", "limit"}


def compact(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.content == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return body


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = compact(response)
    assert body["status"] == status and body["type"].startswith("urn:problem-type:orders:")
    assert {"type", "title", "status", "detail"} <= set(body) <= PROBLEM_KEYS
    return body


def legacy_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = compact(response)
    assert set(body) == {"status", "error"} and body["status"] is False
    assert {"code", "message"} <= set(body["error"]) <= LEGACY_ERROR_KEYS
    return dict(body["error"])


# --- routing: every route and method -------------------------------------------------------------


def test_the_original_routes(client: TestClient, db: Db) -> None:
    assert client.get("/").text == INDEX
    assert client.get("/", headers={"accept": "text/html"}).headers["content-type"] == "text/html; charset=utf-8"
    assert client.get("/init").json() == {"status": True}
    assert client.post("/create_order", json={"order_id": 1, **NEW_ORDER}).json() == {"status": True}
    orders = [{"order_id": i, **NEW_ORDER} for i in (2, 3)]
    assert client.post("/create_orders", json=orders).json() == {"status": True}
    assert [o["order_id"] for o in client.get("/orders").json()] == [1, 2, 3]
    assert client.post("/update_order", json={"order_id": 2, **NEW_ORDER, "quantity": 9}).json() == {"status": True}
    assert client.get("/delete_order", params={"id": 3}).json() == {"status": True}
    assert db.rows("SELECT order_id, quantity FROM orders ORDER BY order_id") == [(1, 2), (2, 9)]
    echoed = client.post("/echo", content=b"\xff raw", headers={"content-type": "text/plain"})
    assert (echoed.status_code, echoed.content) == (200, b"\xff raw")


def test_the_rest_routes(client: TestClient) -> None:
    created = client.post("/api/orders", json=NEW_ORDER)
    assert created.status_code == 201 and created.headers["location"] == "/api/orders/1"
    assert client.get("/api/orders").json()["items"][0]["order_id"] == 1
    assert client.get("/api/orders/1").json()["quantity"] == 2
    assert client.put("/api/orders/1", json={**NEW_ORDER, "quantity": 5}).json()["quantity"] == 5
    assert client.patch("/api/orders/1", json={"tax": 3.5}).json()["tax"] == 3.5
    assert client.delete("/api/orders/1").status_code == 204
    problem(client.get("/api/orders/1"), 404)


def test_the_host_routes(client: TestClient, engine: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "engine": engine, "database": "ok"}
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "http_requests_total" in metrics.text
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("GET", "/create_order", {"POST", "OPTIONS"}),
        ("PUT", "/orders", {"GET", "HEAD", "OPTIONS"}),
        ("DELETE", "/api/orders", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("POST", "/api/orders/1", {"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"}),
        ("POST", "/healthz", {"GET", "HEAD", "OPTIONS"}),
        ("DELETE", "/metrics", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", "/static/app.js", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_wrong_methods_are_405_with_allow(client: TestClient, method: str, path: str, allow: set[str]) -> None:
    response = client.request(method, path)
    if path.startswith("/api/") or path in ("/healthz", "/metrics"):  # under /static/, the original's shape
        problem(response, 405)
    else:
        assert legacy_error(response, 405)["code"] == "method_not_allowed"
    assert set(response.headers["allow"].replace(" ", "").split(",")) == allow


def test_head_runs_reads_but_not_changes(client: TestClient, db: Db) -> None:
    client.post("/create_order", json={"order_id": 1, **NEW_ORDER})
    got, head = client.get("/orders"), client.head("/orders")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))
    for path in ("/init", "/delete_order?id=1"):
        response = client.head(path)
        assert response.status_code == 405 and response.headers["allow"] == "GET, OPTIONS"
    assert db.rows("SELECT order_id FROM orders") == [(1,)]


def test_unknown_paths_are_404_in_the_shape_of_their_api(client: TestClient) -> None:
    assert legacy_error(client.get("/nowhere"), 404) == {"code": "not_found", "message": "there is no route /nowhere"}
    assert problem(client.get("/api/nowhere"), 404)["detail"] == "there is no route /api/nowhere"


# --- errors the host makes -----------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(client: TestClient, db: Db) -> None:
    over = b" " * (MAX_BODY + 1)
    error = legacy_error(client.post("/create_order", content=over), 413)
    assert error == {"code": "payload_too_large", "message": f"the request body is over the limit of {MAX_BODY} bytes"}
    problem(client.post("/api/orders", content=over), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while reading
        for _ in range(MAX_BODY // 1000 + 1):
            yield b" " * 1000

    problem(client.post("/api/orders", content=chunks()), 413)
    assert db.rows() == []


def test_a_body_that_does_not_arrive_is_408(app_client: TestClient) -> None:
    async def hanging() -> Message:
        await asyncio.sleep(10)
        return {"type": "http.request", "body": b""}

    for path, shape in (("/create_order", "application/json"), ("/api/orders", "application/problem+json")):
        status, headers, body = app_client.portal.call(asgi, app_client.app, "POST", path, hanging)
        assert (status, headers[b"content-type"].decode(), headers[b"connection"]) == (408, shape, b"close")
        assert b"did not arrive within 0.5 s" in body


def test_answers_waiting_for_their_clients_are_bounded_503(client: TestClient, db: Db) -> None:
    with db.connect() as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO orders VALUES (%s, 12, 2, 19.99, 15, 2, 'Mataderos 2312')", [(i,) for i in range(1, 601)])
    response = client.get("/orders")
    error = legacy_error(response, 503)
    assert error["code"] == "busy" and "MAX_UNSENT_MB" in error["message"]
    assert response.headers["retry-after"] == "1"


def test_an_unreachable_database_is_503_on_readyz_and_from_the_guest(env: dict[str, str], engine: str) -> None:
    down = {**env, "DATABASE_URL": "mysql://nobody:x@127.0.0.1:1/none", "DATABASE_ADMIN_URL": "mysql://nobody:x@127.0.0.1:1/none"}
    settings = settings_for(down, engine, db_connect_timeout=0.5, db_acquire_timeout=0.5)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        body = problem(client.get("/readyz"), 503)
        assert body["detail"].startswith("the database is not reachable") and client.get("/readyz").headers["retry-after"]
        answer = client.get("/api/orders")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert legacy_error(client.get("/orders"), 503)["code"] == "database_unavailable"


# --- CORS, request ids, the access line ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/init", "/orders", "/create_order", "/echo"])
def test_preflight_on_the_original_routes(client: TestClient, path: str) -> None:
    response = client.options(path, headers={"origin": "http://elsewhere", "access-control-request-method": "POST"})
    assert (response.status_code, response.content) == (200, b"")
    assert {k: response.headers.get(k) for k in LEGACY_CORS} == LEGACY_CORS


@pytest.mark.parametrize("path, route", [("/api/orders", "/api/orders"), ("/api/orders/1", "/api/orders/{order_id}")])
def test_preflight_on_the_rest_routes(client: TestClient, path: str, route: str) -> None:
    response = client.options(path, headers={"origin": "http://elsewhere", "access-control-request-method": "PUT"})
    assert (response.status_code, response.content) == (204, b"")
    assert {k: response.headers.get(k) for k in REST_CORS} == rest_cors(route)


@pytest.mark.parametrize("path", HOST_PAGES)
def test_preflight_on_the_host_pages(client: TestClient, path: str) -> None:
    """The host's own pages answer a preflight as the REST API does, naming the methods they take;
    a wrong method is 405 with the same methods in Allow, a GET carries the same headers."""
    response = client.options(path, headers={"origin": "http://elsewhere", "access-control-request-method": "GET"})
    assert (response.status_code, response.content) == (204, b"")
    assert {k: response.headers.get(k) for k in REST_CORS} == HOST_CORS
    wrong = client.post(path, content=b"{}")
    assert (wrong.status_code, wrong.headers["allow"]) == (405, HOST_CORS["access-control-allow-methods"])
    for answer in (wrong, client.get(path), client.head(path)):
        assert {k: answer.headers.get(k) for k in REST_CORS} == HOST_CORS


@pytest.mark.parametrize(
    "method, path, cors",
    [
        ("GET", "/orders", LEGACY_CORS),
        ("GET", "/nowhere", LEGACY_CORS),
        ("POST", "/create_order", LEGACY_CORS),
        ("GET", "/api/orders", rest_cors("/api/orders")),
        ("GET", "/api/nowhere", REST_CORS),
        ("GET", "/metrics", HOST_CORS),
        ("GET", "/static/app.js", HOST_CORS),
    ],
)
def test_every_answer_carries_cors_then_the_request_id(client: TestClient, method: str, path: str, cors: dict[str, str]) -> None:
    response = client.request(method, path, content=b"{")
    assert {k: response.headers.get(k) for k in cors} == cors
    names = [k.lower() for k in response.headers.keys()]
    assert names[-len(cors) - 1 :] == [*cors, "x-request-id"]


def test_request_ids_are_taken_when_sane_and_made_otherwise(client: TestClient) -> None:
    assert client.get("/orders", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    for given in ("x" * 129, "tab\there", ""):
        made = client.get("/orders", headers={"x-request-id": given}).headers["x-request-id"]
        assert made != given and len(made) == 16 and int(made, 16) >= 0


def test_the_access_line_has_the_guest_timings(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        client.get("/orders", headers={"x-request-id": "line-1"})
        client.get("/nowhere", headers={"x-request-id": "line-2"})
    lines = {r.getMessage().rsplit("=", 1)[1]: r.getMessage() for r in caplog.records if r.name == "service.access"}
    guest = lines["line-1"].split()
    assert guest[:3] == ["GET", "/orders", "200"] and guest[4].startswith("guest=") and guest[4] != "guest=-ms"
    assert lines["line-2"].split()[2:6:2] == ["404", "guest=-ms"]
    assert lines["line-2"].split()[5] == "db=-ms"


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/api/orders/77")
    text = client.get("/metrics").text
    assert 'http_requests_total{method="GET",route="/api/orders/{order_id}",status="404"}' in text
    assert 'guest_invocations_total{engine="' in text


# --- resources -------------------------------------------------------------------------------------


def test_shutdown_closes_every_database_connection(mariadb: EmbeddedMariaDB, engine: str) -> None:
    db = make_database(mariadb, "orders_inprocess_shutdown")  # a user of its own, whose sessions are counted
    env = least_privilege(db)
    user = DatabaseURL.parse(env["DATABASE_URL"]).user

    def sessions() -> int:
        return len(db.rows("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,)))

    with TestClient(create_app(settings_for(env, engine, db_pool_min=3)), raise_server_exceptions=False) as client:
        assert sessions() == 3
        for _ in range(5):
            assert client.get("/orders").status_code == 200
        assert sessions() == 3
    deadline = time.monotonic() + 5
    while sessions() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sessions() == 0


# --- _http.read_body -------------------------------------------------------------------------------


def receiver(*messages: Message) -> Any:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


def test_read_body_joins_the_pieces() -> None:
    receive = receiver({"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.request", "body": b"cd"})
    assert asyncio.run(read_body(receive, b"", 4)) == b"abcd"
    assert asyncio.run(read_body(receiver({"type": "http.request"}), b"", 4)) == b""


def test_read_body_refuses_a_declared_length_over_the_limit_unread() -> None:
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_body(receiver(), b"5", 4))  # nothing to receive: it must not try


def test_read_body_stops_at_the_limit() -> None:
    receive = receiver(
        {"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.request", "body": b"de", "more_body": True}
    )
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_body(receive, b"", 4))


def test_read_body_raises_when_the_client_leaves() -> None:
    receive = receiver({"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnect):
        asyncio.run(read_body(receive, b"", 4))


async def asgi(app: Any, method: str, path: str, receive: Any) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight through the ASGI interface, with the client's `receive`."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body
