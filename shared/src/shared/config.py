"""The YAML configuration file (SWITCHBOARD_CONFIG): each service validates its own section with a
pydantic model, and every problem names its line and field (`line 12: routing.queues.0.name: ...`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)
# libyaml's loader when PyYAML was built with it (its wheels are): the same safe constructors, parsed
# in C. A 10,000-agent file takes about 1.5 s instead of 16 s, and every service reads it at start.
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# "queues.0.overflow.to: unknown queue 'x'; agents.3.queues: ..." — problems found across fields
_PATHED = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*: ")


class Strict(BaseModel):
    """A configuration model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ConfigError(ValueError):
    """Every problem with a configuration, each naming its line and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_yaml(text: str) -> Any:
    """A YAML document's data (safe constructors only)."""
    return yaml.load(text, Loader=LOADER)  # LOADER is a SafeLoader


def parse(text: str, model: type[M], section: str | None, *, required: bool = False) -> M:
    """Parse and validate YAML text (its `section`, or the whole document when None) as `model`;
    a missing section is an empty one, or an error when `required`."""
    try:
        doc = read_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"]) from exc
    prefix: tuple[str, ...] = ()
    if section is not None:
        if not isinstance(doc, dict):
            raise ConfigError(["the configuration file must be a mapping of sections (routing:, sessions:, ...)"])
        if required and section not in doc:
            raise ConfigError([f"no '{section}:' section in the file"])
        doc, prefix = doc.get(section) or {}, (section,)
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        # the node tree (for line numbers) is composed only when there is something to point at
        node = yaml.compose(text, Loader=LOADER)  # LOADER is a SafeLoader
        if section is not None:
            node = _child(node, section)
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if not loc and _PATHED.match(msg):  # cross-reference errors carry their own paths
                for part in msg.split("; "):
                    path, _, what = part.partition(": ")
                    keys = tuple(int(k) if k.isdigit() else k for k in path.split("."))
                    problems.append(_describe(node, prefix, keys, what))
            else:
                problems.append(_describe(node, prefix, loc, msg))
        raise ConfigError(problems) from exc


def load(path: str | None, model: type[M], section: str) -> M:
    """One section of the configuration file at `path`; the model's defaults when unset."""
    if not path:
        return model.model_validate({})
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"configuration file {p} does not exist (SWITCHBOARD_CONFIG)")
    try:
        return parse(p.read_text(), model, section)
    except ConfigError as exc:
        raise ConfigError([f"{p}: {problem}" for problem in exc.problems]) from exc


def _describe(node: Any, prefix: tuple[Any, ...], loc: tuple[Any, ...], msg: str) -> str:
    line = _line(node, loc)
    field = ".".join(str(p) for p in (*prefix, *loc))
    return f"line {line}: {field}: {msg}" if line else f"{field}: {msg}"


def _child(node: Any, key: Any) -> Any:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == str(key):
                return v
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    return None


def _line(node: Any, loc: tuple[Any, ...]) -> int | None:
    best = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        nxt = _child(node, key)
        if nxt is None:
            break
        node = nxt
        best = node.start_mark.line + 1
    return best
