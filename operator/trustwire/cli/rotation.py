"""``trustwire rotate``: ask the operator for a rotation now, through the rotation annotation."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from trustwire.cli.cluster import api_call, cluster_options, load, namespace_of, where
from trustwire.cli.observed import found, key, observe, rotation_of
from trustwire.cli.output import Unavailable, emit, is_machine, note, output_option
from trustwire.times import rfc3339, rfc3339_micro

if TYPE_CHECKING:
    from trustwire.k8s.client import Client
    from trustwire.plan.status import CAStatus, CertificateStatus, IdentityStatus


def _request_value(what: str, previous: object) -> str:
    """``<what>:<UTC timestamp>``, distinct from the previous request even within one second."""
    moment = datetime.now(UTC)
    value = f"{what}:{rfc3339(moment)}"
    return value if value != previous else f"{what}:{rfc3339_micro(moment)}"


@dataclasses.dataclass(frozen=True)
class Request:
    """One rotation request as written: the identity, the annotation's value, its status before."""

    namespace: str
    name: str
    value: str
    before: IdentityStatus
    #: the annotation's previous value, if the operator had not handled it yet (it is replaced)
    replaced: str | None


async def _select(client: Client, identities: tuple[str, ...], ns: str | None, selector: str | None,
                  ) -> list[dict[str, Any]]:
    """The named identities (each must exist), else those the selector (or --all) picks."""
    from trustwire.k8s.resources import IDENTITIES

    if identities:
        assert ns is not None
        bodies = []
        for name in identities:
            body = await client.get(IDENTITIES, ns, name)
            if body is None:
                raise Unavailable(f"ServiceIdentity {ns}/{name} not found")
            bodies.append(body)
        return bodies
    bodies = sorted(await client.list(IDENTITIES, ns, label_selector=selector), key=key)
    if not bodies:
        matching = f" matching {selector}" if selector else ""
        raise Unavailable(f"no ServiceIdentities{matching} in {where(ns)}")
    return bodies


async def _annotate(client: Client, body: Mapping[str, Any], what: str) -> Request:
    from trustwire import names
    from trustwire.k8s.resources import IDENTITIES

    ns, identity = key(body)
    meta = body.get("metadata") or {}
    previous = (meta.get("annotations") or {}).get(names.ROTATE_ANNOTATION)
    value = _request_value(what, previous)
    patched = await client.merge_patch(IDENTITIES, ns, identity,
                                       {"metadata": {"annotations": {names.ROTATE_ANNOTATION: value}}})
    if patched is None:
        raise Unavailable(f"ServiceIdentity {ns}/{identity} not found (deleted meanwhile)")
    before = observe(body)
    replaced = previous if previous and previous != _handled_request(before) else None
    return Request(ns, identity, value, before, replaced)


async def _request_all(client: Client, identities: tuple[str, ...], ns: str | None, selector: str | None,
                       what: str) -> list[Request]:
    return [await _annotate(client, body, what) for body in await _select(client, identities, ns, selector)]


def _handled_request(status: IdentityStatus) -> str | None:
    return status.rotation.handled_request if status.rotation else None


async def _handled(client: Client, request: Request, timeout: float) -> IdentityStatus | None:
    """The identity's status once the operator records the request as handled; None at the timeout."""
    from trustwire.k8s.resources import IDENTITIES

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = await client.get(IDENTITIES, request.namespace, request.name)
        if body is None:
            raise Unavailable(f"ServiceIdentity {request.namespace}/{request.name} was deleted")
        status = observe(body)
        if _handled_request(status) == request.value:
            return status
        if asyncio.get_running_loop().time() > deadline:
            return None
        await asyncio.sleep(0.5)


async def _wait_all(client: Client, requests: list[Request], timeout: float) -> list[IdentityStatus | None]:
    return list(await asyncio.gather(*(_handled(client, r, timeout) for r in requests)))


def _certificate(what: str, status: IdentityStatus) -> CAStatus | CertificateStatus | None:
    """The CA (``ca``) or the leaf (``certificate``) the status reports."""
    return status.ca if what == "ca" else status.certificate


def _identifier(what: str, status: IdentityStatus) -> tuple[str, str | None]:
    """The field that changes when ``what`` rotates, and its value (None when absent)."""
    if what == "jwt":
        return "kid", found(status.jwt.kid) if status.jwt else None
    certificate = _certificate(what, status)
    return "serial", found(certificate.serial) if certificate else None


