"""Every event and command emits exactly its contract: built with every declared field set, it
round-trips through `event`/`parse` and validates against its model with extra fields forbidden.
Our producers cannot send undeclared fields; consumers still accept and keep them."""

from __future__ import annotations

import ast
import types
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from shared import contracts as c

ROOT = Path(__file__).resolve().parents[2]


def sample(annotation: Any) -> Any:
    """A valid, non-empty value for a field's annotation (constraints of the contract allow "x", 1)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return sample(args[0])
    if origin is Literal:
        return args[0]
    if origin in (typing.Union, types.UnionType):
        return sample(next(a for a in args if a is not type(None)))
    if origin is dict:
        return {"k": sample(args[1])}
    if origin is list:
        return [sample(args[0])]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation(**full_kwargs(annotation))
    values = {Any: "x", str: "x", bool: True, int: 1, float: 1.5, datetime: datetime(2026, 11, 21, tzinfo=UTC)}
    return values[annotation]


def full_kwargs(model: type[BaseModel]) -> dict[str, Any]:
    """Every declared field of `model`, set."""
    return {name: sample(field.annotation) for name, field in model.model_fields.items()}


# Fields a model's validator refuses together with the others: left unset when "every field" is set.
LEFT_UNSET: dict[type[c.Payload], set[str]] = {c.TransferSession: {"to_agent"}}

# What a model's validator needs besides its required fields.
NEEDED: dict[type[c.Payload], dict[str, Any]] = {
    c.SetPresence: {"status": "available"},  # one of status or channels
    c.TransferSession: {"to_queue": "billing"},  # one of to_queue or to_agent
    c.SupervisorAct: {"conversation_id": "c-1"},  # every action but set_presence
}


def forbidding(model: type[c.Payload]) -> type[c.Payload]:
    """The same contract with unknown fields refused."""
    return type(model.__name__, (model,), {"model_config": ConfigDict(extra="forbid")})


@pytest.mark.parametrize("model", list(c.PAYLOADS.values()), ids=list(c.PAYLOADS))
def test_every_type_round_trips_and_emits_only_declared_fields(model: type[c.Payload]) -> None:
    unset = LEFT_UNSET.get(model, set())
    payload = model(**{k: v for k, v in full_kwargs(model).items() if k not in unset})
    ev = c.event(payload, source="/tests")

    assert ev.type == model.TYPE
    assert set(ev.data) == set(model.model_fields) - unset  # every field set, none added
    forbidding(model).model_validate(ev.data)
    env, parsed = c.parse(ev.to_bytes(), model.TOPIC)
    assert type(parsed) is model and env.id == ev.id
    assert parsed.model_dump(mode="json") == payload.model_dump(mode="json")
    assert not parsed.model_extra


@pytest.mark.parametrize("model", list(c.PAYLOADS.values()), ids=list(c.PAYLOADS))
def test_every_type_accepts_its_required_fields_alone(model: type[c.Payload]) -> None:
    required = {name: sample(f.annotation) for name, f in model.model_fields.items() if f.is_required()}
    required |= NEEDED.get(model, {})
    ev = c.event(model(**required), source="/tests")
    forbidding(model).model_validate(ev.data)
    assert type(c.parse(ev.to_bytes(), model.TOPIC)[1]) is model


def test_an_undeclared_field_is_refused_at_emit() -> None:
    drifted = c.SessionFocused(agent_id="agent-1", session_id="home", colour="red")  # type: ignore[call-arg]
    with pytest.raises(c.ContractError, match=r"session\.focused does not declare colour"):
        c.event(drifted, source="/tests")


def test_an_undeclared_field_is_accepted_and_kept_at_parse() -> None:
    raw = (
        '{"specversion": "1.0", "id": "e-1", "source": "/newer", "type": "session.focused", '
        '"subject": "agent-1", "data": {"agent_id": "agent-1", "session_id": "home", "colour": "red"}}'
    )
    _, payload = c.parse(raw, c.topics.SESSIONS)
    assert isinstance(payload, c.SessionFocused)
    assert payload.model_extra == {"colour": "red"}
    with pytest.raises(ValidationError, match="colour"):
        forbidding(c.SessionFocused).model_validate(payload.model_dump())


def test_sessions_events_declare_the_sequence_number_sessions_stamps_on_them() -> None:
    for t in c.TYPES_BY_TOPIC[c.topics.SESSIONS]:
        assert "seq" in c.PAYLOADS[t].model_fields, t


def _keywords(call: ast.Call) -> set[str]:
    """The field names a call passes, including the keys of dict literals spread into it."""
    names = {k.arg for k in call.keywords if k.arg}
    for spread in (k.value for k in call.keywords if k.arg is None):
        for node in ast.walk(spread):
            if isinstance(node, ast.Dict):
                names |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return names


def test_no_producer_passes_a_field_its_contract_does_not_declare() -> None:
    """Static companion of the check in `event`: covers call sites no test happens to run."""
    models = {cls.__name__: cls for cls in c.PAYLOADS.values()}
    sources = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("tools/src/**/*.py")]
    assert sources
    drift = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            model = models.get(node.func.attr)
            if model is None or not (isinstance(owner, ast.Name) and owner.id in ("c", "contracts")):
                continue
            undeclared = _keywords(node) - set(model.model_fields)
            if undeclared:
                drift.append(f"{path.relative_to(ROOT)}:{node.lineno} {model.__name__}: {sorted(undeclared)}")
    assert not drift, "\n".join(drift)
