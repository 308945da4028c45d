"""trustwire.controller.reconciler.Controller against the API emulator: the orderings of
watch events and passes that a running operator only hits under load."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import HttpServer
from trustwire import names
from trustwire.controller.backoff import Retry
from trustwire.controller.reconciler import Controller
from trustwire.demo.emulator import running_emulator
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.resources import CONFIGMAPS, IDENTITIES, RELATIONSHIPS, SECRETS
from trustwire.model import IdentityRef

Factory = Callable[..., dict[str, Any]]


async def _drain(controller: Controller) -> set[tuple[str, str, str]]:
    queued: set[tuple[str, str, str]] = set()
    while not controller.queue.idle:
        key = await controller.queue.get()
        queued.add(key)
        controller.queue.done(key)
    return queued


async def _alpha_and_beta(client: Client, identity_body: Factory, relationship_body: Factory) -> Controller:
    """A controller that has seen identities team/alpha and team/beta and relationship ab
    between them (all three stored in the emulator), with the passes their events queued
    taken off the queue unrun."""
    controller = Controller(client)
    for name in ("alpha", "beta"):
        body = identity_body(name, "team")
        await client.create(IDENTITIES, "team", body)
        controller.observe_identity(body, deleted=False)
    rel = relationship_body("alpha", "beta", name="ab", namespace="team")
    await client.create(RELATIONSHIPS, "team", rel)
    controller.observe_relationship(rel, deleted=False)
    await _drain(controller)
    return controller


async def _primed(client: Client) -> Controller:
    """A controller after its start-up listing, with the passes it queued taken off unrun."""
    controller = Controller(client)
    await controller.prime()
    await _drain(controller)
    return controller


async def test_a_relationship_gone_before_its_delete_event_still_wakes_both_identities(
        identity_body: Factory, relationship_body: Factory) -> None:
    """The pass finds the relationship deleted before the DELETED event was processed: it
    must tell both identities to drop the peer, because the event will find nothing left
    in the cache to tell them (seen as a trust Secret that kept a deleted peer)."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        controller = await _alpha_and_beta(client, identity_body, relationship_body)
        rel = await client.get(RELATIONSHIPS, "team", "ab")
        assert rel is not None
        await client.delete(RELATIONSHIPS, "team", "ab")

        await controller.reconcile(("relationship", "team", "ab"))
        controller.observe_relationship(rel, deleted=True)  # the DELETED event, late

        assert {("identity", "team", "alpha"), ("identity", "team", "beta")} <= await _drain(controller)
        assert controller.state.relationships_of(IdentityRef("team", "alpha")) == []


async def test_the_echo_of_an_own_write_wakes_nobody_and_an_edit_wakes_the_owner_and_peers(
        identity_body: Factory, relationship_body: Factory) -> None:
    """A pass's own writes come back as watch events; re-running the writer (and, for its CA
    and credentials, every peer) for each was a third of all passes at scale. The pass tells
    peers itself when what it publishes changed; anyone else's change is still news."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        controller = await _alpha_and_beta(client, identity_body, relationship_body)

        await controller.reconcile(("identity", "team", "beta"))  # beta looks: alpha has published nothing
        assert controller.state.publications.get(IdentityRef("team", "alpha")) is None
        assert await _drain(controller) == {("identity", "team", "alpha")}  # beta published: alpha is told
        await controller.reconcile(("identity", "team", "alpha"))  # alpha issues and publishes
        assert await _drain(controller) == {("identity", "team", "beta")}  # told by alpha's pass

        alpha = names.credentials_secret("alpha")
        for secret in (names.ca_secret("alpha"), alpha, names.trust_secret("alpha")):
            echo = await client.get(SECRETS, "team", secret)
            assert echo is not None
            controller.observe_secret(echo, deleted=False)
        assert await _drain(controller) == set()

        edited = await client.merge_patch(SECRETS, "team", alpha, {"data": {"jwt.kid": "ZWRpdGVk"}})
        assert edited is not None
        controller.observe_secret(edited, deleted=False)
        assert await _drain(controller) == {("identity", "team", "alpha"), ("identity", "team", "beta")}
        assert IdentityRef("team", "alpha") not in controller.state.publications  # refetched by beta


async def test_two_fetches_that_disagree_on_a_publication_make_every_reader_look_again(
        identity_body: Factory, relationship_body: Factory) -> None:
    """Seen at 1,000 identities: two readers fetched a peer while its first pass was writing.
    One read "nothing published yet", the other (landing second) the finished material and
    cached it; the peer's pass then found its readers "already holding" what it publishes
    and told nobody — the first reader kept the peer out of its trust until a resync.
    Here beta is fully published, one fetch is in flight and another fetch of the same
    epoch lands first with "nothing yet": the disagreement must wake every reader."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        controller = await _alpha_and_beta(client, identity_body, relationship_body)
        beta = IdentityRef("team", "beta")
        await controller.reconcile(("identity", "team", "beta"))  # beta issues and publishes
        await _drain(controller)
        assert beta not in controller.state.publications

        in_flight = asyncio.create_task(controller._publication(beta))
        await asyncio.sleep(0)  # it has read the epoch and is waiting for beta's Secrets
        controller.state.publications.fetched(beta, controller.state.publications.epoch(beta), None)
        assert await in_flight is not None  # the material, which contradicts what is cached

        assert beta not in controller.state.publications
        assert ("identity", "team", "alpha") in await _drain(controller)
        await controller.reconcile(("identity", "team", "alpha"))
        trust = await client.get(SECRETS, "team", names.trust_secret("alpha"))
        assert trust is not None and b"beta" in base64.b64decode(trust["data"]["peers.json"])


