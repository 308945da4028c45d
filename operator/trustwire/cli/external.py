"""``trustwire export`` and ``trustwire confirm``: what an outsider installs, and its receipt.

An external member of a relationship reports nothing to the cluster, so its operator does
two things by hand: install what ``export`` writes, then ``confirm`` it. The confirmation
(the CA fingerprints installed, in the ``trustwire.io/external-confirmed`` annotation) is
what a CA rotation of the in-cluster side waits for.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from trustwire.cli.cluster import api_call, cluster_options, load, namespace_of, read_spec
from trustwire.cli.output import Unavailable

if TYPE_CHECKING:
    from trustwire.k8s.client import Client
    from trustwire.model import TrustRelationship


async def _relationship(client: Client, ns: str, name: str) -> TrustRelationship:
    from trustwire.k8s.resources import RELATIONSHIPS
    from trustwire.model import parse_relationship

    rel = await read_spec(client, RELATIONSHIPS, ns, name, parse_relationship)
    if rel.external is None:
        raise Unavailable(f"TrustRelationship {ns}/{name} has no external member in spec.between")
    return rel


async def _public(client: Client, ns: str, identity: str) -> Mapping[str, bytes]:
    from trustwire import names
    from trustwire.k8s.resources import CONFIGMAPS, decode_data

    body = await client.get(CONFIGMAPS, ns, names.public_configmap(identity))
    if body is None:
        raise Unavailable(f"ConfigMap {ns}/{names.public_configmap(identity)} not found "
                          f"(is ServiceIdentity {ns}/{identity} Ready?)")
    return decode_data(CONFIGMAPS, body)


@click.command("export")
@click.argument("identity")
@click.option("-n", "--namespace", help="Namespace of the identity and the relationship (default: the context's).")
@click.option("--for", "relationship", required=True, help="The TrustRelationship naming the external member.")
@click.option("--format", "fmt", type=click.Choice(["pem", "pkcs12", "jks"]), default="pem", show_default=True,
              help="pem: ca.crt only; pkcs12/jks: also a truststore and its password.")
@click.option("--password", help="Truststore password (default: a random one, written to truststore.password).")
@click.option("-o", "--output-dir", "out", required=True, type=click.Path(file_okay=False),
              help="Directory to write into (created if missing).")
@cluster_options
def export(identity: str, namespace: str | None, relationship: str, fmt: str, password: str | None, out: str,
           server: str | None, kubeconfig: str | None, context: str | None) -> None:
    """Write what the external member of RELATIONSHIP installs to trust IDENTITY: its CA(s)
    (the next one too, during a rotation) and, for JWTs, its public keys."""
    from trustwire.model import IdentityRef
    from trustwire.plan.export import ExportError, ExportFormat, export_files

    config = load(server, kubeconfig, context)
    ns = namespace_of(config, namespace)

    async def work(client: Client) -> tuple[TrustRelationship, Mapping[str, bytes]]:
        return await _relationship(client, ns, relationship), await _public(client, ns, identity)

    rel, public = api_call(config, work)
    if IdentityRef(ns, identity) not in rel.between:
        raise Unavailable(f"TrustRelationship {ns}/{relationship} does not name ServiceIdentity {ns}/{identity}")
    try:
        files = export_files(identity, rel, public, ExportFormat(fmt), password or secrets.token_urlsafe(18))
    except ExportError as exc:
        raise Unavailable(str(exc)) from None
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content)
        if name == "truststore.password":
            path.chmod(0o600)
    click.echo(f"wrote {', '.join(files)} to {directory}")


def _fingerprints_in(directory: str) -> list[str]:
    from trustwire import pki

    try:
        return [pki.fingerprint_sha256(c) for c in pki.load_certificates((Path(directory) / "ca.crt").read_bytes())]
    except (OSError, pki.PKIError) as exc:
        raise Unavailable(f"--from {directory}: no readable ca.crt ({exc})") from None


@click.command("confirm")
@click.argument("relationship")
@click.option("-n", "--namespace", help="Namespace of the relationship (default: the context's).")
@click.option("--from", "source", type=click.Path(file_okay=False),
              help="A directory 'trustwire export' wrote and the outsider installed: confirms its ca.crt.")
@click.option("--fingerprint", "fingerprints", multiple=True,
              help="SHA-256 fingerprint of a CA the outsider installed (repeatable).")
@cluster_options
def confirm(relationship: str, namespace: str | None, source: str | None, fingerprints: tuple[str, ...],
            server: str | None, kubeconfig: str | None, context: str | None) -> None:
    """Record that the external member of RELATIONSHIP installed these CA(s): a CA rotation
    of the in-cluster side switches only once the next CA is among them. Without --from or
    --fingerprint, confirms every CA the identity publishes now."""
    from trustwire import names, pki
    from trustwire.k8s.resources import RELATIONSHIPS

    config = load(server, kubeconfig, context)
    ns = namespace_of(config, namespace)
    given = [f.strip().lower().replace(":", "") for f in fingerprints] + (_fingerprints_in(source) if source else [])

    async def work(client: Client) -> list[str]:
        rel = await _relationship(client, ns, relationship)
        inside = rel.between[0]
        confirmed = given or [pki.fingerprint_sha256(c) for c in pki.load_certificates(
            (await _public(client, inside.namespace, inside.name)).get("ca.crt", b""))]
        patch: dict[str, Any] = {"metadata": {"annotations": {
            names.EXTERNAL_CONFIRMED_ANNOTATION: ",".join(sorted(set(confirmed)))}}}
        if await client.merge_patch(RELATIONSHIPS, ns, relationship, patch) is None:
            raise Unavailable(f"TrustRelationship {ns}/{relationship} not found (deleted meanwhile)")
        return confirmed

    confirmed = api_call(config, work)
    click.echo(f"TrustRelationship {ns}/{relationship}: confirmed CA sha256 {', '.join(sorted(set(confirmed)))}")
