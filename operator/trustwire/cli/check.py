"""``trustwire check [--wait]``: is trustwire usable here? For CI pipelines and install scripts.

Three things must hold: the API server serves trustwire's CRDs (discovery, which every
authenticated user may read), the operator holds a fresh Lease, and the current user may do
what the CLI's commands do (SelfSubjectAccessReview, which asks the real authorizer).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from trustwire.cli.cluster import api_call, cluster_options, load, namespace_of, where
from trustwire.cli.output import Exit, Unavailable, emit, is_machine, note, output_option
from trustwire.times import parse_time, utcnow

if TYPE_CHECKING:
    from trustwire.k8s.client import ApiConfig, Client

GROUP, VERSION = "trustwire.io", "v1alpha1"
SERVED = ("serviceidentities", "trustrelationships")
#: what the CLI's commands do, as (verb, API group, resource, the commands that need it)
NEEDED = (
    ("list", GROUP, "serviceidentities", "status"),
    ("list", GROUP, "trustrelationships", "status"),
    ("get", GROUP, "serviceidentities", "status NAME, verify"),
    ("patch", GROUP, "serviceidentities", "rotate"),
    ("list", "", "events", "status NAME"),
    ("get", "", "secrets", "verify"),
    ("get", "", "configmaps", "verify"),
)
#: seconds between attempts with --wait
POLL = 2.0


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str


def _refusal(exc: Exception) -> str:
    """An API refusal, as the reason a check fails. An unreachable server is re-raised: it is
    no check's failure but the whole run's (exit 3, or another attempt with --wait)."""
    from trustwire.k8s.errors import UNREACHABLE, ApiError

    if isinstance(exc, ApiError) and exc.reason == UNREACHABLE:
        raise exc
    return str(exc)


async def _crds(client: Client) -> Check:
    from trustwire.k8s.errors import ApiError
    from trustwire.k8s.resources import Resource

    class GroupVersion(Resource):
        """The discovery document of one group/version, read with ``Client.get`` like an object."""

        def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
            return f"/apis/{self.group}/{self.version}"

    try:
        found = await client.get(GroupVersion(GROUP, VERSION, "", "APIResourceList", namespaced=False), None, "")
    except ApiError as exc:
        return Check("crds", False, f"discovery of {GROUP}/{VERSION} failed: {_refusal(exc)}")
    served = {str(r.get("name")) for r in (found or {}).get("resources") or [] if isinstance(r, dict)}
    missing = [plural for plural in SERVED if plural not in served]
    if found is None or missing:
        what = f"{GROUP}/{VERSION}" if found is None else ", ".join(f"{m}.{GROUP}" for m in missing)
        return Check("crds", False, f"the API server does not serve {what} (are the trustwire CRDs installed?)")
    return Check("crds", True, f"{GROUP}/{VERSION} serves {', '.join(SERVED)}")


def _lease_state(spec: dict[str, Any], lease: str) -> Check:
    holder = spec.get("holderIdentity")
    renewed = parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if not holder or renewed is None or not isinstance(duration, int):
        return Check("lease", False, f"Lease {lease} has no holder (is an operator replica running?)")
    age = utcnow() - renewed
    if age > timedelta(seconds=duration):
        return Check("lease", False, f"Lease {lease} held by {holder} was last renewed "
                                     f"{age.total_seconds():.0f}s ago, more than its {duration}s "
                                     "(the operator is not running, or cannot reach the API server)")
    return Check("lease", True, f"Lease {lease} held by {holder}, renewed {max(age.total_seconds(), 0):.0f}s ago")


async def _lease(client: Client, lease: str) -> Check:
    from trustwire.k8s.errors import ApiError
    from trustwire.k8s.resources import LEASES

    namespace, _, name = lease.partition("/")
    try:
        body = await client.get(LEASES, namespace, name)
    except ApiError as exc:
        return Check("lease", False, f"cannot read Lease {lease}: {_refusal(exc)}")
    if body is None:
        return Check("lease", False, f"Lease {lease} does not exist (is the operator running with --lease {lease}?)")
    return _lease_state(body.get("spec") or {}, lease)


async def _access(client: Client, namespace: str | None, verb: str, group: str, resource: str,
                  needed_by: str) -> Check:
    from trustwire.k8s.errors import ApiError
    from trustwire.k8s.resources import Resource

    reviews = Resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview",
                       namespaced=False)
    attributes = {"verb": verb, "group": group, "resource": resource, "namespace": namespace or ""}
    qualified = f"{resource}.{group}" if group else resource
    name = f"rbac {verb} {qualified}"
    try:
        review = await client.create(reviews, None, {"apiVersion": reviews.api_version, "kind": reviews.kind,
                                                     "spec": {"resourceAttributes": attributes}})
    except ApiError as exc:
        return Check(name, False, f"cannot ask the authorizer: {_refusal(exc)}")
    if (review.get("status") or {}).get("allowed") is True:
        return Check(name, True, f"allowed in {where(namespace)}")
    return Check(name, False, f"you may not {verb} {qualified} in {where(namespace)} (trustwire {needed_by} needs it)")


async def _all(client: Client, namespace: str | None, lease: str | None) -> list[Check]:
    checks = [await _crds(client)]
    if lease:
        checks.append(await _lease(client, lease))
    checks += [await _access(client, namespace, *need) for need in NEEDED]
    return checks


def _attempts(config: ApiConfig, namespace: str | None, lease: str | None, wait: timedelta | None) -> list[Check]:
    """The checks, repeated every few seconds until they all hold or ``wait`` is over."""
    deadline = time.monotonic() + (wait.total_seconds() if wait else 0.0)
    while True:
        try:
            checks = api_call(config, lambda client: _all(client, namespace, lease))
        except Unavailable:
            if time.monotonic() >= deadline:
                raise
        else:
            if all(c.ok for c in checks) or time.monotonic() >= deadline:
                return checks
        time.sleep(min(POLL, max(deadline - time.monotonic(), 0.0)))


@click.command()
@click.option("-n", "--namespace", help="Namespace whose access to check (default: the context's, else 'default').")
@click.option("-A", "--all-namespaces", is_flag=True, help="Check access in every namespace (cluster-wide).")
@click.option("--lease", default="trustwire-system/trustwire", show_default=True,
              help="NAMESPACE/NAME of the operator's Lease, as given to `trustwire run --lease` ('' to skip, "
                   "for an operator run --standalone).")
@click.option("--wait", is_flag=True, help="Poll until every check holds, or --timeout.")
@click.option("--timeout", default="2m", show_default=True, help="How long to --wait (e.g. 90s, 5m).")
@output_option
@cluster_options
def check(namespace: str | None, all_namespaces: bool, lease: str, wait: bool, timeout: str, output: str,
          kubeconfig: str | None, context: str | None, server: str | None) -> None:
    """Check that trustwire is usable: CRDs served, operator Lease fresh, your RBAC sufficient.

    Exits 0 when every check holds, 1 with one line per failing check, 3 if the API server
    cannot be reached (with --wait: still unreachable at the timeout).
    """
    from trustwire.model import parse_duration

    if namespace and all_namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces")
    if lease and "/" not in lease:
        raise click.UsageError("--lease takes NAMESPACE/NAME, e.g. trustwire-system/trustwire")
    try:
        limit = parse_duration(timeout) if wait else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timeout") from None
    config = load(server, kubeconfig, context)
    ns = None if all_namespaces else namespace_of(config, namespace)
    checks = _attempts(config, ns, lease or None, limit)
    if is_machine(output):
        emit(output, [dataclasses.asdict(c) for c in checks])
    else:
        for c in checks:
            mark = click.style("✓", fg="green") if c.ok else click.style("✗", fg="red")
            click.echo(f"{mark} {c.name}: {c.message}")
    failed = [c for c in checks if not c.ok]
    if failed:
        note(output, f"{len(failed)} of {len(checks)} checks failed")
        sys.exit(Exit.NOT_OK)