async def test_peers_status_wakes_only_an_identity_waiting_on_a_rotation_gate(
        identity_body: Factory, relationship_body: Factory) -> None:
    """What peers report in status (their trust, their rollouts) is read only by a rotation
    gate; an identity not waiting on one is not reconciled again for it."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        controller = await _alpha_and_beta(client, identity_body, relationship_body)
        beta = await client.get(IDENTITIES, "team", "beta")
        assert beta is not None
        news = {**beta, "status": {"trust": {"caFingerprints": ["ab" * 32], "kids": []}}}

        controller.observe_identity(news, deleted=False)
        assert await _drain(controller) == set()

        controller.state.awaiting_peers.add(IdentityRef("team", "alpha"))  # as a Distributing pass leaves it
        controller.observe_identity({**beta, "status": {"trust": {"caFingerprints": [], "kids": ["k"]}}},
                                    deleted=False)
        assert await _drain(controller) == {("identity", "team", "alpha")}


async def test_a_shared_secret_is_deleted_whether_listed_or_shown_by_the_watch(
        relationship_body: Factory) -> None:
    """A relationship without a shared secret does not read one on every pass; a leftover
    one (the feature was switched off) is deleted by the first pass if the start-up listing
    found it, else by the pass its watch event causes."""
    leftover = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": {"shared.key": "eHg="},
                "metadata": {"name": names.shared_secret("ab"), "namespace": "team",
                             "labels": {names.MANAGED_BY: names.MANAGER, names.RELATIONSHIP_LABEL: "ab"}}}
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        await client.create(RELATIONSHIPS, "team", relationship_body("alpha", "beta", name="ab", namespace="team"))
        await client.create(SECRETS, "team", leftover)
        listed = await _primed(client)
        await listed.reconcile(("relationship", "team", "ab"))
        assert await client.get(SECRETS, "team", names.shared_secret("ab")) is None

        controller = await _primed(client)
        await client.create(SECRETS, "team", leftover)  # after the listing, its ADDED event still to come
        before = client.counts["get"]
        await controller.reconcile(("relationship", "team", "ab"))
        assert client.counts["get"] == before + 1  # the relationship itself, no Secret read
        assert await client.get(SECRETS, "team", names.shared_secret("ab")) is not None

        controller.observe_secret(leftover, deleted=False)  # its ADDED event
        assert await _drain(controller) == {("relationship", "team", "ab")}
        await controller.reconcile(("relationship", "team", "ab"))
        assert await client.get(SECRETS, "team", names.shared_secret("ab")) is None


async def test_a_first_pass_reads_no_secret_the_inventory_knows_is_absent(
        identity_body: Factory, relationship_body: Factory) -> None:
    """A new identity has no Secrets or ConfigMap yet, and neither has its new peer: after the
    start-up listing the pass knows it and asks the API only for the identity itself."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        await _alpha_and_beta(client, identity_body, relationship_body)
        controller = await _primed(client)
        before = client.counts["get"]

        await controller.reconcile(("identity", "team", "alpha"))

        assert client.counts["get"] == before + 1
        for name in (names.ca_secret("alpha"), names.credentials_secret("alpha"), names.trust_secret("alpha")):
            assert await client.get(SECRETS, "team", name) is not None, name
        assert await client.get(CONFIGMAPS, "team", names.public_configmap("alpha")) is not None


