"""``trustwire verify``: an identity's material checked offline, from a directory or the cluster."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from trustwire.cli.cluster import api_call, cluster_options, load, namespace_of
from trustwire.cli.observed import first_problem, observe, section
from trustwire.cli.output import Exit, Unavailable, emit, is_machine, output_option
from trustwire.times import utcnow

if TYPE_CHECKING:
    from trustwire.inspection import Finding, Target
    from trustwire.k8s.client import Client


@click.command()
@click.argument("identity")
@click.option("-n", "--namespace",
              help="Namespace (default: from the material, else the kubeconfig context's).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Check files on disk instead of the cluster: a pod's mount directory, or the output "
                   "of `trustwire demo --output` (uses mounts/<namespace>/<identity>/).")
@click.option("--renew-before", default="240h", show_default=True,
              help="certificate.renewBefore to assume with --dir (from the cluster: the identity's spec).")
@output_option
@cluster_options
def verify(identity: str, namespace: str | None, directory: Path | None, renew_before: str, output: str,
           kubeconfig: str | None, context: str | None, server: str | None) -> None:
    """Check an identity's material offline: chain, SANs, expiry, keystores, peers, JWT keys.

    Prints one line per check and exits 1 if any check fails.
    """
    from trustwire.inspection import Target, load_directory, verify_material
    from trustwire.model import parse_duration

    try:
        lead = parse_duration(renew_before)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--renew-before") from None
    public: Mapping[str, bytes] | None = None
    if directory is not None:
        where = _material_directory(directory, identity, namespace)
        files = load_directory(where)
        if not files:
            raise Unavailable(f"no files in {where}")
        target = Target(identity=identity, namespace=namespace, renew_before=lead)
        source, ns = str(where), namespace
    else:
        config = load(server, kubeconfig, context)
        ns = namespace_of(config, namespace)
        files, public, target = api_call(config, lambda client: _cluster_material(client, ns, identity))
        source = f"ServiceIdentity {ns}/{identity}"
    findings = verify_material(files, now=utcnow(), target=target, public=public)
    if is_machine(output):
        emit(output, {"kind": "ServiceIdentity", "namespace": ns, "name": identity, "source": source,
                      "ok": all(f.ok for f in findings),
                      "checks": [{"check": f.check, "ok": f.ok, "message": f.message} for f in findings]})
        if not all(f.ok for f in findings):
            sys.exit(Exit.NOT_OK)
        return
    _print_findings(source, findings)


def _print_findings(source: str, findings: list[Finding]) -> None:
    click.echo(f"verifying {source}")
    for finding in findings:
        mark = click.style("✓", fg="green") if finding.ok else click.style("✗", fg="red")
        click.echo(f"{mark} {finding.check}: {finding.message}")
    failed = [f for f in findings if not f.ok]
    if failed:
        click.echo(click.style(f"{len(failed)} of {len(findings)} checks failed: ", fg="red", bold=True)
                   + "; ".join(f"{f.check}: {f.message}" for f in failed))
        sys.exit(Exit.NOT_OK)
    click.echo(click.style(f"all {len(findings)} checks passed", fg="green", bold=True))


def _material_directory(directory: Path, identity: str, namespace: str | None) -> Path:
    """DIR itself, DIR/<ns>/<identity> or DIR/mounts/<ns>/<identity> (the demo's layout)."""
    for base in (directory / "mounts", directory):
        if namespace and (base / namespace / identity).is_dir():
            return base / namespace / identity
        if not namespace and base.is_dir():
            matches = sorted(p for p in base.glob(f"*/{identity}") if p.is_dir())
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                found = ", ".join(p.parent.name for p in matches)
                raise click.UsageError(f"{identity} exists in several namespaces under {base} ({found}); "
                                       "pass -n")
    if any(p.is_file() and not p.name.startswith("..") for p in directory.iterdir()):
        return directory
    looked = f"{namespace}/{identity}" if namespace else f"*/{identity}"
    raise Unavailable(f"no material for {identity} in {directory} (looked for files there, in "
                               f"{looked}/ and in mounts/{looked}/)")


async def _cluster_material(client: Client, namespace: str, identity: str,
                            ) -> tuple[dict[str, bytes], dict[str, bytes], Target]:
    from trustwire import names
    from trustwire.inspection import DEFAULT_RENEW_BEFORE, Target
    from trustwire.k8s.resources import CONFIGMAPS, IDENTITIES, SECRETS, decode_data
    from trustwire.model import parse_duration

    body = await client.get(IDENTITIES, namespace, identity)
    if body is None:
        raise Unavailable(f"ServiceIdentity {namespace}/{identity} not found")
    files: dict[str, bytes] = {}
    missing = []
    required = (names.credentials_secret(identity), names.trust_secret(identity))
    for name in (names.credentials_secret(identity), *names.trust_secrets(identity)):  # a hub's split ones too
        secret = await client.get(SECRETS, namespace, name)
        if secret is None and name in required:
            missing.append(name)
        files.update(decode_data(SECRETS, secret))
    status = observe(body)
    if missing:
        problem = first_problem(status) or "no problem reported in its status"
        secrets = ", ".join(f"{namespace}/{m}" for m in missing)
        raise click.ClickException(f"Secret(s) {secrets} do not exist; "
                                   f"ServiceIdentity {namespace}/{identity}: {problem}")
    public = decode_data(CONFIGMAPS, await client.get(CONFIGMAPS, namespace, names.public_configmap(identity)))
    spec = section(body, "spec")
    try:
        lead = parse_duration(str(section(spec, "certificate").get("renewBefore") or "240h"))
    except ValueError:
        lead = DEFAULT_RENEW_BEFORE
    dns_names = list(status.certificate.dns_names) if status.certificate else []
    target = Target(identity=identity, namespace=namespace,
                    service_name=str(spec.get("serviceName") or identity), dns_names=dns_names,
                    renew_before=lead)
    return files, public, target
