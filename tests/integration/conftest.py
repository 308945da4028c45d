"""Fixtures: a fresh emulator and a running operator per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.harness import Cluster
from trustwire.emulator import running_emulator
from trustwire.k8s.client import ApiConfig, Client
from trustwire.runtime import OperatorOptions, running_operator

pytestmark = pytest.mark.integration


@pytest.fixture
def operator_options() -> OperatorOptions:
    return OperatorOptions(workers=4, resync_interval=3600.0)


@pytest.fixture
async def cluster(operator_options: OperatorOptions) -> AsyncIterator[Cluster]:
    async with running_emulator() as emu:
        config = ApiConfig(server=emu.url)
        async with running_operator(config, operator_options) as controller, \
                Client(config, user_agent="trustwire-tests") as client:
            yield Cluster(emu.emulator, client, controller)
