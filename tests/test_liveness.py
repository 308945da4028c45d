"""The liveness endpoint the chart's probes call: 200 while the controller runs (a standby
waiting for the Lease included), 503 once it has ended, nothing on other paths."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from trustwire.demo.emulator import running_emulator
from trustwire.k8s.client import ApiConfig
from trustwire.k8s.transport import Pool
from trustwire.runtime import OperatorOptions, running_operator, serve_liveness


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _status(port: int, path: str) -> int:
    pool = Pool(f"http://127.0.0.1:{port}", ssl_context=None, headers={}, timeout=5.0)
    try:
        return (await pool.request("GET", path)).status
    finally:
        await pool.close()


async def test_the_endpoint_answers_while_the_controller_runs_and_fails_once_it_ended() -> None:
    port = _free_port()
    stop = asyncio.Event()
    controller = asyncio.create_task(stop.wait())
    server = await serve_liveness(f"http://127.0.0.1:{port}/healthz", controller)  # type: ignore[arg-type]
    try:
        assert await _status(port, "/healthz") == 200
        assert await _status(port, "/other") == 404
        stop.set()
        await controller
        assert await _status(port, "/healthz") == 503
    finally:
        server.close()
        await server.wait_closed()


async def test_a_running_operator_serves_its_liveness_endpoint_and_stops_serving_on_exit() -> None:
    port = _free_port()
    async with running_emulator() as emu:
        options = OperatorOptions(liveness_endpoint=f"http://127.0.0.1:{port}/healthz", workers=1)
        async with running_operator(ApiConfig(server=emu.url), options):
            assert await _status(port, "/healthz") == 200
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, not a listener
            sock.bind(("127.0.0.1", port))  # free again: the endpoint is gone
            return
        raise AssertionError("the liveness endpoint still holds its port")
