"""The embedded emulator journals every request while keeping kmock's own routing logs short."""

from __future__ import annotations

import base64

import pytest

from trustwire.demo.emulator import _KEEP, running_emulator
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import SECRETS


async def test_journal_keeps_everything_and_kmock_logs_stay_short() -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}, "data": {}}
        await client.create(SECRETS, "ns", body)
        for _ in range(_KEEP * 3):
            assert await client.get(SECRETS, "ns", "s") is not None
        assert len(emu.emulator.journal) == _KEEP * 3 + 1
        assert [r.method.value for r in emu.emulator.journal[:2]] == ["POST", "GET"]
        assert len(emu.emulator._requests) <= _KEEP * 2, "kmock's own log is trimmed"
        assert len(list(emu.emulator)) <= _KEEP * 2 * 4
        assert await client.get(SECRETS, "ns", "missing") is None, "routing still works after trimming"


async def test_request_bodies_are_limited_like_a_real_api_server() -> None:
    """2 MiB of Secret data passes (kube-apiserver takes up to 3 MiB); 3.5 MiB is refused."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        for name, size, accepted in (("big", 2 * 1024 * 1024, True), ("huge", 3 * 1024 * 1024 + 512 * 1024, False)):
            body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ns"},
                    "data": {"k": base64.b64encode(b"x" * (size * 3 // 4)).decode()}}
            if accepted:
                await client.create(SECRETS, "ns", body)
                assert await client.get(SECRETS, "ns", name) is not None
            else:
                with pytest.raises(ApiError) as refused:
                    await client.create(SECRETS, "ns", body)
                assert refused.value.status == 413
