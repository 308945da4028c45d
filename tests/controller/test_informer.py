"""The controller's informer against a scripted API server (no emulator: every answer is
the test's): a standby lists and watches nothing, a leader lists then watches every kind
it serves, a 410 lists that kind again, a failing watch re-opens on the policy's back-off."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import HttpServer
from trustwire import names
from trustwire.controller import backoff
from trustwire.controller.informer import FOLLOWED
from trustwire.controller.reconciler import Controller
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.resources import DEPLOYMENTS, IDENTITIES, SECRETS, Resource
from trustwire.model import IdentityRef

KINDS = [r.plural for r in FOLLOWED]
ALPHA = {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
         "metadata": {"name": "alpha", "namespace": "ns", "resourceVersion": "5", "uid": "u1"},
         "spec": {"mtls": {}}}


@dataclass
class FakeApi:
    """Lists answer at resourceVersion 10 (one identity, ``alpha``); a watch plays the
    scripted events of its kind, one list per watch, then stays open and silent."""

    script: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    watches: list[web.Request] = field(default_factory=list)
    #: what a listing of a kind holds besides ``alpha``
    stored: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: kinds whose listings answer only once their event is set
    held: dict[str, asyncio.Event] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        self.requests.append(("watch" if request.query.get("watch") == "true" else "list", kind,
                              dict(request.query)))
        if request.query.get("watch") != "true":
            if kind in self.held:
                await self.held[kind].wait()
            items = [ALPHA] if kind == IDENTITIES.plural else list(self.stored.get(kind, []))
            return web.json_response({"metadata": {"resourceVersion": "10"}, "items": items})
        self.watches.append(request)
        response = web.StreamResponse()
        await response.prepare(request)
        events = self.script.get(kind, [])
        for event in events.pop(0) if events else []:
            await response.write(json.dumps(event).encode() + b"\n")
            if event.get("type") == "ERROR":
                await response.write_eof()
                return response
        await asyncio.sleep(60)
        return response

    def calls(self, verb: str) -> list[str]:
        return [kind for v, kind, _ in self.requests if v == verb]

    def open_watches(self) -> list[web.Request]:
        return [r for r in self.watches if r.transport is not None and not r.transport.is_closing()]


@pytest.fixture
async def api(http_server: HttpServer) -> AsyncIterator[tuple[FakeApi, Client]]:
    fake = FakeApi()
    url = await http_server([web.get("/api/v1/namespaces/ns/{kind}", fake.handle),
                             web.get("/apis/{group}/{version}/namespaces/ns/{kind}", fake.handle)])
    async with Client(ApiConfig(server=url)) as client:
        yield fake, client


class FakeElection:
    def __init__(self) -> None:
        self.leading, self.lost = asyncio.Event(), asyncio.Event()

    async def run(self) -> None:
        await asyncio.Event().wait()

    def lead(self) -> None:
        self.lost.clear()
        self.leading.set()

    def lose(self) -> None:
        self.leading.clear()
        self.lost.set()


async def _until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)
    assert check(), what


@contextlib.asynccontextmanager
async def _running(controller: Controller, election: FakeElection) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(controller.run(election))  # type: ignore[arg-type]
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _watch_tasks() -> list[str]:
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("trustwire-watch-") and not t.done()]


async def test_a_standby_makes_no_request_until_it_leads_and_none_once_it_lost_the_lead(
        api: tuple[FakeApi, Client]) -> None:
    fake, client = api
    election = FakeElection()
    controller = Controller(client, namespaces=["ns"], workers=1)
    async with _running(controller, election):
        await asyncio.sleep(0.5)
        assert fake.requests == [], "a standby made a request"

        election.lead()
        await _until(lambda: sorted(fake.calls("watch")) == sorted(KINDS), "not every kind watched")
        assert fake.calls("list") == KINDS, "not listed first, in order, once each"
        assert {kind: q.get("resourceVersion") for v, kind, q in fake.requests if v == "watch"} \
            == dict.fromkeys(KINDS, "10"), "a watch did not start where its listing ended"

        await _until(lambda: len(fake.open_watches()) == len(KINDS), "a watch connection is not open")
        election.lose()
        await _until(lambda: not _watch_tasks(), "a watch task outlived the lead")
        await _until(lambda: not fake.open_watches(), "a watch connection outlived the lead")
        before = len(fake.requests)
        await asyncio.sleep(0.5)
        assert fake.requests[before:] == []


def _resource(plural: str) -> Resource:
    return next(r for r in FOLLOWED if r.plural == plural)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_410_on_any_watch_lists_that_kind_again_and_resyncs_every_key(
        api: tuple[FakeApi, Client], kind: str) -> None:
    fake, client = api
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}
    fake.script[kind] = [[gone]]
    controller = Controller(client, namespaces=["ns"], jitter=0.0)
    await controller.prime()
    while not controller.queue.idle:
        controller.queue.done(await controller.queue.get())
    follow = asyncio.create_task(controller._follow(_resource(kind), "ns"))
    try:
        await _until(lambda: fake.calls("watch") == [kind, kind], "not watched again after the 410")
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
    assert fake.calls("list") == [*KINDS, kind], "the expired kind was not listed again"
    resynced = await asyncio.wait_for(controller.queue.get(), 1.0)
    assert resynced == ("identity", "ns", "alpha"), "nothing resynced after the 410"


async def test_a_failing_watch_reopens_on_the_policy_and_an_event_resets_it(
        api: tuple[FakeApi, Client], monkeypatch: pytest.MonkeyPatch) -> None:
    fake, client = api
    waited: list[float] = []

    def no_wait(seconds: float, jitter: float, rng: object) -> float:
        waited.append(seconds)
        return 0.0

    monkeypatch.setattr(backoff, "jittered", no_wait)
    broken = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "reason": "InternalError", "message": "x"}}
    event = {"type": "MODIFIED", "object": {"metadata": {"name": "d", "namespace": "ns", "resourceVersion": "11"}}}
    fake.script[DEPLOYMENTS.plural] = [[broken]] * 5 + [[event, broken], [broken]]
    controller = Controller(client, namespaces=["ns"], jitter=0.0)
    follow = asyncio.create_task(controller._follow(DEPLOYMENTS, "ns"))
    try:
        await _until(lambda: len(fake.calls("watch")) == 8, "not re-opened each time")
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
    assert waited == [1.0, 2.0, 5.0, 10.0, 10.0, 1.0, 2.0]
    assert [q.get("resourceVersion") for v, _, q in fake.requests if v == "watch"][-2:] == ["11", "11"]


async def test_a_workload_event_wakes_the_identity_that_wired_it_and_keeps_nothing(
        api: tuple[FakeApi, Client]) -> None:
    fake, client = api
    wired = {"type": "MODIFIED", "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "web", "namespace": "ns", "resourceVersion": "12",
        "annotations": {names.WIRED_BY_ANNOTATION: "ns/alpha"}}, "spec": {"replicas": 3}}}
    fake.script[DEPLOYMENTS.plural] = [[wired]]
    controller = Controller(client, namespaces=["ns"])
    await controller.prime()
    while not controller.queue.idle:
        controller.queue.done(await controller.queue.get())
    follow = asyncio.create_task(controller._follow(DEPLOYMENTS, "ns"))
    try:
        await _until(lambda: not controller.queue.idle, "the wiring identity was not woken")
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
    assert await asyncio.wait_for(controller.queue.get(), 1.0) == ("identity", "ns", "alpha")
    assert "web" not in repr(vars(controller.state)), "a workload was kept in the caches"


async def test_a_410_on_secrets_forgets_the_cached_publications_of_that_namespace(
        api: tuple[FakeApi, Client]) -> None:
    """A peer's Secret may have changed in the watch gap without an event; a cached "not
    published yet" would then keep its readers waiting until a resync long after."""
    fake, client = api
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}
    fake.script[SECRETS.plural] = [[gone]]
    controller = Controller(client, namespaces=["ns"], jitter=0.0)
    await controller.prime()
    here, elsewhere = IdentityRef("ns", "beta"), IdentityRef("other", "gamma")
    for ref in (here, elsewhere):
        assert controller.state.publications.fetched(ref, controller.state.publications.epoch(ref), None)
    follow = asyncio.create_task(controller._follow(SECRETS, "ns"))
    try:
        await _until(lambda: fake.calls("watch").count(SECRETS.plural) == 2, "not watched again after the 410")
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
    assert here not in controller.state.publications, "a publication cached before the gap survived it"
    assert elsewhere in controller.state.publications, "another namespace's cache was dropped"


