"""``flowkit serve``: a live dashboard of the runs in a state folder.

A small web application (Starlette, served by uvicorn; the ``flowkit[ui]`` extra) that reads the
state folder and nothing else: the runs list, a page per run (graph by status, one timeline bar
per attempt, the step table, logs and tracebacks) and a page per step. Run pages follow their
journal and step logs from remembered offsets and push what changed to the browser over
server-sent events, so a run going on in another process shows up live.

It binds 127.0.0.1 by default. Any other address needs a token, which every request must carry.
It changes nothing unless started with ``allow_actions`` (then a running run can be cancelled).

Modules: :mod:`.catalog` (the runs in the folder, paths confined to it), :mod:`.tail` (following
a journal and a log), :mod:`.pages` (HTML), :mod:`.app` (routes and event streams),
:mod:`.guard` (the token check, security headers), :mod:`.actions` (cancel). Only this command
imports them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ExtraUnavailableError, UsageError

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["LOOPBACK_HOSTS", "TOKEN_ENV", "create_app", "serve"]

#: Hosts that only this machine can reach: binding one needs no token.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: The environment variable ``--token`` defaults to.
TOKEN_ENV = "FLOWKIT_SERVE_TOKEN"


def create_app(
    state_dir: str | os.PathLike[str],
    *,
    token: str | None = None,
    allow_actions: bool = False,
    loopback_only: bool = True,
) -> Starlette:
    """The dashboard as an ASGI application (to mount in your own server, or to test).

    Args:
        state_dir: the state folder to show (``.flowkit``).
        token: when given, every request must carry it (header, ``?token=`` or cookie).
        allow_actions: offer cancelling running runs.
        loopback_only: refuse requests whose Host is not localhost (DNS rebinding guard).

    Raises:
        ExtraUnavailableError: the ``ui`` extra is not installed.
    """
    _require_extra()
    from .app import ServeOptions
    from .app import create_app as make

    return make(ServeOptions(Path(state_dir), token, allow_actions, loopback_only))


def serve(
    state_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    allow_actions: bool = False,
    open_browser: bool = False,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C or SIGTERM), then return.

    Args:
        state_dir: the state folder to show; it must exist.
        host: the address to listen on; anything but loopback requires ``token``.
        port: the port (0: any free one; the URL announced says which).
        token: required on every request when given.
        allow_actions: offer cancelling running runs.
        open_browser: open the dashboard in the default browser.
        announce: called with the one-line "listening on URL" message (default: print it).

    Raises:
        UsageError: the folder does not exist, the host needs a token, or the port is taken.
        ExtraUnavailableError: the ``ui`` extra is not installed.
    """
    _require_extra()
    import uvicorn

    root = Path(state_dir)
    if not root.is_dir():
        raise UsageError(
            f"state folder {str(root)!r} does not exist: run a flow first, or pass "
            "--state-dir DIR (the folder your runs use, .flowkit by default)"
        )
    loopback = host in LOOPBACK_HOSTS
    if not loopback and not token:
        raise UsageError(
            f"--host {host} makes your runs visible to other machines: pass --token SECRET "
            f"(or set {TOKEN_ENV}) so that only people with the token can see them"
        )
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
    mode = "cancelling runs allowed" if allow_actions else "read-only"
    (announce or _print)(f"flowkit serve: {url} ({root}, {mode}; Ctrl-C to stop)")
    if open_browser:
        webbrowser.open(url)
    app = create_app(root, token=token, allow_actions=allow_actions, loopback_only=loopback)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1, access_log=False
    )
    server = uvicorn.Server(config)
    app.state.stopping = lambda: server.should_exit  # open event streams end on Ctrl-C
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises it once it has stopped
        server.run(sockets=[sock])


def _print(line: str) -> None:
    print(line, flush=True)
    sys.stdout.flush()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port} ({exc.strerror}): pass another --port "
            "(--port 0 picks a free one)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _require_extra() -> None:
    for module in ("starlette", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            raise ExtraUnavailableError("flowkit serve", "ui", module) from None