async def test_material_the_inventory_has_not_seen_yet_is_adopted_not_issued_again(
        identity_body: Factory, relationship_body: Factory) -> None:
    """alpha's material was issued after this controller listed (by a previous leader, say)
    and its watch events are still on the way. Believing it absent, the pass issues a new CA:
    the create is refused, nothing is overwritten, and the next pass adopts what exists —
    one CA lineage."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        await _alpha_and_beta(client, identity_body, relationship_body)
        controller = await _primed(client)
        previous_leader = await _primed(client)
        await previous_leader.reconcile(("identity", "team", "alpha"))
        issued = await client.get(SECRETS, "team", names.ca_secret("alpha"))
        assert issued is not None

        with pytest.raises(Retry):
            await controller.reconcile(("identity", "team", "alpha"))
        await controller.reconcile(("identity", "team", "alpha"))

        ca = await client.get(SECRETS, "team", names.ca_secret("alpha"))
        assert ca is not None and ca["data"] == issued["data"]
        alpha = await client.get(IDENTITIES, "team", "alpha")
        assert alpha is not None
        ca_ready = {c["type"]: c for c in alpha["status"]["conditions"]}["CAReady"]
        assert ca_ready["status"] == "True"


async def test_a_secret_that_is_not_ours_is_never_learnt_from_the_watch_but_still_reported(
        identity_body: Factory, relationship_body: Factory) -> None:
    """A user's own Secret under our name has no label, so neither the listing nor a real
    API server's labelled watch shows it. The create of ours is refused, and the next pass
    reads it and reports the clash, leaving it untouched."""
    theirs = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": {"mine": "eHg="},
              "metadata": {"name": names.credentials_secret("alpha"), "namespace": "team"}}
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        await _alpha_and_beta(client, identity_body, relationship_body)
        await client.create(SECRETS, "team", theirs)
        controller = await _primed(client)
        controller.observe_secret(theirs, deleted=False)  # kmock's watch ignores the selector

        with pytest.raises(Retry):
            await controller.reconcile(("identity", "team", "alpha"))
        await controller.reconcile(("identity", "team", "alpha"))

        alpha = await client.get(IDENTITIES, "team", "alpha")
        assert alpha is not None
        reasons = {c["reason"] for c in alpha["status"]["conditions"]}
        assert "NameConflict" in reasons
        untouched = await client.get(SECRETS, "team", names.credentials_secret("alpha"))
        assert untouched is not None and untouched["data"] == theirs["data"]


async def test_the_watch_of_our_secrets_resumes_where_it_was_and_lists_again_when_told_410(
        identity_body: Factory, relationship_body: Factory, http_server: HttpServer) -> None:
    """Against a server that keeps resourceVersions as kube-apiserver does (kmock does not):
    the watch starts where the start-up listing ended, resumes from the last version seen
    when the server ends it, after a 500 tries that version again, and after 410 Gone lists
    again — forgetting a Secret deleted while nobody watched — and resyncs every key."""
    ca, trust = names.ca_secret("alpha"), names.trust_secret("alpha")
    labels = {names.MANAGED_BY: names.MANAGER, names.IDENTITY_LABEL: "alpha"}
    store = {ca: {"metadata": {"name": ca, "namespace": "ns", "labels": labels, "resourceVersion": "5"}}}
    watched: list[str | None] = []
    last_watch = asyncio.Event()

    def listing(items: list[Any], version: str) -> web.Response:
        return web.json_response({"metadata": {"resourceVersion": version}, "items": items})

    async def secrets(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            return listing(list(store.values()), "10" if not watched else "20")
        watched.append(request.query.get("resourceVersion"))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        if len(watched) == 3:
            return web.json_response({"kind": "Status", "code": 500, "reason": "InternalError"}, status=500)
        await response.prepare(request)
        if len(watched) == 1:  # one event, then the server's timeout ends the watch
            store[trust] = {"metadata": {"name": trust, "namespace": "ns", "labels": labels, "resourceVersion": "11"}}
            await response.write(json.dumps({"type": "ADDED", "object": store[trust]}).encode() + b"\n")
        elif len(watched) == 2:  # history compacted; meanwhile the CA Secret was deleted
            del store[ca]
            await response.write(b'{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Gone"}}\n')
        else:
            last_watch.set()
            await asyncio.sleep(30)
        await response.write_eof()
        return response

    async def quiet(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            kind = request.path.rsplit("/", 1)[1]
            items = {"serviceidentities": [identity_body("alpha", "ns")],
                     "trustrelationships": [relationship_body("alpha", "beta", name="ab", namespace="ns")]}
            return listing(items.get(kind, []), "10")
        response = web.StreamResponse()
        await response.prepare(request)
        await asyncio.sleep(30)
        return response

    url = await http_server([web.get("/api/v1/namespaces/ns/secrets", secrets),
                             web.get("/api/v1/namespaces/ns/configmaps", quiet),
                             web.get("/apis/trustwire.io/v1alpha1/namespaces/ns/{kind}", quiet),
                             web.get("/apis/apps/v1/namespaces/ns/{kind}", quiet)])
    async with Client(ApiConfig(server=url)) as client:
        controller = Controller(client, namespaces=["ns"], jitter=0.0)
        await controller.prime()
        assert controller.state.inventory.may_exist("secrets", "ns", ca)
        assert not controller.state.inventory.may_exist("secrets", "ns", trust)
        await _drain(controller)
        follow = asyncio.create_task(controller._follow(SECRETS, "ns"))
        try:
            await asyncio.wait_for(last_watch.wait(), 10.0)
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
    assert watched == ["10", "11", "20", "20"]
    assert controller.state.inventory.may_exist("secrets", "ns", trust)
    assert not controller.state.inventory.may_exist("secrets", "ns", ca), "a Secret deleted in the gap was kept"
    assert ("relationship", "ns", "ab") in await _drain(controller), "nothing was resynced after the 410"


async def test_an_observer_that_raises_does_not_end_the_watch(caplog: pytest.LogCaptureFixture) -> None:
    """A bug in an observer is logged (its type only: the body may hold key material) and
    the watch is opened again after a back-off; kmock replays the object, which then lands."""
    key = base64.b64encode(b"secret bytes").decode()
    labels = {names.MANAGED_BY: names.MANAGER, names.IDENTITY_LABEL: "x"}
    secret = {"apiVersion": "v1", "kind": "Secret", "data": {"tls.key": key},
              "metadata": {"name": "x-trustwire-ca", "namespace": "team", "labels": labels}}
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        controller = Controller(client, namespaces=["team"], jitter=0.0)
        await controller.prime()
        calls: list[str] = []
        observe = controller.observe_secret

        def flaky(body: Mapping[str, Any], deleted: bool) -> None:
            calls.append(body["metadata"]["name"])
            if len(calls) == 1:
                raise KeyError(body["data"]["tls.key"])
            observe(body, deleted)

        controller.observe_secret = flaky  # type: ignore[method-assign]
        await client.create(SECRETS, "team", secret)
        follow = asyncio.create_task(controller._follow(SECRETS, "team"))
        try:
            for _ in range(50):
                if len(calls) >= 2:
                    break
                await asyncio.sleep(0.1)
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
    assert calls[:2] == ["x-trustwire-ca", "x-trustwire-ca"]
    assert controller.state.inventory.may_exist("secrets", "team", "x-trustwire-ca")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["watch of secrets: KeyError in an observer; watching again in 1.0s"]
    assert not any(key in r.getMessage() for r in caplog.records)


async def test_a_refused_watch_is_logged_as_a_warning_and_tried_again(
        caplog: pytest.LogCaptureFixture, http_server: HttpServer) -> None:
    """A watch the API server refuses for good (here RBAC: 403) must not fail silently: every
    attempt is a WARNING naming the kind, the namespace and the API's reason."""
    attempts: list[str] = []

    async def secrets(request: web.Request) -> web.Response:
        if request.query.get("watch") != "true":
            return web.json_response({"metadata": {"resourceVersion": "1"}, "items": []})
        attempts.append(request.query.get("resourceVersion", ""))
        return web.json_response({"kind": "Status", "code": 403, "reason": "Forbidden",
                                  "message": "secrets is forbidden: cannot watch"}, status=403)

    url = await http_server([web.get("/api/v1/namespaces/ns/secrets", secrets)])
    async with Client(ApiConfig(server=url)) as client:
        controller = Controller(client, namespaces=["ns"], jitter=0.0)
        follow = asyncio.create_task(controller._follow(SECRETS, "ns"))
        await asyncio.sleep(1.5)
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
    assert len(attempts) == 2, "not tried again after the back-off"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"watch of secrets in ns failed (WATCH /api/v1/namespaces/ns/secrets: 403 Forbidden: "
                        f"secrets is forbidden: cannot watch); watching again in {s}s" for s in ("1.0", "2.0")]


