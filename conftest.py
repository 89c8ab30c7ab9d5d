"""Root conftest: real infrastructure fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tools import testing


@pytest.fixture(scope="session")
def infra() -> Iterator[testing.Infrastructure]:
    infra = testing.start_infrastructure()
    yield infra
    infra.close()


@pytest.fixture
async def deployment(infra: testing.Infrastructure) -> AsyncIterator[testing.Deployment]:
    dep = await testing.create_deployment(infra)
    yield dep
    await testing.drop_deployment(dep)


@pytest.fixture
async def bus(deployment: testing.Deployment) -> AsyncIterator[testing.Bus]:
    async with testing.Bus(deployment) as b:
        yield b
