"""`make asyncapi`: write each service's AsyncAPI document (from its declared subscribers and
publishers) under deploy/asyncapi/."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

# FastStream keeps subscribers and publishers in WeakSets, so their order changes from run to run.
SORTED = (("channels",), ("operations",), ("components", "messages"), ("components", "schemas"))


def stable(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its channels, operations, messages and schemas in name order."""
    for path in SORTED:
        *parents, leaf = path
        node = doc
        for key in parents:
            node = node.get(key, {})
        if leaf in node:
            node[leaf] = dict(sorted(node[leaf].items()))
    return doc


def documents() -> dict[str, str]:
    """Each service's AsyncAPI document as YAML text, by service name."""
    from assist.app import build_runtime as assist
    from presence.app import build_runtime as presence
    from routing.app import build_runtime as routing
    from sessions.app import build_runtime as sessions

    out = {}
    for build in (routing, sessions, presence, assist):
        runtime = build()
        out[runtime.name] = yaml.dump(stable(runtime.asyncapi().to_specification().to_jsonable()), sort_keys=False)
    return out


def main(out: str = "deploy/asyncapi") -> int:
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    for name, text in documents().items():
        path = target / f"{name}.yaml"
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