async def test_listing_again_forgets_what_was_deleted_unseen_as_its_deleted_event_would(
        identity_body: Factory, relationship_body: Factory) -> None:
    """After a 410 the controller lists again; an identity and a relationship deleted while
    no watch looked must leave the caches and the indexes, and the surviving identity is
    told (its peer is gone)."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        for name in ("alpha", "beta"):
            await client.create(IDENTITIES, "team", identity_body(name, "team"))
        await client.create(RELATIONSHIPS, "team", relationship_body("alpha", "beta", name="ab", namespace="team"))
        controller = Controller(client, namespaces=["team"])
        await controller.prime()
        await _drain(controller)
        beta = IdentityRef("team", "beta")
        assert controller.state.peers_of(beta) == {IdentityRef("team", "alpha")}

        await client.delete(IDENTITIES, "team", "alpha")
        await client.delete(RELATIONSHIPS, "team", "ab")
        await controller._list(IDENTITIES, "team")
        await controller._list(RELATIONSHIPS, "team")
        assert set(controller.state.identities) == {beta}
        assert set(controller.state.relationships) == set()
        assert controller.state.peers_of(beta) == set()
        assert ("identity", "team", "beta") in await _drain(controller)


@pytest.mark.parametrize("beta_publishes", [True, False])
async def test_a_first_trust_secret_waits_for_the_queued_pass_of_its_peer(
        identity_body: Factory, relationship_body: Factory, beta_publishes: bool) -> None:
    """Everything arrives at once (a start-up, a GitOps sync): alpha's first pass runs while
    beta's is queued, so alpha's trust Secret and first status wait for it and are written
    once, with beta's material. A peer whose pass cannot publish (an invalid spec) must not
    keep it waiting."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        await _alpha_and_beta(client, identity_body, relationship_body)
        if not beta_publishes:
            await client.merge_patch(IDENTITIES, "team", "beta", {"spec": {"certificate": {"duration": "soon"}}})
        controller = Controller(client)
        await controller.prime()  # queues every pass
        await controller.reconcile(("identity", "team", "alpha"))
        assert await client.get(SECRETS, "team", names.credentials_secret("alpha")) is not None
        assert await client.get(SECRETS, "team", names.trust_secret("alpha")) is None
        alpha = await client.get(IDENTITIES, "team", "alpha")
        assert alpha is not None and "status" not in alpha

        await controller.reconcile(("identity", "team", "beta"))
        assert controller.queue.due(("identity", "team", "alpha")), "beta's pass did not wake alpha"
        before = client.counts.get("patch", 0)
        await controller.reconcile(("identity", "team", "alpha"))
        trust = await client.get(SECRETS, "team", names.trust_secret("alpha"))
        assert trust is not None
        bundle = base64.b64decode(trust["data"]["trust-bundle.pem"])
        assert (b"BEGIN CERTIFICATE" in bundle) is beta_publishes
        assert client.counts.get("patch", 0) - before == 1, "alpha wrote more than its status"
        alpha = await client.get(IDENTITIES, "team", "alpha")
        assert alpha is not None
        trust_ready = {c["type"]: c for c in alpha["status"]["conditions"]}["TrustReady"]
        assert trust_ready["status"] == ("True" if beta_publishes else "False")


