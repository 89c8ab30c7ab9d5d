"""Error classification of the consumer pipeline (what rewinds, what goes to the DLQ)."""

from __future__ import annotations

import asyncpg

from shared.messaging import is_infrastructure


def test_unreachable_database_or_broker_is_infrastructure() -> None:
    assert is_infrastructure(ConnectionRefusedError())
    assert is_infrastructure(TimeoutError())
    assert is_infrastructure(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"))
    assert is_infrastructure(asyncpg.exceptions.InterfaceError("connection is closed"))


def test_programming_errors_are_not_infrastructure() -> None:
    """A bug must end in the DLQ after retries, not rewind forever and restart the service."""
    assert not is_infrastructure(asyncpg.exceptions.InterfaceError("the server expects 7 arguments, 6 were passed"))
    assert not is_infrastructure(KeyError("conversation_id"))
    assert not is_infrastructure(asyncpg.exceptions.UniqueViolationError("duplicate key"))
