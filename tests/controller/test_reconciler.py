"""trustwire.controller.reconciler.Controller against the API emulator, without kopf: the
orderings of watch events and passes that a running operator only hits under load."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trustwire.controller.reconciler import Controller
from trustwire.emulator import running_emulator
from trustwire.k8s.client import RELATIONSHIPS, ApiConfig, Client
from trustwire.model import IdentityRef

Factory = Callable[..., dict[str, Any]]


async def test_a_relationship_gone_before_its_delete_event_still_wakes_both_identities(
        identity_body: Factory, relationship_body: Factory) -> None:
    """The pass finds the relationship deleted before the DELETED event was processed: it
    must tell both identities to drop the peer, because the event will find nothing left
    in the cache to tell them (seen as a trust Secret that kept a deleted peer)."""
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url)) as client:
        controller = Controller(client)
        for name in ("alpha", "beta"):
            controller.observe_identity(identity_body(name, "team"), deleted=False)
        rel = relationship_body("alpha", "beta", name="ab", namespace="team")
        await client.create(RELATIONSHIPS, "team", rel)
        controller.observe_relationship(rel, deleted=False)
        while not controller.queue.idle:  # drain what the events queued
            controller.queue.done(await controller.queue.get())
        await client.delete(RELATIONSHIPS, "team", "ab")

        await controller.reconcile(("relationship", "team", "ab"))
        controller.observe_relationship(rel, deleted=True)  # the DELETED event, late

        queued: set[tuple[str, str, str]] = set()
        while not controller.queue.idle:
            key = await controller.queue.get()
            queued.add(key)
            controller.queue.done(key)
        assert {("identity", "team", "alpha"), ("identity", "team", "beta")} <= queued
        assert controller.state.relationships_of(IdentityRef("team", "alpha")) == []