@pytest.mark.parametrize(("configmap", "woken"), [("onprem-ca", True), ("unrelated", False)])
async def test_a_change_of_an_external_members_bundle_wakes_its_relationship_and_identity(
        identity_body: Factory, configmap: str, woken: bool) -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        controller = Controller(client)
        body = identity_body("dgc", "gov")
        await client.create(IDENTITIES, "gov", body)
        controller.observe_identity(body, deleted=False)
        controller.observe_relationship({
            "apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": "dgc-onprem", "namespace": "gov"},
            "spec": {"between": [{"identity": "dgc"}, {"external": {
                "name": "onprem", "caBundleRef": {"name": "onprem-ca"}}}]}}, deleted=False)
        await _drain(controller)
        controller.observe_configmap({"metadata": {"name": configmap, "namespace": "gov"},
                                      "data": {"ca.crt": "x"}}, deleted=False)
        expected = {("relationship", "gov", "dgc-onprem"), ("identity", "gov", "dgc")} if woken else set()
        assert await _drain(controller) == expected


async def _next(controller: Controller, client: Client) -> tuple[str, str, str]:
    """Run the next queued pass, then deliver what it changed of an identity as its watch would."""
    key = await controller.queue.get()
    try:
        await controller.reconcile(key)
    finally:
        controller.queue.done(key)
    if key[0] == "identity" and (body := await client.get(IDENTITIES, key[1], key[2])) is not None:
        controller.observe_identity(body, deleted=False)
    return key


