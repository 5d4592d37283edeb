"""Build the app and run it on uvicorn: loopback unless told otherwise, on the home's one engine.

``serve`` owns the home when nobody does (it runs the batches itself) and otherwise follows the
owner (the app, a ``tubemill run``) through the control files, taking over when it goes away —
exactly what the CLI does. The token guard wraps the whole app, ``/docs`` and ``/openapi.json``
included: the issue asks for it on every route, and the schema is a map of what the server can do.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from pipeline import errors
from pipeline.api.guard import Guard, Throttle, TokenSource, allowed_hosts, ensure_token, is_loopback
from pipeline.engine.client import EngineClient

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 8600


def create_app(engine: EngineClient, *, token: Callable[[], str | None], hosts: frozenset[str],
               throttle: Throttle | None = None) -> Any:
    """The FastAPI app on ``engine``, behind the Host and token guard (an ASGI app)."""
    from pipeline.api.routes import install

    app = FastAPI(title="Tubemill", summary="Batches, files, search and subscriptions of one Tubemill home",
                  description="Every route needs `Authorization: Bearer <token>` (printed once by the first "
                              "`tubemill serve`; `tubemill serve --rotate-token` makes a new one).",
                  version="1")
    app.state.engine = engine
    install(app)
    return Guard(app, token=token, hosts=hosts, throttle=throttle)


def check_bind(address: str, explicit: bool) -> None:
    """Loopback only, unless ``--address`` was typed: a non-loopback bind is something to ask for."""
    if not is_loopback(address) and not explicit:
        raise errors.ConfigError(f"refusing to listen on {address} (beyond loopback) unless --address is given "
                                 "explicitly")


def serve(home: Path, *, address: str = DEFAULT_ADDRESS, port: int = DEFAULT_PORT, explicit: bool = False,
          allow_hosts: tuple[str, ...] = (), rotate: bool = False, say: Callable[[str], None] | None = None) -> int:
    """Run the API until interrupted; returns the exit code."""
    import uvicorn

    from pipeline.engine.core import Engine
    from state.lock import describe_owner, read_owner

    say = say or (lambda text: print(f"tubemill: {text}", file=sys.stderr, flush=True))
    check_bind(address, explicit)
    token, new = ensure_token(home, rotate=rotate)
    if new:  # shown once: afterwards it is only in <home>/secrets/api_token (0600)
        say(f"API token (shown once; stored in {home / 'secrets' / 'api_token'}): {token}")
    del token
    if not is_loopback(address):
        say(f"listening on {address}: anyone who can reach it and has the token controls this home")
    from pipeline.config.settings import load_settings
    from pipeline.engine.distributed import engine_executors

    settings = load_settings(home)  # a Dask cluster in the settings runs cpu/gpu stages, as for the app
    settings, dx = engine_executors(settings.executor, settings, settings.output_root(home))
    engine = Engine(home, settings=settings, role="tubemill serve", executors=dx.executors if dx else None)
    owner = engine.start()
    for msg in engine.messages:
        say(f"warning: {msg}")
    if not owner:
        say(f"{home} is held by {describe_owner(read_owner(home))}; following it")
    app = create_app(engine, token=TokenSource(home), hosts=allowed_hosts(address, allow_hosts))
    shown = f"[{address}]" if ":" in address else address
    say(f"REST API on http://{shown}:{port}/ (docs at /docs)")
    try:
        uvicorn.run(app, host=address, port=port, log_level="warning", proxy_headers=False, server_header=False)
    finally:
        engine.shutdown(interrupt=True, timeout=10)
        if dx is not None:
            dx.close()
    return 0
