"""Runs a service's app factory under uvicorn (`python -m SERVICE.main --port N`)."""

from __future__ import annotations

import argparse

import uvicorn


def run(factory: str) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    uvicorn.run(factory, factory=True, host=args.host, port=args.port, log_level="warning", lifespan="on", ws="auto")
