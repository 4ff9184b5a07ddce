"""The routes: every order route is one guest invocation; the rest are the host's own pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ._endpoint import Before, GuestEndpoint
from ._errors import DatabaseError
from ._http import error_response
from ._lifespan import Runtime
from ._openapi import openapi_document
from ._resources import project_dir

INDEX_TEXT = "The valid endpoints are /init /create_order /create_orders /update_order /orders /delete_order"
STATIC_DIR = project_dir("static")

# (path, methods, guest operation): the original's routes, then the REST API.
GUEST_ROUTES: list[tuple[str, list[str], str]] = [
    ("/init", ["GET"], "init"),
    ("/create_order", ["POST"], "create_order"),
    ("/create_orders", ["POST"], "create_orders"),
    ("/orders", ["GET"], "orders"),
    ("/update_order", ["POST"], "update_order"),
    ("/delete_order", ["GET"], "delete_order"),
    ("/echo", ["POST"], "echo"),
]
REST_ROUTES: list[tuple[str, dict[str, str]]] = [
    ("/api/orders", {"GET": "list", "POST": "create"}),
    ("/api/orders/{order_id}", {"GET": "get", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}),
]
# The original's GET routes that change data: HEAD must not run them (it answers 405).
CHANGING_GET_OPERATIONS = frozenset({"init", "delete_order"})


async def apply_schema(runtime: Runtime) -> None:
    """Before `init` empties the table: the schema, applied again (the table may have been dropped)."""
    try:
        await runtime.database.ensure_schema()
    except DatabaseError:
        pass  # the guest's own statement meets the same trouble and answers for it


# Host work before the guest runs an operation.
BEFORE: dict[str, Before] = {"init": apply_schema}


async def index(request: Request) -> Response:
    """The demo page for browsers; the original's text for every other client."""
    if request.method == "OPTIONS":
        return Response(status_code=200)
    if "text/html" in request.headers.get("accept", ""):
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")
    return PlainTextResponse(INDEX_TEXT)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def healthz(request: Request) -> Response:
    """The process is up and serving."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the guest is loaded and the database answers; 503 otherwise."""
    runtime: Runtime = request.app.state.runtime
    try:
        await runtime.database.ping()
    except DatabaseError as e:
        response = error_response(request, 503, "not_ready", f"the database is not reachable: {e.message}")
        response.headers["retry-after"] = "1"
        return response
    return JSONResponse({"status": "ready", "engine": runtime.guest.engine.name, "database": "ok"})


async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return runtime.metrics.render()


def build_routes() -> list[BaseRoute]:
    # The order routes first: the router tries routes in turn, on every request.
    routes: list[BaseRoute] = []
    for path, by_method in REST_ROUTES:
        endpoint = GuestEndpoint(by_method, 204, no_head=CHANGING_GET_OPERATIONS, before=BEFORE)
        routes.append(Route(path, endpoint, methods=[*by_method, "OPTIONS"]))
    for path, methods, operation in GUEST_ROUTES:
        endpoint = GuestEndpoint({m: operation for m in methods}, 200, no_head=CHANGING_GET_OPERATIONS, before=BEFORE)
        routes.append(Route(path, endpoint, methods=[*methods, "OPTIONS"]))
    routes += [
        Route("/", index, methods=["GET", "OPTIONS"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return routes
