"""The embedded emulator's request-log trimming (used by long runs) still works with kmock."""

from __future__ import annotations

from trustwire.emulator import running_emulator, trim_request_log
from trustwire.k8s.client import SECRETS, ApiConfig, Client


async def test_trimming_forgets_requests_and_keeps_objects() -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}, "data": {}}
        await client.create(SECRETS, "ns", body)
        await client.get(SECRETS, "ns", "s")
        assert len(list(emu.emulator)) >= 2
        assert trim_request_log(emu.emulator) >= 2
        assert list(emu.emulator) == []
        assert await client.get(SECRETS, "ns", "s") is not None
        assert len(list(emu.emulator)) == 1, "the log keeps recording after a trim"