async def test_a_relationships_first_status_waits_for_the_passes_its_sides_have_queued(
        identity_body: Factory, relationship_body: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything arrives at once and the relationship's pass runs before its sides': its first
    status would only say the material is on its way, so it waits for their passes — the end
    of each one wakes it, whether or not the watch reports a change — and is written once,
    when both hold each other's material."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        statuses: list[str] = []
        patch = client.merge_patch

        async def recording(resource: Any, namespace: str | None, name: str, body: Mapping[str, Any],
                            *, subresource: str | None = None) -> dict[str, Any] | None:
            if resource is RELATIONSHIPS and subresource == "status":
                statuses.append(body["status"]["conditions"][0]["status"])
            return await patch(resource, namespace, name, body, subresource=subresource)

        monkeypatch.setattr(client, "merge_patch", recording)
        await _alpha_and_beta(client, identity_body, relationship_body)
        controller = await _primed(client)
        for key in (("relationship", "team", "ab"), ("identity", "team", "beta"), ("identity", "team", "alpha")):
            controller.queue.add(key)

        assert await _next(controller, client) == ("relationship", "team", "ab")
        rel = await client.get(RELATIONSHIPS, "team", "ab")
        assert rel is not None and "status" not in rel
        assert await _next(controller, client) == ("identity", "team", "beta")  # holds back for alpha
        assert not controller.queue.due(("relationship", "team", "ab"))
        assert await _next(controller, client) == ("identity", "team", "alpha")
        assert controller.queue.due(("relationship", "team", "ab")), "alpha's pass did not wake it"

        while not controller.queue.idle:
            await _next(controller, client)
        rel = await client.get(RELATIONSHIPS, "team", "ab")
        assert rel is not None
        assert {c["type"]: c["status"] for c in rel["status"]["conditions"]}["Ready"] == "True"
        assert statuses == ["True"], "the relationship's status was written on the way to Ready"


async def test_a_relationships_first_status_is_written_at_once_when_a_side_has_no_pass_queued(
        identity_body: Factory, relationship_body: Factory) -> None:
    """Nothing this operator has in flight would change what it reports: it says so at once."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        controller = await _alpha_and_beta(client, identity_body, relationship_body)
        await controller.reconcile(("relationship", "team", "ab"))
        rel = await client.get(RELATIONSHIPS, "team", "ab")
        assert rel is not None
        assert {c["type"]: c["reason"] for c in rel["status"]["conditions"]}["Distributed"] == "Distributing"