def _detail(what: str, current: IdentityStatus) -> str:
    if what == "jwt":
        kid = _identifier(what, current)[1]
        return f"current kid {kid}" if kid else "no JWT key in status"
    certificate = _certificate(what, current)
    if certificate is not None and certificate.serial:
        return f"current serial {certificate.serial}, expires {found(certificate.not_after)}"
    return f"no {what} reported in status"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One request and what became of it; :meth:`as_json` is what ``rotate -o json|yaml`` prints
    (docs/reference.md §5)."""

    what: str
    request: Request
    #: ``serial`` or ``kid``: what changes when the material rotates
    field: str
    before: str | None
    #: None without --wait; False if the operator did not handle the request in time
    handled: bool | None
    after: IdentityStatus | None

    def as_json(self) -> dict[str, Any]:
        progress = rotation_of(self.after, self.what) if self.after is not None else None
        return {"kind": "ServiceIdentity", "namespace": self.request.namespace, "name": self.request.name,
                "what": self.what, "request": self.request.value, "replaced": self.request.replaced,
                "field": self.field, "before": self.before, "handled": self.handled, "after": self.now,
                "phase": progress.phase if progress else None,
                "waitingFor": progress.waiting_for if progress else None}

    @property
    def now(self) -> str | None:
        """The serial or kid after the request was handled (None before)."""
        return _identifier(self.what, self.after)[1] if self.after is not None else None


def _outcome(what: str, request: Request, after: IdentityStatus | None, waited: bool) -> Outcome:
    field, old = _identifier(what, request.before)
    return Outcome(what, request, field, old, (after is not None) if waited else None, after)


def _report(output: str, outcome: Outcome, label: str, timeout: float) -> str | None:
    """A note on a handled request; the error line of one that was not."""
    ns, field, old, new = outcome.request.namespace, outcome.field, outcome.before, outcome.now
    if outcome.after is None:
        return (f"{label}the operator did not handle {outcome.request.value!r} within {timeout:.0f}s "
                f"(is it running and watching namespace {ns}?)")
    if old != new:
        note(output, f"{label}done: {outcome.what} {field} {old or '-'} -> {new or '-'}")
        return None
    progress = rotation_of(outcome.after, outcome.what)
    phase, waiting = (progress.phase, progress.waiting_for) if progress else (None, None)
    note(output, f"{label}handled: the {outcome.what} {field} is still {old or '-'}"
               + (f"; rotation phase {phase}" if phase else "")
               + (f", waiting for: {waiting}" if waiting else "")
               + f" (follow it with: trustwire status -n {ns})")
    return None


def _announce(output: str, what: str, request: Request, wait: bool) -> None:
    from trustwire import names

    note(output, f"annotated ServiceIdentity {request.namespace}/{request.name}: "
                 f"{names.ROTATE_ANNOTATION}={request.value}")
    if request.replaced:
        note(output, f"note: the previous request {request.replaced!r} had not been handled yet; "
                     "this one replaces it")
    detail = _detail(what, request.before)
    if wait:
        note(output, f"waiting for the operator ({detail})…")
    else:
        note(output, f"the operator rotates the {what} at its next reconcile ({detail}); "
                     f"follow it with: trustwire status -n {request.namespace}")


def _refuse_ambiguity(identities: tuple[str, ...], namespace: str | None, selector: str | None,
                      all_: bool, all_namespaces: bool) -> None:
    if identities and (selector or all_):
        raise click.UsageError("name identities, or select them with -l or --all, not both")
    if selector and all_:
        raise click.UsageError("use either -l/--selector or --all")
    if namespace and all_namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces")
    if identities and all_namespaces:
        raise click.UsageError("named identities are looked up in one namespace: use -n, not -A")
    if not (identities or selector or all_):
        raise click.UsageError("name an identity, or select identities with -l SELECTOR or --all "
                               "(with -A: in every namespace)")


@click.command()
@click.argument("identities", metavar="[IDENTITY]...", nargs=-1)
@click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's, else 'default').")
@click.option("-l", "--selector", help="Every identity whose labels match (kubectl's label selector syntax).")
@click.option("--all", "all_", is_flag=True, help="Every identity in the namespace (with -A: in every namespace).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Select with -l or --all in every namespace.")
@click.option("--what", type=click.Choice(["ca", "certificate", "jwt", "enrollment-ca"]), required=True,
              help="What to rotate: the CA, the leaf certificate, the JWT signing key or the enrollment CA.")
@click.option("--wait", is_flag=True, help="Wait until the operator has handled every request.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to --wait.")
@output_option
@cluster_options
def rotate(identities: tuple[str, ...], namespace: str | None, selector: str | None, all_: bool,
           all_namespaces: bool, what: str, wait: bool, timeout: float, output: str,
           kubeconfig: str | None, context: str | None, server: str | None) -> None:
    """Ask the operator to rotate identities' CA, certificate or JWT key now.

    Sets the annotation trustwire.io/rotate=<what>:<UTC timestamp> (a JSON merge patch on
    metadata.annotations); the operator acts once per distinct value and records it in
    status.rotation.handledRequest. One request at a time: use --wait before the next.
    Exits 1 if --wait timed out for any identity.
    """
    _refuse_ambiguity(identities, namespace, selector, all_, all_namespaces)
    config = load(server, kubeconfig, context)
    ns = None if all_namespaces else namespace_of(config, namespace)
    requests = api_call(config, lambda client: _request_all(client, identities, ns, selector, what))
    for request in requests:
        _announce(output, what, request, wait)
    afters = api_call(config, lambda client: _wait_all(client, requests, timeout)) if wait else [None] * len(requests)
    outcomes = [_outcome(what, r, after, wait) for r, after in zip(requests, afters, strict=True)]
    if is_machine(output):
        emit(output, [o.as_json() for o in outcomes])
    if not wait:
        return
    several = len(outcomes) > 1
    failures = [line for o in outcomes
                if (line := _report(output, o, f"{o.request.namespace}/{o.request.name}: " if several else "",
                                    timeout))]
    if failures:
        raise click.ClickException("; ".join(failures))

