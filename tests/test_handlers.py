"""The kopf registry: every handler that touches the controller runs on the event loop.

kopf runs plain ``def`` handlers in a thread pool. Our observers mutate the
controller's caches and wake its asyncio work queue, which is only safe on the
loop's own thread, so every watch and probe handler must be a coroutine function.
"""

from __future__ import annotations

import inspect
from typing import Any, cast

import kopf

from trustwire.controller.reconciler import Controller
from trustwire.handlers import NoDiffBase, build_registry
from trustwire.k8s.client import ApiConfig, Client


def test_watch_and_probe_handlers_run_on_the_event_loop() -> None:
    config = ApiConfig(server="http://127.0.0.1:1")
    registry = build_registry(Controller(Client(config)), config)
    watching = registry._watching.get_all_handlers()
    probes = [h for h in registry._activities.get_all_handlers() if h.id == "reconciles"]
    assert len(watching) == 3 and len(probes) == 1  # the 3 workload kinds
    threaded = [h.id for h in [*watching, *probes] if not inspect.iscoroutinefunction(h.fn)]
    assert threaded == []


def test_without_change_detecting_handlers_kopf_builds_no_diff_base() -> None:
    """kopf's diff base serves only change-detecting (create/update/resume) and daemon
    handlers; with none registered, the operator's settings skip building one per event."""
    config = ApiConfig(server="http://127.0.0.1:1")
    registry = build_registry(Controller(Client(config)), config)
    assert registry._changing.get_all_handlers() == [] and registry._spawning.get_all_handlers() == []
    settings = kopf.OperatorSettings()
    for handler in registry._activities.get_all_handlers():
        if handler.id.endswith("startup"):
            startup: Any = handler.fn  # kopf passes many more kwargs; ours takes **_
            startup(settings=settings)
    assert settings.queueing.idle_timeout <= 1.0  # per-object workers do not outlive their burst (memory)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, NoDiffBase)
    body = kopf.Body(cast(kopf.RawBody, {"metadata": {"name": "x", "labels": {"a": "b"}}, "data": {"k": "dg=="}}))
    assert storage.build(body=body) == {} and storage.fetch(body=body) is None
