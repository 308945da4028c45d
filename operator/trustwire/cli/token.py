"""``trustwire token``: mint an access token with an identity's active JWT key (tests, scripts,
smoke checks against a gateway). The token alone goes to stdout; nothing of it is logged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from trustwire.cli.cluster import api_call, cluster_options, load, namespace_of, read_spec
from trustwire.cli.output import Unavailable

if TYPE_CHECKING:
    from trustwire.k8s.client import Client
    from trustwire.model import ServiceIdentity

#: the longest token this command mints: a token is a bearer credential, keep it short-lived
MAX_TTL = timedelta(hours=24)


def _claims(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--claim")
        out[name] = value
    return out


def _ttl(text: str) -> timedelta:
    from trustwire.model import parse_duration

    try:
        ttl = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    if not timedelta(seconds=1) <= ttl <= MAX_TTL:
        raise click.BadParameter("must be from 1s to 24h", param_hint="--ttl")
    return ttl


def mint(identity: ServiceIdentity, credentials: Mapping[str, bytes], *, audience: Sequence[str],
         scopes: Sequence[str], ttl: timedelta, extra: Mapping[str, Any], subject: str | None,
         now: datetime) -> str:
    """A token signed with the active key of ``credentials`` (``jwt.key``, ``jwt.kid``, ``jwt.jwk``),
    ``iss`` the identity's issuer, ``sub`` its SPIFFE ID unless ``subject`` is given."""
    import json

    from trustwire import pki

    try:
        key = pki.load_private_key(credentials["jwt.key"])
        kid = credentials["jwt.kid"].decode().strip()
        algorithm = pki.JwtAlgorithm(json.loads(credentials["jwt.jwk"])["alg"])
        claims = pki.access_token_claims(issuer=identity.issuer, subject=subject or identity.spiffe_id,
                                         audience=list(audience), scopes=scopes, extra=extra)
        return pki.sign_token(key, algorithm, kid, claims, now=now, lifetime=ttl)
    except KeyError as exc:
        raise Unavailable(f"the credentials Secret has no usable {exc.args[0]} (is spec.jwt.enabled true?)") from None
    except (ValueError, pki.PKIError) as exc:
        raise Unavailable(f"cannot mint a token: {exc}") from None


@click.command()
@click.argument("identity")
@click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's, else 'default').")
@click.option("--aud", "audience", multiple=True, required=True, help="The aud claim (repeat for several).")
@click.option("--scope", "scope", default="", help='Space-separated scopes, e.g. "orders:read orders:write".')
@click.option("--ttl", default="5m", show_default=True, help="Lifetime, a duration from 1s to 24h.")
@click.option("--claim", "claim", multiple=True, metavar="NAME=VALUE", help="An extra string claim (repeatable).")
@click.option("--sub", "subject", help="The sub claim (default: the identity's SPIFFE ID).")
@cluster_options
def token(identity: str, namespace: str | None, audience: tuple[str, ...], scope: str, ttl: str,
          claim: tuple[str, ...], subject: str | None, kubeconfig: str | None, context: str | None,
          server: str | None) -> None:
    """Mint a token for IDENTITY with its active JWT key (reads its credentials Secret)."""
    from trustwire.times import utcnow

    lifetime, extra = _ttl(ttl), _claims(claim)
    config = load(server, kubeconfig, context)
    ns = namespace_of(config, namespace)
    ident, credentials = api_call(config, lambda client: _read(client, ns, identity))
    click.echo(mint(ident, credentials, audience=audience, scopes=scope.split(), ttl=lifetime, extra=extra,
                    subject=subject, now=utcnow()))


async def _read(client: Client, namespace: str, name: str) -> tuple[ServiceIdentity, dict[str, bytes]]:
    from trustwire import names
    from trustwire.k8s.resources import IDENTITIES, SECRETS, decode_data
    from trustwire.model import parse_identity

    ident = await read_spec(client, IDENTITIES, namespace, name, parse_identity)
    secret = await client.get(SECRETS, namespace, names.credentials_secret(name))
    if secret is None:
        raise Unavailable(f"the credentials Secret {namespace}/{names.credentials_secret(name)} does not exist yet")
    return ident, decode_data(SECRETS, secret)
