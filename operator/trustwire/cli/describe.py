"""``trustwire status NAME``: one object's conditions and recent Events, like a focused
``kubectl describe``."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from trustwire.cli.cluster import api_call
from trustwire.cli.observed import View, conditions_json, view
from trustwire.cli.output import Exit, Unavailable, console, emit, is_machine
from trustwire.times import parse_time, utcnow

if TYPE_CHECKING:
    from rich.table import Table

    from trustwire.k8s.client import ApiConfig, Client
    from trustwire.k8s.resources import Resource

#: ``kind/NAME`` prefixes as kubectl spells them (short names, singular, plural, with group)
_KINDS = {alias: kind for kind, aliases in (
    ("ServiceIdentity", ("sid", "serviceidentity", "serviceidentities")),
    ("TrustRelationship", ("trust", "trustrelationship", "trustrelationships")),
) for alias in aliases + tuple(f"{a}.trustwire.io" for a in aliases)}

#: the newest Events shown: what happened lately, not the object's whole history
EVENT_LIMIT = 20


def relative(moment: datetime, now: datetime) -> str:
    seconds = (moment - now).total_seconds()
    size = abs(seconds)
    if size < 60:  # timestamps have whole seconds: "in 0 minutes" would be noise
        return "just now"
    amount = (f"{size / 86400:.0f} days" if size >= 2 * 86400 else
              f"{size / 3600:.0f} hours" if size >= 2 * 3600 else f"{size / 60:.0f} minutes")
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def parse_name(name: str) -> tuple[str, str]:
    """(kind, name) of ``NAME`` (a ServiceIdentity) or ``trust/NAME`` (a TrustRelationship)."""
    prefix, slash, rest = name.rpartition("/")
    if not slash:
        return "ServiceIdentity", name
    kind = _KINDS.get(prefix.lower())
    if kind is None or not rest:
        raise click.UsageError(f"{name!r}: NAME is an identity's name, or trust/NAME for a TrustRelationship "
                               "(sid/NAME also works)")
    return kind, rest


def _resource(kind: str) -> Resource:
    from trustwire.k8s.resources import IDENTITIES, RELATIONSHIPS

    return IDENTITIES if kind == "ServiceIdentity" else RELATIONSHIPS


def _stamp(event: Mapping[str, Any]) -> str:
    meta = event.get("metadata") or {}
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
               or meta.get("creationTimestamp") or "")


@dataclasses.dataclass(frozen=True)
class EventSeen:
    """An Event as found (``count`` 1 when the poster did not aggregate)."""

    type: Any
    reason: Any
    message: Any
    count: Any
    last_seen: str | None

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> EventSeen:
        return cls(event.get("type"), event.get("reason"), event.get("message"), event.get("count") or 1,
                   _stamp(event) or None)

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "reason": self.reason, "message": self.message, "count": self.count,
                "lastTimestamp": self.last_seen}


async def _read(client: Client, kind: str, namespace: str, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from trustwire.k8s.resources import EVENTS

    body = await client.get(_resource(kind), namespace, name)
    if body is None:
        raise Unavailable(f"{kind} {namespace}/{name} not found")
    events = await client.list(EVENTS, namespace,
                               field_selector=f"involvedObject.kind={kind},involvedObject.name={name}")
    uid = (body.get("metadata") or {}).get("uid")
    # A server that ignores the field selector (an emulator) still gets the right Events, and
    # those of an earlier object of the same name (another uid) are not this one's.
    mine = [e for e in events if (inv := e.get("involvedObject") or {}).get("kind") == kind
            and inv.get("name") == name and (not uid or not inv.get("uid") or inv.get("uid") == uid)]
    return body, sorted(mine, key=_stamp)[-EVENT_LIMIT:]


def describe(config: ApiConfig, namespace: str, name: str, output: str) -> None:
    kind, name = parse_name(name)
    body, raw_events = api_call(config, lambda client: _read(client, kind, namespace, name))
    shown, events = view(kind, body), [EventSeen.of(e) for e in raw_events]
    if is_machine(output):
        emit(output, shown.as_json() | {"conditions": conditions_json(shown.status),
                                        "events": [e.as_json() for e in events]})
    else:
        _print(shown, events)
    if not shown.ready:
        sys.exit(Exit.NOT_OK)


def _since(value: Any, now: datetime) -> str:
    moment = parse_time(value)
    return f"{value} ({relative(moment, now)})" if moment is not None else str(value or "-")


def _conditions_table(shown: View, now: datetime) -> Table:
    from rich.table import Table

    table = Table(title="Conditions", title_justify="left")
    for column in ("Type", "Status", "Reason", "Since", "Message"):
        table.add_column(column, no_wrap=column != "Message")
    for c in shown.status.conditions:
        table.add_row(*(escape(str(c.get(k) or "-")) for k in ("type", "status", "reason")),
                      escape(_since(c.get("lastTransitionTime"), now)), escape(str(c.get("message") or "")))
    return table


def _events_table(events: list[EventSeen], now: datetime) -> Table:
    from rich.table import Table

    table = Table(title="Events (newest last)", title_justify="left")
    for column in ("Last seen", "Type", "Reason", "Count", "Message"):
        table.add_column(column, no_wrap=column != "Message")
    for e in events:
        table.add_row(escape(_since(e.last_seen, now)), escape(str(e.type or "-")), escape(str(e.reason or "-")),
                      escape(str(e.count)), escape(str(e.message or "")))
    return table


def _print(shown: View, events: list[EventSeen]) -> None:
    now = utcnow()
    out = console()
    state = "[green]Ready[/]" if shown.ready else "[red]not Ready[/]"
    out.print(f"[bold]{shown.kind} {escape(shown.namespace)}/{escape(shown.name)}[/]: {state}"
              + (f" ({escape(str(shown.reason))})" if shown.reason else ""))
    out.print(_conditions_table(shown, now) if shown.status.conditions
              else "no conditions: the operator has not reported a status yet")
    out.print(_events_table(events, now) if events
              else "no recent Events (most clusters keep Events for an hour)")
    if shown.problem:
        out.print(f"[red]✗[/] {escape(shown.problem)}")
