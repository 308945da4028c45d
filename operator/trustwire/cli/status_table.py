"""``trustwire status``: identities and relationships as tables, then each problem as one line."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from trustwire.cli.cluster import api_call, cluster_options, load, namespace_of
from trustwire.cli.observed import Observed, condition, first_problem, observe, section
from trustwire.times import parse_time, rfc3339, utcnow

if TYPE_CHECKING:
    from rich.table import Table

    from trustwire.k8s.client import Client


def _relative(moment: datetime, now: datetime) -> str:
    seconds = (moment - now).total_seconds()
    size = abs(seconds)
    amount = (f"{size / 86400:.0f} days" if size >= 2 * 86400 else
              f"{size / 3600:.0f} hours" if size >= 2 * 3600 else f"{size / 60:.0f} minutes")
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def _ready_cell(observed: Observed) -> tuple[str, str]:
    """(coloured Ready, reason) for a table row."""
    ready = condition(observed, "Ready")
    if ready is None:
        return "[yellow]Unknown[/]", "no status yet"
    colour = {"True": "green", "False": "red"}.get(str(ready.get("status")), "yellow")
    return f"[{colour}]{escape(str(ready.get('status')))}[/]", escape(str(ready.get("reason") or ""))


def _rotation_cell(observed: Observed) -> str:
    """Rotations in progress (``status.rotation.<material>.phase`` other than Idle)."""
    labels = (("ca", "CA"), ("certificate", "cert"), ("jwt", "JWT"))
    phases = [f"{label} {phase}" for material, label in labels
              if (phase := observed.rotations[material].phase) and phase != "Idle"]
    return f"[yellow]{escape(', '.join(phases))}[/]" if phases else "-"


def _expiry_cell(observed: Observed, now: datetime) -> str:
    cert = observed.materials["certificate"]
    not_after = parse_time(cert.not_after)
    if not_after is None:
        return "-"
    renewal = parse_time(cert.renewal_time)
    colour = "red" if not_after <= now else "yellow" if renewal is not None and renewal <= now else ""
    text = f"{rfc3339(not_after)} ({_relative(not_after, now)})"
    return f"[{colour}]{text}[/]" if colour else text


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _identity_table(identities: list[dict[str, Any]], where: str, problems: list[str]) -> Table:
    from rich.table import Table

    now = utcnow()
    table = Table(title=f"ServiceIdentities ({where})", title_justify="left")
    for column in ("Namespace", "Name", "Ready", "Reason", "Peers", "Cert expires", "Kid", "Rotation"):
        table.add_column(column, no_wrap=column != "Reason")
    for body in sorted(identities, key=_key):
        observed = observe(body)
        ready, reason = _ready_cell(observed)
        table.add_row(*map(escape, _key(body)), ready, reason, escape(str(observed.peers)),
                      _expiry_cell(observed, now), escape(str(observed.materials["jwt"].kid or "-")),
                      _rotation_cell(observed))
        problem = first_problem(observed)
        if problem:
            problems.append(f"ServiceIdentity {'/'.join(_key(body))}: {problem}")
    return table


def _relationship_table(relationships: list[dict[str, Any]], where: str, problems: list[str]) -> Table:
    from rich.table import Table

    table = Table(title=f"TrustRelationships ({where})", title_justify="left")
    for column in ("Namespace", "Name", "Ready", "Reason", "Between"):
        table.add_column(column, no_wrap=column != "Reason")
    for body in sorted(relationships, key=_key):
        observed = observe(body)
        ready, reason = _ready_cell(observed)
        between = [f"{b.get('namespace') or _key(body)[0]}/{b.get('identity')}"
                   for b in section(body, "spec").get("between") or [] if isinstance(b, Mapping)]
        table.add_row(*map(escape, _key(body)), ready, reason, escape(" <-> ".join(between) or "-"))
        problem = first_problem(observed)
        if problem:
            problems.append(f"TrustRelationship {'/'.join(_key(body))}: {problem}")
    return table


@click.command()
@click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's, else 'default').")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@cluster_options
def status(namespace: str | None, all_namespaces: bool, kubeconfig: str | None, context: str | None,
           server: str | None) -> None:
    """Show identities and relationships: Ready, reason, peers, certificate expiry, kid."""
    from rich.console import Console

    from trustwire.k8s.resources import IDENTITIES, RELATIONSHIPS

    if namespace and all_namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces")
    config = load(server, kubeconfig, context)
    ns = None if all_namespaces else namespace_of(config, namespace)

    async def read(client: Client) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await client.list(IDENTITIES, ns), await client.list(RELATIONSHIPS, ns)

    identities, relationships = api_call(config, read)
    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    where = "any namespace" if ns is None else f"namespace {ns}"
    if not identities and not relationships:
        console.print(f"no ServiceIdentities or TrustRelationships in {where}")
        return
    problems: list[str] = []
    if identities:
        console.print(_identity_table(identities, where, problems))
    if relationships:
        console.print(_relationship_table(relationships, where, problems))
    for problem in problems:
        console.print(f"[red]✗[/] {escape(problem)}")