async def test_passes_during_a_relisting_of_secrets_see_the_old_names_and_keep_no_fetch(
        api: tuple[FakeApi, Client]) -> None:
    """Passes run while a listing's pages arrive: an inventory emptied before the listing
    would tell them that a peer's Secrets do not exist, and the "not published yet" they
    fetch would be kept until a resync long after."""
    fake, client = api
    ca = {"metadata": {"name": names.ca_secret("beta"), "namespace": "ns",
                       "labels": names.identity_labels("beta", "ca")}}
    fake.stored[SECRETS.plural] = [ca]
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}
    fake.script[SECRETS.plural] = [[gone]]
    controller = Controller(client, namespaces=["ns"], jitter=0.0)
    await controller.prime()
    beta, publications = IdentityRef("ns", "beta"), controller.state.publications
    fake.held[SECRETS.plural] = asyncio.Event()
    follow = asyncio.create_task(controller._follow(SECRETS, "ns"))
    try:
        await _until(lambda: fake.calls("list").count(SECRETS.plural) == 2, "not listed again after the 410")
        assert controller.state.inventory.may_exist(SECRETS.plural, "ns", names.ca_secret("beta")), \
            "a Secret known before the relisting was taken for absent while it ran"
        assert publications.fetched(beta, publications.epoch(beta), None)  # a fetch during the listing
        fake.held[SECRETS.plural].set()
        await _until(lambda: fake.calls("watch").count(SECRETS.plural) == 2, "not watched again after the listing")
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
    assert beta not in publications, "what a pass fetched during the relisting was kept"
    assert controller.state.inventory.may_exist(SECRETS.plural, "ns", names.ca_secret("beta"))
