"""`make asyncapi`: write each service's AsyncAPI document (from its declared subscribers and
publishers) under deploy/asyncapi/."""

from __future__ import annotations

import sys
from pathlib import Path


def main(out: str = "deploy/asyncapi") -> int:
    from assist.app import build_runtime as assist
    from presence.app import build_runtime as presence
    from routing.app import build_runtime as routing
    from sessions.app import build_runtime as sessions

    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    for build in (routing, sessions, presence, assist):
        runtime = build()
        doc = runtime.asyncapi().to_specification()
        path = target / f"{runtime.name}.yaml"
        path.write_text(doc.to_yaml())
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
