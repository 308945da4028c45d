"""``trustwire rotate``: ask the operator for a rotation now, through the rotation annotation."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from trustwire.cli.cluster import api_call, cluster_options, load, namespace_of
from trustwire.cli.observed import MaterialSeen, Observed, observe
from trustwire.times import rfc3339, rfc3339_micro

if TYPE_CHECKING:
    from trustwire.k8s.client import Client


def _request_value(what: str, previous: object) -> str:
    """``<what>:<UTC timestamp>``, distinct from the previous request even within one second."""
    moment = datetime.now(UTC)
    value = f"{what}:{rfc3339(moment)}"
    return value if value != previous else f"{what}:{rfc3339_micro(moment)}"


async def _annotate(client: Client, ns: str, identity: str, what: str) -> tuple[str, Mapping[str, Any], str | None]:
    from trustwire import names
    from trustwire.k8s.resources import IDENTITIES

    body = await client.get(IDENTITIES, ns, identity)
    if body is None:
        raise click.ClickException(f"ServiceIdentity {ns}/{identity} not found")
    meta = body.get("metadata") or {}
    previous = (meta.get("annotations") or {}).get(names.ROTATE_ANNOTATION)
    value = _request_value(what, previous)
    patched = await client.merge_patch(IDENTITIES, ns, identity,
                                       {"metadata": {"annotations": {names.ROTATE_ANNOTATION: value}}})
    if patched is None:
        raise click.ClickException(f"ServiceIdentity {ns}/{identity} not found (deleted meanwhile)")
    return value, body, previous


async def _handled(client: Client, ns: str, identity: str, value: str, timeout: float) -> Observed:
    """The identity's status once the operator records ``value`` as its handled request."""
    from trustwire.k8s.resources import IDENTITIES

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = await client.get(IDENTITIES, ns, identity)
        if body is None:
            raise click.ClickException(f"ServiceIdentity {ns}/{identity} was deleted")
        observed = observe(body)
        if observed.handled_request == value:
            return observed
        if asyncio.get_running_loop().time() > deadline:
            raise click.ClickException(
                f"the operator did not handle {value!r} within {timeout:.0f}s "
                f"(is it running and watching namespace {ns}?)")
        await asyncio.sleep(0.5)


def _identifier(what: str, material: MaterialSeen) -> tuple[str, Any]:
    """The field that changes when ``what`` rotates, and its value."""
    return ("kid", material.kid) if what == "jwt" else ("serial", material.serial)


def _detail(what: str, current: MaterialSeen) -> str:
    if what == "jwt":
        return f"current kid {current.kid}" if current.kid else "no JWT key in status"
    if current.serial:
        return f"current serial {current.serial}, expires {current.not_after}"
    return f"no {what} reported in status"


def _report(what: str, ns: str, current: MaterialSeen, after: Observed) -> None:
    field, old = _identifier(what, current)
    _, new = _identifier(what, after.materials[what])
    if old != new:
        click.echo(f"done: {what} {field} {old or '-'} -> {new or '-'}")
        return
    progress = after.rotations[what]
    phase, waiting = progress.phase, progress.waiting_for
    click.echo(f"handled: the {what} {field} is still {old or '-'}"
               + (f"; rotation phase {phase}" if phase else "")
               + (f", waiting for: {waiting}" if waiting else "")
               + f" (follow it with: trustwire status -n {ns})")


@click.command()
@click.argument("identity")
@click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's, else 'default').")
@click.option("--what", type=click.Choice(["ca", "certificate", "jwt"]), required=True,
              help="What to rotate: the CA, the leaf certificate or the JWT signing key.")
@click.option("--wait", is_flag=True, help="Wait until the operator has handled the request.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to --wait.")
@cluster_options
def rotate(identity: str, namespace: str | None, what: str, wait: bool, timeout: float,
           kubeconfig: str | None, context: str | None, server: str | None) -> None:
    """Ask the operator to rotate an identity's CA, certificate or JWT key now.

    Sets the annotation trustwire.io/rotate=<what>:<UTC timestamp> (a JSON merge patch on
    metadata.annotations); the operator acts once per distinct value and records it in
    status.rotation.handledRequest. One request at a time: use --wait before the next.
    """
    from trustwire import names

    config = load(server, kubeconfig, context)
    ns = namespace_of(config, namespace)
    value, body, previous = api_call(config, lambda client: _annotate(client, ns, identity, what))
    before = observe(body)
    click.echo(f"annotated ServiceIdentity {ns}/{identity}: {names.ROTATE_ANNOTATION}={value}")
    if previous and previous != before.handled_request:
        click.echo(f"note: the previous request {previous!r} had not been handled yet; this one replaces it")
    current = before.materials[what]
    detail = _detail(what, current)
    if not wait:
        click.echo(f"the operator rotates the {what} at its next reconcile ({detail}); "
                   f"follow it with: trustwire status -n {ns}")
        return
    click.echo(f"waiting for the operator ({detail})…")
    after = api_call(config, lambda client: _handled(client, ns, identity, value, timeout))
    _report(what, ns, current, after)
