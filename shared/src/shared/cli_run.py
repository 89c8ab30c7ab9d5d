"""Runs a service's app factory under uvicorn (`python -m SERVICE.main [--host H] [--port N]`).

Where it binds: `--host`/`--port` when given, else the service's settings (`ROUTING_HTTP_HOST`,
`ROUTING_HTTP_PORT`, ...; `0.0.0.0` in a pod), else 127.0.0.1 and a free port. On SIGTERM uvicorn
stops accepting, gives open requests and sockets `http_grace_s`, then the lifespan's shutdown
drains the service (`Runtime.stop`) in what is left of `drain_timeout_s`.
"""

from __future__ import annotations

import argparse
import importlib
import inspect

import uvicorn

from shared.runtime import http_grace_s
from shared.settings import ServiceSettings

# A WebSocket frame bigger than this closes the socket (1009): commands and drafts are far smaller.
WS_MAX_SIZE = 256 * 1024
# Idle HTTP keep-alive connections are closed after this (above typical load balancers' 60 s idle).
KEEP_ALIVE_S = 75


def settings_of(factory: str) -> ServiceSettings:
    """The settings the factory `module:function` would build by default (its `settings` parameter)."""
    module_name, _, attr = factory.partition(":")
    fn = getattr(importlib.import_module(module_name), attr)
    annotation = inspect.signature(fn, eval_str=True).parameters["settings"].annotation
    candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
    cls = next(c for c in candidates if issubclass(c, ServiceSettings))
    return cls()


def run(factory: str, argv: list[str] | None = None) -> None:
    settings = settings_of(factory)
    p = argparse.ArgumentParser(description=f"Run {factory} under uvicorn.")
    p.add_argument("--host", default=None, help=f"address to bind (default: settings, now {settings.http_host})")
    p.add_argument("--port", type=int, default=None, help=f"port to bind (default: settings, now {settings.http_port})")
    args = p.parse_args(argv)
    uvicorn.run(
        factory,
        factory=True,
        host=args.host or settings.http_host,
        port=args.port if args.port is not None else settings.http_port,
        log_level="warning",
        lifespan="on",
        loop=settings.event_loop,
        ws="auto",
        ws_max_size=WS_MAX_SIZE,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=max(1, round(http_grace_s(settings))),
    )
