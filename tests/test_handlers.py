"""The kopf registry: every handler that touches the controller runs on the event loop.

kopf runs plain ``def`` handlers in a thread pool. Our observers mutate the
controller's caches and wake its asyncio work queue, which is only safe on the
loop's own thread, so every watch and probe handler must be a coroutine function.
"""

from __future__ import annotations

import inspect

from trustwire.controller.reconciler import Controller
from trustwire.handlers import build_registry
from trustwire.k8s.client import ApiConfig, Client


def test_watch_and_probe_handlers_run_on_the_event_loop() -> None:
    config = ApiConfig(server="http://127.0.0.1:1")
    registry = build_registry(Controller(Client(config)), config)
    watching = registry._watching.get_all_handlers()
    probes = [h for h in registry._activities.get_all_handlers() if h.id == "reconciles"]
    assert len(watching) == 7 and len(probes) == 1  # identities, relationships, secrets, configmaps, 3 workload kinds
    threaded = [h.id for h in [*watching, *probes] if not inspect.iscoroutinefunction(h.fn)]
    assert threaded == []
