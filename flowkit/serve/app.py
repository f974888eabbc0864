"""The dashboard's web application (Starlette): pages and event streams.

Routes::

    GET  /                                 runs list (?q=, ?status=, ?flow=, ?page=)
    GET  /events                           server-sent "changed" events when runs change
    GET  /runs/{flow}/{run}                a run's page
    GET  /runs/{flow}/{run}/events         server-sent events: a snapshot, then changed rows
    GET  /runs/{flow}/{run}/step?name=S    a step's page
    GET  /runs/{flow}/{run}/log?name=S     server-sent events: the step's log as it grows
    POST /runs/{flow}/{run}/cancel         with --allow-actions only
    GET  /static/...                       scripts and styles (package data)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..keys import safe_name
from ..report import stylesheet
from ..stepview import split_instance
from .actions import CancelError, cancel_run
from .catalog import Catalog, UnknownRunError
from .guard import LoopbackHosts, SecurityHeaders, TokenGuard
from .pages import page, run_page, runs_page, step_page
from .tail import LogTail, RunTail

__all__ = ["ServeOptions", "create_app"]

PER_PAGE = 50
TICK = 0.2  # seconds between looks at a journal or log: "within a second" with room to spare
KEEPALIVE = 15.0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How the dashboard serves a state folder.

    ``token``: when set, every request must carry it (``Authorization: Bearer``, the
    ``X-Flowkit-Token`` header, ``?token=``, or the cookie a ``?token=`` visit sets).
    ``allow_actions``: offer "cancel" on running runs. ``loopback_only``: accept only
    ``localhost``/``127.0.0.1`` in the Host header (against DNS rebinding when no token guards).
    """

    state_dir: Path
    token: str | None = None
    allow_actions: bool = False
    loopback_only: bool = True


