"""``trustwire enroll``: the connector URL and one-time token an administrator hands to an
external application, read from the Enrollment's token Secret; ``--renew-token`` asks the
operator for a fresh one first. The token goes to stdout only; nothing of it is logged."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from trustwire.cli.cluster import api_call, cluster_options, load, namespace_of
from trustwire.cli.output import Exit, Unavailable, emit, is_machine, output_option

if TYPE_CHECKING:
    from trustwire.k8s.client import Client


@dataclasses.dataclass(frozen=True)
class Handout:
    """What the application needs: where to call and with which token."""

    enrollment: str
    url: str | None
    token: str
    expires_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"enrollment": self.enrollment, "url": self.url, "token": self.token, "expiresAt": self.expires_at}


#: stalled reasons a fresh token resolves (anything else stalls the renewal too)
_ANSWERED_BY_RENEWAL = frozenset({"TokenExpired", "CertificateExpired"})


class NotReady(click.ClickException):
    """The Enrollment answered and its token cannot be handed out (exit 1)."""

    exit_code = Exit.NOT_OK


def handout(enrollment: Mapping[str, Any], secret: Mapping[str, Any] | None,
            request: str | None) -> Handout | NotReady | None:
    """The token Secret's token once the Enrollment's status holds its hash (and, for a
    ``request``, once it answers that request); why it never will; or None: not yet."""
    from trustwire import names
    from trustwire.k8s.resources import SECRETS, decode_data

    meta = enrollment.get("metadata") or {}
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    status = enrollment.get("status") or {}
    stalled = next((c for c in status.get("conditions") or [] if c.get("type") == "Stalled"
                    and c.get("status") == "True"), None)
    data = decode_data(SECRETS, secret)
    token = data.get(names.ENROLLMENT_TOKEN_KEY, b"")
    record = status.get("token") or {}
    handled = ((secret or {}).get("metadata") or {}).get("annotations", {}).get(names.RENEW_TOKEN_HANDLED_ANNOTATION)
    answered = request is None or handled == request
    if stalled is not None and (answered or stalled.get("reason") not in _ANSWERED_BY_RENEWAL):
        return NotReady(f"Enrollment {where} is {status.get('phase') or 'stalled'}: {stalled.get('reason')}: "
                        f"{stalled.get('message')}")
    if token and answered and hmac.compare_digest(hashlib.sha256(token).hexdigest(), str(record.get("sha256", ""))):
        url = data.get(names.ENROLLMENT_URL_KEY)
        return Handout(where, url.decode() if url else None, token.decode(), str(record.get("expiresAt", "")))
    if token and answered:
        secret_name = names.enrollment_token_secret(str(meta.get("name")))
        return NotReady(f"the token in Secret {meta.get('namespace')}/{secret_name} was used already; "
                        "--renew-token issues a fresh one")
    return None


@click.command()
@click.argument("name")
@click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's, else 'default').")
@click.option("--renew-token", is_flag=True, help="Ask the operator for a fresh one-time token first "
                                                  "(it replaces the outstanding one).")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the operator to issue the token.")
@output_option
@cluster_options
def enroll(name: str, namespace: str | None, renew_token: bool, timeout: float, output: str,
           kubeconfig: str | None, context: str | None, server: str | None) -> None:
    """Print the connector URL and one-time token of Enrollment NAME (from its token Secret)."""
    config = load(server, kubeconfig, context)
    ns = namespace_of(config, namespace)
    answer = api_call(config, lambda client: _wait(client, ns, name, renew_token, timeout))
    if is_machine(output):
        emit(output, answer.to_dict())
        return
    click.echo(f"Connector URL: {answer.url or '(unknown: the operator runs without --public-url)'}")
    click.echo(f"Token:         {answer.token}")
    click.echo(f"Expires:       {answer.expires_at}")


async def _wait(client: Client, namespace: str, name: str, renew: bool, timeout: float) -> Handout:
    from trustwire import names
    from trustwire.k8s.resources import ENROLLMENTS, SECRETS
    from trustwire.times import rfc3339_micro, utcnow

    request = None
    if renew:
        request = rfc3339_micro(utcnow())  # any new value asks; a time says when it was asked
        patched = await client.merge_patch(ENROLLMENTS, namespace, name, {
            "metadata": {"annotations": {names.RENEW_TOKEN_ANNOTATION: request}}})
        if patched is None:
            raise Unavailable(f"Enrollment {namespace}/{name} not found")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        body = await client.get(ENROLLMENTS, namespace, name)
        if body is None:
            raise Unavailable(f"Enrollment {namespace}/{name} not found")
        answer = handout(body, await client.get(SECRETS, namespace, names.enrollment_token_secret(name)), request)
        if isinstance(answer, Handout):
            return answer
        if answer is not None:
            raise answer
        if loop.time() > deadline:
            raise NotReady(f"no token for Enrollment {namespace}/{name} after {timeout:g}s: is the operator running? "
                           f"(phase {(body.get('status') or {}).get('phase') or 'none yet'})")
        await asyncio.sleep(0.5)
