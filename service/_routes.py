"""The routes: every order route is one guest invocation; the rest are the host's own pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ._cors import HOST_PAGE_METHODS
from ._endpoint import Before, GuestEndpoint
from ._errors import DatabaseError
from ._http import API_KEY, error_response
from ._lifespan import Runtime
from ._openapi import openapi_document
from ._resources import project_dir

INDEX_TEXT = "The valid endpoints are /init /create_order /create_orders /update_order /orders /delete_order"
STATIC_DIR = project_dir("static")


class GuestRoutes(BaseRoute):
    """Every route the loaded guest describes (guest/ABI.md, "Description"), matched on each
    request against the guest that is loaded then, so a guest reloaded by SIGHUP brings its own
    routes. A path the guest has matches whatever the method: the endpoint answers 405 itself."""

    def __init__(self, endpoint: GuestEndpoint) -> None:
        self.endpoint = endpoint

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        runtime: Runtime = scope["app"].state.runtime
        found = runtime.guest.description.route_for(scope["path"])
        if found is None:
            return Match.NONE, {}
        route, params = found
        return Match.FULL, {"endpoint": self.endpoint, "path_params": params, "route": route, API_KEY: route.api}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)


async def apply_schema(runtime: Runtime) -> None:
    """Before `init` empties the table: the schema, applied again (the table may have been dropped)."""
    try:
        await runtime.database.ensure_schema()
    except DatabaseError:
        pass  # the guest's own statement meets the same trouble and answers for it


# Host work before the guest runs an operation.
BEFORE: dict[str, Before] = {"init": apply_schema}


class HostPage(Route):
    """One of the host's own GET pages: OPTIONS (a CORS preflight) answers 204, a method other
    than GET or HEAD 405, with the methods it takes in `Allow` as in the CORS headers."""

    def __init__(self, path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        super().__init__(path, endpoint, methods=HOST_PAGE_METHODS.split(", "))

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = _host_page_method(scope["method"])
        if answer is not None:
            await answer(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class HostFiles(StaticFiles):
    """The page's files under /static/, answering OPTIONS and other methods as the host's pages do."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        return _host_page_method(scope["method"]) or await super().get_response(path, scope)


def _host_page_method(method: str) -> Response | None:
    """A host page's answer to a method other than GET and HEAD (OPTIONS: 204; else raises 405);
    None for GET and HEAD, which the page answers."""
    if method == "OPTIONS":
        return Response(status_code=204)
    if method not in ("GET", "HEAD"):
        raise HTTPException(405, headers={"Allow": HOST_PAGE_METHODS})
    return None


async def index(request: Request) -> Response:
    """The demo page for browsers; the original's text for every other client."""
    if request.method == "OPTIONS":
        return Response(status_code=200)
    if "text/html" in request.headers.get("accept", ""):
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")
    return PlainTextResponse(INDEX_TEXT)


async def openapi(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return JSONResponse(openapi_document(runtime.guest.description))


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
    # The guest's routes first: the router tries routes in turn, on every request.
    routes: list[BaseRoute] = [GuestRoutes(GuestEndpoint(before=BEFORE))]
    routes += [
        Route("/", index, methods=["GET", "OPTIONS"]),
        HostPage("/openapi.json", openapi),
        HostPage("/healthz", healthz),
        HostPage("/readyz", readyz),
        HostPage("/metrics", metrics),
        Mount("/static", HostFiles(directory=STATIC_DIR), name="static"),
    ]
    return routes
