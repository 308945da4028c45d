"""``trustwire status``: identities and relationships as tables, then each problem as one line."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from trustwire.cli.cluster import api_call, cluster_options, load, namespace_of, where
from trustwire.cli.describe import describe, relative
from trustwire.cli.observed import Status, View, between, key, observe, observe_relationship, rotation_of, view
from trustwire.cli.output import Exit, console, emit, is_machine, output_option
from trustwire.times import parse_time, rfc3339, utcnow

if TYPE_CHECKING:
    from rich.table import Table

    from trustwire.k8s.client import Client
    from trustwire.plan.status import IdentityStatus


def _ready_cell(status: Status) -> tuple[str, str]:
    """(coloured Ready, reason) for a table row."""
    ready = status.condition("Ready")
    if ready is None:
        return "[yellow]Unknown[/]", "no status yet"
    colour = {"True": "green", "False": "red"}.get(str(ready.get("status")), "yellow")
    return f"[{colour}]{escape(str(ready.get('status')))}[/]", escape(str(ready.get("reason") or ""))


def _rotation_cell(status: IdentityStatus) -> str:
    """The CA and JWT rotations in progress (a phase other than Idle); the leaf has no phases."""
    phases = [f"{label} {progress.phase}" for what, label in (("ca", "CA"), ("jwt", "JWT"))
              if (progress := rotation_of(status, what)) and progress.phase and progress.phase != "Idle"]
    return f"[yellow]{escape(', '.join(phases))}[/]" if phases else "-"


def _expiry_cell(status: IdentityStatus, now: datetime) -> str:
    cert = status.certificate
    if cert is None or (not_after := parse_time(cert.not_after)) is None:
        return "-"
    renewal = parse_time(cert.renewal_time)
    colour = "red" if not_after <= now else "yellow" if renewal is not None and renewal <= now else ""
    text = f"{rfc3339(not_after)} ({relative(not_after, now)})"
    return f"[{colour}]{text}[/]" if colour else text


def _identity_table(identities: list[dict[str, Any]], where_: str) -> Table:
    from rich.table import Table

    now = utcnow()
    table = Table(title=f"ServiceIdentities ({where_})", title_justify="left")
    for column in ("Namespace", "Name", "Ready", "Reason", "Peers", "Cert expires", "Kid", "Rotation"):
        table.add_column(column, no_wrap=column != "Reason")
    for body in identities:
        status = observe(body)
        ready, reason = _ready_cell(status)
        table.add_row(*map(escape, key(body)), ready, reason, escape(str(status.peer_count)),
                      _expiry_cell(status, now), escape((status.jwt.kid if status.jwt else "") or "-"),
                      _rotation_cell(status))
    return table


def _relationship_table(relationships: list[dict[str, Any]], where_: str) -> Table:
    from rich.table import Table

    table = Table(title=f"TrustRelationships ({where_})", title_justify="left")
    for column in ("Namespace", "Name", "Ready", "Reason", "Between"):
        table.add_column(column, no_wrap=column != "Reason")
    for body in relationships:
        ready, reason = _ready_cell(observe_relationship(body))
        table.add_row(*map(escape, key(body)), ready, reason, escape(" <-> ".join(between(body)) or "-"))
    return table


@click.command()
@click.argument("name", required=False)
@click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's, else 'default').")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@output_option
@cluster_options
def status(name: str | None, namespace: str | None, all_namespaces: bool, output: str,
           kubeconfig: str | None, context: str | None, server: str | None) -> None:
    """Show identities and relationships: Ready, reason, peers, certificate expiry, kid.

    With NAME (a ServiceIdentity, or trust/NAME for a TrustRelationship): every condition
    and the object's recent Events. Exits 0 when everything shown is Ready, 1 otherwise.
    """
    from trustwire.k8s.resources import IDENTITIES, RELATIONSHIPS

    if namespace and all_namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces")
    if name and all_namespaces:
        raise click.UsageError("NAME is looked up in one namespace: use -n, not --all-namespaces")
    config = load(server, kubeconfig, context)
    if name:
        describe(config, namespace_of(config, namespace), name, output)
        return
    ns = None if all_namespaces else namespace_of(config, namespace)

    async def read(client: Client) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await client.list(IDENTITIES, ns), await client.list(RELATIONSHIPS, ns)

    identities, relationships = (sorted(found, key=key) for found in api_call(config, read))
    views = [view("ServiceIdentity", b) for b in identities] + [view("TrustRelationship", b) for b in relationships]
    if is_machine(output):
        emit(output, [v.as_json() for v in views])
    else:
        _print_tables(identities, relationships, views, where(ns))
    if not all(v.ready for v in views):
        sys.exit(Exit.NOT_OK)


def _print_tables(identities: list[dict[str, Any]], relationships: list[dict[str, Any]],
                  views: list[View], where_: str) -> None:
    out = console()
    if not views:
        out.print(f"no ServiceIdentities or TrustRelationships in {where_}")
    if identities:
        out.print(_identity_table(identities, where_))
    if relationships:
        out.print(_relationship_table(relationships, where_))
    for v in views:
        if v.problem:
            out.print(f"[red]✗[/] {v.kind} {escape(v.namespace)}/{escape(v.name)}: {escape(v.problem)}")