def create_app(options: ServeOptions) -> Starlette:
    """The ASGI application serving ``options.state_dir``."""
    catalog = Catalog(options.state_dir)
    static = files("flowkit.serve").joinpath("static")

    async def runs_list(request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        status = request.query_params.get("status", "")
        flow = request.query_params.get("flow", "")
        every = await run_in_threadpool(catalog.runs)
        shown = [
            r
            for r in every
            if (not status or r.status == status)
            and (not flow or r.flow == flow)
            and (not q or r.matches(q.lower()))
        ]
        pages = max(1, math.ceil(len(shown) / PER_PAGE))
        try:
            page_no = min(pages, max(1, int(request.query_params.get("page", "1"))))
        except ValueError:
            page_no = 1
        html = runs_page(
            shown[(page_no - 1) * PER_PAGE : page_no * PER_PAGE],
            len(every),
            root=str(options.state_dir),
            q=q,
            status=status,
            flow=flow,
            flows=sorted({r.flow for r in every}),
            page_no=page_no,
            pages=pages,
        )
        return HTMLResponse(html)

    async def runs_events(request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            last = await run_in_threadpool(catalog.signature)
            quiet = 0.0
            while await open_(request):
                for _ in range(5):  # look once a second, but notice a shutdown sooner
                    await asyncio.sleep(TICK)
                    if stopping():
                        return
                sig = await run_in_threadpool(catalog.signature)
                if sig != last:
                    last, quiet = sig, 0.0
                    yield b"event: changed\ndata: {}\n\n"
                else:
                    quiet += 1.0
                    if quiet >= KEEPALIVE:
                        quiet = 0.0
                        yield b": keep-alive\n\n"

        return _sse(stream())

    def stopping() -> bool:
        return bool(app.state.stopping())

    async def open_(request: Request) -> bool:
        """The client is still there and the server is not shutting down (streams end then)."""
        return not stopping() and not await request.is_disconnected()

    def run_dir_of(request: Request) -> Path:
        return catalog.run_dir(request.path_params["flow"], request.path_params["run"])

    async def run_view(request: Request) -> Response:
        run_dir = run_dir_of(request)
        tail = RunTail(run_dir)
        await run_in_threadpool(tail.load)
        report = await run_in_threadpool(tail.report)
        html = await run_in_threadpool(
            run_page,
            report,
            flow_dir=run_dir.parent.name,
            run_dir=run_dir.name,
            actions=options.allow_actions,
        )
        return HTMLResponse(html)

    async def run_events(request: Request) -> Response:
        run_dir = run_dir_of(request)

        async def stream() -> AsyncIterator[bytes]:
            tail = RunTail(run_dir)
            yield await run_in_threadpool(_snapshot, tail)
            quiet = 0.0
            while await open_(request):
                await asyncio.sleep(TICK)
                up = await run_in_threadpool(tail.poll)
                if up.reset:
                    yield _event("reload", {})
                    return
                if up.steps or up.run:
                    rows = await run_in_threadpool(tail.rows, up.steps)
                    yield _event("patch", {"run": tail.run_json(), "steps": rows})
                    quiet = 0.0
                else:
                    quiet += TICK
                    if quiet >= KEEPALIVE:
                        quiet = 0.0
                        yield b": keep-alive\n\n"

        return _sse(stream())

    async def step_view(request: Request) -> Response:
        run_dir = run_dir_of(request)
        name = request.query_params.get("name", "")
        tail = RunTail(run_dir)
        await run_in_threadpool(tail.load)
        row = _find_row(tail, name)
        if row is None:
            return _not_found(f"run {run_dir.name} has no step {name!r}")
        path = run_dir / "logs" / f"{safe_name(name)}.log"
        log, cut = await run_in_threadpool(_read_end, path, 512 * 1024)
        header = tail.state.headers[-1] if tail.state.headers else {}
        html = step_page(
            row,
            tail.bars(row),
            tail.state.steps.get(name),
            log,
            cut,
            flow=tail.shape.flow,
            run_id=str(header.get("run_id", run_dir.name)),
            flow_dir=run_dir.parent.name,
            run_dir=run_dir.name,
        )
        return HTMLResponse(html)

    async def log_events(request: Request) -> Response:
        run_dir = run_dir_of(request)
        name = request.query_params.get("name", "")
        if not name:
            return _not_found("which step? add ?name=STEP")
        tail = LogTail(run_dir / "logs" / f"{safe_name(name)}.log")

        async def stream() -> AsyncIterator[bytes]:
            quiet = 0.0
            yield _event("log", {"text": await run_in_threadpool(tail.read), "first": True})
            while await open_(request):
                await asyncio.sleep(TICK)
                text = await run_in_threadpool(tail.read)
                if text:
                    quiet = 0.0
                    yield _event("log", {"text": text})
                else:
                    quiet += TICK
                    if quiet >= KEEPALIVE:
                        quiet = 0.0
                        yield b": keep-alive\n\n"

        return _sse(stream())

    async def cancel(request: Request) -> Response:
        if not options.allow_actions:
            return JSONResponse(
                {"error": "actions are off: start flowkit serve with --allow-actions"}, 403
            )
        if request.headers.get("x-flowkit-action") != "cancel":
            return JSONResponse({"error": "send the X-Flowkit-Action: cancel header"}, 400)
        run_dir = run_dir_of(request)
        try:
            message = await run_in_threadpool(cancel_run, run_dir)
        except CancelError as exc:
            return JSONResponse({"error": str(exc)}, 409)
        return JSONResponse({"ok": True, "message": message})

    async def report_css(request: Request) -> Response:
        return Response(stylesheet(), media_type="text/css")

    async def unknown_run(request: Request, exc: Exception) -> Response:
        return _not_found(str(exc))

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", runs_list),
        Route("/favicon.ico", favicon),
        Route("/events", runs_events),
        Route("/static/report.css", report_css),
        Mount("/static", app=StaticFiles(directory=str(static)), name="static"),
        Route("/runs/{flow}/{run}", run_view),
        Route("/runs/{flow}/{run}/events", run_events),
        Route("/runs/{flow}/{run}/step", step_view),
        Route("/runs/{flow}/{run}/log", log_events),
        Route("/runs/{flow}/{run}/cancel", cancel, methods=["POST"]),
    ]
    # outermost first: every response gets the security headers, and no route runs untokened
    middleware = [Middleware(SecurityHeaders), Middleware(TokenGuard, token=options.token)]
    if options.loopback_only:
        middleware.append(Middleware(LoopbackHosts))
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers={UnknownRunError: unknown_run}
    )
    app.state.catalog = catalog
    app.state.stopping = lambda: False  # serve() points it at the server's shutdown flag
    return app


def _sse(stream: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def _event(kind: str, data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _snapshot(tail: RunTail) -> bytes:
    tail.load()
    report = tail.report()
    rows = [tail.row_json(r) for r in report.steps]
    return _event("snapshot", {"run": tail.run_json(report), "steps": rows, "now": time.time()})


def _find_row(tail: RunTail, name: str) -> Any:
    if name in tail.shape.deps or split_instance(name)[0] in tail.shape.deps:
        for row in tail.report().steps:
            if row.name == name:
                return row
    return None


def _read_end(path: Path, limit: int) -> tuple[str, bool]:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - limit))
            data = f.read()
    except FileNotFoundError:
        return "", False
    return data.decode("utf-8", errors="replace"), size > limit


def _not_found(message: str) -> Response:
    body = page("flowkit · not found", f"<h1>Not found</h1><p>{escape(message)}</p>")
    return HTMLResponse(body, status_code=404)
